/* Graylane console behaviour: the live topology and the live execution view. No bundler. */
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const HEALTH = { Healthy: "#2e9d57", Degraded: "#e69a17", Failure: "#d63b3b", NA: "#9aa3b2" };
  const STATUS = { SUCCEEDED: "#2e9d57", RUNNING: "#3559e0", PAUSED: "#3559e0", TERMINAL: "#d63b3b",
    FAILED_CONTINUE: "#d63b3b", CANCELED: "#9aa3b2", STOPPED: "#9aa3b2", SKIPPED: "#c4c9d4",
    NOT_STARTED: "#dfe3ea", SUSPENDED: "#e69a17", BUFFERED: "#e69a17" };
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const fmtMs = (v) => (v == null ? "-" : v >= 10 ? v.toFixed(0) + " ms" : v.toFixed(1) + " ms");

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  function sparkline(values, color) {
    const w = 300, h = 60, max = Math.max(1e-9, ...values);
    const step = values.length > 1 ? w / (values.length - 1) : w;
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 4 - (v / max) * (h - 8)).toFixed(1)}`).join(" ");
    return `<svg class="spark" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" aria-hidden="true"><polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/></svg>`;
  }

  function edgeLabel(e, mode) {
    if (mode === "distribution") return e.distribution < 99.95 ? e.distribution.toFixed(1) + "%" : "";
    if (mode === "p95") return fmtMs(e.p95);
    return e.rps.toFixed(2) + " rps";
  }

  function topology() {
    if (typeof cytoscape === "undefined") {
      document.getElementById("cy").innerHTML = "<p class='error'>cytoscape is missing: run <code>npm ci</code>.</p>";
      return;
    }
    if (typeof cytoscapeDagre !== "undefined") cytoscape.use(cytoscapeDagre);
    const cy = cytoscape({
      container: document.getElementById("cy"),
      wheelSensitivity: 0.3,
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
          "background-color": "data(color)", width: 28, height: 28, "border-width": 2, "border-color": "#fff" } },
        { selector: "node[nodeType = 'service']", style: { shape: "triangle" } },
        { selector: "node[nodeType = 'gateway']", style: { shape: "round-rectangle", width: 40 } },
        { selector: "node[?idle]", style: { opacity: 0.45, "border-style": "dashed", "border-color": "#9aa3b2" } },
        { selector: "edge", style: { width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle",
          "line-color": "data(color)", "target-arrow-color": "data(color)", label: "data(label)", "font-size": 10,
          "text-background-color": "#fff", "text-background-opacity": 0.85, "text-background-padding": 2 } },
        { selector: ":selected", style: { "border-color": "#3559e0", "border-width": 3, "line-color": "#3559e0" } },
      ],
    });
    const history = {}; // element id -> [{rps, err, p95}]
    let lastKey = "", selected = null, graph = null;
    const $ = (id) => document.getElementById(id);

    async function refresh() {
      const params = new URLSearchParams({ window: $("g-window").value, type: $("g-type").value, idle: $("g-idle").checked });
      if ($("g-namespace").value) params.set("namespace", $("g-namespace").value);
      try {
        graph = await getJSON("/api/v1/graph?" + params);
      } catch (err) {
        $("g-status").textContent = "graph unavailable: " + err.message;
        return;
      }
      const mode = $("g-labels").value;
      const els = [];
      for (const n of graph.nodes) els.push({ group: "nodes", data: { ...n, color: HEALTH[n.health] || HEALTH.NA } });
      for (const e of graph.edges) {
        els.push({ group: "edges", data: { ...e, label: edgeLabel(e, mode), color: HEALTH[e.health] || HEALTH.NA } });
        (history[e.id] = history[e.id] || []).push({ rps: e.rps, err: e.errorRate5xx, p95: e.p95 || 0 });
        if (history[e.id].length > 60) history[e.id].shift();
      }
      const key = els.map((x) => x.data.id).sort().join("|");
      if (key !== lastKey) {
        cy.elements().remove();
        cy.add(els);
        cy.layout({ name: typeof cytoscapeDagre !== "undefined" ? "dagre" : "breadthfirst", rankDir: "LR", nodeSep: 40, rankSep: 120 }).run();
        lastKey = key;
      } else {
        for (const x of els) cy.getElementById(x.data.id).data(x.data);
      }
      $("g-status").textContent = `${graph.nodes.length} nodes · ${graph.edges.length} edges · updated ${new Date().toLocaleTimeString()}`;
      if (selected) showSide(selected);
    }

    async function routingFor(service, namespace) {
      const ns = namespace && namespace !== "unknown" ? "?namespace=" + encodeURIComponent(namespace) : "";
      const [vs, dr] = await Promise.all([getJSON("/api/v1/resources/vs" + ns).catch(() => ({ items: [] })),
        getJSON("/api/v1/resources/dr" + ns).catch(() => ({ items: [] }))]);
      const short = (h) => String(h).split(".")[0];
      const vss = vs.items.filter((v) => (v.spec.hosts || []).some((h) => short(h) === service));
      const drs = dr.items.filter((d) => short(d.spec.host) === service);
      const link = (r) => `<a href="/resources/${r.kind}/${esc(r.metadata.namespace || "default")}/${esc(r.metadata.name)}">${r.kind} ${esc(r.metadata.name)}</a>`;
      return (vss.concat(drs).map(link).join("<br>")) || "<span class='muted'>no VirtualService or DestinationRule: every version of the Service gets traffic</span>";
    }

    async function showSide(el) {
      const d = el.data(), side = $("g-side");
      if (el.isEdge()) {
        const h = history[d.id] || [];
        side.innerHTML = `<h2>${esc(cy.getElementById(d.source).data("label"))} → ${esc(cy.getElementById(d.target).data("label"))}</h2>
          <p>service <strong>${esc(d.service)}</strong> · <span class="badge h-${esc(d.health)}">${esc(d.health)}</span></p>
          <p>${d.rps.toFixed(2)} rps · ${d.distribution.toFixed(1)}% of the source's ${esc(d.service)} traffic<br>
          5xx ${d.errorRate5xx.toFixed(2)}% · 4xx ${d.errorRate4xx.toFixed(2)}%<br>p50 ${fmtMs(d.p50)} · p95 ${fmtMs(d.p95)} · p99 ${fmtMs(d.p99)}</p>
          <h2>Request rate</h2>${sparkline(h.map((x) => x.rps), "#3559e0")}
          <h2>5xx %</h2>${sparkline(h.map((x) => x.err), "#d63b3b")}
          <h2>p95 latency</h2>${sparkline(h.map((x) => x.p95), "#e69a17")}
          <h2>Routing</h2><p id="g-routing">…</p>`;
        $("g-routing").innerHTML = await routingFor(d.service, d.id.split("/")[0]);
      } else {
        const inbound = el.incomers("edge").map((e) => e.data()), outbound = el.outgoers("edge").map((e) => e.data());
        side.innerHTML = `<h2>${esc(d.label)}</h2><p>${esc(d.nodeType)} · ${esc(d.namespace)} · <span class="badge h-${esc(d.health)}">${esc(d.health)}</span>${d.idle ? " · idle" : ""}</p>
          <p>in ${d.rpsIn.toFixed(2)} rps · out ${d.rpsOut.toFixed(2)} rps</p>
          <h2>Calls</h2>${outbound.map((e) => `<p>→ ${esc(cy.getElementById(e.target).data("label"))}: ${e.rps.toFixed(2)} rps, ${e.distribution.toFixed(1)}%</p>`).join("") || "<p class='muted'>none</p>"}
          <h2>Called by</h2>${inbound.map((e) => `<p>← ${esc(cy.getElementById(e.source).data("label"))}: ${e.rps.toFixed(2)} rps</p>`).join("") || "<p class='muted'>none</p>"}
          <h2>Routing</h2><p id="g-routing">…</p>`;
        $("g-routing").innerHTML = await routingFor(d.app || d.service || d.label, d.namespace);
      }
    }

    cy.on("tap", "node, edge", (evt) => { selected = evt.target; showSide(selected); });
    for (const id of ["g-window", "g-type", "g-idle", "g-namespace"]) $(id).addEventListener("change", () => { lastKey = ""; refresh(); });
    $("g-labels").addEventListener("change", () => { lastKey = ""; refresh(); });
    refresh();
    setInterval(refresh, 3000);
    window.graylaneCy = cy;
  }

  /* Judgment forms: check custom parameters in the browser first; bad input is refused with a message
     and nothing is sent. The server validates again. */
  function checkJudgment(form, submitter) {
    if (submitter && submitter.name === "judgmentStatus" && submitter.value === "stop") return null;
    for (const input of form.querySelectorAll("input[name^='cp_'], select[name^='cp_']")) {
      const label = (form.querySelector(`label[for='${input.id}']`) || {}).textContent || input.name;
      const name = label.split("*")[0].trim();
      const v = input.value.trim();
      if (!v) { if (input.required) return [input, `${name}: a value is required`]; continue; }
      if (input.type === "number") {
        const n = Number(v);
        if (!Number.isFinite(n)) return [input, `${name}: "${v}" is not a number`];
        if (input.step === "1" && !Number.isInteger(n)) return [input, `${name}: "${v}" is not a whole number`];
        if (input.min !== "" && n < Number(input.min)) return [input, `${name}: ${v} is below the minimum ${input.min}`];
        if (input.max !== "" && n > Number(input.max)) return [input, `${name}: ${v} is above the maximum ${input.max}`];
      }
    }
    return null;
  }
  document.addEventListener("htmx:beforeRequest", (evt) => {
    const form = evt.target.closest && evt.target.closest("form.judgment");
    if (!form) return;
    const problem = checkJudgment(form, evt.detail.requestConfig && evt.detail.requestConfig.submitter);
    if (problem) {
      evt.preventDefault();
      const [input, message] = problem;
      const out = document.getElementById(input.getAttribute("aria-describedby")) || form.nextElementSibling;
      out.innerHTML = `<p class="error" role="alert">${esc(message)} — nothing was sent.</p>`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });

  function execution(id, elements) {
    const box = document.getElementById("stages");
    let cy = null;
    const label = (d) => d.duration ? `${d.label}\n${d.status} · ${d.duration}` : `${d.label}\n${d.status}`;
    const paint = (els) => els.map((x) => x.group === "nodes" ? { ...x, data: { ...x.data, text: label(x.data), color: STATUS[x.data.status] || "#dfe3ea" } } : x);
    if (typeof cytoscape !== "undefined" && box) {
      if (typeof cytoscapeDagre !== "undefined") cytoscape.use(cytoscapeDagre);
      cy = cytoscape({ container: box, elements: paint(elements), userZoomingEnabled: false,
        style: [
          { selector: "node", style: { shape: "round-rectangle", width: 170, height: 46, "background-color": "data(color)",
            label: "data(text)", "text-wrap": "wrap", "text-valign": "center", "font-size": 11, color: "#111" } },
          { selector: "edge", style: { width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#b8bfcc", "target-arrow-color": "#b8bfcc" } },
        ] });
      cy.layout({ name: typeof cytoscapeDagre !== "undefined" ? "dagre" : "breadthfirst", rankDir: "LR", nodeSep: 20, rankSep: 50 }).run();
      cy.on("tap", "node", (evt) => { const el = document.getElementById("stage-" + evt.target.id()); if (el) el.scrollIntoView({ behavior: "smooth" }); });
    }
    let signature = elements.filter((x) => x.group === "nodes").map((x) => x.data.status).join(",");
    async function update() {
      let data;
      try { data = await getJSON(`/ui/executions/${encodeURIComponent(id)}/graph`); } catch (e) { return; }
      const badge = document.getElementById("exe-status");
      if (badge && data.status) { badge.textContent = data.status; badge.className = "badge s-" + data.status; }
      const els = paint(data.elements);
      if (cy) for (const x of els) if (x.group === "nodes") cy.getElementById(x.data.id).data(x.data);
      const sig = data.elements.filter((x) => x.group === "nodes").map((x) => x.data.status).join(",");
      if (sig !== signature) { signature = sig; document.body.dispatchEvent(new Event("graylane:refresh")); }
    }
    if (window.EventSource) {
      const es = new EventSource(`/api/v1/executions/${encodeURIComponent(id)}/events`);
      es.onmessage = update;
      for (const kind of ["stage", "context", "execution", "task", "snapshot"]) es.addEventListener(kind, update);
      es.addEventListener("error", () => {});
    }
    setInterval(update, 3000);
    for (const t of document.querySelectorAll("time.ts")) { const ms = Number(t.dataset.ms); if (ms) t.textContent = new Date(ms).toLocaleString(); }
  }

  window.Graylane = { topology, execution, getJSON, esc, csrf, STATUS, sparkline, fmtMs };
})();
