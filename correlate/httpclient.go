package correlate

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// httpClientSpan builds a CLIENT span following the OpenTelemetry HTTP
// semantic conventions. IDs and process are filled in by the caller.
func httpClientSpan(r *HTTPClientRequest) *Span {
	attrs := make([]attribute.KeyValue, 0, 10)
	method := r.Method
	if method == "" {
		method = "GET" // net/http sends GET for an empty Method
	}
	if !knownMethods[method] {
		attrs = append(attrs, attribute.String("http.request.method_original", method))
		method = "_OTHER"
	}
	attrs = append(attrs, attribute.String("http.request.method", method))

	scheme := r.Scheme
	if scheme == "" {
		scheme = "http"
	}
	full := scheme + "://" + r.Host + r.Path
	if r.RawQuery != "" {
		full += "?" + r.RawQuery
	}
	attrs = append(attrs, attribute.String("url.full", full))

	host, port := splitHostPort(r.Host)
	if port == 0 {
		switch strings.ToLower(scheme) {
		case "http":
			port = 80
		case "https":
			port = 443
		}
	}
	if host != "" {
		attrs = append(attrs, attribute.String("server.address", host))
	}
	if port != 0 {
		attrs = append(attrs, attribute.Int("server.port", port))
	}
	if r.Peer.IsValid() {
		attrs = append(attrs,
			attribute.String("network.peer.address", r.Peer.Addr().String()),
			attribute.Int("network.peer.port", int(r.Peer.Port())))
	}
	if r.ContentLength > 0 {
		attrs = append(attrs, attribute.Int64("http.request.body.size", r.ContentLength))
	}
	if r.HasResponse {
		attrs = append(attrs, attribute.Int("http.response.status_code", r.Status))
	}
	if r.Truncated {
		attrs = append(attrs, attribute.Bool("zerotrace.truncated", true))
	}

	name := method
	if method == "_OTHER" {
		name = "HTTP"
	}
	s := &Span{
		Name:       name,
		Kind:       trace.SpanKindClient,
		Start:      r.Start,
		End:        r.End,
		Attributes: attrs,
	}
	switch {
	case r.Err:
		// A transport error: no response at all.
		errType := r.ErrType
		if errType == "" {
			errType = "error"
		}
		s.Status, s.StatusMsg = codes.Error, "round trip failed: "+errType
		s.Attributes = append(s.Attributes, attribute.String("error.type", errType))
	case r.HasResponse && r.Status >= 400:
		// Client spans report 4xx as errors too (semantic conventions).
		s.Status = codes.Error
		s.Attributes = append(s.Attributes, attribute.String("error.type", strconv.Itoa(r.Status)))
	}
	return s
}
