// Command sampleapp is a plain net/http service that zerotrace's end-to-end
// tests and benchmarks attach to. It uses only the standard library, so it
// can be built with any Go toolchain from 1.22 on (method and wildcard
// patterns in http.ServeMux) and with any linker flags.
//
// It prints exactly one line, "listening on HOST:PORT", to stdout once its
// listener is bound, then serves until SIGTERM or SIGINT and shuts down
// gracefully. Routes:
//
//	GET  /hello       200 "hello"
//	GET  /users/{id}  200 {"id":"<id>","name":"user <id>"}
//	POST /items       201 {"length":<request body length>}
//	GET  /fail        500
//	GET  /slow?ms=N   sleeps N ms (at most 5000), then 200
//	GET  /bench       200 "ok" (trivial handler for benchmarks)
//	GET  /fanout      calls -downstream four times from three goroutines
//	GET  /chain       ?fan=N (1 to 8, default 1): calls -downstream's /chain
//	                  N times in parallel goroutines (and -downstream2's too,
//	                  when set) and answers with what they said; without
//	                  -downstream answers "id:leaf"
//	GET  /send        one request to -downstream shaped by the query (see
//	                  send), answering with the downstream's status and body
//	ANY  /proxy/...   httputil.ReverseProxy to -downstream, without the
//	                  /proxy prefix: it forwards the request's headers, a
//	                  traceparent included
//	GET  /stream?ms=N writes a line every 20 ms for N ms (at most 5000),
//	                  flushing each, then 200
//	GET  /hijack?ms=N hijacks the connection, writes a whole response
//	                  (200 "hijacked") and closes it, then returns after N ms
//	GET  /panic       panics with http.ErrAbortHandler: no response
//
// GET routes answer HEAD too. With -tls-addr the same routes are served
// over TLS there as well, HTTP/2 or HTTP/1.1 as the client chooses, with a
// self-signed certificate made at start. A -downstream with an https URL is
// called without checking its certificate (this is a test service).
//
// Anything else gets the mux's 404 (or 405 for a known path with another
// method).
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// maxSlow bounds /slow so that a typo in a test cannot park a request
	// (and the graceful shutdown waiting for it) for long.
	maxSlow = 5 * time.Second
	// maxItemBody bounds /items bodies; tests send a few MiB at most.
	maxItemBody = 64 << 20
	// shutdownTimeout exceeds maxSlow so in-flight /slow requests complete.
	shutdownTimeout = maxSlow + 3*time.Second
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	flag.StringVar(&downstream, "downstream", "", "base URL of another sampleapp that /fanout calls, e.g. http://127.0.0.1:8081")
	flag.StringVar(&downstream2, "downstream2", "", "base URL of a second service whose /chain /chain also calls")
	flag.DurationVar(&client.Timeout, "client-timeout", clientTimeout(), "how long a call to a downstream service may take")
	tlsAddr := flag.String("tls-addr", "", "also serve over TLS (HTTP/2 and HTTP/1.1) on this address")
	flag.Parse()
	log.SetPrefix("sampleapp: ")
	log.SetFlags(0)
	if strings.HasPrefix(downstream, "https://") {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		client.Transport = t
	}
	if err := run(*addr, *tlsAddr); err != nil {
		log.Fatal(err)
	}
}

func run(addr, tlsAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := newMux()
	srvs := []*http.Server{{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	serveErr := make(chan error, 2)
	if tlsAddr != "" {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		tln, err := net.Listen("tcp", tlsAddr)
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		}
		srvs = append(srvs, srv)
		// ServeTLS offers h2 and http/1.1 by ALPN.
		go func() { serveErr <- srv.ServeTLS(tln, "", "") }()
	}
	// The port is known only once bound: tests read this line to find it,
	// so it is printed after Listen and before serving.
	fmt.Printf("listening on %s\n", ln.Addr())

	go func() { serveErr <- srvs[0].Serve(ln) }()

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, srv := range srvs {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	for range srvs {
		if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sampleapp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", hello)
	mux.HandleFunc("GET /users/{id}", user)
	mux.HandleFunc("POST /items", createItem)
	mux.HandleFunc("GET /fail", fail)
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("GET /bench", bench)
	mux.HandleFunc("GET /fanout", fanout)
	mux.HandleFunc("GET /chain", chain)
	mux.HandleFunc("GET /send", send)
	mux.HandleFunc("GET /stream", stream)
	mux.HandleFunc("GET /hijack", hijack)
	mux.HandleFunc("GET /panic", panics)
	mux.HandleFunc("/proxy/", proxy)
	return mux
}

// proxy forwards the request to -downstream, as a reverse proxy does:
// headers included, a traceparent too.
func proxy(w http.ResponseWriter, r *http.Request) {
	if downstream == "" {
		http.Error(w, "no -downstream configured", http.StatusServiceUnavailable)
		return
	}
	target, err := url.Parse(downstream)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = client.Transport
	http.StripPrefix("/proxy", rp).ServeHTTP(w, r)
}

// stream writes a line every 20 ms for ?ms=N milliseconds, flushing each.
func stream(w http.ResponseWriter, r *http.Request) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
	end := time.Now().Add(time.Duration(min(max(ms, 0), int(maxSlow/time.Millisecond))) * time.Millisecond)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	for i := 0; ; i++ {
		fmt.Fprintf(w, "line %d\n", i)
		if err := rc.Flush(); err != nil {
			return
		}
		if !time.Now().Before(end) {
			return
		}
		select {
		case <-time.After(min(20*time.Millisecond, time.Until(end))):
		case <-r.Context().Done():
			return
		}
	}
}

// hijack takes the connection over, answers on it and closes it, then
// returns ?ms=N milliseconds later.
func hijack(w http.ResponseWriter, r *http.Request) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
	buf.Flush()
	conn.Close()
	time.Sleep(time.Duration(min(max(ms, 0), int(maxSlow/time.Millisecond))) * time.Millisecond)
}

// panics aborts the handler: net/http closes the connection without a
// response (ErrAbortHandler keeps it from logging a stack).
func panics(http.ResponseWriter, *http.Request) {
	panic(http.ErrAbortHandler)
}

// downstream is the service /fanout calls; /chain calls it and downstream2.
var downstream, downstream2 string

// client is shared by every /fanout call, with keep-alive, as a real
// gateway's would be.
var client = &http.Client{}

// clientTimeout is the default of -client-timeout: 10 s, times
// ZEROTRACE_TIMEOUT_SCALE when the tests set it (the kernel matrix's emulated
// guests run 10-15x slower, and the tests start this app without knowing
// which of its calls will be slow there).
func clientTimeout() time.Duration {
	d := 10 * time.Second
	if f, err := strconv.ParseFloat(os.Getenv("ZEROTRACE_TIMEOUT_SCALE"), 64); err == nil && f >= 1 {
		d = time.Duration(float64(d) * f)
	}
	return d
}

// fanout calls the downstream service four times, the way a gateway does:
// once in the handler's goroutine, twice in parallel goroutines, and once
// from a goroutine started by a goroutine. It answers 200 with the four
// statuses once all are back, or 502 when a call failed.
//
//	GET /hello        in the handler's goroutine      200
//	GET /users/{id}   in a goroutine                  200
//	GET /fail         in a goroutine                  500
//	GET /missing      in a goroutine's goroutine      404
func fanout(w http.ResponseWriter, r *http.Request) {
	if downstream == "" {
		http.Error(w, "no -downstream configured", http.StatusServiceUnavailable)
		return
	}
	call := func(path string) (int, error) {
		resp, err := client.Get(downstream + path)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	id := r.URL.Query().Get("id")
	statuses := make([]int, 4)
	errs := make([]error, 4)
	statuses[0], errs[0] = call("/hello?from=fanout&id=" + id)
	done := make(chan struct{}, 3)
	go func() {
		statuses[1], errs[1] = call("/users/" + id + "?from=fanout")
		done <- struct{}{}
	}()
	go func() {
		statuses[2], errs[2] = call("/fail?from=fanout&id=" + id)
		done <- struct{}{}
	}()
	go func() {
		inner := make(chan struct{})
		go func() {
			statuses[3], errs[3] = call("/missing/" + id + "?from=fanout")
			close(inner)
		}()
		<-inner
		done <- struct{}{}
	}()
	for range 3 {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(statuses)
}

// chain lets tests build a service tree from copies of this app: each hop
// passes the request's id on, so a test can tell which reply belongs to
// which request.
func chain(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if downstream == "" {
		io.WriteString(w, id+":leaf")
		return
	}
	fan, err := strconv.Atoi(r.URL.Query().Get("fan"))
	if err != nil || fan < 1 || fan > 8 {
		fan = 1
	}
	targets := []string{downstream}
	if downstream2 != "" {
		targets = append(targets, downstream2)
	}
	n := fan * len(targets)
	replies := make([]string, n)
	errs := make([]error, n)
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			resp, err := client.Get(targets[i/fan] + "/chain?id=" + id)
			if err != nil {
				errs[i] = err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			replies[i], errs[i] = string(body), err
		}()
	}
	for range n {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.WriteString(w, "["+strings.Join(replies, ",")+"]")
}

// send makes one request to -downstream, shaped by its query, for tests of
// what the agent does to outgoing requests:
//
//	method=M        request method (default GET)
//	path=P          request path (default /)
//	size=N          a body of N bytes (a repeating pattern), sent with its length
//	chunked=1       the body of unknown length: chunked transfer encoding
//	body=request    a body that is itself an HTTP/1.1 request head
//	pad=N           an X-Pad header of N bytes
//	traceparent=V   a traceparent header sent as is
//	expect=1        Expect: 100-continue
//	close=1         no keep-alive
func send(w http.ResponseWriter, r *http.Request) {
	if downstream == "" {
		http.Error(w, "no -downstream configured", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	method := q.Get("method")
	if method == "" {
		method = http.MethodGet
	}
	var body []byte
	if n, err := strconv.Atoi(q.Get("size")); err == nil && n > 0 {
		body = make([]byte, min(n, maxItemBody))
		for i := range body {
			body[i] = "0123456789abcdefghijklmnopqrstuvwxyz\n"[i%37]
		}
	}
	if q.Get("body") == "request" {
		body = []byte("GET / HTTP/1.1\r\nHost: inside.example\r\n\r\n")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
		if q.Get("chunked") == "1" {
			rd = io.MultiReader(rd) // hides the length: chunked encoding
		}
	}
	req, err := http.NewRequestWithContext(r.Context(), method, downstream+q.Get("path"), rd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if n, err := strconv.Atoi(q.Get("pad")); err == nil && n > 0 {
		req.Header.Set("X-Pad", strings.Repeat("p", min(n, 1<<20)))
	}
	if v := q.Get("traceparent"); v != "" {
		req.Header.Set("Traceparent", v)
	}
	if q.Get("expect") == "1" {
		req.Header.Set("Expect", "100-continue")
	}
	req.Close = q.Get("close") == "1"
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func hello(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "hello")
}

func user(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "name": "user " + id})
}

func createItem(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxItemBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"length": n})
}

func fail(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "intentional failure", http.StatusInternalServerError)
}

func slow(w http.ResponseWriter, r *http.Request) {
	var d time.Duration
	if s := r.URL.Query().Get("ms"); s != "" {
		ms, err := strconv.Atoi(s)
		if err != nil || ms < 0 {
			http.Error(w, "ms must be a non-negative integer", http.StatusBadRequest)
			return
		}
		// Clamp before converting: a huge ms would overflow Duration.
		d = time.Duration(min(ms, int(maxSlow/time.Millisecond))) * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		// The client went away: nobody reads the answer.
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "slept %d ms", d.Milliseconds())
}

func bench(w http.ResponseWriter, _ *http.Request) {
	io.WriteString(w, "ok")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
