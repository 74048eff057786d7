package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// request is one request sent to the sample app and what the client saw.
type request struct {
	ID       int
	Method   string
	Path     string
	Body     string
	Route    string // expected http.route, "" when none
	Status   int    // expected status
	Start    time.Time
	End      time.Time
	PeerPort int // the client's local port, which the server sees as the peer port
}

// query is the unique query string that identifies the request in spans.
func (r *request) query() string { return fmt.Sprintf("req=%d", r.ID) }

// mixedRequests returns n requests over several routes, methods and statuses,
// including 404 and 500.
func mixedRequests(n int) []*request {
	kinds := []request{
		{Method: "GET", Path: "/hello", Route: "/hello", Status: 200},
		{Method: "GET", Path: "/users/%d", Route: "/users/{id}", Status: 200},
		{Method: "POST", Path: "/items", Body: "zerotrace item body", Route: "/items", Status: 201},
		{Method: "GET", Path: "/fail", Route: "/fail", Status: 500},
		{Method: "GET", Path: "/missing/%d", Route: "", Status: 404},
		{Method: "GET", Path: "/slow", Route: "/slow", Status: 200},
	}
	out := make([]*request, n)
	for i := range out {
		r := kinds[i%len(kinds)]
		r.ID = i
		if strings.Contains(r.Path, "%d") {
			r.Path = fmt.Sprintf(r.Path, i)
		}
		out[i] = &r
	}
	return out
}

// send performs the requests sequentially on one keep-alive client and
// records when each started and ended as seen by the client.
func send(t testing.TB, addr string, reqs []*request) {
	t.Helper()
	client := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second), Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	for _, r := range reqs {
		url := "http://" + addr + r.Path + "?" + r.query()
		if r.Path == "/slow" {
			url += "&ms=15"
		}
		var body io.Reader
		if r.Body != "" {
			body = strings.NewReader(r.Body)
		}
		req, err := http.NewRequest(r.Method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req = req.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				r.PeerPort = info.Conn.LocalAddr().(*net.TCPAddr).Port
			},
		}))
		r.Start = time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d %s %s: %v", r.ID, r.Method, url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.End = time.Now()
		if resp.StatusCode != r.Status {
			t.Fatalf("request %d %s %s: status %d, want %d", r.ID, r.Method, url, resp.StatusCode, r.Status)
		}
	}
}
