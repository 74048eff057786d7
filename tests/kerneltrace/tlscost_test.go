package kerneltrace

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/openssl"
	"github.com/zerotrace/zerotrace/probes/registry"
	"github.com/zerotrace/zerotrace/probes/syscalls"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestTLSCost measures what the TLS plaintext probes add to a TLS round trip
// of a Python process (tests/testdata/tlsloop/tlsloop.py: at least two SSL_write and two
// SSL_read calls each, client and server in one process): untraced, traced
// from the kernel (the syscall programs only), and with the OpenSSL probes
// too; with a payload that is not HTTP (the probes look and let it go) and
// one that is (every read and write makes a record, which a reader
// drains). It fails only when the probes break the loop; the figures are
// for the README (go test ./tests/kerneltrace -run TestTLSCost -v).
func TestTLSCost(t *testing.T) {
	testenv.RequireRoot(t)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "tlsloop", "tlsloop.py")
	cmd := exec.Command(testenv.Python(t), script, cert, key)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("tlsloop.py did not start: %q", out.Text())
	}
	run := func(kind string) time.Duration {
		fmt.Fprintf(stdin, "%d %s\n", n, kind)
		if !out.Scan() {
			t.Fatal("tlsloop.py stopped")
		}
		ns, err := strconv.Atoi(strings.TrimSpace(out.Text()))
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(ns)
	}

	shared, err := events.LoadShared(events.DefaultRingSize)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	recs, err := registry.Records()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := events.NewReader(shared, recs, events.NewClock(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var tlsRecords int
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rd.Run(ctx, func(e correlate.Event) {
			if d, ok := e.(*correlate.SockData); ok && d.TLS {
				tlsRecords++
			}
		}, nil)
	}()
	sys, err := syscalls.NewTracer(shared)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	fds, threads, losses := sys.TLSMaps()
	tls, err := openssl.NewTracer(shared, fds, threads, losses)
	if err != nil {
		t.Fatal(err)
	}
	defer tls.Close()

	// The phases in turn, five rounds, each figure the median of its
	// rounds: the machine is shared and its load changes by the second.
	pid := cmd.Process.Pid
	phases := []string{"untraced", "kernel", "tls"}
	kinds := []string{"plain", "http"}
	all := map[string]map[string][]time.Duration{}
	for _, ph := range phases {
		all[ph] = map[string][]time.Duration{}
	}
	for range 5 {
		for _, ph := range phases {
			switch ph {
			case "kernel":
				if err := sys.AddHTTP(pid); err != nil {
					t.Fatal(err)
				}
			case "tls":
				if _, err := tls.Attach(pid); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range kinds {
				all[ph][k] = append(all[ph][k], run(k))
			}
		}
		if err := tls.Detach(pid); err != nil {
			t.Fatal(err)
		}
		if err := sys.Forget(pid); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	if tlsRecords < 5*n*2 {
		t.Errorf("%d TLS plaintext records for %d HTTP round trips", tlsRecords, 5*n)
	}
	got := map[string]map[string]time.Duration{}
	for ph, byKind := range all {
		got[ph] = map[string]time.Duration{}
		for k, ds := range byKind {
			slices.Sort(ds)
			got[ph][k] = ds[len(ds)/2]
		}
	}
	for _, k := range kinds {
		u, s, p := got["untraced"][k], got["kernel"][k], got["tls"][k]
		// Four TLS calls per round trip, at least.
		t.Logf("%-5s payload: round trip untraced %v, traced from the kernel %v (%.2fx), with the OpenSSL probes %v (%.2fx untraced, %.2fx kernel): %v per TLS call",
			k, u, s, float64(s)/float64(u), p, float64(p)/float64(u), float64(p)/float64(s), (p-s)/4)
	}
	c, err := shared.Counters()
	if err == nil {
		t.Logf("counters: ringbuf_full %d, tls_no_socket %d", c[events.CounterRingbufFull], c[events.CounterTLSNoSocket])
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
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
