// The Node.js client of zerotrace's GenAI tests: calls a model API (in the
// tests, tests/modelserver on loopback) through the official openai npm
// package, as a Node service would, and prints one JSON line per call in
// the shape of modelspec.Call (tests/internal/modelspec/call.go): what was
// sent, what came back, and when the head, the first chunk, the first token
// and the end arrived.
//
// HTTPS trusts NODE_EXTRA_CA_CERTS; Node's fetch speaks HTTP/1.1, through
// the OpenSSL inside the node binary.
//
//   node client.mjs --base URL [--api openai.chat] [--n 1] [--stream]
//        [--include-usage] [--model gpt-test] [--prompt TEXT]
//        [--prompt-bytes N] [--max-tokens N] [--inputs N]
//
// APIs: openai.chat, openai.completions, openai.embeddings, openai.responses.
import OpenAI from "openai";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    base: { type: "string" },
    api: { type: "string", default: "openai.chat" },
    n: { type: "string", default: "1" },
    stream: { type: "boolean", default: false },
    "include-usage": { type: "boolean", default: false },
    model: { type: "string", default: "gpt-test" },
    prompt: { type: "string", default: "Say hello to zerotrace." },
    "prompt-bytes": { type: "string", default: "0" },
    "max-tokens": { type: "string", default: "64" },
    inputs: { type: "string", default: "1" },
  },
  strict: true,
});
if (!args.base) {
  console.error("client.mjs: --base is required");
  process.exit(2);
}
const paths = {
  "openai.chat": "/v1/chat/completions",
  "openai.completions": "/v1/completions",
  "openai.embeddings": "/v1/embeddings",
  "openai.responses": "/v1/responses",
};
if (!(args.api in paths)) {
  console.error(`client.mjs: unknown API ${args.api} (want one of ${Object.keys(paths).join(", ")})`);
  process.exit(2);
}
const base = args.base.replace(/\/+$/, "");
const maxTokens = Number(args["max-tokens"]);
let prompt = args.prompt;
const promptBytes = Number(args["prompt-bytes"]);
if (prompt.length < promptBytes) prompt = prompt + " " + "x".repeat(promptBytes - prompt.length - 1);

// Wall-clock nanoseconds, as a BigInt: the clock spans use, finer than Date.
const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
const rfc3339 = (ns) => {
  if (!ns) return undefined;
  const ms = ns / 1000000n;
  const iso = new Date(Number(ms)).toISOString(); // 2026-12-03T15:00:24.805Z
  return iso.slice(0, 19) + "." + String(ns % 1000000000n).padStart(9, "0") + "Z";
};

// The call being made; the fetch wrapper notes its response head.
let cur = null;
const client = new OpenAI({
  baseURL: base + "/v1",
  apiKey: "zt-test-key",
  maxRetries: 0,
  fetch: async (url, init) => {
    const r = await fetch(url, init);
    if (cur) {
      cur.times.head = nowNs();
      cur.d.status = r.status;
      cur.d.proto = "HTTP/1.1";
      const rid = r.headers.get("x-request-id");
      if (rid) cur.d.request_id = rid;
    }
    return r;
  },
});

class Call {
  constructor(index) {
    const embedding = args.api === "openai.embeddings";
    this.d = {
      driver: "node",
      client: "openai-node",
      api: args.api,
      index,
      pid: process.pid,
      url: base + paths[args.api],
      tls: base.startsWith("https:"),
      model: args.model,
      stream: args.stream && !embedding,
      prompt_bytes: Buffer.byteLength(prompt),
      status: 0,
      chunks: 0,
      events: 0,
    };
    if (this.d.stream && args["include-usage"] && args.api !== "openai.responses") this.d.include_usage = true;
    if (maxTokens > 0 && !embedding) this.d.max_tokens = maxTokens;
    this.times = { start: nowNs(), head: 0n, first_chunk: 0n, first_token: 0n, end: 0n };
    this.text = "";
  }
  event(content) {
    const t = nowNs();
    this.d.events++;
    if (!this.times.first_chunk) this.times.first_chunk = t;
    if (content) {
      this.d.chunks++;
      this.text += content;
      if (!this.times.first_token) this.times.first_token = t;
    }
  }
  openaiUsage(u) {
    if (!u) return;
    this.d.usage = {
      input: u.prompt_tokens ?? 0,
      output: u.completion_tokens ?? 0,
      cached: u.prompt_tokens_details?.cached_tokens ?? 0,
      cache_write: u.prompt_tokens_details?.cache_write_tokens ?? 0,
      reasoning: u.completion_tokens_details?.reasoning_tokens ?? 0,
    };
  }
  responseDone(r) {
    this.d.response_id = r.id;
    this.d.response_model = r.model;
    if (r.status) {
      this.d.finish_reasons = [r.status];
      if (r.incomplete_details?.reason) this.d.finish_reasons.push(r.incomplete_details.reason);
    }
    const u = r.usage;
    if (u) {
      this.d.usage = {
        input: u.input_tokens ?? 0,
        output: u.output_tokens ?? 0,
        cached: u.input_tokens_details?.cached_tokens ?? 0,
        cache_write: 0,
        reasoning: u.output_tokens_details?.reasoning_tokens ?? 0,
      };
    }
  }
  choices(choices, content) {
    let text = "";
    for (const ch of choices ?? []) {
      if (ch.index === 0) text = content(ch) ?? "";
      if (ch.finish_reason) (this.d.finish_reasons ??= []).push(ch.finish_reason);
    }
    return text;
  }
  failed(err) {
    this.d.error = `${err?.name ?? "Error"}: ${err?.message ?? err}`;
    if (err instanceof OpenAI.APIError) {
      if (err.status && !this.d.status) this.d.status = err.status;
      const obj = err.error ?? {};
      const type = obj.type ?? err.type ?? obj.code ?? err.code;
      if (type) this.d.error_type = type;
      if (obj.message) this.d.error_message = obj.message;
    }
  }
  json() {
    if (!this.times.end) this.times.end = nowNs();
    if (this.text) this.d.text = this.text;
    this.d.times = {};
    for (const [k, v] of Object.entries(this.times)) if (v) this.d.times[k] = rfc3339(v);
    return JSON.stringify(this.d);
  }
}

async function chat(k) {
  const p = { model: args.model, messages: [{ role: "user", content: prompt }] };
  if (maxTokens > 0) p.max_completion_tokens = maxTokens;
  if (!args.stream) {
    const r = await client.chat.completions.create(p);
    k.times.end = nowNs();
    k.d.response_id = r.id;
    k.d.response_model = r.model;
    k.text = k.choices(r.choices, (ch) => ch.message?.content);
    k.openaiUsage(r.usage);
    return;
  }
  p.stream = true;
  if (args["include-usage"]) p.stream_options = { include_usage: true };
  const s = await client.chat.completions.create(p);
  for await (const ch of s) {
    k.d.response_id = ch.id;
    k.d.response_model = ch.model;
    k.event(k.choices(ch.choices, (c) => c.delta?.content));
    k.openaiUsage(ch.usage);
  }
}

async function completions(k) {
  const p = { model: args.model, prompt };
  if (maxTokens > 0) p.max_tokens = maxTokens;
  if (!args.stream) {
    const r = await client.completions.create(p);
    k.times.end = nowNs();
    k.d.response_id = r.id;
    k.d.response_model = r.model;
    k.text = k.choices(r.choices, (ch) => ch.text);
    k.openaiUsage(r.usage);
    return;
  }
  p.stream = true;
  if (args["include-usage"]) p.stream_options = { include_usage: true };
  const s = await client.completions.create(p);
  for await (const ch of s) {
    k.d.response_id = ch.id;
    k.d.response_model = ch.model;
    k.event(k.choices(ch.choices, (c) => c.text));
    k.openaiUsage(ch.usage);
  }
}

async function embeddings(k) {
  const inputs = Array(Math.max(Number(args.inputs), 1)).fill(prompt);
  const r = await client.embeddings.create({ model: args.model, input: inputs });
  k.times.end = nowNs();
  k.d.response_model = r.model;
  k.d.embeddings = r.data?.length ?? 0;
  if (r.usage) k.d.usage = { input: r.usage.prompt_tokens ?? 0, output: 0, cached: 0, cache_write: 0, reasoning: 0 };
}

async function responses(k) {
  const p = { model: args.model, input: prompt };
  if (maxTokens > 0) p.max_output_tokens = maxTokens;
  if (!args.stream) {
    const r = await client.responses.create(p);
    k.times.end = nowNs();
    k.responseDone(r);
    k.text = r.output_text ?? "";
    return;
  }
  p.stream = true;
  const s = await client.responses.create(p);
  for await (const ev of s) {
    let content = "";
    switch (ev.type) {
      case "response.output_text.delta":
        content = ev.delta;
        break;
      case "response.created":
        k.d.response_id = ev.response?.id;
        k.d.response_model = ev.response?.model;
        break;
      case "response.completed":
      case "response.incomplete":
      case "response.failed":
        k.responseDone(ev.response);
        break;
      case "error":
        k.d.error_type = ev.code;
        k.d.error_message = ev.message;
        break;
    }
    k.event(content);
  }
}

const calls = {
  "openai.chat": chat,
  "openai.completions": completions,
  "openai.embeddings": embeddings,
  "openai.responses": responses,
};

for (let i = 0; i < Number(args.n); i++) {
  const k = new Call(i);
  cur = k;
  try {
    await calls[args.api](k);
  } catch (err) {
    k.failed(err);
  }
  k.times.end ||= nowNs();
  process.stdout.write(k.json() + "\n");
}
