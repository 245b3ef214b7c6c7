// brr dashboard, the Browse panel: a snapshot's tree (one directory at a time, as the
// worker reads it), a download link per entry (a directory comes as tar) and the diff of
// two snapshots. It uses the helpers app.js exposes as window.brrDashboard.
"use strict";

(() => {
  const d = window.brrDashboard;
  if (!d) return;
  const { api, el, fill, fmtBytes, authHeaders, showBanner } = d;
  const $ = (id) => document.getElementById(id);
  const browse = { snapshots: [], snap: "", path: "/" };

  function label(s) {
    return s.id.slice(0, 8) + " · " + new Date(s.time).toLocaleString() + " · " + s.source;
  }

  function options(select, list, chosen) {
    select.replaceChildren(...list.map((s) => el("option", { value: s.id, selected: s.id === chosen ? "selected" : null }, label(s))));
  }

  async function loadSnapshots() {
    const list = (await api("snapshots")).snapshots.slice().reverse(); // newest first
    browse.snapshots = list;
    $("browse-note").hidden = list.length > 0;
    if (!list.some((s) => s.id === browse.snap)) {
      browse.snap = list.length ? list[0].id : "";
      browse.path = "/";
    }
    options($("browse-snap"), list, browse.snap);
    const a = $("diff-a").value, b = $("diff-b").value;
    options($("diff-a"), list, list.some((s) => s.id === a) ? a : (list[1] || list[0] || {}).id);
    options($("diff-b"), list, list.some((s) => s.id === b) ? b : (list[0] || {}).id);
    if (browse.snap) await loadTree();
    else fill($("browse-body"), [], "no snapshots yet", 5);
  }

  function fileURL(path) {
    return "/api/v1/snapshots/" + encodeURIComponent(browse.snap) + "/file?path=" + encodeURIComponent(path);
  }

  // download saves what url answers. Without a key the link does it by itself; with one
  // the request must carry it, so the page fetches the bytes and saves them.
  async function download(ev, url, name) {
    const headers = authHeaders();
    if (!headers.Authorization) return;
    ev.preventDefault();
    const res = await fetch(url, { headers, cache: "no-store" });
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
      showBanner(msg);
      return;
    }
    const href = URL.createObjectURL(await res.blob());
    const a = el("a", { href, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  }

  function crumbs() {
    const parts = browse.path.split("/").filter(Boolean);
    const out = [el("button", { type: "button", class: "link", data: { path: "/" } }, "/")];
    parts.forEach((p, i) => {
      out.push(el("button", { type: "button", class: "link", data: { path: "/" + parts.slice(0, i + 1).join("/") } }, p), "/");
    });
    $("browse-path").replaceChildren(...out);
  }

  async function loadTree() {
    crumbs();
    const tree = await api("snapshots/" + encodeURIComponent(browse.snap) + "/tree?path=" + encodeURIComponent(browse.path));
    const rows = tree.entries.map((e) => {
      const name = e.type === "dir"
        ? el("button", { type: "button", class: "link", data: { path: e.path } }, e.name + "/")
        : el("span", {}, e.name + (e.type === "symlink" ? " → " + e.target : ""));
      const dl = e.type === "symlink" ? el("span", { class: "muted" }, "–")
        : el("a", { href: fileURL(e.path), download: e.name + (e.type === "dir" ? ".tar" : ""), class: "download" }, e.type === "dir" ? "tar" : "download");
      if (dl.tagName === "A") dl.addEventListener("click", (ev) => download(ev, dl.href, dl.getAttribute("download")));
      return el("tr", { data: { name: e.name, type: e.type } },
        el("td", { class: "mono path" }, name),
        el("td", {}, e.type),
        el("td", { class: "nowrap" }, e.type === "file" ? fmtBytes(e.size) : "–"),
        el("td", { class: "wide nowrap" }, new Date(e.mtime).toLocaleString()),
        el("td", {}, dl));
    });
    fill($("browse-body"), rows, "empty directory", 5);
    $("browse-truncated").hidden = !tree.truncated;
  }

  async function loadDiff() {
    const a = $("diff-a").value, b = $("diff-b").value;
    if (!a || !b) return;
    const diff = await api("snapshots/" + encodeURIComponent(a) + "/diff/" + encodeURIComponent(b));
    const sign = { added: "+", removed: "−", modified: "M", metadata: "U" };
    fill($("diff-body"), diff.changes.map((c) => el("tr", { data: { change: c.change, path: c.path } },
      el("td", {}, el("span", { class: "badge change-" + c.change, title: c.change }, sign[c.change] || c.change)),
      el("td", { class: "mono path" }, c.path + (c.type === "dir" ? "/" : "")),
      el("td", { class: "nowrap" }, c.type !== "file" ? "–"
        : c.change === "added" ? fmtBytes(c.new_size)
        : c.change === "removed" ? fmtBytes(c.old_size)
        : fmtBytes(c.old_size) + " → " + fmtBytes(c.new_size)),
      el("td", {}, (c.fields || []).join(", ")))), "no differences", 4);
    $("diff-summary").textContent = diff.changes.length + (diff.truncated ? "+" : "") + " changes";
  }

  function report(p) {
    p.catch((e) => { if (e.status !== 401) showBanner(e.message); });
  }

  function go(path) {
    browse.path = path;
    report(loadTree());
  }

  $("browse-snap").addEventListener("change", (ev) => { browse.snap = ev.target.value; go("/"); });
  for (const id of ["browse-body", "browse-path"]) {
    $(id).addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-path]");
      if (b) go(b.dataset.path);
    });
  }
  $("diff-form").addEventListener("submit", (ev) => { ev.preventDefault(); report(loadDiff()); });
  report(loadSnapshots());
  setInterval(() => report(loadSnapshots()), 60000);
  window.addEventListener("brr:snapshot", () => report(loadSnapshots()));
})();
