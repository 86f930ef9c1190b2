// Drives stock noVNC in Debian's headless Chromium (playwright-core, never a
// downloaded browser) through tunnelgw.  Usage: node novnc_check.mjs '<json>'
// with page (the page URL, its options in ?cfg=), type (text to type into
// the remote screen, then Enter), screenshot (a PNG path for the canvas),
// timeoutMs, proxy (an HTTP proxy).  Prints one JSON line: connected, the page's events, the
// fraction of yellow pixels on the canvas, how it disconnected.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const timeout = cfg.timeoutMs ?? 20000;
const profile = mkdtempSync(join(tmpdir(), "tunnelgw-chromium-"));
const result = { event: "result", connected: false, events: [], yellow: 0, disconnected: null, error: null };
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    // an HTTP proxy for everything, loopback included (Chromium bypasses it for loopback unless told)
    ...(cfg.proxy ? [`--proxy-server=${cfg.proxy}`, "--proxy-bypass-list=<-loopback>"] : []),
  ],
});
// the fraction of the canvas that is opaque yellow (the remote xterm)
const yellowFraction = () => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let yellow = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] > 200 && data[i + 1] > 200 && data[i + 2] < 80 && data[i + 3] === 255) yellow += 1;
  }
  const fraction = yellow / (data.length / 4);
  return fraction > 0.5 ? fraction : 0; // falsy until painted, for waitForFunction
};
try {
  const page = await context.newPage();
  await page.goto(cfg.page);
  // connected (or refused), then painted: the remote screen is mostly yellow
  await page.waitForFunction(() => window.tunnelgwState && (window.tunnelgwState.connected || window.tunnelgwState.disconnected), null, { timeout });
  if (await page.evaluate(() => window.tunnelgwState.connected)) {
    await page.waitForFunction(yellowFraction, null, { timeout, polling: 200 }).catch(() => {});
    result.yellow = await page.evaluate(yellowFraction);
    if (cfg.screenshot) await page.locator("#screen canvas").screenshot({ path: cfg.screenshot });
    if (cfg.type) {
      await page.evaluate(() => window.tunnelgwRFB.focus());
      await page.mouse.click(300, 300);
      await page.keyboard.type(cfg.type, { delay: 20 });
      await page.keyboard.press("Enter");
      await page.waitForTimeout(1000); // the keys travel to the VNC server
    }
    await page.evaluate(() => window.tunnelgwRFB.disconnect());
    await page.waitForFunction(() => window.tunnelgwState.disconnected, null, { timeout: 5000 }).catch(() => {});
  }
  const state = await page.evaluate(() => window.tunnelgwState);
  result.connected = state.connected;
  result.events = state.events;
  result.disconnected = state.disconnected;
  result.transport = state.transport ?? null;
} catch (err) {
  result.error = String(err);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
