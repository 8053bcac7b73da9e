// ferry's web app: browse, upload resumably (tus-js-client), download, send and receive.
// The session is an HttpOnly cookie the page never sees; every change carries the CSRF
// token the login (or /api/me) answered. Everything shown from the server goes into the
// page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: null, admin: false, home: "", csrf: "", shared: [], path: "", entries: [], sort: ["name", 1], open: true };

// ---- HTTP ----------------------------------------------------------------------------

function headers(extra) {
  const h = Object.assign({ "X-Requested-With": "ferry-web" }, extra || {});
  if (state.csrf) h["X-Ferry-CSRF"] = state.csrf;
  return h;
}

async function api(method, url, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), credentials: "same-origin" };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(url, init);
  if (resp.status === 401 && state.user) { showLogin("Your session ended; log in again."); throw new Error("not logged in"); }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || text.trim() || resp.status + " " + resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// ---- small helpers --------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function bytes(n) {
  if (n < 1024) return n + " B";
  const u = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + " " + u[i];
}

function when(secs) {
  const d = new Date(secs * 1000);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function toast(text, bad) {
  const t = el("div", { class: bad ? "toast bad" : "toast" }, text);
  $("toasts").append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 4000);
}

// A tree path ("~alice/docs") as a URL path under a prefix, each segment encoded.
function urlOf(prefix, path) {
  const segs = path.split("/").filter(Boolean).map(encodeURIComponent);
  return prefix + segs.join("/");
}

function join(dir, name) { return dir ? dir + "/" + name : name; }

// ---- session ----------------------------------------------------------------------------

function showLogin(message) {
  state.user = null;
  for (const id of ["files", "inbox", "outbox"]) $(id).hidden = true;
  $("tabs").hidden = true; $("logout").hidden = true; $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-form").user.focus();
}

async function start() {
  let me;
  try {
    const resp = await fetch("/api/me", { headers: headers(), credentials: "same-origin" });
    if (resp.status === 401) return showLogin();
    me = await resp.json();
  } catch (e) { return showLogin("The server did not answer: " + e.message); }
  state.user = me.user; state.admin = me.admin; state.home = me.home || ""; state.csrf = me.csrf || "";
  state.shared = me.shared || []; state.open = !me.user;
  $("login").hidden = true; $("tabs").hidden = false;
  $("logout").hidden = state.open;
  $("who").textContent = state.open ? "open server (no accounts)" : "logged in as " + me.user;
  if (me.quota) $("quota").textContent = bytes(me.used || 0) + " used of " + bytes(me.quota);
  if (!state.open) { watchEvents(); refreshInbox(); }
  route();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  try {
    const r = await api("POST", "/api/login", { user: f.user.value, password: f.password.value, cookie: true });
    state.csrf = r.csrf; f.password.value = "";
    await start();
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong user name or password." : e.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("DELETE", "/api/tokens/current"); } catch (_) { /* gone already */ }
  if (events) events.close();
  state.csrf = "";
  showLogin("You are logged out.");
});

// ---- routing ------------------------------------------------------------------------------

function route() {
  if (!state.user && !state.open) return;
  const hash = decodeURIComponent(location.hash.slice(1) || "/files/");
  let tab = "files";
  if (hash.startsWith("/inbox")) tab = "inbox";
  else if (hash.startsWith("/outbox")) tab = "outbox";
  for (const id of ["files", "inbox", "outbox"]) $(id).hidden = id !== tab;
  for (const a of document.querySelectorAll("#tabs a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (tab === "files") {
    let path = hash.replace(/^\/files\/?/, "").replace(/\/+$/, "");
    if (!path && state.home) path = state.home;
    openFolder(path);
  } else if (tab === "inbox") refreshInbox();
  else refreshOutbox();
}
window.addEventListener("hashchange", route);

// ---- files ----------------------------------------------------------------------------------

async function openFolder(path) {
  state.path = path;
  renderCrumbs();
  let listing;
  try {
    const resp = await fetch(urlOf("/files/", path) + "/", { headers: headers({ Accept: "application/json" }), credentials: "same-origin" });
    if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).error || resp.statusText);
    listing = await resp.json();
  } catch (e) { toast("Cannot open /" + path + ": " + e.message, true); return; }
  state.entries = listing.entries;
  renderEntries();
}

function renderCrumbs() {
  const ol = $("crumbs");
  ol.replaceChildren();
  const parts = state.path.split("/").filter(Boolean);
  ol.append(el("li", {}, el("a", { href: "#/files//" }, "all files")));
  parts.forEach((p, i) => {
    const target = parts.slice(0, i + 1).join("/");
    const last = i === parts.length - 1;
    ol.append(el("li", {}, el("a", { href: "#/files/" + target.split("/").map(encodeURIComponent).join("/"), "aria-current": last ? "page" : null }, p)));
  });
  for (const s of state.shared) {
    if (!parts.length) ol.append(el("li", {}, el("a", { href: "#/files/" + s.path }, s.path + (s.write ? "" : " (read-only)"))));
  }
}

function sorted(entries) {
  const [key, dir] = state.sort;
  const q = $("search").value.trim().toLowerCase();
  return entries
    .filter((e) => !q || e.name.toLowerCase().includes(q))
    .sort((a, b) => {
      if ((a.type === "dir") !== (b.type === "dir")) return a.type === "dir" ? -1 : 1;
      const x = a[key], y = b[key];
      return (typeof x === "string" ? x.localeCompare(y) : x - y) * dir;
    });
}

function renderEntries() {
  const body = $("entries");
  body.replaceChildren();
  const rows = sorted(state.entries);
  $("empty").hidden = rows.length > 0;
  for (const b of document.querySelectorAll("th button")) {
    if (b.dataset.sort === state.sort[0]) b.setAttribute("aria-sort", state.sort[1] > 0 ? "ascending" : "descending");
    else b.removeAttribute("aria-sort");
  }
  for (const e of rows) {
    const path = join(state.path, e.name);
    const isDir = e.type === "dir";
    const link = isDir
      ? el("a", { href: "#/files/" + path.split("/").map(encodeURIComponent).join("/") }, e.name + "/")
      : el("a", { href: urlOf("/files/", path), download: e.name }, e.name);
    const actions = el("td", { class: "actions" },
      isDir ? null : el("a", { class: "button", href: urlOf("/files/", path), download: e.name, "aria-label": "Download " + e.name }, "Download"),
      isDir ? null : el("button", { type: "button", onclick: () => showSha(tr, e), "aria-label": "SHA-256 of " + e.name }, "SHA-256"),
      el("button", { type: "button", onclick: () => rename(e), "aria-label": "Rename " + e.name }, "Rename"),
      el("button", { type: "button", onclick: () => remove(e), "aria-label": "Delete " + e.name }, "Delete"));
    const tr = el("tr", {},
      el("td", { class: "name" }, link),
      el("td", { class: "num" }, isDir ? "" : bytes(e.size)),
      el("td", { class: "date" }, when(e.mtime)),
      actions);
    body.append(tr);
  }
}

function showSha(tr, e) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("sha-row")) return next.remove();
  const text = e.sha256 ? "SHA-256 " + e.sha256 : "SHA-256 not recorded (the file was put there outside ferry)";
  tr.after(el("tr", { class: "sha-row" }, el("td", { colspan: "4", class: "sha" }, text)));
}

for (const b of document.querySelectorAll("th button")) {
  b.addEventListener("click", () => {
    const key = b.dataset.sort;
    state.sort = [key, state.sort[0] === key ? -state.sort[1] : 1];
    renderEntries();
  });
}
$("search").addEventListener("input", renderEntries);

$("new-folder").addEventListener("click", async () => {
  const name = prompt("Name of the new folder");
  if (!name) return;
  try { await api("POST", "/api/files/mkdir", { path: join(state.path, name), parents: false }); openFolder(state.path); }
  catch (e) { toast(e.message, true); }
});

async function rename(e) {
  const name = prompt("New name for " + e.name, e.name);
  if (!name || name === e.name) return;
  try {
    await api("POST", "/api/files/move", { from: join(state.path, e.name), to: join(state.path, name), overwrite: false });
    toast("Renamed " + e.name + " to " + name);
    openFolder(state.path);
  } catch (err) { toast(err.message, true); }
}

async function remove(e) {
  const what = e.type === "dir" ? "the folder " + e.name + " and everything in it" : e.name;
  if (!confirm("Delete " + what + "?")) return;
  try {
    const q = e.type === "dir" ? "?recursive=true" : "";
    await api("DELETE", urlOf("/files/", join(state.path, e.name)) + q);
    toast("Deleted " + e.name);
    openFolder(state.path);
  } catch (err) { toast(err.message, true); }
}

// ---- uploads ----------------------------------------------------------------------------------

const queue = [];        // every transfer this page knows
const RUNNING_MAX = 3;   // files at once

// `dir` is where the file goes: a tree path ("~alice/docs"), sent as "/~alice/docs".
function enqueue(file, dir, relayTo) {
  const t = { file, dir, relayTo, done: 0, state: "waiting", upload: null };
  t.row = transferRow(t);
  queue.push(t);
  $("transfers").hidden = false;
  pump();
}

function transferRow(t) {
  const label = el("span", { class: "what" }, (t.relayTo ? t.file.name + " → " + t.relayTo : "/" + join(t.dir, t.file.name)));
  const bar = el("progress", { max: String(t.file.size || 1), value: "0", "aria-label": "Progress of " + t.file.name });
  const status = el("span", { class: "muted" }, "waiting");
  const pause = el("button", { type: "button", onclick: () => togglePause(t) }, "Pause");
  const cancel = el("button", { type: "button", onclick: () => cancelTransfer(t) }, "Cancel");
  const li = el("li", {}, label, bar, status, pause, cancel);
  $("queue").append(li);
  return { li, bar, status, pause, cancel };
}

function updateTotal() {
  const live = queue.filter((t) => t.state !== "cancelled");
  const size = live.reduce((a, t) => a + t.file.size, 0);
  const done = live.reduce((a, t) => a + t.done, 0);
  $("total-bar").max = Math.max(size, 1);
  $("total-bar").value = done;
  const finished = live.filter((t) => t.state === "done").length;
  $("total").textContent = finished + " of " + live.length + " files, " + bytes(done) + " of " + bytes(size);
}

function pump() {
  updateTotal();
  const running = queue.filter((t) => t.state === "uploading").length;
  const next = queue.find((t) => t.state === "waiting");
  if (next && running < RUNNING_MAX) { begin(next); pump(); }
}

// The whole file's SHA-256, computed while the upload runs (hash-wasm, incremental: Web
// Crypto has no streaming digest). The request that completes the upload carries it as
// Repr-Digest, and the server checks it before it places the file.
function startHash(t) {
  t.hashing = (async () => {
    const h = await hashwasm.createSHA256();
    h.init();
    const step = 4 << 20;
    for (let at = 0; at < t.file.size; at += step) {
      if (t.state === "cancelled") throw new Error("cancelled");
      h.update(new Uint8Array(await t.file.slice(at, at + step).arrayBuffer()));
    }
    return btoa(String.fromCharCode(...h.digest("binary")));
  })();
  t.hashing.catch(() => { t.hashing = null; }); // a failed read is tried again on retry
}

// tus-js-client's file reader, holding the last chunk back until the digest is known.
function readerFor(t) {
  return {
    async openFile(input, chunkSize) {
      const source = await tus.defaultOptions.fileReader.openFile(input, chunkSize);
      return {
        get size() { return source.size; },
        async slice(start, end) {
          if (end >= t.file.size && !t.digest) {
            if (!t.hashing) startHash(t);
            t.row.status.textContent = "checking SHA-256";
            t.digest = await t.hashing;
          }
          return source.slice(start, end);
        },
        close: () => source.close(),
      };
    },
  };
}

function fingerprint(t) {
  return ["ferry", state.user || "-", t.relayTo || "", t.dir, t.file.name, t.file.size, t.file.lastModified].join("|");
}

async function begin(t) {
  t.state = "uploading";
  startHash(t);
  const metadata = { filename: t.file.name, filetype: t.file.type || "application/octet-stream" };
  if (t.relayTo) metadata.relay_to = t.relayTo; else metadata.dir = "/" + t.dir;
  const upload = new tus.Upload(t.file, {
    endpoint: "/tus/",
    chunkSize: 64 << 20,
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    metadata,
    headers: headers(),
    fileReader: readerFor(t),
    onBeforeRequest: (req) => {
      if (req.getMethod() === "PATCH" && t.digest) req.setHeader("Repr-Digest", "sha-256=:" + t.digest + ":");
    },
    fingerprint: () => Promise.resolve(fingerprint(t)),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    onProgress: (sent, total) => {
      t.done = sent; t.row.bar.value = sent;
      t.row.status.textContent = Math.floor((sent / Math.max(total, 1)) * 100) + "%";
      updateTotal();
    },
    onSuccess: () => {
      t.state = "done"; t.done = t.file.size; t.row.bar.value = t.file.size;
      t.row.status.textContent = t.relayTo ? "sent" : "uploaded, SHA-256 verified";
      t.row.pause.hidden = true; t.row.cancel.hidden = true;
      if (!t.relayTo && t.dir === state.path) openFolder(state.path);
      if (t.relayTo) refreshOutbox();
      pump();
    },
    onError: (err) => {
      t.state = "failed";
      const body = err.originalResponse ? err.originalResponse.getBody() : "";
      let reason = err.message;
      try { reason = JSON.parse(body).error || reason; } catch (_) { /* not JSON */ }
      t.row.status.textContent = "failed: " + reason;
      t.row.pause.textContent = "Retry";
      toast(t.file.name + ": " + reason, true);
      pump();
    },
  });
  t.upload = upload;
  try {
    // An earlier attempt of this file (this page before a reload, another tab, a browser
    // before its restart) resumes where the server is.
    const previous = await upload.findPreviousUploads();
    if (previous.length) {
      upload.resumeFromPreviousUpload(previous[0]);
      t.row.status.textContent = "resuming";
    }
  } catch (e) {
    if (t.state !== "cancelled") { t.state = "failed"; t.row.status.textContent = "failed: " + e.message; }
    return pump();
  }
  if (t.state !== "uploading") return;
  upload.start();
}

function togglePause(t) {
  if (t.state === "uploading") {
    t.upload.abort(); t.state = "paused"; t.row.pause.textContent = "Resume"; t.row.status.textContent = "paused";
    pump();
  } else if (t.state === "paused" || t.state === "failed") {
    t.state = "uploading"; t.row.pause.textContent = "Pause";
    if (t.upload) t.upload.start(); else begin(t);
  }
}

async function cancelTransfer(t) {
  const was = t.state;
  t.state = "cancelled";
  t.row.li.remove();
  if (t.upload && (was === "uploading" || was === "paused" || was === "failed")) {
    try { await t.upload.abort(true); } catch (_) { /* already gone */ }
  }
  pump();
}

// Files from a picker or a drop: `rel` is the folder path inside what was chosen.
function uploadAll(items, relayTo) {
  for (const { file, rel } of items) {
    const dir = rel ? join(state.path, rel) : state.path;
    enqueue(file, dir, relayTo);
  }
}

$("pick-files").addEventListener("change", (ev) => {
  uploadAll([...ev.target.files].map((file) => ({ file, rel: "" })));
  ev.target.value = "";
});

$("pick-folder").addEventListener("change", (ev) => {
  uploadAll([...ev.target.files].map((file) => ({ file, rel: file.webkitRelativePath.split("/").slice(0, -1).join("/") })));
  ev.target.value = "";
});

// A dropped folder, walked: files with their folder paths, and the empty folders.
async function walkEntry(entry, rel, files, emptyDirs) {
  if (entry.isFile) {
    const file = await new Promise((ok, bad) => entry.file(ok, bad));
    files.push({ file, rel });
    return;
  }
  const reader = entry.createReader();
  const here = join(rel, entry.name);
  let any = false;
  for (;;) {
    const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
    if (!batch.length) break;
    any = true;
    for (const child of batch) await walkEntry(child, here, files, emptyDirs);
  }
  if (!any) emptyDirs.push(here);
}

const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const entries = [...ev.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = [], emptyDirs = [];
  if (entries.length) {
    for (const e of entries) await walkEntry(e, "", files, emptyDirs);
  } else {
    for (const file of ev.dataTransfer.files) files.push({ file, rel: "" });
  }
  for (const d of emptyDirs) {
    try { await api("POST", "/api/files/mkdir", { path: join(state.path, d), parents: true }); } catch (e) { toast(e.message, true); }
  }
  uploadAll(files);
  if (emptyDirs.length && !files.length) openFolder(state.path);
});

// ---- relay: send, inbox, outbox -----------------------------------------------------------------

$("send-files").addEventListener("click", () => $("send-dialog").showModal());
$("send-cancel").addEventListener("click", () => $("send-dialog").close());
$("send-form").addEventListener("submit", (ev) => {
  const f = ev.target;
  const to = f.to.value.split(",").map((s) => s.trim()).filter(Boolean).join(",");
  if (!to || !f.files.files.length) return;
  for (const file of f.files.files) enqueue(file, "", to);
  f.reset();
});

let events = null;
function watchEvents() {
  if (events) events.close();
  events = new EventSource("/api/events", { withCredentials: true });
  events.addEventListener("item", (ev) => {
    let item = {};
    try { item = JSON.parse(ev.data); } catch (_) { /* keep empty */ }
    toast("New from the relay: " + (item.name || "an item"));
    refreshInbox();
  });
  events.addEventListener("delivery", () => refreshOutbox());
  // EventSource reconnects by itself; a revoked session ends it for good.
}

async function refreshInbox() {
  let items;
  try { items = (await api("GET", "/api/relay/inbox")).items; } catch (e) { return; }
  const badge = $("inbox-count");
  badge.hidden = items.length === 0; badge.textContent = String(items.length);
  const ul = $("inbox-items");
  ul.replaceChildren();
  $("inbox-empty").hidden = items.length > 0;
  for (const i of items) {
    const status = el("span", { class: "muted" });
    const li = el("li", { "data-id": i.id },
      el("span", { class: "what" }, i.kind === "folder" ? i.name + "/" : i.name, el("span", { class: "muted" }, " from " + i.from + (i.kind === "folder" ? "" : ", " + bytes(i.size)))),
      status,
      el("button", { type: "button", onclick: () => receive(i, status) }, i.kind === "text" ? "Read" : "Receive"),
      el("button", { type: "button", onclick: () => decline(i) }, "Decline"));
    ul.append(li);
  }
}

// Fetches an item, checks its SHA-256 while it arrives, hands it to the browser to save,
// and only then acknowledges it (the server deletes its copy after the last recipient).
async function receive(i, status) {
  const url = "/api/relay/items/" + encodeURIComponent(i.id) + "/content";
  try {
    const resp = await fetch(url, { headers: headers(), credentials: "same-origin" });
    if (!resp.ok) throw new Error(resp.statusText);
    const reader = resp.body.getReader();
    const h = await hashwasm.createSHA256();
    h.init();
    const parts = [];
    let got = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      h.update(value); parts.push(value); got += value.length;
      status.textContent = Math.floor((got / Math.max(i.size, 1)) * 100) + "%";
    }
    const sha = h.digest("hex");
    if (sha !== i.sha256) throw new Error("it arrived damaged (SHA-256 " + sha + "); try again");
    if (i.kind === "text") {
      const text = new TextDecoder().decode(await new Blob(parts).arrayBuffer());
      status.replaceChildren(el("q", {}, text));
    } else if (i.kind !== "folder") {
      const a = el("a", { href: URL.createObjectURL(new Blob(parts)), download: i.name.split("/").pop() });
      document.body.append(a); a.click(); a.remove();
      status.textContent = "saved, SHA-256 verified";
    }
    await api("POST", "/api/relay/items/" + encodeURIComponent(i.id) + "/ack", { sha256: sha });
    toast("Received " + i.name);
    if (i.kind !== "text") refreshInbox();
  } catch (e) { status.textContent = ""; toast("Receiving " + i.name + " failed: " + e.message, true); }
}

async function decline(i) {
  try { await api("POST", "/api/relay/items/" + encodeURIComponent(i.id) + "/decline", {}); refreshInbox(); }
  catch (e) { toast(e.message, true); }
}

async function refreshOutbox() {
  if ($("outbox").hidden) return;
  let items;
  try { items = (await api("GET", "/api/relay/outbox")).items; } catch (e) { return; }
  const ul = $("outbox-items");
  ul.replaceChildren();
  $("outbox-empty").hidden = items.length > 0;
  for (const i of items) {
    const who = el("span", {});
    for (const r of i.recipients || []) {
      const pct = r.state === "downloading" && i.size ? " " + Math.floor((r.bytes * 100) / i.size) + "%" : "";
      who.append(el("span", { class: "state-" + r.state, "data-user": r.user }, r.user + ": " + r.state + pct), " ");
    }
    ul.append(el("li", { "data-id": i.id }, el("span", { class: "what" }, i.name, el("span", { class: "muted" }, " " + bytes(i.size))), who));
  }
}

start();
