// Package web is the agent's local HTTP endpoint: the live service map page
// (cytoscape.js, embedded: no CDN), the map as JSON for `zerotrace map`, and
// /metrics for Prometheus, and the traced processes' TCP connections as
// JSON at /api/connections.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/export/metrics"
	"github.com/zerotrace/zerotrace/export/servicemap"
)

//go:embed static
var static embed.FS

// Server serves the page, the map and the metrics.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// Handler returns the endpoint's routes. conns may be nil.
func Handler(g *servicemap.Graph, reg *metrics.Registry, conns *correlate.ConnTable) http.Handler {
	mux := http.NewServeMux()
	files, _ := fs.Sub(static, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(files)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	})
	mux.HandleFunc("GET /api/map", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(g.Snapshot())
	})
	mux.HandleFunc("GET /api/connections", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		list := []correlate.Conn{}
		if conns != nil {
			list = conns.Snapshot()
		}
		_ = json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", metrics.ContentType)
		_ = reg.Write(w)
	})
	return mux
}

// Listen binds addr (host:port; port 0 picks one) and serves until Close.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:  ln,
		log: log,
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the local HTTP endpoint stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, letting requests in progress finish for a moment.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
