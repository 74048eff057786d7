package redact

import "strings"

// SanitizeSQL replaces every literal in SQL text with '?' so that query text
// can be exported without the values in it:
//
//   - strings: '…' with doubled-quote and backslash escapes, prefixed
//     forms (E'…', N'…', X'…', B'…', U&'…', _utf8'…') and dollar-quoted $$…$$, $tag$…$tag$;
//   - numbers: integers, decimals, exponents, 0x… hex, 1_000; digits inside
//     identifiers (t1, col_2) and placeholders ($1, ?1, :name, :1, @p1) stay;
//   - IN lists made only of literals and '?' collapse to IN (?), so that
//     queries differing only in list length read the same;
//   - comments are removed, with a space left where removing one would glue
//     two tokens together.
//
// Keywords such as TRUE, FALSE and NULL stay, and so do identifiers, also
// quoted ones ("…", `…`): double quotes are identifiers in standard SQL and
// PostgreSQL, which is what the agent mostly sees. An unterminated string or
// comment runs to the end of the text, which is then replaced or removed.
// SanitizeSQL never panics, and returns query itself, without allocating,
// when there is nothing to replace.
func SanitizeSQL(query string) string {
	w := sqlWriter{q: query}
	q := query
	n := len(q)
	// identEnd is where the last identifier ended: a dot right after one
	// qualifies a name (t.5 is odd, but not a number). Only identifiers
	// count, not literals, so that a second pass, which sees '?' where a
	// number was, decides the same way.
	identEnd := -1
	for i := 0; i < n; {
		c := q[i]
		switch {
		case c == '\'':
			e := quotedEnd(q, i+1, '\'')
			if e < n {
				e++
			}
			w.replace(i, e, "?")
			i = e
		case c == '"' || c == '`':
			i = sqlQuotedIdentEnd(q, i)
			identEnd = i
		case c == '-' && i+1 < n && q[i+1] == '-':
			e := strings.IndexByte(q[i:], '\n')
			if e < 0 {
				e = n
			} else {
				e += i
			}
			w.removeComment(i, e)
			i = e
		case c == '/' && i+1 < n && q[i+1] == '*':
			e := blockCommentEnd(q, i)
			w.removeComment(i, e)
			i = e
		case c == '$':
			if i+1 < n && isDigit(q[i+1]) {
				i = digitsEnd(q, i+1) // $1
				continue
			}
			if te := dollarTagEnd(q, i); te > 0 {
				tag := q[i:te]
				e := strings.Index(q[te:], tag)
				if e < 0 {
					e = n
				} else {
					e += te + len(tag)
				}
				w.replace(i, e, "?")
				i = e
				continue
			}
			i++
		case c == '?':
			i = digitsEnd(q, i+1) // ? or ?1
		case c == ':' || c == '@':
			// :name, :1, @p1, @@var, and :: casts.
			j := i + 1
			for j < n && (q[j] == c || isSQLIdentChar(q[j])) {
				j++
			}
			i = j
			identEnd = j
		case isSQLIdentStart(c):
			j := i + 1
			for j < n && isSQLIdentChar(q[j]) {
				j++
			}
			word := q[i:j]
			if p := stringPrefixEnd(q, i); p > i {
				e := quotedEnd(q, p+1, '\'')
				if e < n {
					e++
				}
				w.replace(i, e, "?")
				i = e
				continue
			}
			i = j
			identEnd = j
			if equalFold(word, "in") {
				k := j
				for k < n && isSQLSpace(q[k]) {
					k++
				}
				if k < n && q[k] == '(' {
					if e, ok := literalListEnd(q, k); ok {
						if q[k+1:e] != "?" {
							w.replace(k+1, e, "?")
						}
						i = e
					}
				}
			}
		case isDigit(c) || c == '.' && i+1 < n && isDigit(q[i+1]) && i != identEnd:
			e := numberEnd(q, i)
			if e < n && (isSQLIdentStart(q[e]) || isDigit(q[e])) {
				// 1abc is an identifier to MySQL, not a number. A '$' after
				// a number starts something new ($$…$$), as it does after '?'.
				for e < n && isSQLIdentChar(q[e]) {
					e++
				}
				i = e
				identEnd = e
				continue
			}
			w.replace(i, e, "?")
			i = e
		default:
			i++
		}
	}
	return w.String()
}

// stringPrefixEnd returns the index of the quote after a string prefix
// (E, N, X, B, U&, or a MySQL charset introducer such as _utf8mb4) starting
// at i, or i when there is none.
func stringPrefixEnd(q string, i int) int {
	if i >= len(q) || !isSQLIdentStart(q[i]) {
		return i
	}
	j := i + 1
	for j < len(q) && isSQLIdentChar(q[j]) {
		j++
	}
	switch {
	case j < len(q) && q[j] == '\'' && (j-i == 1 || q[i] == '_'):
		return j
	case j-i == 1 && (q[i] == 'U' || q[i] == 'u') && j+1 < len(q) && q[j] == '&' && q[j+1] == '\'':
		return j + 1
	}
	return i
}

// sqlWriter builds the sanitised text lazily: nothing is allocated until the
// first replacement.
type sqlWriter struct {
	q     string
	b     strings.Builder
	last  int  // q[:last] has been handled
	dirty bool // something was replaced
}

func (w *sqlWriter) replace(a, e int, with string) {
	if !w.dirty {
		w.dirty = true
		w.b.Grow(len(w.q))
	}
	w.b.WriteString(w.q[w.last:a])
	w.b.WriteString(with)
	w.last = e
}

// removeComment drops q[a:e]. A space replaces it when it sits between two
// non-space bytes, since "1/**/2" must not become "12" and "-/**/-1" must
// not become a line comment.
func (w *sqlWriter) removeComment(a, e int) {
	with := ""
	if a > 0 && e < len(w.q) && !isSQLSpace(w.q[a-1]) && !isSQLSpace(w.q[e]) {
		with = " "
	}
	w.replace(a, e, with)
}

func (w *sqlWriter) String() string {
	if !w.dirty {
		return w.q
	}
	w.b.WriteString(w.q[w.last:])
	return w.b.String()
}

func isSQLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// isSQLIdentStart accepts any non-ASCII byte, so identifiers in other
// scripts are kept whole and never split inside a UTF-8 sequence.
func isSQLIdentStart(c byte) bool { return isAlpha(c) || c == '_' || c >= 0x80 }

func isSQLIdentChar(c byte) bool { return isSQLIdentStart(c) || isDigit(c) || c == '$' }

// sqlQuotedIdentEnd returns the index after the quoted identifier starting
// at i, where a doubled quote is an escaped one.
func sqlQuotedIdentEnd(q string, i int) int {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// blockCommentEnd returns the index after the comment starting at i,
// counting nested comments as PostgreSQL does.
func blockCommentEnd(q string, i int) int {
	depth := 0
	for j := i; j+1 < len(q); {
		switch {
		case q[j] == '/' && q[j+1] == '*':
			depth++
			j += 2
		case q[j] == '*' && q[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j
			}
		default:
			j++
		}
	}
	return len(q)
}

// dollarTagEnd returns the index after a dollar-quote opening delimiter ($$
// or $tag$) at i, or 0 if there is none.
func dollarTagEnd(q string, i int) int {
	j := i + 1
	if j < len(q) && q[j] == '$' {
		return j + 1
	}
	if j >= len(q) || !isSQLIdentStart(q[j]) {
		return 0
	}
	for j < len(q) && (isSQLIdentStart(q[j]) || isDigit(q[j])) {
		j++
	}
	if j < len(q) && q[j] == '$' {
		return j + 1
	}
	return 0
}

// numberEnd returns the end of the numeric literal starting at i.
func numberEnd(q string, i int) int {
	n := len(q)
	if q[i] == '0' && i+2 < n && lower(q[i+1]) == 'x' && isHex(q[i+2]) {
		j := i + 2
		for j < n && isHex(q[j]) {
			j++
		}
		return j
	}
	j := i
	digits := func() {
		for j < n && (isDigit(q[j]) || q[j] == '_' && j+1 < n && isDigit(q[j+1])) {
			j++
		}
	}
	digits()
	if j < n && q[j] == '.' && !(j+1 < n && isSQLIdentStart(q[j+1])) {
		// 1.5 and 1. are numbers; in 0.A the dot belongs to what follows.
		j++
		digits()
	}
	if j < n && lower(q[j]) == 'e' {
		k := j + 1
		if k < n && (q[k] == '+' || q[k] == '-') {
			k++
		}
		if k < n && isDigit(q[k]) {
			j = k
			digits()
		}
	}
	return j
}

// literalListEnd checks whether the parenthesised list at open holds only
// literals and '?' and returns the index of its closing parenthesis.
func literalListEnd(q string, open int) (int, bool) {
	n := len(q)
	i := open + 1
	for {
		for i < n && isSQLSpace(q[i]) {
			i++
		}
		if i >= n {
			return 0, false
		}
		if p := stringPrefixEnd(q, i); p > i {
			i = p // E'…', N'…', U&'…', _utf8'…': the same literal as '…'
		}
		switch c := q[i]; {
		case c == '\'':
			e := quotedEnd(q, i+1, '\'')
			if e >= n {
				return 0, false
			}
			i = e + 1
		case c == '?':
			i++
		case c == '-' || c == '+' || isDigit(c) || c == '.':
			j := i
			if c == '-' || c == '+' {
				j++
			}
			if j >= n || !isDigit(q[j]) && !(q[j] == '.' && j+1 < n && isDigit(q[j+1])) {
				return 0, false
			}
			e := numberEnd(q, j)
			if e < n && isSQLIdentChar(q[e]) {
				return 0, false
			}
			i = e
		default:
			return 0, false
		}
		for i < n && isSQLSpace(q[i]) {
			i++
		}
		if i >= n {
			return 0, false
		}
		switch q[i] {
		case ',':
			i++
		case ')':
			return i, true
		default:
			return 0, false
		}
	}
}

// Token kinds of the small lexer behind SQLOperation and SQLCollection.
const (
	tEOF = iota
	tWord
	tQuoted // "…", `…` or […]
	tPunct
	tOther // literals and placeholders
)

type sqlToken struct {
	kind       int
	start, end int
}

type sqlLexer struct {
	q string
	i int
}

func (l *sqlLexer) next() sqlToken {
	q, n := l.q, len(l.q)
	for l.i < n {
		c := q[l.i]
		switch {
		case isSQLSpace(c):
			l.i++
			continue
		case c == '-' && l.i+1 < n && q[l.i+1] == '-':
			if e := strings.IndexByte(q[l.i:], '\n'); e >= 0 {
				l.i += e + 1
			} else {
				l.i = n
			}
			continue
		case c == '/' && l.i+1 < n && q[l.i+1] == '*':
			l.i = blockCommentEnd(q, l.i)
			continue
		}
		start := l.i
		switch {
		case isSQLIdentStart(c):
			j := start + 1
			for j < n && isSQLIdentChar(q[j]) {
				j++
			}
			l.i = j
			return sqlToken{tWord, start, j}
		case c == '"' || c == '`':
			l.i = sqlQuotedIdentEnd(q, start)
			return sqlToken{tQuoted, start, l.i}
		case c == '[':
			e := strings.IndexByte(q[start:], ']')
			if e < 0 {
				l.i = n
			} else {
				l.i = start + e + 1
			}
			return sqlToken{tQuoted, start, l.i}
		case c == '\'':
			e := quotedEnd(q, start+1, '\'')
			if e < n {
				e++
			}
			l.i = e
			return sqlToken{tOther, start, e}
		case c == '$':
			if te := dollarTagEnd(q, start); te > 0 {
				tag := q[start:te]
				if e := strings.Index(q[te:], tag); e >= 0 {
					l.i = te + e + len(tag)
				} else {
					l.i = n
				}
				return sqlToken{tOther, start, l.i}
			}
			l.i = digitsEnd(q, start+1)
			return sqlToken{tOther, start, l.i}
		case isDigit(c):
			l.i = numberEnd(q, start)
			return sqlToken{tOther, start, l.i}
		}
		l.i++
		return sqlToken{tPunct, start, start + 1}
	}
	return sqlToken{kind: tEOF, start: n, end: n}
}

func (l *sqlLexer) isWord(t sqlToken, lowerWord string) bool {
	return t.kind == tWord && equalFold(l.q[t.start:t.end], lowerWord)
}

func (l *sqlLexer) isPunct(t sqlToken, c byte) bool {
	return t.kind == tPunct && l.q[t.start] == c
}

// skipParens consumes tokens up to the parenthesis closing one that was just
// read.
func (l *sqlLexer) skipParens() {
	for depth := 1; depth > 0; {
		t := l.next()
		switch {
		case t.kind == tEOF:
			return
		case l.isPunct(t, '('):
			depth++
		case l.isPunct(t, ')'):
			depth--
		}
	}
}

// statement returns the keyword of the main statement: the first word after
// leading comments and parentheses, or, for WITH, the word after the common
// table expressions.
func (l *sqlLexer) statement() sqlToken {
	t := l.next()
	for l.isPunct(t, '(') {
		t = l.next()
	}
	if !l.isWord(t, "with") {
		return t
	}
	t = l.next()
	if l.isWord(t, "recursive") {
		t = l.next()
	}
	for {
		if t.kind != tWord && t.kind != tQuoted {
			return sqlToken{}
		}
		t = l.next()
		if l.isPunct(t, '(') { // column list
			l.skipParens()
			t = l.next()
		}
		if !l.isWord(t, "as") {
			return sqlToken{}
		}
		t = l.next()
		if l.isWord(t, "not") {
			t = l.next()
		}
		if l.isWord(t, "materialized") {
			t = l.next()
		}
		if !l.isPunct(t, '(') {
			return sqlToken{}
		}
		l.skipParens()
		t = l.next()
		if !l.isPunct(t, ',') {
			break
		}
		t = l.next()
	}
	for l.isPunct(t, '(') {
		t = l.next()
	}
	return t
}

// sqlOperations are the statement keywords returned without allocating.
var sqlOperations = [...]string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE",
	"CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME", "GRANT", "REVOKE",
	"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END",
	"SET", "SHOW", "RESET", "USE", "EXPLAIN", "DESCRIBE", "DESC", "ANALYZE",
	"VACUUM", "CALL", "EXEC", "EXECUTE", "PREPARE", "DEALLOCATE", "DO",
	"COPY", "LOCK", "UNLOCK", "VALUES", "TABLE", "LISTEN", "NOTIFY",
	"UNLISTEN", "DECLARE", "FETCH", "CLOSE", "MOVE", "REFRESH", "REINDEX",
	"CLUSTER", "COMMENT", "CHECKPOINT", "DISCARD", "LOAD", "HANDLER",
	"OPTIMIZE", "PRAGMA", "ATTACH", "DETACH", "WITH", "ABORT",
}

// SQLOperation returns the operation of a SQL statement in upper case, for
// db.operation.name: its first keyword after leading comments and
// parentheses (SELECT, INSERT, UPDATE, DELETE, …), or for WITH … the keyword
// of the statement after the common table expressions. It returns "" when
// the text does not start with a word.
func SQLOperation(query string) string {
	l := sqlLexer{q: query}
	t := l.statement()
	if t.kind != tWord {
		return ""
	}
	word := query[t.start:t.end]
	for _, op := range sqlOperations {
		if len(op) == len(word) && strings.EqualFold(op, word) {
			return op
		}
	}
	if len(word) > 32 {
		return ""
	}
	return strings.ToUpper(word)
}

// SQLCollection returns the main table of a SQL statement, for
// db.collection.name: FROM x for SELECT and DELETE, INTO x for INSERT,
// REPLACE and MERGE, UPDATE x, and the table of CREATE/ALTER/DROP TABLE,
// TRUNCATE and COPY. A schema or database prefix is kept (public.users);
// quotes are removed ("Users", `db`.`t`, [dbo].[t]). It returns "" when
// there is no single table to name: a subquery or function after FROM, a
// SELECT without FROM, or another kind of statement.
func SQLCollection(query string) string {
	l := sqlLexer{q: query}
	t := l.statement()
	if t.kind != tWord {
		return ""
	}
	op := query[t.start:t.end]
	switch {
	case equalFold(op, "select"):
		if !l.skipTo("from") {
			return ""
		}
		return l.tableAfter(true)
	case equalFold(op, "delete"):
		// DELETE FROM t, and MySQL's multi-table DELETE t1 FROM t1 JOIN ….
		if !l.skipTo("from") {
			return ""
		}
		return l.tableAfter(true)
	case equalFold(op, "insert"), equalFold(op, "replace"), equalFold(op, "upsert"), equalFold(op, "merge"):
		return l.tableAfterModifiers("into", "ignore", "low_priority", "delayed", "high_priority",
			"or", "replace", "rollback", "abort", "fail")
	case equalFold(op, "update"):
		return l.tableAfterModifiers("", "only", "low_priority", "ignore", "or",
			"replace", "rollback", "abort", "fail")
	case equalFold(op, "create"), equalFold(op, "alter"), equalFold(op, "drop"):
		for range 4 {
			t = l.next()
			if l.isWord(t, "table") {
				return l.tableAfterModifiers("", "if", "not", "exists", "only")
			}
			if !l.isWord(t, "temporary") && !l.isWord(t, "temp") && !l.isWord(t, "unlogged") &&
				!l.isWord(t, "global") && !l.isWord(t, "local") && !l.isWord(t, "or") && !l.isWord(t, "replace") {
				return ""
			}
		}
		return ""
	case equalFold(op, "truncate"):
		return l.tableAfterModifiers("", "table", "only")
	case equalFold(op, "copy"):
		return l.tableAfter(true)
	}
	return ""
}

// skipTo consumes tokens until the keyword kw at parenthesis depth 0, so
// that subqueries and FROM inside EXTRACT(… FROM …) are passed over.
func (l *sqlLexer) skipTo(kw string) bool {
	depth := 0
	for {
		t := l.next()
		switch {
		case t.kind == tEOF:
			return false
		case l.isPunct(t, '('):
			depth++
		case l.isPunct(t, ')'):
			depth--
			if depth < 0 {
				return false
			}
		case depth == 0 && l.isPunct(t, ';'):
			return false
		case depth == 0 && l.isWord(t, kw):
			return true
		}
	}
}

// tableAfterModifiers skips the given modifier words, then the keyword kw if
// present, and reads a table name.
func (l *sqlLexer) tableAfterModifiers(kw string, modifiers ...string) string {
	for {
		save := l.i
		t := l.next()
		if kw != "" && l.isWord(t, kw) {
			return l.tableAfter(false)
		}
		modifier := false
		for _, m := range modifiers {
			if l.isWord(t, m) {
				modifier = true
				break
			}
		}
		if !modifier {
			l.i = save
			return l.tableAfter(false)
		}
	}
}

// tableAfter reads a possibly qualified, possibly quoted table name. With
// fromClause, ONLY is skipped, and a subquery, LATERAL or a function call
// yields "".
func (l *sqlLexer) tableAfter(fromClause bool) string {
	t := l.next()
	if fromClause && l.isWord(t, "only") {
		t = l.next()
	}
	if fromClause && l.isWord(t, "lateral") {
		return ""
	}
	var parts [4]sqlToken
	n := 0
	for {
		if t.kind != tWord && t.kind != tQuoted {
			return ""
		}
		if n == len(parts) {
			return ""
		}
		parts[n] = t
		n++
		save := l.i
		dot := l.next()
		if !l.isPunct(dot, '.') {
			l.i = save
			break
		}
		t = l.next()
	}
	if fromClause {
		save := l.i
		if l.isPunct(l.next(), '(') {
			return "" // a function such as generate_series(…)
		}
		l.i = save
	}
	return l.joinName(parts[:n])
}

// joinName joins the parts of a qualified name with dots, without quotes.
// An unquoted name written without spaces is returned as a substring of the
// query, which costs no allocation.
func (l *sqlLexer) joinName(parts []sqlToken) string {
	plain := true
	for i, p := range parts {
		if p.kind != tWord || i > 0 && p.start != parts[i-1].end+1 {
			plain = false
			break
		}
	}
	if plain {
		return l.q[parts[0].start:parts[len(parts)-1].end]
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		text := l.q[p.start:p.end]
		if p.kind == tQuoted && len(text) >= 2 {
			open := text[0]
			text = text[1:]
			closing := open
			if open == '[' {
				closing = ']'
			}
			text = strings.TrimSuffix(text, string(closing))
			if open != '[' {
				text = strings.ReplaceAll(text, string([]byte{open, open}), string(open))
			}
		}
		b.WriteString(text)
	}
	return b.String()
}
