"""A pre-forking Python HTTP server for zerotrace's end-to-end tests.

The parent binds and listens, then forks WORKERS (default 3) processes that
all accept on that one socket, as gunicorn and nginx workers do. Each
answers every GET with its own PID as the body and closes the connection.
The parent prints "workers PID,PID,..." and then "listening on HOST:PORT",
and on SIGTERM stops the workers and exits.
"""
import http.server
import os
import signal
import socket
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    workers = int(os.environ.get("WORKERS", "3"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            server = http.server.HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
            server.socket = sock
            server.serve_forever()
            os._exit(0)
        pids.append(pid)

    def stop(*args):
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        for pid in pids:
            os.waitpid(pid, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    # The test reads the first line as the address: workers go to stderr.
    print("workers " + ",".join(map(str, pids)), file=sys.stderr, flush=True)
    print("listening on %s:%d" % sock.getsockname(), flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
