"""A minimal HTTP/1.1 server that uses vectored socket calls, for the tests
of zerotrace's kernel-level tracing of them.

It prints "listening on HOST:PORT" once bound. Each connection carries one
request: it is read with recvmsg() or readv() and answered with sendmsg() or
writev(), head and body in separate buffers, as the request path says:
/recvmsg/sendmsg/..., /readv/writev/..., and so on. The answer is 200 with
the path as body. Stops on SIGTERM.
"""
import os
import signal
import socket
import sys


def serve(conn):
    with conn:
        # Peek at the request line to choose the calls.
        peek = conn.recv(64, socket.MSG_PEEK)
        if b" /readv/" in peek:
            buf = bytearray(4096)
            n = os.readv(conn.fileno(), [buf])
            data = bytes(buf[:n])
        else:
            data, _, _, _ = conn.recvmsg(4096)
        line = data.split(b"\r\n", 1)[0].decode()
        path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
        body = path.encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        if "/writev/" in path:
            os.writev(conn.fileno(), [head, body])
        else:
            conn.sendmsg([head, body])


def main():
    srv = socket.create_server(("127.0.0.1", 0))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("listening on %s:%d" % srv.getsockname(), flush=True)
    try:
        while True:
            conn, _ = srv.accept()
            serve(conn)
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
