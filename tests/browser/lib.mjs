// What the browser tests share: checks that fail loudly, waiting, hashing, a slow proxy.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";

export function check(cond, what) {
  if (!cond) throw new Error("FAILED: " + what);
  console.log("ok - " + what);
}

export function sha256File(p) {
  const h = crypto.createHash("sha256");
  const fd = fs.openSync(p, "r");
  const buf = Buffer.alloc(8 << 20);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (!n) break;
    h.update(buf.subarray(0, n));
  }
  fs.closeSync(fd);
  return h.digest("hex");
}

export async function until(what, f, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error("FAILED: timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A TCP proxy in front of the server that caps the browser→server rate (so a large upload
// takes seconds) and counts the bytes that went up.
// `counter.rate` may be changed while it runs.
export function proxy(target, bytesPerSec) {
  const [host, port] = new URL(target).host.split(":");
  const counter = { up: 0, rate: bytesPerSec };
  const srv = net.createServer((client) => {
    const up = net.connect(Number(port), host);
    const id = Math.random().toString(36).slice(2, 6);
    let allowance = 0;
    let last = Date.now();
    client.on("data", (chunk) => {
      const line = chunk.subarray(0, 80).toString("latin1");
      if (process.env.DEBUG_PROXY && /^(GET|HEAD|POST|PATCH|PUT|DELETE|OPTIONS) /.test(line)) console.log(`proxy ${id} ${line.split("\r\n")[0]} at ${Date.now() % 100000}`);
      counter.up += chunk.length;
      up.write(chunk);
      const now = Date.now();
      allowance += ((now - last) / 1000) * counter.rate;
      allowance = Math.min(allowance, counter.rate / 10);
      last = now;
      allowance -= chunk.length;
      if (allowance < 0) {
        client.pause();
        setTimeout(() => client.resume(), (-allowance / counter.rate) * 1000);
      }
    });
    up.pipe(client);
    const log = (what) => process.env.DEBUG_PROXY && console.log(`proxy ${id} ${what} at ${Date.now() % 100000} after ${counter.up}`);
    client.on("end", () => { log("client end"); up.end(); });
    client.on("close", () => log("client close"));
    // The server closed (e.g. after answering a request early): like a real peer's socket,
    // take nothing more from the browser — the response still reaches it, then the end.
    up.on("close", () => {
      log("upstream close");
      client.pause();
      client.end();
      setTimeout(() => client.destroy(), 200);
    });
    const close = () => { client.destroy(); up.destroy(); };
    client.on("error", close);
    up.on("error", close);
  });
  return new Promise((ok) => srv.listen(0, "127.0.0.1", () => ok({ url: "http://127.0.0.1:" + srv.address().port, counter, srv })));
}

// Serves the files of `dir` on a loopback port of its own (another origin than the server).
export function staticSite(dir) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
  const srv = http.createServer((req, res) => {
    const name = new URL(req.url, "http://x").pathname.slice(1) || "index.html";
    const file = path.join(dir, path.basename(name));
    if (!fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": types[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((ok) => srv.listen(0, "127.0.0.1", () => ok({ url: "http://127.0.0.1:" + srv.address().port, srv })));
}

// A file of `mib` MiB of random bytes; returns its SHA-256.
export function randomFile(p, mib) {
  const fd = fs.openSync(p, "w");
  for (let i = 0; i < mib; i++) fs.writeSync(fd, crypto.randomBytes(1 << 20));
  fs.closeSync(fd);
  return sha256File(p);
}

// The offset the server holds for the upload whose URL tus-js-client saved in the page's
// localStorage, once the interrupted request has landed (non-zero, the same for 500 ms) —
// as a user who adds the file again a moment later sees it.
export function settledOffset(page, token = null) {
  return page.evaluate(async (token) => {
    const headers = { "Tus-Resumable": "1.0.0" };
    if (token) headers.Authorization = "Bearer " + token;
    let last = -1;
    for (let i = 0; i < 60; i++) {
      const key = Object.keys(localStorage).find((k) => k.startsWith("tus::"));
      if (key) {
        const r = await fetch(JSON.parse(localStorage.getItem(key)).uploadUrl, { method: "HEAD", headers });
        const offset = Number(r.headers.get("Upload-Offset"));
        if (offset > 0 && offset === last) return offset;
        last = offset;
      }
      await new Promise((ok) => setTimeout(ok, 500));
    }
    return 0;
  }, token);
}
