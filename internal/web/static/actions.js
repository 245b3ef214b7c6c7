// brr dashboard, the panels that change things: the dead letters (retry or discard one)
// and the Actions (back up a source, verify, drill, replicate, checkpoint). Every change
// asks for a confirmation first, which says what will be sent, and needs the API key
// (the page asks for it, as the Cancel button of the jobs table does). It uses the
// helpers app.js exposes as window.brrDashboard.
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

  $("dlq-body").addEventListener("click", onDLQClick);
  $("dlq-reload").addEventListener("click", () => report(loadDLQ()));
  report(loadDLQ());
  setInterval(() => report(loadDLQ()), 30000);
  // A job that ended may have gone to the dead letters, or left them.
  window.addEventListener("brr:jobended", () => report(loadDLQ()));
  window.addEventListener("brr:key", () => report(loadDLQ()));
})();
