// Drives the system Chromium (never a downloaded build) through playwright-core: opens the
// demo page once per job entry, waits until it has loaded its export (or shown an error),
// makes the calls asked for through window.spritegenDemo.gen, and writes one JSON report.
// Run by benchmarks.web_browser.drive (tests/test_web.py, benchmarks/web.py); reads the job as JSON on stdin:
//   { executable, timeout_ms, pages: [{ url, screenshot?, wait_grid?, calls: [{ method,
//     context, options, warmup?, repeat?, expect_error? }] }] }
// Each call answers { sprites, rgba (base64), shape, times: ms of each timed repeat }, or
// with expect_error { error: "Name: message" or null when it did not fail }.
// Seeds in options are decimal strings (exact past 2^53) and become BigInt in the page.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../examples/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const job = JSON.parse(readFileSync(0, "utf8"));
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

async function runPage(context, entry) {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.message}`));
  const started = Date.now();
  await page.goto(entry.url);
  await page.waitForFunction(() => window.spritegenDemo && (window.spritegenDemo.ready || window.spritegenDemo.error),
    null, { timeout: job.timeout_ms });
  if (entry.wait_grid) {  // the page's own first grid, for the screenshot
    await page.waitForFunction((n) => document.querySelectorAll("#grid canvas").length >= n &&
      !document.querySelector("#generate").disabled, entry.wait_grid, { timeout: job.timeout_ms });
  }
  const state = await page.evaluate(() => ({
    ready: window.spritegenDemo.ready, error: window.spritegenDemo.error,
    status: document.querySelector("#status").textContent,
    statusClass: document.querySelector("#status").className,
    backend: document.querySelector("#backend").textContent,
    isolated: crossOriginIsolated, threads: window.spritegenDemo.ort?.env.wasm.numThreads ?? null,
  }));
  const results = state.ready ? await page.evaluate(async (calls) => {
    const gen = window.spritegenDemo.gen;
    const b64 = (f) => { let s = ""; const u = new Uint8Array(f.buffer); for (let k = 0; k < u.length; k++) s += String.fromCharCode(u[k]); return btoa(s); };
    const seed = (s) => (Array.isArray(s) ? s.map(BigInt) : BigInt(s));
    const out = [];
    for (const call of calls) {
      const options = { ...call.options, seed: seed(call.options.seed ?? "0") };
      if (options.noise) options.noise = new Float32Array(Uint8Array.from(atob(options.noise), (c) => c.charCodeAt(0)).buffer);
      if (call.expect_error) {  // the call must reject: answer its error's name and message
        try { await gen[call.method](call.context, options); out.push({ error: null }); }
        catch (error) { out.push({ error: `${error.name}: ${error.message}` }); }
        continue;
      }
      for (let r = 0; r < (call.warmup ?? 0); r++) await gen[call.method](call.context, options);
      const times = [];
      let last;
      for (let r = 0; r < (call.repeat ?? 1); r++) {
        const t0 = performance.now();
        last = await gen[call.method](call.context, options);
        times.push(performance.now() - t0);
      }
      out.push({ sprites: b64(last.sprites), shape: last.shape, times, rgba: b64(last.images[0].data) });
    }
    return out;
  }, entry.calls ?? []) : [];
  if (entry.screenshot) await page.screenshot({ path: entry.screenshot, fullPage: true });
  await page.close();
  return { ...state, results, consoleErrors, seconds: (Date.now() - started) / 1000 };
}

const browser = await chromium.launch({ executablePath: job.executable, headless: true, args: FLAGS });
try {
  const context = await browser.newContext({ viewport: { width: 1040, height: 560 } });  // a fresh profile
  const pages = [];
  for (const entry of job.pages) pages.push(await runPage(context, entry));
  process.stdout.write(JSON.stringify({ version: browser.version(), pages }));
} finally {
  await browser.close();
}
