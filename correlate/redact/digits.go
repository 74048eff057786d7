package redact

import "strings"

// Phone, card and ID numbers are all judged on digit runs: maximal sequences
// of digit groups joined by single separators. One scanner finds the runs,
// then windows of whole groups are classified, so that one pass over the
// digits serves three detectors.

const (
	maxGroups = 24 // groups kept per run; a longer run is split at a group
	maxWindow = 8  // most groups one number may span (+1 (415) 555-2671 is 4)
	maxDigits = 19 // longest number of interest (a 19-digit card)
)

type digitGroup struct {
	start, end int32 // the digits, without parentheses
	sep        byte  // what joins it to the previous group: ' ', '-', '.', ')' or 0
	paren      bool  // written as (ddd)
}

type digitRun struct {
	g       [maxGroups]digitGroup
	n       int
	next    int  // first group not yet tried as the start of a window
	shifted bool // groups were dropped from the front: g[0] is not the run's first group
	done    bool // the whole run has been read, so rightOK and xEnd are known
	digits  int  // digits read so far
	plus    int  // index of the leading '+' (or of "%2B"), or -1
	leftOK  bool // the run starts at a boundary
	rightOK bool // the run ends at a boundary
	xEnd    bool // the run is followed by X or x and then a boundary (an ID check character)
}

func (r *Redactor) scanDigits(s string, m *spans) {
	var run digitRun
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		i = r.scanRun(s, i, &run, m)
	}
}

// scanRun reads the run whose first digit is at d, classifies its windows
// and returns the index just after it. A run longer than the group array is
// classified as it is read: windows are tried from every start whose
// longest window is complete, and the groups before the next start are
// dropped. That keeps the result exactly that of an unbounded array, which
// matters for idempotence: after redaction a run is shorter, and a split
// at a different group would find different numbers.
func (r *Redactor) scanRun(s string, d int, run *digitRun, m *spans) int {
	q := digitsEnd(s, d)
	paren := d > 0 && s[d-1] == '(' && q < len(s) && s[q] == ')' && q-d <= 5
	st := d
	if paren {
		st--
	}
	*run = digitRun{plus: -1, n: 1, digits: q - d}
	if st > 0 && s[st-1] == '+' && leftBoundary(s, st-1) {
		run.plus = st - 1
		st--
	} else if st >= 3 && s[st-3] == '%' && s[st-2] == '2' && lower(s[st-1]) == 'b' && leftBoundary(s, st-3) {
		// A '+' that was percent-encoded in a URL.
		run.plus = st - 3
		st -= 3
	}
	run.leftOK = leftBoundary(s, st)
	run.g[0] = digitGroup{start: int32(d), end: int32(q), paren: paren}
	after := q
	if paren {
		after++
	}
	for after < len(s) {
		c := s[after]
		var sep byte
		p, isParen := 0, false
		switch {
		case run.g[run.n-1].paren && isDigit(c):
			sep, p = ')', after // (415)555-2671
		case (c == ' ' || c == '-' || c == '.') && after+1 < len(s) && isDigit(s[after+1]):
			sep, p = c, after+1
		case c == ' ' && after+2 < len(s) && s[after+1] == '(' && isDigit(s[after+2]):
			sep, p, isParen = ' ', after+2, true // +44 (0) 20…
		}
		if p == 0 {
			break
		}
		e := digitsEnd(s, p)
		if isParen && (e >= len(s) || s[e] != ')' || e-p > 5) {
			break
		}
		if run.n == maxGroups {
			r.classifyRun(s, run, m)
			k := run.next
			copy(run.g[:], run.g[k:run.n])
			run.n -= k
			run.next = 0
			run.shifted = run.shifted || k > 0
		}
		run.g[run.n] = digitGroup{start: int32(p), end: int32(e), sep: sep, paren: isParen}
		run.n++
		run.digits += e - p
		after = e
		if isParen {
			after++
		}
	}
	run.done = true
	run.rightOK = rightBoundary(s, after)
	run.xEnd = after < len(s) && (s[after] == 'X' || s[after] == 'x') && !run.g[run.n-1].paren &&
		rightBoundary(s, after+1)
	r.classifyRun(s, run, m)
	return after
}

func digitsEnd(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// leftBoundary reports whether a number may start at index i: the byte
// before it is no part of a word, and no dot or dash glues it to one
// (v1.2, order-13812345678), and no colon or '+' glues it to digits
// (10:00:00.123456789, 2024+13812345678).
func leftBoundary(s string, i int) bool {
	if i == 0 {
		return true
	}
	c := s[i-1]
	if isWord(c) {
		return false
	}
	if i >= 2 {
		switch c {
		case '.', '-':
			return !isAlnum(s[i-2])
		case ':', '+', ',':
			return !digitBefore(s, i-1)
		}
	}
	return true
}

// digitBefore reports whether s[:i] ends with a digit or with Marker. A
// marker counts as the digits it replaced, so that redacting one number
// does not turn the next one's context from "glued to digits" into a
// boundary, which would make a second pass redact more than the first.
func digitBefore(s string, i int) bool {
	return i > 0 && isDigit(s[i-1]) || strings.HasSuffix(s[:i], Marker)
}

// digitAt is digitBefore's mirror: s[i:] starts with a digit or Marker.
func digitAt(s string, i int) bool {
	return i < len(s) && isDigit(s[i]) || strings.HasPrefix(s[i:], Marker)
}

// rightBoundary reports whether a number may end at index i, mirroring
// leftBoundary; an '@' after it makes it the local part of an email.
func rightBoundary(s string, i int) bool {
	if i >= len(s) {
		return true
	}
	c := s[i]
	if isWord(c) || c == '@' {
		return false
	}
	if i+1 < len(s) {
		switch c {
		case '.', '-', ':':
			return !isAlnum(s[i+1])
		case ',':
			return !digitAt(s, i+1)
		}
	}
	return true
}

// classifyRun tries windows of whole groups, longest first from each start,
// and records the numbers found. A window may start or end inside the run
// only at a space, since dashes and dots bind their groups into one token.
// Before the run is done, only starts whose longest window has been read
// (with the group after it, for the end test) are tried.
func (r *Redactor) classifyRun(s string, run *digitRun, m *spans) {
	n := run.n
	if run.digits < minDigits {
		return // versions, IP addresses, dates: the common case
	}
	k := run.next
	for k < n {
		if !run.done && k+maxWindow >= n {
			break
		}
		atStart := k == 0 && !run.shifted
		if !(atStart && run.leftOK || !atStart && run.g[k].sep == ' ') {
			k++
			continue
		}
		hi := min(k+maxWindow-1, n-1)
		found := false
		for e := hi; e >= k; e-- {
			if nd := windowDigits(run, k, e); nd < minDigits || nd > maxDigits {
				continue
			}
			endOK := e == n-1 && run.done && run.rightOK || e < n-1 && run.g[e+1].sep == ' '
			xOK := e == n-1 && run.done && run.xEnd
			if !endOK && !xOK {
				continue
			}
			if a, b, ok := r.classify(s, run, k, e, atStart && run.plus >= 0, endOK); ok {
				m.add(a, b)
				k = e + 1
				found = true
				break
			}
		}
		if !found {
			k++
		}
	}
	run.next = k
}

func windowDigits(run *digitRun, k, e int) int {
	nd := 0
	for j := k; j <= e; j++ {
		nd += int(run.g[j].end - run.g[j].start)
	}
	return nd
}

// Separator bits of a window.
const (
	sepSpace = 1 << iota
	sepDash
	sepDot
	sepParen // a parenthesised group or ')' as separator
)

// classify decides whether groups k..e form a number. endOK is false when
// the window ends before an X check character, which only an ID may use.
func (r *Redactor) classify(s string, run *digitRun, k, e int, plus, endOK bool) (int, int, bool) {
	var d [maxDigits]byte
	var gl [maxWindow]int
	nd, seps, short := 0, 0, 0
	for j := k; j <= e; j++ {
		g := run.g[j]
		l := int(g.end - g.start)
		if nd+l > maxDigits {
			return 0, 0, false
		}
		copy(d[nd:], s[g.start:g.end])
		nd += l
		gl[j-k] = l
		if g.paren {
			seps |= sepParen
		} else if j > k && l < 2 {
			short++
		}
		if j > k {
			switch g.sep {
			case ' ':
				seps |= sepSpace
			case '-':
				seps |= sepDash
			case '.':
				seps |= sepDot
			case ')':
				seps |= sepParen
			}
		}
	}
	digits := d[:nd]
	groups := gl[:e-k+1]
	start, end := int(run.g[k].start), int(run.g[e].end)
	if run.g[k].paren {
		start--
	}
	if plus {
		start = run.plus
	}
	if run.g[e].paren {
		end++
	}
	on := r.on

	if !endOK {
		// Only "17 digits + X" gets here.
		if on&detCNID != 0 && !plus && len(groups) == 1 && seps == 0 && nd == 17 && validCNID(digits, 'X') {
			return start, end + 1, true
		}
		return 0, 0, false
	}
	if on&detCNID != 0 && !plus && len(groups) == 1 && seps == 0 && nd == 18 && validCNID(digits[:17], digits[17]) {
		return start, end, true
	}
	if on&detCard != 0 && !plus && isCard(digits, groups, seps) {
		return start, end, true
	}
	if on&detPhone != 0 && isPhone(digits, groups, seps, short, plus) {
		return start, end, true
	}
	return 0, 0, false
}

// isCard: 13-19 digits, written plain or in groups of the usual shapes
// (4-4-4-4, 4-6-5, 4-4-4-4-3) with one kind of separator, a known issuer
// prefix and a valid Luhn check digit.
func isCard(d []byte, groups []int, seps int) bool {
	if len(d) < 13 || seps&(sepDot|sepParen) != 0 || seps == sepSpace|sepDash {
		return false
	}
	if len(groups) > 1 {
		if groups[0] != 4 {
			return false
		}
		for i, l := range groups[1:] {
			last := i == len(groups)-2
			if l > 6 || !last && l < 4 {
				return false
			}
		}
	}
	return plausibleIIN(d) && luhn(d)
}

// plausibleIIN reports whether d starts like a number of a card network.
func plausibleIIN(d []byte) bool {
	two := int(d[0]-'0')*10 + int(d[1]-'0')
	three := two*10 + int(d[2]-'0')
	four := three*10 + int(d[3]-'0')
	switch {
	case d[0] == '4': // Visa
		return true
	case two >= 51 && two <= 55, four >= 2221 && four <= 2720: // Mastercard
		return true
	case two == 34 || two == 37: // American Express
		return true
	case two == 36 || two == 38 || two == 39 || three >= 300 && three <= 305: // Diners Club
		return true
	case two == 35: // JCB
		return true
	case d[0] == '6': // Discover, UnionPay, Maestro, RuPay
		return true
	case two == 50 || two >= 56 && two <= 58: // Maestro
		return true
	}
	return false
}

func luhn(d []byte) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		x := int(d[i] - '0')
		if double {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
		double = !double
	}
	return sum%10 == 0
}

// isPhone applies the phone shapes documented in the package comment.
// short counts the single-digit groups after the first, other than
// parenthesised ones such as the (0) of +44 (0) 20…: no numbering plan
// writes them, while lists of small numbers are full of them.
func isPhone(d []byte, groups []int, seps, short int, plus bool) bool {
	nd := len(d)
	if plus {
		return nd >= 8 && nd <= 15 && short == 0
	}
	if nd < 10 {
		return false
	}
	// Mainland China mobile: 1[3-9] and 9 more digits.
	if nd == 11 && isCNMobile(d) && seps&sepParen == 0 {
		switch len(groups) {
		case 1:
			return true
		case 2:
			return groups[0] == 3 && groups[1] == 8
		case 3:
			return groups[0] == 3 && groups[1] == 4 && groups[2] == 4
		}
	}
	// International prefix 00 instead of '+'.
	if d[0] == '0' && d[1] == '0' && seps&sepDot == 0 {
		if len(groups) == 1 {
			return nd == 15 && d[2] == '8' && d[3] == '6' && isCNMobile(d[4:])
		}
		return nd-2 >= 8 && nd-2 <= 15 && groups[0] <= 5 && short == 0
	}
	// North America: 3-3-4, optionally after a 1 group.
	off := 0
	if len(groups) == 4 && groups[0] == 1 && d[0] == '1' {
		off = 1
	}
	if len(groups)-off == 3 && groups[off] == 3 && groups[off+1] == 3 && groups[off+2] == 4 {
		return d[off] >= '2' && d[off+3] >= '2'
	}
	// A trunk 0 and separators: 020 7946 0958, 010-12345678, 06 12 34 56 78.
	if d[0] == '0' && len(groups) >= 2 && groups[0] >= 2 && groups[0] <= 5 && nd <= 12 && seps&sepDot == 0 {
		for _, l := range groups {
			if l < 2 {
				return false
			}
		}
		return true
	}
	return false
}

func isCNMobile(d []byte) bool {
	return len(d) == 11 && d[0] == '1' && d[1] >= '3'
}

var cnIDWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// validCNID checks a mainland China resident ID: region digit, birth date
// and the ISO 7064 MOD 11-2 check character. d holds the first 17 digits.
func validCNID(d []byte, check byte) bool {
	if d[0] < '1' || d[0] > '8' {
		return false
	}
	sum := 0
	for i, w := range cnIDWeights {
		sum += int(d[i]-'0') * w
	}
	if "10X98765432"[sum%11] != check && !(check == 'x' && sum%11 == 2) {
		return false
	}
	year := atoi(d[6:10])
	month := atoi(d[10:12])
	day := atoi(d[12:14])
	return year >= 1900 && year <= 2100 && month >= 1 && month <= 12 && day >= 1 && day <= daysIn(year, month)
}

func atoi(d []byte) int {
	n := 0
	for _, c := range d {
		n = n*10 + int(c-'0')
	}
	return n
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
