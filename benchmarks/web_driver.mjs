// Drives the system Chromium (never a downloaded build) through playwright-core: opens the
// demo page once per job entry, waits until it has loaded its export (or shown an error),
// makes the calls asked for through window.spritegenDemo.gen, and writes one JSON report.
// Run by benchmarks.web_browser.drive (tests/test_web.py, benchmarks/web.py); reads the job as JSON on stdin:
//   { executable, timeout_ms, pages: [{ url, screenshot?, wait_grid?, calls: [{ method,
//     context, options, warmup?, repeat?, expect_error? }] }] }
// Each call answers { sprites, rgba (base64), shape, calls (network calls per sprite), times: ms
// of each timed repeat, cpu_ms: CPU time of every Chromium process over the timed repeats
// (Linux /proc; null elsewhere), load: the 1-minute load average before and after them }, or with expect_error { error: "Name: message" or null when
// it did not fail }.
// Seeds in options are decimal strings (exact past 2^53) and become BigInt in the page.
import { readFileSync, readdirSync } from "node:fs";
import { loadavg } from "node:os";
import { createRequire } from "node:module";

const require = createRequire(new URL("../examples/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const job = JSON.parse(readFileSync(0, "utf8"));
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

// CPU time (utime + stime, ms) of every process descending from this one: the Chromium it
// launched, all its renderers and helpers. USER_HZ is 100 on Linux; null without /proc.
function browserCpuMs() {
  let stats;
  try {
    stats = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map((pid) => {
      try {
        const text = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = text.slice(text.lastIndexOf(")") + 2).split(" "); // fields from the 3rd (state) on
        return { pid: Number(pid), ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
      } catch { return null; } // a process that ended meanwhile
    }).filter(Boolean);
  } catch { return null; }
  const children = new Map();
  for (const s of stats) {
    if (!children.has(s.ppid)) children.set(s.ppid, []);
    children.get(s.ppid).push(s);
  }
  let ticks = 0;
  const walk = (pid) => { for (const c of children.get(pid) ?? []) { ticks += c.ticks; walk(c.pid); } };
  walk(process.pid);
  return ticks * 10;
}

// One call in the page, in one of two phases: "warmup" (its untimed calls) or "timed" (the
// timed repeats; answers the sprites of the last), or the error of an expect_error call.
async function inPage(page, call, phase) {
  return page.evaluate(async ({ call, phase }) => {
    const gen = window.spritegenDemo.gen;
    const b64 = (f) => { let s = ""; const u = new Uint8Array(f.buffer); for (let k = 0; k < u.length; k++) s += String.fromCharCode(u[k]); return btoa(s); };
    const seed = (s) => (Array.isArray(s) ? s.map(BigInt) : BigInt(s));
    const options = { ...call.options, seed: seed(call.options.seed ?? "0") };
    if (options.noise) options.noise = new Float32Array(Uint8Array.from(atob(options.noise), (c) => c.charCodeAt(0)).buffer);
    if (call.expect_error) {  // the call must reject: answer its error's name and message
      try { await gen[call.method](call.context, options); return { error: null }; }
      catch (error) { return { error: `${error.name}: ${error.message}` }; }
    }
    if (phase === "warmup") {
      for (let r = 0; r < (call.warmup ?? 0); r++) await gen[call.method](call.context, options);
      return null;
    }
    const times = [];
    let last;
    for (let r = 0; r < (call.repeat ?? 1); r++) {
      const t0 = performance.now();
      last = await gen[call.method](call.context, options);
      times.push(performance.now() - t0);
    }
    return { sprites: b64(last.sprites), shape: last.shape, calls: last.calls, times, rgba: b64(last.images[0].data) };
  }, { call, phase });
}

async function runCall(page, call) {
  if (call.expect_error) return inPage(page, call, "timed");
  await inPage(page, call, "warmup");
  const [cpu0, load0] = [browserCpuMs(), loadavg()[0]];
  const result = await inPage(page, call, "timed");
  const [cpu1, load1] = [browserCpuMs(), loadavg()[0]];
  return { ...result, cpu_ms: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0, load: [load0, load1] };
}

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
    defaultThreads: window.spritegenDemo.defaultThreads ?? null, cores: navigator.hardwareConcurrency,
  }));
  const results = [];
  if (state.ready) for (const call of entry.calls ?? []) results.push(await runCall(page, call));
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
