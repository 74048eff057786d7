// Package tlshello reads the server name (SNI) a TLS client asks for in its
// ClientHello: what the kernel path learns of a TLS connection, whose
// exchanges it cannot see into.
package tlshello

// ServerName reads the server_name extension of a TLS record holding a
// ClientHello, as far as b goes: the host name and true, or false when b
// is not a ClientHello or ends before the name.
func ServerName(b []byte) (string, bool) {
	// record header (5), handshake header (4), version (2), random (32)
	const fixed = 5 + 4 + 2 + 32
	if len(b) < fixed+1 || b[0] != 0x16 || b[5] != 1 {
		return "", false
	}
	p := b[fixed:]
	skip := func(lenBytes int) bool {
		if len(p) < lenBytes {
			return false
		}
		n := 0
		for _, c := range p[:lenBytes] {
			n = n<<8 | int(c)
		}
		if len(p) < lenBytes+n {
			return false
		}
		p = p[lenBytes+n:]
		return true
	}
	// session id, cipher suites, compression methods
	if !skip(1) || !skip(2) || !skip(1) || len(p) < 2 {
		return "", false
	}
	p = p[2:] // the extensions' total length: the capture may end first
	for len(p) >= 4 {
		typ, n := int(p[0])<<8|int(p[1]), int(p[2])<<8|int(p[3])
		p = p[4:]
		if typ != 0 { // not server_name
			if len(p) < n {
				return "", false
			}
			p = p[n:]
			continue
		}
		// list length (2), then entries: type (1: 0 = host name), length (2), name
		if n > len(p) || n < 5 || p[2] != 0 {
			return "", false
		}
		size := int(p[3])<<8 | int(p[4])
		if 5+size > n {
			return "", false
		}
		name := p[5 : 5+size]
		if !validHostName(name) {
			return "", false
		}
		return string(name), true
	}
	return "", false
}

// validHostName accepts what a DNS host name may hold.
func validHostName(s []byte) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
