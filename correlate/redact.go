package correlate

import "strings"

// Redacted replaces a value that must not leave the agent.
const Redacted = "REDACTED"

// sensitiveParams are query parameter names whose values are always
// redacted. A name matches when, lowercased, it contains one of these.
var sensitiveParams = []string{
	"pass", "pwd", "token", "secret", "key", "auth", "sig", "signature",
	"credential", "session", "code", "jwt", "otp",
}

// RedactQuery replaces the values of sensitive parameters of a raw query
// string, keeping its shape (names, order, separators) so that the query
// stays readable. It never decodes or re-encodes anything else.
func RedactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i, part := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, _, hasValue := strings.Cut(part, "=")
		if hasValue && isSensitiveParam(name) {
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(Redacted)
			continue
		}
		b.WriteString(part)
	}
	return b.String()
}

func isSensitiveParam(name string) bool {
	lower := strings.ToLower(name)
	for _, s := range sensitiveParams {
		if strings.Contains(lower, s) {
			return true
		}
	}
	return false
}
