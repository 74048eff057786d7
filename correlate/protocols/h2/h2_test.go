package h2

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// seg is one write of a connection, as a probe would see it.
type seg struct {
	dir Dir
	t   time.Time
	b   []byte
}

// wire writes both sides of an HTTP/2 connection with x/net's framer and
// HPACK encoder (each side's encoder keeps its dynamic table, as a real
// peer's does) and records the segments.
type wire struct {
	t0   time.Time
	segs []seg
	buf  [2]bytes.Buffer
	fr   [2]*http2.Framer
	hbuf [2]bytes.Buffer
	enc  [2]*hpack.Encoder
}

func newWire() *wire {
	w := &wire{t0: time.Unix(1_700_000_000, 0)}
	for d := range 2 {
		w.fr[d] = http2.NewFramer(&w.buf[d], nil)
		w.enc[d] = hpack.NewEncoder(&w.hbuf[d])
	}
	return w
}

// flush records what side d wrote since the last flush, at ms.
func (w *wire) flush(d Dir, ms int) {
	if w.buf[d].Len() == 0 {
		return
	}
	w.segs = append(w.segs, seg{d, w.at(ms), bytes.Clone(w.buf[d].Bytes())})
	w.buf[d].Reset()
}

func (w *wire) at(ms int) time.Time { return w.t0.Add(time.Duration(ms) * time.Millisecond) }

// block encodes header fields (name, value pairs) with d's encoder.
func (w *wire) block(d Dir, kv ...string) []byte {
	w.hbuf[d].Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		w.enc[d].WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(w.hbuf[d].Bytes())
}

// start writes the client's preface and SETTINGS and the server's SETTINGS.
func (w *wire) start(serverTable uint32) {
	w.buf[ToServer].WriteString(Preface)
	w.fr[ToServer].WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20})
	w.fr[ToServer].WriteWindowUpdate(0, 1<<30)
	w.flush(ToServer, 0)
	w.fr[ToClient].WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 250},
		http2.Setting{ID: http2.SettingHeaderTableSize, Val: serverTable})
	w.fr[ToClient].WriteSettingsAck()
	w.flush(ToClient, 1)
	w.fr[ToServer].WriteSettingsAck()
	w.flush(ToServer, 1)
}

// request writes a request's HEADERS (in two frames, padded, with
// priority) and its body in DATA frames of at most 100 bytes.
func (w *wire) request(id uint32, ms int, method, path, body string) {
	blk := w.block(ToServer, ":method", method, ":scheme", "https", ":authority", "api.example.test",
		":path", path, "content-type", "application/json", "user-agent", "OpenAI/Go 3.0")
	half := len(blk) / 2
	w.fr[ToServer].WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk[:half],
		EndStream: body == "", PadLength: 3, Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}})
	w.fr[ToServer].WriteContinuation(id, true, blk[half:])
	for len(body) > 0 {
		n := min(len(body), 100)
		if n%2 == 1 {
			w.fr[ToServer].WriteDataPadded(id, n == len(body), []byte(body[:n]), make([]byte, 5))
		} else {
			w.fr[ToServer].WriteData(id, n == len(body), []byte(body[:n]))
		}
		body = body[n:]
	}
	w.flush(ToServer, ms)
}

// response writes a response's HEADERS at ms and each body piece as DATA
// 10 ms apart, the last with END_STREAM; it returns when the last went.
func (w *wire) response(id uint32, ms, status int, ctype string, pieces ...string) int {
	blk := w.block(ToClient, ":status", itoa(status), "content-type", ctype, "date", "Thu, 03 Dec 2026 19:00:00 GMT")
	w.fr[ToClient].WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true,
		EndStream: len(pieces) == 0})
	w.flush(ToClient, ms)
	for i, p := range pieces {
		ms += 10
		w.fr[ToClient].WriteData(id, i == len(pieces)-1, []byte(p))
		w.flush(ToClient, ms)
	}
	return ms
}

func itoa(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

// feed gives c the segments, each cut in random pieces.
func feed(c *Conn, segs []seg, r *rand.Rand) []*Stream {
	var out []*Stream
	for _, s := range segs {
		b := s.b
		for len(b) > 0 {
			n := len(b)
			if r != nil {
				n = 1 + r.IntN(len(b))
			}
			out = c.Feed(out, s.dir, s.t, b[:n])
			b = b[n:]
		}
	}
	return out
}

const chatReq = `{"messages":[{"content":"Say hi","role":"user"}],"model":"gpt-4o-mini","max_tokens":32,"stream":true,` +
	`"stream_options":{"include_usage":true},"temperature":0.5}`

func chatChunk(delta, finish string) string {
	return `data: {"id":"chatcmpl-9","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",` +
		`"choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
}

var chatStream = []string{
	chatChunk(`{"role":"assistant","content":""}`, "null"),
	chatChunk(`{"content":"Hi"}`, "null"),
	chatChunk(`{"content":" there"}`, "null"),
	chatChunk(`{}`, `"stop"`),
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],` +
		`"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}` + "\n\n",
	"data: [DONE]\n\n",
}

const embedReq = `{"input":"hello","model":"text-embedding-3-small"}`
const embedResp = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],` +
	`"model":"text-embedding-3-small","usage":{"prompt_tokens":1,"total_tokens":1}}`

// connSegments is a connection seen from its preface: a streamed chat
// call (stream 1), a GET that is no model call (3), an embeddings call
// (5) whose headers HPACK encodes from the dynamic table, and a call the
// client resets mid-stream (7). It returns the segments and when each
// stream's response ended.
func connSegments() (*wire, map[uint32]int) {
	w := newWire()
	w.start(8192)
	ends := map[uint32]int{}
	w.request(1, 2, "POST", "/v1/chat/completions", chatReq)
	w.request(3, 3, "GET", "/v1/models", "")
	ends[3] = w.response(3, 20, 200, "application/json", `{"data":[]}`)
	ends[1] = w.response(1, 80, 200, "text/event-stream; charset=utf-8", chatStream...)
	w.request(5, 200, "POST", "/v1/embeddings", embedReq)
	ends[5] = w.response(5, 230, 200, "application/json", embedResp[:40], embedResp[40:])
	w.request(7, 300, "POST", "/v1/chat/completions", chatReq)
	w.response(7, 320, 200, "text/event-stream", chatStream[:2]...)
	// The last DATA went with END_STREAM: take it back, the client
	// resets the stream before the answer ends.
	last := &w.segs[len(w.segs)-1]
	last.b[4] &^= flagEndStream
	w.fr[ToServer].WriteRSTStream(7, http2.ErrCodeCancel)
	w.flush(ToServer, 345)
	ends[7] = 345
	return w, ends
}

func byID(out []*Stream) map[uint32]*Stream {
	m := map[uint32]*Stream{}
	for _, s := range out {
		m[s.ID] = s
	}
	return m
}

// A connection seen from its preface: every stream's headers decoded
// (dynamic table and SETTINGS_HEADER_TABLE_SIZE included), the model
// calls' bodies read, each stream ending at its last frame, whatever the
// pieces the bytes come in.
func TestFromPreface(t *testing.T) {
	w, ends := connSegments()
	for seed := range uint64(50) {
		var r *rand.Rand
		if seed > 0 {
			r = rand.New(rand.NewPCG(seed, 1))
		}
		c := NewConn(Options{})
		got := byID(feed(c, w.segs, r))
		if !c.FromStart() {
			t.Fatal("not seen from the preface")
		}
		st := c.Stats()
		if st.Undecoded != 0 || st.HPACKErrors != 0 || st.Resyncs != 0 || st.Malformed != 0 || st.Skipped != 0 {
			t.Fatalf("seed %d: stats %+v", seed, st)
		}
		if len(got) != 4 {
			t.Fatalf("seed %d: %d streams, want 4", seed, len(got))
		}
		s1 := got[1]
		if s1.Method != "POST" || s1.Path != "/v1/chat/completions" || s1.Authority != "api.example.test" ||
			s1.Status != 200 || !s1.Decoded || s1.How != EndStream || !s1.End.Equal(w.at(ends[1])) ||
			!s1.Start.Equal(w.at(2)) || !s1.ResponseStart.Equal(w.at(80)) || s1.RequestBytes != int64(len(chatReq)) {
			t.Fatalf("seed %d: stream 1 %+v", seed, s1)
		}
		g := s1.GenAI
		if g == nil || g.RequestModel != "gpt-4o-mini" || g.ResponseModel != "gpt-4o-mini-2024-07-18" || !g.Stream ||
			g.Usage.Input != 9 || g.Usage.Output != 2 || g.NFinish != 1 || g.FinishReasons[0] != "stop" ||
			g.MaxTokens != 32 || g.End != model.GenAIEndDone || g.Cut != 0 || g.ContentChunks != 2 ||
			!g.FirstToken.Equal(w.at(100)) || !g.FirstChunk.Equal(w.at(90)) {
			t.Fatalf("seed %d: stream 1 GenAI %+v", seed, g)
		}
		if s := got[3]; s.Method != "GET" || s.Path != "/v1/models" || s.GenAI != nil || s.Status != 200 ||
			s.ContentType != "application/json" || !s.End.Equal(w.at(ends[3])) {
			t.Fatalf("seed %d: stream 3 %+v", seed, s)
		}
		s5 := got[5]
		if s5.Path != "/v1/embeddings" || s5.GenAI == nil || s5.GenAI.RequestModel != "text-embedding-3-small" ||
			s5.GenAI.Operation != "embeddings" || s5.GenAI.Usage.Input != 1 || !s5.End.Equal(w.at(ends[5])) {
			t.Fatalf("seed %d: stream 5 %+v GenAI %+v", seed, s5, s5.GenAI)
		}
		s7 := got[7]
		if s7.How != EndReset || s7.ResetCode != uint32(http2.ErrCodeCancel) || s7.GenAI == nil ||
			s7.GenAI.ErrorType != "stream_cut" || !s7.End.Equal(w.at(340)) {
			t.Fatalf("seed %d: stream 7 %+v GenAI %+v", seed, s7, s7.GenAI)
		}
	}
}

// A table size the server's SETTINGS forbids makes the client's blocks
// undecodable: counted, never a wrong header.
func TestTableSizeHonoured(t *testing.T) {
	w := newWire()
	w.start(256)
	// The client's encoder was not told: its first block says nothing of
	// a table size, but a later large table size update is over 256.
	w.enc[ToServer].SetMaxDynamicTableSizeLimit(4096)
	w.enc[ToServer].SetMaxDynamicTableSize(1024)
	w.request(1, 2, "POST", "/v1/chat/completions", chatReq)
	c := NewConn(Options{})
	out := feed(c, w.segs, nil)
	out = c.Close(out, w.at(10))
	if st := c.Stats(); st.HPACKErrors != 1 {
		t.Fatalf("stats %+v, want one HPACK error", st)
	}
	if len(out) != 1 || out[0].Decoded || out[0].Path != "" || out[0].How != EndClosed {
		t.Fatalf("streams %+v", out)
	}
}

// A connection joined mid-way: the framing is found again inside a
// segment, no header block is decoded (counted), and a stream a hint
// names is read as the model call it is, its status from nothing but the
// body (sniffed).
func TestMidway(t *testing.T) {
	w, ends := connSegments()
	// Drop everything before the request of stream 5 but its last 7
	// bytes, and the responses' bytes before it.
	var segs []seg
	for i, s := range w.segs {
		if s.t.Before(w.at(200)) {
			continue
		}
		if s.t.Equal(w.at(200)) && s.dir == ToServer {
			prev := w.segs[i-1]
			s.b = append(bytes.Clone(prev.b[len(prev.b)-7:]), s.b...)
		}
		segs = append(segs, s)
	}
	for seed := range uint64(30) {
		var r *rand.Rand
		if seed > 0 {
			r = rand.New(rand.NewPCG(seed, 2))
		}
		c := NewConn(Options{})
		c.Hint(5, "POST", "/v1/embeddings")
		out := feed(c, segs, r)
		out = c.Close(out, w.at(400))
		got := byID(out)
		st := c.Stats()
		if c.FromStart() || st.Resyncs != 2 || st.Undecoded != 4 || st.HPACKErrors != 0 {
			t.Fatalf("seed %d: stats %+v", seed, st)
		}
		s5 := got[5]
		if s5 == nil || s5.Decoded || s5.Path != "/v1/embeddings" || s5.How != EndStream || !s5.End.Equal(w.at(ends[5])) {
			t.Fatalf("seed %d: stream 5 %+v", seed, s5)
		}
		if g := s5.GenAI; g == nil || g.RequestModel != "text-embedding-3-small" || g.Usage.Input != 1 || g.Cut != 0 {
			t.Fatalf("seed %d: stream 5 GenAI %+v", seed, g)
		}
		if s7 := got[7]; s7 == nil || s7.How != EndReset || s7.GenAI != nil {
			t.Fatalf("seed %d: stream 7 %+v", seed, s7)
		}
	}
}

// A hint that comes after the stream's request body marks the request cut;
// Lost marks what was open cut and the framing is found again.
func TestLateHintAndLost(t *testing.T) {
	w := newWire()
	w.start(4096)
	w.request(1, 2, "POST", "/v1/chat/completions", chatReq)
	end := w.response(1, 80, 200, "text/event-stream", chatStream...)
	c := NewConn(Options{})
	// Skip the preface: joined mid-way at the client's SETTINGS.
	segs := append([]seg(nil), w.segs...)
	segs[0].b = segs[0].b[len(Preface):]
	var out []*Stream
	for i, s := range segs {
		out = c.Feed(out, s.dir, s.t, s.b)
		if i == 3 {
			c.Hint(1, "POST", "/v1/chat/completions")
		}
		if s.t.Equal(w.at(100)) {
			c.Lost(ToClient)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d streams", len(out))
	}
	s := out[0]
	if s.GenAI == nil || s.GenAI.Cut&model.GenAICutRequest == 0 || s.GenAI.Cut&model.GenAICutResponse == 0 ||
		!s.End.Equal(w.at(end)) {
		t.Fatalf("stream %+v GenAI %+v", s, s.GenAI)
	}
	if st := c.Stats(); st.Resyncs < 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Streams beyond the bound are ended oldest first; hints beyond theirs
// are dropped; GOAWAY ends the streams above its last.
func TestBounds(t *testing.T) {
	w := newWire()
	w.start(4096)
	for id := uint32(1); id < 40; id += 2 {
		w.request(id, 2, "POST", "/v1/chat/completions", "")
	}
	w.fr[ToClient].WriteGoAway(31, http2.ErrCodeNo, []byte("bye"))
	w.flush(ToClient, 5)
	c := NewConn(Options{MaxStreams: 8})
	for id := uint32(1001); id < 1200; id += 2 {
		c.Hint(id, "POST", "/v1/messages")
	}
	out := feed(c, w.segs, nil)
	st := c.Stats()
	if st.Evicted != 20-8 || st.HintsDropped != 100-maxHints || len(c.hints) != maxHints {
		t.Fatalf("stats %+v, %d hints", st, len(c.hints))
	}
	goaway := 0
	for _, s := range out {
		if s.How == EndGoAway {
			goaway++
			if s.ID <= 31 {
				t.Errorf("stream %d ended by GOAWAY 31", s.ID)
			}
		}
	}
	if goaway != 4 || len(c.streams) != 4 {
		t.Fatalf("%d ended by GOAWAY, %d open", goaway, len(c.streams))
	}
}

// Garbage before any framing is skipped in bounded memory.
func TestGarbageBounded(t *testing.T) {
	c := NewConn(Options{})
	junk := bytes.Repeat([]byte("not http2 at all, "), 1<<14)
	for range 4 {
		c.Feed(nil, ToServer, time.Time{}, junk)
		c.Feed(nil, ToClient, time.Time{}, junk)
	}
	for d := range c.sides {
		if n := cap(c.sides[d].buf); n > 2*maxResyncBuf {
			t.Fatalf("side %d keeps %d bytes", d, n)
		}
	}
	if st := c.Stats(); st.Frames != 0 || st.Skipped == 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(Preface, "HTTP/2.0") {
		t.Fatal("preface")
	}
}

// Joined mid-way, a write or read that is exactly one frame is taken as
// framed at once: a stream whose only frames seen are its last ones ends
// with them, not at the connection's next frame.
func TestMidwayWholeFrames(t *testing.T) {
	w := newWire()
	w.fr[ToServer].WriteHeaders(http2.HeadersFrameParam{StreamID: 9, BlockFragment: []byte{0x82, 0x86}, EndHeaders: true})
	w.flush(ToServer, 1)
	w.fr[ToServer].WriteData(9, true, []byte(embedReq))
	w.flush(ToServer, 2)
	w.fr[ToClient].WriteHeaders(http2.HeadersFrameParam{StreamID: 9, BlockFragment: []byte{0x88}, EndHeaders: true})
	w.flush(ToClient, 30)
	w.fr[ToClient].WriteData(9, true, []byte(embedResp))
	w.flush(ToClient, 31)
	c := NewConn(Options{})
	c.Hint(9, "POST", "/v1/embeddings")
	out := feed(c, w.segs, nil)
	if len(out) != 1 {
		t.Fatalf("%d streams ended, %+v", len(out), c.Stats())
	}
	s := out[0]
	if s.How != EndStream || !s.End.Equal(w.at(31)) || s.GenAI == nil || s.GenAI.Usage.Input != 1 || s.GenAI.Cut != 0 {
		t.Fatalf("stream %+v GenAI %+v", s, s.GenAI)
	}
	if st := c.Stats(); st.Resyncs != 2 || st.Skipped != 0 || st.Undecoded != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkFeed reads the connection of TestFromPreface (four streams, two
// of them model calls) per iteration, one segment at a time.
func BenchmarkFeed(b *testing.B) {
	w, _ := connSegments()
	n := 0
	for _, s := range w.segs {
		n += len(s.b)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		c := NewConn(Options{})
		feed(c, w.segs, nil)
	}
}

// BenchmarkStreamData is the cost of one response DATA frame of a
// streamed model call (an SSE chunk) on a connection already followed.
func BenchmarkStreamData(b *testing.B) {
	w := newWire()
	w.start(4096)
	w.request(1, 2, "POST", "/v1/chat/completions", chatReq)
	blk := w.block(ToClient, ":status", "200", "content-type", "text/event-stream")
	w.fr[ToClient].WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true})
	w.fr[ToClient].WriteData(1, false, []byte(chatStream[0]))
	w.flush(ToClient, 80)
	c := NewConn(Options{})
	feed(c, w.segs, nil)
	w.segs = nil
	w.fr[ToClient].WriteData(1, false, []byte(chatStream[1]))
	w.flush(ToClient, 100)
	frame := w.segs[0].b
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		c.Feed(nil, ToClient, w.at(100), frame)
	}
	if c.streams[1] == nil || c.streams[1].ResponseBytes < int64(b.N*len(chatStream[1])) {
		b.Fatal("the stream was not followed")
	}
}

// A long request captured as each write's first and last bytes (Gap in
// between): the framing holds, and the model named after the messages is
// read from the body's tail; the request is marked cut. A gap that is not
// inside one frame's payload loses the framing, found again after.
func TestGap(t *testing.T) {
	const head, tailLen = 4096, 1024
	prompt := strings.Repeat("lorem ipsum ", 20000)
	body := `{"messages":[{"content":"` + prompt + `","role":"user"}],"model":"gpt-4o-mini","stream":true}`
	w := newWire()
	w.start(4096)
	blk := w.block(ToServer, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions")
	w.fr[ToServer].WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true})
	w.flush(ToServer, 2)
	for rest := body; len(rest) > 0; {
		n := min(len(rest), 16384)
		w.fr[ToServer].WriteData(1, n == len(rest), []byte(rest[:n]))
		w.flush(ToServer, 3)
		rest = rest[n:]
	}
	end := w.response(1, 80, 200, "text/event-stream", chatStream...)
	c := NewConn(Options{})
	var out []*Stream
	gaps := 0
	for _, s := range w.segs {
		if len(s.b) <= head+tailLen {
			out = c.Feed(out, s.dir, s.t, s.b)
			continue
		}
		gaps++
		out = c.Feed(out, s.dir, s.t, s.b[:head])
		c.Gap(s.dir, len(s.b)-head-tailLen)
		out = c.Feed(out, s.dir, s.t, s.b[len(s.b)-tailLen:])
	}
	if gaps < 10 || len(out) != 1 {
		t.Fatalf("%d gaps, %d streams", gaps, len(out))
	}
	s := out[0]
	g := s.GenAI
	if s.RequestBytes != int64(len(body)) || !s.End.Equal(w.at(end)) || g == nil || g.RequestModel != "gpt-4o-mini" ||
		!g.Stream || g.Cut != model.GenAICutRequest || g.Usage.Output != 2 || g.End != model.GenAIEndDone {
		t.Fatalf("stream %+v GenAI %+v", s, g)
	}
	if st := c.Stats(); st.Resyncs != 0 || st.HPACKErrors != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A gap over a frame header: as Lost.
	c = NewConn(Options{})
	segs := w.segs
	out = feed(c, segs[:3], nil)
	last := segs[3].b
	c.Feed(nil, ToServer, segs[3].t, last[:10])
	c.Gap(ToServer, len(last)-10+9+100)
	if st := c.Stats(); c.sides[ToServer].state != stResync || st.Resyncs != 0 {
		t.Fatalf("state %d, stats %+v", c.sides[ToServer].state, st)
	}
}

// A stream evicted while one of its frames is half read is handed out
// once: the rest of that frame is no longer its.
func TestEvictedMidFrame(t *testing.T) {
	w := newWire()
	w.start(4096)
	w.request(1, 2, "POST", "/v1/chat/completions", chatReq)
	w.response(1, 80, 200, "text/event-stream", chatStream[0], chatStream[1])
	w.request(3, 95, "POST", "/v1/chat/completions", chatReq)
	// Move the second request before the end of the first response's
	// last DATA frame.
	n := len(w.segs)
	last, req3 := w.segs[n-2], w.segs[n-1]
	c := NewConn(Options{MaxStreams: 1})
	var out []*Stream
	out = feed(c, w.segs[:n-2], nil)
	out = c.Feed(out, last.dir, last.t, last.b[:20])
	out = c.Feed(out, req3.dir, req3.t, req3.b)
	out = c.Feed(out, last.dir, last.t, last.b[20:])
	out = c.Close(out, w.at(200))
	ids := map[uint32]int{}
	for _, s := range out {
		ids[s.ID]++
	}
	if len(out) != 2 || ids[1] != 1 || ids[3] != 1 || c.Stats().Evicted != 1 {
		t.Fatalf("streams %v, stats %+v", ids, c.Stats())
	}
}

// Once the framing is found mid-way, frames longer than the default
// maximum (an embeddings response in one DATA frame) keep it.
func TestMidwayLongFrame(t *testing.T) {
	for seed := range uint64(20) {
		midwayLongFrame(t, seed)
	}
}

func midwayLongFrame(t *testing.T, seed uint64) {
	vec := strings.Repeat("0.0123456789,", 4000)
	resp := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[` + vec + `0]}],` +
		`"model":"text-embedding-3-small","usage":{"prompt_tokens":3,"total_tokens":3}}`
	w := newWire()
	w.fr[ToServer].WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x83, 0x86}, EndHeaders: true})
	w.fr[ToServer].WriteData(5, true, []byte(embedReq))
	w.flush(ToServer, 1)
	w.fr[ToClient].WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}, EndHeaders: true})
	w.flush(ToClient, 20)
	w.fr[ToClient].WriteData(5, true, []byte(resp))
	w.flush(ToClient, 21)
	c := NewConn(Options{})
	c.Hint(5, "POST", "/v1/embeddings")
	out := feed(c, w.segs, rand.New(rand.NewPCG(seed, 3)))
	if len(out) != 1 || len(resp) <= maxResyncFrame {
		t.Fatalf("%d streams, %+v", len(out), c.Stats())
	}
	s := out[0]
	if s.How != EndStream || s.ResponseBytes != int64(len(resp)) || s.GenAI == nil || s.GenAI.Usage.Input != 3 || s.GenAI.Cut != 0 {
		t.Fatalf("stream %+v GenAI %+v", s, s.GenAI)
	}
	if st := c.Stats(); st.Resyncs != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Joined in the middle of a streamed answer (the stream's first frame
// seen is DATA, cut inside an event): the answer is read as a body's tail,
// from its next event, and marked cut.
func TestMidwayInsideAnswer(t *testing.T) {
	w := newWire()
	w.fr[ToClient].WriteData(7, false, []byte(chatStream[1][20:]+chatStream[2]+chatStream[3]))
	w.flush(ToClient, 50)
	// More than a tail's worth of events after the cut.
	for range 30 {
		w.fr[ToClient].WriteData(7, false, []byte(chatStream[2]))
	}
	w.fr[ToClient].WriteData(7, true, []byte(chatStream[3]+chatStream[4]+chatStream[5]))
	w.flush(ToClient, 60)
	c := NewConn(Options{})
	c.Hint(7, "POST", "/v1/chat/completions")
	out := feed(c, w.segs, nil)
	if len(out) != 1 {
		t.Fatalf("%d streams, %+v", len(out), c.Stats())
	}
	g := out[0].GenAI
	if g == nil || g.Cut&model.GenAICutResponse == 0 || g.Usage.Output != 2 || g.NFinish != 1 || g.End != model.GenAIEndDone {
		t.Fatalf("stream %+v GenAI %+v", out[0], g)
	}
}
