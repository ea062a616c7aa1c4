"use strict";
// medbench results explorer. No framework and no network: it must open from a file:// URL, where
// Chromium refuses fetch(), so every data file is a script that calls MEDBENCH.register(name, data).

const store = {};
const pending = {};
window.MEDBENCH = { register: (name, data) => { store[name] = data; } };

function load(name) {
  if (!pending[name]) {
    pending[name] = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = `data/${name}.js`;
      script.onload = () => (name in store ? resolve(store[name]) : reject(new Error(`data/${name}.js registered nothing`)));
      script.onerror = () => reject(new Error(`could not load data/${name}.js`));
      document.head.append(script);
    });
  }
  return pending[name];
}

const $ = (selector) => document.querySelector(selector);
const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  // Text goes in as text nodes, never as HTML: question texts and model outputs are data, not markup.
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return node;
}
const el = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

function fillTable(table, header, rows) {
  table.replaceChildren(el("thead", {}, el("tr", {}, header.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((row) => (row instanceof Node ? row : el("tr", {}, row.map((c) => (c instanceof Node ? c : el("td", {}, c))))))));
}

function options(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => el("option", { value, selected: value === selected }, label)));
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1));
const config = (run) => `${run.variant} ${run.prompt}/${run.mode}`;
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];

let S; // data/summary.js
let runsById;

// ---- tabs ----------------------------------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== name;
  history.replaceState(null, "", `#${name}`);
  if (name === "questions" && !browser.a) openRun();
}

// ---- accuracy table and chart --------------------------------------------------------------------

function accuracyTable() {
  const cells = new Map(S.accuracy.map((r) => [`${r.run_id}|${r.dataset}|${r.exam}`, r]));
  const rows = S.runs.map((run) => el("tr", { "data-run": run.id },
    el("td", {}, el("code", {}, run.id)), el("td", {}, run.model), el("td", { class: "num" }, run.params_b ?? "–"),
    el("td", {}, run.variant), el("td", {}, `${run.prompt}/${run.mode}`), el("td", {}, run.subset),
    S.columns.map((c) => {
      const r = cells.get(`${run.id}|${c.dataset}|${c.exam}`);
      if (!r) return el("td", { class: "num", "data-column": c.key }, "–");
      return el("td", { class: "num", "data-column": c.key, title: `n = ${r.n} · 95% CI ${r.ci}% · invalid ${pct(r.invalid_rate)}%` },
        r.pct, el("span", { class: "ci" }, r.ci));
    }),
    el("td", {}, run.gpu ? run.gpu.replace("NVIDIA ", "") : "CPU")));
  fillTable($("#accuracy-table"), ["run", "model", "params (B)", "variant", "prompt/mode", "questions",
    ...S.columns.map((c) => c.short), "device"], rows);
}

function chartControls() {
  // The exam average when some run has one (it needs all four exams), else the first task with data.
  const filled = S.columns.filter((c) => S.accuracy.some((r) => r.dataset === c.dataset && r.exam === c.exam));
  const start = filled.find((c) => c.key === "average") || filled[0] || S.columns[0];
  options($("#chart-task"), S.columns.map((c) => [c.key, c.label]), start.key);
  const variants = [...new Set(S.runs.map((r) => r.variant))].sort();
  $("#chart-variants").replaceChildren(...variants.map((v, i) => el("label", {},
    el("input", { type: "checkbox", value: v, checked: true, onchange: applyVariantToggles }),
    el("span", { class: "swatch", style: `background: ${COLOURS[i % COLOURS.length]}` }), v)));
  $("#chart-task").addEventListener("change", drawChart);
  $("#chart-paper").addEventListener("change", drawChart);
}

function applyVariantToggles() {
  for (const box of document.querySelectorAll("#chart-variants input")) {
    for (const g of document.querySelectorAll(`#chart g.series[data-variant="${CSS.escape(box.value)}"]`)) g.style.display = box.checked ? "" : "none";
  }
}

function drawChart() {
  const column = S.columns.find((c) => c.key === $("#chart-task").value);
  const variants = [...new Set(S.runs.map((r) => r.variant))].sort();
  const order = S.runs.map((r) => r.id);
  const ours = S.accuracy.filter((r) => r.dataset === column.dataset && r.exam === column.exam && r.params_b && r.accuracy !== null)
    .sort((a, b) => order.indexOf(a.run_id) - order.indexOf(b.run_id));
  const paper = $("#chart-paper").checked ? S.paper.filter((p) => p.accuracy[column.key] !== null) : [];
  const W = 900, H = 400, M = { left: 48, right: 16, top: 12, bottom: 40 };
  const sizes = [...ours.map((r) => r.params_b), ...paper.map((p) => p.params_b)];
  const lo = Math.log10(Math.min(...sizes, 1)) - 0.4, hi = Math.log10(Math.max(...sizes, 1)) + 0.25;
  const top = paper.length ? 100 : Math.min(100, 10 * Math.ceil(Math.max(column.chance, ...ours.map((r) => 100 * r.ci95_high)) / 10) + 10);
  const x = (b) => M.left + ((Math.log10(b) - lo) / (hi - lo)) * (W - M.left - M.right);
  const y = (p) => H - M.bottom - (p / top) * (H - M.top - M.bottom);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `accuracy vs parameters, ${column.label}` });
  for (let p = 0; p <= top; p += top > 50 ? 20 : 10) {
    root.append(svg("line", { x1: M.left, x2: W - M.right, y1: y(p), y2: y(p), class: "grid" }), svg("text", { x: M.left - 6, y: y(p) + 4, class: "tick", "text-anchor": "end" }, p));
  }
  for (let d = Math.ceil(lo); d <= hi; d++) root.append(svg("text", { x: x(10 ** d), y: H - M.bottom + 16, class: "tick", "text-anchor": "middle" }, `${10 ** d >= 1 ? 10 ** d : (10 ** d).toFixed(-d)}B`));
  root.append(svg("text", { x: (W + M.left) / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, "parameters (log scale)"),
    svg("text", { x: 12, y: (H - M.bottom) / 2, class: "axis", transform: `rotate(-90 12 ${(H - M.bottom) / 2})`, "text-anchor": "middle" }, "accuracy %"),
    svg("line", { x1: M.left, x2: W - M.right, y1: y(column.chance), y2: y(column.chance), class: "chance" }));
  for (const p of paper) {
    root.append(svg("circle", { cx: x(p.params_b), cy: y(p.accuracy[column.key]), r: 3.5, class: "paper" },
      svg("title", {}, `${p.model} (paper): ${p.accuracy[column.key].toFixed(1)}% · ${p.params_b}B${p.estimate ? " (size estimated)" : ""}`)));
  }
  // Runs of one size would sit on top of each other: spread them a few pixels apart, in table order.
  const bySize = new Map();
  for (const r of ours) bySize.set(r.params_b, [...(bySize.get(r.params_b) || []), r]);
  for (const group of bySize.values()) {
    group.forEach((r, i) => {
      const cx = x(r.params_b) + (i - (group.length - 1) / 2) * 9, colour = COLOURS[variants.indexOf(r.variant) % COLOURS.length];
      const tip = [r.run_id, `${r.pct}% (95% CI ${r.ci})`, `n = ${r.n}`, `${r.variant} · ${r.prompt}/${r.mode}`];
      root.append(svg("g", { class: "series", "data-variant": r.variant, "data-run": r.run_id,
        onmousemove: (e) => showTip(e, tip), onmouseleave: hideTip },
        svg("line", { x1: cx, x2: cx, y1: y(100 * r.ci95_low), y2: y(100 * r.ci95_high), stroke: colour, class: "ci-bar" }),
        svg("circle", { cx, cy: y(100 * r.accuracy), r: 4.5, stroke: colour, fill: r.mode === "mc" ? colour : "white", class: "point" }),
        svg("title", {}, tip.join("\n"))));
    });
  }
  $("#chart").replaceChildren(root);
  applyVariantToggles();
}

function showTip(event, lines) {
  const tip = $("#tooltip");
  tip.replaceChildren(...lines.map((line, i) => el(i ? "div" : "b", {}, line)));
  tip.hidden = false;
  tip.style.left = `${event.pageX + 14}px`;
  tip.style.top = `${event.pageY + 10}px`;
}
const hideTip = () => { $("#tooltip").hidden = true; };

// ---- comparisons, letters, contamination ---------------------------------------------------------

function comparisonTable() {
  const family = $("#comparison-family").value;
  const shown = S.comparisons.filter((r) => !family || r.family === family);
  $("#comparison-count").textContent = `${shown.length} comparison(s)`;
  fillTable($("#comparison-table"), ["family (m)", "dataset", "baseline", "member", "metric", "n paired", "baseline %", "member %",
    "b − a (95% CI)", "MDD80", "TOST p", "p", "Holm p"],
    shown.map((r) => el("tr", {}, el("td", {}, `${r.family} (${r.family_size})`), el("td", {}, r.dataset),
      el("td", {}, `${r.model_a} ${r.variant_a}`, el("div", { class: "muted" }, r.runs_a)),
      el("td", {}, `${r.model_b} ${r.variant_b}`, el("div", { class: "muted" }, r.runs_b)),
      el("td", {}, r.metric), el("td", { class: "num" }, r.n_paired), el("td", { class: "num" }, r.pct_a), el("td", { class: "num" }, r.pct_b),
      el("td", { class: `num ${r.holm_p < 0.05 ? (r.difference > 0 ? "up" : "down") : ""}` }, r.diff),
      el("td", { class: "num" }, r.mdd), el("td", { class: "num" }, r.tost),
      el("td", { class: "num" }, `${r.p} (${r.test})`), el("td", { class: "num" }, r.holm))));
}

function letterBar(counts, letters, n) {
  return el("div", { class: "bar" }, letters.map((l, i) => el("span", {
    style: `width: ${(100 * counts[l]) / Math.max(n, 1)}%; background: ${COLOURS[i]}`,
    title: `${l}: ${counts[l]} (${pct(counts[l] / Math.max(n, 1))}%)` }, counts[l] / Math.max(n, 1) > 0.07 ? l : "")));
}

function letterTable() {
  fillTable($("#letter-table"), ["run", "task", "n", "gold letters", "answered letters", "invalid", "ties", "accuracy %",
    "majority baseline %", "prior-matched %", ""],
  S.letters.map((r) => el("tr", { "data-run": r.run_id },
    el("td", {}, el("code", {}, r.run_id)), el("td", {}, r.task), el("td", { class: "num" }, r.n),
    el("td", {}, letterBar(r.gold, r.letters, r.n)), el("td", {}, letterBar(r.predicted, r.letters, r.n)),
    el("td", { class: "num" }, r.invalid), el("td", { class: "num" }, r.ties), el("td", { class: "num" }, r.pct),
    el("td", { class: "num" }, r.majority_pct), el("td", { class: "num" }, r.prior_pct),
    el("td", { class: "warn" }, r.dominant ? `⚠ ${r.dominant} takes ${pct(r.predicted[r.dominant] / (r.n - r.invalid))}%` : ""))));
}

function contaminationTable() {
  const num = (x) => el("td", { class: "num" }, x);
  fillTable($("#contamination-table"), ["test", "source", "test questions", "exact stem", "exact stem + options",
    "near-duplicate", "option pool", "matched", "share", "same answer", "stem under 13 words"],
    S.contamination.map((r) => [r.test, r.source, num(r.test_rows), num(r.exact_stem), num(r.exact_stem_options),
      num(r.near_duplicate), num(r.option_pool), num(r.matched), num(`${pct(r.matched / r.test_rows)}%`),
      num(r.same_answer), num(r.under_13_words)]));
}

// ---- question browser ----------------------------------------------------------------------------

const browser = { a: null, b: null, questions: {} };
const LIST_LIMIT = 400;

async function runData(run) {
  const [data, ...sets] = await Promise.all([load(run.file), ...run.question_files.map(load)]);
  for (const set of sets) for (const [id, q] of Object.entries(set.questions)) browser.questions[id] = Object.fromEntries(set.columns.map((c, i) => [c, q[i]]));
  const rows = data.rows.map((row) => Object.fromEntries(data.columns.map((c, i) => [c, row[i]])));
  return { run, rows, byId: new Map(rows.map((r) => [r.id, r])) };
}

async function openRun() {
  const run = runsById.get($("#q-run").value), other = runsById.get($("#q-other").value);
  if (!run) {
    $("#q-count").textContent = "No runs in results/runs/ yet.";
    return;
  }
  $("#q-count").textContent = "Loading …";
  try {
    [browser.a, browser.b] = await Promise.all([runData(run), other ? runData(other) : null]);
  } catch (error) {
    $("#q-count").textContent = String(error.message);
    return;
  }
  const exams = [...new Set(browser.a.rows.map((r) => browser.questions[r.id].exam))];
  options($("#q-exam"), [["", "all"], ...exams.map((e) => [e, e])], exams.includes($("#q-exam").value) ? $("#q-exam").value : "");
  $("#q-disagree").disabled = !browser.b;
  if (!browser.b) $("#q-disagree").checked = false;
  listQuestions();
}

function outcome(r) {
  return r.invalid ? "invalid" : r.correct ? "right" : "wrong";
}

function listQuestions() {
  const { a, b, questions } = browser;
  const exam = $("#q-exam").value, wanted = $("#q-outcome").value, disagree = $("#q-disagree").checked;
  const shown = a.rows.filter((r) => {
    const other = b && b.byId.get(r.id);
    return (!exam || questions[r.id].exam === exam) && (!wanted || outcome(r) === wanted) && (!b || other) &&
      (!disagree || other.predicted !== r.predicted);
  });
  const count = $("#q-count");
  count.dataset.count = shown.length;
  count.textContent = `${shown.length} question(s)${b ? " answered by both runs" : ""}${shown.length > LIST_LIMIT ? `, the first ${LIST_LIMIT} listed` : ""}. ` +
    `A: ${a.run.id}${b ? `; B: ${b.run.id}` : ""}. —: no answer extracted; *: tie between the best two letters.`;
  const answer = (r) => el("td", { class: outcome(r) }, r.invalid ? "—" : r.predicted, r.tie ? "*" : "");
  fillTable($("#q-table"), ["question", "exam", "gold", "A", ...(b ? ["B"] : []), "text"],
    shown.slice(0, LIST_LIMIT).map((r) => {
      const q = questions[r.id];
      return el("tr", { "data-id": r.id, onclick: () => showQuestion(r.id) }, el("td", {}, el("code", {}, r.id)), el("td", {}, q.exam),
        el("td", {}, q.gold), answer(r), b ? answer(b.byId.get(r.id)) : null, el("td", { class: "snippet" }, q.question.slice(0, 90)));
    }));
}

function runPanel(side, r, label) {
  const head = el("h4", {}, `${label}: `, side.run.id, el("span", { class: "muted" }, ` ${config(side.run)}`));
  const verdict = el("p", { class: `verdict ${outcome(r)}` }, r.invalid ? "invalid: no answer could be extracted" : `answer ${r.predicted}: ${outcome(r)}`,
    r.tie ? " (tie: the best two letters scored the same; the first was taken)" : "");
  if (!("scores" in r)) return el("div", { class: "panel" }, head, verdict, el("h5", {}, "generated text"), el("pre", { class: "output" }, r.output || "(empty)"));
  const top = Math.max(...r.scores), probs = r.scores.map((s) => Math.exp(s - top)), total = probs.reduce((x, y) => x + y, 0);
  return el("div", { class: "panel" }, head, verdict, el("table", { class: "scores" },
    el("tr", {}, el("th", {}, "letter"), el("th", {}, "log-likelihood"), el("th", {}, "share of options")),
    r.scores.map((s, i) => el("tr", { class: "ABCDE"[i] === r.predicted ? "picked" : "" }, el("td", {}, "ABCDE"[i]), el("td", { class: "num" }, s.toFixed(4)),
      el("td", {}, el("div", { class: "prob", style: `width: ${(120 * probs[i]) / total}px` }), ` ${pct(probs[i] / total)}%`)))));
}

function showQuestion(id) {
  const q = browser.questions[id], sides = [browser.a, browser.b].filter(Boolean);
  for (const tr of document.querySelectorAll("#q-table tr.selected")) tr.classList.remove("selected");
  document.querySelector(`#q-table tr[data-id="${CSS.escape(id)}"]`)?.classList.add("selected");
  $("#q-detail").replaceChildren(
    el("h3", {}, id, el("span", { class: "muted" }, ` ${q.exam}${q.year ? ` ${q.year}` : ""}${q.subject ? ` · ${q.subject}` : ""}`)),
    el("p", { class: "question" }, q.question),
    el("ol", { class: "options" }, q.options.map((text, i) => {
      const letter = "ABCDE"[i], marks = sides.filter((s) => s.byId.get(id).predicted === letter).map((s) => s === browser.a ? "A" : "B");
      return el("li", { class: letter === q.gold ? "gold" : "" }, el("b", {}, `${letter}. `), text,
        letter === q.gold ? el("span", { class: "tag gold" }, "gold") : null, marks.map((m) => el("span", { class: "tag" }, `run ${m}`)));
    })),
    el("div", { class: "sides" }, sides.map((s, i) => runPanel(s, s.byId.get(id), "AB"[i]))));
}

function browserControls() {
  const items = S.runs.map((r) => [r.id, `${r.id} (${r.n})`]);
  options($("#q-run"), items, S.runs[0]?.id);
  options($("#q-other"), [["", "— none —"], ...items], "");
  for (const id of ["#q-run", "#q-other"]) $(id).addEventListener("change", openRun);
  for (const id of ["#q-exam", "#q-outcome", "#q-disagree"]) $(id).addEventListener("change", listQuestions);
}

// ---- start ---------------------------------------------------------------------------------------

async function start() {
  S = await load("summary");
  runsById = new Map(S.runs.map((r) => [r.id, r]));
  accuracyTable();
  chartControls();
  drawChart();
  options($("#comparison-family"), [["", "all"], ...[...new Set(S.comparisons.map((r) => r.family))].map((t) => [t, t])], "");
  $("#comparison-family").addEventListener("change", comparisonTable);
  comparisonTable();
  letterTable();
  contaminationTable();
  browserControls();
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  const tab = location.hash.slice(1);
  showTab(document.getElementById(tab)?.tagName === "SECTION" ? tab : "accuracy");
  $("#status").hidden = true;
}

start().catch((error) => {
  $("#status").textContent = `The explorer failed: ${error.message}. Run \`just report\` to write the site again.`;
  throw error;
});
