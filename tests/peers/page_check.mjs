// Opens a page in Debian's headless Chromium (playwright-core) and prints
// what the page put in window.result once it sets window.result.done.
// Usage: node page_check.mjs '<json>' with page (URL), proxy (an HTTP
// proxy for every request, loopback included), timeoutMs.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const timeout = cfg.timeoutMs ?? 30000;
const profile = mkdtempSync(join(tmpdir(), "tunnelgw-chromium-"));
const args = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
];
// Chromium sends loopback traffic around a proxy unless told not to
if (cfg.proxy) args.push(`--proxy-server=${cfg.proxy}`, "--proxy-bypass-list=<-loopback>");
let result = { done: false, error: null, console: [] };
const context = await chromium.launchPersistentContext(profile, { executablePath: "/usr/bin/chromium", headless: true, args });
try {
  const page = await context.newPage();
  page.on("console", (m) => result.console.push(m.text()));
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e}`));
  await page.goto(cfg.page);
  await page.waitForFunction(() => window.result && window.result.done, null, { timeout, polling: 100 });
  result = { ...(await page.evaluate(() => window.result)), console: result.console };
} catch (err) {
  result.error = String(err);
  try { result.partial = await context.pages()[0].evaluate(() => window.result); } catch (e) { /* gone */ }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
