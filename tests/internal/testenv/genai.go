package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
)

// File names of the GenAI test programs in the PrebuiltEnv directory.
const (
	PrebuiltModelServerName = "modelserver"
	PrebuiltGenAIAppName    = "genaiapp"
)

// genaiClientTimeout bounds one run of a client driver (scaled by
// TimeoutScaleEnv).
const genaiClientTimeout = 2 * time.Minute

// BuildModelServer builds tests/modelserver, the test model server, and
// returns the binary's path; once per test process (it is part of the
// repository's module and builds in a second or two). With PrebuiltEnv set
// it returns the prebuilt PrebuiltModelServerName instead.
func BuildModelServer(t testing.TB) string {
	t.Helper()
	if pre, ok := prebuiltDir(); ok {
		return prebuiltBinary(t, pre, PrebuiltModelServerName, "")
	}
	dir := processBinDir(t)
	root := RepoRoot(t)
	path, err := memoBuild("modelserver", func() (string, error) {
		out := filepath.Join(dir, "modelserver")
		return out, goBuild(root, goEnv(""), []string{"build", "-o", out, "./tests/modelserver"})
	})
	if err != nil {
		t.Fatalf("building the test model server: %v", err)
	}
	return path
}

// ModelServer is a running tests/modelserver: plain HTTP and TLS on one
// port, with a CA of its own.
type ModelServer struct {
	// Addr is HOST:PORT; CAFile the PEM of the CA that issued its
	// certificate.
	Addr   string
	CAFile string
	Cmd    *exec.Cmd
}

// StartModelServer starts the test model server on a free loopback port
// with args (see tests/modelserver: -defaults, -h2=false, -tls-names, -v),
// its CA written to a file of the test's temporary directory. It is stopped
// at cleanup; the test fails if it exited before (StartSampleApp).
func StartModelServer(t testing.TB, args ...string) *ModelServer {
	t.Helper()
	bin := BuildModelServer(t)
	ca := filepath.Join(t.TempDir(), "modelserver-ca.pem")
	cmd, addr := StartSampleApp(t, bin, append([]string{"-ca", ca}, args...)...)
	// The CA is written before the listener is bound, hence before the
	// "listening on" line.
	if _, err := os.Stat(ca); err != nil {
		t.Fatalf("the model server printed its address but wrote no CA: %v", err)
	}
	return &ModelServer{Addr: addr, CAFile: ca, Cmd: cmd}
}

// StartPyModelServer starts tests/testdata/pygenai/server.py, the model
// server in Python (standard library, plain HTTP only; OpenAI chat,
// completions and embeddings, Anthropic messages, Ollama chat and
// generate), with args (--defaults), on a free loopback port. It records
// exchanges as tests/modelserver does; it has no TLS, so CAFile is empty.
func StartPyModelServer(t testing.TB, args ...string) *ModelServer {
	t.Helper()
	script := filepath.Join(RepoRoot(t), "tests", "testdata", "pygenai", "server.py")
	cmd, addr := StartSampleAppCmd(t, exec.Command(Python(t), append([]string{script}, args...)...))
	return &ModelServer{Addr: addr, Cmd: cmd}
}

// URL is the plain-HTTP base URL.
func (m *ModelServer) URL() string { return "http://" + m.Addr }

// TLSURL is the HTTPS base URL (HTTP/2 or HTTP/1.1 by ALPN).
func (m *ModelServer) TLSURL() string { return "https://" + m.Addr }

// TrustEnv is the environment that makes every client driver trust the
// server's CA without a code change: SSL_CERT_FILE (Go's crypto/x509 and
// OpenSSL, hence Python) and NODE_EXTRA_CA_CERTS (Node).
func (m *ModelServer) TrustEnv() []string {
	return []string{"SSL_CERT_FILE=" + m.CAFile, "NODE_EXTRA_CA_CERTS=" + m.CAFile}
}

// Exchanges returns the exchanges the server finished after sequence number
// since (0: all), as it recorded them.
func (m *ModelServer) Exchanges(t testing.TB, since int) []modelspec.Exchange {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout(t, 10*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL()+modelspec.StatsPath+"?since="+strconv.Itoa(since), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reading the model server's exchanges: %v", err)
	}
	defer resp.Body.Close()
	var st modelspec.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding the model server's exchanges: %v", err)
	}
	return st.Exchanges
}

// Exchange returns the exchange the server recorded for a call, found by the
// request id it sent ("req_zt<seq>"); it waits briefly, since the server
// records an exchange just after the client read its last byte.
func (m *ModelServer) Exchange(t testing.TB, c modelspec.Call) modelspec.Exchange {
	t.Helper()
	seq, err := strconv.Atoi(strings.TrimPrefix(c.RequestID, "req_zt"))
	if err != nil || !strings.HasPrefix(c.RequestID, "req_zt") {
		t.Fatalf("call %d (%s) has no request id of the model server: %q", c.Index, c.API, c.RequestID)
	}
	deadline := time.Now().Add(Timeout(t, 5*time.Second))
	for {
		for _, x := range m.Exchanges(t, seq-1) {
			if x.Seq == seq {
				return x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the model server recorded no exchange %d (call %d, %s)", seq, c.Index, c.API)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BuildGenAIApp returns the path of tests/genaiapp, the Go client driver
// (openai-go, anthropic-sdk-go). scripts/build-genai-clients.sh builds it
// into .cache/bin only when its sources changed — a cold build takes about 3
// CPU-minutes, so scripts/setup.sh builds it ahead — and this links it into
// the test process's own binary directory, so that uprobes attached to it
// are never disturbed by a later rebuild. With PrebuiltEnv set it returns
// the prebuilt PrebuiltGenAIAppName instead.
func BuildGenAIApp(t testing.TB) string {
	t.Helper()
	if pre, ok := prebuiltDir(); ok {
		return prebuiltBinary(t, pre, PrebuiltGenAIAppName, "")
	}
	dir := processBinDir(t)
	root := RepoRoot(t)
	path, err := memoBuild("genaiapp", func() (string, error) {
		cached, err := runCacheScript(t, root, "go")
		if err != nil {
			return "", err
		}
		out := filepath.Join(dir, "genaiapp")
		if err := os.Link(cached, out); err != nil {
			if err := copyFile(cached, out); err != nil {
				return "", err
			}
		}
		return out, nil
	})
	if err != nil {
		t.Fatalf("building the Go GenAI client: %v", err)
	}
	return path
}

// NodeGenAIClient returns the path of the Node client driver's client.mjs in
// the cache where scripts/build-genai-clients.sh installed its npm packages
// (the npm registry is reached only when they change). Not available with
// PrebuiltEnv: the test fails.
func NodeGenAIClient(t testing.TB) string {
	t.Helper()
	if _, ok := prebuiltDir(); ok {
		t.Fatalf("%s is set: the Node GenAI client is not prebuilt", PrebuiltEnv)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed (scripts/setup.sh installs it): %v", err)
	}
	root := RepoRoot(t)
	path, err := memoBuild("nodegenai", func() (string, error) { return runCacheScript(t, root, "node") })
	if err != nil {
		t.Fatalf("installing the Node GenAI client: %v", err)
	}
	return path
}

// PythonGenAIClient returns the path of the Python client driver,
// tests/testdata/pygenai/client.py (standard library only).
func PythonGenAIClient(t testing.TB) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), "tests", "testdata", "pygenai", "client.py")
}

// Python returns the python3 interpreter's own path. A version manager's
// python3 on PATH may be a shell script that finds the interpreter on every
// start (pyenv's shims cost about a second each); asking once saves that on
// every run, and a traced process is then the interpreter itself.
func Python(t testing.TB) string {
	t.Helper()
	path, err := memoBuild("python3", func() (string, error) {
		out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
		if err != nil {
			return "", fmt.Errorf("python3 (scripts/setup.sh installs it): %w", err)
		}
		exe := strings.TrimSpace(string(out))
		if exe == "" {
			return "", fmt.Errorf("python3 does not know its own path")
		}
		return exe, nil
	})
	if err != nil {
		t.Fatalf("finding python3: %v", err)
	}
	return path
}

// GenAIClientCommand returns the command that runs driver
// (modelspec.DriverGo, DriverPython or DriverNode) for batch b against a
// server at base, with env added to the test's environment (e.g. a
// ModelServer's TrustEnv, or GODEBUG=http2client=0 for the Go driver over
// HTTP/1.1). Start it with StartTied, or run it with RunGenAIClient.
func GenAIClientCommand(t testing.TB, driver, base string, b modelspec.Batch, env ...string) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	switch driver {
	case modelspec.DriverGo:
		cmd = exec.Command(BuildGenAIApp(t), append([]string{"call"}, b.Args(base)...)...)
	case modelspec.DriverPython:
		cmd = exec.Command(Python(t), append([]string{PythonGenAIClient(t)}, b.Args(base)...)...)
	case modelspec.DriverNode:
		client := NodeGenAIClient(t)
		cmd = exec.Command("node", append([]string{client}, b.Args(base)...)...)
		cmd.Dir = filepath.Dir(client)
	default:
		t.Fatalf("unknown GenAI client driver %q", driver)
	}
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// RunGenAIClient runs a driver command (GenAIClientCommand) to its end and
// returns the calls it reported. The test fails when the driver fails, or
// prints anything but calls on stdout; the calls themselves may carry
// errors (an error answer is what some tests ask for).
func RunGenAIClient(t testing.TB, cmd *exec.Cmd) []modelspec.Call {
	t.Helper()
	var stdout bytes.Buffer
	stderrTail := NewOutputTail()
	cmd.Stdout, cmd.Stderr = &stdout, stderrTail
	if err := StartTied(cmd, syscall.SIGKILL); err != nil {
		t.Fatalf("starting %s: %v", cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	wait := Timeout(t, genaiClientTimeout)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\nstderr:\n%s\nstdout:\n%s", cmd, err, stderrTail.String(), stdout.String())
		}
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within %v\nstderr:\n%s", cmd, wait, stderrTail.String())
	}
	calls, err := modelspec.ReadCalls(&stdout)
	if err != nil {
		t.Fatalf("%s: reading its calls: %v\nstderr:\n%s", cmd, err, stderrTail.String())
	}
	return calls
}

// StartGenAIApp starts the Go client driver as a service (genaiapp serve)
// calling the model server at base, with env added (a ModelServer's
// TrustEnv for https), and returns the command and its HOST:PORT. Its
// /call and /gateway handlers make the calls (see tests/genaiapp). It is
// stopped at cleanup, as StartSampleApp's are.
func StartGenAIApp(t testing.TB, base string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(BuildGenAIApp(t), "serve", "--base", base)
	cmd.Env = append(os.Environ(), env...)
	return StartSampleAppCmd(t, cmd)
}

// runCacheScript runs scripts/build-genai-clients.sh for one client and
// returns the path it prints. It must not call t.Fatal (memoBuild).
func runCacheScript(t testing.TB, root, which string) (string, error) {
	start := time.Now()
	script := filepath.Join(root, "scripts", "build-genai-clients.sh")
	cmd := exec.Command("bash", script, which)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A cold build should not look like a hang in "go test -v".
	var once sync.Once
	timer := time.AfterFunc(5*time.Second, func() {
		once.Do(func() { t.Logf("preparing the %s GenAI client with %s (minutes on a cold cache) ...", which, script) })
	})
	err := cmd.Run()
	timer.Stop()
	once.Do(func() {}) // no log after this point
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s%s", script, which, err, stderr.String(), stdout.String())
	}
	fields := strings.Fields(stdout.String())
	if len(fields) == 0 {
		return "", fmt.Errorf("%s %s printed no path\n%s", script, which, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("%s GenAI client ready after %v", which, d.Round(time.Second))
	}
	return fields[len(fields)-1], nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}
