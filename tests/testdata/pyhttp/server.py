"""A plain Python http.server backend for zerotrace's end-to-end tests.

It knows nothing of tracing. It prints "listening on HOST:PORT" once bound,
answers GET /chain?id=N with "N:python" (what a sample app's /chain leaf
answers, so that a Go gateway can call it), GET /fail with 500 and any
other GET with 200, with keep-alive (HTTP/1.1), until SIGTERM.

With ZT_PG_DSN set (a libpq connection string) it connects to PostgreSQL
with psycopg2 at start-up, and with ZT_REDIS_PORT set to a Redis server on
127.0.0.1 with redis-py (and pings it), before it says it is listening, so
those connections exist before any tracer attaches. Then:
  GET /pg?id=N     a query on that connection, and an INSERT on a new one
  GET /pg/fail     a query on a table that does not exist (500)
  GET /pg/big      a 20000-row result
  GET /redis?id=N  SET, GET and INCR
  GET /redis/fail  LPUSH on a string key (WRONGTYPE, 500)
  GET /redis/big   GET of a 200 KB value
  GET /redis/close closes the Redis connections (the next command opens one)
  GET /mysql?id=N  with ZT_MYSQL_PORT (MariaDB/MySQL on 127.0.0.1, PyMySQL): a query
                   on the connection made at start-up, an INSERT on a new one
  GET /mysql/fail  a query on a table that does not exist (500)
  GET /mysql/big   a 20000-row result
  GET /stream/chunked?chunks=N&gap_ms=M&call=URL
  GET /stream/length?...
  GET /stream/close?...
                   a response streamed in N pieces written M ms apart, as a model
                   server streams tokens: chunked, with a Content-Length, or ended
                   by closing the connection; with call=URL, a GET of URL (urllib)
                   between the first and second piece
  GET /sendfile?gap_ms=M
                   a 1000-byte body (Content-Length) sent from a file with sendfile(2),
                   in two halves M ms apart
  POST /v1/chat/completions
                   an OpenAI-shaped model answer to the JSON request's "model": streamed
                   (server-sent events, chunked) when "stream" is true: a role chunk
                   after 80 ms, then five content chunks 20 ms apart, the finish
                   reason, a usage chunk (input 11, output 5) and [DONE]; else one JSON
                   document with the same usage
  GET /external?tls=PORT&tcp=PORT
                   a TLS handshake to 127.0.0.1:PORT for api.llm.example (whatever
                   the answer), and "PING\n" over plain TCP to the other port,
                   reading the reply
"""
import http.server
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

pg = None  # the connection made at start-up
pg_lock = threading.Lock()
rd = None  # the Redis client made at start-up


def pg_route(path, query):
    import psycopg2

    if path == "/pg/fail":
        try:
            with pg_lock, pg.cursor() as cur:
                cur.execute("SELECT secret FROM no_such_table WHERE owner = %s", ("carol@example.com",))
        except psycopg2.Error:
            return b"failed", 500
    if path == "/pg/big":
        with pg_lock, pg.cursor() as cur:
            cur.execute("SELECT g, md5(g::text) FROM generate_series(1, %s) AS g", (20000,))
            return str(len(cur.fetchall())).encode(), 200
    n = int(query.get("id", ["0"])[0])
    with pg_lock, pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM items WHERE owner = %s", ("alice@example.com",))
        count = cur.fetchone()[0]
    fresh = psycopg2.connect(os.environ["ZT_PG_DSN"])
    try:
        with fresh, fresh.cursor() as cur:
            cur.execute("INSERT INTO items (id, owner) VALUES (%s, %s)", (n, "bob@example.com"))
    finally:
        fresh.close()
    return ("%d:%d" % (n, count)).encode(), 200


def redis_route(path, query):
    import redis

    if path == "/redis/fail":
        rd.set("zt:string", "plain")
        try:
            rd.lpush("zt:string", "x")
        except redis.ResponseError:
            return b"failed", 500
    if path == "/redis/close":
        rd.connection_pool.disconnect()
        return b"closed", 200
    if path == "/redis/big":
        rd.set("zt:big", "v" * 200000)
        return str(len(rd.get("zt:big"))).encode(), 200
    n = query.get("id", ["0"])[0]
    rd.set("zt:key:" + n, "secret-value-" + n)
    value = rd.get("zt:key:" + n)
    hits = rd.incr("zt:hits")
    return ("%s:%d" % (value.decode(), hits > 0)).encode(), 200


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path.startswith("/pg") and pg is not None:
            body, code = pg_route(url.path, query)
        elif url.path.startswith("/redis") and rd is not None:
            body, code = redis_route(url.path, query)
        elif url.path.startswith("/mysql") and my is not None:
            body, code = mysql_route(url.path, query)
        elif url.path.startswith("/stream/"):
            return self.stream(url.path, query)
        elif url.path == "/sendfile":
            return self.send_file(query)
        elif url.path == "/external":
            body, code = external_route(query)
        elif url.path == "/chain":
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

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = json.loads(body)
        model = req.get("model", "")
        head = {"id": "chatcmpl-py1", "object": "chat.completion.chunk", "created": 1, "model": model + "-0613"}
        usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
        if not req.get("stream"):
            answer = dict(head, object="chat.completion", choices=[{"index": 0, "message": {
                "role": "assistant", "content": "t0 t1 t2 t3 t4"}, "finish_reason": "stop"}], usage=usage)
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(obj):
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        time.sleep(0.08)
        event(dict(head, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        for i in range(5):
            time.sleep(0.02)
            event(dict(head, choices=[{"index": 0, "delta": {"content": "t%d " % i}, "finish_reason": None}]))
        event(dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        event(dict(head, choices=[], usage=usage))
        event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def stream(self, path, query):
        chunks = int(query.get("chunks", ["4"])[0])
        gap = int(query.get("gap_ms", ["100"])[0]) / 1000
        call = query.get("call", [None])[0]
        pieces = [b"token%d " % i for i in range(chunks)]
        chunked = path == "/stream/chunked"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif path == "/stream/length":
            self.send_header("Content-Length", str(sum(map(len, pieces))))
        else:  # the body ends with the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        for i, p in enumerate(pieces):
            time.sleep(gap)
            if i == 1 and call:
                urllib.request.urlopen(call).read()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p) if chunked else p)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def send_file(self, query):
        gap = int(query.get("gap_ms", ["100"])[0]) / 1000
        data = b"file-body " * 100
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            out, half = self.connection.fileno(), len(data) // 2
            sent = 0
            while sent < len(data):
                if sent >= half and gap:
                    time.sleep(gap)
                    gap = 0
                end = half if sent < half else len(data)
                sent += os.sendfile(out, f.fileno(), sent, end - sent)

    def log_message(self, *args):
        pass


my = None  # the MySQL connection made at start-up
my_lock = threading.Lock()


def mysql_connect(db):
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=int(os.environ["ZT_MYSQL_PORT"]), user="root", database=db)


def mysql_route(path, query):
    import pymysql

    if path == "/mysql/fail":
        try:
            with my_lock, my.cursor() as cur:
                cur.execute("SELECT secret FROM no_such_table WHERE owner = %s", ("dave@example.com",))
        except pymysql.MySQLError:
            return b"failed", 500
    if path == "/mysql/big":
        with my_lock, my.cursor() as cur:
            cur.execute("SELECT seq, md5(seq) FROM seq_1_to_20000 WHERE seq > %s", (0,))
            return str(len(cur.fetchall())).encode(), 200
    n = int(query.get("id", ["0"])[0])
    with my_lock, my.cursor() as cur:
        cur.execute("SELECT count(*) FROM items WHERE owner = %s", ("erin@example.com",))
        count = cur.fetchone()[0]
    fresh = mysql_connect("zerotrace")
    try:
        with fresh.cursor() as cur:
            cur.execute("INSERT INTO items (id, owner) VALUES (%s, %s)", (n, "frank@example.com"))
        fresh.commit()
    finally:
        fresh.close()
    return ("%d:%d" % (n, count)).encode(), 200


def external_route(query):
    import socket
    import ssl

    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", int(query["tls"][0]))) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="api.llm.example"):
                pass
        except (ssl.SSLError, OSError):
            pass
    with socket.create_connection(("127.0.0.1", int(query["tcp"][0]))) as conn:
        conn.sendall(b"PING\n")
        conn.recv(16)
    return b"ok", 200


def main():
    global pg, rd, my
    if os.environ.get("ZT_PG_DSN"):
        import psycopg2

        pg = psycopg2.connect(os.environ["ZT_PG_DSN"])
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS items (id int, owner text)")
    if os.environ.get("ZT_MYSQL_PORT"):
        my = mysql_connect(None)
        my.autocommit(True)
        with my.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS zerotrace")
            cur.execute("CREATE TABLE IF NOT EXISTS zerotrace.items (id int, owner text)")
        my.select_db("zerotrace")
    if os.environ.get("ZT_REDIS_PORT"):
        import redis

        rd = redis.Redis(host="127.0.0.1", port=int(os.environ["ZT_REDIS_PORT"]))
        rd.ping()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("listening on %s:%d" % server.server_address, flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
