// The runs page: every run under the runs folder, sortable, grouped; curves and confusion matrices of a selection.
// At a lab's scale (sweep studies and cross-validations, hundreds of runs) the groups (a run's study or CV
// folder, else its W&B group) start folded to one summary row each, and the ungrouped list is paged.
"use strict";

const COLUMNS = [
  ["run_id", "run", (r) => r.run_id],
  ["group", "group", (r) => r.group || ""],
  ["model", "model", (r) => r.config.model || ""],
  ["lr", "lr", (r) => r.config.lr],
  ["batch", "batch", (r) => r.config.batch],
  ["band", "band (Hz)", (r) => (r.config.band ? r.config.band.join("-") : "")],
  ["window", "window (s)", (r) => (r.config.tmin !== null && r.config.tmin !== undefined ? `${r.config.tmin}-${r.config.tmax}` : "")],
  ["val", "val bal. acc.", (r) => r.val.balanced_accuracy],
  ["test", "test bal. acc.", (r) => r.test.balanced_accuracy],
  ["date", "date", (r) => r.date || ""],
  ["status", "status", (r) => r.status],
];
const PALETTE = ["#2f6fdf", "#d9822b", "#1f9d55", "#c92a2a", "#7b61ff", "#00a3a3", "#a05a2c", "#e64980"];
const R = {runs: [], studies: {}, sort: "date", asc: false, selected: new Set(), open: new Set(), page: 0};
const FOLD_ABOVE = 60;  // more runs than this: groups start folded
const PAGE_SIZE = 100;  // ungrouped: rows per page

function groupOf(r) { return r.folder || r.group || ""; }

function cell(v) {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v === null || v === undefined ? "–" : String(v);
}

function render() {
  const table = document.getElementById("runs-table");
  const key = COLUMNS.find((c) => c[0] === R.sort)[2];
  const rows = [...R.runs].sort((a, b) => {
    const x = key(a), y = key(b);
    const cmp = x === y ? 0 : x === undefined || x === null ? 1 : y === undefined || y === null ? -1 : x < y ? -1 : 1;
    return R.asc ? cmp : -cmp;
  });
  const head = el("tr", {}, el("th", {text: ""}));
  for (const [id, label] of COLUMNS) {
    const th = el("th", {text: label, "data-column": id});
    if (id === R.sort) th.className = "sorted" + (R.asc ? " asc" : "");
    th.addEventListener("click", () => { R.asc = R.sort === id ? !R.asc : false; R.sort = id; render(); });
    head.append(th);
  }
  head.append(el("th", {text: "files"}));
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  const grouped = document.getElementById("group-toggle").checked;
  const byGroup = new Map();
  if (grouped) for (const r of rows) { const g = groupOf(r); byGroup.has(g) ? byGroup.get(g).push(r) : byGroup.set(g, [r]); }
  const groups = grouped ? [...byGroup.keys()].sort() : [null];
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  R.page = Math.min(R.page, pages - 1);
  for (const g of groups) {
    let members = g === null ? rows.slice(R.page * PAGE_SIZE, (R.page + 1) * PAGE_SIZE) : byGroup.get(g);
    if (g) {
      const scores = members.map((r) => r.test.balanced_accuracy).filter((x) => typeof x === "number");
      const avg = scores.length ? (scores.reduce((a, b) => a + b, 0) / scores.length).toFixed(3) : "–";
      const best = scores.length ? Math.max(...scores).toFixed(3) : "–";
      const failed = members.filter((r) => r.status !== "finished").length;
      const open = R.open.has(g);
      const td = el("td", {colspan: COLUMNS.length + 2, text: `${open ? "▾" : "▸"} group ${g}: ${members.length} runs ` +
        `(CV folds or sweep trials)${failed ? `, ${failed} not finished` : ""}, test balanced accuracy mean ${avg}, best ${best}`});
      const study = R.studies[g];
      if (study) td.append(" · ", studyLink(g, study));
      const tr = el("tr", {class: "group", "data-group": g, title: open ? "fold this group" : "show this group's runs"}, td);
      tr.style.cursor = "pointer";
      tr.addEventListener("click", () => { R.open.has(g) ? R.open.delete(g) : R.open.add(g); render(); });
      body.append(tr);
      if (!open) continue;
    }
    for (const r of members) {
      const box = el("input", {type: "checkbox"});
      box.checked = R.selected.has(r.id);
      box.addEventListener("change", () => { box.checked ? R.selected.add(r.id) : R.selected.delete(r.id); drawSelection(); });
      const tr = el("tr", {"data-run": r.id, class: r.status}, el("td", {}, box));
      for (const [, , get] of COLUMNS) tr.append(el("td", {text: cell(get(r))}));
      const files = el("td");
      for (const f of r.files) files.append(el("a", {href: `/runs/files/${r.id}/${f}`, text: f.split("/").pop()}), " ");
      tr.append(files);
      if (r.warnings.length) tr.title = r.warnings.join("\n");
      if (r.error) tr.title = r.error;
      body.append(tr);
    }
  }
  document.getElementById("count").textContent = `(${R.runs.length})`;
  const pager = document.getElementById("pager");
  pager.hidden = grouped || pages < 2;
  document.getElementById("page-label").textContent = `page ${R.page + 1} of ${pages}`;
}

// a sweep study's group row: its report (Optuna's plots) in a new tab, or the command that makes one
function studyLink(folder, study) {
  if (!study.report) {
    const cmd = `bmi compare --study-report ${study.path}`;
    return el("span", {class: "meta", "data-testid": "study-report-missing", "data-command": cmd, title: `make it: ${cmd}`,
                       style: "font-weight:normal;text-decoration:underline dotted;cursor:help", text: "no study report"});
  }
  const href = "/runs/report/" + folder.split("/").map(encodeURIComponent).join("/");
  const a = el("a", {href, target: "_blank", rel: "noopener", "data-testid": "study-report", text: "study report"});
  a.addEventListener("click", (e) => e.stopPropagation());  // open the report, not fold the group
  return a;
}

function foldAll(open) {
  R.open = new Set(open ? R.runs.map(groupOf).filter(Boolean) : []);
  render();
}

async function drawSelection() {
  const svg = document.getElementById("curves"), metric = document.getElementById("metric").value;
  svg.replaceChildren();
  const legend = document.getElementById("curve-legend");
  legend.replaceChildren();
  const chosen = R.runs.filter((r) => R.selected.has(r.id) && r.has_curves);
  const series = await Promise.all(chosen.map((r) => getJSON(`/api/runs/${r.id}/curves`)));
  const all = series.flatMap((s) => (s.columns[metric] || []).filter((v) => v !== null));
  const maxEpoch = Math.max(1, ...series.map((s) => (s.columns[metric] || []).length - 1));
  const lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 1;
  const x = (i) => 40 + (470 * i) / maxEpoch, y = (v) => 250 - (230 * (v - lo)) / (hi - lo || 1);
  svg.append(el("svg:line", {x1: 40, y1: 250, x2: 510, y2: 250, stroke: "#999"}), el("svg:line", {x1: 40, y1: 20, x2: 40, y2: 250, stroke: "#999"}),
             el("svg:text", {x: 2, y: 24, "font-size": 10, text: hi.toFixed(2)}), el("svg:text", {x: 2, y: 250, "font-size": 10, text: lo.toFixed(2)}),
             el("svg:text", {x: 480, y: 270, "font-size": 10, text: "epoch"}));
  series.forEach((s, k) => {
    const values = s.columns[metric] || [];
    const points = values.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean).join(" ");
    const color = PALETTE[k % PALETTE.length];
    svg.append(el("svg:polyline", {points, fill: "none", stroke: color, "stroke-width": 1.8, "data-run": s.run}));
    values.forEach((v, i) => { if (v !== null) svg.append(el("svg:circle", {cx: x(i), cy: y(v), r: 2.2, fill: color})); });
    legend.append(el("span", {style: `color:${color};margin-right:1rem`, text: "● " + s.run}));
  });
  const confusion = document.getElementById("confusion");
  confusion.replaceChildren();
  for (const r of R.runs.filter((r) => R.selected.has(r.id) && r.confusion)) {
    const t = el("table", {"data-run": r.id, style: "width:auto"});
    t.append(el("caption", {text: r.run_id, style: "font-size:0.8rem;text-align:left"}));
    t.append(el("tr", {}, el("th", {text: ""}), ...r.classes.map((c) => el("th", {text: c}))));
    const max = Math.max(1, ...r.confusion.flat());
    r.confusion.forEach((row, i) => t.append(el("tr", {}, el("th", {text: r.classes[i]}),
      ...row.map((n) => el("td", {text: n, style: `background:rgba(47,111,223,${(0.8 * n) / max})`})))));
    confusion.append(t);
  }
}

async function load() {
  const data = await getJSON("/api/runs");
  R.runs = data.runs;
  R.studies = data.studies || {};
  // a few runs: every group open; a lab's hundreds: folded to one row per study or CV (click to open)
  if (R.runs.length <= FOLD_ABOVE) R.open = new Set(R.runs.map(groupOf).filter(Boolean));
  document.getElementById("root").textContent = data.root ? "runs folder: " + data.root : "no runs folder (--runs)";
  const recent = [...R.runs].filter((r) => r.status === "finished").slice(-2);
  recent.forEach((r) => R.selected.add(r.id));
  render();
  drawSelection();
}

document.getElementById("metric").addEventListener("change", drawSelection);
document.getElementById("group-toggle").addEventListener("change", () => { R.page = 0; render(); });
document.getElementById("open-all").addEventListener("click", () => foldAll(true));
document.getElementById("fold-all").addEventListener("click", () => foldAll(false));
document.getElementById("page-prev").addEventListener("click", () => { R.page = Math.max(0, R.page - 1); render(); });
document.getElementById("page-next").addEventListener("click", () => { R.page += 1; render(); });
load();
