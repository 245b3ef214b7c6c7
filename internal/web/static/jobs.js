// brr dashboard, the jobs table: the jobs in flight and recent (from GET /jobs and the
// live stream), the queued ones no worker has taken yet (GET /queue/jobs), the Queued and
// Running tiles, and the Cancel button of a job that has not ended. It uses what app.js
// exposes as window.brrDashboard and adds its own functions there for live.js.
"use strict";

(() => {
  const d = window.brrDashboard;
  if (!d) return;
  const { RUNNING, QUEUED, OPEN, FINAL, MAX_JOBS, SHOWN_JOBS, state } = d;
  const { api, el, badge, fill, showBanner, fmtBytes, fmtMS, ago, pct, plural, short, resultOf, later } = d;
  const $ = (id) => document.getElementById(id);

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

  Object.assign(d, { loadQueue, loadJobs, putJob, renderJobs, onJobsClick });
})();
