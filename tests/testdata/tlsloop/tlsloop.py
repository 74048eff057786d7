"""A TLS round-trip loop for the TLS probes' cost test (standard library).

Both ends of a TLS connection over a socket pair, in one thread (no thread
hand-offs to blur the figures): given "N PAYLOAD" on stdin (PAYLOAD: plain
or http), the client end writes a message and the server end reads it and
writes it back, N times, and it prints the nanoseconds one round trip took
on average: two SSL_write and two SSL_read calls, and their four socket
syscalls.

  tlsloop.py CERT KEY
"""

import socket
import ssl
import sys
import time

cert, key = sys.argv[1:3]
PAYLOADS = {
    "plain": b"x" * 64,
    "http": b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
}

srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
srv_ctx.load_cert_chain(cert, key)
cli_ctx = ssl.create_default_context(cafile=cert)
a, b = socket.socketpair()
cli = cli_ctx.wrap_socket(a, server_hostname="127.0.0.1", do_handshake_on_connect=False)
srv = srv_ctx.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
cli.setblocking(False)
srv.setblocking(False)
pending = [cli, srv]
while pending:
    for s in list(pending):
        try:
            s.do_handshake()
            pending.remove(s)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
# The session tickets the server sent after the handshake.
srv.send(b"!")
while True:
    try:
        cli.recv(1)
        break
    except ssl.SSLWantReadError:
        pass
cli.setblocking(True)
srv.setblocking(True)
print("ready", flush=True)
for line in sys.stdin:
    n, kind = line.split()
    msg = PAYLOADS[kind]
    start = time.perf_counter_ns()
    for _ in range(int(n)):
        cli.sendall(msg)
        srv.sendall(srv.recv(65536))
        cli.recv(65536)
    print((time.perf_counter_ns() - start) // int(n), flush=True)
