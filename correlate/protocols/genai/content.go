package genai

import (
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai/jscan"
)

// Content is read only when the configuration asks for it
// (Options.Content): the messages sent, the system instructions and the
// answer, each text cut at Options.MaxContent bytes, at most MaxMessages
// messages. Redaction is semconv's, like every other string of a span.

// content takes one watched value of a prompt or an answer.
func (x *Exchange) content(f field, ev *jscan.Event) {
	switch f {
	case fInMsg:
		if ev.Kind != jscan.Object {
			return
		}
		x.closeMessage()
		if !ev.End {
			x.openMessage("")
		}
	case fInRole:
		if ev.Kind == jscan.String && x.msg != nil {
			x.msg.Role = x.intern(ev.Value)
		}
	case fInText:
		if ev.Kind != jscan.Text {
			return
		}
		whole := x.msg == nil
		if whole {
			// A prompt that is a string, not a list of messages.
			x.openMessage("user")
		}
		if x.msg != nil {
			x.msgText = x.appendText(x.msgText, ev.Value)
		}
		if whole && ev.End {
			x.closeMessage()
		}
	case fSystem:
		if ev.Kind == jscan.Text {
			x.sysText = x.appendText(x.sysText, ev.Value)
		}
	case fOutRole:
		if ev.Kind == jscan.String {
			x.outRole = x.intern(ev.Value)
		}
	case fOutText:
		if ev.Kind != jscan.Text {
			return
		}
		if x.api == model.GenAIResponses && x.side == sideEvent && x.ev.ntyp > 0 &&
			!x.ev.is("response.output_text.delta") {
			return // a reasoning or tool-call delta
		}
		x.outText = x.appendText(x.outText, ev.Value)
	}
}

// appendText adds a fragment to a text, up to the bound.
func (x *Exchange) appendText(b, frag []byte) []byte {
	room := x.opts.MaxContent - len(b)
	if len(frag) > room {
		frag = frag[:max(room, 0)]
		x.g.ContentCut = true
	}
	return append(b, frag...)
}

func (x *Exchange) openMessage(role string) {
	if len(x.g.Input) >= MaxMessages {
		x.g.ContentCut = true
		return
	}
	x.g.Input = append(x.g.Input, model.GenAIMessage{Role: role})
	x.msg = &x.g.Input[len(x.g.Input)-1]
	x.msgText = x.msgText[:0]
}

// closeMessage ends the input message being filled.
func (x *Exchange) closeMessage() {
	if x.msg != nil {
		x.msg.Text = string(x.msgText)
		x.msg = nil
		x.msgText = x.msgText[:0]
	}
}

// closeOutput makes the answer and the system instructions strings.
func (x *Exchange) closeOutput() {
	if len(x.sysText) > 0 {
		x.g.SystemInstructions = string(x.sysText)
	}
	if len(x.outText) > 0 || x.outRole != "" {
		role := x.outRole
		if role == "" {
			role = "assistant"
		}
		x.g.Output = append(x.g.Output, model.GenAIMessage{Role: role, Text: string(x.outText)})
	}
}
