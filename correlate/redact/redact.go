package redact

import (
	"regexp"
	"strings"
)

// Marker replaces everything that is redacted. It has no digits, separators
// or punctuation, so no detector matches it and redaction is idempotent.
const Marker = "REDACTED"

// maxGrowth caps how many bytes longer than its input one redacted value may
// become. Each match grows by at most len(Marker)-1, so only a value crowded
// with tiny matches (k=a&k=a&…) reaches it; past the cap the rest of the value
// collapses into one marker, which is both short and safe.
const maxGrowth = 512

// minScanLen is the shortest value a built-in detector can match ("pwd=x").
const minScanLen = 5

// Built-in detectors, as bits of Redactor.on. The order is the order of
// builtinNames.
const (
	detPhone = 1 << iota
	detCNID
	detEmail
	detCard
	detBearer
	detAPIKey
	detJWT
	detURLPassword
	detDSNPassword
	detSensitiveParam

	allDetectors   = 1<<iota - 1
	digitDetectors = detPhone | detCNID | detCard
	pairDetectors  = detDSNPassword | detSensitiveParam
	wordDetectors  = detBearer | detAPIKey | detJWT
)

var builtinNames = [...]string{
	"phone", "cn_id", "email", "card", "bearer", "api_key", "jwt",
	"url_password", "dsn_password", "sensitive_param",
}

func detectorBit(name string) (uint16, bool) {
	for i, n := range builtinNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Redactor removes sensitive data from strings. It is immutable after New
// and safe for concurrent use. A nil *Redactor behaves like one built from
// the zero Config, so that a component that was never handed one still
// redacts rather than leaks.
type Redactor struct {
	enabled    bool
	on         uint16 // detector bits
	patterns   []compiledPattern
	extraTerms []nameTerm // Config.SensitiveParams
	active     []string
}

type compiledPattern struct {
	name string
	re   *regexp.Regexp
	repl string
}

// defaultRedactor stands in for a nil *Redactor.
var defaultRedactor = func() *Redactor {
	r, err := New(Config{})
	if err != nil {
		panic("redact: default config invalid: " + err.Error())
	}
	return r
}()

// Enabled reports whether the Redactor changes anything at all. Callers can
// use it to skip work, such as walking attributes, when redaction is off.
func (r *Redactor) Enabled() bool {
	if r == nil {
		r = defaultRedactor
	}
	return r.enabled
}

// Detectors returns the names of the detectors in use: the enabled built-in
// ones followed by the configured patterns.
func (r *Redactor) Detectors() []string {
	if r == nil {
		r = defaultRedactor
	}
	if !r.enabled {
		return nil
	}
	out := make([]string, len(r.active))
	copy(out, r.active)
	return out
}

// String redacts free text, such as an attribute value. When nothing matches
// it returns s itself without allocating.
func (r *Redactor) String(s string) string {
	if r == nil {
		r = defaultRedactor
	}
	if !r.enabled || s == "" {
		return s
	}
	var m spans
	r.collect(s, &m)
	return r.finish(s, &m, modeText)
}

// URLQuery redacts a raw (still percent-encoded) query string. Names, order
// and separators are kept. The value of a sensitive parameter is replaced
// whole; other values are searched by the detectors, and a percent-encoded
// value with a hit inside (john%40example.com) is replaced whole, since the
// positions of the hit in the encoded text are not worth computing.
func (r *Redactor) URLQuery(rawQuery string) string {
	if r == nil {
		r = defaultRedactor
	}
	if !r.enabled || rawQuery == "" {
		return rawQuery
	}
	var m spans
	r.collectQuery(rawQuery, &m)
	return r.finish(rawQuery, &m, modeQuery)
}

// URL redacts a full or relative URL: the password in its userinfo, detector
// hits in its path, its query as URLQuery does, and its fragment (as a query
// when it holds key=value pairs, for OAuth's #access_token=…).
func (r *Redactor) URL(u string) string {
	if r == nil {
		r = defaultRedactor
	}
	if !r.enabled || u == "" {
		return u
	}
	var m spans
	r.collectURL(u, &m)
	return r.finish(u, &m, modeURL)
}

// What a value is, which decides how it is searched.
const (
	modeText = iota
	modeQuery
	modeURL
)

// maxPasses bounds how often a value is redacted in a row.
const maxPasses = 3

// finish applies the built-in matches and then the configured patterns.
//
// When a pass changed something, the result is searched again, until it is
// stable: removing one match can remove the context that kept a neighbour
// from matching (the "//" that made user@host a URL userinfo rather than an
// email address), and every output must be a fixed point, so that a value
// redacted twice, by two stages of the agent, reads the same. Only values
// that had a match pay for it, and the extra pass almost never finds any.
func (r *Redactor) finish(s string, m *spans, mode int) string {
	out := s
	limit := len(s) + maxGrowth
	if m.n > 0 {
		var changed bool
		out, changed = apply(s, m.all(), limit)
		for pass := 1; changed && pass < maxPasses; pass++ {
			var again spans
			switch mode {
			case modeText:
				r.collect(out, &again)
			case modeQuery:
				r.collectQuery(out, &again)
			case modeURL:
				r.collectURL(out, &again)
			}
			if again.n == 0 {
				break
			}
			out, changed = apply(out, again.all(), limit)
		}
	}
	for i := range r.patterns {
		out = r.patterns[i].apply(out, len(s))
	}
	return out
}

func (r *Redactor) collectURL(u string, m *spans) {
	end := len(u)
	frag := strings.IndexByte(u, '#')
	if frag >= 0 {
		end = frag
	}
	query := strings.IndexByte(u[:end], '?')
	pathEnd := end
	if query >= 0 {
		pathEnd = query
	}
	pathStart := 0
	if i := strings.Index(u[:pathEnd], "://"); i > 0 && isScheme(u[:i]) {
		a := i + 3
		ae := a
		for ae < pathEnd && u[ae] != '/' {
			ae++
		}
		if r.on&detURLPassword != 0 {
			if ps, pe, ok := userinfoPassword(u, a); ok && pe <= pathEnd {
				m.add(ps, pe)
				if pe > ae {
					// The password held a '/', so the path starts later.
					for ae = pe; ae < pathEnd && u[ae] != '/'; ae++ {
					}
				}
			}
		}
		pathStart = ae
	}
	// Path segments are searched one by one, decoded like query values, so
	// that /users/john%40example.com is caught too.
	for start := pathStart; start < pathEnd; {
		end := strings.IndexByte(u[start:pathEnd], '/')
		if end < 0 {
			end = pathEnd
		} else {
			end += start
		}
		m.base = start
		r.collectValue(u[start:end], m)
		start = end + 1
	}
	m.base = 0
	if query >= 0 {
		m.base = query + 1
		r.collectQuery(u[query+1:end], m)
		m.base = 0
	}
	if frag >= 0 && frag+1 < len(u) {
		m.base = frag + 1
		if strings.IndexByte(u[frag+1:], '=') >= 0 {
			r.collectQuery(u[frag+1:], m)
		} else {
			r.collect(u[frag+1:], m)
		}
		m.base = 0
	}
}

func isScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// collectQuery finds matches in a raw query string. It relies on m.base
// being the offset of q in the string that will be rewritten.
func (r *Redactor) collectQuery(q string, m *spans) {
	base := m.base
	for start := 0; start <= len(q); {
		end := strings.IndexByte(q[start:], '&')
		if end < 0 {
			end = len(q)
		} else {
			end += start
		}
		part := q[start:end]
		if eq := strings.IndexByte(part, '='); eq >= 0 {
			name, val := part[:eq], part[eq+1:]
			if val != "" && r.on&pairDetectors != 0 && r.encodedNameIsSensitive(name) {
				m.add(start+eq+1, end)
			} else {
				m.base = base + start
				r.collectValue(name, m)
				m.base = base + start + eq + 1
				r.collectValue(val, m)
			}
		} else {
			m.base = base + start
			r.collectValue(part, m)
		}
		m.base = base
		start = end + 1
	}
}

// collectValue runs the detectors on one query value or name. Percent-encoded
// values are decoded first, into a stack buffer when small.
func (r *Redactor) collectValue(v string, m *spans) {
	if len(v) < minScanLen {
		return
	}
	if strings.IndexByte(v, '%') < 0 {
		r.collect(v, m)
		return
	}
	var stack [256]byte
	dec := percentDecode(stack[:0], v)
	if len(dec) < minScanLen || !scanFeatures(dec).worthScanning(r.on) {
		return
	}
	var inner spans
	ds := string(dec)
	r.collect(ds, &inner)
	if changes(ds, inner.all()) {
		m.add(0, len(v))
	}
}

func (r *Redactor) encodedNameIsSensitive(name string) bool {
	if strings.IndexByte(name, '%') < 0 {
		return r.sensitiveName(name, r.on)
	}
	var stack [64]byte
	return r.sensitiveName(string(percentDecode(stack[:0], name)), r.on)
}

// percentDecode appends the %XX-decoded form of s to dst. Malformed escapes
// are kept as they are, and '+' stays '+' because a literal '+' (as in
// +8613812345678) is far more common in captured queries than form-encoded
// spaces, and it matters to the phone detector.
func percentDecode(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// collect runs every enabled built-in detector whose trigger bytes occur in
// s. The prescan is the whole cost of a clean value.
func (r *Redactor) collect(s string, m *spans) {
	if len(s) < minScanLen {
		return
	}
	f := scanFeatures(s)
	if !f.worthScanning(r.on) {
		return
	}
	on := r.on
	if on&digitDetectors != 0 && f.digits >= minDigits {
		r.scanDigits(s, m)
	}
	if f.set&kAt != 0 && on&(detEmail|detDSNPassword) != 0 {
		r.scanAt(s, m)
	}
	if f.set&kColon != 0 {
		if on&detURLPassword != 0 && f.set&kSlash != 0 {
			scanURLPasswords(s, m)
		}
		if on&pairDetectors != 0 && f.set&(kQuote|kSpace) != 0 {
			r.scanColonPairs(s, m)
		}
	}
	if f.set&kEq != 0 && on&pairDetectors != 0 {
		r.scanEqPairs(s, m)
	}
	if on&wordDetectors != 0 && (f.maxRun >= minKeyRun || f.set&kSpace != 0 && mayHaveBearer(s)) {
		r.scanWords(s, m)
	}
}

// mayHaveBearer is a quick filter for the bearer scheme in text with no
// key-length word: it saves the word scan on every sentence with a space.
func mayHaveBearer(s string) bool {
	return strings.Contains(s, "earer") || strings.Contains(s, "EARER")
}

// Byte classes for the prescan.
const (
	kToken = 1 << iota // [A-Za-z0-9_-]: the alphabet of keys and JWT segments
	kDigit
	kAt
	kEq
	kColon
	kSpace
	kQuote
	kSlash
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if isAlnum(b) || b == '_' || b == '-' {
			t[c] |= kToken
		}
		if isDigit(b) {
			t[c] |= kDigit
		}
	}
	t['@'] |= kAt
	t['='] |= kEq
	t[':'] |= kColon
	t[' '] |= kSpace
	t['\t'] |= kSpace
	t['"'] |= kQuote
	t['/'] |= kSlash
	return t
}()

// minDigits is the fewest digits any phone, card or ID number has.
const minDigits = 8

// minKeyRun is the shortest unbroken [A-Za-z0-9_-] run of an API key or a
// JWT segment; values without one skip the word scanner unless they have a
// space (for "Bearer x").
const minKeyRun = 15

type features struct {
	set    uint8
	digits int
	maxRun int
}

func scanFeatures[T string | []byte](s T) features {
	var f features
	run := 0
	for i := 0; i < len(s); i++ {
		// Branch-free: which bytes come is unpredictable, and this loop is
		// the whole cost of a clean value.
		k := byteClass[s[i]]
		f.set |= k
		run = (run + 1) * int(k&kToken)
		f.maxRun = max(f.maxRun, run)
		f.digits += int(k>>1) & 1
	}
	return f
}

// worthScanning reports whether any enabled detector could match a value
// with these features.
func (f features) worthScanning(on uint16) bool {
	return on&digitDetectors != 0 && f.digits >= minDigits ||
		f.set&(kAt|kEq|kColon) != 0 ||
		on&wordDetectors != 0 && (f.maxRun >= minKeyRun || f.set&kSpace != 0)
}

// span is a byte range to replace with Marker.
type span struct{ start, end int }

// spans collects matches. The first few live in an array inside the
// struct, which callers keep on their stack, so a value with a handful of
// matches costs no allocation for bookkeeping. base is added to every
// range, letting detectors work on a substring.
type spans struct {
	fixed [16]span
	n     int
	more  []span
	base  int
}

func (m *spans) add(start, end int) {
	if end <= start {
		return
	}
	sp := span{m.base + start, m.base + end}
	if m.n < len(m.fixed) {
		m.fixed[m.n] = sp
		m.n++
		return
	}
	m.more = append(m.more, sp)
}

// all returns every span collected, in no particular order.
func (m *spans) all() []span {
	if len(m.more) == 0 {
		return m.fixed[:m.n]
	}
	return append(m.fixed[:m.n:m.n], m.more...)
}

// normalize sorts the spans by start and merges overlapping and touching
// ones, so that every byte covered by any detector is removed and adjacent
// matches leave a single marker.
func normalize(l []span) []span {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j].start < l[j-1].start; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
	w := 0
	for _, sp := range l {
		if w > 0 && sp.start <= l[w-1].end {
			if sp.end > l[w-1].end {
				l[w-1].end = sp.end
			}
			continue
		}
		l[w] = sp
		w++
	}
	return l[:w]
}

// changes normalises l and reports whether replacing it would change s,
// i.e. whether some span is not already the marker.
func changes(s string, l []span) bool {
	for _, sp := range normalize(l) {
		if s[sp.start:sp.end] != Marker {
			return true
		}
	}
	return false
}

// apply replaces the spans of s with Marker and reports whether that
// changed anything; if not, it returns s itself. limit caps the length of
// the result: from the match that would pass it on, a single marker stands
// for the rest of the value.
func apply(s string, l []span, limit int) (string, bool) {
	l = normalize(l)
	size, changed := len(s), false
	for _, sp := range l {
		if s[sp.start:sp.end] != Marker {
			changed = true
		}
		size += len(Marker) - (sp.end - sp.start)
	}
	if !changed {
		return s, false
	}
	var b strings.Builder
	b.Grow(min(size, limit+len(Marker)))
	last := 0
	for _, sp := range l {
		b.WriteString(s[last:sp.start])
		b.WriteString(Marker)
		if b.Len()+len(s)-sp.end > limit {
			last = len(s)
			break
		}
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// apply runs one user pattern over s. origLen is the length of the value
// before any redaction, against which growth is budgeted.
func (p *compiledPattern) apply(s string, origLen int) string {
	locs := p.re.FindAllStringSubmatchIndex(s, -1)
	if locs == nil {
		return s
	}
	var b []byte
	last := 0
	for _, loc := range locs {
		if loc[1] == loc[0] {
			// An empty match would insert text between every pair of bytes.
			continue
		}
		b = append(b, s[last:loc[0]]...)
		before := len(b)
		b = p.re.ExpandString(b, p.repl, s, loc)
		last = loc[1]
		if len(b)+len(s)-last > origLen+maxGrowth {
			// Over budget: one marker stands for everything that is left.
			b = append(b[:before], Marker...)
			last = len(s)
			break
		}
	}
	if b == nil {
		return s
	}
	b = append(b, s[last:]...)
	if string(b) == s {
		return s
	}
	return string(b)
}

func isDigit(c byte) bool { return c-'0' < 10 }
func isAlpha(c byte) bool { return (c|0x20)-'a' < 26 }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isWord reports whether c continues a word for boundary purposes.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

// isToken reports whether c belongs to the base64url alphabet that keys and
// JWT segments are written in.
func isToken(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

func isHex(c byte) bool { return isDigit(c) || (c|0x20)-'a' < 6 }

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return (c | 0x20) - 'a' + 10
}

func lower(c byte) byte {
	if c-'A' < 26 {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold reports whether s starts with prefix, ignoring ASCII case;
// prefix must be lower case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(s[i]) != prefix[i] {
			return false
		}
	}
	return true
}

func equalFold(s, lowerWord string) bool {
	return len(s) == len(lowerWord) && hasPrefixFold(s, lowerWord)
}
