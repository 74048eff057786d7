package redact

import "strings"

// Names that are sensitive wherever they occur inside a parameter name: they
// are long or odd enough that a substring hit is almost never innocent, and
// compact spellings (accesstoken, clientsecret, jsessionid) must match.
var secretSubstrings = [...]string{
	"password", "passwd", "passphrase", "pwd", "secret", "token", "apikey",
	"api_key", "api-key", "signature", "credential", "session", "sessid", "jwt",
	"authorization", "private_key", "privatekey", "access_key", "accesskey",
}

// Short names that are sensitive only as whole words, because as substrings
// they hit innocent names: key in monkey, auth in author, sig in design, otp
// in footprint, pass in compass.
var secretWords = [...]string{"pass", "key", "auth", "sig", "otp", "code"}

// The subset of names that the dsn_password detector covers on its own.
var (
	passwordSubstrings = [...]string{"password", "passwd", "passphrase", "pwd"}
	passwordWords      = [...]string{"pass"}
)

// notSecret lists common names that the rules above would flag although they
// never hold secrets. They are compared ignoring case and the separators
// _ - . so that status_code, statusCode and STATUS-CODE all match.
var notSecret = [...]string{
	"statuscode", "errorcode", "errcode", "countrycode", "currencycode",
	"zipcode", "postalcode", "postcode", "areacode", "regioncode", "langcode",
	"languagecode", "localecode", "exitcode", "returncode", "responsecode",
	"httpcode", "productcode", "itemcode", "colorcode", "isocode", "reasoncode",
}

// letterMask returns the set of ASCII letters in s, ignoring case, as bits
// 0-25. A name can contain a term only if it has all of the term's letters,
// which rejects almost every innocent name (page, limit, sort) with a few
// mask operations instead of dozens of substring searches.
func letterMask(s string) uint32 {
	var m uint32
	for i := 0; i < len(s); i++ {
		if c := lower(s[i]); c-'a' < 26 {
			m |= 1 << (c - 'a')
		}
	}
	return m
}

// nameTerm is a sensitive term with the letters it needs.
type nameTerm struct {
	text    string
	letters uint32
	word    bool // matched at word boundaries, not as a substring
}

func termsOf(substrings, words []string) []nameTerm {
	var out []nameTerm
	for _, t := range substrings {
		out = append(out, nameTerm{t, letterMask(t), false})
	}
	for _, t := range words {
		out = append(out, nameTerm{t, letterMask(t), true})
	}
	return out
}

var (
	secretTerms   = termsOf(secretSubstrings[:], secretWords[:])
	passwordTerms = termsOf(passwordSubstrings[:], passwordWords[:])
)

func (t *nameTerm) in(name string, letters uint32) bool {
	if t.letters&^letters != 0 {
		return false
	}
	if t.word {
		return containsWordFold(name, t.text)
	}
	return containsFold(name, t.text)
}

// sensitiveName reports whether the value of the parameter or key name must
// be redacted, given the enabled detectors.
func (r *Redactor) sensitiveName(name string, on uint16) bool {
	if name == "" || len(name) > 128 || on&pairDetectors == 0 {
		return false
	}
	letters := letterMask(name)
	terms := passwordTerms
	if on&detSensitiveParam != 0 {
		terms = secretTerms
	}
	hit := false
	for i := range terms {
		if terms[i].in(name, letters) {
			hit = true
			break
		}
	}
	if !hit && on&detSensitiveParam != 0 {
		for i := range r.extraTerms {
			if r.extraTerms[i].in(name, letters) {
				hit = true
				break
			}
		}
	}
	if !hit {
		return false
	}
	for _, w := range notSecret {
		if equalFoldNoSep(name, w) {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains sub, ignoring ASCII case; sub must
// be lower case. Names are short, so the naive search wins over anything
// that needs a lower-cased copy.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if lower(s[i]) == sub[0] && hasPrefixFold(s[i:], sub) {
			return true
		}
	}
	return false
}

// containsWordFold reports whether w occurs in s as a word: bounded on each
// side by the ends of s, a non-letter, or a change from lower to upper case
// (apiKey, keyId).
func containsWordFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if lower(s[i]) != w[0] || !hasPrefixFold(s[i:], w) {
			continue
		}
		j := i + len(w)
		before := i == 0 || !isAlpha(s[i-1]) || isLowerByte(s[i-1]) && isUpperByte(s[i])
		after := j == len(s) || !isAlpha(s[j]) || isLowerByte(s[j-1]) && isUpperByte(s[j])
		if before && after {
			return true
		}
	}
	return false
}

func isLowerByte(c byte) bool { return c-'a' < 26 }
func isUpperByte(c byte) bool { return c-'A' < 26 }

// equalFoldNoSep compares s with w ignoring ASCII case and the separators
// _ - . in s; w must be lower case without separators.
func equalFoldNoSep(s, w string) bool {
	j := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == '-' || c == '.' {
			continue
		}
		if j >= len(w) || lower(c) != w[j] {
			return false
		}
		j++
	}
	return j == len(w)
}

// isKeyChar reports whether c can be part of a parameter name in free text:
// user.password, X-Amz-Signature, user[password], --password.
func isKeyChar(c byte) bool {
	return isAlnum(c) || c == '_' || c == '-' || c == '.' || c == '[' || c == ']'
}

// scanEqPairs finds key=value pairs with a sensitive key: query strings in
// free text, DSNs (host=x password=y), cookies and command lines.
func (r *Redactor) scanEqPairs(s string, m *spans) {
	for p := 0; p < len(s); p++ {
		k := strings.IndexByte(s[p:], '=')
		if k < 0 {
			return
		}
		p += k
		if p+1 < len(s) && s[p+1] == '=' {
			p++ // a comparison, ==
			continue
		}
		if p > 0 && strings.IndexByte("!<>=:", s[p-1]) >= 0 {
			continue // !=, <=, >=, :=
		}
		ke := p
		for ke > 0 && p-ke < 4 && s[ke-1] == ' ' {
			ke--
		}
		spaced := ke < p
		ks := ke
		for ks > 0 && isKeyChar(s[ks-1]) {
			ks--
		}
		if ks == ke || !r.sensitiveName(s[ks:ke], r.on) {
			continue
		}
		vs := p + 1
		if spaced {
			// "password = x" is valid libpq; spaces after '=' count only
			// when there were spaces before it, so "token= x=y" is not read
			// as a token with value x.
			for vs < len(s) && vs-p < 5 && s[vs] == ' ' {
				vs++
			}
		}
		a, b := valueSpan(s, vs)
		m.add(a, b)
		// The value is gone as a whole, so nothing inside it needs a look;
		// skipping it also keeps token=token=token=… linear.
		p = max(p, b-1)
	}
}

// scanColonPairs finds "key": "value" JSON members and Key: value header or
// YAML lines with a sensitive key.
func (r *Redactor) scanColonPairs(s string, m *spans) {
	for p := 0; p < len(s); p++ {
		k := strings.IndexByte(s[p:], ':')
		if k < 0 {
			return
		}
		p += k
		ke := p
		for ke > 0 && p-ke < 4 && (s[ke-1] == ' ' || s[ke-1] == '\t') {
			ke--
		}
		vs := p + 1
		for vs < len(s) && vs-p < 8 && (s[vs] == ' ' || s[vs] == '\t') {
			vs++
		}
		if ke > 0 && s[ke-1] == '"' {
			// JSON, possibly escaped inside another JSON string: \"key\":\"v\".
			qe := ke - 1
			ks := qe
			for ks > 0 && qe-ks < 64 && s[ks-1] != '"' {
				ks--
			}
			if ks == 0 || s[ks-1] != '"' {
				continue
			}
			key := s[ks:qe]
			key = strings.TrimSuffix(key, `\`)
			if !r.sensitiveName(key, r.on) {
				continue
			}
			a, b := jsonValueSpan(s, vs)
			m.add(a, b)
			p = max(p, b-1)
			continue
		}
		// Header style needs a space after the colon, which keeps URLs
		// (https://), times (10:00) and tel:123 out.
		if ke != p || vs == p+1 {
			continue
		}
		ks := ke
		for ks > 0 && isKeyChar(s[ks-1]) {
			ks--
		}
		if ks == ke || !r.sensitiveName(s[ks:ke], r.on) {
			continue
		}
		a, b := valueSpan(s, vs)
		m.add(a, b)
		p = max(p, b-1)
	}
}

// valueSpan returns the extent of the value starting at vs: the contents of
// a quoted value ('…', "…", {…} as in ODBC), or an unquoted run up to
// whitespace, '&', ';', a double quote, '<' or ", ". Trailing closing
// punctuation is left out so that (token=x) keeps its parenthesis.
func valueSpan(s string, vs int) (int, int) {
	if vs >= len(s) {
		return vs, vs
	}
	switch c := s[vs]; c {
	case '"', '\'':
		return vs + 1, quotedEnd(s, vs+1, c)
	case '{':
		j := vs + 1
		for j < len(s) {
			if s[j] == '}' {
				if j+1 < len(s) && s[j+1] == '}' {
					j += 2
					continue
				}
				break
			}
			j++
		}
		return vs + 1, j
	}
	j := unquotedEnd(s, vs)
	if j < len(s) && s[j] == ' ' && isAuthScheme(s[vs:j]) {
		// "Authorization: Bearer x": keep the scheme, like the bearer
		// detector, and take the credential.
		cs := j + 1
		if ce := unquotedEnd(s, cs); ce > cs {
			return cs, ce
		}
	}
	return vs, j
}

func unquotedEnd(s string, vs int) int {
	if e := markerEnd(s, vs); e > 0 {
		return e
	}
	j := vs
	for j < len(s) {
		c := s[j]
		if c <= ' ' || c == '&' || c == ';' || c == '"' || c == '<' {
			break
		}
		if c == ',' && (j+1 == len(s) || s[j+1] == ' ') {
			break
		}
		j++
	}
	for j > vs && strings.IndexByte(".)]}>'", s[j-1]) >= 0 {
		j--
	}
	return j
}

// markerEnd returns the end of a Marker at index i that stands alone (no
// letter or digit follows), or 0. A value that starts with one has been
// redacted already; what follows it was outside the value, even though a
// second pass would read it as part of an unquoted value. That happens when
// the match that covered the value reached past its end, as a phone number
// with a space in it does in "token=000 0000000!". Without this rule the
// second pass would take "REDACTED!" for the value and change the text.
func markerEnd(s string, i int) int {
	e := i + len(Marker)
	if !strings.HasPrefix(s[i:], Marker) || e < len(s) && isAlnum(s[e]) {
		return 0
	}
	return e
}

func isAuthScheme(w string) bool {
	return equalFold(w, "bearer") || equalFold(w, "basic") || equalFold(w, "token")
}

// quotedEnd returns the index of the quote closing a string whose contents
// start at i, honouring backslash escapes and doubled quotes, or len(s) when
// it is unterminated, so that the rest of the text is treated as the value.
func quotedEnd(s string, i int, quote byte) int {
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
			continue
		case quote:
			if i+1 < len(s) && s[i+1] == quote {
				i += 2
				continue
			}
			return i
		}
		i++
	}
	return len(s)
}

// jsonValueSpan returns the extent of a JSON member value starting at vs:
// the contents of a string (also an escaped one, \"…\", inside another JSON
// string), or a scalar up to , } ] or whitespace. Literals true, false and
// null hold nothing worth hiding and are left.
func jsonValueSpan(s string, vs int) (int, int) {
	if vs >= len(s) {
		return vs, vs
	}
	if s[vs] == '"' {
		j := vs + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j > len(s) {
			j = len(s)
		}
		return vs + 1, j
	}
	if s[vs] == '\\' && vs+1 < len(s) && s[vs+1] == '"' {
		if e := strings.Index(s[vs+2:], `\"`); e >= 0 {
			return vs + 2, vs + 2 + e
		}
		return vs + 2, len(s)
	}
	if s[vs] == '{' || s[vs] == '[' {
		return vs, vs
	}
	if e := markerEnd(s, vs); e > 0 {
		return vs, e
	}
	j := vs
	for j < len(s) && s[j] > ' ' && s[j] != ',' && s[j] != '}' && s[j] != ']' {
		j++
	}
	if w := s[vs:j]; w == "true" || w == "false" || w == "null" {
		return vs, vs
	}
	return vs, j
}
