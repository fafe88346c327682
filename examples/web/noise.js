// spritegen's portable noise, "spritegen-normal" version 1, in JavaScript.
//
// The same seed gives the bit-identical float32 noise here, in Python
// (spritegen.runtime) and in the C++ example: Philox4x32-10 counter-based bits,
// then a Box-Muller transform evaluated with IEEE-754 float64 +, -, *, / and sqrt
// only (no Math.log/sin/cos, whose results differ between JS engines), rounded
// once to float32. docs/noise.md is the specification; the steps below follow it
// in order, and evaluation order matters (no reassociation).
//
//   import { normals } from "./noise.js";
//   const xT = normals(42n, 0, 3 * 16 * 16);  // stream 0 = x_T; stream i = step i's noise
//
// Seeds are integers 0 <= seed < 2^64: a BigInt, or a Number that is a safe integer.

export const GENERATOR = Object.freeze({ generator: "spritegen-normal", version: 1 });

// ------------------------------------------------------------------ Philox4x32-10
const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const ROUNDS = 10;

// mulhilo32(m, a) for a uint32 `a` and a constant `m` split into 16-bit halves: every
// partial product and sum stays below 2^53, so float64 arithmetic is exact. (A BigInt
// version measured ~10-15x slower; docs/web.md.)
function mulhi(mHi, mLo, a) {
  const aHi = a >>> 16;
  const aLo = a & 0xffff;
  const cross = aHi * mLo + aLo * mHi + ((aLo * mLo) >>> 16); // < 2^34: exact
  return (aHi * mHi + Math.floor(cross / 65536)) >>> 0;
}

const M0_HI = M0 >>> 16, M0_LO = M0 & 0xffff;
const M1_HI = M1 >>> 16, M1_LO = M1 & 0xffff;

/**
 * Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1), all uint32; writes the
 * four output words into `out` (a Uint32Array of length >= 4) and returns it.
 */
export function philox4x32(c0, c1, c2, c3, k0, k1, out = new Uint32Array(4)) {
  c0 >>>= 0; c1 >>>= 0; c2 >>>= 0; c3 >>>= 0; k0 >>>= 0; k1 >>>= 0;
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0; // key bump between rounds, mod 2^32
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0_HI, M0_LO, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1_HI, M1_LO, c2), lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  return out;
}

// ------------------------------------------------------------------ Box-Muller
const SQRT2 = 1.4142135623730951;
const LN2 = 0.6931471805599453;
const HALF_PI = 1.5707963267948966;
const TWO_POW_30 = 1073741824;

// L[j] = 1 / (2j + 1): the series of atanh, log(u) = 2 atanh((f-1)/(f+1)) + k ln 2.
const L = Array.from({ length: 11 }, (_, j) => 1 / (2 * j + 1));
// S[j] = (-1)^j / (2j+1)!, C[j] = (-1)^j / (2j)!, each by one division of the previous.
const S = [1];
const C = [1];
for (let j = 1; j <= 10; j++) {
  S.push(S[j - 1] / -((2 * j) * (2 * j + 1)));
  C.push(C[j - 1] / -((2 * j - 1) * (2 * j)));
}
// 2^k for k = 0..33, exact powers of two (dividing by one is an exact scaling).
const POW2 = Array.from({ length: 34 }, (_, k) => 2 ** k);

/** sqrt(-2 log u) for u = (2a + 1) / 2^33, by the series of docs/noise.md. */
function radius(a) {
  let k = a === 0 ? 0 : 32 - Math.clz32(a); // bitlength(a)
  let f = (2 * a + 1) / POW2[k]; // in [1, 2), exact
  if (f > SQRT2) {
    f = f / 2;
    k = k + 1;
  }
  const s = (f - 1) / (f + 1);
  const s2 = s * s;
  let p = L[10];
  for (let j = 9; j >= 0; j--) p = p * s2 + L[j];
  const logu = (k - 33) * LN2 + (s + s) * p;
  return Math.sqrt(-2 * logu);
}

const PAIR = new Float64Array(2); // boxMuller64's result, reused: no allocation per pair

/** Box-Muller of uint32 words a, b: the float64 products r cos and r sin, before rounding. */
function boxMuller64(a, b) {
  const r = radius(a);
  const q = b >>> 30; // quadrant
  const w = (b & 0x3fffffff) / TWO_POW_30; // in [0, 1), exact
  const phi = w * HALF_PI;
  const ph2 = phi * phi;
  let sp = S[10];
  for (let j = 9; j >= 0; j--) sp = sp * ph2 + S[j];
  const sinPhi = phi * sp;
  let cp = C[10];
  for (let j = 9; j >= 0; j--) cp = cp * ph2 + C[j];
  const cosPhi = cp;
  let cos, sin;
  if (q === 0) { cos = cosPhi; sin = sinPhi; }
  else if (q === 1) { cos = -sinPhi; sin = cosPhi; }
  else if (q === 2) { cos = -cosPhi; sin = -sinPhi; }
  else { cos = sinPhi; sin = -cosPhi; }
  PAIR[0] = r * cos;
  PAIR[1] = r * sin;
  return PAIR;
}

/** [r cos, r sin] in float64 for uint32 words a, b (before the rounding to float32): for tests. */
export function boxMullerFloat64(a, b) {
  const pair = boxMuller64(a >>> 0, b >>> 0);
  return [pair[0], pair[1]];
}

/**
 * Box-Muller of a, b rounded once to float32 into out[at], out[at + 1] (a Float32Array store
 * rounds to nearest even); only the slots before `end` (the tail of the last block is dropped).
 */
function boxMuller(a, b, out, at, end) {
  const pair = boxMuller64(a, b);
  if (at < end) out[at] = pair[0];
  if (at + 1 < end) out[at + 1] = pair[1];
}

// ------------------------------------------------------------------ seeds and streams
const TWO_64 = 1n << 64n;

/**
 * The Philox key [seed mod 2^32, seed >> 32] of a seed (BigInt, or a Number that is a safe
 * integer), refusing anything outside 0 <= seed < 2^64 with a RangeError/TypeError.
 */
export function seedKey(seed) {
  let big;
  if (typeof seed === "bigint") {
    big = seed;
  } else if (typeof seed === "number" && Number.isSafeInteger(seed)) {
    big = BigInt(seed);
  } else if (typeof seed === "string" && /^[0-9]+$/.test(seed.trim())) {
    big = BigInt(seed.trim()); // from a text field or a URL: exact beyond 2^53
  } else {
    throw new TypeError(`seed must be an integer in 0..2^64-1 (a BigInt beyond 2^53), got ${String(seed)}`);
  }
  if (big < 0n || big >= TWO_64) {
    throw new RangeError(`seed must be in 0..2^64-1, got ${big}`);
  }
  return [Number(big & 0xffffffffn), Number(big >> 32n)];
}

function checkStream(stream) {
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new RangeError(`stream must be an integer in 0..2^32-1, got ${stream}`);
  }
}

/**
 * The first `count` standard normals of (seed, stream) as float32: block j is Philox of
 * counter (j, stream, 0, 0), giving normals 4j..4j+3. With `out` (a Float32Array of at
 * least offset + count), they are written at out[offset..] and `out` is returned.
 */
export function normals(seed, stream, count, out = null, offset = 0) {
  const [k0, k1] = seedKey(seed);
  checkStream(stream);
  if (!Number.isInteger(count) || count < 0 || count > 4 * 0xffffffff) {
    throw new RangeError(`count must be a non-negative integer, got ${count}`);
  }
  const target = out ?? new Float32Array(count);
  if (target.length < offset + count) {
    throw new RangeError(`out holds ${target.length} floats, needs ${offset + count}`);
  }
  const block = new Uint32Array(4);
  const end = offset + count;
  for (let j = 0, at = offset; at < end; j++, at += 4) {
    philox4x32(j, stream, 0, 0, k0, k1, block);
    boxMuller(block[0], block[1], target, at, end);
    boxMuller(block[2], block[3], target, at + 2, end);
  }
  return target;
}

/**
 * The noise of one sampling call's `stream` (0 = x_T, i = the step starting at index i) for
 * a batch: one seed for the batch draws normals(seed, stream, B * perRow) in C order; an
 * array of B seeds draws each row as a batch-1 call with its own seed. Returns a
 * Float32Array of B * perRow (written into `out` when given).
 */
export function batchNoise(seeds, batch, stream, perRow, out = null) {
  const target = out ?? new Float32Array(batch * perRow);
  if (Array.isArray(seeds)) {
    if (seeds.length !== batch) {
      throw new RangeError(`${seeds.length} seeds for a batch of ${batch}: pass one seed or one per row`);
    }
    seeds.forEach((seed, row) => normals(seed, stream, perRow, target, row * perRow));
  } else {
    normals(seeds, stream, batch * perRow, target, 0);
  }
  return target;
}
