package export

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func sampleSpan() *model.Span {
	p := model.NewProcess(4242, "/srv/bin/orders", "", "go1.26.8")
	s := &model.Span{
		Name:   "GET /users/{id}",
		Kind:   trace.SpanKindServer,
		Start:  time.Unix(1700000000, 123456789),
		End:    time.Unix(1700000000, 223456789),
		Status: codes.Error,
		Attributes: []attribute.KeyValue{
			attribute.String("url.path", "/a \"quoted\"\\path\n\x01\xff é"),
			attribute.Int("http.response.status_code", 503),
			attribute.Bool("zerotrace.truncated", true),
			attribute.Float64("x.ratio", 0.25),
			attribute.StringSlice("x.list", []string{"a", "b"}),
		},
		// The exchange the attributes above would come from, for the sinks
		// that read typed fields.
		HTTP:    &model.HTTP{Path: "/a \"quoted\"\\path\n\x01\xff é", Status: 503},
		Process: p,
	}
	copy(s.TraceID[:], bytes.Repeat([]byte{0xab}, 16))
	copy(s.SpanID[:], bytes.Repeat([]byte{0xcd}, 8))
	return s
}

// The hand-written encoder must agree with encoding/json on every line.
func TestJSONLinesMatchesEncodingJSON(t *testing.T) {
	var out bytes.Buffer
	j := NewJSONLines(&out)
	s := sampleSpan()
	if err := j.Export(context.Background(), []*model.Span{s, s}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), out.String())
	}
	want, err := json.Marshal(ToJSON(s))
	if err != nil {
		t.Fatal(err)
	}
	var got, exp map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("line is not valid JSON: %v\n%s", err, lines[0])
	}
	if err := json.Unmarshal(want, &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("hand-encoded line differs from encoding/json:\n got %s\nwant %s", lines[0], want)
	}
	if got["parent_span_id"] != "" || got["trace_id"] != strings.Repeat("ab", 16) || got["kind"] != "server" || got["status_code"] != "error" {
		t.Errorf("unexpected fields: %s", lines[0])
	}
	if lines[0] != lines[1] {
		t.Errorf("cached resource changed the second line:\n%s\n%s", lines[0], lines[1])
	}
}

func TestTextLine(t *testing.T) {
	s := sampleSpan()
	line := FormatText(s)
	for _, want := range []string{"orders[4242]", "server", "GET /users/{id}", "503", "100.000ms", "ERROR", "trace=" + strings.Repeat("ab", 16)} {
		if !strings.Contains(line, want) {
			t.Errorf("text line %q lacks %q", line, want)
		}
	}
}

func TestOTLPEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://localhost:4318":             "http://localhost:4318/v1/traces",
		"localhost:4318":                    "http://localhost:4318/v1/traces",
		"https://collector:4318/":           "https://collector:4318/v1/traces",
		"http://collector:4318/custom/path": "http://collector:4318/custom/path",
	} {
		got, err := OTLPEndpointURL(in)
		if err != nil || got != want {
			t.Errorf("OTLPEndpointURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://x:1", "http://", "::"} {
		if _, err := OTLPEndpointURL(bad); err == nil {
			t.Errorf("OTLPEndpointURL(%q) accepted a bad endpoint", bad)
		}
	}
}
