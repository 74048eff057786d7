// Command modelserver is the test model server of zerotrace's GenAI tests: it
// answers the OpenAI (chat completions, completions, embeddings, Responses),
// Anthropic (messages) and Ollama (/api/chat, /api/generate, /api/embed) API
// shapes, streamed and not, with content, token counts, timing and failures
// chosen by the request (see tests/internal/modelspec), and reports what it
// received and sent at /_stats so that a test can compare the agent's spans
// with the truth.
//
// One listener serves plain HTTP/1.1 and TLS (HTTP/2 or HTTP/1.1 by ALPN) on
// the same port: the first byte of a connection says which. The TLS
// certificate is issued at start by a CA made for this run, valid for
// 127.0.0.1, ::1, localhost and the -tls-names; -ca writes that CA as PEM so
// that clients can trust it (SSL_CERT_FILE for Go and Python,
// NODE_EXTRA_CA_CERTS for Node).
//
// It prints exactly one line, "listening on HOST:PORT", to stdout once its
// listener is bound, then serves until SIGTERM or SIGINT and shuts down
// gracefully.
//
//	modelserver [-addr 127.0.0.1:0] [-ca ca.pem] [-h2=true] [-tls-names a,b]
//	            [-defaults "ttft=80,gap=10"] [-log exchanges.jsonl] [-dump DIR] [-v]
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (plain HTTP and TLS on the same port)")
	caPath := flag.String("ca", "", "write the test CA's certificate (PEM) to this file")
	h2 := flag.Bool("h2", true, "offer HTTP/2 over TLS (ALPN h2); false: HTTP/1.1 only")
	names := flag.String("tls-names", "", "extra DNS names for the certificate, comma-separated")
	defaults := flag.String("defaults", "", "default options, in the model options syntax (modelspec.Options.Apply)")
	logPath := flag.String("log", "", "append every exchange to this file as a JSON line")
	verbose := flag.Bool("v", false, "print a line per exchange on stderr")
	dump := flag.String("dump", "", "write each exchange's request and response bodies (as sent, before HTTP framing) to DIR/<seq>.request and DIR/<seq>.response: golden inputs for parser tests")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("modelserver: ")

	opts, err := modelspec.Defaults().Apply(*defaults)
	if err != nil {
		log.Fatalf("-defaults: %v", err)
	}
	var dnsNames []string
	for n := range strings.SplitSeq(*names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			dnsNames = append(dnsNames, n)
		}
	}
	cert, caPEM, err := newCertificate(dnsNames)
	if err != nil {
		log.Fatalf("making the test certificate: %v", err)
	}
	if *caPath != "" {
		if err := writeFileAtomic(*caPath, caPEM); err != nil {
			log.Fatalf("writing the CA certificate: %v", err)
		}
	}

	s := newServer(opts)
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatalf("-log: %v", err)
		}
		defer f.Close()
		s.log = f
	}
	if *verbose {
		s.verbose = os.Stderr
	}
	if *dump != "" {
		if err := os.MkdirAll(*dump, 0o755); err != nil {
			log.Fatalf("-dump: %v", err)
		}
		s.dump = *dump
	}

	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if !*h2 {
		tlsConf.NextProtos = []string{"http/1.1"}
		// A non-nil empty map turns HTTP/2 off.
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	raw, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listening on %s: %v", *addr, err)
	}
	ln := newSniffListener(raw, tlsConf)
	fmt.Printf("listening on %s\n", raw.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Fatalf("serving: %v", err)
	case <-ctx.Done():
	}
	// Streams in flight get a few seconds to end; then they are cut.
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Printf("shutting down: %v", err)
	}
	_ = srv.Close()
}

// writeFileAtomic writes data to path through a temporary file and a rename,
// so that a client polling for the file never reads half of it.
func writeFileAtomic(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp.%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
