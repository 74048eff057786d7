"""A plain Python http.server backend for zerotrace's end-to-end tests.

It knows nothing of tracing. It prints "listening on HOST:PORT" once bound,
answers GET /chain?id=N with "N:python" (what a sample app's /chain leaf
answers, so that a Go gateway can call it), GET /fail with 500 and any
other GET with 200, with keep-alive (HTTP/1.1), until SIGTERM.
"""
import http.server
import signal
import sys
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/chain":
            body = (urllib.parse.parse_qs(url.query).get("id", [""])[0] + ":python").encode()
            code = 200
        elif url.path == "/fail":
            body, code = b"intentional failure", 500
        else:
            body, code = b"python", 200
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("listening on %s:%d" % server.server_address, flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
