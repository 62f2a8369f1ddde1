// Drives the console (/ui) in Debian's headless Chromium through playwright-core.
//
//   node tests/browser/console.mjs <base-url> <screenshot.png>
//
// The inbox must be seeded by the caller (tests/e2e/browser.rs) and guarded by the read token
// in CONSOLE_TOKEN. Exits 0 when every check passes; otherwise prints what failed and exits 1.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, screenshot] = process.argv.slice(2);
const tokenValue = process.env.CONSOLE_TOKEN;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!base || !screenshot || !tokenValue) {
  console.error("usage: CONSOLE_TOKEN=... node console.mjs <base-url> <screenshot.png>");
  process.exit(2);
}
if (!existsSync(executablePath)) {
  console.error(`FAIL: no Chromium at ${executablePath} (apt-get install chromium)`);
  process.exit(1);
}
const INJECTION = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">`;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), "console-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 900 },
  colorScheme: "light",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let failed = false;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of 401/.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  const requests = [];
  page.on("request", (request) => requests.push({ type: request.resourceType(), url: request.url() }));

  // --- load; the page asks for the token once, keeps it in sessionStorage -------------------
  await page.goto(`${base}/ui`);
  await page.locator("#token-dialog[open]").waitFor();
  check(true, "the page asks for the read token");
  await page.fill("#token-input", tokenValue);
  await page.click("#token-save");
  const items = page.locator("#list button[data-id]");
  await items.first().waitFor();
  check((await items.count()) === 25, "a first page of 25 seeded messages");
  check(/^1–25 of \d+$/.test(await page.textContent("#count")), "the count reads 1–25 of the total");
  const total = Number((await page.textContent("#count")).split(" of ")[1]);
  check(total >= 60, `the total counts every seeded message (${total})`);
  const stored = await page.evaluate(() => sessionStorage.getItem("webhook-inbox.read-token"));
  check(stored === tokenValue, "the token is kept in sessionStorage");
  check(await page.evaluate(() => localStorage.length === 0), "nothing in localStorage");
  check(!page.url().includes(tokenValue), "the token is not in the address");
  const firstTimes = await page.locator("#list time").allTextContents();
  check(firstTimes.every((t, i) => i === 0 || t <= firstTimes[i - 1]), "newest first");

  // --- totals, charts, health, rejections ------------------------------------------------------
  await page.locator("#senders li button").first().waitFor();
  check((await page.textContent("#total-messages")) === String(total), "the total in the overview");
  check((await page.locator("#senders li").count()) >= 3, "top senders as bars");
  await page.locator("#hourly rect").first().waitFor();
  check((await page.locator("#hourly rect").count()) >= 2, "messages per hour as bars");
  await page.locator("#ready.ok").waitFor();
  check((await page.textContent("#live")) === "live: ok", "live and ready at a glance");
  await page.locator("#rejections tr td").first().waitFor();
  check(!(await page.locator("#rejections-section").isHidden()), "the rejection log is shown");
  check((await page.locator("#rejections tr").first().textContent()).includes("invalid_signature"),
    "a refused delivery is listed");

  // --- filter by sender: reflected in the address ------------------------------------------
  await page.fill("#f-from", "+15550000002");
  await page.click("#apply");
  await page.waitForFunction(() => location.search.includes("from="));
  await page.waitForFunction(() => /^1–\d+ of \d+$/.test(document.getElementById("count").textContent)
    && [...document.querySelectorAll("#list .meta span:nth-child(2)")].every((s) => s.textContent.startsWith("+15550000002 ")));
  const senders = await page.locator("#list .meta span:nth-child(2)").allTextContents();
  check(senders.length > 0 && senders.every((s) => s.startsWith("+15550000002 ")), "filtered by sender");
  check(new URL(page.url()).searchParams.get("from") === "+15550000002", "the filter is in the address");

  // --- search -------------------------------------------------------------------------------------
  await page.fill("#f-from", "");
  await page.fill("#f-q", "invoice");
  await page.press("#f-q", "Enter");
  await page.waitForFunction(() => new URL(location.href).searchParams.get("q") === "invoice"
    && !document.getElementById("list").hasAttribute("aria-busy"));
  const texts = await page.locator("#list .text").allTextContents();
  check(texts.length > 0 && texts.every((t) => t.toLowerCase().includes("invoice")), "search by text");

  // --- a shared view: the address alone restores the filters --------------------------------
  const shared = await context.newPage();
  await shared.goto(page.url());
  // sessionStorage belongs to one tab: the link carries the view, never the token.
  await shared.locator("#token-dialog[open]").waitFor();
  check(true, "a new tab asks for the token again");
  await shared.fill("#token-input", tokenValue);
  await shared.click("#token-save");
  await shared.locator("#list button[data-id]").first().waitFor();
  check((await shared.inputValue("#f-q")) === "invoice", "a shared address restores the filters");
  const sharedTexts = await shared.locator("#list .text").allTextContents();
  check(sharedTexts.length === texts.length, "and shows the same messages");
  await shared.close();

  // --- page forward with the cursor ---------------------------------------------------------
  await page.click("#clear");
  await page.waitForFunction(() => /^1–25 of/.test(document.getElementById("count").textContent));
  const firstIds = await items.evaluateAll((b) => b.map((x) => x.dataset.id));
  await page.click("#older");
  await page.waitForFunction(() => /^26–\d+ of/.test(document.getElementById("count").textContent));
  const secondIds = await items.evaluateAll((b) => b.map((x) => x.dataset.id));
  const secondTimes = await page.locator("#list time").allTextContents();
  check(secondIds.length > 0 && secondIds.every((id) => !firstIds.includes(id)), "the next page has other messages");
  check(secondTimes[0] <= firstTimes[firstTimes.length - 1], "and older ones");
  await page.click("#newest");
  await page.waitForFunction(() => /^1–25 of/.test(document.getElementById("count").textContent));

  // --- keyboard: "/" to search, j to the list, Enter to open ---------------------------------
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("/");
  check(await page.evaluate(() => document.activeElement.id === "f-q"), "'/' focuses the search");
  await page.keyboard.press("Escape");
  await page.locator("#list button[data-id]").first().focus();
  await page.keyboard.press("j");
  const focused = await page.evaluate(() => document.activeElement.dataset.id);
  check(focused === firstIds[1], "j moves to the next message");
  await page.keyboard.press("Enter");
  await page.waitForFunction((id) => document.getElementById("detail-id")?.textContent === id, focused);
  check(true, "Enter opens it");

  // --- an HTML injection attempt is shown literally ------------------------------------------
  await page.fill("#f-q", "onerror");
  await page.click("#apply");
  await page.waitForFunction(() => document.querySelectorAll("#list button[data-id]").length === 1);
  await page.locator("#list button[data-id]").first().click();
  await page.locator("#detail-text").waitFor();
  check((await page.textContent("#detail-text")) === INJECTION, "the message text is shown literally");
  check((await page.textContent("#list .text")) === INJECTION, "also in the list");
  check((await page.locator("#detail img, #list img, #detail script, #list script").count()) === 0,
    "no element was made from it");
  check((await page.evaluate(() => window.__pwned)) === undefined, "no script of it ran");
  check(new URL(page.url()).searchParams.get("m") === "xss-1", "the open message is in the address");

  // --- one HTML request plus API calls -------------------------------------------------------
  const apiPaths = ["/messages", "/stats", "/health/", "/rejections"];
  const own = requests.filter((r) => r.url.startsWith(base));
  const documents = own.filter((r) => r.type === "document");
  check(documents.length === 1 && new URL(documents[0].url).pathname === "/ui",
    "one HTML request for the page");
  const others = own.filter((r) => r.type !== "document");
  check(others.every((r) => r.type === "fetch" && apiPaths.some((p) => new URL(r.url).pathname.startsWith(p))),
    `everything else is an API call (${others.length})`);
  check(requests.every((r) => r.url.startsWith(base) || r.url.startsWith("data:")), "no other origin");
  check(others.every((r) => !r.url.includes(tokenValue)), "the token is never in a request address");

  // --- the screenshot: desktop, light -----------------------------------------------------------
  await page.click("#clear");
  await page.waitForFunction(() => /^1–25 of/.test(document.getElementById("count").textContent));
  await page.locator("#list button[data-id]").nth(2).click();
  await page.locator("#detail-text").waitFor();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);

  // --- 360 px wide, and dark mode ---------------------------------------------------------------
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  check(overflow <= 360, `readable at 360 px: no sideways scrolling (${overflow} px)`);
  const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: "dark" });
  const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(light !== dark, `dark mode has its own colours (${light} -> ${dark})`);

  check(problems.length === 0, `no page or CSP errors${problems.length ? `: ${problems.join("; ")}` : ""}`);
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
