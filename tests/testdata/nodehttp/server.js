// A plain Node.js http server for zerotrace's end-to-end tests. It knows
// nothing of tracing. It prints "listening on HOST:PORT" once bound, answers
// GET /chain?id=N with "N:node" (what a sample app's /chain leaf answers, so
// that a Go gateway can call it), GET /fail with 500, GET /stream with four
// pieces written 100 ms apart (chunked, as a model server streams tokens)
// and anything else with 200, keep-alive, until SIGTERM.
"use strict";
const http = require("http");

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/stream") {
    res.setHeader("Content-Type", "text/plain");
    let i = 0;
    const next = () => {
      if (i === 4) {
        res.end();
        return;
      }
      res.write(`token${i++} `);
      setTimeout(next, 100);
    };
    setTimeout(next, 100);
    return;
  }
  let body = "node";
  if (url.pathname === "/chain") {
    body = (url.searchParams.get("id") || "") + ":node";
  } else if (url.pathname === "/fail") {
    res.statusCode = 500;
    body = "intentional failure";
  }
  res.setHeader("Content-Type", "text/plain");
  res.end(body);
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
