package jscan

// Tail reads p, the last bytes of a JSON object whose start was not seen,
// reporting the watched values that lie wholly inside p as s would; a key
// that p does not show (that of a container p starts inside) is "?" in the
// path, matching any key of the watched paths. It says whether it found a
// place to start from and read p to the object's end without fault.
//
// Reading backwards from the object's last '}' is exact where reading
// forwards from an unknown place is not: outside a string, a '"' opens
// one exactly when an even number of backslashes precede it. So the
// string state of every byte is known back to the first quote whose
// backslashes might go on before p; the earliest ',', '{' or '[' outside a
// string after that is a place to start, and the closing brackets after
// it say what encloses it.
//
// s is Reset for the purpose; Tail keeps no reference to p.
func Tail(s *Scanner, p []byte, paths *Paths, h Handler) bool {
	s.Reset(paths, h)
	s.wild = true
	end := len(p) - 1
	for end >= 0 && isSpace(p[end]) {
		end--
	}
	if end < 0 || p[end] != '}' {
		return false
	}
	start := resyncPoint(p[:end])
	if start < 0 {
		return false
	}
	if !s.enclose(p[start:end+1], p[start]) {
		return false
	}
	s.Feed(p[start+1 : end+1])
	return !s.Broken() && s.docs == 1 && !s.InDoc()
}

// resyncPoint is the earliest ',', '{' or '[' of p that is known to lie
// outside a string, p being followed by the end of a document; -1 when
// there is none.
func resyncPoint(p []byte) int {
	in, at := false, -1
	for j := len(p) - 1; j >= 0; j-- {
		c := p[j]
		if c == '"' {
			k := j - 1
			for k >= 0 && p[k] == '\\' {
				k--
			}
			if k < 0 {
				// The backslashes (or the quote itself) reach the start
				// of p: whether it is escaped is unknown.
				break
			}
			if (j-k-1)%2 == 0 {
				in = !in
			}
			continue
		}
		if !in && (c == ',' || c == '{' || c == '[') {
			at = j
		}
	}
	return at
}

// enclose sets s up as if it had just read p[0] (which is ',', '{' or '['),
// inside the containers whose closing brackets p shows. It says whether
// that made sense: the last closing bracket ends the document, no deeper
// than a Scanner follows.
func (s *Scanner) enclose(p []byte, first byte) bool {
	// The closing brackets after p[0] that close what was open before
	// it, innermost first.
	var kinds [MaxDepth]bool // true: object
	n, last := 0, -1
	depth, in := 0, false
	for i := 1; i < len(p); i++ {
		c := p[i]
		if in {
			switch c {
			case '\\':
				i++
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case '"':
			in = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth > 0 {
				depth--
				continue
			}
			if n == MaxDepth {
				return false
			}
			kinds[n], last = c == '}', i
			n++
		}
	}
	// The last bracket must close the document: anything else is not
	// one object's end.
	if n == 0 || last != len(p)-1 || !kinds[n-1] || first == '{' && !kinds[0] || first == '[' && kinds[0] {
		return false
	}
	// Outermost first: the document's object, whose members have known
	// keys; every container inside it was entered through a key p does
	// not show, or as an array's element.
	for d := n - 1; d >= 0; d-- {
		if d < n-1 {
			if s.stack[s.depth-1].obj {
				s.appendPath([]byte{'?'})
			} else {
				s.appendPath(elem)
			}
		}
		s.stack[s.depth] = frame{obj: kinds[d], plen: uint16(len(s.path))}
		s.depth++
	}
	switch {
	case first == ',' && kinds[0]:
		s.st = stKey
	case first == ',':
		s.setElem(true)
		s.st = stValue
	case first == '{':
		s.st = stKeyOrEnd
	default:
		s.setElem(true)
		s.st = stValueOrEnd
	}
	return true
}
