// ferry's web app in Debian's chromium (playwright-core, no downloaded browser).
// Usage: node web_ui.mjs SERVER_URL WORK_DIR  (run.sh starts the server with alice and bob).
// Every step checks the server's side too: files on disk, their SHA-256, relay states.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { check, proxy, randomFile, settledOffset, sha256File, until } from "./lib.mjs";

const [server, work] = process.argv.slice(2);
const data = path.join(work, "data");
const shots = process.env.SHOTS || work;
let failures = 0;

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
const slow = await proxy(server, 40 << 20); // 40 MiB/s: 200 MB take about five seconds
const origins = [new URL(server).origin, new URL(slow.url).origin];
const foreign = [];
const pageErrors = [];
const digests = []; // Repr-Digest headers the pages sent with PATCH requests

async function open(base, viewport = { width: 1280, height: 800 }) {
  const ctx = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await ctx.newPage();
  page.on("request", (r) => {
    const u = r.url();
    if (!origins.some((o) => u.startsWith(o)) && !u.startsWith("data:") && !u.startsWith("blob:")) foreign.push(u);
  });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("request", (r) => {
    const d = r.headers()["repr-digest"];
    if (d && r.method() === "PATCH") digests.push(d);
  });
  await page.goto(base + "/");
  return page;
}

async function login(page, user, password) {
  await page.fill("#login-form input[name=user]", user);
  await page.fill("#login-form input[name=password]", password);
  await page.click("#login-form button[type=submit]");
}

async function transferStatus(page, name) {
  return page.$$eval("#queue li", (lis, n) => {
    const li = lis.find((l) => l.querySelector(".what").textContent.endsWith(n));
    return li ? li.querySelector("span.muted").textContent : null;
  }, name);
}

try {
  // ---- log in -------------------------------------------------------------------------------
  const alice = await open(slow.url);
  await alice.waitForSelector("#login:not([hidden])");
  await login(alice, "alice", "wrong");
  await until("the wrong-password message", async () => (await alice.textContent("#login-error")).includes("Wrong user name or password"));
  check(true, "a wrong password is refused with a clear message");
  await login(alice, "alice", "alice-pw");
  await alice.waitForSelector("#files:not([hidden])");
  check((await alice.textContent("#who")).includes("alice"), "alice logs in and sees her files");
  const cookies = await alice.context().cookies();
  const session = cookies.find((c) => c.name === "ferry_session");
  check(session && session.httpOnly && session.sameSite === "Strict", "the session is an HttpOnly, SameSite=Strict cookie");
  check(!(await alice.evaluate(() => document.cookie)).includes("ferry_session"), "the page's scripts cannot read the session");

  // ---- a 200 MB upload, the page reloaded mid-upload, resumed --------------------------------
  const big = path.join(work, "big.bin");
  const bigSha = randomFile(big, 200);
  const startUp = slow.counter.up;
  await alice.setInputFiles("#pick-files", big);
  await until("the upload under way", async () => {
    const v = await alice.$eval("#queue progress", (p) => Number(p.value));
    return v > 60 << 20;
  }, 60000);
  const before = slow.counter.up - startUp;
  await alice.reload();
  await alice.waitForSelector("#files:not([hidden])");
  check(true, "the page reloads mid-upload and alice is still logged in");
  // What the server holds for it (the upload's URL is in localStorage) once the broken
  // request ended there (until then HEAD answers the offset committed before it).
  const held = await settledOffset(alice);
  check(held > 0, `the server kept ${held} bytes of the interrupted upload`);
  await alice.setInputFiles("#pick-files", big);
  await until("the resumed upload to finish", async () => (await transferStatus(alice, "big.bin")) === "uploaded, SHA-256 verified", 90000);
  // All bytes up since the first pick, requests and page loads included: starting over
  // would add the ${held} bytes the server kept.
  const total = slow.counter.up - startUp;
  check(total <= (200 << 20) + (8 << 20), `the whole upload, reload and all, sent ${total} bytes for ${200 << 20}`);
  const stored = path.join(data, "files", "~alice", "big.bin");
  check(sha256File(stored) === bigSha, "the file on the server has the local file's SHA-256");
  const listed = await alice.evaluate(async () => (await (await fetch("/files/~alice/", { headers: { Accept: "application/json" } })).json()).entries);
  check(listed.find((e) => e.name === "big.bin").sha256 === bigSha, "the server recorded that SHA-256");
  const declared = `sha-256=:${Buffer.from(bigSha, "hex").toString("base64")}:`;
  check(digests.includes(declared), "the page computed the whole file's SHA-256 while uploading and sent it for the server to check (Repr-Digest on the last PATCH)");
  console.log(`  (sent before the reload: ${before} bytes)`);

  // ---- a folder with nested folders ---------------------------------------------------------------
  const album = path.join(work, "album");
  fs.mkdirSync(path.join(album, "sub", "deeper"), { recursive: true });
  fs.writeFileSync(path.join(album, "a.txt"), "alpha");
  fs.writeFileSync(path.join(album, "sub", "b.txt"), "bravo");
  fs.writeFileSync(path.join(album, "sub", "deeper", "c.txt"), "charlie");
  await alice.setInputFiles("#pick-folder", album);
  const home = path.join(data, "files", "~alice");
  await until("the folder upload", () => fs.existsSync(path.join(home, "album", "sub", "deeper", "c.txt")) && fs.existsSync(path.join(home, "album", "a.txt")) && fs.existsSync(path.join(home, "album", "sub", "b.txt")));
  check(fs.readFileSync(path.join(home, "album", "sub", "deeper", "c.txt"), "utf8") === "charlie", "a folder goes up with its nested folders");

  // ---- a folder dragged from the desktop (empty folder included) ---------------------------------
  // Chromium's own drag and drop (DevTools Input.dispatchDragEvent with a real folder path),
  // so the page walks real directory entries as it does for a user's drop.
  const dragged = path.join(work, "dragged");
  fs.mkdirSync(path.join(dragged, "inner", "empty"), { recursive: true });
  fs.writeFileSync(path.join(dragged, "top.txt"), "top");
  fs.writeFileSync(path.join(dragged, "inner", "deep.txt"), "deep");
  {
    const cdp = await alice.context().newCDPSession(alice);
    const box = await alice.locator("#drop").boundingBox();
    const at = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    const dragData = { items: [], files: [dragged], dragOperationsMask: 1 };
    for (const type of ["dragEnter", "dragOver", "drop"]) await cdp.send("Input.dispatchDragEvent", { type, ...at, data: dragData });
  }
  await until("the dropped folder", () => fs.existsSync(path.join(home, "dragged", "inner", "deep.txt")) && fs.existsSync(path.join(home, "dragged", "top.txt")) && fs.existsSync(path.join(home, "dragged", "inner", "empty")));
  check(fs.readFileSync(path.join(home, "dragged", "inner", "deep.txt"), "utf8") === "deep" && fs.statSync(path.join(home, "dragged", "inner", "empty")).isDirectory(), "a folder dropped on the page goes up whole, its empty folder too");

  // ---- rename and delete -----------------------------------------------------------------------------
  await alice.goto(slow.url + "/#/files/~alice/album");
  await alice.waitForSelector('button[aria-label="Rename a.txt"]');
  alice.once("dialog", (d) => d.accept("renamed.txt"));
  await alice.click('button[aria-label="Rename a.txt"]');
  await until("the rename", () => fs.existsSync(path.join(home, "album", "renamed.txt")) && !fs.existsSync(path.join(home, "album", "a.txt")));
  await alice.waitForSelector('button[aria-label="Delete renamed.txt"]');
  check(true, "rename shows the new name");
  alice.once("dialog", (d) => d.accept());
  await alice.click('button[aria-label="Delete renamed.txt"]');
  await until("the delete", () => !fs.existsSync(path.join(home, "album", "renamed.txt")));
  check(true, "delete removes the file");

  // ---- a hostile file name stays text --------------------------------------------------------------------
  const evil = "<img src=x onerror=window.__xss=1>.txt";
  await alice.setInputFiles("#pick-files", { name: evil, mimeType: "text/plain", buffer: Buffer.from("x") });
  await until("the hostile name listed", async () => (await alice.$$eval("#entries td.name", (tds) => tds.map((t) => t.textContent))).includes(evil));
  check((await alice.evaluate(() => window.__xss)) === undefined, "a file named <img onerror=…> is shown as text and runs nothing");
  await alice.goto(slow.url + "/files/~alice/album/"); // where it went: the folder alice is in
  check((await alice.evaluate(() => window.__xss)) === undefined && (await alice.content()).includes("&lt;img"), "…in the server's HTML listing too");

  // ---- CSRF: a change without the token is refused ------------------------------------------------------
  await alice.goto(slow.url + "/");
  await alice.waitForSelector("#files:not([hidden])");
  const forged = await alice.evaluate(async () => {
    const r = await fetch("/api/files/mkdir", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ path: "~alice/forged" }) });
    return r.status;
  });
  check(forged === 403 && !fs.existsSync(path.join(home, "forged")), "a cookie-authenticated change without the CSRF token is refused (403)");

  // ---- pause, resume, cancel --------------------------------------------------------------------------
  {
    const paced = await proxy(server, 8 << 20); // 8 MiB/s: 48 MiB take six seconds
    origins.push(new URL(paced.url).origin);
    const page = await open(paced.url);
    await login(page, "alice", "alice-pw");
    await page.waitForSelector("#files:not([hidden])");
    const trio = [0, 1, 2].map((i) => path.join(work, `par${i}.bin`));
    const trioSha = trio.map((p) => randomFile(p, 8));
    await page.setInputFiles("#pick-files", trio);
    await until("three files going up at once", () => page.$$eval("#queue li", (lis) =>
      lis.filter((l) => /^\d+%$/.test(l.querySelector("span.muted").textContent) && Number(l.querySelector("progress").value) > 0).length >= 3), 20000);
    check(/of 3 files, .* of 24 MiB/.test(await page.textContent("#total")), "three files go up at once, each with its bar, and a total (" + (await page.textContent("#total")) + ")");
    await until("the three files", async () => (await page.textContent("#total")).startsWith("3 of 3 files"), 30000);
    check(trio.every((p, i) => sha256File(path.join(home, path.basename(p))) === trioSha[i]), "all three arrive whole");
    const file = path.join(work, "pausable.bin");
    const fileSha = randomFile(file, 48);
    const row = (name) => page.locator(`#queue li:has-text("${name}")`);
    const start = paced.counter.up;
    await page.setInputFiles("#pick-files", file);
    await until("the upload under way", async () => Number(await row("pausable.bin").locator("progress").getAttribute("value")) > 8 << 20, 30000);
    await row("pausable.bin").locator("button", { hasText: "Pause" }).click();
    check((await transferStatus(page, "pausable.bin")) === "paused", "Pause stops the upload and says so");
    await new Promise((r) => setTimeout(r, 1000)); // what the aborted request left in socket buffers drains
    const atPause = paced.counter.up;
    await new Promise((r) => setTimeout(r, 1500));
    check(paced.counter.up - atPause < 64 << 10, `nothing goes up while paused (${paced.counter.up - atPause} bytes in 1.5 s)`);
    await row("pausable.bin").locator("button", { hasText: "Resume" }).click();
    await until("the resumed upload to finish", async () => (await transferStatus(page, "pausable.bin")) === "uploaded, SHA-256 verified", 60000);
    const sent = paced.counter.up - start;
    check(sent <= (48 << 20) + (2 << 20), `Resume goes on where it stopped (${sent} bytes sent for ${48 << 20})`);
    check(sha256File(path.join(home, "pausable.bin")) === fileSha, "the paused and resumed file has the local file's SHA-256");

    const doomed = path.join(work, "cancelled.bin");
    randomFile(doomed, 32);
    await page.setInputFiles("#pick-files", doomed);
    await until("the second upload under way", async () => Number(await row("cancelled.bin").locator("progress").getAttribute("value")) > 4 << 20, 30000);
    const url = await page.evaluate(() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith("tus::") && k.includes("cancelled.bin")))).uploadUrl);
    await row("cancelled.bin").locator("button", { hasText: "Cancel" }).click();
    await until("the upload terminated on the server", () => page.evaluate(async (u) => (await fetch(u, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } })).status === 404, url), 10000);
    check((await row("cancelled.bin").count()) === 0 && !fs.existsSync(path.join(home, "cancelled.bin")), "Cancel ends the upload on the server (404) and leaves no file");
    await page.context().close();
    paced.srv.close();
  }

  // ---- the keyboard alone -----------------------------------------------------------------------------
  {
    const page = await open(server);
    await page.waitForSelector("#login:not([hidden])");
    await page.keyboard.type("alice");
    await page.keyboard.press("Tab");
    await page.keyboard.type("alice-pw");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#files:not([hidden])");
    await page.waitForSelector("#entries a");
    check(true, "the login form works from the keyboard (focus starts in it, Enter submits)");
    let reached = null;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => {
        const a = document.activeElement;
        if (a && a.tagName === "A" && a.textContent === "album/") {
          const style = getComputedStyle(a);
          return { outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0 };
        }
        return null;
      });
    }
    check(reached, "Tab reaches the folders in the listing");
    check(reached.outline, "the focused link shows a visible focus outline");
    await page.keyboard.press("Enter");
    await until("the folder opened by Enter", async () => (await page.evaluate(() => location.hash)) === "#/files/~alice/album");
    await page.waitForSelector('button[aria-label^="Rename"]');
    check(true, "Enter opens the folder");
    await page.context().close();
  }

  // ---- screenshots at desktop and phone width ----------------------------------------------------------------
  await alice.screenshot({ path: path.join(shots, "files-desktop.png"), fullPage: true });
  const phone = await open(server, { width: 390, height: 844 });
  await login(phone, "alice", "alice-pw");
  await phone.waitForSelector("#files:not([hidden])");
  await phone.waitForSelector("#entries tr");
  await phone.screenshot({ path: path.join(shots, "files-phone.png"), fullPage: true });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, "at phone width nothing runs off the side (" + overflow + " px)");

  // ---- relay: alice sends, bob's open page shows it live, receives it; alice sees delivered ----------
  const bob = await open(server);
  await login(bob, "bob", "bob-pw");
  await bob.waitForSelector("#files:not([hidden])");
  await bob.goto(server + "/#/inbox");
  await bob.waitForSelector("#inbox:not([hidden])");
  await until("bob's event stream", () => bob.evaluate(() => true));
  await new Promise((r) => setTimeout(r, 500));
  await alice.click("#send-files");
  await alice.fill('#send-form input[name="to"]', "bob");
  await alice.setInputFiles('#send-form input[name="files"]', { name: "for-bob.txt", mimeType: "text/plain", buffer: Buffer.from("hello bob") });
  await alice.click('#send-form button[type="submit"]');
  await until("alice's send", async () => (await transferStatus(alice, "for-bob.txt → bob")) === "sent");
  const sentAt = Date.now();
  await until("the item on bob's page", async () => (await bob.$$eval("#inbox-items li", (lis) => lis.map((l) => l.textContent))).some((t) => t.includes("for-bob.txt")), 2000);
  check(Date.now() - sentAt <= 2000, `bob's open page shows the new item within 2 s (${Date.now() - sentAt} ms)`);
  await bob.screenshot({ path: path.join(shots, "inbox-desktop.png"), fullPage: true });
  const [download] = await Promise.all([bob.waitForEvent("download"), bob.click('#inbox-items li:has-text("for-bob.txt") button:has-text("Receive")')]);
  const saved = path.join(work, "bob-got.txt");
  await download.saveAs(saved);
  check(fs.readFileSync(saved, "utf8") === "hello bob", "bob receives the file, verified");
  await alice.goto(server + "/#/outbox");
  await until("delivered in alice's outbox", async () => (await alice.$$eval("#outbox-items li", (lis) => lis.map((l) => l.textContent))).some((t) => t.includes("for-bob.txt") && t.includes("bob: delivered")), 10000);
  check(true, "alice's outbox shows bob: delivered");

  // ---- bob declines the next one; alice sees it -------------------------------------------------------
  await alice.goto(server + "/");
  await alice.waitForSelector("#files:not([hidden])");
  await alice.click("#send-files");
  await alice.fill('#send-form input[name="to"]', "bob");
  await alice.setInputFiles('#send-form input[name="files"]', { name: "unwanted.txt", mimeType: "text/plain", buffer: Buffer.from("no thanks") });
  await alice.click('#send-form button[type="submit"]');
  await until("the second item on bob's page", async () => (await bob.$$eval("#inbox-items li", (lis) => lis.map((l) => l.textContent))).some((t) => t.includes("unwanted.txt")), 5000);
  await bob.click('#inbox-items li:has-text("unwanted.txt") button:has-text("Decline")');
  await until("the item gone from bob's inbox", async () => !(await bob.$$eval("#inbox-items li", (lis) => lis.map((l) => l.textContent))).some((t) => t.includes("unwanted.txt")));
  await until("declined in alice's outbox", async () => {
    await alice.goto(server + "/#/outbox");
    return (await alice.$$eval("#outbox-items li", (lis) => lis.map((l) => l.textContent))).some((t) => t.includes("unwanted.txt") && t.includes("bob: declined"));
  }, 10000);
  check(true, "bob declines an item: it leaves his inbox and alice's outbox shows bob: declined");

  // ---- a browser restart mid-upload: the same profile, the same file added again, resumed -------------
  {
    const profile = path.join(work, "profile");
    const paced = await proxy(server, 16 << 20);
    origins.push(new URL(paced.url).origin);
    const file = path.join(work, "restart.bin");
    const fileSha = randomFile(file, 64);
    const launch = () => chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
    let ctx = await launch();
    let page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(paced.url + "/");
    await login(page, "alice", "alice-pw");
    await page.waitForSelector("#files:not([hidden])");
    const start = paced.counter.up;
    await page.setInputFiles("#pick-files", file);
    await until("the upload under way", async () => Number(await page.locator('#queue li:has-text("restart.bin") progress').getAttribute("value")) > 16 << 20, 30000);
    await ctx.close(); // the whole browser goes
    ctx = await launch();
    page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(paced.url + "/");
    await page.waitForSelector("#files:not([hidden])");
    check((await settledOffset(page)) > 0, "after the restart the page still knows the upload (its URL in the profile's localStorage)");
    await page.setInputFiles("#pick-files", file);
    await until("the upload resumed after the restart", async () => (await transferStatus(page, "restart.bin")) === "uploaded, SHA-256 verified", 60000);
    const sent = paced.counter.up - start;
    check(sent <= (64 << 20) + (4 << 20), `after a browser restart the upload resumed (${sent} bytes sent for ${64 << 20})`);
    check(sha256File(path.join(home, "restart.bin")) === fileSha, "…and the file has the local file's SHA-256");
    await ctx.close();
    paced.srv.close();
  }

  check(foreign.length === 0, "no request went to any host but the server (" + foreign.join(", ") + ")");
  check(pageErrors.length === 0, "no script errors (" + pageErrors.join("; ") + ")");
} catch (e) {
  failures++;
  console.error(e.message);
} finally {
  await browser.close();
  slow.srv.close();
}
process.exit(failures ? 1 : 0);
