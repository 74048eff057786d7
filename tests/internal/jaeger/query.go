package jaeger

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Trace is one trace as returned by Jaeger's query API.
type Trace struct {
	TraceID string
	Spans   []Span
	// Processes maps the query API's process IDs ("p1", ...) to the process
	// (OTLP resource) they stand for. Each Span also carries its own copy.
	Processes map[string]Process
}

// Span is one span of a Trace. Jaeger reports times in microseconds, so
// StartTime and Duration have microsecond precision: the nanoseconds sent
// over OTLP are truncated.
type Span struct {
	TraceID string
	SpanID  string
	// ParentSpanID is the span ID of the CHILD_OF reference, "" for a root
	// span.
	ParentSpanID  string
	OperationName string
	// Kind is the value of the span.kind tag: "server", "client",
	// "internal", "producer", "consumer", or "" when unspecified.
	Kind      string
	StartTime time.Time
	Duration  time.Duration
	// Tags holds the span's attributes plus the tags Jaeger derives from the
	// OTLP span: span.kind, otel.scope.name, otel.scope.version,
	// otel.status_code, otel.status_description and error. Values are
	// string, bool, int64, float64 or []byte (for Jaeger's binary type).
	Tags    map[string]any
	Process Process
	// Warnings are Jaeger's remarks on the span (for example about invalid
	// parent span IDs); usually empty.
	Warnings []string
}

// Process is the process (OTLP resource) that reported a span.
type Process struct {
	ServiceName string
	// Tags holds the resource attributes other than service.name, typed as
	// in Span.Tags.
	Tags map[string]any
}

// Services returns the service names Jaeger has received spans for.
func (j *Jaeger) Services(ctx context.Context) ([]string, error) {
	var services []string
	if err := j.get(ctx, "/api/services", nil, &services); err != nil {
		return nil, err
	}
	return services, nil
}

// Traces returns up to limit traces that contain a span of service, most
// recent first, with all of their spans (spans of other services included).
// limit must be between 1 and MaxTraces.
//
// No time window is sent. The query API has no lookback parameter (the
// UI turns its lookback into start/end), and without start/end the in-memory
// store searches everything it holds: since every test gets its own Jaeger,
// that is exactly this test's spans, including any with absurd timestamps,
// which a window would hide.
func (j *Jaeger) Traces(ctx context.Context, service string, limit int) ([]Trace, error) {
	if limit < 1 || limit > MaxTraces {
		return nil, fmt.Errorf("limit %d out of range [1, %d]", limit, MaxTraces)
	}
	q := url.Values{}
	q.Set("service", service)
	q.Set("limit", strconv.Itoa(limit))
	var wire []wireTrace
	if err := j.get(ctx, "/api/traces", q, &wire); err != nil {
		return nil, err
	}
	return convertTraces(wire)
}

// WaitForSpans polls Jaeger until at least n spans of service are stored or
// timeout passes. It then waits j.Settle and reads again, so that spans
// beyond the n expected are noticed, and returns all spans of service
// (spans of other services in the same traces are left out), sorted by start
// time. On timeout it returns the spans found so far with an error.
func (j *Jaeger) WaitForSpans(ctx context.Context, service string, n int, timeout time.Duration) ([]Span, error) {
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var spans []Span
	var lastErr error
	for {
		s, err := j.serviceSpans(waitCtx, service)
		if err == nil {
			spans, lastErr = s, nil
			if len(spans) >= n {
				break
			}
		} else if waitCtx.Err() == nil {
			lastErr = err
		}
		select {
		case <-waitCtx.Done():
			if err := ctx.Err(); err != nil {
				return spans, err
			}
			msg := fmt.Sprintf("Jaeger has %d spans of service %q after %v, want at least %d", len(spans), service, timeout, n)
			if lastErr != nil {
				msg += fmt.Sprintf("; last query error: %v", lastErr)
			}
			// A misspelt or differently derived service name is the usual
			// cause of zero spans: name the services Jaeger does have.
			if services, err := j.Services(ctx); err == nil {
				msg += fmt.Sprintf("; services in Jaeger: %q", services)
			}
			return spans, fmt.Errorf("%s", msg)
		case <-time.After(200 * time.Millisecond):
		}
	}

	select {
	case <-ctx.Done():
		return spans, ctx.Err()
	case <-time.After(j.Settle):
	}
	return j.serviceSpans(ctx, service)
}

// serviceSpans returns every stored span of service, sorted by start time.
func (j *Jaeger) serviceSpans(ctx context.Context, service string) ([]Span, error) {
	traces, err := j.Traces(ctx, service, MaxTraces)
	if err != nil {
		return nil, err
	}
	var spans []Span
	for _, tr := range traces {
		for _, s := range tr.Spans {
			if s.Process.ServiceName == service {
				spans = append(spans, s)
			}
		}
	}
	slices.SortFunc(spans, func(a, b Span) int {
		return cmp.Or(a.StartTime.Compare(b.StartTime), strings.Compare(a.TraceID, b.TraceID), strings.Compare(a.SpanID, b.SpanID))
	})
	return spans, nil
}

// get fetches path from the query API and decodes the "data" member of the
// response into data.
func (j *Jaeger) get(ctx context.Context, path string, query url.Values, data any) error {
	u := j.QueryURL() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: reading response: %v", u, err)
	}
	if err := decodeResponse(body, data); err != nil {
		return fmt.Errorf("GET %s: %s: %v", u, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// The query API's JSON (Jaeger's "UI model"): every response is an envelope
// {"data": ..., "total": n, "limit": n, "offset": n, "errors": [...]}.
type wireResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

type wireTrace struct {
	TraceID   string                 `json:"traceID"`
	Spans     []wireSpan             `json:"spans"`
	Processes map[string]wireProcess `json:"processes"`
}

type wireSpan struct {
	TraceID       string    `json:"traceID"`
	SpanID        string    `json:"spanID"`
	OperationName string    `json:"operationName"`
	References    []wireRef `json:"references"`
	StartTime     int64     `json:"startTime"` // µs since the Unix epoch
	Duration      int64     `json:"duration"`  // µs
	Tags          []wireTag `json:"tags"`
	ProcessID     string    `json:"processID"`
	Warnings      []string  `json:"warnings"`
}

type wireRef struct {
	RefType string `json:"refType"` // CHILD_OF or FOLLOWS_FROM
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type wireProcess struct {
	ServiceName string    `json:"serviceName"`
	Tags        []wireTag `json:"tags"`
}

type wireTag struct {
	Key   string          `json:"key"`
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

// decodeResponse decodes a query API response envelope, returning its errors
// as an error and its data into data.
func decodeResponse(body []byte, data any) error {
	var resp wireResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decoding response %q: %v", truncate(body, 200), err)
	}
	if len(resp.Errors) > 0 {
		msgs := make([]string, len(resp.Errors))
		for i, e := range resp.Errors {
			msgs[i] = fmt.Sprintf("%d %s", e.Code, e.Msg)
		}
		return fmt.Errorf("query API error: %s", strings.Join(msgs, "; "))
	}
	if len(resp.Data) == 0 || string(resp.Data) == "null" {
		return nil
	}
	if err := json.Unmarshal(resp.Data, data); err != nil {
		return fmt.Errorf("decoding data: %v", err)
	}
	return nil
}

// parseTraces decodes an /api/traces response body.
func parseTraces(body []byte) ([]Trace, error) {
	var wire []wireTrace
	if err := decodeResponse(body, &wire); err != nil {
		return nil, err
	}
	return convertTraces(wire)
}

func convertTraces(wire []wireTrace) ([]Trace, error) {
	traces := make([]Trace, 0, len(wire))
	for _, wt := range wire {
		tr := Trace{TraceID: wt.TraceID, Processes: make(map[string]Process, len(wt.Processes))}
		for id, wp := range wt.Processes {
			tags, err := convertTags(wp.Tags)
			if err != nil {
				return nil, fmt.Errorf("trace %s, process %s: %v", wt.TraceID, id, err)
			}
			tr.Processes[id] = Process{ServiceName: wp.ServiceName, Tags: tags}
		}
		for _, ws := range wt.Spans {
			tags, err := convertTags(ws.Tags)
			if err != nil {
				return nil, fmt.Errorf("trace %s, span %s: %v", wt.TraceID, ws.SpanID, err)
			}
			proc, ok := tr.Processes[ws.ProcessID]
			if !ok {
				return nil, fmt.Errorf("trace %s, span %s: unknown process ID %q", wt.TraceID, ws.SpanID, ws.ProcessID)
			}
			kind, _ := tags["span.kind"].(string)
			tr.Spans = append(tr.Spans, Span{
				TraceID:       ws.TraceID,
				SpanID:        ws.SpanID,
				ParentSpanID:  parentSpanID(ws),
				OperationName: ws.OperationName,
				Kind:          kind,
				StartTime:     time.UnixMicro(ws.StartTime).UTC(),
				Duration:      time.Duration(ws.Duration) * time.Microsecond,
				Tags:          tags,
				Process:       proc,
				Warnings:      ws.Warnings,
			})
		}
		traces = append(traces, tr)
	}
	return traces, nil
}

// parentSpanID picks the parent from a span's references: the CHILD_OF
// reference within the same trace (OTLP's parentSpanId becomes exactly that),
// else any CHILD_OF reference. FOLLOWS_FROM references are OTLP span links,
// not parents.
func parentSpanID(s wireSpan) string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// convertTags turns Jaeger's typed key/value list into a map with Go values.
func convertTags(wire []wireTag) (map[string]any, error) {
	tags := make(map[string]any, len(wire))
	for _, tag := range wire {
		v, err := tagValue(tag)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %v", tag.Key, err)
		}
		tags[tag.Key] = v
	}
	return tags, nil
}

func tagValue(tag wireTag) (any, error) {
	switch tag.Type {
	case "string":
		var s string
		err := json.Unmarshal(tag.Value, &s)
		return s, err
	case "bool":
		var b bool
		err := json.Unmarshal(tag.Value, &b)
		return b, err
	case "int64":
		// Jaeger writes integers beyond ±2^53 as JSON strings, which
		// JavaScript could not hold exactly; smaller ones as numbers.
		raw := bytes.Trim(tag.Value, `"`)
		return strconv.ParseInt(string(raw), 10, 64)
	case "float64":
		var f float64
		err := json.Unmarshal(tag.Value, &f)
		return f, err
	case "binary":
		var s string
		if err := json.Unmarshal(tag.Value, &s); err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	default:
		var v any
		err := json.Unmarshal(tag.Value, &v)
		return v, err
	}
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
