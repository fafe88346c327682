// The demo page: controls -> SpriteGen.ddim -> a grid of pixel-sharp sprites with their times.
// Query parameters: export=<url of an export directory> (default "export/"),
// count=<n> (sprites in the first grid), autorun=0 (no first grid), proxy=1, ep=webgpu (onnxruntime-web's WebGPU backend; untested here), threads=<n> (default: every
// core, at most 4, when the page is cross-origin isolated; otherwise ORT can only use one).
// window.spritegenDemo exposes the loaded generator (or the load error) for tests.

import { SpriteGen } from "./spritegen.js";

const params = new URLSearchParams(location.search);
const exportUrl = params.get("export") ?? "export/";
const webgpu = params.get("ep") === "webgpu";
const SCALE = 6; // 16 x 16 sprites drawn 96 x 96, nearest neighbour

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};
window.spritegenDemo = { ready: false, error: null, gen: null, ort: null };

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
  // ORT's own default is half the cores; a sprite generator that runs between frames gets all.
  const threads = Number(params.get("threads") ?? Math.min(4, navigator.hardwareConcurrency || 1));
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
    const n = Number($("steps").value);
    const guidance = Number($("guidance").value);
    const count = Number($("count").value);
    let total = 0;
    for (let k = 0; k < count; k++) {
      const seed = base + BigInt(k);
      status(`generating sprite ${k + 1} of ${count}…`);
      const out = await gen.ddim(context, { seed, n, guidance });
      total += out.ms;
      drawSprite(out.images[0], `seed ${seed} · ${out.ms.toFixed(0)} ms`);
    }
    const label = typeof context === "string" ? context : Object.entries(context).map(([c, w]) => `${c} ${w.toFixed(2)}`).join(" + ");
    status(`${count} sprites (${label}, DDIM-${n}, guidance ${guidance}) in ${total.toFixed(0)} ms`);
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
  $("steps").value = String(gen.loopSteps);  // the export's default DDIM steps (its loop graph's n)
  const show = () => {
    $("classAName").textContent = names[Number($("classA").value)];
    $("classBName").textContent = names[Number($("classB").value)];
    $("blendValue").textContent = Number($("blend").value).toFixed(2);
    $("stepsValue").textContent = $("steps").value;
    $("guidanceValue").textContent = $("guidance").value;
    $("countValue").textContent = $("count").value;
  };
  $("controls").addEventListener("input", show);
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    generate(gen);
  });
  show();
}

async function main() {
  try {
    const ort = await loadOrt();
    window.spritegenDemo.ort = ort;
    status(`loading the export at ${exportUrl}…`);
    const executionProviders = webgpu ? ["webgpu", "wasm"] : ["wasm"];
    const gen = await SpriteGen.load(exportUrl, { ort, executionProviders });
    const threads = ort.env.wasm.numThreads;
    $("backend").textContent = `(${webgpu ? "WebGPU requested, WebAssembly fallback" : "WebAssembly"}, ${crossOriginIsolated ? `${threads} thread${threads === 1 ? "" : "s"}` : "1 thread: not cross-origin isolated"})`;
    Object.assign(window.spritegenDemo, { gen, ready: true });
    bindControls(gen);
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
