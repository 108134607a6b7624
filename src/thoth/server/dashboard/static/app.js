/* Thoth dashboard behaviour: charts, the policy editor, keeping typed reasons across live
   updates. No data is ever inserted as HTML: text goes through textContent. */
(function () {
  "use strict";

  var COLORS = { ALLOW: "#2f9e44", BLOCK: "#e03131", STEP_UP: "#e8890c", MODIFY: "#1c7ed6", DEFER: "#7048e8" };
  var STACK = ["BLOCK", "STEP_UP", "DEFER", "MODIFY", "ALLOW"]; // bottom to top

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function width(el) { return Math.max(300, el.clientWidth || el.parentNode.clientWidth - 40); }

  function decisionsChart(el) {
    var data = readJSON(el.dataset.source);
    if (!data || !window.uPlot) return;
    var names = STACK.filter(function (d) { return data.series[d]; });
    var n = data.xs.length, cum = [], raw = [], run = new Array(n).fill(0);
    names.forEach(function (d) {
      run = run.map(function (v, i) { return v + (data.series[d][i] || 0); });
      cum.push(run.slice()); raw.push(data.series[d]);
    });
    // Draw the tallest (cumulative) series first so each smaller one sits on top of it.
    var order = names.map(function (_, i) { return i; }).reverse();
    var bars = uPlot.paths.bars({ size: [0.8, 40] });
    var series = [{}].concat(order.map(function (i) {
      var d = names[i];
      return { label: d, stroke: COLORS[d], fill: COLORS[d] + "cc", width: 0, paths: bars, points: { show: false },
               value: function (u, v, si, idx) { return idx == null ? "" : raw[i][idx]; } };
    }));
    var opts = { width: width(el), height: 240, series: series, legend: { live: true },
                 cursor: { points: { show: false } }, scales: { x: { time: true } },
                 axes: [{ stroke: "#6b7785", grid: { show: false } }, { stroke: "#6b7785", grid: { stroke: "#eef0f3" }, size: 50 }] };
    var plot = new uPlot(opts, [data.xs].concat(order.map(function (i) { return cum[i]; })), el);
    window.addEventListener("resize", function () { plot.setSize({ width: width(el), height: 240 }); });
  }

  function agentChart(el) {
    var data = readJSON(el.dataset.source);
    if (!data || !window.uPlot) return;
    var names = Object.keys(data.agents);
    var a = data.agents[names[Number(el.dataset.agentIndex)]];
    if (!a) return;
    var fmt = function (u, v) { return v == null ? "—" : v.toFixed(2); };
    var opts = { width: width(el), height: 180, legend: { live: true }, scales: { x: { time: true }, y: { range: [0, 1] } },
      series: [{},
        { label: "mean anomaly", stroke: "#3b5bdb", width: 1.5, value: fmt, points: { show: true, size: 4 } },
        { label: "peak anomaly", stroke: "#e03131", width: 1, dash: [4, 3], value: fmt, points: { show: true, size: 4 } },
        { label: "drift", stroke: "#e8890c", width: 1.5, value: fmt, points: { show: true, size: 4 } }],
      axes: [{ stroke: "#6b7785", grid: { show: false } }, { stroke: "#6b7785", grid: { stroke: "#eef0f3" }, size: 40 }] };
    var plot = new uPlot(opts, [data.xs, a.mean_risk, a.max_risk, a.drift], el);
    window.addEventListener("resize", function () { plot.setSize({ width: width(el), height: 180 }); });
  }

  /* ---- YAML / JSON highlighting, built as DOM nodes ---------------------------------- */
  var TOKEN = /(#.*$)|("(?:[^"\\]|\\.)*"?|'(?:[^']|'')*'?)|(^\s*-?\s*[^\s:#'"][^:#]*?:(?=\s|$))|(\b(?:true|false|null|yes|no|on|off)\b)|(-?\b\d+(?:\.\d+)?\b)|([\[\]{},:|>-])/g;
  var KINDS = ["c", "s", "k", "b", "n", "p"];

  function highlightLine(line, into) {
    var last = 0, m;
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(line)) !== null) {
      if (m[0] === "") { TOKEN.lastIndex++; continue; }
      if (m.index > last) into.appendChild(document.createTextNode(line.slice(last, m.index)));
      var span = document.createElement("span");
      for (var g = 1; g <= KINDS.length; g++) if (m[g] !== undefined) { span.className = KINDS[g - 1]; break; }
      span.textContent = m[0];
      into.appendChild(span);
      last = m.index + m[0].length;
    }
    if (last < line.length) into.appendChild(document.createTextNode(line.slice(last)));
  }

  function highlight(text, code, errorLines) {
    code.textContent = "";
    text.split("\n").forEach(function (line, i) {
      var row = document.createElement("span");
      if (errorLines && errorLines.has(i + 1)) row.className = "err";
      highlightLine(line, row);
      code.appendChild(row);
      code.appendChild(document.createTextNode("\n"));
    });
  }

  function setupEditor(box) {
    var area = box.querySelector("textarea"), pre = box.querySelector("pre.hl"), code = pre.querySelector("code");
    var errors = new Set();
    function paint() { highlight(area.value + (area.value.endsWith("\n") ? " " : ""), code, errors); }
    area.addEventListener("input", paint);
    area.addEventListener("scroll", function () { pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; });
    area.addEventListener("keydown", function (e) {
      if (e.key === "Tab" && !e.shiftKey && !area.readOnly) {
        e.preventDefault();
        var s = area.selectionStart;
        area.setRangeText("  ", s, area.selectionEnd, "end");
        area.dispatchEvent(new Event("input", { bubbles: true }));
      }
    });
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.target.id !== "policy-errors") return;
      var list = e.target.querySelector("[data-error-lines]");
      errors = new Set(list ? list.dataset.errorLines.split(",").filter(Boolean).map(Number) : []);
      paint();
    });
    paint();
  }

  /* ---- approvals: keep what a reviewer typed when the queue refreshes ---------------- */
  var typed = {};
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (!e.detail.target || e.detail.target.id !== "approvals-live") return;
    typed = {};
    e.detail.target.querySelectorAll("[data-approval]").forEach(function (card) {
      var input = card.querySelector("input[name=reason]");
      if (input && input.value) typed[card.dataset.approval] = { value: input.value, focus: document.activeElement === input };
    });
  });
  document.addEventListener("htmx:afterSettle", function () {
    Object.keys(typed).forEach(function (id) {
      var card = document.querySelector('[data-approval="' + CSS.escape(id) + '"]');
      var input = card && card.querySelector("input[name=reason]");
      if (input && !input.value) { input.value = typed[id].value; if (typed[id].focus) input.focus(); }
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll('[data-chart="decisions"]').forEach(decisionsChart);
    document.querySelectorAll('[data-chart="agent"]').forEach(agentChart);
    document.querySelectorAll("[data-editor]").forEach(setupEditor);
    document.querySelectorAll("pre[data-highlight] code").forEach(function (code) { highlight(code.textContent, code, null); });
  });
})();
