package h2

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder keeps what a client connection wrote and read, in order, as a
// probe on its plaintext would.
type recorder struct {
	net.Conn
	mu   *sync.Mutex
	segs *[]seg
}

func (r recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	*r.segs = append(*r.segs, seg{ToServer, time.Now(), append([]byte(nil), p...)})
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		r.mu.Lock()
		*r.segs = append(*r.segs, seg{ToClient, time.Now(), append([]byte(nil), p[:n]...)})
		r.mu.Unlock()
	}
	return n, err
}

// Go's own HTTP/2 client and server (net/http, h2 without TLS so that the
// bytes can be taken from the socket): their HPACK (dynamic table,
// Huffman), SETTINGS, WINDOW_UPDATEs and DATA framing are read right, a
// streamed model call ends at its last DATA, whether the connection is
// seen from its preface or joined after its first calls (with hints).
func TestGoHTTP2(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, e := range chatStream {
				io.WriteString(w, e)
				w.(http.Flusher).Flush()
				time.Sleep(5 * time.Millisecond)
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-2","object":"chat.completion","model":"gpt-4o-mini-2024-07-18",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length"}],`+
			`"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()

	var mu sync.Mutex
	var segs []seg
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return recorder{c, &mu, &segs}, nil
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	type call struct {
		path, body string
		end        time.Time // when the client read the body's end
		at         int       // segments recorded before the call
	}
	calls := []*call{
		{path: "/healthz"},
		{path: "/v1/chat/completions", body: strings.Replace(chatReq, `"stream":true`, `"stream":false`, 1)},
		{path: "/v1/chat/completions", body: chatReq},
		{path: "/v1/chat/completions", body: chatReq},
	}
	for _, c := range calls {
		mu.Lock()
		c.at = len(segs)
		mu.Unlock()
		method := "GET"
		var body io.Reader
		if c.body != "" {
			method, body = "POST", strings.NewReader(c.body)
		}
		req, _ := http.NewRequest(method, srv.URL+c.path, body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s: %s", c.path, resp.Proto)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.end = time.Now()
	}
	mu.Lock()
	all := append([]seg(nil), segs...)
	mu.Unlock()

	check := func(name string, c *Conn, out []*Stream, first int) {
		got := byID(out)
		for i, cl := range calls[first:] {
			id := uint32(2*(i+first) + 1)
			s := got[id]
			if s == nil {
				t.Fatalf("%s: no stream %d: %v", name, id, got)
			}
			if s.Path != cl.path || s.How != EndStream || s.End.After(cl.end) || s.End.Before(s.Start) {
				t.Errorf("%s: stream %d %+v", name, id, s)
			}
			if cl.body == "" {
				if s.GenAI != nil {
					t.Errorf("%s: stream %d is no model call: %+v", name, id, s.GenAI)
				}
				continue
			}
			g := s.GenAI
			if g == nil || g.RequestModel != "gpt-4o-mini" || g.ResponseModel != "gpt-4o-mini-2024-07-18" || g.Cut != 0 {
				t.Fatalf("%s: stream %d GenAI %+v", name, id, g)
			}
			if stream := strings.Contains(cl.body, `"stream":true`); stream != g.Stream ||
				stream && (g.Usage.Output != 2 || g.ContentChunks != 2 || g.LastChunk.After(s.End) ||
					s.End.Sub(g.FirstToken) < 15*time.Millisecond) ||
				!stream && (g.Usage.Output != 1 || g.FinishReasons[0] != "length") {
				t.Errorf("%s: stream %d GenAI %+v (end %v)", name, id, g, s.End)
			}
		}
		t.Logf("%s: %+v", name, c.Stats())
	}

	c := NewConn(Options{})
	out := feed(c, all, nil)
	if !c.FromStart() || c.Stats().Undecoded != 0 || c.Stats().HPACKErrors != 0 {
		t.Fatalf("from the preface: %+v", c.Stats())
	}
	check("from the preface", c, out, 0)
	for _, s := range out {
		if !s.Decoded || s.Authority == "" || s.Status != 200 {
			t.Errorf("stream %+v", s)
		}
	}

	// Joined in the middle of the second call's segments.
	from := (calls[1].at + calls[2].at) / 2
	c = NewConn(Options{})
	for i := 1; i < len(calls); i++ {
		c.Hint(uint32(2*i+1), "POST", calls[i].path)
	}
	out = feed(c, all[from:], nil)
	if c.FromStart() || c.Stats().Resyncs == 0 {
		t.Fatalf("mid-way: %+v", c.Stats())
	}
	check("mid-way", c, out, 2)
}
