package correlate

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// knownMethods are the methods the HTTP semantic conventions name; any other
// is reported as "_OTHER" with the original in http.request.method_original.
var knownMethods = map[string]bool{
	"CONNECT": true, "DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true,
	"PATCH": true, "POST": true, "PUT": true, "TRACE": true, "QUERY": true,
}

// httpServerSpan builds a SERVER span following the OpenTelemetry HTTP
// semantic conventions. IDs and process are filled in by the caller.
func httpServerSpan(r *HTTPServerRequest) *Span {
	attrs := make([]attribute.KeyValue, 0, 16)
	method := r.Method
	if !knownMethods[method] {
		attrs = append(attrs, attribute.String("http.request.method_original", r.Method))
		method = "_OTHER"
	}
	attrs = append(attrs, attribute.String("http.request.method", method))

	scheme := "http"
	if r.TLS {
		scheme = "https"
	}
	attrs = append(attrs,
		attribute.String("url.path", r.Path),
		attribute.String("url.scheme", scheme),
	)
	if r.RawQuery != "" {
		attrs = append(attrs, attribute.String("url.query", r.RawQuery))
	}
	route := Route(r.Pattern)
	if route != "" {
		attrs = append(attrs, attribute.String("http.route", route))
	}

	status := r.Status
	if r.ResponseKnown {
		if status == 0 {
			// The handler wrote nothing; net/http answers 200 when it finishes.
			status = 200
		}
		attrs = append(attrs, attribute.Int("http.response.status_code", status))
		attrs = append(attrs, attribute.Int64("http.response.body.size", r.ResponseBodySize))
	}
	if r.ContentLength > 0 {
		attrs = append(attrs, attribute.Int64("http.request.body.size", r.ContentLength))
	}

	host, port := splitHostPort(r.Host)
	if host == "" && r.Local.IsValid() {
		host = r.Local.Addr().String()
	}
	if port == 0 && r.Local.IsValid() {
		port = int(r.Local.Port())
	}
	if host != "" {
		attrs = append(attrs, attribute.String("server.address", host))
	}
	if port != 0 {
		attrs = append(attrs, attribute.Int("server.port", port))
	}
	if r.Local.IsValid() {
		attrs = append(attrs,
			attribute.String("network.local.address", r.Local.Addr().String()),
			attribute.Int("network.local.port", int(r.Local.Port())),
		)
	}
	if peer, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip := peer.Addr().Unmap().String()
		attrs = append(attrs,
			attribute.String("client.address", ip),
			attribute.String("network.peer.address", ip),
			attribute.Int("network.peer.port", int(peer.Port())),
		)
	}
	if v := protocolVersion(r.ProtoMajor, r.ProtoMinor); v != "" {
		attrs = append(attrs, attribute.String("network.protocol.version", v))
	}
	if r.Truncated {
		attrs = append(attrs, attribute.Bool("zerotrace.truncated", true))
	}

	s := &Span{
		Name:       spanName(method, route),
		Kind:       trace.SpanKindServer,
		Start:      r.Start,
		End:        r.End,
		Attributes: attrs,
	}
	if r.ResponseKnown && status >= 500 {
		s.Status = codes.Error
		s.Attributes = append(s.Attributes, attribute.String("error.type", strconv.Itoa(status)))
	}
	return s
}

func spanName(method, route string) string {
	if method == "_OTHER" {
		method = "HTTP"
	}
	if route == "" {
		return method
	}
	return method + " " + route
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
	p = strings.TrimSuffix(p, "{$}")
	return p
}

func protocolVersion(major, minor int) string {
	switch {
	case major == 0 && minor == 0:
		return ""
	case major >= 2 && minor == 0:
		return strconv.Itoa(major)
	default:
		return strconv.Itoa(major) + "." + strconv.Itoa(minor)
	}
}

// splitHostPort splits a Host header into host and port, tolerating a
// missing port and IPv6 brackets.
func splitHostPort(hostport string) (string, int) {
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
