// brr dashboard, live updates and the start: follows /api/v1/events/stream, reloads
// what an event changes, asks for the API key, and loads every panel at the start and
// on a timer. It uses what app.js, jobs.js and panels.js put in window.brrDashboard.
"use strict";

(() => {
  const d = window.brrDashboard;
  if (!d) return;
  const { KEY, FINAL, MAX_EVENTS, state } = d;
  const { authHeaders, askKey, showBanner, noise, run, later } = d;
  const { loadQueue, loadJobs, putJob, renderJobs, onJobsClick } = d;
  const { loadInfo, loadHealth, loadSources, loadReplication, loadRepos, loadAnalytics, drawCharts, loadEvents, renderEvents } = d;
  const $ = (id) => document.getElementById(id);

  // ---- live updates ----

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

  start();
})();
