// Drives tunnelgw's admin page in Debian's headless Chromium (playwright-core,
// never a downloaded browser).  Usage: node admin_page.mjs '<json>' with url
// (the admin listener), user and password (the admin realm's Basic
// credentials), revoke (the user whose revoke button to press), timeoutMs.
// Prints one JSON line: the rows the page listed, the page's console errors
// and CSP violations, and the rows once the revoked user's are gone.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const timeout = cfg.timeoutMs ?? 20000;
const profile = mkdtempSync(join(tmpdir(), "tunnelgw-chromium-"));
const result = { event: "result", rows: [], after: [], errors: [], error: null };
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  httpCredentials: { username: cfg.user, password: cfg.password },
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
  ],
});
const rows = () =>
  [...document.querySelectorAll("#tunnels tbody tr")].map((tr) =>
    [...tr.querySelectorAll("td")].slice(0, 5).map((td) => td.textContent));
try {
  const page = await context.newPage();
  page.on("console", (message) => { if (message.type() === "error") result.errors.push(message.text()); });
  page.on("pageerror", (error) => result.errors.push(String(error)));
  await page.goto(cfg.url);
  await page.waitForFunction((n) => document.querySelectorAll("#tunnels tbody tr").length >= n, cfg.expect, { timeout });
  result.rows = await page.evaluate(rows);
  await page.locator(`#tunnels tbody tr[data-user="${cfg.revoke}"] button`).first().click();
  await page.waitForFunction(
    (user) => ![...document.querySelectorAll("#tunnels tbody tr")].some((tr) => tr.dataset.user === user)
      && document.querySelectorAll("#revocations tbody tr").length > 0,
    cfg.revoke, { timeout, polling: 200 });
  result.after = await page.evaluate(rows);
  // an inline script is refused by the page's policy
  result.inline = await page.evaluate(() => {
    const s = document.createElement("script");
    s.textContent = "window.inlineRan = true;";
    document.body.appendChild(s);
    return window.inlineRan === true;
  });
} catch (err) {
  result.error = String(err);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
