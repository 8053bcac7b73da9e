// Uppy (@uppy/core + @uppy/tus + @uppy/dashboard, bundled by esbuild) on a page served from
// another origin than ferry, in Debian's chromium: it logs nothing in, it uses a bearer
// token as third-party apps do, uploads through ferry's CORS, survives a page reload
// mid-upload by resuming (Uppy's fingerprints in localStorage), and reads a byte range back.
// Usage: node uppy.mjs SERVER_URL WORK_DIR PAGE_DIR  (run.sh starts the server, builds the page).
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { check, proxy, randomFile, settledOffset, sha256File, staticSite, until } from "./lib.mjs";

const [server, work, pageDir] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
const slow = await proxy(server, 30 << 20); // 100 MiB take a few seconds
const app = await staticSite(pageDir);
const foreign = [];
let failures = 0;

try {
  check(new URL(app.url).origin !== new URL(slow.url).origin, `the app (${app.url}) and ferry (${slow.url}) are different origins`);
  const login = await fetch(server + "/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: "alice", password: "alice-pw", label: "uppy test" }),
  });
  const { token } = await login.json();
  check(login.ok && token, "a bearer token for alice");

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("request", (r) => {
    const u = r.url();
    if (![app.url, slow.url].some((o) => u.startsWith(o)) && !u.startsWith("data:") && !u.startsWith("blob:")) foreign.push(u);
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const at = `${app.url}/#endpoint=${encodeURIComponent(slow.url + "/tus/")}&token=${encodeURIComponent(token)}`;
  await page.goto(at);
  await page.waitForSelector(".uppy-Dashboard");

  const big = path.join(work, "uppy-big.bin");
  const bigSha = randomFile(big, 100);
  const startUp = slow.counter.up;
  await page.locator("input.uppy-Dashboard-input").first().setInputFiles(big);
  await until("Uppy's upload under way", () => page.evaluate(() => window.report.progress > 30 << 20), 60000);
  await page.reload();
  await page.waitForSelector(".uppy-Dashboard");
  check(true, "the page reloads mid-upload");
  const held = await settledOffset(page, token);
  check(held > 0, `the server kept ${held} bytes of Uppy's interrupted upload (read over CORS: Upload-Offset exposed)`);
  await page.locator("input.uppy-Dashboard-input").first().setInputFiles(big);
  const uploadURL = await until("Uppy's resumed upload to finish", () => page.evaluate(() => window.report.uploadURL), 90000);
  const total = slow.counter.up - startUp;
  check(total <= (100 << 20) + (8 << 20), `Uppy resumed: ${total} bytes sent in all for ${100 << 20} (starting over would add ${held})`);
  const stored = path.join(work, "data", "files", "~alice", "uppy-big.bin");
  check(fs.existsSync(stored) && sha256File(stored) === bigSha, `the file landed at ~alice/uppy-big.bin with the local file's SHA-256 (${uploadURL})`);

  // A byte range of it back, from the same foreign page.
  const from = 50 * (1 << 20) + 7;
  const got = await page.evaluate(async ({ url, token, from }) => {
    const r = await fetch(url, { headers: { Authorization: "Bearer " + token, Range: `bytes=${from}-${from + 65535}` } });
    const body = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, range: r.headers.get("Content-Range"), bytes: Array.from(body) };
  }, { url: slow.url + "/files/~alice/uppy-big.bin", token, from });
  const want = Buffer.alloc(65536);
  const fd = fs.openSync(big, "r");
  fs.readSync(fd, want, 0, want.length, from);
  fs.closeSync(fd);
  check(got.status === 206 && got.range === `bytes ${from}-${from + 65535}/${100 << 20}`, `a Range request answers 206 with Content-Range readable cross-origin (${got.range})`);
  check(Buffer.from(got.bytes).equals(want), "the range holds the file's bytes at that offset");

  if (process.env.SHOTS) await page.screenshot({ path: path.join(process.env.SHOTS, "uppy-foreign-origin.png") });
  const errors = await page.evaluate(() => window.report.errors);
  check(errors.length === 0, "Uppy reported no upload errors after the reload (" + errors.join("; ") + ")");
  check(foreign.length === 0, "the page asked nothing of any host but its own and ferry (" + foreign.join(", ") + ")");
  check(pageErrors.length === 0, "no script errors (" + pageErrors.join("; ") + ")");
} catch (e) {
  failures++;
  console.error(e.message);
} finally {
  await browser.close();
  slow.srv.close();
  app.srv.close();
}
process.exit(failures ? 1 : 0);
