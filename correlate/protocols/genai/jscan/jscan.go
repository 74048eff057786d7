// Package jscan reads a few fields out of JSON documents that arrive in
// pieces: a model call's request and response bodies, which can be
// megabytes of prompt around the few bytes that matter (the model, the
// token counts).
//
// A Scanner is fed a body in pieces of any size and split, looks at each
// byte once and keeps none of what it skips: its memory is a fixed few
// hundred bytes (the current path, key and value) whatever the document.
// It reports the values found at the paths it was told to watch, as they
// end; a scalar's text is kept up to a bound and marked cut beyond it, a
// watched text (a message's content) is handed over in fragments as it
// goes. Anything that is not JSON stops it once and costs nothing after.
//
// Tail reads the end of a document whose start was never seen (the last
// bytes of a body larger than what was captured): from the end, where a
// string's bounds are exact, it finds a place outside any string, rebuilds
// what encloses it, and scans forward from there.
package jscan

import (
	"bytes"
	"unicode/utf8"
)

// Bounds of what a Scanner keeps.
const (
	// MaxDepth is the deepest container whose members are reported;
	// deeper ones are skipped (up to 64 more levels are followed).
	MaxDepth = 16
	// MaxValue is how much of a watched value is kept (a text is handed
	// over in fragments of at most this much).
	MaxValue = 256
	maxKey   = 64
	maxPath  = 192
)

// Kind is what a reported value is.
type Kind uint8

// Kinds of values.
const (
	String Kind = iota + 1
	Number
	Bool
	Null
	// Object and Array: a watched container starts, or with End set,
	// ends.
	Object
	Array
	// Text: a fragment of a watched text string; End is set on the last.
	Text
)

// Event is one watched value, or a part of one.
type Event struct {
	// ID is the number the path was watched with.
	ID int
	// Kind is what the value is.
	Kind Kind
	// Value is a string's unescaped text, a number's or a literal's text
	// (nil for containers). It is only valid during the call.
	Value []byte
	// Cut: a String longer than MaxValue, of which Value is the start.
	Cut bool
	// End: the last fragment of a Text, or a container's end.
	End bool
	// Path is where the value is (with "?" for the keys Tail could not
	// see). It is only valid during the call.
	Path []byte
}

// Handler is told of the watched values a Scanner finds.
type Handler interface {
	Field(ev *Event)
}

// Paths is a set of watched paths: keys joined by dots, "[]" standing for
// any element of an array ("choices.[].delta.content"). Build it once; it
// is then only read, by any number of scanners at once.
type Paths struct {
	byPath map[string]watch
	depth  int // the most segments of a watched path
	list   []watched
}

type watch struct {
	id   int
	text bool
	ok   bool
}

type watched struct {
	segs [][]byte
	w    watch
}

// NewPaths returns an empty set.
func NewPaths() *Paths { return &Paths{byPath: map[string]watch{}} }

// Value watches the values at path (scalars, and the start and end of
// containers), reported with id.
func (p *Paths) Value(path string, id int) *Paths { return p.add(path, watch{id: id, ok: true}) }

// Text watches the strings at path as text, handed over in fragments
// however long they are; other values there are reported as by Value.
func (p *Paths) Text(path string, id int) *Paths {
	return p.add(path, watch{id: id, text: true, ok: true})
}

func (p *Paths) add(path string, w watch) *Paths {
	p.byPath[path] = w
	segs := bytes.Split([]byte(path), []byte("."))
	p.depth = max(p.depth, len(segs))
	p.list = append(p.list, watched{segs: segs, w: w})
	return p
}

// lookup finds the watch of a path; wild paths (from Tail) have unknown
// keys, "?", which match any key.
func (p *Paths) lookup(path []byte, wild bool) watch {
	if w, ok := p.byPath[string(path)]; ok {
		return w
	}
	if !wild || bytes.IndexByte(path, '?') < 0 {
		return watch{}
	}
	n := bytes.Count(path, []byte(".")) + 1
	for _, c := range p.list {
		if len(c.segs) == n && wildMatch(path, c.segs) {
			return c.w
		}
	}
	return watch{}
}

func wildMatch(path []byte, segs [][]byte) bool {
	for _, seg := range segs {
		got, rest, _ := bytes.Cut(path, []byte("."))
		path = rest
		if bytes.Equal(got, seg) {
			continue
		}
		if len(got) != 1 || got[0] != '?' || bytes.Equal(seg, []byte("[]")) {
			return false
		}
	}
	return true
}

type state uint8

const (
	stValue      state = iota // a value
	stValueOrEnd              // a value or ']' (just after '[')
	stKey                     // a key (after ',' in an object)
	stKeyOrEnd                // a key or '}' (just after '{')
	stColon                   // ':' after a key
	stAfter                   // ',' or a closing bracket, or at depth 0 another document
	stString                  // inside a key or a string value
	stEscape                  // after a backslash in a string
	stUnicode                 // in the four digits of \u
	stLiteral                 // inside a number, true, false or null
	stBroken                  // not JSON: the rest is ignored
)

// frame is one open container.
type frame struct {
	obj     bool
	watched bool   // its start was reported: report its end
	id      int    // its watch's id
	plen    uint16 // the path's length up to the container itself
}

// Scanner follows a sequence of JSON documents (one body, or NDJSON lines,
// or SSE data) across Feed calls. The zero Scanner watches nothing; Reset
// gives it paths and a handler.
type Scanner struct {
	paths *Paths
	h     Handler
	wild  bool // paths may hold unknown keys (Tail)

	st    state
	isKey bool
	cur   watch // the watch of the value being scanned
	stack [MaxDepth]frame
	depth int
	over  int    // containers deeper than MaxDepth, skipped
	kinds uint64 // their kinds, innermost in bit 0 (1: object)

	path []byte // into pathBuf
	key  []byte // into keyBuf
	kcut bool
	val  []byte // into valBuf
	vcut bool
	// In \uXXXX: the digits so far, and a high surrogate waiting for its
	// low half.
	u, nu, hi rune

	docs int
	ev   Event

	pathBuf [maxPath]byte
	keyBuf  [maxKey]byte
	valBuf  [MaxValue + utf8.UTFMax]byte
}

// Reset readies s for a new sequence of documents, watching paths and
// telling h (nil paths or h: nothing is reported).
func (s *Scanner) Reset(paths *Paths, h Handler) {
	s.paths, s.h, s.wild = paths, h, false
	s.st, s.isKey, s.cur = stValue, false, watch{}
	s.depth, s.over, s.kinds = 0, 0, 0
	s.path, s.key, s.val = s.pathBuf[:0], s.keyBuf[:0], s.valBuf[:0]
	s.kcut, s.vcut = false, false
	s.u, s.nu, s.hi = 0, 0, 0
	s.docs = 0
}

// Broken says whether the input stopped being JSON.
func (s *Scanner) Broken() bool { return s.st == stBroken }

// Docs is how many complete top-level documents were seen.
func (s *Scanner) Docs() int { return s.docs }

// InDoc says whether the input so far ends inside a document.
func (s *Scanner) InDoc() bool {
	switch s.st {
	case stBroken:
		return false
	case stString, stEscape, stUnicode, stLiteral:
		return true
	}
	return s.depth > 0 || s.over > 0 || s.st == stColon
}

// Fail stops s, as if its input had stopped being JSON (a feeder that lost
// its place in the input).
func (s *Scanner) Fail() { s.st = stBroken }

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// Feed scans p, the next bytes of the input.
func (s *Scanner) Feed(p []byte) {
	for i := 0; i < len(p); {
		switch s.st {
		case stBroken:
			return
		case stString:
			i = s.inString(p, i)
		case stEscape:
			s.escape(p[i])
			i++
		case stUnicode:
			s.unicode(p[i])
			i++
		case stLiteral:
			c := p[i]
			if isSpace(c) || c == ',' || c == '}' || c == ']' {
				s.endLiteral()
				continue // the byte is the next state's
			}
			if len(s.val) < MaxValue {
				s.val = append(s.val, c)
			} else {
				s.vcut = true
			}
			i++
		default:
			c := p[i]
			i++
			if !isSpace(c) {
				s.token(c)
			}
		}
	}
	if s.st == stString && !s.isKey && s.cur.text && len(s.val) > 0 {
		// A text's fragments never span calls: the caller's bytes may
		// be gone by the next one.
		s.emitText(false)
	}
}

// inString scans string bytes from p[i], up to the closing quote or an
// escape, and returns where it stopped.
func (s *Scanner) inString(p []byte, i int) int {
	rest := p[i:]
	n := bytes.IndexByte(rest, '"')
	if n < 0 {
		n = len(rest)
	}
	if b := bytes.IndexByte(rest[:n], '\\'); b >= 0 {
		n = b
	}
	if n > 0 {
		s.flushSurrogate()
		s.addString(rest[:n])
	}
	i += n
	if i == len(p) {
		return i
	}
	if p[i] == '\\' {
		s.st = stEscape
	} else {
		s.endString()
	}
	return i + 1
}

// addString keeps b as part of the string being scanned, when it is kept.
func (s *Scanner) addString(b []byte) {
	switch {
	case s.isKey:
		if room := maxKey - len(s.key); len(b) > room {
			s.key, s.kcut = append(s.key, b[:room]...), true
		} else {
			s.key = append(s.key, b...)
		}
	case !s.cur.ok:
	case s.cur.text:
		for len(b) > 0 {
			room := MaxValue - len(s.val)
			if room == 0 {
				s.emitText(false)
				room = MaxValue
			}
			k := min(room, len(b))
			s.val = append(s.val, b[:k]...)
			b = b[k:]
		}
	default:
		if room := MaxValue - len(s.val); len(b) > room {
			s.val, s.vcut = append(s.val, b[:room]...), true
		} else {
			s.val = append(s.val, b...)
		}
	}
}

func (s *Scanner) escape(c byte) {
	s.st = stString
	switch c {
	case '"', '\\', '/':
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		s.st, s.u, s.nu = stUnicode, 0, 0
		return
	default:
		s.st = stBroken
		return
	}
	s.flushSurrogate()
	s.addString([]byte{c})
}

func (s *Scanner) unicode(c byte) {
	var d rune
	switch {
	case '0' <= c && c <= '9':
		d = rune(c - '0')
	case 'a' <= c && c <= 'f':
		d = rune(c-'a') + 10
	case 'A' <= c && c <= 'F':
		d = rune(c-'A') + 10
	default:
		s.st = stBroken
		return
	}
	s.u = s.u<<4 | d
	if s.nu++; s.nu < 4 {
		return
	}
	s.st = stString
	r := s.u
	switch {
	case 0xd800 <= r && r < 0xdc00:
		s.flushSurrogate()
		s.hi = r // wait for the low half
		return
	case 0xdc00 <= r && r < 0xe000:
		if s.hi != 0 {
			r = 0x10000 + (s.hi-0xd800)<<10 + (r - 0xdc00)
			s.hi = 0
		} else {
			r = utf8.RuneError
		}
	default:
		s.flushSurrogate()
	}
	s.addRune(r)
}

// flushSurrogate writes a high surrogate that no low one followed.
func (s *Scanner) flushSurrogate() {
	if s.hi != 0 {
		s.hi = 0
		s.addRune(utf8.RuneError)
	}
}

func (s *Scanner) addRune(r rune) {
	var b [utf8.UTFMax]byte
	n := utf8.EncodeRune(b[:], r)
	if !s.isKey && s.cur.ok && !s.cur.text && len(s.val)+n > MaxValue {
		// A rune is kept whole or not at all.
		s.vcut = true
		return
	}
	s.addString(b[:n])
}

// token handles a structural byte or the first byte of a value.
func (s *Scanner) token(c byte) {
	switch s.st {
	case stValue, stValueOrEnd:
		if c == ']' && s.st == stValueOrEnd {
			s.pop(false)
			return
		}
		s.startValue(c)
	case stKey, stKeyOrEnd:
		switch {
		case c == '"':
			s.st, s.isKey, s.key, s.kcut = stString, true, s.keyBuf[:0], false
		case c == '}' && s.st == stKeyOrEnd:
			s.pop(true)
		default:
			s.st = stBroken
		}
	case stColon:
		if c != ':' {
			s.st = stBroken
			return
		}
		s.st = stValue
	case stAfter:
		switch c {
		case ',':
			s.next()
		case '}':
			s.pop(true)
		case ']':
			s.pop(false)
		default:
			if s.depth == 0 && s.over == 0 {
				// Another document (NDJSON, or data lines).
				s.setElem(false)
				s.startValue(c)
				return
			}
			s.st = stBroken
		}
	}
}

// next moves past a ',' to the container's next member or element.
func (s *Scanner) next() {
	switch {
	case s.over > 0:
		s.st = stValue
		if s.kinds&1 == 1 {
			s.st = stKey
		}
	case s.depth == 0:
		s.st = stBroken
	case s.stack[s.depth-1].obj:
		s.st = stKey
	default:
		s.setElem(true)
		s.st = stValue
	}
}

// startValue begins the value whose first byte is c.
func (s *Scanner) startValue(c byte) {
	s.cur = watch{}
	if s.over == 0 && s.paths != nil && s.h != nil {
		s.cur = s.paths.lookup(s.path, s.wild)
	}
	s.val, s.vcut = s.valBuf[:0], false
	switch c {
	case '{', '[':
		s.push(c == '{')
	case '"':
		s.st, s.isKey, s.hi = stString, false, 0
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f', 'n':
		s.st = stLiteral
		s.val = append(s.val, c)
	default:
		s.st = stBroken
	}
}

func (s *Scanner) endString() {
	s.flushSurrogate()
	if s.isKey {
		s.isKey = false
		s.st = stColon
		if s.over > 0 {
			return
		}
		s.setPath(s.stack[s.depth-1].plen)
		if s.kcut || len(s.key) == 0 {
			s.appendPath(unwatched)
		} else {
			s.appendPath(s.key)
		}
		return
	}
	if s.cur.ok {
		if s.cur.text {
			s.emitText(true)
		} else {
			s.emit(String, s.val, s.vcut, false)
		}
	}
	s.endValue()
}

func (s *Scanner) endLiteral() {
	kind, ok := literalKind(s.val, s.vcut)
	if !ok {
		s.st = stBroken
		return
	}
	if s.cur.ok {
		s.emit(kind, s.val, s.vcut, false)
	}
	s.endValue()
}

// literalKind checks a literal's text and says what it is.
func literalKind(v []byte, cut bool) (Kind, bool) {
	switch string(v) {
	case "true", "false":
		return Bool, true
	case "null":
		return Null, true
	}
	return Number, validNumber(v, cut)
}

// validNumber checks JSON's number grammar; a number too long to keep is
// checked as far as it was kept.
func validNumber(v []byte, cut bool) bool {
	i := 0
	if i < len(v) && v[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(v) && '0' <= v[i] && v[i] <= '9' {
			i++
			n++
		}
		return n
	}
	start := i
	if n := digits(); n == 0 || n > 1 && v[start] == '0' {
		return cut && i == len(v) && n > 0
	}
	if i < len(v) && v[i] == '.' {
		i++
		if digits() == 0 {
			return cut && i == len(v)
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		if digits() == 0 {
			return cut && i == len(v)
		}
	}
	return i == len(v)
}

func (s *Scanner) endValue() {
	s.cur = watch{}
	s.st = stAfter
	if s.depth == 0 && s.over == 0 {
		s.docs++
	}
}

func (s *Scanner) emit(kind Kind, v []byte, cut, end bool) {
	s.ev = Event{ID: s.cur.id, Kind: kind, Value: v, Cut: cut, End: end, Path: s.path}
	s.h.Field(&s.ev)
}

func (s *Scanner) emitText(end bool) {
	s.emit(Text, s.val, false, end)
	s.val = s.valBuf[:0]
}

func (s *Scanner) push(obj bool) {
	if s.depth == MaxDepth || s.over > 0 {
		if s.over == 64 {
			s.st = stBroken
			return
		}
		s.over++
		s.kinds <<= 1
		s.st = stValueOrEnd
		if obj {
			s.kinds |= 1
			s.st = stKeyOrEnd
		}
		return
	}
	f := frame{obj: obj, plen: uint16(len(s.path))}
	if s.cur.ok {
		f.watched, f.id = true, s.cur.id
		kind := Array
		if obj {
			kind = Object
		}
		s.emit(kind, nil, false, false)
	}
	s.stack[s.depth] = f
	s.depth++
	s.cur = watch{}
	if obj {
		s.st = stKeyOrEnd
		return
	}
	s.setElem(true)
	s.st = stValueOrEnd
}

func (s *Scanner) pop(obj bool) {
	if s.over > 0 {
		if (s.kinds&1 == 1) != obj {
			s.st = stBroken
			return
		}
		s.over--
		s.kinds >>= 1
		s.st = stAfter
		return
	}
	if s.depth == 0 || s.stack[s.depth-1].obj != obj {
		s.st = stBroken
		return
	}
	s.depth--
	f := s.stack[s.depth]
	s.setPath(f.plen)
	if f.watched {
		kind := Array
		if obj {
			kind = Object
		}
		s.cur.id = f.id
		s.emit(kind, nil, false, true)
	}
	s.endValue()
}

// setElem sets the path to the elements of the innermost array (inner),
// or to the top level.
func (s *Scanner) setElem(inner bool) {
	if !inner {
		s.setPath(0)
		return
	}
	s.setPath(s.stack[s.depth-1].plen)
	s.appendPath(elem)
}

// Path segments the scanner adds itself: an array's elements, and a key
// that is never watched (too long, or empty).
var (
	elem      = []byte("[]")
	unwatched = []byte{0}
)

func (s *Scanner) setPath(n uint16) { s.path = s.pathBuf[:n] }

// appendPath adds a segment to the path; a path too long to keep ends in
// a byte no watched path has.
func (s *Scanner) appendPath(seg []byte) {
	dot := 0
	if len(s.path) > 0 {
		dot = 1
	}
	if len(s.path)+dot+len(seg) > maxPath {
		s.path = append(s.path[:maxPath-1], 0)
		return
	}
	if dot == 1 {
		s.path = append(s.path, '.')
	}
	s.path = append(s.path, seg...)
}
