// brr dashboard: reads /api/v1/, follows /api/v1/events/stream and draws its charts by
// hand. No framework, no build step: these files are served as they are. This one holds
// what the others share (the API and its key, DOM helpers, formatting, the page's state)
// and exposes it as window.brrDashboard; jobs.js, panels.js and live.js (which starts
// the page), then browse.js and actions.js, load after it, in that order (index.html).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "brr.apiKey";
  const RUNNING = new Set(["accepted", "started", "progress", "retrying"]);
  // A job that no worker has started yet has no entry in the results: the table shows it
  // as "queued", from GET /api/v1/queue/jobs, and it can be cancelled too.
  const QUEUED = "queued";
  const OPEN = new Set([...RUNNING, QUEUED]);
  const FINAL = new Set(["succeeded", "failed", "dead", "cancelled"]);
  const MAX_JOBS = 200, SHOWN_JOBS = 50, MAX_EVENTS = 50;

  const state = {
    info: null,
    jobs: new Map(),     // job id → latest lifecycle event
    progress: new Map(), // job id → latest progress
    events: [],          // newest first
    series: null,        // analytics by hour or day
    kinds: null,         // analytics by kind
  };

  // ---- the API ----

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function authHeaders() {
    const k = sessionStorage.getItem(KEY);
    return k ? { Authorization: "Bearer " + k } : {};
  }

  // api calls the API; a body, when given, is sent as JSON (actions.js posts jobs).
  async function api(path, method = "GET", payload) {
    const init = { method, headers: authHeaders(), cache: "no-store" };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const res = await fetch("/api/v1/" + path, init);
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON: use the status text */ }
    const message = (body && body.error) || res.status + " " + res.statusText;
    if (res.status === 401) {
      askKey(message);
    }
    if (!res.ok) throw new APIError(res.status, message);
    return body;
  }

  function askKey(message) {
    $("key-form").hidden = false;
    $("key-button").hidden = false;
    if (message && sessionStorage.getItem(KEY)) showBanner(message);
    $("key-input").focus();
  }

  // ---- small DOM helpers ----

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === "") continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  function badge(status, text) {
    return el("span", { class: "badge status-" + status }, text || status);
  }

  // fill puts rows in tbody, or a row saying empty. Each cell gets its column's name as
  // data-label, which the phone layout shows beside it in place of the header row.
  function fill(tbody, rows, empty, cols) {
    const labels = [...tbody.parentElement.querySelectorAll("thead th")].map((th) => th.textContent);
    for (const tr of rows) {
      [...tr.children].forEach((td, i) => { if (labels[i]) td.dataset.label = labels[i]; });
    }
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty))]));
  }

  function note(id, text) {
    const n = $(id);
    n.textContent = text || "";
    n.hidden = !text;
  }

  function showBanner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  // ---- formatting ----

  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : Math.round(n)) + " " + units[i];
  }

  function fmtSecs(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    s = Math.max(0, s);
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function fmtMS(ms) { return ms === null || ms === undefined ? "–" : fmtSecs(ms / 1000); }

  function ago(t) {
    const ms = Date.parse(t);
    if (!ms || ms < 0) return "–";
    return fmtSecs((Date.now() - ms) / 1000) + " ago";
  }

  function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(x >= 0.995 || x === 0 ? 0 : 1) + " %"; }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  // noise is what repeats every health interval: the canary's ping jobs, heartbeats and
  // progress. The jobs table and the event log leave it out.
  function noise(e) {
    return e.kind === "ping" || e.status === "progress" || (e.type === "health" && e.status === "worker");
  }

  function short(id) { return id && id.length > 14 ? id.slice(0, 12) + "…" : id || ""; }

  function resultOf(e) {
    const r = e.result || {};
    return r.backup || r.restore || r.verify || r.replicate || r.prune || r.checkpoint || r.drill || r.ping || null;
  }

  // run runs a loader; a failure is shown in the banner, except a missing key, which
  // the key form asks for.
  function run(fn) {
    return Promise.resolve().then(fn).catch((e) => {
      if (e.status !== 401) showBanner(e.message);
    });
  }

  const timers = {};
  // later runs fn once in ms, however many times it is asked for meanwhile.
  function later(name, fn, ms) {
    if (timers[name]) return;
    timers[name] = setTimeout(() => { delete timers[name]; run(fn); }, ms);
  }

  // What the other files use of this one.
  window.brrDashboard = {
    KEY, RUNNING, QUEUED, OPEN, FINAL, MAX_JOBS, SHOWN_JOBS, MAX_EVENTS, state,
    api, authHeaders, askKey, el, svg, badge, fill, note, showBanner,
    fmtBytes, fmtSecs, fmtMS, ago, pct, plural, noise, short, resultOf, run, later,
  };
})();
