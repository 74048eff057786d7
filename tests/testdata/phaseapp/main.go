// Command phaseapp is the fixture of zerotrace's phase tests: an HTTP
// server whose handlers call functions a test configuration names as
// phases, in the shapes that are hard to trace from their entry and RETs —
// generic instantiations, recursion, a panic that unwinds a phase, a
// goroutine that exits inside one, a phase whose prologue grows the stack —
// and a loop to price one traced call.
//
//	phaseapp [-addr 127.0.0.1:0]
//	  /generic      main.Map[...] with int and with string (main.twice, inlined)
//	  /recurse?n=N  main.fact(N), recursive: N+1 nested phases
//	  /deep         main.fact(20): deeper than the phases kept open per goroutine
//	  /unwind       main.risky panics, recovered by its caller; then main.after
//	  /abort        main.risky panics through the handler (net/http recovers)
//	  /goexit       a goroutine whose main.quit calls runtime.Goexit
//	  /grow         a new goroutine calls main.bigFrame, whose prologue grows its stack
//	  /hijack       main.upgrade hijacks the connection (a request end mid-handler)
//	  /bench?n=N    N calls of main.tick; answers the nanoseconds per call
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

//go:noinline
func Map[T any](in []T, f func(T) T) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

//go:noinline
func fact(n int) int {
	if n <= 0 {
		return 1
	}
	return n * fact(n-1)
}

//go:noinline
func risky(fail bool) int {
	time.Sleep(2 * time.Millisecond)
	if fail {
		panic(http.ErrAbortHandler)
	}
	return 1
}

//go:noinline
func safe() (n int) {
	defer func() {
		if recover() != nil {
			n = -1
		}
	}()
	return risky(true)
}

//go:noinline
func after() int {
	time.Sleep(time.Millisecond)
	return 2
}

//go:noinline
func quit() {
	time.Sleep(time.Millisecond)
	runtime.Goexit()
}

// bigFrame's frame is larger than a new goroutine's first stack, so its
// prologue calls morestack and the function starts over.
//
//go:noinline
func bigFrame(i int) byte {
	var buf [32 << 10]byte
	buf[i%len(buf)] = byte(i)
	time.Sleep(time.Millisecond)
	return buf[(i*7)%len(buf)]
}

// upgrade takes the connection over, as a websocket handler does, and
// answers on it.
//
//go:noinline
func upgrade(w http.ResponseWriter) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	time.Sleep(2 * time.Millisecond)
	buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
	buf.Flush()
}

//go:noinline
func tick(i int) int { return i ^ 0x5a }

// half is inlined where it is called, and has code of its own too, for
// the function variable halver: a phase naming it would miss the
// inlined calls, and is refused where DWARF tells.
func half(v int) int { return v / 2 }

// halver keeps half's own code: a call through a variable is not inlined.
var halver = half

// twice is small enough that the compiler inlines every call to it: it has
// no code of its own, and a phase naming it is refused.
func twice(v int) int { return v * 2 }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/generic", func(w http.ResponseWriter, r *http.Request) {
		a := Map([]int{1, 2}, func(v int) int { return twice(v) })
		b := Map([]string{"a"}, func(v string) string { return v + v })
		fmt.Fprintln(w, a, b, half(len(a)), halver(4))
	})
	mux.HandleFunc("/recurse", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fmt.Fprintln(w, fact(n))
	})
	mux.HandleFunc("/deep", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, fact(20))
	})
	mux.HandleFunc("/unwind", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, safe(), after())
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		risky(true)
	})
	mux.HandleFunc("/goexit", func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			quit()
		}()
		<-done
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/grow", func(w http.ResponseWriter, r *http.Request) {
		out := make(chan byte)
		go func() { out <- bigFrame(7) }()
		fmt.Fprintln(w, <-out)
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		upgrade(w)
	})
	mux.HandleFunc("/bench", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		start := time.Now()
		x := 0
		for i := range n {
			x += tick(i)
		}
		per := float64(time.Since(start).Nanoseconds()) / float64(max(n, 1))
		fmt.Fprintf(w, "%.1f %d\n", per, x&1)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	go func() { log.Fatal(http.Serve(ln, mux)) }()
	// The tests stop it with SIGTERM, which is a clean exit.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
