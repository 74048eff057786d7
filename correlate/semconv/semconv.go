// Package semconv is the one place where a typed exchange (model.HTTP,
// model.DB, and model.GenAI refining HTTP) becomes an OpenTelemetry span:
// its name, status and attributes, following the OpenTelemetry semantic
// conventions. Every capture path goes
// through it, so a request traced with uprobes and the same request traced
// from the kernel read the same way.
//
// It also applies redaction, field by field as each field is built: URLs and
// query strings keep their shape, methods and routes are the instrumented
// code's own, other strings are free text. The exchange's fields are
// redacted in place, so sinks that read them see what the exporters send.
package semconv

import (
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/redact"
)

// Apply redacts s and derives its Name, Status, StatusMsg and Attributes
// from its exchange. Attributes reuses the slice's capacity. A nil r
// redacts with the built-in defaults.
func Apply(s *model.Span, r *redact.Redactor) { apply(s, plain{r}) }

// attrsCap is room for every attribute a span can get, so that building
// them allocates at most once per span (and not at all for a span whose
// slice is reused).
const attrsCap = 24

func apply(s *model.Span, r texts) {
	attrs := s.Attributes[:0]
	need := attrsCap
	if s.GenAI != nil {
		need += genAIAttrs
	}
	if cap(attrs) < need {
		attrs = make([]attribute.KeyValue, 0, need)
	}
	s.Status, s.StatusMsg = codes.Unset, ""
	s.TraceState = r.String(s.TraceState)
	switch {
	case s.HTTP != nil:
		attrs = appendHTTP(attrs, s, r)
		if s.GenAI != nil {
			// A call to a model: GenAI refines the HTTP exchange.
			attrs = appendGenAI(attrs, s, r)
		}
	case s.DB != nil:
		attrs = appendDB(attrs, s, r)
	case s.Code != nil:
		attrs = appendCode(attrs, s)
	}
	if s.Source == model.SourceKernel {
		attrs = append(attrs, attribute.String("zerotrace.source", "kernel"))
	}
	if s.Background() {
		attrs = append(attrs, attribute.Bool("zerotrace.background", true))
	}
	if s.Truncated {
		attrs = append(attrs, attribute.Bool("zerotrace.truncated", true))
	}
	s.Attributes = attrs
}

// knownMethods are the methods the HTTP semantic conventions name; any other
// is reported as "_OTHER" with the original in http.request.method_original,
// so that a client inventing methods cannot multiply metric series.
var knownMethods = map[string]bool{
	"CONNECT": true, "DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true,
	"PATCH": true, "POST": true, "PUT": true, "TRACE": true, "QUERY": true,
}

// Method is the http.request.method the conventions give a method as sent:
// itself when it is a known one, "_OTHER" otherwise. An empty method is GET
// (net/http sends GET for it).
func Method(m string) string {
	if m == "" {
		return "GET"
	}
	if knownMethods[m] {
		return m
	}
	return "_OTHER"
}

func appendHTTP(attrs []attribute.KeyValue, s *model.Span, r texts) []attribute.KeyValue {
	h := s.HTTP
	raw := h.Method
	if raw == "" {
		raw = "GET"
	}
	method := Method(raw)
	if method == "_OTHER" {
		attrs = append(attrs, attribute.String("http.request.method_original", r.String(raw)))
	}
	attrs = append(attrs, attribute.String("http.request.method", method))
	server := s.Kind == trace.SpanKindServer

	scheme := h.Scheme
	if scheme == "" && !server {
		scheme = "http"
	}
	if !server {
		// The full URL is redacted whole: a secret may span its parts.
		full := scheme + "://" + h.Host + h.Path
		if h.Query != "" {
			full += "?" + h.Query
		}
		attrs = append(attrs, attribute.String("url.full", r.URL(full)))
	}
	h.Host = r.String(h.Host)
	h.Path = r.URL(h.Path)
	h.Query = r.URLQuery(h.Query)
	if server {
		attrs = append(attrs, attribute.String("url.path", h.Path))
		if scheme != "" {
			attrs = append(attrs, attribute.String("url.scheme", scheme))
		}
		if h.Query != "" {
			attrs = append(attrs, attribute.String("url.query", h.Query))
		}
		if h.Route != "" {
			attrs = append(attrs, attribute.String("http.route", h.Route))
		}
	}
	if h.Status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", h.Status))
	}
	if h.ResponseBodyKnown {
		attrs = append(attrs, attribute.Int64("http.response.body.size", h.ResponseBodySize))
	}
	if h.RequestBodySize > 0 {
		attrs = append(attrs, attribute.Int64("http.request.body.size", h.RequestBodySize))
	}

	host, port := HTTPServer(h, s.Kind)
	if host != "" {
		attrs = append(attrs, attribute.String("server.address", host))
	}
	if port != 0 {
		attrs = append(attrs, attribute.Int("server.port", port))
	}
	if server && h.Local.IsValid() {
		attrs = append(attrs,
			attribute.String("network.local.address", r.addr(h.Local.Addr())),
			attribute.Int("network.local.port", int(h.Local.Port())))
	}
	if h.Peer.IsValid() {
		ip := r.addr(h.Peer.Addr().Unmap())
		if server {
			attrs = append(attrs, attribute.String("client.address", ip))
		}
		attrs = append(attrs,
			attribute.String("network.peer.address", ip),
			attribute.Int("network.peer.port", int(h.Peer.Port())))
	}
	if h.Version != "" {
		attrs = append(attrs, attribute.String("network.protocol.version", h.Version))
	}

	s.Name = method
	if method == "_OTHER" {
		s.Name = "HTTP"
	}
	if server && h.Route != "" {
		s.Name = r.join(s.Name, h.Route)
	}
	switch {
	case s.Failure.Failed:
		// No response at all: the round trip itself failed.
		errType := r.String(s.Failure.Type)
		if errType == "" {
			errType = "error"
		}
		s.Status, s.StatusMsg = codes.Error, "round trip failed: "+errType
		if s.Failure.Message != "" {
			s.StatusMsg = r.String(s.Failure.Message)
		}
		attrs = append(attrs, attribute.String("error.type", errType))
	case h.Status >= 500, !server && h.Status >= 400:
		// Client spans report 4xx as errors too (semantic conventions).
		s.Status = codes.Error
		attrs = append(attrs, attribute.String("error.type", statusString(h.Status)))
	}
	return attrs
}

// HTTPServer is the server.address and server.port of an HTTP exchange
// seen from a span of the given kind (after Apply has redacted the host):
// the Host header's, else the server's own socket on a server span; the
// URL's host, else the peer, with the scheme's default port, on a client
// span. Sinks that name the server read it here, as the attributes do.
func HTTPServer(h *model.HTTP, kind trace.SpanKind) (host string, port int) {
	host, port = SplitHostPort(h.Host)
	if kind == trace.SpanKindServer {
		if host == "" && h.Local.IsValid() {
			host = h.Local.Addr().String()
		}
		if port == 0 && h.Local.IsValid() {
			port = int(h.Local.Port())
		}
		return host, port
	}
	switch {
	case host == "" && h.Peer.IsValid():
		host, port = h.Peer.Addr().String(), int(h.Peer.Port())
	case port == 0 && (h.Scheme == "" || strings.EqualFold(h.Scheme, "http")):
		port = 80
	case port == 0 && strings.EqualFold(h.Scheme, "https"):
		port = 443
	}
	return host, port
}

func appendDB(attrs []attribute.KeyValue, s *model.Span, r texts) []attribute.KeyValue {
	d := s.DB
	d.Query = r.String(d.Query)
	d.Operation = r.String(d.Operation)
	d.Collection = r.String(d.Collection)
	d.Namespace = r.String(d.Namespace)
	d.ServerAddress = r.String(d.ServerAddress)
	d.StatusCode = r.String(d.StatusCode)
	d.ServerVersion = r.String(d.ServerVersion)

	attrs = append(attrs, attribute.String("db.system.name", d.System))
	if d.Query != "" {
		attrs = append(attrs, attribute.String("db.query.text", d.Query))
	}
	if d.Operation != "" {
		attrs = append(attrs, attribute.String("db.operation.name", d.Operation))
	}
	if d.Collection != "" {
		attrs = append(attrs, attribute.String("db.collection.name", d.Collection))
	}
	if d.Namespace != "" {
		attrs = append(attrs, attribute.String("db.namespace", d.Namespace))
	}
	if d.ServerAddress != "" {
		attrs = append(attrs, attribute.String("server.address", d.ServerAddress))
	}
	if d.ServerPort != 0 {
		attrs = append(attrs, attribute.Int("server.port", d.ServerPort))
	}
	if d.Peer.IsValid() {
		attrs = append(attrs,
			attribute.String("network.peer.address", r.addr(d.Peer.Addr().Unmap())),
			attribute.Int("network.peer.port", int(d.Peer.Port())))
	}
	if d.Transport != "" {
		attrs = append(attrs, attribute.String("network.transport", d.Transport))
	}
	if d.ReturnedRows >= 0 {
		attrs = append(attrs, attribute.Int64("db.response.returned_rows", d.ReturnedRows))
	}
	if d.RowsAffected >= 0 {
		attrs = append(attrs, attribute.Int64("zerotrace.db.rows_affected", d.RowsAffected))
	}
	if d.Prepared {
		attrs = append(attrs, attribute.Bool("zerotrace.db.prepared", true))
	}
	if d.ServerVersion != "" {
		attrs = append(attrs, attribute.String("zerotrace.db.server_version", d.ServerVersion))
	}

	switch {
	case d.Operation != "" && d.Collection != "":
		s.Name = r.join(d.Operation, d.Collection)
	case d.Operation != "":
		s.Name = d.Operation
	default:
		s.Name = d.System
	}
	if s.Failure.Failed {
		errType := r.String(s.Failure.Type)
		if errType == "" {
			errType = "error"
		}
		msg := r.String(s.Failure.Message)
		if msg == "" {
			msg = errType
		}
		s.Status, s.StatusMsg = codes.Error, msg
		attrs = append(attrs, attribute.String("error.type", errType))
		if d.StatusCode != "" {
			attrs = append(attrs, attribute.String("db.response.status_code", d.StatusCode))
		}
	}
	return attrs
}

// SQL returns the DB exchange of one SQL statement sent to a database of
// the given system: the text sanitized (literals become '?', whatever the
// redaction settings) and the operation and collection it shows.
func SQL(system, query string) *model.DB {
	d := model.NewDB(system)
	SetSQL(d, query)
	return d
}

// SetSQL sets the statement of a DB exchange as SQL does: its text
// sanitized, and the operation and collection it shows. It is SQL for a
// producer that allocates the exchange with its span.
func SetSQL(d *model.DB, query string) {
	d.Query = redact.SanitizeSQL(query)
	d.Operation = redact.SQLOperation(d.Query)
	d.Collection = redact.SQLCollection(d.Query)
}

// Route derives http.route from a net/http ServeMux pattern, which has the
// form "[METHOD ][HOST]/[PATH]": the route is the path template alone.
func Route(pattern string) string {
	if pattern == "" {
		return ""
	}
	p := pattern
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		p = strings.TrimLeft(p[i:], " \t")
	}
	i := strings.IndexByte(p, '/')
	if i < 0 {
		return ""
	}
	p = p[i:]
	// "{$}" only anchors the match at the end of the path.
	return strings.TrimSuffix(p, "{$}")
}

// ProtocolVersion writes an HTTP version as the conventions do: "1.1",
// "2"; "" for 0.0 (unknown).
func ProtocolVersion(major, minor int) string {
	switch {
	case major == 0 && minor == 0:
		return ""
	case major >= 2 && minor == 0:
		return strconv.Itoa(major)
	case major == 1 && minor == 1:
		return "1.1"
	default:
		return strconv.Itoa(major) + "." + strconv.Itoa(minor)
	}
}

// SplitHostPort splits a Host header into host and port, tolerating a
// missing port and IPv6 brackets.
func SplitHostPort(hostport string) (string, int) {
	if hostport == "" {
		return "", 0
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), 0
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return host, 0
	}
	return host, port
}
