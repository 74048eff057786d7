package redact

import "strings"

// scanAt handles everything anchored on '@': email addresses and Go MySQL
// DSNs (user:pass@tcp(host:3306)/db).
func (r *Redactor) scanAt(s string, m *spans) {
	for at := 0; at < len(s); at++ {
		k := strings.IndexByte(s[at:], '@')
		if k < 0 {
			return
		}
		at += k
		if r.on&detDSNPassword != 0 {
			if a, b, ok := mysqlDSNPassword(s, at); ok {
				m.add(a, b)
				continue
			}
		}
		if r.on&detEmail != 0 {
			if a, b, ok := email(s, at); ok {
				m.add(a, b)
			}
		}
	}
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// fileExtensions are endings that look like top-level domains but name
// files, as in logo@2x.png; none of them is a real TLD.
var fileExtensions = [...]string{
	"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif",
	"tiff", "css", "js", "mjs", "map", "html", "htm", "json", "txt", "xml",
	"woff", "ttf", "eot", "pdf", "csv", "yaml", "yml", "md",
}

// email returns the address around the '@' at index at, if there is one.
func email(s string, at int) (int, int, bool) {
	ls := at
	for ls > 0 && isLocalChar(s[ls-1]) {
		ls--
	}
	for ls < at && s[ls] == '.' {
		ls++
	}
	if ls == at || inAuthority(s, ls) {
		return 0, 0, false
	}
	de := at + 1
	for de < len(s) && (isAlnum(s[de]) || s[de] == '-' || s[de] == '.') {
		de++
	}
	for de > at+1 && (s[de-1] == '.' || s[de-1] == '-') {
		de--
	}
	domain := s[at+1 : de]
	if domain == "" || !isAlnum(domain[0]) {
		return 0, 0, false
	}
	dot := strings.LastIndexByte(domain, '.')
	if dot <= 0 || strings.Contains(domain, "..") || strings.Contains(domain, Marker) {
		// A marker in the domain is an earlier match (a JWT after a dot);
		// taking it for a label would let a second pass redact more.
		return 0, 0, false
	}
	tld := domain[dot+1:]
	if len(tld) < 2 {
		return 0, 0, false
	}
	for i := 0; i < len(tld); i++ {
		if !isAlpha(tld[i]) {
			return 0, 0, false
		}
	}
	for _, ext := range fileExtensions {
		if equalFold(tld, ext) {
			return 0, 0, false
		}
	}
	return ls, de, true
}

// maxAuthority bounds the backward and forward searches around an '@' or a
// "://". Real userinfo is far shorter, and without a bound a value made of
// many '@'s would take quadratic time.
const maxAuthority = 256

// inAuthority reports whether index i is inside the authority of a URL,
// i.e. follows "//" with no '/' or space in between. There an '@' ends the
// userinfo (https://user@host), which is no email address, and taking it for
// one would swallow the host.
func inAuthority(s string, i int) bool {
	for j := i - 1; j >= 0 && i-j <= maxAuthority; j-- {
		switch c := s[j]; {
		case c == '/':
			return j > 0 && s[j-1] == '/'
		case c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>':
			return false
		}
	}
	return false
}

// mysqlDSNPassword finds the password of a DSN in the form of the Go MySQL
// driver, user:password@tcp(host)/db, given the '@' at index at.
func mysqlDSNPassword(s string, at int) (int, int, bool) {
	rest := s[at+1:]
	if !strings.HasPrefix(rest, "tcp(") && !strings.HasPrefix(rest, "tcp4(") &&
		!strings.HasPrefix(rest, "tcp6(") && !strings.HasPrefix(rest, "unix(") {
		return 0, 0, false
	}
	ts := at
	for ts > 0 && at-ts < maxAuthority {
		c := s[ts-1]
		if c <= ' ' || c == '"' || c == '\'' || c == '=' || c == '<' || c == '>' || c == '/' {
			break
		}
		ts--
	}
	colon := strings.IndexByte(s[ts:at], ':')
	if colon < 0 {
		return 0, 0, false
	}
	return ts + colon + 1, at, ts+colon+1 < at
}

// scanURLPasswords finds scheme://user:password@host in free text.
func scanURLPasswords(s string, m *spans) {
	for off := 0; off < len(s); {
		k := strings.Index(s[off:], "://")
		if k < 0 {
			return
		}
		p := off + k + 3
		if a, b, ok := userinfoPassword(s, p); ok {
			m.add(a, b)
		}
		off = p
	}
}

// userinfoPassword returns the password of the URL authority starting at
// index p (just after "://"). The userinfo ends at the last '@' before the
// path; when the text after the first ':' is not a port, the password may
// hold a '/' or '?' (unencoded, as people write them), so the '@' is then
// searched up to the end of the token.
func userinfoPassword(s string, p int) (int, int, bool) {
	colon, at := -1, -1
	e := p
	for ; e < len(s); e++ {
		c := s[e]
		if c == '/' || c == '?' || c == '#' || c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' {
			break
		}
		if c == ':' && colon < 0 {
			colon = e
		}
		if c == '@' {
			at = e
		}
	}
	if colon < 0 {
		return 0, 0, false
	}
	if at < 0 || at < colon {
		if colon+1 < e && allDigits(s[colon+1:e]) || colon+1 == e {
			return 0, 0, false // host:port
		}
		// The last '@' of the token, as in the authority, so that a second
		// pass reads the same userinfo out of user:REDACTED@….
		for limit := e + maxAuthority; e < len(s) && e < limit; e++ {
			c := s[e]
			if c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' {
				break
			}
			if c == '@' {
				at = e
			}
		}
		if at < 0 {
			return 0, 0, false
		}
	}
	return colon + 1, at, colon+1 < at
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// keyFormat describes a vendor API key: a literal prefix and the shortest
// run of [A-Za-z0-9_-] that may follow it.
type keyFormat struct {
	prefix string
	min    int
}

// keyFormats lists the vendor keys recognised by prefix. AWS access key IDs
// have a fixed length and alphabet and are checked separately.
var keyFormats = [...]keyFormat{
	{"sk-", 20},         // OpenAI (sk-…, sk-proj-…), Anthropic (sk-ant-…)
	{"sk_live_", 16},    // Stripe
	{"sk_test_", 16},    // Stripe
	{"rk_live_", 16},    // Stripe restricted keys
	{"rk_test_", 16},    // Stripe restricted keys
	{"ghp_", 30},        // GitHub personal access token
	{"gho_", 30},        // GitHub OAuth token
	{"ghu_", 30},        // GitHub user-to-server token
	{"ghs_", 30},        // GitHub server-to-server token
	{"ghr_", 30},        // GitHub refresh token
	{"github_pat_", 20}, // GitHub fine-grained token
	{"glpat-", 20},      // GitLab personal access token
	{"xoxb-", 10},       // Slack bot token
	{"xoxp-", 10},       // Slack user token
	{"xoxa-", 10},       // Slack app token
	{"xoxe-", 10},       // Slack refresh token
	{"xoxr-", 10},       // Slack refresh token
	{"xoxs-", 10},       // Slack session token
	{"AIza", 30},        // Google API key
	{"npm_", 30},        // npm access token
}

// scanWords looks at the start of every word for the bearer scheme, JWTs and
// vendor API keys. A word here is a run of [A-Za-z0-9_-]; everything it
// matches starts at such a word's start.
func (r *Redactor) scanWords(s string, m *spans) {
	on := r.on
	for i := 0; i < len(s); {
		if !isToken(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && isToken(s[j]) {
			j++
		}
		word := s[i:j]
		switch c := s[i]; {
		case (c == 'b' || c == 'B') && on&detBearer != 0 && equalFold(word, "bearer"):
			if a, b, ok := bearerToken(s, j); ok {
				m.add(a, b)
				j = b
			}
		case c == 'e' && on&detJWT != 0 && strings.HasPrefix(word, "eyJ"):
			if e, ok := jwtEnd(s, i, j); ok {
				m.add(i, e)
				j = e
			}
		case c == 'A' && on&detAPIKey != 0 && len(word) == 20 &&
			(strings.HasPrefix(word, "AKIA") || strings.HasPrefix(word, "ASIA")):
			// AWS access key IDs: exactly 16 upper-case letters or digits.
			if upperAlnum(word[4:]) {
				m.add(i, j)
			}
		case on&detAPIKey != 0 && len(word) >= minKeyRun:
			for _, f := range keyFormats {
				if f.prefix[0] == c && len(word) >= len(f.prefix)+f.min && strings.HasPrefix(word, f.prefix) {
					m.add(i, j)
					break
				}
			}
		}
		i = j
	}
}

func upperAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) && s[i]-'A' >= 26 {
			return false
		}
	}
	return true
}

// isB64Token reports whether c belongs to RFC 6750's b64token alphabet.
func isB64Token(c byte) bool {
	return isToken(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '='
}

// bearerToken returns the credential after "Bearer" ending at index i.
// The separator may also be '+', a space in a form-encoded query value,
// which query values keep as it is (see percentDecode).
func bearerToken(s string, i int) (int, int, bool) {
	isSep := func(c byte) bool { return c == ' ' || c == '\t' || c == '+' }
	if i >= len(s) || !isSep(s[i]) {
		return 0, 0, false
	}
	for i < len(s) && isSep(s[i]) {
		i++
	}
	if e := markerEnd(s, i); e > 0 {
		return i, e, true
	}
	e := i
	for e < len(s) && isB64Token(s[e]) {
		e++
	}
	return i, e, e > i
}

// jwtEnd returns the end of the JWT (or JWE, up to five segments) whose
// first segment is s[i:j]. The header of the shortest real JWT,
// {"alg":"none"}, encodes to 19 characters.
func jwtEnd(s string, i, j int) (int, bool) {
	if j-i < 16 {
		return 0, false
	}
	e, dots := j, 0
	for dots < 4 && e < len(s) && s[e] == '.' {
		k := e + 1
		for k < len(s) && isToken(s[k]) {
			k++
		}
		if k-e-1 < 2 && dots != 1 {
			// Only the signature (third segment) may be empty, for alg
			// "none"; elsewhere a short segment means the dot ends a sentence.
			break
		}
		dots++
		e = k
	}
	if dots < 2 {
		return 0, false
	}
	return e, true
}
