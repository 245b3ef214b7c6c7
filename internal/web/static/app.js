// brr dashboard: reads /api/v1/, follows /api/v1/events/stream and draws its charts by
// hand. No framework, no build step: this file is served as it is.
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

  // ---- loaders: each reads one endpoint and draws its section ----

  async function loadInfo() {
    const info = await api("info");
    state.info = info;
    $("worker-name").textContent = info.worker + " · " + info.version;
    $("footer").textContent = "worker " + info.worker + " on " + info.host + " · pools " + info.pools.join(", ") +
      " · repos " + info.repos.join(", ") + (info.mutations ? "" : " · jobs over HTTP are off (no API key)");
    document.title = "brr · " + info.worker;
  }

  async function loadHealth() {
    let rep;
    try {
      rep = await api("health");
    } catch (e) {
      if (e.status !== 503) throw e;
      const hb = $("health-badge");
      hb.className = "badge off";
      hb.textContent = "health n/a";
      note("health-note", e.message);
      fill($("health-body"), [], "no health checks", 5);
      renderWorkers([], e.message);
      return;
    }
    note("health-note", "");
    const hb = $("health-badge");
    hb.className = "badge status-" + (rep.status || "ok");
    hb.textContent = "health " + (rep.status || "ok");
    fill($("health-body"), rep.checks.map((c) => el("tr", {},
      el("td", {}, c.check),
      el("td", { class: "mono path" }, c.subject || ""),
      el("td", {}, badge(c.status)),
      el("td", { class: "path" }, c.message || ""),
      el("td", { class: "wide" }, c.since ? ago(c.since) : "–"))), "no checks reported yet", 5);
    renderWorkers(rep.workers, "");
  }

  function renderWorkers(list, why) {
    const rows = list.map((w) => el("tr", { data: { worker: w.id } },
      el("td", { class: "mono" }, w.id, w.missing ? el("span", { class: "badge status-critical" }, "missing") : null),
      el("td", {}, w.host),
      el("td", {}, (w.pools || []).join(", ")),
      el("td", {}, w.in_flight + " / " + w.concurrency),
      el("td", { class: "wide" }, w.jobs_done + " / " + w.jobs_failed),
      el("td", { class: "wide" }, fmtSecs(w.uptime_seconds)),
      el("td", { class: "wide" }, fmtBytes(w.disk_free_bytes)),
      el("td", {}, ago(w.time))));
    if (!rows.length && state.info) {
      // No heartbeats to show: this worker, as it describes itself.
      const i = state.info;
      rows.push(el("tr", { data: { worker: i.worker } },
        el("td", { class: "mono" }, i.worker), el("td", {}, i.host), el("td", {}, i.pools.join(", ")),
        el("td", {}, "–"), el("td", { class: "wide" }, "–"), el("td", { class: "wide" }, "–"),
        el("td", { class: "wide" }, "–"), el("td", {}, "now")));
    }
    note("workers-note", why ? "Only this worker is shown: " + why + "." : "");
    fill($("workers-body"), rows, "no workers", 8);
    const live = list.filter((w) => !w.missing).length;
    $("tile-workers").textContent = list.length ? String(live) : (state.info ? "1" : "–");
    $("tile-workers-sub").textContent = list.length ? (list.length - live ? (list.length - live) + " missing" : "all reporting") : "this worker";
  }

  async function loadQueue() {
    const [q, waiting] = await Promise.all([api("queue"), api("queue/jobs?quiet=true&limit=" + SHOWN_JOBS)]);
    putQueued(waiting.jobs);
    const pending = q.pools.reduce((n, p) => n + p.pending, 0);
    const inFlight = q.pools.reduce((n, p) => n + p.in_flight, 0);
    $("tile-queue").textContent = String(pending);
    $("tile-queue-sub").textContent = inFlight + " handed to workers" + (q.pools.length > 1 ? " · " + q.pools.length + " pools" : "");
  }

  async function loadJobs() {
    const list = await api("jobs?quiet=true&limit=" + SHOWN_JOBS);
    for (const e of list.jobs) putJob(e);
    renderJobs();
  }

  // putQueued shows the jobs of the queue that no worker has taken yet, as events of
  // status "queued"; one that left the queue since is dropped, unless its events came.
  function putQueued(list) {
    const ids = new Set(list.map((j) => j.id));
    for (const [id, e] of state.jobs) if (e.status === QUEUED && !ids.has(id)) state.jobs.delete(id);
    for (const j of list) {
      const old = state.jobs.get(j.id);
      if (old && old.status !== QUEUED) continue; // taken meanwhile: its events win
      state.jobs.set(j.id, { job_id: j.id, kind: j.kind, pool: j.pool, status: QUEUED, time: j.created,
        source: j.args && (j.args.source_name || j.args.path || j.args.source) || "", cancel_requested: !!j.cancel_requested });
    }
    renderJobs();
  }

  function putJob(e) {
    const old = state.jobs.get(e.job_id);
    if (old && Date.parse(old.time) > Date.parse(e.time)) return;
    state.jobs.set(e.job_id, e);
    if (FINAL.has(e.status)) {
      state.progress.delete(e.job_id);
      cancelling.delete(e.job_id);
      confirming.delete(e.job_id);
      controls.delete(e.job_id);
    }
    if (state.jobs.size > MAX_JOBS) {
      const oldest = [...state.jobs.values()].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
      for (const o of oldest.slice(0, state.jobs.size - MAX_JOBS)) {
        state.jobs.delete(o.job_id);
        controls.delete(o.job_id);
      }
    }
  }

  function what(e) {
    const parts = [];
    if (e.source) parts.push(e.source);
    if (e.repo) parts.push("repo " + e.repo);
    if (e.snapshot) parts.push("snapshot " + e.snapshot.slice(0, 8));
    const sum = resultSummary(e.result);
    if (sum) parts.push(sum);
    const out = el("span", {}, parts.join(" · "));
    // A long error (a restore's list of files, a command's stderr) would make its row a
    // page long: three lines show, the whole of it is the tooltip and in the job's API.
    // A cancelled job's reason (who asked, when) is not an error.
    if (e.error) out.append(el("div", { class: (e.status === "cancelled" ? "muted" : "status-failed") + " small clamp", title: e.error }, e.error.length > 400 ? e.error.slice(0, 400) + "…" : e.error));
    return out;
  }

  // resultSummary sums up a job's result in a few words, for every kind (as the INFO
  // column of brr jobs does).
  function resultSummary(res) {
    const r = res || {};
    if (r.backup && r.backup.dry_run) return "dry run: would read " + plural(r.backup.files, "file") + ", " + fmtBytes(r.backup.bytes);
    if (r.backup) return plural(r.backup.files, "file") + ", " + fmtBytes(r.backup.bytes) + ", +" + fmtBytes(r.backup.bytes_added);
    if (r.restore) return plural(r.restore.files, "file") + " into " + r.restore.target;
    if (r.verify) return "repo " + r.verify.repo + ((r.verify.damaged || []).length ? ": " + plural(r.verify.damaged.length, "problem") : " OK");
    if (r.replicate) return r.replicate.from + " → " + r.replicate.to + ": " + plural((r.replicate.snapshots || []).length, "snapshot") +
      " copied, " + r.replicate.present + " there already, " + fmtBytes(r.replicate.bytes_sent) + " sent";
    if (r.prune && r.prune.postponed) return "postponed: " + r.prune.postponed;
    if (r.prune) return (r.prune.dry_run ? "dry run: would remove " : "removed ") + plural((r.prune.removed || []).length, "snapshot") +
      ", kept " + r.prune.kept + (r.prune.dry_run ? "" : ", freed " + fmtBytes(r.prune.bytes_freed));
    if (r.checkpoint) return (r.checkpoint.removed ? "removed point " : "point ") + r.checkpoint.point.label +
      (r.checkpoint.removed ? "" : " on snapshot " + (r.checkpoint.point.snapshot || "").slice(0, 8));
    if (r.drill) return (r.drill.passed ? "passed: " + plural(r.drill.files, "file") + ", " + fmtBytes(r.drill.bytes) : "failed: " + plural(r.drill.problem_count, "problem"));
    if (r.ping) return "answered by " + r.ping.worker;
    return "";
  }

  function statusCell(e) {
    const p = state.progress.get(e.job_id);
    const cell = el("td", {}, badge(e.status));
    if (p && RUNNING.has(e.status)) {
      const frac = p.total_bytes ? p.bytes / p.total_bytes : null;
      cell.append(el("div", { class: "small muted" }, (p.phase ? p.phase + " " : "") + fmtBytes(p.bytes) + (frac !== null ? " (" + pct(frac) + ")" : "")));
      if (frac !== null) {
        const bar = el("div", { class: "bar" }, el("span"));
        bar.firstChild.style.width = Math.min(100, frac * 100).toFixed(1) + "%";
        cell.append(bar);
      }
    }
    if (e.status === "retrying" && e.attempt) cell.append(el("div", { class: "small muted" }, "attempt " + e.attempt));
    const cancel = cancelControl(e);
    if (cancel) cell.append(cancel);
    return cell;
  }

  // ---- cancelling a job: DELETE /api/v1/jobs/{id}, after a confirmation ----

  const confirming = new Set(); // job ids whose Cancel was clicked, not yet confirmed
  const cancelling = new Set(); // job ids whose cancel was sent, until their end comes
  // controls keeps each job's cancel control while its state lasts: the table is drawn
  // again with every progress event, and a button made anew each time would swallow a
  // click whose press and release land on two different buttons.
  const controls = new Map(); // job id → {step, node}

  // cancelControl is the Cancel button of a job that has not ended, on a worker that
  // takes mutations (it has an API key): Cancel, then "Yes, cancel" or "Keep".
  function cancelControl(e) {
    const id = e.job_id;
    if (!OPEN.has(e.status) || !(state.info && state.info.mutations)) {
      controls.delete(id);
      return null;
    }
    const waits = e.status === QUEUED && (e.cancel_requested || cancelling.has(id));
    const step = waits ? "asked" : cancelling.has(id) ? "cancelling" : confirming.has(id) ? "confirm" : "ask";
    const kept = controls.get(id);
    if (kept && kept.step === step) return kept.node;
    let node;
    if (step === "asked") {
      // No worker runs it: it ends cancelled, without running, when one takes it.
      node = el("div", { class: "small muted cancel-state" }, "cancel asked · it will not run");
    } else if (step === "cancelling") {
      node = el("div", { class: "small muted cancel-state" }, "cancelling…");
    } else if (step === "confirm") {
      node = el("div", { class: "small cancel-confirm" }, "Cancel this job? ",
        el("button", { type: "button", class: "danger", data: { action: "cancel-confirm", job: id } }, "Yes, cancel"), " ",
        el("button", { type: "button", data: { action: "cancel-keep", job: id } }, "Keep"));
    } else {
      node = el("div", {}, el("button", { type: "button", class: "small", data: { action: "cancel", job: id } }, "Cancel"));
    }
    controls.set(id, { step, node });
    return node;
  }

  // followCancel reads the job until it has ended, for 30 s at most: its end comes on the
  // live stream too, unless the stream was reconnecting just then.
  async function followCancel(id) {
    for (let i = 0; i < 30 && cancelling.has(id); i++) {
      await new Promise((done) => setTimeout(done, 1000));
      try {
        const st = await api("jobs/" + encodeURIComponent(id));
        if (st && st.event) {
          putJob(st.event);
          renderJobs();
        }
      } catch (_) { /* the live stream may still bring it */ }
    }
  }

  function onJobsClick(ev) {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const id = b.dataset.job;
    switch (b.dataset.action) {
      case "cancel": confirming.add(id); break;
      case "cancel-keep": confirming.delete(id); break;
      case "cancel-confirm":
        confirming.delete(id);
        cancelling.add(id);
        api("jobs/" + encodeURIComponent(id), "DELETE").then(() => { later("queue", loadQueue, 200); return followCancel(id); }).catch((err) => {
          cancelling.delete(id);
          showBanner("cancel job " + id + ": " + err.message);
          renderJobs();
        });
        break;
    }
    renderJobs();
  }

  function renderJobs() {
    const jobs = [...state.jobs.values()].sort((a, b) => {
      const ra = OPEN.has(a.status), rb = OPEN.has(b.status);
      if (ra !== rb) return ra ? -1 : 1;
      return Date.parse(b.time) - Date.parse(a.time);
    }).slice(0, SHOWN_JOBS);
    fill($("jobs-body"), jobs.map((e) => {
      const r = resultOf(e);
      return el("tr", { data: { job: e.job_id, status: e.status } },
        el("td", { class: "mono nowrap", title: e.job_id }, short(e.job_id)),
        el("td", { class: "nowrap" }, e.kind),
        statusCell(e),
        el("td", { class: "path" }, what(e)),
        el("td", { class: "wide mono" }, e.worker || ""),
        el("td", { class: "nowrap", title: e.time }, ago(e.time)),
        el("td", { class: "wide nowrap" }, r && r.duration_ms !== undefined ? fmtMS(r.duration_ms) : "–"));
    }), "no jobs yet", 7);
    const running = [...state.jobs.values()].filter((e) => RUNNING.has(e.status));
    $("tile-running").textContent = String(running.length);
    const kinds = [...new Set(running.map((e) => e.kind))];
    $("tile-running-sub").textContent = running.length ? kinds.join(", ") : "nothing running";
  }

  async function loadSources() {
    const list = await api("sources");
    const unread = Object.entries(list.unread || {}).map(([r, why]) => "repo " + r + ": " + why);
    note("sources-note", unread.join("; "));
    fill($("sources-body"), list.sources.map((s) => {
      const ageCell = el("td", {}, s.latest ? fmtSecs(s.age_seconds) : "never", s.rpo_seconds ? " / " + fmtSecs(s.rpo_seconds) : "");
      if (s.rpo_seconds && s.latest) {
        const frac = s.age_seconds / s.rpo_seconds;
        const bar = el("div", { class: "bar" + (frac > 1 ? " crit" : "") }, el("span"));
        bar.firstChild.style.width = Math.min(100, frac * 100).toFixed(1) + "%";
        ageCell.append(bar);
      }
      return el("tr", { data: { source: s.source } },
        el("td", { class: "mono path" }, s.source || "(none)"),
        el("td", {}, s.repo || "–"),
        el("td", {}, String(s.snapshots)),
        el("td", { title: s.latest ? s.latest.time : "" }, s.latest ? ago(s.latest.time) : "–"),
        ageCell,
        el("td", {}, s.status ? badge(s.status) : el("span", { class: "muted" }, "no RPO")));
    }), "no snapshots yet", 6);
  }

  async function loadReplication() {
    const list = await api("replication");
    fill($("replication-body"), list.pairs.map((p) => el("tr", {},
      el("td", {}, p.from + " → " + p.to),
      el("td", {}, p.status ? badge(p.status) : el("span", { class: "muted" }, "never ran"), p.error ? el("div", { class: "small status-failed" }, p.error) : null),
      el("td", {}, p.time ? ago(p.time) : "–"),
      el("td", {}, p.lag ? String(p.lag.behind) : "–"),
      el("td", {}, p.lag && p.lag.behind ? fmtSecs(p.lag.age_seconds) : (p.lag ? "none" : "–")),
      el("td", { class: "wide" }, fmtBytes(p.bytes_sent)))), "no replication configured or run", 6);
  }

  // loadRepos draws the pool's repos. Everything in them comes from the registry and
  // the heartbeats, so it goes into the page as text (el), never as HTML.
  async function loadRepos() {
    let list;
    try {
      list = await api("repos");
    } catch (e) {
      if (e.status !== 503) throw e;
      note("repos-note", e.message);
      fill($("repos-body"), [], "no repos to show", 7);
      return;
    }
    const me = list.worker || { id: "", refused: [] };
    const mine = me.refused || [];
    const pools = new Set(list.repos.map((r) => r.pool));
    const rows = list.repos.map((r) => {
      const refusals = Object.entries(r.refused_by || {});
      // This worker's own refusals are known before its next heartbeat says them.
      for (const ref of mine) {
        if (ref.repo === r.name && ref.pool === r.pool && !refusals.some(([w]) => w === me.id)) refusals.push([me.id, ref.message]);
      }
      refusals.sort(([a], [b]) => a.localeCompare(b));
      const url = (r.spec && r.spec.url) || r.location || "";
      const served = r.served_by || [];
      const to = r.replicate_to || [];
      return el("tr", { data: { repo: r.name, pool: r.pool, refused: refusals.length ? "true" : "false" } },
        el("td", { class: "mono nowrap" }, r.name, pools.size > 1 ? el("div", { class: "small muted" }, "pool " + r.pool) : null),
        el("td", { class: "mono path", title: r.location || "" }, url || "–"),
        el("td", { class: r.id ? "mono nowrap" : "nowrap", title: r.id || "" }, r.id ? short(r.id) : el("span", { class: "muted" }, "not created yet")),
        el("td", { class: "wide" }, r.spec ? (r.spec.append_only ? "yes" : "no") : "–"),
        el("td", {}, to.length ? to.join(", ") : el("span", { class: "muted" }, "–")),
        el("td", { class: "mono" }, served.length ? served.join(", ") : el("span", { class: "badge status-warn" }, "nobody")),
        el("td", { class: "path" }, refusals.length
          ? el("div", {}, ...refusals.map(([w, msg]) => el("span", { class: "refusal status-warn small", data: { worker: w } }, el("span", { class: "mono" }, w), ": ", msg)))
          : el("span", { class: "muted" }, "none")));
    });
    // A refusal of a repo the registry no longer holds (it changed between the two reads).
    const listed = new Set(list.repos.map((r) => r.pool + "/" + r.name));
    const stray = mine.filter((ref) => !listed.has(ref.pool + "/" + ref.repo));
    note("repos-note", stray.map((ref) => "This worker refuses " + ref.repo + ": " + ref.message).join(" "));
    fill($("repos-body"), rows, "no repos registered", 7);
  }

  async function loadAnalytics() {
    const win = $("window").value;
    const by = win === "24h" ? "hour" : "day";
    const [series, kinds] = await Promise.all([api("analytics?window=" + win + "&by=" + by), api("analytics?window=" + win + "&by=kind")]);
    state.series = series;
    state.kinds = kinds;
    drawCharts();
    const t = kinds.total;
    $("tile-success").textContent = pct(t.success_rate);
    $("tile-success-sub").textContent = plural(t.jobs, "job") + ", " + t.failed + " failed · " + $("window").selectedOptions[0].textContent;
    fill($("kinds-body"), kinds.groups.map((g) => el("tr", {},
      el("td", {}, g.key),
      el("td", {}, String(g.jobs)),
      el("td", {}, pct(g.success_rate)),
      el("td", {}, fmtMS(g.duration_p50_ms)),
      el("td", {}, fmtMS(g.duration_p95_ms)),
      el("td", {}, fmtBytes(g.bytes)),
      el("td", { class: "wide" }, g.dedup_ratio ? g.dedup_ratio.toFixed(1) + "×" : "–"))), "no jobs ended in this window", 7);
  }

  // barChart draws groups as bars, one per series side by side, scaled to the largest.
  function barChart(box, groups, series, fmt) {
    const W = Math.max(240, box.clientWidth || 600), H = 160, L = 52, B = 18, T = 10;
    const values = groups.flatMap((g) => series.map((s) => s.value(g) || 0));
    const max = Math.max(0, ...values);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": box.id });
    root.append(
      svg("line", { x1: L, y1: H - B + 0.5, x2: W, y2: H - B + 0.5, class: "axis" }),
      svg("line", { x1: L - 0.5, y1: T, x2: L - 0.5, y2: H - B, class: "axis" }),
      svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, max ? fmt(max) : "0"),
      svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"));
    const n = Math.max(groups.length, 1), slot = (W - L) / n, bw = Math.max(1, (slot * 0.8) / series.length);
    groups.forEach((g, i) => series.forEach((s, j) => {
      const v = s.value(g);
      if (!v || !max) return;
      const h = Math.max(1, (v / max) * (H - B - T));
      const x = L + i * slot + slot * 0.1 + j * bw;
      root.append(svg("rect", { x: x.toFixed(1), y: (H - B - h).toFixed(1), width: bw.toFixed(1), height: h.toFixed(1), class: s.cls },
        svg("title", {}, g.key + " " + s.name + ": " + fmt(v))));
    }));
    if (groups.length) {
      const label = (g) => g.key.length > 10 ? g.key.slice(5).replace("T", " ") : g.key;
      root.append(svg("text", { x: L + 2, y: H - 4 }, label(groups[0])),
        svg("text", { x: W - 2, y: H - 4, "text-anchor": "end" }, label(groups[groups.length - 1])));
    }
    box.replaceChildren(root);
  }

  function drawCharts() {
    if (!state.series) return;
    const g = state.series.groups;
    barChart($("chart-bytes"), g, [{ name: "bytes", cls: "b", value: (x) => x.bytes }], fmtBytes);
    barChart($("chart-durations"), g, [
      { name: "p50", cls: "p50", value: (x) => x.duration_p50_ms },
      { name: "p95", cls: "p95", value: (x) => x.duration_p95_ms }], fmtMS);
  }

  async function loadEvents() {
    const list = await api("events?quiet=true&limit=" + MAX_EVENTS);
    state.events = list.events.slice().reverse();
    renderEvents();
  }

  function renderEvents() {
    $("events-log").replaceChildren(...state.events.map((e) => {
      const subject = e.type + (e.kind && e.type === "job" ? "." + e.kind : "") + "." + e.status;
      const t = new Date(e.time);
      return el("li", { data: { event: e.id } },
        el("time", { datetime: e.time, title: e.time }, isNaN(t) ? "" : t.toLocaleTimeString()),
        badge(e.status, subject),
        e.job_id ? el("span", { class: "mono", title: e.job_id }, short(e.job_id)) : null,
        e.source ? el("span", { class: "mono" }, e.source) : null,
        e.check ? el("span", {}, e.check.subject || e.check.check) : null,
        e.error ? el("span", { class: e.status === "cancelled" ? "muted" : "status-failed" }, e.error) : null);
    }));
  }

  // ---- live updates ----

  const timers = {};
  // later runs fn once in ms, however many times it is asked for meanwhile.
  function later(name, fn, ms) {
    if (timers[name]) return;
    timers[name] = setTimeout(() => { delete timers[name]; run(fn); }, ms);
  }

  function onEvent(e) {
    if (!noise(e)) {
      state.events.unshift(e);
      state.events.length = Math.min(state.events.length, MAX_EVENTS);
      later("events", renderEvents, 200);
    }
    switch (e.type) {
      case "job":
        if (e.kind === "ping") break;
        if (e.status === "progress") state.progress.set(e.job_id, e.progress || {});
        else putJob(e);
        later("jobs", renderJobs, 100);
        later("queue", loadQueue, 1000);
        if (FINAL.has(e.status)) later("analytics", loadAnalytics, 3000);
        // The dead letters and actions panels (actions.js) look again when a job ends.
        if (FINAL.has(e.status)) later("jobended", () => window.dispatchEvent(new Event("brr:jobended")), 500);
        break;
      case "snapshot": later("sources", loadSources, 1000); later("browse", () => window.dispatchEvent(new Event("brr:snapshot")), 1000); break;
      case "replication": if (e.status !== "progress") later("replication", loadReplication, 1000); break;
      case "health":
        later("health", loadHealth, e.status === "worker" ? 5000 : 1000);
        // Heartbeats say which repos each worker serves and refuses.
        if (e.status === "worker") later("repos", loadRepos, 5000);
        break;
    }
  }

  function setLive(on) {
    const l = $("live");
    l.className = "badge " + (on ? "on" : "off");
    l.textContent = on ? "live" : "offline";
  }

  // follow reads the event stream with fetch rather than EventSource, which cannot send
  // the Authorization header that protected reads need. It reconnects after 3 s and
  // then reloads what it may have missed.
  let streamAbort = null;
  async function follow() {
    if (streamAbort) streamAbort.abort();
    const ctl = new AbortController();
    streamAbort = ctl;
    try {
      const res = await fetch("/api/v1/events/stream", { headers: authHeaders(), signal: ctl.signal, cache: "no-store" });
      if (res.status === 401) { setLive(false); askKey(); return; }
      if (!res.ok || !res.body) throw new Error("event stream: " + res.status);
      setLive(true);
      // A job that ended between the page's last read of the jobs and this connection
      // would stay "started" in the table: read them again now that no event is missed.
      run(loadJobs);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const msg = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = msg.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (data) {
            try { onEvent(JSON.parse(data)); } catch (err) { console.error("event", err); }
          }
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
    }
    if (streamAbort !== ctl) return;
    setLive(false);
    setTimeout(() => {
      if (streamAbort === ctl) { follow(); refreshAll(); }
    }, 3000);
  }

  // ---- start ----

  // run runs a loader; a failure is shown in the banner, except a missing key, which
  // the key form asks for.
  function run(fn) {
    return Promise.resolve().then(fn).catch((e) => {
      if (e.status !== 401) showBanner(e.message);
    });
  }

  async function refreshAll() {
    try {
      await loadInfo();
    } catch (e) {
      if (e.status !== 401) showBanner(e.message);
      return false;
    }
    showBanner("");
    await Promise.all([loadHealth, loadQueue, loadJobs, loadRepos, loadSources, loadReplication, loadAnalytics, loadEvents].map(run));
    return true;
  }

  function start() {
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, $("key-input").value.trim());
      $("key-input").value = "";
      $("key-form").hidden = true;
      showBanner("");
      refreshAll().then((ok) => { if (ok) follow(); });
      window.dispatchEvent(new Event("brr:key")); // actions.js reloads its panels
    });
    $("key-button").addEventListener("click", () => askKey());
    $("jobs-body").addEventListener("click", onJobsClick);
    $("window").addEventListener("change", () => run(loadAnalytics));
    window.addEventListener("resize", () => later("charts", drawCharts, 200));
    window.addEventListener("brr:queued", () => later("queue", loadQueue, 300)); // actions.js queued a job
    refreshAll().then((ok) => { if (ok) follow(); });
    setInterval(() => run(loadHealth), 15000);
    setInterval(() => run(loadQueue), 15000);
    setInterval(() => run(loadRepos), 15000);
    setInterval(() => { run(loadSources); run(loadReplication); }, 60000);
    setInterval(renderJobs, 10000);
  }

  // What the Browse panel (browse.js) uses of this file.
  window.brrDashboard = { api, el, fill, fmtBytes, authHeaders, showBanner };

  start();
})();
