// brr dashboard, the panels that change things: the dead letters (retry or discard one,
// purge them) and the Actions (back up a source, verify, drill, replicate, checkpoint,
// each in the repo picked). Every change asks for a confirmation first, which says what
// will be sent, and needs the API key (the page asks for it, as the Cancel button of the
// jobs table does). It uses the helpers app.js exposes as window.brrDashboard.
"use strict";

(() => {
  const d = window.brrDashboard;
  if (!d) return;
  const { api, el, fill, showBanner } = d;
  const $ = (id) => document.getElementById(id);

  function report(p) {
    return p.catch((e) => { if (e.status !== 401) showBanner(e.message); });
  }

  function short(id) { return id && id.length > 14 ? id.slice(0, 12) + "…" : id || ""; }

  // ---- dead letters ----

  const dlq = {
    entries: [],
    confirming: new Map(), // seq → "retry" or "discard"
    busy: new Set(),       // seqs whose request is under way
  };

  async function loadDLQ() {
    const list = await api("dlq");
    dlq.entries = list.dead_letters;
    const seqs = new Set(dlq.entries.map((e) => String(e.seq)));
    for (const s of [...dlq.confirming.keys()]) if (!seqs.has(s)) dlq.confirming.delete(s);
    renderDLQ();
  }

  function dlqButtons(e) {
    const seq = String(e.seq);
    const b = (action, text, cls) => el("button", { type: "button", class: cls || null, data: { dlq: action, seq } }, text);
    if (dlq.busy.has(seq)) return [el("span", { class: "muted" }, "…")];
    const asked = dlq.confirming.get(seq);
    if (asked === "retry") {
      return [el("span", { class: "small" }, "Queue " + (e.kind || "the job") + " " + short(e.job_id) + " again? "),
        b("retry-confirm", "Yes, retry", "danger"), " ", b("keep", "No")];
    }
    if (asked === "discard") {
      return [el("span", { class: "small" }, "Discard it for good? It will not run. "),
        b("discard-confirm", "Yes, discard", "danger"), " ", b("keep", "No")];
    }
    return [b("retry", "Retry"), " ", b("discard", "Discard")];
  }

  function renderDLQ() {
    fill($("dlq-body"), dlq.entries.map((e) => el("tr", { data: { dead: e.job_id || "", seq: String(e.seq) } },
      el("td", { class: "mono nowrap", title: e.job_id }, short(e.job_id)),
      el("td", { class: "nowrap" }, e.kind || "–"),
      el("td", { class: "nowrap" }, el("span", { class: "badge status-" + (e.status || "failed") }, e.status || "failed"),
        e.attempts ? el("span", { class: "muted small" }, " " + e.attempts + "×") : null),
      el("td", { class: "actions" }, ...dlqButtons(e)),
      el("td", { class: "path" }, el("div", { class: "clip small status-failed" }, e.error || "")),
      el("td", { class: "wide nowrap", title: e.time }, e.time ? new Date(e.time).toLocaleString() : "–"))), "no dead letters", 6);
    $("dlq-count").textContent = dlq.entries.length ? "· " + dlq.entries.length : "";
  }

  function onDLQClick(ev) {
    const b = ev.target.closest("button[data-dlq]");
    if (!b) return;
    const seq = b.dataset.seq;
    const send = (path, method, what) => {
      dlq.confirming.delete(seq);
      dlq.busy.add(seq);
      api(path, method).then(() => loadDLQ()).catch((err) => {
        if (err.status !== 401) showBanner(what + " dead letter " + seq + ": " + err.message);
      }).finally(() => { dlq.busy.delete(seq); renderDLQ(); });
    };
    switch (b.dataset.dlq) {
      case "retry": dlq.confirming.set(seq, "retry"); break;
      case "discard": dlq.confirming.set(seq, "discard"); break;
      case "keep": dlq.confirming.delete(seq); break;
      case "retry-confirm": send("dlq/" + encodeURIComponent(seq) + "/retry", "POST", "retry"); break;
      case "discard-confirm": send("dlq/" + encodeURIComponent(seq), "DELETE", "discard"); break;
    }
    renderDLQ();
  }

  // Purge: DELETE /api/v1/dlq, all of them or with ?before= those older than a duration.
  const DAYS = { "1d": 1, "7d": 7, "30d": 30 };
  const purgeWhat = () => $("dlq-purge-before").value;

  function onPurgeAsk() {
    const before = purgeWhat();
    const cut = before ? Date.now() - DAYS[before] * 86400000 : Infinity;
    const n = dlq.entries.filter((e) => !before || (e.time && Date.parse(e.time) < cut)).length;
    $("dlq-purge-what").textContent = "Remove " + (before ? "the dead letters " + $("dlq-purge-before").selectedOptions[0].textContent : "every dead letter") +
      " (" + n + " listed) for good? They will not run. ";
    $("dlq-purge-confirm").hidden = false;
    $("dlq-purge").hidden = true;
    $("dlq-purge-result").textContent = "";
  }

  function purgeDone(text) {
    $("dlq-purge-confirm").hidden = true;
    $("dlq-purge").hidden = false;
    $("dlq-purge-yes").disabled = false;
    $("dlq-purge-result").textContent = text;
  }

  function onPurgeYes() {
    const before = purgeWhat();
    $("dlq-purge-yes").disabled = true;
    api("dlq" + (before ? "?before=" + encodeURIComponent(before) : ""), "DELETE").then((res) => {
      purgeDone("Purged " + res.removed + " dead letter" + (res.removed === 1 ? "" : "s") + ".");
      return loadDLQ();
    }).catch((err) => {
      purgeDone(err.status === 401 ? "Purging needs the API key: enter it above, then purge again." : "purge: " + err.message);
    });
  }

  $("dlq-purge").addEventListener("click", onPurgeAsk);
  $("dlq-purge-no").addEventListener("click", () => purgeDone(""));
  $("dlq-purge-yes").addEventListener("click", onPurgeYes);
  $("dlq-purge-before").addEventListener("change", () => purgeDone(""));
  $("dlq-body").addEventListener("click", onDLQClick);
  $("dlq-reload").addEventListener("click", () => report(loadDLQ()));
  report(loadDLQ());
  setInterval(() => report(loadDLQ()), 30000);
  // A job that ended may have gone to the dead letters, or left them.
  window.addEventListener("brr:jobended", () => report(loadDLQ()));
  window.addEventListener("brr:key", () => report(loadDLQ()));

  // ---- actions: forms that queue a job (POST /api/v1/jobs) ----

  const act = { pending: null };

  // options fills select with [value, text] pairs, keeping what was chosen when it is
  // still there.
  function options(select, pairs) {
    const chosen = select.value;
    select.replaceChildren(...pairs.map(([v, text]) => el("option", { value: v }, text)));
    if (pairs.some(([v]) => v === chosen)) select.value = chosen;
  }

  // snaps caches each repo's snapshots, newest first, as [value, text] pairs for a
  // select; loadActionChoices empties it, so a reload reads them again.
  const snaps = new Map(); // repo → Promise of pairs

  function snapsOf(repo) {
    if (!snaps.has(repo)) {
      const p = api("snapshots?repo=" + encodeURIComponent(repo)).then((list) => [["latest", "latest"],
        ...list.snapshots.slice().reverse().map((s) => [s.id, s.id.slice(0, 8) + " · " + new Date(s.time).toLocaleString() + " · " + s.source])]);
      p.catch(() => snaps.delete(repo));
      snaps.set(repo, p);
    }
    return snaps.get(repo);
  }

  // fillSnaps fills the snapshot select that repoSelect names (data-snaps) with the
  // snapshots of the repo chosen in it.
  async function fillSnaps(repoSelect) {
    const target = repoSelect.dataset.snaps && $(repoSelect.dataset.snaps);
    if (!target || !repoSelect.value) return;
    const repo = repoSelect.value;
    const pairs = await snapsOf(repo);
    if (repoSelect.value === repo) options(target, pairs); // not if the choice moved on
  }

  // pickOther moves a "to repo" select (data-other names the "from" one) off the repo
  // chosen in the other, when there is another to pick.
  function pickOther(sel) {
    const other = sel.dataset.other && $(sel.dataset.other);
    if (!other || sel.value !== other.value) return;
    const alt = [...sel.options].find((o) => o.value !== other.value);
    if (alt) sel.value = alt.value;
  }

  async function loadActionChoices() {
    const [info, sources] = await Promise.all([api("info"), api("sources")]);
    const names = new Map();
    for (const s of sources.sources) if (s.name && !names.has(s.name)) names.set(s.name, s);
    options($("act-backup-source"), [...names.values()].map((s) => [s.name, s.name + (s.kind ? " (" + s.kind + ")" : "")]));
    $("act-backup-note").hidden = names.size > 0;
    const repos = info.repos.map((r) => [r, r + (r === info.default_repo ? " (default)" : "")]);
    snaps.clear();
    const selects = [...document.querySelectorAll("#actions select.act-repo")];
    for (const sel of selects) {
      const fresh = !sel.options.length;
      options(sel, repos);
      if (fresh && info.default_repo && repos.some(([r]) => r === info.default_repo)) sel.value = info.default_repo;
    }
    for (const sel of selects) pickOther(sel);
    await Promise.all(selects.map(fillSnaps));
  }

  for (const sel of document.querySelectorAll("#actions select.act-repo")) {
    sel.addEventListener("change", () => {
      report(fillSnaps(sel));
      for (const o of document.querySelectorAll('#actions select.act-repo[data-other="' + sel.id + '"]')) pickOther(o);
    });
  }

  // request builds the job a form asks for, or returns a string that says what is wrong.
  function request(form) {
    const v = (id) => $(id).value;
    switch (form.id) {
      case "act-backup": return { kind: "backup", args: { source_name: v("act-backup-source") } };
      case "act-verify": return { kind: "verify", args: { repo: v("act-verify-repo"), read_data: $("act-verify-data").checked } };
      case "act-drill": return { kind: "drill", args: { repo: v("act-drill-repo"), snapshot: v("act-drill-snap") } };
      case "act-replicate":
        if (v("act-replicate-from") === v("act-replicate-to")) return "Replicate: pick two different repos (from " + v("act-replicate-from") + "). A worker with one repo has nowhere to copy to: add another under repos: in its config.";
        return { kind: "replicate", args: { from: v("act-replicate-from"), snapshot: v("act-replicate-snap"), to: v("act-replicate-to") } };
      case "act-checkpoint": return { kind: "checkpoint", args: { repo: v("act-checkpoint-repo"), snapshot: v("act-checkpoint-snap"), label: v("act-checkpoint-label").trim() } };
    }
    return null;
  }

  function say(text, job) {
    const r = $("act-result");
    r.textContent = text;
    r.hidden = !text;
    if (job) r.dataset.job = job; else delete r.dataset.job;
  }

  function onActionSubmit(ev) {
    ev.preventDefault();
    const req = request(ev.target);
    if (!req) return;
    if (typeof req === "string") {
      act.pending = null;
      $("act-confirm").hidden = true;
      say(req);
      return;
    }
    act.pending = req;
    $("act-what").textContent = "Queue this " + req.kind + " job? Any worker of the pool may run it.";
    $("act-json").textContent = JSON.stringify(req, null, 2);
    $("act-confirm").dataset.kind = req.kind;
    $("act-confirm").hidden = false;
    say("");
  }

  function onActionConfirm() {
    const req = act.pending;
    if (!req) return;
    $("act-yes").disabled = true;
    api("jobs", "POST", req).then((res) => {
      act.pending = null;
      $("act-confirm").hidden = true;
      say("Queued " + req.kind + " job " + res.id + ": it shows in the jobs table.", res.id);
      window.dispatchEvent(new Event("brr:queued"));
    }).catch((err) => {
      say(err.status === 401 ? "This needs the API key: enter it above, then confirm again." : req.kind + ": " + err.message);
    }).finally(() => { $("act-yes").disabled = false; });
  }

  for (const f of document.querySelectorAll("#actions form")) f.addEventListener("submit", onActionSubmit);
  $("act-yes").addEventListener("click", onActionConfirm);
  $("act-no").addEventListener("click", () => { act.pending = null; $("act-confirm").hidden = true; });
  report(loadActionChoices());
  setInterval(() => report(loadActionChoices()), 60000);
  // A replicate adds snapshots to its target repo; any job may have changed them.
  for (const name of ["brr:key", "brr:snapshot", "brr:jobended"]) window.addEventListener(name, () => report(loadActionChoices()));
})();
