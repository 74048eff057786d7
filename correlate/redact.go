package correlate

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/zerotrace/zerotrace/correlate/redact"
)

// redactSpan removes sensitive data from every string the span will carry
// out of the agent. It runs in the correlator, the one stage every span
// passes before the exporters fan out, so no sink can see a value first.
// Each attribute is read the way its semantic convention says it is built:
// URLs and query strings keep their shape, other strings are free text.
func redactSpan(r *redact.Redactor, s *Span) {
	for i, kv := range s.Attributes {
		if kv.Value.Type() != attribute.STRING {
			continue
		}
		v := kv.Value.AsString()
		var out string
		switch kv.Key {
		case "url.full":
			out = r.URL(v)
		case "url.query":
			out = r.URLQuery(v)
		case "url.path":
			out = r.URL(v)
		case "http.request.method", "url.scheme", "network.protocol.version", "http.route":
			// Set by the instrumented code or our own mapping, never
			// user data: http.route comes from the registered pattern.
			continue
		default:
			out = r.String(v)
		}
		if out != v {
			s.Attributes[i] = attribute.String(string(kv.Key), out)
		}
	}
	s.StatusMsg = r.String(s.StatusMsg)
	s.TraceState = r.String(s.TraceState)
}
