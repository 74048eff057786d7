package servicemap

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Formats are the ways Render can write a map.
var Formats = []string{"table", "json", "dot", "mermaid"}

// Render writes m in format (one of Formats).
func Render(w io.Writer, m Map, format string) error {
	switch format {
	case "table", "":
		return renderTable(w, m)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	case "dot":
		return renderDot(w, m)
	case "mermaid":
		return renderMermaid(w, m)
	}
	return fmt.Errorf("unknown format %q: want %s", format, strings.Join(Formats, ", "))
}

func names(m Map) map[string]Node {
	byID := make(map[string]Node, len(m.Nodes))
	for _, n := range m.Nodes {
		byID[n.ID] = n
	}
	return byID
}

func label(n Node, id string) string {
	if n.Name == "" {
		return id
	}
	if n.Kind == KindService {
		return n.Name
	}
	return n.Name + " (" + n.Kind + ")"
}

func renderTable(w io.Writer, m Map) error {
	byID := names(m)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CALLER\tCALLEE\tREQUESTS\tERRORS\tP50 ms\tP95 ms\tP99 ms\tBYTES\tCONNS\tWINDOW (%.0fs) REQ/ERR\n", m.WindowSeconds)
	for _, e := range m.Edges {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d/%d\n",
			label(byID[e.Source], e.Source), label(byID[e.Target], e.Target),
			e.Total.Requests, e.Total.Errors, e.Total.P50Ms, e.Total.P95Ms, e.Total.P99Ms, e.Total.Bytes,
			e.Total.Connections, e.Window.Requests, e.Window.Errors)
	}
	if len(m.Edges) == 0 {
		fmt.Fprintln(tw, "(no calls seen yet)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return renderModels(w, m)
}

// renderModels lists, under the table, the nodes that answered model
// calls (model endpoints and traced model servers), over the window.
func renderModels(w io.Writer, m Map) error {
	var models []Node
	for _, n := range m.Nodes {
		if n.GenAI != nil {
			models = append(models, n)
		}
	}
	if len(models) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nMODEL ENDPOINT\tPROVIDERS\tMODELS\tREQ/ERR (%.0fs)\tTOKENS IN/OUT\tOUT TOK/s\tTTFT P50/P95 ms\tCOST USD\n", m.WindowSeconds)
	for _, n := range models {
		s := n.GenAI
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d/%d\t%.1f\t%.1f/%.1f\t%.6g\n", label(n, n.ID),
			strings.Join(s.Providers, ","), strings.Join(s.Models, ","), s.Requests, s.Errors,
			s.InputTokens, s.OutputTokens, s.OutputTokensPerSecond, s.TTFTP50Ms, s.TTFTP95Ms, s.CostUSD)
	}
	return tw.Flush()
}

// modelLabel is a node's name with its models, for the drawn formats.
func modelLabel(n Node) string {
	if n.GenAI == nil || len(n.GenAI.Models) == 0 {
		return n.Name
	}
	return n.Name + " [" + strings.Join(n.GenAI.Models, ", ") + "]"
}

// quote makes s a DOT or Mermaid string literal.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `'`, "\n", " ").Replace(s) + `"`
}

func renderDot(w io.Writer, m Map) error {
	var b strings.Builder
	b.WriteString("digraph zerotrace {\n  rankdir=LR;\n")
	for _, n := range m.Nodes {
		shape := "box"
		switch n.Kind {
		case KindDatabase:
			shape = "cylinder"
		case KindExternal:
			shape = "ellipse"
		case KindModel:
			shape = "hexagon"
		}
		fmt.Fprintf(&b, "  %s [label=%s, shape=%s];\n", quote(n.ID), quote(modelLabel(n)), shape)
	}
	for _, e := range m.Edges {
		text := fmt.Sprintf("%d req, %d err, p95 %.1f ms", e.Total.Requests, e.Total.Errors, e.Total.P95Ms)
		if e.Total.Requests == 0 && e.Total.Connections > 0 {
			text = connLabel(e)
		}
		fmt.Fprintf(&b, "  %s -> %s [label=%s];\n", quote(e.Source), quote(e.Target), quote(text))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func renderMermaid(w io.Writer, m Map) error {
	ids := map[string]string{}
	var b strings.Builder
	b.WriteString("graph LR\n")
	for i, n := range m.Nodes {
		id := fmt.Sprintf("n%d", i)
		ids[n.ID] = id
		open, closing := "[", "]"
		switch n.Kind {
		case KindDatabase:
			open, closing = "[(", ")]"
		case KindExternal:
			open, closing = "((", "))"
		case KindModel:
			open, closing = "{{", "}}"
		}
		fmt.Fprintf(&b, "  %s%s%s%s\n", id, open, quote(modelLabel(n)), closing)
	}
	for _, e := range m.Edges {
		text := fmt.Sprintf("%d req, %d err", e.Total.Requests, e.Total.Errors)
		if e.Total.Requests == 0 && e.Total.Connections > 0 {
			text = connLabel(e)
		}
		fmt.Fprintf(&b, "  %s -->|%s| %s\n", ids[e.Source], quote(text), ids[e.Target])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// connLabel describes an edge known only from connections.
func connLabel(e Edge) string {
	return fmt.Sprintf("%d conn, %d bytes", e.Total.Connections, e.Total.Bytes)
}
