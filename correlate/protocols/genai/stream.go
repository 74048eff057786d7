package genai

import (
	"bytes"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// A streamed response is read line by line: server-sent events (a "data:"
// line or several, an optional "event:" line, a blank line ending the
// event) or newline-delimited JSON (one document a line). Nothing of a line
// is kept but an event's name and the first bytes of its data ("[DONE]"):
// data bytes go straight into the event's scanner.

// lines is where a stream's reader is within a line.
type lines struct {
	phase   linePhase
	name    [8]byte // the field name so far
	nname   int
	isData  bool // the line's field is data (its value feeds the scanner)
	isEvent bool // the line's field is the event's name
	cr      bool // the last byte was a CR: a LF right after it ends nothing
}

type linePhase uint8

const (
	lineStart linePhase = iota // nothing of the line yet
	lineName                   // in the field name
	lineSpace                  // after the colon: one space is skipped
	lineValue                  // in the value
	lineSkip                   // in a line that is ignored
)

// event is what one stream event showed, decided on when it ends.
type event struct {
	started bool // a data line (or an event name) was seen
	ndata   int  // data lines
	dlen    int  // data bytes
	head    [8]byte
	typ     [48]byte // its name, from "event:" or the data's "type"
	ntyp    int
	typCut  bool
	content bool // a content delta
	done    bool // Ollama's "done":true
	errored bool // an error object
}

// setType takes the type a data payload names, unless an "event:" line
// named it.
func (e *event) setType(b []byte) {
	if e.ntyp == 0 && !e.typCut {
		e.appendType(b)
	}
}

// appendType adds a fragment of the "event:" line's value.
func (e *event) appendType(b []byte) {
	n := copy(e.typ[e.ntyp:], b)
	e.ntyp += n
	e.typCut = e.typCut || n < len(b)
}

func (e *event) is(name string) bool { return !e.typCut && string(e.typ[:e.ntyp]) == name }

var done = []byte("[DONE]")

// feedLines reads stream bytes that arrived at t.
func (x *Exchange) feedLines(t time.Time, p []byte) {
	l := &x.lines
	for i := 0; i < len(p) && !x.terminal; {
		c := p[i]
		if l.cr && c == '\n' {
			l.cr = false
			i++
			continue
		}
		l.cr = false
		if c == '\n' || c == '\r' {
			x.endLine(t, c)
			i++
			continue
		}
		switch l.phase {
		case lineStart, lineName:
			if x.ndjson {
				l.phase, l.isData, l.isEvent = lineValue, true, false
				x.startData()
				continue // the byte is the value's
			}
			if l.phase == lineStart && c == ':' {
				l.phase = lineSkip // a comment
				i++
				continue
			}
			l.phase = lineName
			if c == ':' {
				l.phase = lineSpace
				x.startField()
			} else if l.nname < len(l.name) {
				l.name[l.nname] = c
				l.nname++
			} else {
				l.phase = lineSkip
			}
			i++
		case lineSpace:
			l.phase = lineValue
			if c == ' ' {
				i++
			}
		case lineSkip, lineValue:
			n := bytes.IndexAny(p[i:], "\r\n")
			if n < 0 {
				n = len(p) - i
			}
			if l.phase == lineValue && n > 0 {
				x.value(p[i : i+n])
			}
			i += n
		}
	}
}

// startField begins a field's value once its name is known.
func (x *Exchange) startField() {
	l := &x.lines
	name := string(l.name[:l.nname])
	l.isData, l.isEvent = name == "data", name == "event"
	if !l.isData && !l.isEvent {
		l.phase = lineSkip
		return
	}
	x.ev.started = true
	if l.isData {
		x.startData()
	}
}

// startData begins a data line: a second one of an event is joined to the
// first by a newline, which JSON reads as space.
func (x *Exchange) startData() {
	if x.ev.ndata > 0 {
		x.resp.Feed([]byte{'\n'})
		x.ev.dlen++
	}
	x.ev.ndata++
	x.ev.started = true
}

// value reads bytes of a field's value.
func (x *Exchange) value(b []byte) {
	if x.lines.isEvent {
		x.ev.appendType(b)
		return
	}
	if x.ev.dlen < len(x.ev.head) {
		copy(x.ev.head[x.ev.dlen:], b)
	}
	x.ev.dlen += len(b)
	x.side = sideEvent
	x.resp.Feed(b)
}

// endLine ends a line at its CR or LF; a blank one ends an SSE event, any
// NDJSON line its document.
func (x *Exchange) endLine(t time.Time, c byte) {
	l := &x.lines
	blank := l.phase == lineStart
	if l.phase == lineName {
		// A field with no colon: its whole line is its name, the value
		// empty ("data" alone is an empty data line).
		x.startField()
	}
	l.phase, l.nname, l.isData, l.isEvent = lineStart, 0, false, false
	l.cr = c == '\r'
	if x.ndjson && !blank || !x.ndjson && blank {
		x.dispatch(t)
	}
}

// dispatch settles the event that ended at t.
func (x *Exchange) dispatch(t time.Time) {
	ev := &x.ev
	defer x.nextEvent()
	if !ev.started {
		return
	}
	if ev.dlen == len(done) && bytes.Equal(ev.head[:len(done)], done) {
		x.terminal = true
		return
	}
	if ev.ndata == 0 || ev.is("ping") {
		return
	}
	if x.resp.Broken() || x.resp.Docs() != 1 || x.resp.InDoc() {
		x.badEvents++
		return
	}
	x.goodEvents++
	if x.tailMode {
		// Events after a gap: their fields count, their times and
		// numbers do not (the gap's events were not seen).
		x.settleEvent()
		return
	}
	g := &x.g
	if g.Chunks == 0 {
		g.FirstChunk = t
	}
	g.Chunks++
	g.LastChunk = t
	if x.isContent() {
		if g.ContentChunks == 0 {
			g.FirstToken = t
		}
		g.ContentChunks++
	}
	x.settleEvent()
}

// isContent says whether the event was a content delta.
func (x *Exchange) isContent() bool {
	ev := &x.ev
	if !ev.content {
		return false
	}
	switch x.api {
	case model.GenAIResponses:
		return ev.is("response.output_text.delta") || ev.is("response.refusal.delta") ||
			ev.is("response.function_call_arguments.delta")
	case model.GenAIMessages:
		return ev.is("content_block_delta")
	}
	return true
}

// settleEvent applies what ends a stream: its terminal event, or an error.
func (x *Exchange) settleEvent() {
	ev := &x.ev
	switch {
	case ev.errored, ev.done:
		x.terminal = true
	case x.api == model.GenAIMessages:
		x.terminal = ev.is("message_stop") || ev.is("error")
	case x.api == model.GenAIResponses:
		x.terminal = ev.is("response.completed") || ev.is("response.failed") ||
			ev.is("response.incomplete") || ev.is("error")
	}
}

// nextEvent readies the reader for the next event.
func (x *Exchange) nextEvent() {
	x.ev = event{}
	x.resp.Reset(x.eventPaths, (*fields)(x))
}
