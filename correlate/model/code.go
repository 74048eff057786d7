package model

// Code is the exchange of an INTERNAL span that is one call of a function
// of the traced program: a phase the configuration names (probes/phases).
type Code struct {
	// Name is the span's name: the function as the configuration names
	// it, without its import path's directories ("rag.(*Store).Search",
	// "main.Map[...]").
	Name string
	// Function is the fully qualified Go name of the function that ran
	// (code.function.name), such as "main.Map[go.shape.int]".
	Function string
	// Goroutine is the goroutine the call ran on.
	Goroutine uint64
	// Ended says how the span's end was found.
	Ended CodeEnd
	// Overflow: calls nested deeper than the probe keeps per goroutine
	// were not traced while this one ran.
	Overflow bool
}

// CodeEnd is how a call's end was found.
type CodeEnd uint8

// How calls end.
const (
	// CodeReturned: the function returned.
	CodeReturned CodeEnd = iota
	// CodeUnwound: the function never returned; the goroutine went on
	// above it (a panic unwound it and was recovered further up). The end
	// is when that was seen.
	CodeUnwound
	// CodeRequestEnded: the function never returned; the request served
	// on its goroutine ended, or the goroutine exited, first.
	CodeRequestEnded
)

// String names the end as the span's attribute does.
func (e CodeEnd) String() string {
	switch e {
	case CodeUnwound:
		return "unwound"
	case CodeRequestEnded:
		return "request_ended"
	}
	return "returned"
}
