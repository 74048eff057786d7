package genai

// Strings interns the values that repeat call after call (model names,
// finish reasons, error types, roles), so that reading them costs a map
// lookup rather than an allocation. It is bounded: when full it is emptied
// and refilled. One feeder owns one; it is not safe for concurrent use.
type Strings struct {
	m map[string]string
}

// maxStrings bounds a Strings: model names and the like are few, values
// that never repeat (which should not be interned) only churn it.
const maxStrings = 1024

// NewStrings returns an empty table.
func NewStrings() *Strings { return &Strings{m: map[string]string{}} }

// Get is b as a string, from the table when it is there.
func (s *Strings) Get(b []byte) string {
	if s == nil {
		return string(b)
	}
	if v, ok := s.m[string(b)]; ok {
		return v
	}
	if len(s.m) >= maxStrings {
		clear(s.m)
	}
	v := string(b)
	s.m[v] = v
	return v
}
