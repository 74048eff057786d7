#!/usr/bin/env python3
"""The Python client of zerotrace's GenAI tests: standard library only.

Calls a model API (in the tests, tests/modelserver on loopback) the way a
hand-written Python service does -- http.client on one kept-alive connection,
or urllib.request with a connection per call -- over plain HTTP or HTTPS
through the ssl module (so OpenSSL's SSL_write/SSL_read carry the plaintext).
Prints one JSON line per call in the shape of modelspec.Call
(tests/internal/modelspec/call.go): what was sent, what came back, and when
the head, the first chunk, the first token and the end arrived.

HTTPS trusts the system store plus SSL_CERT_FILE (read by OpenSSL) or
--cafile.

  client.py --base URL [--api openai.chat] [--n 1] [--stream] [--include-usage]
            [--model gpt-test] [--prompt TEXT] [--prompt-bytes N]
            [--max-tokens N] [--inputs N] [--urllib] [--cafile PEM]
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PATHS = {
    "openai.chat": "/v1/chat/completions",
    "openai.completions": "/v1/completions",
    "openai.embeddings": "/v1/embeddings",
    "openai.responses": "/v1/responses",
    "anthropic.messages": "/v1/messages",
    "ollama.chat": "/api/chat",
    "ollama.generate": "/api/generate",
    "ollama.embed": "/api/embed",
}


def now_ns():
    return time.time_ns()


def rfc3339(ns):
    """Formats nanoseconds since the epoch as Go's time.Time JSON does."""
    if not ns:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % frac


class Call:
    """One call's report; to_json gives modelspec.Call's shape."""

    def __init__(self, args, index, url, prompt_bytes):
        self.d = {
            "driver": "python",
            "client": "urllib" if args.urllib else "http.client",
            "api": args.api,
            "index": index,
            "pid": os.getpid(),
            "url": url,
            "tls": url.startswith("https:"),
            "model": args.model,
            "stream": args.stream and not args.api.endswith("embed") and not args.api.endswith("embeddings"),
            "prompt_bytes": prompt_bytes,
            "status": 0,
            "chunks": 0,
            "events": 0,
        }
        if self.d["stream"] and args.api.startswith("openai.") and args.include_usage:
            self.d["include_usage"] = True
        self.times = {"start": now_ns(), "head": 0, "first_chunk": 0, "first_token": 0, "end": 0}
        self.text = []
        # terminal: a stream's last event ([DONE], message_stop, a final
        # response, done:true, an error) was read.
        self.terminal = False

    def event(self, content):
        t = now_ns()
        self.d["events"] += 1
        if not self.times["first_chunk"]:
            self.times["first_chunk"] = t
        if content:
            self.d["chunks"] += 1
            self.text.append(content)
            if not self.times["first_token"]:
                self.times["first_token"] = t

    def set_usage(self, inp=0, out=0, cached=0, cache_write=0, reasoning=0):
        self.d["usage"] = {"input": inp or 0, "output": out or 0, "cached": cached or 0,
                           "cache_write": cache_write or 0, "reasoning": reasoning or 0}

    def error_object(self, obj):
        """Takes type and message from an API error object."""
        if isinstance(obj, dict):
            if obj.get("type"):
                self.d["error_type"] = obj["type"]
            elif obj.get("code"):
                self.d["error_type"] = obj["code"]
            if obj.get("message"):
                self.d["error_message"] = obj["message"]
        elif isinstance(obj, str):
            self.d["error_message"] = obj

    def to_json(self):
        if not self.times["end"]:
            self.times["end"] = now_ns()
        text = "".join(self.text)
        if text:
            self.d["text"] = text
        self.d["times"] = {k: rfc3339(v) for k, v in self.times.items() if v}
        return json.dumps(self.d, separators=(",", ":"))


def request_body(args, prompt):
    """The body each API's hand-written clients typically send: model first."""
    api, stream = args.api, args.stream
    if api == "openai.chat":
        b = {"model": args.model, "messages": [{"role": "user", "content": prompt}]}
        if args.max_tokens:
            b["max_tokens"] = args.max_tokens
    elif api == "openai.completions":
        b = {"model": args.model, "prompt": prompt}
        if args.max_tokens:
            b["max_tokens"] = args.max_tokens
    elif api == "openai.embeddings":
        return {"model": args.model, "input": [prompt] * max(args.inputs, 1)}
    elif api == "openai.responses":
        b = {"model": args.model, "input": prompt}
        if args.max_tokens:
            b["max_output_tokens"] = args.max_tokens
    elif api == "anthropic.messages":
        b = {"model": args.model, "max_tokens": args.max_tokens or 64,
             "messages": [{"role": "user", "content": prompt}]}
    elif api == "ollama.chat":
        b = {"model": args.model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
        if args.max_tokens:
            b["options"] = {"num_predict": args.max_tokens}
        return b
    elif api == "ollama.generate":
        b = {"model": args.model, "prompt": prompt, "stream": stream}
        if args.max_tokens:
            b["options"] = {"num_predict": args.max_tokens}
        return b
    elif api == "ollama.embed":
        return {"model": args.model, "input": [prompt] * max(args.inputs, 1)}
    else:
        raise SystemExit("client.py: unknown API %r" % api)
    if stream:
        b["stream"] = True
        if args.include_usage and api.startswith("openai.") and api != "openai.responses":
            b["stream_options"] = {"include_usage": True}
    return b


def openai_usage(c, u):
    if isinstance(u, dict):
        c.set_usage(u.get("prompt_tokens"), u.get("completion_tokens"),
                    (u.get("prompt_tokens_details") or {}).get("cached_tokens"),
                    (u.get("prompt_tokens_details") or {}).get("cache_write_tokens"),
                    (u.get("completion_tokens_details") or {}).get("reasoning_tokens"))


def anthropic_usage(c, u):
    if isinstance(u, dict):
        c.set_usage(u.get("input_tokens"), u.get("output_tokens"), u.get("cache_read_input_tokens"),
                    u.get("cache_creation_input_tokens"), (u.get("output_tokens_details") or {}).get("thinking_tokens"))


def response_done(c, r):
    """The Responses API's final response object."""
    c.d["response_id"], c.d["response_model"] = r.get("id"), r.get("model")
    if r.get("status"):
        fr = [r["status"]]
        if (r.get("incomplete_details") or {}).get("reason"):
            fr.append(r["incomplete_details"]["reason"])
        c.d["finish_reasons"] = fr
    u = r.get("usage")
    if isinstance(u, dict):
        c.set_usage(u.get("input_tokens"), u.get("output_tokens"),
                    (u.get("input_tokens_details") or {}).get("cached_tokens"), 0,
                    (u.get("output_tokens_details") or {}).get("reasoning_tokens"))


def ollama_line(c, m):
    if m.get("model"):
        c.d["response_model"] = m["model"]
    if m.get("error"):
        c.error_object(m["error"])
    if m.get("done_reason"):
        c.d["finish_reasons"] = [m["done_reason"]]
    if "embeddings" in m:
        c.d["embeddings"] = len(m["embeddings"])
    if "prompt_eval_count" in m or "eval_count" in m:
        c.set_usage(m.get("prompt_eval_count"), m.get("eval_count"))


def whole_body(c, api, m):
    """A non-streamed answer (or an error body)."""
    if not isinstance(m, dict):
        return
    if api.startswith("ollama."):
        ollama_line(c, m)
        c.text.append((m.get("message") or {}).get("content") or m.get("response") or "")
        return
    if "error" in m and m["error"]:
        c.error_object(m["error"])
        return
    if api == "openai.responses":
        response_done(c, m)
        for item in m.get("output") or []:
            for part in item.get("content") or []:
                c.text.append(part.get("text") or "")
        return
    c.d["response_id"], c.d["response_model"] = m.get("id"), m.get("model")
    if api == "anthropic.messages":
        if m.get("stop_reason"):
            c.d["finish_reasons"] = [m["stop_reason"]]
        for block in m.get("content") or []:
            c.text.append(block.get("text") or "")
        anthropic_usage(c, m.get("usage"))
        return
    if api == "openai.embeddings":
        c.d.pop("response_id", None)
        c.d["embeddings"] = len(m.get("data") or [])
        u = m.get("usage")
        if isinstance(u, dict):
            c.set_usage(u.get("prompt_tokens"))
        return
    choices = m.get("choices") or []
    c.d["finish_reasons"] = [ch.get("finish_reason") for ch in choices if ch.get("finish_reason")]
    if choices:
        ch = choices[0]
        c.text.append((ch.get("message") or {}).get("content") or ch.get("text") or "")
    openai_usage(c, m.get("usage"))


def sse_event(c, api, name, data):
    """One server-sent event of an OpenAI or Anthropic stream."""
    if data == "[DONE]":
        c.terminal = True
        c.event("")
        return
    try:
        m = json.loads(data)
    except ValueError as e:
        c.event("")
        c.d["error"] = "decoding an event: %s" % e
        return
    content = ""
    if api == "anthropic.messages":
        typ = m.get("type")
        if typ == "message_start":
            msg = m.get("message") or {}
            c.d["response_id"], c.d["response_model"] = msg.get("id"), msg.get("model")
            anthropic_usage(c, msg.get("usage"))
        elif typ == "content_block_delta":
            content = (m.get("delta") or {}).get("text") or ""
        elif typ == "message_stop":
            c.terminal = True
        elif typ == "message_delta":
            if (m.get("delta") or {}).get("stop_reason"):
                c.d["finish_reasons"] = [m["delta"]["stop_reason"]]
            anthropic_usage(c, m.get("usage"))
        elif typ == "error":
            c.terminal = True
            c.error_object(m.get("error"))
    elif api == "openai.responses":
        typ = m.get("type")
        if typ == "response.output_text.delta":
            content = m.get("delta") or ""
        elif typ == "response.created":
            r = m.get("response") or {}
            c.d["response_id"], c.d["response_model"] = r.get("id"), r.get("model")
        elif typ in ("response.completed", "response.incomplete", "response.failed"):
            c.terminal = True
            response_done(c, m.get("response") or {})
        elif typ == "error":
            c.terminal = True
            c.d["error_type"], c.d["error_message"] = m.get("code"), m.get("message")
    else:
        if m.get("error"):
            c.terminal = True
            c.error_object(m["error"])
        else:
            c.d["response_id"], c.d["response_model"] = m.get("id"), m.get("model")
            for ch in m.get("choices") or []:
                if ch.get("index") == 0:
                    content = (ch.get("delta") or {}).get("content") or ch.get("text") or ""
                if ch.get("finish_reason"):
                    c.d.setdefault("finish_reasons", []).append(ch["finish_reason"])
            if m.get("usage"):
                openai_usage(c, m["usage"])
    c.event(content)


def read_stream(c, api, resp):
    """Reads SSE events or NDJSON lines as they arrive."""
    if api.startswith("ollama."):
        for line in iter(resp.readline, b""):
            line = line.strip()
            if not line:
                continue
            try:
                m = json.loads(line)
            except ValueError as e:
                c.event("")
                c.d["error"] = "decoding a line: %s" % e
                continue
            c.event((m.get("message") or {}).get("content") or m.get("response") or "")
            ollama_line(c, m)
            if m.get("done") or m.get("error"):
                c.terminal = True
        return
    name, data = None, []
    for line in iter(resp.readline, b""):
        line = line.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data or name:
                sse_event(c, api, name, "\n".join(data))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def headers_for(api):
    h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "zerotrace-pygenai/1"}
    if api == "anthropic.messages":
        h["x-api-key"] = "zt-test-key"
        h["anthropic-version"] = "2023-06-01"
    else:
        h["Authorization"] = "Bearer zt-test-key"
    return h


def ssl_context(args):
    ctx = ssl.create_default_context(cafile=args.cafile) if args.cafile else ssl.create_default_context()
    return ctx


class Conn:
    """One kept-alive http.client connection, reopened after an error."""

    def __init__(self, base, ctx):
        self.u = urllib.parse.urlsplit(base)
        self.ctx = ctx
        self.c = None

    def get(self):
        if self.c is None:
            if self.u.scheme == "https":
                self.c = http.client.HTTPSConnection(self.u.hostname, self.u.port or 443, context=self.ctx, timeout=60)
            else:
                self.c = http.client.HTTPConnection(self.u.hostname, self.u.port or 80, timeout=60)
        return self.c

    def drop(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def one_call(args, conn, ctx, index, base, prompt):
    path = PATHS[args.api]
    prefix = urllib.parse.urlsplit(base).path.rstrip("/")
    c = Call(args, index, base.rstrip("/") + path, len(prompt.encode()))
    if args.max_tokens and not args.api.endswith("embed") and not args.api.endswith("embeddings"):
        c.d["max_tokens"] = args.max_tokens
    elif args.api == "anthropic.messages":
        c.d["max_tokens"] = 64
    body = json.dumps(request_body(args, prompt)).encode()
    hdrs = headers_for(args.api)
    try:
        if args.urllib:
            req = urllib.request.Request(c.d["url"], data=body, headers=hdrs, method="POST")
            try:
                resp = urllib.request.urlopen(req, context=ctx if c.d["tls"] else None, timeout=60)
            except urllib.error.HTTPError as e:
                resp = e
            c.d["proto"] = "HTTP/1.1" if getattr(resp, "version", 11) == 11 else "HTTP/1.0"
        else:
            h = conn.get()
            h.request("POST", prefix + path, body=body, headers=hdrs)
            resp = h.getresponse()
            c.d["proto"] = "HTTP/1.1" if resp.version == 11 else "HTTP/1.0"
        c.times["head"] = now_ns()
        c.d["status"] = resp.status
        rid = resp.headers.get("X-Request-Id")
        if rid:
            c.d["request_id"] = rid
        ctype = resp.headers.get("Content-Type") or ""
        if resp.status < 400 and (ctype.startswith("text/event-stream") or ctype.startswith("application/x-ndjson")):
            read_stream(c, args.api, resp)
            if not c.terminal and "error" not in c.d:
                # http.client ends a cut chunked body quietly.
                c.d["error"] = "the stream ended before its last event"
        else:
            raw = resp.read()
            c.times["end"] = now_ns()
            try:
                whole_body(c, args.api, json.loads(raw))
            except ValueError as e:
                c.d["error"] = "decoding the answer: %s" % e
            if resp.status >= 400 and "error" not in c.d:
                c.d["error"] = "HTTP %d" % resp.status
        c.times["end"] = c.times["end"] or now_ns()
        resp.close()
    except (OSError, http.client.HTTPException) as e:
        c.times["end"] = now_ns()
        c.d["error"] = "%s: %s" % (type(e).__name__, e)
        if conn is not None:
            conn.drop()
    return c


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="the model server's base URL")
    p.add_argument("--api", default="openai.chat", choices=sorted(PATHS))
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--include-usage", action="store_true")
    p.add_argument("--model", default="gpt-test")
    p.add_argument("--prompt", default="Say hello to zerotrace.")
    p.add_argument("--prompt-bytes", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--inputs", type=int, default=1)
    p.add_argument("--urllib", action="store_true", help="urllib.request, a connection per call")
    p.add_argument("--cafile", help="trust this CA (default: the system store and SSL_CERT_FILE)")
    args = p.parse_args()
    prompt = args.prompt
    if len(prompt) < args.prompt_bytes:
        prompt = prompt + " " + "x" * (args.prompt_bytes - len(prompt) - 1)
    ctx = ssl_context(args)
    conn = None if args.urllib else Conn(args.base, ctx)
    for i in range(args.n):
        c = one_call(args, conn, ctx, i, args.base, prompt)
        sys.stdout.write(c.to_json() + "\n")
        sys.stdout.flush()
    if conn is not None:
        conn.drop()


if __name__ == "__main__":
    main()
