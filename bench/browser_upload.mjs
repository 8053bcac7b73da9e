// The web app's upload in Debian's chromium, timed: log in as alice, pick FILE, wait for
// "uploaded, SHA-256 verified", delete it, REPS times; prints one duration (s) per line.
// Usage: node browser_upload.mjs SERVER_URL FILE REPS   (bench/browser.sh runs it)
import { chromium } from "../tests/browser/node_modules/playwright-core/index.mjs";
import path from "node:path";

const [server, file, reps] = process.argv.slice(2);
const name = path.basename(file);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage();
await page.goto(server + "/");
await page.fill("#login-form input[name=user]", "alice");
await page.fill("#login-form input[name=password]", "alice-pw");
await page.click("#login-form button[type=submit]");
await page.waitForSelector("#files:not([hidden])");
for (let i = 0; i < Number(reps); i++) {
  const t0 = Date.now();
  await page.setInputFiles("#pick-files", file);
  await page.waitForFunction((n) => [...document.querySelectorAll("#queue li")].some((li) =>
    li.querySelector(".what").textContent.endsWith(n) && li.querySelector("span.muted").textContent === "uploaded, SHA-256 verified"), name, { timeout: 600000, polling: 50 });
  console.log(((Date.now() - t0) / 1000).toFixed(2));
  await page.evaluate(async (n) => {
    const csrf = (await (await fetch("/api/me")).json()).csrf;
    await fetch("/files/~alice/" + encodeURIComponent(n), { method: "DELETE", headers: { "X-Ferry-CSRF": csrf } });
    document.querySelector("#queue").replaceChildren();
  }, name);
}
await browser.close();
