// spritegen in the browser: DDIM and DDPM over an export directory with onnxruntime-web.
//
//   import * as ort from "./ort/ort.wasm.min.mjs";          // onnxruntime-web, your copy
//   import { SpriteGen } from "./spritegen.js";
//   const gen = await SpriteGen.load("export/", { ort });     // manifest + graphs, sha256-checked
//   const out = await gen.ddim(["hero", { hero: 1, food: 0.6 }], { seed: 42n });
//   ctx.putImageData(out.images[0], 0, 0);                     // RGBA, one per sprite
//
// Everything model-specific comes from the export's manifest.json (spritegen/contract.py
// writes it): class names, image dims, each graph's input/output names and dtypes, the
// schedule length T and the loop graph's step count. The fused step graphs compute the
// update from the schedule inside the graph, so this module never evaluates it. Noise
// comes from noise.js with the seed semantics of the Python runtime (same seed -> the
// same float32 x_T and step noise), so a seed gives the same sprite here and in Python.
// Lift this file and noise.js into a game as they are; ORT is passed in, not imported.

import { GENERATOR, batchNoise, seedKey } from "./noise.js";

const MANIFEST_FILE = "manifest.json";
const MANIFEST_FORMAT = "spritegen-export/1";
const STEP_GRAPHS = { ddim: "ddim_step", ddpm: "ddpm_step" };

/** Every error this module raises: one line that says what is wrong and what to do. */
export class SpriteGenError extends Error {
  constructor(message) {
    super(message);
    this.name = "SpriteGenError";
  }
}

/** contract.ddim_pairs: (i, i_prev) for i = T, T-s, ... > 0, s = T // n, the last clamped to 0. */
export function ddimPairs(timesteps, n) {
  if (!Number.isInteger(n) || n < 1 || n > timesteps) {
    throw new SpriteGenError(`DDIM steps n must be an integer in 1..${timesteps}, got ${n}`);
  }
  const step = Math.floor(timesteps / n);
  const pairs = [];
  for (let i = timesteps; i > 0; i -= step) pairs.push([i, Math.max(i - step, 0)]);
  return pairs;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url, { cache: "no-cache" });
  } catch (error) {
    throw new SpriteGenError(`cannot fetch ${what} from ${url} (${error.message}); is the export served there?`);
  }
  if (!response.ok) {
    throw new SpriteGenError(`${what} is missing: ${url} answered HTTP ${response.status}; ` +
      "serve a complete export (spritegen-export writes one)");
  }
  return new Uint8Array(await response.arrayBuffer());
}

/** The export's manifest, checked for what this module reads; SpriteGenError otherwise. */
async function loadManifest(base) {
  const url = new URL(MANIFEST_FILE, base).href;
  const bytes = await fetchBytes(url, MANIFEST_FILE);
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new SpriteGenError(`${url} is not valid JSON (${error.message}); re-export with spritegen-export`);
  }
  if (data?.format !== MANIFEST_FORMAT) {
    throw new SpriteGenError(`${url} is not a ${MANIFEST_FORMAT} manifest (format ${JSON.stringify(data?.format)}); ` +
      "re-export with this version of spritegen-export");
  }
  const noise = data.noise;
  if (noise && (noise.generator !== GENERATOR.generator || noise.version !== GENERATOR.version)) {
    throw new SpriteGenError(`${url} was exported for noise ${noise.generator} v${noise.version}, this module ` +
      `draws ${GENERATOR.generator} v${GENERATOR.version}: use the spritegen.js of that export's version`);
  }
  for (const key of ["class_names", "dims", "schedule", "graphs", "files"]) {
    if (!data[key]) throw new SpriteGenError(`${url} has no "${key}"; re-export with spritegen-export`);
  }
  return data;
}

/** Context rows (B x K floats) from class names, blend objects, null, or K-number arrays. */
function contextRows(context, classNames) {
  const K = classNames.length;
  if (Array.isArray(context) && context.length === 0) throw new SpriteGenError("batch 0: ask for at least one sprite");
  const items = Array.isArray(context) && !context.every((v) => typeof v === "number") ? context : [context];
  const rows = new Float32Array(items.length * K);
  items.forEach((item, r) => {
    const row = rows.subarray(r * K, (r + 1) * K);
    if (item === null || item === undefined) return; // unconditional: zeros
    if (typeof item === "string") item = { [item]: 1 };
    if (Array.isArray(item) || ArrayBuffer.isView(item)) {
      if (item.length !== K) throw new SpriteGenError(`a context row needs ${K} weights, got ${item.length}`);
      row.set(item);
    } else if (typeof item === "object") {
      for (const [name, weight] of Object.entries(item)) {
        const k = classNames.indexOf(name);
        if (k < 0) throw new SpriteGenError(`unknown class "${name}"; choose from ${classNames.join(", ")}`);
        row[k] = weight;
      }
    } else {
      throw new SpriteGenError(`context must be a class name, a blend {name: weight}, null or ${K} numbers`);
    }
    if (!row.every((w) => Number.isFinite(w) && w >= 0)) {
      throw new SpriteGenError(`context weights must be finite and >= 0, got [${Array.from(row).join(", ")}]`);
    }
  });
  return rows;
}

/** One seed for the batch or one per row, each 0 <= seed < 2^64 (noise.js's rule), as SpriteGenError. */
function checkSeeds(seed, batch) {
  try {
    if (Array.isArray(seed)) {
      if (seed.length !== batch) throw new RangeError(`${seed.length} seeds for ${batch} sprites: pass one seed or one per sprite`);
      seed.forEach(seedKey);
    } else {
      seedKey(seed);
    }
  } catch (error) {
    throw new SpriteGenError(error.message);
  }
}

function checkNumber(value, name, upper = Infinity) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > upper) {
    throw new SpriteGenError(`${name} must be a finite number in 0..${upper}, got ${value}`);
  }
  return value;
}

/** Math.round, but ties to even, as numpy's round. */
function roundHalfEven(y) {
  const r = Math.round(y);
  return r - y === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Sprites (B, C, H, W) in [-1, 1] -> one RGBA ImageData (H x W) each, mapped exactly as
 * runtime/images.py's to_pixels maps them (float32 arithmetic, round half to even).
 */
export function toImageData(sprites, [B, C, H, W]) {
  const images = [];
  for (let b = 0; b < B; b++) {
    const rgba = new Uint8ClampedArray(H * W * 4);
    for (let p = 0; p < H * W; p++) {
      for (let ch = 0; ch < 3; ch++) {
        const v = Math.min(Math.max(sprites[b * C * H * W + Math.min(ch, C - 1) * H * W + p], -1), 1);
        rgba[4 * p + ch] = roundHalfEven(Math.fround(Math.fround(Math.fround(v + 1) / 2) * 255)); // numpy's float32 ops
      }
      rgba[4 * p + 3] = 255;
    }
    images.push(typeof ImageData === "undefined" ? { data: rgba, width: W, height: H } : new ImageData(rgba, W, H));
  }
  return images;
}

export class SpriteGen {
  /**
   * Load an export served at `baseUrl` (a URL of its directory). Fetches manifest.json, then
   * each graph in `graphs` (default: the DDIM step graph), verifies its sha256 against the
   * manifest with WebCrypto and opens an ORT session from exactly the bytes it hashed. Other
   * graphs open on first use. Options: ort (the onnxruntime-web namespace; required),
   * executionProviders (default ["wasm"]; "webgpu" is untested here), sessionOptions.
   */
  static async load(baseUrl, { ort, graphs = ["ddim_step"], executionProviders = ["wasm"], sessionOptions = {} } = {}) {
    if (!ort?.InferenceSession) throw new SpriteGenError("SpriteGen.load needs { ort }: the onnxruntime-web module");
    const base = new URL(baseUrl, globalThis.location?.href).href.replace(/\/?$/, "/");
    const manifest = await loadManifest(base);
    const gen = new SpriteGen(ort, base, manifest, { executionProviders, ...sessionOptions });
    for (const name of graphs) await gen.session(name);
    return gen;
  }

  constructor(ort, base, manifest, sessionOptions) {
    this.ort = ort;
    this.base = base;
    this.manifest = manifest;
    this.sessionOptions = sessionOptions;
    this.classNames = manifest.class_names;
    const { C, H, W } = manifest.dims;
    this.imageShape = [C, H, W];
    this.timesteps = manifest.schedule.timesteps;
    this.loopSteps = manifest.ddim_loop_steps ?? null;
    this.sessions = new Map(); // graph name -> Promise<{ session, spec }>
    this.queue = Promise.resolve(); // sampling calls run one at a time (one WASM instance)
  }

  /** The ORT session of graph `name` (a key of the manifest's graphs), built once. */
  session(name) {
    if (!this.sessions.has(name)) {
      const opening = this.openSession(name);
      opening.catch(() => this.sessions.delete(name)); // a failed open can be retried
      this.sessions.set(name, opening);
    }
    return this.sessions.get(name);
  }

  async openSession(name) {
    const spec = this.manifest.graphs[name];
    if (!spec?.file) throw new SpriteGenError(`the export at ${this.base} has no ${name} graph; re-export`);
    const expected = this.manifest.files[spec.file]?.sha256 ?? this.manifest.files[spec.file];
    if (typeof expected !== "string") {
      throw new SpriteGenError(`${MANIFEST_FILE} lists no sha256 for ${spec.file}; re-export with spritegen-export`);
    }
    const url = new URL(spec.file, this.base).href;
    const bytes = await fetchBytes(url, spec.file);
    const actual = await sha256Hex(bytes);
    if (actual !== expected) {
      throw new SpriteGenError(`${spec.file} does not match its manifest (sha256 ${actual.slice(0, 12)}..., manifest ` +
        `says ${expected.slice(0, 12)}...): the file was altered or swapped; re-export`);
    }
    let session;
    try {
      session = await this.ort.InferenceSession.create(bytes, this.sessionOptions);
    } catch (error) {
      throw new SpriteGenError(`onnxruntime-web cannot open ${spec.file} (${error.message})`);
    }
    const want = [spec.inputs.map((s) => s.name).sort(), spec.outputs.map((s) => s.name).sort()];
    const got = [[...session.inputNames].sort(), [...session.outputNames].sort()];
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      throw new SpriteGenError(`${spec.file} has inputs ${got[0]} -> ${got[1]}, the manifest says ${want[0]} -> ` +
        `${want[1]}; re-export with spritegen-export`);
    }
    return { session, spec };
  }

  /**
   * DDIM (contract.ddim_pairs) with n steps (default: the loop graph's), eta in 0..1.
   * impl "step" runs ddim_step.onnx per step; "loop" runs ddim_loop.onnx once (its own n,
   * eta 0). Returns { sprites: Float32Array, shape: [B, C, H, W], images: ImageData[], ms }.
   * seed: one seed, or one per row (NOISE semantics); or noise: an explicit x_T.
   */
  async ddim(context, { n = this.loopSteps, eta = 0, seed = 0, noise = null, guidance = 0, impl = "step",
    progress = null } = {}) {
    checkNumber(eta, "eta", 1);
    const pairs = ddimPairs(this.timesteps, n);
    if (impl === "loop") {
      if (n !== this.loopSteps || eta !== 0) {
        throw new SpriteGenError(`impl "loop" runs ddim_loop.onnx: deterministic DDIM with n=${this.loopSteps} only ` +
          `(asked n=${n}, eta=${eta}); use impl "step"`);
      }
      return this.run(context, seed, noise, guidance, async (x, feeds, sizes) => {
        const { sample } = await this.call("ddim_loop", { x, ...feeds }, sizes);
        progress?.(1, 1);
        return sample;
      });
    }
    if (impl !== "step") throw new SpriteGenError(`unknown impl "${impl}"; choose "step" or "loop"`);
    const plan = pairs.map(([i, iPrev]) => ({ i, extra: { i_prev: iPrev, eta: Math.fround(eta) }, noisy: eta > 0 }));
    return this.run(context, seed, noise, guidance, (x, feeds, sizes, draw) =>
      this.steps(STEP_GRAPHS.ddim, x, feeds, sizes, plan, draw, progress));
  }

  /** The course's DDPM, T steps (noise on each step but the last). Same result shape as ddim. */
  async ddpm(context, { seed = 0, noise = null, guidance = 0, progress = null } = {}) {
    const plan = [];
    for (let i = this.timesteps; i >= 1; i--) plan.push({ i, extra: {}, noisy: i > 1 });
    return this.run(context, seed, noise, guidance, (x, feeds, sizes, draw) =>
      this.steps(STEP_GRAPHS.ddpm, x, feeds, sizes, plan, draw, progress));
  }

  // ---------------------------------------------------------------- driving
  /** Queue one sampling call behind the previous ones (a failed call does not block the next). */
  run(...args) {
    const result = this.queue.then(() => this.sample(...args));
    this.queue = result.catch(() => {});
    return result;
  }

  async sample(context, seed, noise, guidance, body) {
    const started = performance.now();
    const [C, H, W] = this.imageShape;
    const perRow = C * H * W;
    const rows = contextRows(context, this.classNames);
    const B = rows.length / this.classNames.length;
    const w = checkNumber(guidance, "guidance");
    checkSeeds(seed, B); // refuse a bad seed before any work
    let x;
    if (noise) {
      if (!(noise instanceof Float32Array) || noise.length !== B * perRow || !noise.every(Number.isFinite)) {
        throw new SpriteGenError(`noise must be a Float32Array of ${B}x${C}x${H}x${W} = ${B * perRow} finite floats`);
      }
      x = noise;
    } else {
      x = batchNoise(seed, B, 0, perRow);
    }
    // With guidance, B more rows of unconditional context (zeros) follow: GB = 2B.
    const c = new Float32Array(w !== 0 ? 2 * rows.length : rows.length);
    c.set(rows);
    const sizes = { B, GB: c.length / this.classNames.length };
    const draw = (stream) => batchNoise(seed, B, stream, perRow);
    const out = await body(x, { c, w: Math.fround(w) }, sizes, draw);
    const sprites = Float32Array.from(out, (v) => Math.min(Math.max(v, -1), 1));
    const shape = [B, C, H, W];
    return { sprites, shape, images: toImageData(sprites, shape), ms: performance.now() - started };
  }

  /** The step graph once per planned step i (-> i_prev): x_T in, the unclipped final state out. */
  async steps(graph, x, feeds, sizes, plan, draw, progress) {
    const zeros = new Float32Array(x.length);
    for (const [done, { i, extra, noisy }] of plan.entries()) {
      const z = noisy ? draw(i) : zeros; // stream i = the noise of the step starting at index i
      x = (await this.call(graph, { x, i, z, ...feeds, ...extra }, sizes)).x_prev;
      progress?.(done + 1, plan.length);
    }
    return x;
  }

  /**
   * One graph call. `values` maps input names to a Float32Array or a plain number (an int64
   * input takes an integer); each becomes a tensor of the manifest's dtype and shape, whose
   * symbols are resolved from `sizes` (B and GB; C, H, W, K are numbers in the manifest).
   */
  async call(graph, values, sizes) {
    const { session, spec } = await this.session(graph);
    const tensors = {};
    for (const input of spec.inputs) {
      const dims = input.shape.map((d) => (typeof d === "number" ? d : sizes[d] ?? Number(d)));
      const value = values[input.name];
      if (value === undefined) {
        throw new SpriteGenError(`${spec.file} takes an input "${input.name}" this spritegen.js does not know; ` +
          "use the spritegen.js of the version that exported it");
      }
      // A copy of every array: with ort.env.wasm.proxy ORT transfers (detaches) input buffers
      // to its worker, and the context and zero-noise arrays are reused across steps.
      const data = input.dtype === "int64" ? BigInt64Array.of(BigInt(value))
        : typeof value === "number" ? Float32Array.of(value) : value.slice();
      tensors[input.name] = new this.ort.Tensor(input.dtype, data, dims);
    }
    const results = await session.run(tensors);
    return Object.fromEntries(spec.outputs.map((o) => [o.name, results[o.name].data]));
  }
}
