#!/usr/bin/env python3
"""A model API server in Python, standard library only, plain HTTP: the
model server side of zerotrace's GenAI tests, traced from the kernel.

It answers like tests/modelserver (same shapes, same options, same /_stats
record; see tests/internal/modelspec), for the APIs a Python model server
typically serves: OpenAI chat completions, completions and embeddings,
Anthropic messages, Ollama /api/chat and /api/generate. Options come from the
model name after '@' ("gpt-test@ttft=80,gap=10") or the X-Modelserver-Options
header, on top of --defaults. Keys: ttft gap (ms), chunks, in, out, cached,
finish=a|b, id, rmodel, say, usage=auto|always|never, status, errtype, errat,
cut.

Streams are written chunk by chunk (chunked transfer encoding), each chunk
flushed at its time, so a tracer sees the stream as the client does.

  server.py [--addr 127.0.0.1:0] [--defaults "ttft=80,gap=10"]

Prints "listening on HOST:PORT" once bound; SIGTERM stops it.
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPTIONS_HEADER = "X-Modelserver-Options"
DEFAULTS = {"ttft": 0.0, "gap": 0.0, "chunks": 5, "in": 12, "out": -1, "cached": 0, "finish": [],
            "id": "", "rmodel": "", "say": "tok", "usage": "auto", "status": 0, "errtype": "",
            "errat": -1, "cut": -1}
INTS = ("chunks", "in", "out", "cached", "status", "errat", "cut")


def apply(opts, spec):
    """Parses "key=value,..." onto a copy of opts (modelspec.Options.Apply)."""
    o = dict(opts)
    for field in (spec or "").split(","):
        field = field.strip()
        if not field:
            continue
        key, sep, val = field.partition("=")
        if not sep or key not in DEFAULTS:
            raise ValueError("model server option %r: unknown key or no value" % field)
        if key in ("ttft", "gap"):
            o[key] = float(val) / 1000.0
        elif key in INTS:
            o[key] = int(val)
        elif key == "finish":
            o[key] = val.split("|") if val else []
        elif key == "usage" and val not in ("auto", "always", "never"):
            raise ValueError("usage: want auto, always or never")
        else:
            o[key] = val
    return o


def rfc3339(t):
    ns = int(t * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % frac


def api_for(path):
    for suffix, name in (("/api/chat", "ollama.chat"), ("/api/generate", "ollama.generate"),
                         ("/chat/completions", "openai.chat"), ("/completions", "openai.completions"),
                         ("/embeddings", "openai.embeddings"), ("/messages", "anthropic.messages")):
        if path.endswith(suffix):
            return name
    return ""


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.done = []

    def next(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def add(self, x):
        with self.lock:
            self.done.append(x)
            del self.done[:-10000]

    def since(self, n):
        with self.lock:
            return [x for x in self.done if x["seq"] > n]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zerotrace-pymodel/1"

    def log_message(self, fmt, *args):  # quiet: tests read /_stats
        pass

    def do_GET(self):
        if self.path.split("?")[0] != "/_stats":
            return self.plain(404, {"error": {"message": "unknown path", "type": "invalid_request_error"}})
        since = 0
        if "since=" in self.path:
            since = int(self.path.split("since=")[1].split("&")[0] or 0)
        self.plain(200, {"exchanges": self.server.stats.since(since)})

    def plain(self, status, obj, seq=0):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if seq:
            self.send_header("X-Request-Id", "req_zt%d" % seq)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        return len(data)

    def do_POST(self):
        start = time.time()
        seq = self.server.stats.next()
        api = api_for(self.path.split("?")[0])
        x = {"seq": seq, "api": api, "method": "POST", "path": self.path, "proto": "HTTP/1.1", "tls": False,
             "remote": "%s:%d" % self.client_address[:2], "options": "",
             "request": {"bytes": 0, "valid": False, "model": "", "stream": False},
             "response": {"status": 0, "content_type": "", "stream": False, "chunks": 0, "events": 0, "bytes": 0},
             "times": {"start": rfc3339(start)}}
        hdrs = {h.lower(): v for h, v in self.headers.items()
                if h.lower() in ("user-agent", "content-type", "traceparent", "tracestate", OPTIONS_HEADER.lower())}
        if hdrs:
            x["headers"] = hdrs
        self.x, self.chunk_times = x, []
        try:
            self.answer(api)
        except (BrokenPipeError, ConnectionResetError):
            x["response"]["client_gone"] = True
        finally:
            x["times"].setdefault("end", rfc3339(time.time()))
            if self.chunk_times:
                x["times"]["chunks"] = [int((t - self.body_read) * 1e9) for t in self.chunk_times]
            self.server.stats.add(x)

    def error(self, status, typ, msg):
        x = self.x
        if x["api"] == "anthropic.messages":
            body = {"type": "error", "error": {"type": typ, "message": msg}}
        elif x["api"].startswith("ollama."):
            body, typ = {"error": msg}, ""
        else:
            body = {"error": {"message": msg, "type": typ, "param": None, "code": None}}
        x["response"].update({"status": status, "content_type": "application/json", "error_type": typ, "error_message": msg})
        x["times"]["end"] = rfc3339(time.time())
        x["response"]["bytes"] = self.plain(status, body, x["seq"])

    def answer(self, api):
        x = self.x
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        self.body_read = time.time()
        x["times"]["body_read"] = rfc3339(self.body_read)
        x["request"]["bytes"] = len(raw)
        if not api:
            return self.error(404, "invalid_request_error", "unknown path " + self.path)
        try:
            req = json.loads(raw)
        except ValueError as e:
            return self.error(400, "invalid_request_error", "the request body is not valid JSON: %s" % e)
        q = x["request"]
        q.update({"valid": True, "model": req.get("model", "")})
        q["stream"] = bool(req.get("stream", api.startswith("ollama.")))
        if (req.get("stream_options") or {}).get("include_usage"):
            q["include_usage"] = True
        mt = req.get("max_tokens", req.get("max_completion_tokens", (req.get("options") or {}).get("num_predict")))
        if mt is not None:
            q["max_tokens"] = mt
        if "temperature" in req:
            q["temperature"] = req["temperature"]
        if api == "openai.embeddings":
            inp = req.get("input")
            q["inputs"] = len(inp) if isinstance(inp, list) else 1
        name, _, spec = q["model"].partition("@")
        try:
            o = apply(apply(self.server.defaults, spec), self.headers.get(OPTIONS_HEADER, ""))
        except ValueError as e:
            return self.error(400, "invalid_request_error", str(e))
        self.o = o
        x["options"] = ",".join("%s=%s" % (k, "|".join(v) if isinstance(v, list) else v) for k, v in sorted(o.items()))
        self.model = o["rmodel"] or name
        if o["status"] >= 400:
            self.sleep_until(o["ttft"])
            typ = o["errtype"] or self.error_type(o["status"])
            return self.error(o["status"], typ, "test error %d (#%d)" % (o["status"], x["seq"]))
        if api == "openai.embeddings":
            self.sleep_until(o["ttft"])
            return self.embeddings(q.get("inputs", 1))
        if q["stream"]:
            return self.stream(api)
        self.sleep_until(o["ttft"] + max(o["chunks"] - 1, 0) * o["gap"])
        return self.whole(api)

    def error_type(self, status):
        if self.x["api"] == "anthropic.messages":
            return {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(
                status, "api_error" if status >= 500 else "invalid_request_error")
        return "requests" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"

    def sleep_until(self, d):
        wait = self.body_read + d - time.time()
        if wait > 0:
            time.sleep(wait)

    # --- what the answers carry ---------------------------------------------------

    def text(self, i):
        return "%s%d " % (self.o["say"], i)

    def out_tokens(self):
        return self.o["chunks"] if self.o["out"] < 0 else self.o["out"]

    def finish_reasons(self, usual):
        return self.o["finish"] or [usual]

    def ident(self, prefix):
        return self.o["id"] or "%s%d" % (prefix, self.x["seq"])

    def record_usage(self, **fields):
        u = {"input": 0, "output": 0, "cached": 0, "cache_write": 0, "reasoning": 0}
        u.update(fields)
        self.x["response"]["usage"] = u

    def openai_usage(self):
        o = self.o
        self.record_usage(input=o["in"], output=self.out_tokens(), cached=o["cached"])
        return {"prompt_tokens": o["in"], "completion_tokens": self.out_tokens(), "total_tokens": o["in"] + self.out_tokens(),
                "prompt_tokens_details": {"cached_tokens": o["cached"]}, "completion_tokens_details": {"reasoning_tokens": 0}}

    def anthropic_usage(self, out):
        o = self.o
        self.record_usage(input=o["in"], output=out, cached=o["cached"])
        return {"input_tokens": o["in"], "cache_creation_input_tokens": 0, "cache_read_input_tokens": o["cached"], "output_tokens": out}

    def whole(self, api):
        o, x = self.o, self.x
        full = "".join(self.text(i) for i in range(o["chunks"]))
        usage = o["usage"] != "never"
        if api == "openai.chat":
            fr = self.finish_reasons("stop")
            body = {"id": self.ident("chatcmpl-zt-"), "object": "chat.completion", "created": int(time.time()), "model": self.model,
                    "choices": [{"index": i, "message": {"role": "assistant", "content": full}, "finish_reason": f} for i, f in enumerate(fr)]}
            x["response"]["id"] = body["id"]
        elif api == "openai.completions":
            fr = self.finish_reasons("stop")
            body = {"id": self.ident("cmpl-zt-"), "object": "text_completion", "created": int(time.time()), "model": self.model,
                    "choices": [{"text": full, "index": i, "finish_reason": f} for i, f in enumerate(fr)]}
            x["response"]["id"] = body["id"]
        elif api == "anthropic.messages":
            fr = self.finish_reasons("end_turn")[:1]
            body = {"id": self.ident("msg_zt"), "type": "message", "role": "assistant", "model": self.model,
                    "content": [{"type": "text", "text": full}], "stop_reason": fr[0], "stop_sequence": None}
            if usage:
                body["usage"] = self.anthropic_usage(self.out_tokens())
            x["response"]["id"] = body["id"]
        else:
            fr = self.finish_reasons("stop")[:1]
            body = {"model": self.model, "created_at": rfc3339(time.time()), "done": True, "done_reason": fr[0]}
            if api == "ollama.chat":
                body["message"] = {"role": "assistant", "content": full}
            else:
                body["response"] = full
            if usage:
                body["prompt_eval_count"], body["eval_count"] = o["in"], self.out_tokens()
                self.record_usage(input=o["in"], output=self.out_tokens())
        if usage and api.startswith("openai."):
            body["usage"] = self.openai_usage()
        x["response"].update({"model": self.model, "finish_reasons": fr, "chunks": o["chunks"], "text": full})
        x["response"]["status"], x["response"]["content_type"] = 200, "application/json"
        x["times"]["end"] = rfc3339(time.time())
        if o["cut"] >= 0:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-Id", "req_zt%d" % x["seq"])
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            x["response"]["cut"] = True
            self.close_connection = True
            return
        x["response"]["bytes"] = self.plain(200, body, x["seq"])

    def embeddings(self, n):
        o = self.o
        body = {"object": "list", "data": [{"object": "embedding", "index": k, "embedding": [0.5, -0.25, 0.125, -0.0625]} for k in range(max(n, 1))],
                "model": self.model}
        if o["usage"] != "never":
            body["usage"] = {"prompt_tokens": o["in"], "total_tokens": o["in"]}
            self.record_usage(input=o["in"])
        self.x["response"].update({"status": 200, "content_type": "application/json", "model": self.model})
        self.x["times"]["end"] = rfc3339(time.time())
        self.x["response"]["bytes"] = self.plain(200, body, self.x["seq"])

    # --- streams ------------------------------------------------------------------

    def send_events(self, events):
        """Writes events (name, data) as SSE or NDJSON in one HTTP chunk and flushes it."""
        x, ndjson = self.x, self.x["api"].startswith("ollama.")
        buf = []
        for name, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            if ndjson:
                buf.append(payload + "\n")
            else:
                buf.append(("event: %s\n" % name if name else "") + "data: " + payload + "\n\n")
            x["response"]["events"] += 1
            if x["response"]["events"] == 1:
                x["times"]["first_chunk"] = rfc3339(time.time())
        data = "".join(buf).encode()
        now = time.time()
        x["times"]["end"] = rfc3339(now)
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        x["response"]["bytes"] += len(data)
        return now

    def stream(self, api):
        o, x = self.o, self.x
        ctype = "application/x-ndjson" if api.startswith("ollama.") else "text/event-stream; charset=utf-8"
        with_usage = o["usage"] == "always" or (o["usage"] == "auto" and (x["request"].get("include_usage") or not api.startswith("openai.")))
        if o["usage"] == "never":
            with_usage = False
        created = int(time.time())
        ident = {"openai.chat": "chatcmpl-zt-", "openai.completions": "cmpl-zt-", "anthropic.messages": "msg_zt"}.get(api)
        rid = self.ident(ident) if ident else ""
        x["response"].update({"status": 200, "content_type": ctype, "stream": True, "model": self.model})
        if rid:
            x["response"]["id"] = rid
        head_sent = False

        def head():
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Request-Id", "req_zt%d" % x["seq"])
            self.end_headers()
            x["times"]["head"] = rfc3339(time.time())

        def chunk_event(i):
            t = self.text(i)
            if api == "openai.chat":
                ev = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.model,
                      "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
                if i == 0:
                    ev["choices"][0]["delta"] = {"role": "assistant", "content": t}
                return [(None, ev)]
            if api == "openai.completions":
                return [(None, {"id": rid, "object": "text_completion", "created": created, "model": self.model,
                                "choices": [{"text": t, "index": 0, "finish_reason": None}]})]
            if api == "anthropic.messages":
                evs = []
                if i == 0:
                    msg = {"id": rid, "type": "message", "role": "assistant", "model": self.model, "content": [],
                           "stop_reason": None, "stop_sequence": None}
                    if with_usage:
                        msg["usage"] = self.anthropic_usage(1)
                    evs += [("message_start", {"type": "message_start", "message": msg}),
                            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
                return evs + [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})]
            key = "message" if api == "ollama.chat" else "response"
            val = {"role": "assistant", "content": t} if api == "ollama.chat" else t
            return [(None, {"model": self.model, "created_at": rfc3339(time.time()), key: val, "done": False})]

        def stream_error(k):
            typ = o["errtype"] or self.error_type(500)
            msg = "test error in the stream after %d chunks (#%d)" % (k, x["seq"])
            if api == "anthropic.messages":
                ev = ("error", {"type": "error", "error": {"type": typ, "message": msg}})
            elif api.startswith("ollama."):
                ev, typ = (None, {"error": msg}), ""
            else:
                ev = (None, {"error": {"message": msg, "type": typ, "param": None, "code": None}})
            x["response"]["error_type"], x["response"]["error_message"] = typ, msg
            self.send_events([ev])

        text = []
        for i in range(o["chunks"] + 1):
            if i in (o["cut"], o["errat"]):
                if not head_sent:
                    self.sleep_until(o["ttft"])
                    head()
                if i == o["cut"]:
                    x["response"]["cut"] = True
                    self.close_connection = True
                    x["times"]["end"] = rfc3339(time.time())
                    return
                stream_error(i)
                break
            if i == o["chunks"]:
                break
            self.sleep_until(o["ttft"] + i * o["gap"])
            if not head_sent:
                head()
                head_sent = True
            at = self.send_events(chunk_event(i))
            text.append(self.text(i))
            x["response"]["chunks"] += 1
            self.chunk_times.append(at)
            x["times"].setdefault("first_token", rfc3339(at))
        else:
            pass
        if "error_type" not in x["response"] and "error_message" not in x["response"]:
            self.send_events(self.closing(api, rid, created, with_usage))
        x["response"]["text"] = "".join(text)
        # The exchange ended at the last event's write (send_events stamped
        # it): a client stops reading there ([DONE], message_stop, done:true)
        # and may finish before this terminal chunk is even written.
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def closing(self, api, rid, created, with_usage):
        o, x = self.o, self.x
        if api in ("openai.chat", "openai.completions"):
            fr = self.finish_reasons("stop")
            x["response"]["finish_reasons"] = fr
            obj = "chat.completion.chunk" if api == "openai.chat" else "text_completion"
            choice = (lambda i, f: {"index": i, "delta": {}, "finish_reason": f}) if api == "openai.chat" else \
                (lambda i, f: {"text": "", "index": i, "finish_reason": f})
            evs = [(None, {"id": rid, "object": obj, "created": created, "model": self.model,
                           "choices": [choice(i, f) for i, f in enumerate(fr)]})]
            if with_usage:
                evs.append((None, {"id": rid, "object": obj, "created": created, "model": self.model, "choices": [],
                                   "usage": self.openai_usage()}))
            return evs + [(None, "[DONE]")]
        if api == "anthropic.messages":
            fr = self.finish_reasons("end_turn")[:1]
            x["response"]["finish_reasons"] = fr
            delta = {"type": "message_delta", "delta": {"stop_reason": fr[0], "stop_sequence": None}}
            if with_usage:
                delta["usage"] = self.anthropic_usage(self.out_tokens())
            return [("content_block_stop", {"type": "content_block_stop", "index": 0}), ("message_delta", delta),
                    ("message_stop", {"type": "message_stop"})]
        fr = self.finish_reasons("stop")[:1]
        x["response"]["finish_reasons"] = fr
        last = {"model": self.model, "created_at": rfc3339(time.time()), "done": True, "done_reason": fr[0]}
        if api == "ollama.chat":
            last["message"] = {"role": "assistant", "content": ""}
        else:
            last["response"] = ""
        if with_usage:
            last["prompt_eval_count"], last["eval_count"] = o["in"], self.out_tokens()
            self.record_usage(input=o["in"], output=self.out_tokens())
        return [(None, last)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", default="127.0.0.1:0")
    p.add_argument("--defaults", default="")
    args = p.parse_args()
    host, _, port = args.addr.rpartition(":")
    srv = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    srv.daemon_threads = True
    srv.stats = Stats()
    srv.defaults = apply(DEFAULTS, args.defaults)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print("listening on %s:%d" % srv.server_address[:2], flush=True)
    srv.serve_forever()
    srv.server_close()


if __name__ == "__main__":
    main()
