// The live page: what the server decides, its safety state and health, and the operator's controls.
"use strict";

const S = {hello: null, classes: [], actions: {}, levelPair: null, latencies: [], aperture: 0.5, action: "hold",
           level: 0, lastFrame: performance.now(), estop: false, logActive: false, gone: false, safe: true,
           paradigm: false};
const $ = (id) => document.getElementById(id);

function setState(status) {
  const node = $("state");
  if (S.gone) { node.className = "state gone"; node.textContent = "SERVER STOPPED"; return; }
  if (S.estop) { node.className = "state stop"; node.textContent = "EMERGENCY STOP"; }
  else if (status.safe) { node.className = "state safe"; node.textContent = "SAFE · " + status.reason; }
  else { node.className = "state ok"; node.textContent = "DECODING"; }
  node.dataset.safe = String(status.safe || S.estop);
  node.dataset.reason = S.estop ? "emergency_stop" : status.reason || "";
}

function onHello(hello) {
  if (!hello) return;
  S.hello = hello;
  S.classes = hello.model.classes;
  S.actions = hello.model.actions;
  const grasp = S.classes.filter((c) => S.actions[c] === "grasp"), open = S.classes.filter((c) => S.actions[c] === "open");
  S.levelPair = grasp.length === 1 && open.length === 1 ? [grasp[0], open[0]] : null;
  const label = (cls, action) => (cls === action ? action : `${cls} (${action})`);
  $("level-grasp").textContent = S.levelPair ? label(S.levelPair[0], "grasp") : "grasp";
  $("level-open").textContent = S.levelPair ? label(S.levelPair[1], "open") : "open";
  $("model").textContent = `${hello.model.name} · run ${hello.model.run_id || "–"} · ${S.classes.join(" / ")} · hop ${hello.hop_ms} ms · max age ${hello.max_age_ms} ms`;
  const bars = $("probabilities");
  bars.replaceChildren();
  for (const c of S.classes) {
    bars.append(el("div", {class: "row", "data-class": c}, el("span", {text: c}),
                   el("div", {class: "track"}, el("div", {class: "fill"})), el("span", {class: "p", text: "–"})));
  }
  drawSensors(null);
  showGate(hello.gate);
}

function showGate(gate) {
  $("gate-panel").hidden = !gate;
  if (!gate) return;
  const opens = gate.threshold + gate.hysteresis;
  $("gate-close").style.left = (100 * gate.threshold) + "%";
  $("gate-open").style.left = (100 * opens) + "%";
  $("gate").dataset.threshold = String(gate.threshold);
  $("gate").dataset.opensAt = String(opens);
  $("gate-source").textContent = gate.source === "rest_class" ? `(1 − P(${gate.rest_class}))` : "(the model's gate)";
  $("gate-rule").textContent = `rest while below ${gate.threshold.toFixed(2)}; opens at ${opens.toFixed(2)} ` +
    `held ${Math.round(gate.dwell_s * 1000)} ms`;
}

function setGate(value) {
  if (value === null || value === undefined || $("gate-panel").hidden) return;
  $("gate-fill").style.width = (100 * value).toFixed(1) + "%";
  $("gate").dataset.value = value.toFixed(3);
  const opens = Number($("gate").dataset.opensAt), closes = Number($("gate").dataset.threshold);
  $("gate-fill").classList.toggle("above", value >= opens);  // green: at or above the opening level
  $("gate-fill").classList.toggle("band", value >= closes && value < opens);  // amber: the hysteresis band
  $("gate-value").textContent = value.toFixed(2);
}

function onDecision(d) {
  S.safe = false;
  $("command").innerHTML = "";
  $("command").append(d.command, el("small", {text: "→ " + d.action}));
  $("command").dataset.command = d.command;
  $("command").dataset.seq = d.seq;
  const top = d.probabilities.indexOf(Math.max(...d.probabilities));
  document.querySelectorAll("#probabilities .row").forEach((row, i) => {
    row.classList.toggle("top", i === top);
    row.querySelector(".fill").style.width = (100 * d.probabilities[i]).toFixed(1) + "%";
    row.querySelector(".p").textContent = d.probabilities[i].toFixed(2);
  });
  setLevel(d.level);
  setGate(d.gate);
  S.action = d.action;
  S.level = d.level;
  S.latencies.push(d.latency_ms);
  if (S.latencies.length > 200) S.latencies.shift();
  drawLatency();
}

function setLevel(level) {
  const fill = $("level-fill"), pct = Math.min(1, Math.abs(level)) * 50;
  fill.style.left = (level >= 0 ? 50 : 50 - pct) + "%";
  fill.style.width = pct + "%";
  $("level").dataset.value = level.toFixed(3);
  $("level-value").textContent = level.toFixed(2);
}

function onSafe(m) {
  S.safe = true;
  S.action = "hold";
  setLevel(0);
  $("command").replaceChildren("SAFE", el("small", {text: "→ hold · " + m.reason}));
  $("command").dataset.command = "";
  addEvent({t: m.t, text: `${m.type}: ${m.reason}`, level: "safe"});
}

function onStatus(st) {
  S.estop = st.estop;
  S.logActive = st.log_active;
  setState(st);
  $("rate").textContent = fmt(st.decision_rate, 1);
  $("p99").textContent = fmt(st.latency_ms.p99, 2);
  $("p50").textContent = fmt(st.latency_ms.p50, 2);
  $("age").textContent = fmt(st.age_ms.p50, 1);
  $("withheld").textContent = Object.values(st.withheld).reduce((a, b) => a + b, 0);
  $("late").textContent = st.late_hops;
  $("source").textContent = st.stream.source || "waiting for a stream";
  $("samples").textContent = st.samples;
  S.rate = S.lastSamples !== undefined ? (st.samples - S.lastSamples.n) / Math.max(1e-3, st.t - S.lastSamples.t) : null;
  S.lastSamples = {n: st.samples, t: st.t};
  $("stream-rate").textContent = S.rate === null ? "–" : fmt(S.rate, 0) + " samples/s";
  $("offset").textContent = st.stream.clock_offset_ms === null ? "–" : fmt(st.stream.clock_offset_ms, 2) + " ms";
  $("ahead").textContent = fmt(st.stream.ahead_ms_max, 1) + " ms (largest)";
  $("clock-faults").textContent = st.stream.clock_faults ? `${st.stream.clock_faults} (last: ${st.stream.clock_fault_last})` : "none";
  $("amplitude").textContent = st.amplitude_passed ? "passed" : "pending / failed";
  $("alignment").textContent = st.alignment;
  $("outputs").textContent = st.outputs.map((o) => `${o.output}: ${o.sent} sent, ${o.failed} failed`).join(" · ");
  $("log-toggle").textContent = st.log_active ? "Stop session log" : "Start session log";
  $("log-toggle").dataset.active = String(st.log_active);
  drawSensors(st.channels);
}

function addEvent(e) {
  const list = $("events");
  list.prepend(el("li", {class: e.level || "", text: `${timeOf(e.t)}  ${e.text}`}));
  while (list.children.length > 200) list.lastChild.remove();
}

function drawLatency() {
  const v = S.latencies, max = Math.max(1, ...v);
  $("latency-line").setAttribute("points", v.map((x, i) => `${(300 * i) / Math.max(1, v.length - 1)},${68 - (60 * x) / max}`).join(" "));
  $("latency-max").textContent = `max ${max.toFixed(1)} ms`;
}

function layout(n, positions) {
  if (positions && positions.length === n) {
    // azimuthal equidistant projection from the vertex (as topographic maps do): the rim does not crowd
    const flat = positions.map(([x, y, z]) => {
      const d = Math.hypot(x, y, z) || 1, r = Math.acos(Math.max(-1, Math.min(1, z / d))) / (Math.PI / 2);
      const theta = Math.atan2(y, x);
      return [r * Math.cos(theta), -r * Math.sin(theta)];
    });
    const scale = Math.max(...flat.map((p) => Math.hypot(p[0], p[1]))) || 1;
    return flat.map((p) => [p[0] / scale, p[1] / scale]);
  }
  const cols = Math.ceil(Math.sqrt(n)), rows = Math.ceil(n / cols);
  return Array.from({length: n}, (_, i) => [-1 + (2 * (i % cols) + 1) / cols, -1 + (2 * Math.floor(i / cols) + 1) / rows]);
}

function drawSensors(channels) {
  if (!S.hello) return;
  const svg = $("sensors"), names = S.hello.model.channels;
  if (svg.childElementCount !== names.length) {
    svg.replaceChildren();
    const pos = layout(names.length, S.hello.model.positions);
    const r = Math.min(0.12, 0.7 / Math.sqrt(names.length));
    names.forEach((name, i) => {
      const g = el("svg:g", {"data-channel": name});
      g.append(el("svg:circle", {cx: pos[i][0], cy: pos[i][1], r, fill: "#d9dde5", stroke: "#fff", "stroke-width": r * 0.12}),
               el("svg:text", {x: pos[i][0], y: pos[i][1] + r * 0.3, "text-anchor": "middle", "font-size": r * 0.75, fill: "#1d2330", text: name}),
               el("svg:title", {text: name}));
      svg.append(g);
    });
  }
  if (!channels) return;
  const flat = new Set(channels.flat), sat = new Set(channels.saturated);
  [...svg.children].forEach((g, i) => {
    const ratio = channels.ratio[i], c = g.querySelector("circle");
    const band = Math.abs(Math.log10(Math.max(ratio, 1e-9)));
    c.setAttribute("fill", flat.has(i) ? "#9aa0a6" : band < Math.log10(2) ? "#1f9d55" : band < 1 ? "#d9822b" : "#c92a2a");
    c.setAttribute("stroke", sat.has(i) ? "#c92a2a" : "#fff");
    g.dataset.state = flat.has(i) ? "flat" : sat.has(i) ? "saturated" : "ok";
    g.querySelector("title").textContent = `${names[i]}: ${ratio.toFixed(2)}x training RMS` + (flat.has(i) ? " (flat)" : "") + (sat.has(i) ? " (saturated)" : "");
    g.querySelector("text").textContent = flat.has(i) ? "✕" : names[i];
  });
}

// the hand the controller drives: the rig's model (1 aperture unit per second, grasp closes, open opens)
function animateHand(now) {
  const dt = Math.min(0.1, (now - S.lastFrame) / 1000);
  S.lastFrame = now;
  const target = S.action === "grasp" ? 0 : S.action === "open" ? 1 : null;
  if (target !== null) S.aperture += Math.max(-dt, Math.min(dt, target - S.aperture));
  const fingers = $("fingers");
  if (!fingers.childElementCount) {
    for (let i = 0; i < 4; i++) fingers.append(el("svg:rect", {width: 18, height: 62, rx: 9, fill: "#e8c4a8", stroke: "#9c7a62"}));
    fingers.append(el("svg:rect", {width: 18, height: 50, rx: 9, fill: "#e8c4a8", stroke: "#9c7a62", id: "thumb"}));
  }
  // front view: open fingers stand long and fanned; closing curls them into the palm and folds the thumb across
  const a = S.aperture;
  [...fingers.children].forEach((f, i) => {
    if (i < 4) {
      const x = 74 + i * 24, h = 14 + 56 * a, fan = (i - 1.5) * 5 * a;
      f.setAttribute("x", x); f.setAttribute("y", 104 - h); f.setAttribute("height", h);
      f.setAttribute("transform", `rotate(${fan} ${x + 9} 104)`);
    } else {
      f.setAttribute("x", 50); f.setAttribute("y", 84);
      f.setAttribute("transform", `rotate(${-50 + 95 * (1 - a)} 68 128)`);
    }
  });
  $("hand").dataset.aperture = S.aperture.toFixed(3);
  $("aperture-text").textContent = `aperture ${S.aperture.toFixed(2)} · ${S.action}`;
  requestAnimationFrame(animateHand);
}

async function control(action, body) {
  $("ack").textContent = action + "…";
  const ack = await api("/api/control/" + action, body);
  $("ack").textContent = (ack.ok ? "✓ " : "✗ ") + (ack.message || action) + (ack.estop !== undefined ? ` (server: ${ack.estop ? "stopped" : "running"})` : "");
  $("ack").dataset.ok = String(!!ack.ok);
  return ack;
}

$("estop").addEventListener("click", () => control("estop"));
document.addEventListener("keydown", (e) => { if (e.key === "Escape") control("estop"); });
$("resume").addEventListener("click", () => {
  if (confirm("Resume decoding? Decoding restarts from hold: the hand moves again once a movement has held for the dwell on windows that pass every check.")) control("resume", {confirm: true});
});
$("log-toggle").addEventListener("click", () => control(S.logActive ? "log_stop" : "log_start"));
$("mark").addEventListener("click", () => control("mark", {label: $("mark-label").value || "mark"}));
// The paradigm on the cue page: started here with the model's classes; the state shown is the console's own.
$("paradigm-toggle").addEventListener("click", async () => {
  const reply = S.paradigm
    ? await api("/api/paradigm/stop")
    : await api("/api/paradigm", {classes: S.classes, trials: Number($("paradigm-trials").value),
                                  cue_s: Number($("paradigm-cue").value), rest_s: Number($("paradigm-rest").value),
                                  jitter_s: 1.0});
  if (!reply.ok) $("paradigm-state").textContent = "✗ " + (reply.message || "refused");
});

function onParadigm(m) {
  if (!m) return;
  S.paradigm = !!m.running;
  $("paradigm-toggle").textContent = S.paradigm ? "Stop paradigm" : "Start paradigm";
  $("paradigm-state").dataset.running = String(S.paradigm);
  if (S.paradigm) $("paradigm-state").textContent = `started: ${m.order.length} cues`;
  else if (m.total) $("paradigm-state").textContent = `ended: ${m.cues_done} of ${m.total} cues shown`;
}

function onCue(m) {
  if (!m || !S.paradigm || !m.total) return;
  $("paradigm-state").textContent = m.label ? `cue ${m.index} / ${m.total}: ${m.label}` : `rest after cue ${m.index} / ${m.total}`;
}

$("unblind").addEventListener("click", () => {
  if (confirm("Reveal this session's condition (real or sham)? The unblinding is written to the session log.")) control("unblind", {confirm: true});
});

subscribe({
  snapshot: (m) => {
    onHello(m.hello);
    m.events.forEach(addEvent);
    m.decisions.slice(-1).forEach(onDecision);
    if (m.status) onStatus(m.status);
    if (m.unblinded) onUnblinded(m.unblinded);
    onParadigm(m.paradigm);
    onCue(m.cue);
    S.gone = m.server_gone;
  },
  hello: onHello, decision: onDecision, safe: onSafe, status: onStatus,
  event: (m) => addEvent({t: m.t, text: m.text}),
  ack: (m) => { addEvent({t: Date.now() / 1000, text: `${m.action}: ${m.ok ? "done" : "refused"} ${m.message || ""}`, level: "control"});
                S.estop = m.estop; S.logActive = m.log_active; },
  unblinded: onUnblinded, paradigm: onParadigm, cue: onCue,
  bye: () => { S.gone = true; setState({}); },
});

function onUnblinded(m) {
  $("condition").textContent = "condition: " + (m.sham ? "SHAM" : "real");
  $("condition").dataset.condition = m.sham ? "sham" : "real";
}

requestAnimationFrame(animateHand);
