// The demo page: controls -> SpriteGen's samplers -> a grid of pixel-sharp sprites with their
// network calls and times.
// Query parameters: export=<url of an export directory> (default "export/"),
// sampler=fast|dpmpp|ddim (default: fast when the export has a fitted one, else ddim),
// count=<n> (sprites in the first grid), autorun=0 (no first grid), proxy=1, ep=webgpu
// (onnxruntime-web's WebGPU backend; untested here), threads=<n> (default: spritegen.js's
// wasmThreads() when the page is cross-origin isolated; otherwise ORT can only use one).
// window.spritegenDemo exposes the loaded generator (or the load error) for tests.

import { DPMPP_DEFAULT_STEPS, SpriteGen, wasmThreads } from "./spritegen.js";

const params = new URLSearchParams(location.search);
const exportUrl = params.get("export") ?? "export/";
const webgpu = params.get("ep") === "webgpu";
const SCALE = 6; // 16 x 16 sprites drawn 96 x 96, nearest neighbour

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};
// defaultThreads: what the page picks without ?threads= on this machine (benchmarks.web records it).
window.spritegenDemo = { ready: false, error: null, gen: null, ort: null, defaultThreads: wasmThreads() };

async function loadOrt() {
  const file = webgpu ? "./ort/ort.webgpu.min.mjs" : "./ort/ort.wasm.min.mjs";
  let ort;
  try {
    ort = await import(file);
  } catch (error) {
    throw new Error(`cannot load onnxruntime-web from ${file} (${error.message}); run npm ci in examples/web ` +
      "and serve the page with examples/web/serve.py");
  }
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  // One thread up to 2 cores, half the cores (at most 4) above: see wasmThreads in spritegen.js.
  const threads = Number(params.get("threads") ?? wasmThreads());
  ort.env.wasm.numThreads = crossOriginIsolated ? Math.max(1, threads) : 1;
  // proxy=1: ORT runs in a web worker, so the page's main thread stays free while sampling.
  if (params.get("proxy") === "1") ort.env.wasm.proxy = true;
  return ort;
}

function contextFromControls(gen) {
  const a = gen.classNames[Number($("classA").value)];
  const b = gen.classNames[Number($("classB").value)];
  const t = Number($("blend").value);
  if (t === 0 || a === b) return a;
  return { [a]: 1 - t, [b]: t };
}

// Each sampler: its step graph, its call on a SpriteGen, its label, its default and allowed network calls.
const SAMPLERS = {
  fast: { graph: "solver_step", call: (gen, context, o) => gen.fast(context, o), label: (n) => `fast-${n}`,
    n: (gen) => gen.fastSampler.defaultN, allowed: (gen) => [...gen.fastSampler.indices.keys()] },
  dpmpp: { graph: "solver_step", call: (gen, context, o) => gen.dpmpp(context, o), label: (n) => `DPM-Solver++-${n}`,
    n: (gen) => Math.min(DPMPP_DEFAULT_STEPS, gen.timesteps), allowed: null },
  ddim: { graph: "ddim_step", call: (gen, context, o) => gen.ddim(context, o), label: (n) => `DDIM-${n}`,
    n: (gen) => gen.loopSteps, allowed: null },
};

/** The fitted call count nearest the slider's value (the fast sampler has tables for a few n only). */
function nearest(values, n) {
  return values.reduce((best, v) => (Math.abs(v - n) < Math.abs(best - n) ? v : best));
}

function drawSprite(image, label) {
  const canvas = document.createElement("canvas");
  canvas.className = "sprite";
  canvas.width = image.width * SCALE;
  canvas.height = image.height * SCALE;
  const small = new OffscreenCanvas(image.width, image.height);
  small.getContext("2d").putImageData(image, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false; // pixel-sharp scaling
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = label;
  figure.append(canvas, caption);
  $("grid").append(figure);
}

async function generate(gen) {
  $("generate").disabled = true;
  $("grid").replaceChildren();
  try {
    const context = contextFromControls(gen);
    const base = BigInt($("seed").value.trim() || "0");
    const sampler = SAMPLERS[$("sampler").value];
    const n = Number($("steps").value);
    const guidance = Number($("guidance").value);
    const count = Number($("count").value);
    let total = 0, calls = 0;
    for (let k = 0; k < count; k++) {
      const seed = base + BigInt(k);
      status(`generating sprite ${k + 1} of ${count}…`);
      const out = await sampler.call(gen, context, { seed, n, guidance });
      total += out.ms;
      calls = out.calls;
      drawSprite(out.images[0], `seed ${seed} · ${out.calls} calls · ${out.ms.toFixed(0)} ms`);
    }
    const label = typeof context === "string" ? context : Object.entries(context).map(([c, w]) => `${c} ${w.toFixed(2)}`).join(" + ");
    status(`${count} sprites (${label}, ${sampler.label(n)}, guidance ${guidance}) in ${total.toFixed(0)} ms: ` +
      `${calls} network calls and ${(total / count).toFixed(0)} ms per sprite`);
  } catch (error) {
    status(`error: ${error.message}`, true);
  } finally {
    $("generate").disabled = false;
  }
}

function bindControls(gen) {
  const names = gen.classNames;
  for (const id of ["classA", "classB"]) $(id).max = String(names.length - 1);
  $("classB").value = String(Math.min(2, names.length - 1));
  $("steps").max = String(gen.timesteps);
  const fast = $("sampler").querySelector('option[value="fast"]');
  fast.disabled = !gen.fastSampler;  // an export without "fast" (spritegen-export --fit writes it)
  if (!gen.fastSampler) fast.textContent += ": not in this export";
  const student = Boolean(gen.fastSampler?.student);  // a distilled student's export: fast only
  for (const option of $("sampler").options) if (student && option.value !== "fast") option.disabled = true;
  const asked = params.get("sampler");
  $("sampler").value = asked in SAMPLERS && !(asked === "fast" && !gen.fastSampler) && !(student && asked !== "fast")
    ? asked : gen.fastSampler ? "fast" : "ddim";
  const show = () => {
    const allowed = SAMPLERS[$("sampler").value].allowed?.(gen);
    if (allowed) $("steps").value = String(nearest(allowed, Number($("steps").value)));
    $("samplerNote").textContent = allowed ? `fitted for ${allowed.join(", ")} calls` : "";
    $("classAName").textContent = names[Number($("classA").value)];
    $("classBName").textContent = names[Number($("classB").value)];
    $("blendValue").textContent = Number($("blend").value).toFixed(2);
    $("stepsValue").textContent = $("steps").value;
    $("guidanceValue").textContent = $("guidance").value;
    $("countValue").textContent = $("count").value;
  };
  const pick = () => {  // a sampler's own default number of network calls
    const sampler = SAMPLERS[$("sampler").value];
    $("steps").value = String(sampler.n(gen));
    show();
    return gen.session(sampler.graph); // its graph fetched, hash-checked and opened now, not in the first sprite
  };
  $("sampler").addEventListener("change", () => pick().catch((error) => status(`error: ${error.message}`, true)));
  $("controls").addEventListener("input", show);
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    generate(gen);
  });
  return pick();
}

async function main() {
  try {
    const ort = await loadOrt();
    window.spritegenDemo.ort = ort;
    status(`loading the export at ${exportUrl}…`);
    const executionProviders = webgpu ? ["webgpu", "wasm"] : ["wasm"];
    const gen = await SpriteGen.load(exportUrl, { ort, executionProviders, graphs: [] });  // the manifest only
    const threads = ort.env.wasm.numThreads;
    $("backend").textContent = `(${webgpu ? "WebGPU requested, WebAssembly fallback" : "WebAssembly"}, ${crossOriginIsolated ? `${threads} thread${threads === 1 ? "" : "s"}` : "1 thread: not cross-origin isolated"})`;
    await bindControls(gen);  // opens the chosen sampler's graph
    Object.assign(window.spritegenDemo, { gen, ready: true });
    if (params.has("count")) $("count").value = params.get("count");
    $("count").dispatchEvent(new Event("input", { bubbles: true }));
    $("generate").disabled = false;
    status(`ready: ${gen.classNames.length} classes, ${gen.imageShape.join("x")} sprites`);
    if (params.get("autorun") !== "0") await generate(gen);
  } catch (error) {
    window.spritegenDemo.error = error.message;
    status(`error: ${error.message}`, true);
  }
}

main();
