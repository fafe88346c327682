// spritegen in the browser: DDIM, DDPM and DPM-Solver++ over an export directory with onnxruntime-web.
//
//   import * as ort from "./ort/ort.wasm.min.mjs";          // onnxruntime-web, your copy
//   import { SpriteGen } from "./spritegen.js";
//   const gen = await SpriteGen.load("export/", { ort });     // manifest + graphs, sha256-checked
//   const out = await gen.ddim(["hero", { hero: 1, food: 0.6 }], { seed: 42n });
//   ctx.putImageData(out.images[0], 0, 0);                     // RGBA, one per sprite
//
// Everything model-specific comes from the export's manifest.json (spritegen/contract.py
// writes it): class names, image dims, each graph's input/output names and dtypes, the
// schedule length T, the loop graph's step count and the fitted few-step sampler ("fast").
// The fused step graphs compute the update from the schedule inside the graph, so this
// module never evaluates it. Noise
// comes from noise.js with the seed semantics of the Python runtime (same seed -> the
// same float32 x_T and step noise), so a seed gives the same sprite here and in Python.
// Lift this file and noise.js into a game as they are; ORT is passed in, not imported.

import { GENERATOR, batchNoise, seedKey } from "./noise.js";

const MANIFEST_FILE = "manifest.json";
const MANIFEST_FORMAT = "spritegen-export/1";
// Each step graph, and how its outputs become the next call's state inputs.
const STEP_GRAPHS = {
  ddim: { graph: "ddim_step", next: (out) => ({ x: out.x_prev }) },
  ddpm: { graph: "ddpm_step", next: (out) => ({ x: out.x_prev }) },
  solver: { graph: "solver_step", next: (out) => ({ x: out.x_next, m: out.x0 }) }, // m: the last x0 prediction
};
/** contract.DPMPP_DEFAULT_STEPS: network calls of dpmpp without n (tests/test_web.py compares). */
export const DPMPP_DEFAULT_STEPS = 10;
const FAST_KEY = "fast"; // contract.FAST_KEY: the manifest's fitted few-step sampler
const SOLVERS = ["dpmpp", "ddim"]; // contract.SOLVERS
const FIRST_ORDER_SOLVERS = ["ddim"]; // contract.FIRST_ORDER_SOLVERS: i_last = i on every step

/** Every error this module raises: one line that says what is wrong and what to do. */
export class SpriteGenError extends Error {
  constructor(message) {
    super(message);
    this.name = "SpriteGenError";
  }
}

/**
 * The WebAssembly thread count to give onnxruntime-web (ort.env.wasm.numThreads) on a machine
 * with `cores` logical cores: one up to 2 cores, else half of them (about the physical cores),
 * at most 4. On 2 cores two threads measured 1.8-2.5x slower than one per sprite (docs/web.md):
 * a batch-1 call is too small to share, and the threads spin against the page's own work.
 */
export function wasmThreads(cores = globalThis.navigator?.hardwareConcurrency ?? 1) {
  return cores <= 2 ? 1 : Math.min(4, Math.floor(cores / 2));
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

/** contract.dpmpp_indices: i_k = floor(T (n - k) / n) for k = 0..n (exact: T n < 2^53). */
export function dpmppIndices(timesteps, n) {
  if (!Number.isInteger(n) || n < 1 || n > timesteps) {
    throw new SpriteGenError(`DPM-Solver++ steps n must be an integer in 1..${timesteps}, got ${n}`);
  }
  return Array.from({ length: n + 1 }, (_, k) => Math.floor((timesteps * (n - k)) / n));
}

/**
 * contract.solver_triples: (i, i_next, i_last) per step; i_last = i on the first (first order), and
 * on every step with firstOrder (DDIM: a distilled student's solver).
 */
export function solverTriples(indices, firstOrder = false) {
  return indices.slice(0, -1).map((i, k) => [i, indices[k + 1], indices[firstOrder ? k : Math.max(k - 1, 0)]]);
}

/** The manifest's "fast" section checked as runtime/manifest_fields.fast_sampler checks it, or null. */
function fastSampler(manifest, url) {
  const entry = manifest[FAST_KEY];
  if (entry === undefined || entry === null) return null;
  const bad = (what) => new SpriteGenError(`${url}: ${FAST_KEY}.${what}; re-export with spritegen-export --fit`);
  if (!SOLVERS.includes(entry.solver)) throw bad(`solver must be one of ${SOLVERS.join(", ")}`);
  if (typeof entry.eta !== "number" || !(entry.eta >= 0 && entry.eta <= 1)) throw bad("eta must be a number in 0..1");
  const T = manifest.schedule.timesteps;
  const indices = new Map();
  const tables = Object.entries(entry.indices ?? {});
  if (tables.length < 1 || tables.length > 64) throw bad("indices must hold 1..64 tables");
  for (const [key, table] of tables) {
    const n = /^\d{1,5}$/.test(key) ? Number(key) : -1;
    const ok = Array.isArray(table) && table.length === n + 1 && n >= 1 && table[0] === T && table[n] === 0 &&
      table.every((i, k) => Number.isInteger(i) && (k === 0 || i < table[k - 1]));
    if (!ok) throw bad(`indices["${key.slice(0, 20)}"] must hold ${key.slice(0, 20)} + 1 integers falling from ${T} to 0`);
    indices.set(n, table);
  }
  if (!indices.has(entry.default_n)) throw bad(`default_n = ${entry.default_n} has no table in ${FAST_KEY}.indices`);
  const student = entry.student !== undefined && entry.student !== null;
  if (student && (typeof entry.student !== "object" || Array.isArray(entry.student) || indices.size !== 1)) {
    throw bad("student must be an object, beside one table (a distilled student's own steps)");
  }
  return { solver: entry.solver, eta: entry.eta, defaultN: entry.default_n, indices, student,
    firstOrder: FIRST_ORDER_SOLVERS.includes(entry.solver) };
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
    // The fitted few-step sampler: { solver, eta, defaultN, indices: Map(n -> [T, ..., 0]) }, or null.
    this.fastSampler = fastSampler(manifest, new URL(MANIFEST_FILE, base).href);
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
   * eta 0). Returns { sprites: Float32Array, shape: [B, C, H, W], images: ImageData[], calls, ms }
   * (calls: network evaluations per sprite; ms: the call, noise and clipping included, not its wait in the queue).
   * seed: one seed, or one per row (NOISE semantics); or noise: an explicit x_T.
   */
  async ddim(context, { n = this.loopSteps, eta = 0, seed = 0, noise = null, guidance = 0, impl = "step",
    progress = null } = {}) {
    this.refuseStudent();
    checkNumber(eta, "eta", 1);
    const pairs = ddimPairs(this.timesteps, n);
    if (impl === "loop") {
      if (n !== this.loopSteps || eta !== 0) {
        throw new SpriteGenError(`impl "loop" runs ddim_loop.onnx: deterministic DDIM with n=${this.loopSteps} only ` +
          `(asked n=${n}, eta=${eta}); use impl "step"`);
      }
      return this.run(context, seed, noise, guidance, pairs.length, async (x, feeds, sizes) => {
        const { sample } = await this.call("ddim_loop", { x, ...feeds }, sizes);
        progress?.(1, 1);
        return sample;
      });
    }
    if (impl !== "step") throw new SpriteGenError(`unknown impl "${impl}"; choose "step" or "loop"`);
    const plan = pairs.map(([i, iPrev]) => ({ i, extra: { i_prev: iPrev, eta: Math.fround(eta) }, noisy: eta > 0 }));
    return this.run(context, seed, noise, guidance, plan.length, (x, feeds, sizes, draw) =>
      this.steps(STEP_GRAPHS.ddim, { x }, feeds, sizes, plan, draw, progress));
  }

  /** The course's DDPM, T steps (noise on each step but the last). Same result shape as ddim. */
  async ddpm(context, { seed = 0, noise = null, guidance = 0, progress = null } = {}) {
    this.refuseStudent();
    const plan = [];
    for (let i = this.timesteps; i >= 1; i--) plan.push({ i, extra: {}, noisy: i > 1 });
    return this.run(context, seed, noise, guidance, plan.length, (x, feeds, sizes, draw) =>
      this.steps(STEP_GRAPHS.ddpm, { x }, feeds, sizes, plan, draw, progress));
  }

  /**
   * DPM-Solver++ (2M) with n network calls over contract.dpmpp_indices(T, n) (n default
   * DPMPP_DEFAULT_STEPS); eta 0 is the deterministic ODE solver, 1 its SDE form (noise stream i
   * on each step i -> i_next > 0), between mixes them. Runs solver_step.onnx (opened on first
   * use). Same result shape as ddim; the same seed gives Python's Sampler.dpmpp sprite.
   */
  async dpmpp(context, { n = Math.min(DPMPP_DEFAULT_STEPS, this.timesteps), eta = 0, seed = 0, noise = null,
    guidance = 0, progress = null } = {}) {
    this.refuseStudent();
    checkNumber(eta, "eta", 1);
    return this.solve(context, dpmppIndices(this.timesteps, n), eta, seed, noise, guidance, progress);
  }

  /**
   * The export's few-step sampler fitted to its checkpoint (manifest "fast", written by
   * spritegen-export --fit): its solver and eta over the step indices fitted for n network
   * calls (default: the export's recommended n). Python's Sampler.fast, seed for seed.
   */
  async fast(context, { n = undefined, seed = 0, noise = null, guidance = 0, progress = null } = {}) {
    const fast = this.fastSampler;
    if (!fast) {
      throw new SpriteGenError(`the export at ${this.base} has no fitted few-step sampler; re-export with ` +
        "spritegen-export --fit, or use the dpmpp sampler");
    }
    const count = n ?? fast.defaultN;
    if (fast.student && count !== fast.defaultN) this.refuseStudent();
    if (!fast.indices.has(count)) {
      throw new SpriteGenError(`the fast sampler of this export is fitted for n in ${[...fast.indices.keys()].join(", ")} ` +
        `network calls, got ${String(count).slice(0, 20)}; use one of those, or the dpmpp sampler for any n`);
    }
    return this.solve(context, fast.indices.get(count), fast.eta, seed, noise, guidance, progress, fast.firstOrder);
  }

  /** Python's FastSampler.student_only: a distilled student's export runs fast with its own call count only. */
  refuseStudent() {
    const fast = this.fastSampler;
    if (!fast?.student) return;
    throw new SpriteGenError(`this export holds a ${fast.defaultN}-step distilled student: use --sampler fast ` +
      `(${fast.defaultN} calls); its weights give sprites on its own step indices only`);
  }

  /** A solver_step.onnx run over checked step `indices` (T .. 0): dpmpp and fast (firstOrder: DDIM). */
  solve(context, indices, eta, seed, noise, guidance, progress, firstOrder = false) {
    const eta32 = Math.fround(eta);
    const plan = solverTriples(indices, firstOrder).map(([i, iNext, iLast]) =>
      ({ i, extra: { i_next: iNext, i_last: iLast, eta: eta32 }, noisy: eta > 0 && iNext > 0 }));
    return this.run(context, seed, noise, guidance, plan.length, (x, feeds, sizes, draw) =>
      this.steps(STEP_GRAPHS.solver, { x, m: new Float32Array(x.length) }, feeds, sizes, plan, draw, progress));
  }

  // ---------------------------------------------------------------- driving
  /** Queue one sampling call behind the previous ones (a failed call does not block the next). */
  run(...args) {
    const result = this.queue.then(() => this.sample(...args));
    this.queue = result.catch(() => {});
    return result;
  }

  async sample(context, seed, noise, guidance, calls, body) {
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
    return { sprites, shape, images: toImageData(sprites, shape), calls, ms: performance.now() - started };
  }

  /**
   * The step graph once per planned step from index i: `state` (x_T, and the solver's m) in,
   * the unclipped final x out; each call's outputs become the next call's state (STEP_GRAPHS).
   */
  async steps({ graph, next }, state, feeds, sizes, plan, draw, progress) {
    const zeros = new Float32Array(state.x.length);
    for (const [done, { i, extra, noisy }] of plan.entries()) {
      const z = noisy ? draw(i) : zeros; // stream i = the noise of the step starting at index i
      state = next(await this.call(graph, { ...state, i, z, ...feeds, ...extra }, sizes));
      progress?.(done + 1, plan.length);
    }
    return state.x;
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
