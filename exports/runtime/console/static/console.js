// Shared by the console's pages: the event stream and controls. No build step, no framework.
// The console's secret is in an HttpOnly cookie set when the page was first opened with ?token=...: the
// browser sends it with every request of this page; no script here ever sees it.
"use strict";

function api(path, body) {
  const headers = {"Content-Type": "application/json"};
  return fetch(path, {method: "POST", headers, body: JSON.stringify(body || {}), credentials: "same-origin"})
    .then((r) => r.json().catch(() => ({ok: false, message: "HTTP " + r.status})));
}

function getJSON(path) {
  return fetch(path, {credentials: "same-origin"}).then((r) => r.json());
}

// server-sent events, reconnecting; handlers by message kind
function subscribe(handlers) {
  let source;
  const open = () => {
    source = new EventSource("/events");
    source.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      (handlers[msg.kind] || (() => {}))(msg);
    };
    source.onerror = () => { (handlers.disconnected || (() => {}))(); };
  };
  open();
  return () => source.close();
}

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
                                       : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function fmt(x, digits) {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits === undefined ? 1 : digits);
}

function timeOf(t) {
  return new Date(t * 1000).toLocaleTimeString([], {hour12: false});
}
