/* Graylane console behaviour: the live topology and the live execution view. No bundler. */
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const HEALTH = { Healthy: "#2e9d57", Degraded: "#e69a17", Failure: "#d63b3b", NA: "#9aa3b2" };
  const STATUS = { SUCCEEDED: "#bfe5cc", RUNNING: "#c9d5fb", PAUSED: "#c9d5fb", TERMINAL: "#f7c5c5",
    FAILED_CONTINUE: "#f7c5c5", CANCELED: "#e3e6ec", STOPPED: "#e3e6ec", SKIPPED: "#eef0f4",
    NOT_STARTED: "#f6f7f9", SUSPENDED: "#fbe0b0", BUFFERED: "#fbe0b0" };
  const STATUS_EDGE = { SUCCEEDED: "#1b6e3c", RUNNING: "#2743b8", PAUSED: "#2743b8", TERMINAL: "#a82424",
    FAILED_CONTINUE: "#a82424", SUSPENDED: "#8a4d00", BUFFERED: "#8a4d00" };
  const narrow = (el) => el && el.clientWidth < 700;
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

  function edgeLabel(e, mode, configured) {
    if (mode === "distribution") {
      // Observed share, and beside it the weight a running release configured for the target's version.
      if (configured != null) return `${e.distribution.toFixed(1)}% · cfg ${configured}%`;
      return e.distribution < 99.95 ? e.distribution.toFixed(1) + "%" : "";
    }
    if (mode === "p95") return fmtMs(e.p95);
    return e.rps.toFixed(2) + " rps";
  }

  /* Graphs are keyboard reachable: the container takes focus; arrow keys walk the elements in reading
     order, Enter opens the selected one, Escape clears; a live region says what is selected. */
  function keyboardWalk(cy, box, order, describe, open, announce) {
    let index = -1;
    box.addEventListener("keydown", (evt) => {
      const items = order();
      if (!items.length) return;
      if (["ArrowRight", "ArrowDown"].includes(evt.key)) index = (index + 1) % items.length;
      else if (["ArrowLeft", "ArrowUp"].includes(evt.key)) index = (index - 1 + items.length) % items.length;
      else if (evt.key === "Enter" && index >= 0) { open(items[index]); evt.preventDefault(); return; }
      else if (evt.key === "Escape") { cy.elements().unselect(); index = -1; announce(""); return; }
      else return;
      evt.preventDefault();
      cy.elements().unselect();
      items[index].select();
      announce(describe(items[index]) + ` (${index + 1} of ${items.length}; Enter opens it)`);
    });
  }

  function topologyTable(graph, label) {
    const nodes = graph.nodes.map((n) => `<tr><td><button type="button" class="link" data-select="${esc(n.id)}">${esc(n.label)}</button></td>
      <td>${esc(n.nodeType)}</td><td>${esc(n.namespace)}</td><td><span class="badge h-${esc(n.health)}">${esc(n.health)}</span>${n.idle ? " · idle" : ""}</td>
      <td>${n.rpsIn.toFixed(2)}</td><td>${n.rpsOut.toFixed(2)}</td></tr>`).join("");
    const edges = graph.edges.map((e) => `<tr><td><button type="button" class="link" data-select="${esc(e.id)}">${esc(label(e.source))} → ${esc(label(e.target))}</button></td>
      <td>${esc(e.service)}</td><td>${e.rps.toFixed(2)}</td><td>${e.distribution.toFixed(1)}%</td><td>${e.errorRate5xx.toFixed(2)}%</td><td>${fmtMs(e.p95)}</td></tr>`).join("");
    return `<div class="table-scroll"><table class="list"><caption>Nodes</caption><thead><tr><th scope="col">Node</th><th scope="col">Type</th><th scope="col">Namespace</th><th scope="col">Health</th><th scope="col">In rps</th><th scope="col">Out rps</th></tr></thead>
      <tbody>${nodes || "<tr><td colspan='6' class='muted'>No nodes.</td></tr>"}</tbody></table></div>
      <div class="table-scroll"><table class="list"><caption>Edges</caption><thead><tr><th scope="col">From → to</th><th scope="col">Service</th><th scope="col">rps</th><th scope="col">Share</th><th scope="col">5xx</th><th scope="col">p95</th></tr></thead>
      <tbody>${edges || "<tr><td colspan='6' class='muted'>No edges.</td></tr>"}</tbody></table></div>`;
  }

  /* Traffic animation, as Kiali's: dots travel each edge from source to target, emitted at a rate that
     follows the edge's requests per second (capped), slower when its p95 is higher; a share of them, the
     edge's 5xx share, is red. Drawn on an SVG layer over the graph (aria-hidden: the table says the rates). */
  const SVGNS = "http://www.w3.org/2000/svg";
  function trafficAnimation(cy, layer) {
    const state = { on: false, rates: {}, dots: [] };
    const carry = {}, errCarry = {};
    let last = 0;
    const rateOf = (e) => Math.min(Math.max(e.data("rps") || 0, 0), 40) * 0.5; // dots per second, proportional
    function spawn(e) {
      const el = document.createElementNS(SVGNS, "circle");
      const id = e.id();
      errCarry[id] = (errCarry[id] || 0) + (e.data("errorRate5xx") || 0) / 100;
      const error = errCarry[id] >= 1;
      if (error) errCarry[id] -= 1;
      el.setAttribute("r", error ? "4" : "3");
      el.setAttribute("class", error ? "traffic-dot error" : "traffic-dot");
      el.dataset.edge = id;
      layer.appendChild(el);
      const seconds = Math.min(Math.max(0.9 + (e.data("p95") || 0) / 250, 0.9), 3);
      state.dots.push({ edge: e, t: 0, seconds, el });
    }
    function frame(now) {
      if (!state.on) return;
      const dt = last ? Math.min((now - last) / 1000, 0.25) : 0;
      last = now;
      const zoom = cy.zoom(), pan = cy.pan();
      state.rates = {};
      cy.edges().forEach((e) => {
        const rate = rateOf(e);
        state.rates[e.id()] = rate;
        if (rate <= 0 || e.source().id() === e.target().id()) return;
        carry[e.id()] = (carry[e.id()] || 0) + rate * dt;
        while (carry[e.id()] >= 1 && state.dots.length < 400) { carry[e.id()] -= 1; spawn(e); }
      });
      state.dots = state.dots.filter((d) => {
        d.t += dt / d.seconds;
        if (d.t >= 1 || d.edge.removed()) { d.el.remove(); return false; }
        const a = d.edge.sourceEndpoint(), b = d.edge.targetEndpoint();
        d.el.setAttribute("cx", ((a.x + (b.x - a.x) * d.t) * zoom + pan.x).toFixed(1));
        d.el.setAttribute("cy", ((a.y + (b.y - a.y) * d.t) * zoom + pan.y).toFixed(1));
        return true;
      });
      requestAnimationFrame(frame);
    }
    state.set = (on) => {
      if (on === state.on) return;
      state.on = on;
      if (on) { last = 0; requestAnimationFrame(frame); }
      else { for (const d of state.dots) d.el.remove(); state.dots = []; state.rates = {}; }
    };
    return state;
  }

  function topology() {
    if (typeof cytoscape === "undefined") {
      document.getElementById("cy").innerHTML = "<p class='error'>cytoscape did not load (/vendor/cytoscape.min.js).</p>";
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
    let releases = []; // services running executions release: [{service, executionId, pipeline, waiting, configured}]
    const releaseOf = (service) => releases.find((r) => r.service === service);
    async function loadReleases() {
      try { releases = await getJSON("/ui/topology/releases"); } catch (err) { releases = []; }
    }

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
      const version = {};
      for (const n of graph.nodes) {
        version[n.id] = n.version;
        els.push({ group: "nodes", data: { ...n, color: HEALTH[n.health] || HEALTH.NA } });
      }
      for (const e of graph.edges) {
        const release = releaseOf(e.service), configured = release ? release.configured[version[e.target]] : null;
        els.push({ group: "edges", data: { ...e, label: edgeLabel(e, mode, configured), configured, color: HEALTH[e.health] || HEALTH.NA } });
        (history[e.id] = history[e.id] || []).push({ rps: e.rps, err: e.errorRate5xx, p95: e.p95 || 0 });
        if (history[e.id].length > 60) history[e.id].shift();
      }
      const key = els.map((x) => x.data.id).sort().join("|");
      if (key !== lastKey) {
        cy.elements().remove();
        cy.add(els);
        const small = narrow($("cy"));
        cy.layout({ name: typeof cytoscapeDagre !== "undefined" ? "dagre" : "breadthfirst", rankDir: small ? "TB" : "LR",
          nodeSep: small ? 60 : 40, rankSep: small ? 60 : 120 }).run();
        lastKey = key;
      } else {
        for (const x of els) cy.getElementById(x.data.id).data(x.data);
      }
      $("g-status").textContent = `${graph.nodes.length} nodes · ${graph.edges.length} edges · updated ${new Date().toLocaleTimeString()}`;
      const table = $("g-table");
      if (table && !table.contains(document.activeElement)) table.innerHTML = topologyTable(graph, (id) => cy.getElementById(id).data("label") || id);
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

    /* A service a running execution releases: "reviews-canary · waiting 是否全量发布 · configured 30%",
       and the release header with the judgment's form, re-rendered only when the release changes. */
    let releaseShown = "";
    async function showRelease(service, targetVersion) {
      const box = $("g-release"), r = releaseOf(service);
      const key = r ? JSON.stringify([r, targetVersion]) : "";
      if (key === releaseShown) return;
      releaseShown = key;
      if (!r) { box.innerHTML = ""; return; }
      const cfg = targetVersion && r.configured[targetVersion] != null ? `${r.configured[targetVersion]}%`
        : Object.entries(r.configured).map(([v, pct]) => `${v} ${pct}%`).join(", ");
      box.innerHTML = `<p class="release-line"><a href="/executions/${encodeURIComponent(r.executionId)}#release">${esc(r.pipeline)}</a>`
        + `${r.waiting ? ` · waiting <strong>${esc(r.waiting)}</strong>` : ""}${cfg ? ` · configured ${esc(cfg)}` : ""}</p><div id="g-release-form"></div>`;
      if (!r.waiting) return;
      const resp = await fetch(`/ui/executions/${encodeURIComponent(r.executionId)}/release`);
      if (!resp.ok || !$("g-release-form")) return;
      $("g-release-form").innerHTML = await resp.text();
      if (window.htmx) window.htmx.process($("g-release-form"));
    }
    document.body.addEventListener("graylane:executions", async () => {
      await loadReleases();
      if (selected) showRelease(selected.isEdge() ? selected.data("service") : (selected.data("app") || selected.data("service") || selected.data("label")),
        selected.isEdge() ? cy.getElementById(selected.data("target")).data("version") : null);
    });

    async function showSide(el) {
      const d = el.data(), side = $("g-detail");
      showRelease(el.isEdge() ? d.service : (d.app || d.service || d.label), el.isEdge() ? cy.getElementById(d.target).data("version") : null);
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
    const describe = (el) => el.isEdge()
      ? `edge ${cy.getElementById(el.data("source")).data("label")} to ${cy.getElementById(el.data("target")).data("label")}, ${el.data("label") || ""}`
      : `${el.data("nodeType")} ${el.data("label")}, ${el.data("health")}`;
    const open = (el) => { selected = el; showSide(el); $("g-side").focus(); };
    keyboardWalk(cy, $("cy"), () => cy.nodes().sort((a, b) => a.position("x") - b.position("x") || a.position("y") - b.position("y")).toArray().concat(cy.edges().toArray()),
      describe, open, (text) => { $("g-selected").textContent = text; });
    const tableBox = $("g-table");
    if (tableBox) tableBox.addEventListener("click", (evt) => {
      const button = evt.target.closest("button[data-select]");
      if (!button) return;
      const el = cy.getElementById(button.dataset.select);
      if (el.nonempty()) { cy.elements().unselect(); el.select(); open(el); }
    });
    // The graph's options live in the URL, so a view can be linked and survives a reload.
    const OPTIONS = { namespace: "g-namespace", window: "g-window", type: "g-type", labels: "g-labels", idle: "g-idle",
      animate: "g-animate" };
    const query = new URLSearchParams(location.search);
    // Moving dots are off by default for a reader who asked the system for reduced motion; the URL still decides.
    $("g-animate").checked = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    for (const [key, id] of Object.entries(OPTIONS)) {
      if (!query.has(key)) continue;
      if ($(id).type === "checkbox") $(id).checked = query.get(key) !== "false";
      else $(id).value = query.get(key);
    }
    const remember = () => {
      const q = new URLSearchParams();
      for (const [key, id] of Object.entries(OPTIONS)) {
        const value = $(id).type === "checkbox" ? String($(id).checked) : $(id).value;
        if (value) q.set(key, value);
      }
      window.history.replaceState(null, "", location.pathname + "?" + q);
    };
    const traffic = trafficAnimation(cy, $("g-traffic"));
    window.graylaneTraffic = traffic;
    traffic.set($("g-animate").checked);
    $("g-animate").addEventListener("change", () => { remember(); traffic.set($("g-animate").checked); });
    for (const id of Object.values(OPTIONS)) {
      if (id !== "g-animate") $(id).addEventListener("change", () => { lastKey = ""; remember(); refresh(); });
    }
    loadReleases().then(refresh);
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
      if (input.dataset.number) {
        const n = Number(v);
        if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v) || !Number.isFinite(n)) return [input, `${name}: "${v}" is not a number`];
        if (input.dataset.number === "int" && !Number.isInteger(n)) return [input, `${name}: "${v}" is not a whole number`];
        if (input.dataset.min !== undefined && n < Number(input.dataset.min)) return [input, `${name}: ${v} is below the minimum ${input.dataset.min}`];
        if (input.dataset.max !== undefined && n > Number(input.dataset.max)) return [input, `${name}: ${v} is above the maximum ${input.dataset.max}`];
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

  /* Each judgment or start sent from a form carries an Idempotency-Key: a fresh one per judgment or start, the
     same one when that very action (same button, same values) is sent again, e.g. clicked twice or after a failed
     request, so the control plane records it once. */
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  document.addEventListener("htmx:configRequest", (evt) => {
    const form = evt.target.closest && evt.target.closest("form.judgment, form[data-idempotent]");
    if (!form || evt.detail.verb !== "post") return;
    const data = evt.detail.formData ? Array.from(evt.detail.formData.entries())
      : Object.entries(evt.detail.parameters || {});  // htmx 2 hands the FormData (with the clicked button)
    const sent = JSON.stringify(data);
    if (form.dataset.keySent !== sent || !form.dataset.idempotencyKey) {
      form.dataset.keySent = sent;
      form.dataset.idempotencyKey = newKey();
    }
    evt.detail.headers["Idempotency-Key"] = form.dataset.idempotencyKey;
  });

  function execution(id, elements) {
    const box = document.getElementById("stages");
    let cy = null;
    const label = (d) => d.duration ? `${d.label}\n${d.status} · ${d.duration}` : `${d.label}\n${d.status}`;
    const paint = (els) => els.map((x) => x.group === "nodes" ? { ...x, data: { ...x.data, text: label(x.data),
      color: STATUS[x.data.status] || "#f6f7f9", border: STATUS_EDGE[x.data.status] || "#8a93a3" } } : x);
    const openStage = (el) => {
      const section = document.getElementById("stage-" + el.id());
      if (!section) return;
      section.scrollIntoView({ behavior: "smooth" });
      const heading = section.querySelector("h2");
      if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
    };
    if (typeof cytoscape !== "undefined" && box) {
      if (typeof cytoscapeDagre !== "undefined") cytoscape.use(cytoscapeDagre);
      const small = narrow(box);
      cy = cytoscape({ container: box, elements: paint(elements), userZoomingEnabled: false, maxZoom: 1.2,
        style: [
          { selector: "node", style: { shape: "round-rectangle", width: 170, height: 46, "background-color": "data(color)",
            "border-width": 2, "border-color": "data(border)", label: "data(text)", "text-wrap": "wrap",
            "text-max-width": 160, "text-valign": "center", "font-size": 12, color: "#111" } },
          { selector: "node:selected", style: { "border-width": 4, "border-color": "#2743b8" } },
          { selector: "edge", style: { width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#8a93a3", "target-arrow-color": "#8a93a3" } },
        ] });
      cy.layout({ name: typeof cytoscapeDagre !== "undefined" ? "dagre" : "breadthfirst", rankDir: small ? "TB" : "LR",
        nodeSep: 20, rankSep: small ? 36 : 50 }).run();
      if (small) { // a phone: lay stages top to bottom and let the box grow, so the labels stay full size
        box.style.height = Math.min(Math.max(cy.elements().boundingBox().h + 40, 200), 2400) + "px";
        cy.resize();
        cy.fit(undefined, 16);
        box.style.touchAction = "pan-y";
        cy.userPanningEnabled(false);
      }
      cy.on("tap", "node", (evt) => openStage(evt.target));
      keyboardWalk(cy, box, () => cy.nodes().toArray(), (el) => `stage ${el.data("label")}, ${el.data("status")}`, openStage,
        (text) => { const out = document.getElementById("stages-selected"); if (out) out.textContent = text; });
      window.graylaneStages = cy;
    }
    let signature = elements.filter((x) => x.group === "nodes").map((x) => x.data.status).join(",");
    async function update() {
      let data;
      try { data = await getJSON(`/ui/executions/${encodeURIComponent(id)}/graph`); } catch (e) { return; }
      const badge = document.getElementById("exe-status");
      if (badge && data.status) { badge.textContent = data.status; badge.className = "badge s-" + data.status; }
      if (data.status) for (const form of document.querySelectorAll("form[data-when]")) form.hidden = !form.dataset.when.split(" ").includes(data.status);
      // What Cancel says stays deployed, as of now (htmx reads hx-confirm when the request is made).
      for (const el of document.querySelectorAll("[data-confirm-of]")) {
        const question = (data.questions || {})[el.dataset.confirmOf];
        if (question) el.setAttribute("hx-confirm", question);
      }
      const els = paint(data.elements);
      if (cy) for (const x of els) if (x.group === "nodes") cy.getElementById(x.data.id).data(x.data);
      const sig = data.elements.filter((x) => x.group === "nodes").map((x) => x.data.status).join(",");
      if (sig !== signature) { signature = sig; document.body.dispatchEvent(new Event("graylane:refresh")); }
    }
    // The page's one stream (live()) carries every execution's events; this one's trigger an update.
    const stream = live();
    if (stream) {
      const mine = (evt) => { try { if (JSON.parse(evt.data).executionId === id) update(); } catch (e) { update(); } };
      stream.onmessage = mine;
      for (const kind of EXECUTION_EVENTS) stream.addEventListener(kind, mine);
    }
    setInterval(update, 3000);
  }

  /* Times arrive as <time datetime="...Z">UTC text</time>; show them in the reader's zone, on first load
     and in every fragment htmx swaps in later (live updates), so no raw epoch number is ever shown. */
  function formatTimes(root) {
    for (const t of (root || document).querySelectorAll("time.ts[datetime]")) {
      const when = new Date(t.getAttribute("datetime"));
      if (!Number.isNaN(when.getTime())) { t.textContent = when.toLocaleString(); t.title = t.getAttribute("datetime"); }
    }
    for (const t of (root || document).querySelectorAll("time.ts-clock[datetime]")) {  // axis ticks: time of day
      const when = new Date(t.getAttribute("datetime"));
      if (!Number.isNaN(when.getTime())) t.textContent = when.toLocaleTimeString();
    }
  }
  document.addEventListener("DOMContentLoaded", () => formatTimes(document));
  document.addEventListener("htmx:load", (evt) => formatTimes(evt.target));

  /* An irreversible choice asks first, listing what it will do; cancelling sends nothing. */
  document.addEventListener("click", (evt) => {
    const button = evt.target.closest && evt.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) { evt.preventDefault(); evt.stopImmediatePropagation(); }
  }, true);

  /* After a submit, focus moves to its result (which says what happened), and comes back to it when a
     live refresh rebuilt the panel around it. */
  let lastResult = null;
  document.addEventListener("htmx:afterSwap", (evt) => {
    const target = evt.detail.target;
    if (!target) return;
    const result = target.matches("[data-result], #apply-result") ? (target.querySelector("[tabindex='-1']") || target) : null;
    if (result && evt.detail.requestConfig && evt.detail.requestConfig.verb === "post") {
      if (!result.hasAttribute("tabindex")) result.tabIndex = -1;
      result.focus();
      lastResult = result.id || target.id;
      return;
    }
    if (lastResult && (document.activeElement === document.body || !document.activeElement)) {
      const again = document.getElementById(lastResult);
      if (again) { if (!again.hasAttribute("tabindex")) again.tabIndex = -1; again.focus({ preventScroll: true }); }
    }
  });

  /* Each signed-in page listens to one SSE stream, /ui/events (execution events and resource changes).
     Events, coalesced over 250 ms, fire graylane:executions or graylane:resources on <body>; htmx
     fragments (the overview, the executions and resources tables, a resource's history, the navigation
     badge) refetch on them. */
  const EXECUTION_EVENTS = ["stage", "context", "execution", "task"];
  function live() {
    // One connection per page: a browser opens at most 6 to a host over HTTP/1.1, and SSE keeps them.
    if (window.graylaneLive || !window.EventSource) return window.graylaneLive || null;
    const es = new EventSource("/ui/events");
    const timers = {};
    const fire = (name) => () => {
      if (timers[name]) return;
      timers[name] = setTimeout(() => { timers[name] = null; document.body.dispatchEvent(new Event(name)); }, 250);
    };
    for (const kind of EXECUTION_EVENTS) es.addEventListener(kind, fire("graylane:executions"));
    es.addEventListener("resource", fire("graylane:resources"));
    es.addEventListener("error", () => {});
    window.graylaneLive = es;
    return es;
  }

  window.Graylane = { topology, execution, live, formatTimes, getJSON, esc, csrf, STATUS, sparkline, fmtMs };
})();
