// The other side of a fault: the ferry server is killed (kill -9, then SIGTERM) while the
// web app uploads at its defaults in Debian's chromium, and started again 1.5 s later on the
// same address. The page must finish on its own (tus-js-client's retries), the file must
// arrive whole, and only what the server had not yet made durable may be sent twice.
// Usage: node server_restart.mjs FERRY_BIN WORK_DIR
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { check, proxy, randomFile, sha256File, until } from "./lib.mjs";

const [ferry, work] = process.argv.slice(2);
const data = path.join(work, "restart-data");
let failures = 0;

const port = await new Promise((ok) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
});
const url = `http://127.0.0.1:${port}`;
let server = null;

async function start() {
  const log = fs.openSync(path.join(work, "restart-server.log"), "a");
  server = spawn(ferry, ["serve", "--listen", `127.0.0.1:${port}`, "--data", data], { stdio: ["ignore", "ignore", log] });
  await until("the server to answer", async () => {
    try { return (await fetch(url + "/api/me")).status === 401; } catch { return false; }
  }, 20000);
}

async function stop(signal) {
  const gone = new Promise((ok) => server.once("exit", ok));
  server.kill(signal);
  await gone;
}

fs.mkdirSync(data, { recursive: true });
await new Promise((ok, bad) => {
  const add = spawn(ferry, ["user", "add", "alice", "--password-stdin", "--data", data], { stdio: ["pipe", "ignore", "inherit"] });
  add.stdin.end("alice-pw\n");
  add.on("exit", (code) => (code === 0 ? ok() : bad(new Error("ferry user add: " + code))));
});
await start();
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
const paced = await proxy(url, 24 << 20); // 128 MiB take about five seconds

try {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(paced.url + "/");
  await page.fill("#login-form input[name=user]", "alice");
  await page.fill("#login-form input[name=password]", "alice-pw");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#files:not([hidden])");
  // kill -9 loses what the server had not yet made durable and acknowledged (it does so
  // every second, a slow stream too); SIGTERM keeps everything that arrived.
  const cases = [
    // Of a 64 MiB PATCH 48 MiB up: part of it kept (about a second's worth and what was in
    // flight goes).
    { signal: "SIGKILL", rate: 24 << 20, mib: 128, killAt: 48 << 20, most: 44 << 20, what: "kill -9" },
    { signal: "SIGTERM", rate: 24 << 20, mib: 128, killAt: 48 << 20, most: 1 << 20, what: "SIGTERM" },
    // A slow uplink, 10 MiB of one PATCH up: once all of it was lost (acknowledged only at
    // the request's end); now about two seconds' worth.
    { signal: "SIGKILL", rate: 2 << 20, mib: 16, killAt: 10 << 20, most: 6 << 20, what: "kill -9 on a 2 MiB/s uplink" },
  ];
  for (const [i, c] of cases.entries()) {
    paced.counter.rate = c.rate;
    const name = `restart-${i}.bin`;
    const file = path.join(work, name);
    const sha = randomFile(file, c.mib);
    const start0 = paced.counter.up;
    await page.setInputFiles("#pick-files", file);
    const row = page.locator(`#queue li:has-text("${name}")`);
    await until("the upload under way", async () => Number(await row.locator("progress").getAttribute("value")) > c.killAt, 30000);
    await stop(c.signal);
    await new Promise((r) => setTimeout(r, 1500));
    await start();
    await until(`the upload to finish after the restart (${c.what})`, async () => (await row.locator("span.muted").textContent()) === "uploaded, SHA-256 verified", 120000);
    const sent = paced.counter.up - start0;
    const again = Math.max(0, sent - (c.mib << 20));
    check(sha256File(path.join(data, "files", "~alice", name)) === sha, `server ${c.what} mid-upload, restarted: the page finished on its own, the file is whole (SHA-256)`);
    check(again < c.most, `…${sent} bytes went up for ${c.mib << 20}: ${again} sent again (less than ${c.most}; ${c.killAt} were up at the ${c.signal})`);
  }
  check(pageErrors.length === 0, "no script errors (" + pageErrors.join("; ") + ")");
} catch (e) {
  failures++;
  console.error(e.message);
} finally {
  await browser.close();
  paced.srv.close();
  await stop("SIGTERM").catch(() => {});
}
process.exit(failures ? 1 : 0);
