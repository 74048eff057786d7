package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// pausedClient makes a GenAI client driver's command (GenAIClientCommand)
// wait, with its TLS library loaded, until the agent is attached: it
// writes its PID to a file and starts its calls once a second file
// exists. It returns the command and a function that waits for the PID,
// attaches the agent with args and lets the client go.
func pausedClient(t *testing.T, driver string, cmd *exec.Cmd) (*exec.Cmd, func(attach func(pid int) *agent) *agent) {
	return pausedClientLoading(t, driver, cmd, "")
}

// pausedClientLoading is pausedClient, with how the Python client starts
// once let go: "late", it loads its TLS library only then; "fork", a child
// it forks makes the calls; either waits 2.5 s before them (the agent
// looks for a library loaded later, and for new children, once a second).
func pausedClientLoading(t *testing.T, driver string, cmd *exec.Cmd, how string) (*exec.Cmd, func(attach func(pid int) *agent) *agent) {
	t.Helper()
	dir := t.TempDir()
	pidFile, goFile := filepath.Join(dir, "pid"), filepath.Join(dir, "go")
	switch driver {
	case modelspec.DriverPython:
		// python -c CODE pidfile gofile client.py args...
		code := `import os, runpy, ssl, sys, time
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid())); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]): time.sleep(0.01)
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")`
		switch how {
		case "fork":
			code = `import os, runpy, ssl, sys, time
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid())); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]): time.sleep(0.01)
sys.argv = sys.argv[3:]
child = os.fork()
if child == 0:
    time.sleep(2.5)
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.stdout.flush()
        os._exit(0)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))`
		case "late":
			code = `import os, runpy, sys, time
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid())); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]): time.sleep(0.01)
if "ssl" in sys.modules: sys.exit("ssl was loaded before the agent attached")
import ssl
time.sleep(2.5)
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")`
		}
		cmd.Args = append([]string{cmd.Args[0], "-c", code, pidFile, goFile}, cmd.Args[1:]...)
	case modelspec.DriverNode:
		// node wrapper.mjs pidfile gofile client.mjs args...
		wrapper := filepath.Join(dir, "wrapper.mjs")
		src := `import fs from "node:fs";
import { pathToFileURL } from "node:url";
const [pidFile, goFile, client] = process.argv.slice(2, 5);
fs.writeFileSync(pidFile + ".tmp", String(process.pid)); fs.renameSync(pidFile + ".tmp", pidFile);
while (!fs.existsSync(goFile)) await new Promise((r) => setTimeout(r, 10));
process.argv.splice(1, 3);
await import(pathToFileURL(client).href);
`
		if err := os.WriteFile(wrapper, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd.Args = append([]string{cmd.Args[0], wrapper, pidFile, goFile}, cmd.Args[1:]...)
	default:
		t.Fatalf("no paused form of driver %q", driver)
	}
	return cmd, func(attach func(pid int) *agent) *agent {
		deadline := time.Now().Add(testenv.Timeout(t, 30*time.Second))
		for {
			b, err := os.ReadFile(pidFile)
			if err == nil {
				pid, err := strconv.Atoi(string(b))
				if err != nil {
					t.Fatalf("pid file %q: %v", b, err)
				}
				a := attach(pid)
				if err := os.WriteFile(goFile, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return a
			}
			if time.Now().After(deadline) {
				t.Fatalf("the %s client did not start", driver)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// runTracedClient runs a client driver over HTTPS against ms, traced by
// the agent from its first call, and returns its calls and the agent
// (exited).
func runTracedClient(t *testing.T, zt, driver string, ms *testenv.ModelServer, b modelspec.Batch) ([]modelspec.Call, *agent) {
	return runTracedClientLoading(t, zt, driver, ms, b, "")
}

// runTracedClientLoading is runTracedClient, the TLS library loaded after
// the attach when late is set (pausedClientLoading).
func runTracedClientLoading(t *testing.T, zt, driver string, ms *testenv.ModelServer, b modelspec.Batch, how string) ([]modelspec.Call, *agent) {
	t.Helper()
	cmd, release := pausedClientLoading(t, driver, testenv.GenAIClientCommand(t, driver, ms.TLSURL(), b, ms.TrustEnv()...), how)
	calls := make(chan []modelspec.Call, 1)
	go func() { calls <- testenv.RunGenAIClient(t, cmd) }()
	a := release(func(pid int) *agent {
		return startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(pid), "--output", "json")
	})
	var got []modelspec.Call
	select {
	case got = <-calls:
	case <-time.After(testenv.Timeout(t, 3*time.Minute)):
		t.Fatal("the client did not finish")
	}
	// The agent exits by itself once its one traced process has.
	select {
	case <-a.done:
		if a.err != nil {
			t.Fatalf("zerotrace exited with %v:\n%s", a.err, a.Stderr())
		}
	case <-time.After(testenv.Timeout(t, 30*time.Second)):
		a.stop()
	}
	return got, a
}

// checkTLSClientSpans requires one CLIENT span from the kernel path per
// call, made over TLS and read at the TLS library: url.full the call's
// https URL, its status, the server's address and port, and the client's
// process; and, since the path is a model API's, the GenAI span the kernel
// path makes of a plain-HTTP call (checkKernelClientSpan: model, tokens,
// finish reasons, the stream measured whole, its first chunk and token
// between the server's write and the client's read), over TLS.
func checkTLSClientSpans(t *testing.T, a *agent, ms *testenv.ModelServer, b modelspec.Batch, calls []modelspec.Call, path string) []observed {
	t.Helper()
	if len(calls) == 0 {
		t.Fatal("the client made no call")
	}
	u, err := url.Parse(calls[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	var got []observed
	for _, s := range fromJSON(a.jsonSpans()) {
		if s.Kind == "client" && s.Attrs["zerotrace.source"] == "kernel" {
			got = append(got, s)
		}
	}
	if len(got) != len(calls) {
		t.Fatalf("%d kernel client spans for %d calls: %v\nagent:\n%s", len(got), len(calls), got, a.Stderr())
	}
	for i, s := range got {
		c := calls[i]
		if c.Status != 200 || !c.TLS {
			t.Fatalf("call %d: status %d, tls %v", i, c.Status, c.TLS)
		}
		for k, want := range map[string]string{
			"url.full":                  "https://" + u.Host + path,
			"http.request.method":       "POST",
			"http.response.status_code": "200",
			"server.address":            u.Hostname(),
			"server.port":               u.Port(),
			"process.pid":               fmt.Sprint(c.PID),
			"network.protocol.version":  "1.1",
			"zerotrace.source":          "kernel",
			"gen_ai.operation.name":     "chat",
			"gen_ai.provider.name":      "openai",
		} {
			v := s.Attrs[k]
			if k == "process.pid" {
				v = s.Resource[k]
			}
			if v != want {
				t.Errorf("call %d: %s = %q, want %q", i, k, v, want)
			}
		}
		// Written after the call began and answered before it ended, as
		// the client measured (a few ms for the clocks' offsets).
		const slack = 20 * time.Millisecond
		if s.Start.Before(c.Times.Start.Add(-slack)) || s.End.Before(s.Start) || s.End.After(c.Times.End.Add(slack)) {
			t.Errorf("call %d: span %v..%v, call %v..%v", i, s.Start, s.End, c.Times.Start, c.Times.End)
		}
		// The JSON lines print an array attribute as [a b]; the check
		// expects Jaeger's JSON form.
		if fr := s.Attrs["gen_ai.response.finish_reasons"]; strings.HasPrefix(fr, "[") && !strings.HasPrefix(fr, `["`) {
			j, _ := json.Marshal(strings.Fields(strings.Trim(fr, "[]")))
			s.Attrs["gen_ai.response.finish_reasons"] = string(j)
		}
		checkKernelClientSpan(t, kernelClientCall{batch: b, operation: "chat"}, c, ms.Exchange(t, c), s)
	}
	return got
}

// TestKernelTLSPython traces the Python client (http.client over the ssl
// module, one kept-alive connection) calling the model server over HTTPS:
// its plaintext is read at libssl, so each call is a CLIENT span with the
// https URL, status and server address, as over plain HTTP.
func TestKernelTLSPython(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t, "-defaults", "ttft=60,gap=10")
	batch := modelspec.Batch{API: modelspec.OpenAIChat, N: 3, Stream: true, IncludeUsage: true, Model: "gpt-tls"}
	calls, a := runTracedClient(t, zt, modelspec.DriverPython, ms, batch)
	if !strings.Contains(a.Stderr(), "TLS plaintext read at ssl_read_internal and ssl_write_internal of") {
		t.Fatalf("no TLS probes on the Python client:\n%s", a.Stderr())
	}
	for _, s := range checkTLSClientSpans(t, a, ms, batch, calls, "/v1/chat/completions") {
		t.Logf("%s %s %v %v", s.Name, s.Kind, s.End.Sub(s.Start), s.Attrs)
	}
}

// TestKernelTLSLoadedLater: a Python client that loads the ssl module (so
// libssl) only after the agent attached gets its TLS probes once it has.
func TestKernelTLSLoadedLater(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t, "-defaults", "ttft=60,gap=10")
	batch := modelspec.Batch{API: modelspec.OpenAIChat, N: 2, Model: "gpt-tls"}
	calls, a := runTracedClientLoading(t, zt, modelspec.DriverPython, ms, batch, "late")
	if !strings.Contains(a.Stderr(), "loaded OpenSSL: TLS plaintext read at ssl_read_internal") {
		t.Fatalf("no TLS probes once the library was loaded:\n%s", a.Stderr())
	}
	checkTLSClientSpans(t, a, ms, batch, calls, "/v1/chat/completions")
}

// TestKernelTLSForkedChild: the calls of a child that a traced Python
// process forks after the attach (a pre-forking server's new worker) are
// read at its libssl too.
func TestKernelTLSForkedChild(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t, "-defaults", "ttft=60,gap=10")
	batch := modelspec.Batch{API: modelspec.OpenAIChat, N: 2, Model: "gpt-tls"}
	calls, a := runTracedClientLoading(t, zt, modelspec.DriverPython, ms, batch, "fork")
	checkTLSClientSpans(t, a, ms, batch, calls, "/v1/chat/completions")
}

// TestKernelTLSNode traces the Node client (the openai npm package, whose
// fetch speaks HTTP/1.1 over Node's own OpenSSL, with memory BIOs) calling
// the model server over HTTPS: the same CLIENT spans, the socket found
// through the thread's TLS socket syscalls.
func TestKernelTLSNode(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t, "-defaults", "ttft=60,gap=10")
	batch := modelspec.Batch{API: modelspec.OpenAIChat, N: 3, Stream: true, IncludeUsage: true, Model: "gpt-tls"}
	calls, a := runTracedClient(t, zt, modelspec.DriverNode, ms, batch)
	if !strings.Contains(a.Stderr(), "TLS plaintext read at SSL_read and SSL_write of") {
		t.Fatalf("no TLS probes on the Node client:\n%s", a.Stderr())
	}
	for _, s := range checkTLSClientSpans(t, a, ms, batch, calls, "/v1/chat/completions") {
		t.Logf("%s %s %v %v", s.Name, s.Kind, s.End.Sub(s.Start), s.Attrs)
	}
}

// pyTLSServer is a Python HTTPS server (standard library, ssl module: a
// socket BIO, the handshake made by the accepting thread) whose GET /call
// calls the model server at argv[3] over HTTPS (http.client) from the
// thread serving the request, and answers "ok <status>".
const pyTLSServer = `import http.client, json, signal, ssl, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
cert, key, upstream, cafile = sys.argv[1:5]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        host, port = upstream.rsplit(":", 1)
        c = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=cafile))
        body = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        out = b"ok %d\n" % r.status
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
`

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestKernelTLSServerAndCurl traces, over HTTPS end to end, curl (its own
// BIO: the socket is the one the thread used) calling a Python HTTPS
// server (the ssl module's socket BIO, server side), whose handler thread
// calls the model server over HTTPS: curl's requests are CLIENT spans, the
// server's SERVER spans with the https scheme, and each of its calls to
// the model server a CLIENT span child of the request it serves.
func TestKernelTLSServerAndCurl(t *testing.T) {
	testenv.RequireRoot(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is not installed (scripts/setup.sh installs it): %v", err)
	}
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	script := filepath.Join(dir, "server.py")
	if err := os.WriteFile(script, []byte(pyTLSServer), 0o644); err != nil {
		t.Fatal(err)
	}
	server, addr := testenv.StartSampleApp(t, testenv.Python(t), script, cert, key, ms.Addr, ms.CAFile)

	// curl reads its URLs from stdin (-K -) before it connects: it is
	// attached first, with libssl mapped.
	const calls = 3
	cmd := exec.Command(curl, "-sS", "--http1.1", "--cacert", cert, "-K", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := testenv.StartTied(cmd, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // libcurl loaded
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--pid", fmt.Sprint(server.Process.Pid),
		"--output", "json")
	for range calls {
		fmt.Fprintf(stdin, "url = \"https://%s/call\"\n", addr)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl: %v\n%s", err, out.String())
	}
	if got, want := out.String(), strings.Repeat("ok 200\n", calls); got != want {
		t.Fatalf("curl printed %q, want %q", got, want)
	}
	if !alive(server.Process.Pid) {
		t.Fatal("the traced server died")
	}
	a.stop()
	if !strings.Contains(a.Stderr(), "TLS plaintext read at ssl_read_internal") {
		t.Fatalf("no TLS probes:\n%s", a.Stderr())
	}

	spans := fromJSON(a.jsonSpans())
	byID := map[string]observed{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var curlSpans, serverSpans, callSpans []observed
	for _, s := range spans {
		if s.Attrs["zerotrace.source"] != "kernel" {
			continue
		}
		switch pid := s.Resource["process.pid"]; {
		case pid == fmt.Sprint(cmd.Process.Pid) && s.Kind == "client":
			curlSpans = append(curlSpans, s)
		case pid == fmt.Sprint(server.Process.Pid) && s.Kind == "server":
			serverSpans = append(serverSpans, s)
		case pid == fmt.Sprint(server.Process.Pid) && s.Kind == "client":
			callSpans = append(callSpans, s)
		default:
			t.Errorf("unexpected span %s %s of pid %s", s.Name, s.Kind, pid)
		}
	}
	if len(curlSpans) != calls || len(serverSpans) != calls || len(callSpans) != calls {
		t.Fatalf("%d curl, %d server, %d model-call spans, want %d each:\n%v", len(curlSpans), len(serverSpans), len(callSpans), calls, spans)
	}
	for i := range calls {
		c, s, m := curlSpans[i], serverSpans[i], callSpans[i]
		if c.Attrs["url.full"] != "https://"+addr+"/call" || c.Attrs["http.response.status_code"] != "200" {
			t.Errorf("curl span %d: %v", i, c.Attrs)
		}
		if s.Attrs["url.scheme"] != "https" || s.Attrs["url.path"] != "/call" || s.Attrs["http.response.status_code"] != "200" || s.Name != "GET" {
			t.Errorf("server span %d: %s %v", i, s.Name, s.Attrs)
		}
		if m.Attrs["url.full"] != ms.TLSURL()+"/v1/chat/completions" || m.Attrs["http.response.status_code"] != "200" {
			t.Errorf("model call span %d: %v", i, m.Attrs)
		}
		if m.ParentSpanID != s.SpanID || m.TraceID != s.TraceID {
			t.Errorf("model call span %d is not a child of the request it was made for", i)
		}
		if m.Start.Before(s.Start) || m.End.After(s.End) {
			t.Errorf("model call %d (%v..%v) outside its request (%v..%v)", i, m.Start, m.End, s.Start, s.End)
		}
	}
}
