// Command gotlsloop measures TLS round trips of a Go program that are not
// model calls, for TestGoTLSCost (tests/e2e): a client and a server
// *tls.Conn over a loopback TCP connection, the client writing 64 bytes
// and reading them back, each round trip two crypto/tls.(*Conn).Write and
// two Read calls that return data. It prints "ready", then for each line
// "N" on stdin runs N round trips and prints their nanoseconds.
//
// It links net/http's client (never called unless given a URL), as a
// program calling model APIs does, so that the net/http client probe and
// its TLS sites attach to it.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		resp, err := http.Get(os.Args[1])
		if err == nil {
			resp.Body.Close()
		}
		return
	}
	cert := selfSigned()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		log.Fatal(err)
	}
	msg := make([]byte, 64)
	back := make([]byte, 64)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := c.Write(msg); err != nil {
				log.Fatal(err)
			}
			if _, err := io.ReadFull(c, back); err != nil {
				log.Fatal(err)
			}
		}
		fmt.Println(time.Since(start).Nanoseconds())
	}
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
