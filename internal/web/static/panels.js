// brr dashboard, the panels that only read: the header and footer (GET /info), health
// and workers, sources, replication, repos, throughput and durations (drawn by hand as
// SVG), and the recent events. It uses what app.js exposes as window.brrDashboard and
// adds its loaders there for live.js.
"use strict";

(() => {
  const d = window.brrDashboard;
  if (!d) return;
  const { MAX_EVENTS, state } = d;
  const { api, el, svg, badge, fill, note, fmtBytes, fmtSecs, fmtMS, ago, pct, plural, short } = d;
  const $ = (id) => document.getElementById(id);

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

  Object.assign(d, { loadInfo, loadHealth, loadSources, loadReplication, loadRepos, loadAnalytics, drawCharts, loadEvents, renderEvents });
})();
