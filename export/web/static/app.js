// The service map page: polls /api/map and draws it with cytoscape.js. The
// node and edge tables on the side hold the same data as the drawing, as
// text, for readers and for tests.
"use strict";

const refreshMs = 3000;
const cy = cytoscape({
  container: document.getElementById("graph"),
  style: [
    { selector: "node", style: { "label": "data(name)", "background-color": "#4f7cff", "color": "#1d2433",
      "text-valign": "bottom", "text-margin-y": 6, "font-size": 12, "width": 34, "height": 34 } },
    { selector: "node.database", style: { "shape": "barrel", "background-color": "#f59f00" } },
    { selector: "node.external", style: { "shape": "diamond", "background-color": "#98a2b3" } },
    { selector: "node.model, node.genai", style: { "shape": "hexagon", "background-color": "#8e4ec6" } },
    { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2,
      "line-color": "#98a2b3", "target-arrow-color": "#98a2b3", "label": "data(label)", "font-size": 10,
      "text-background-color": "#ffffff", "text-background-opacity": 1 } },
    { selector: "edge.failing", style: { "line-color": "#e5484d", "target-arrow-color": "#e5484d" } },
  ],
  layout: { name: "breadthfirst", directed: true },
});

let edgesByID = new Map();

function edgeID(e) { return e.source + "->" + e.target; }

function describe(e, nodes) {
  const name = (id) => (nodes.get(id) || { name: id }).name;
  const lines = [name(e.source) + " → " + name(e.target), ""];
  for (const [title, s] of [["total", e.total], ["window", e.window]]) {
    lines.push(`${title}: ${s.requests} requests, ${s.errors} errors, ${s.bytes} bytes` +
      (s.connections ? `, ${s.connections} connections` : ""));
    lines.push(`  p50 ${s.p50_ms.toFixed(2)} ms, p95 ${s.p95_ms.toFixed(2)} ms, p99 ${s.p99_ms.toFixed(2)} ms`);
  }
  lines.push("", "recent traces:");
  for (const t of e.recent_traces || []) lines.push("  " + t);
  return lines.join("\n");
}

// describeModel tells a node's model calls over the window (gen_ai), or
// "" for a node that answered none.
function describeModel(n) {
  const g = n.gen_ai;
  if (!g) return "";
  return [`${n.name} (${n.kind}): model calls in the window`,
    `providers: ${g.providers.join(", ")}`, `models: ${g.models.join(", ")}`,
    `${g.requests} requests, ${g.errors} errors`,
    `tokens: ${g.input_tokens} in, ${g.output_tokens} out; ${g.output_tokens_per_second.toFixed(1)} output tokens/s`,
    `time to first token: p50 ${g.ttft_p50_ms.toFixed(1)} ms, p95 ${g.ttft_p95_ms.toFixed(1)} ms`,
    ...(g.cost_usd ? [`cost: ${g.cost_usd.toFixed(6)} USD`] : [])].join("\n");
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function render(map) {
  const nodes = new Map(map.nodes.map((n) => [n.id, n]));
  edgesByID = new Map(map.edges.map((e) => [edgeID(e), e]));
  let layoutNeeded = false;
  for (const n of map.nodes) {
    if (cy.getElementById(n.id).empty()) {
      cy.add({ group: "nodes", data: { id: n.id, name: n.name }, classes: n.kind });
      layoutNeeded = true;
    }
    // A traced service that answers model calls is drawn as a model.
    cy.getElementById(n.id).toggleClass("genai", !!n.gen_ai);
  }
  for (const e of map.edges) {
    const id = edgeID(e);
    const label = e.total.requests === 0 && e.total.connections
      ? `${e.total.connections} conn · ${e.total.bytes} B`
      : `${e.total.requests} req · ${e.total.errors} err`;
    const el = cy.getElementById(id);
    if (el.empty()) {
      cy.add({ group: "edges", data: { id, source: e.source, target: e.target, label } });
      layoutNeeded = true;
    } else {
      el.data("label", label);
    }
    cy.getElementById(id).toggleClass("failing", e.total.errors > 0);
  }
  if (layoutNeeded) cy.layout({ name: "breadthfirst", directed: true, padding: 30, spacingFactor: 1.3 }).run();

  const nodeRows = document.querySelector("#nodes tbody");
  nodeRows.replaceChildren(...map.nodes.map((n) => {
    const tr = document.createElement("tr");
    tr.className = "node";
    tr.dataset.id = n.id;
    tr.dataset.kind = n.kind;
    tr.append(cell(n.name), cell(n.kind));
    if (n.gen_ai) {
      const g = n.gen_ai;
      tr.dataset.genai = "true";
      tr.title = describeModel(n);
      tr.append(cell(`${g.models.join(", ")} · ${g.output_tokens_per_second.toFixed(0)} tok/s · TTFT p50 ` +
        `${g.ttft_p50_ms.toFixed(0)} / p95 ${g.ttft_p95_ms.toFixed(0)} ms · ${g.errors} err`));
      tr.addEventListener("click", () => { document.getElementById("detail").textContent = describeModel(n); });
    }
    return tr;
  }));
  const edgeRows = document.querySelector("#edges tbody");
  edgeRows.replaceChildren(...map.edges.map((e) => {
    const tr = document.createElement("tr");
    tr.className = "edge";
    tr.dataset.source = e.source;
    tr.dataset.target = e.target;
    tr.dataset.requests = e.total.requests;
    tr.dataset.errors = e.total.errors;
    tr.title = describe(e, nodes);
    tr.append(cell((nodes.get(e.source) || {}).name + " → " + (nodes.get(e.target) || {}).name),
      cell(e.total.requests), cell(e.total.errors), cell(e.total.p95_ms.toFixed(1)));
    tr.addEventListener("click", () => { document.getElementById("detail").textContent = describe(e, nodes); });
    return tr;
  }));
  document.getElementById("status").textContent =
    `${map.nodes.length} nodes, ${map.edges.length} edges · updated ${new Date(map.generated_at).toLocaleTimeString()}`;
  cy.off("mouseover tap", "node");
  cy.on("mouseover tap", "node", (ev) => {
    const n = nodes.get(ev.target.id());
    if (n && n.gen_ai) document.getElementById("detail").textContent = describeModel(n);
  });
  cy.off("mouseover tap", "edge");
  cy.on("mouseover tap", "edge", (ev) => {
    const e = edgesByID.get(ev.target.id());
    if (e) document.getElementById("detail").textContent = describe(e, nodes);
  });
}

async function refresh() {
  try {
    const resp = await fetch("api/map", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
  } catch (err) {
    document.getElementById("status").textContent = "cannot reach the agent: " + err.message;
  }
}

refresh();
setInterval(refresh, refreshMs);
