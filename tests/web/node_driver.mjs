// Test driver: reads a JSON list of cases on stdin and writes one JSON list of answers:
//   {seed, stream, count} (seed a decimal string: exact past 2^53) -> float32 normals, base64
//   {seeds, batch, stream, per_row} -> batchNoise (one seed, or one per row), base64
//   {philox: [c0, c1, c2, c3, k0, k1]} -> the four output words
//   {pairs: [[a, b], ...]} -> float64 r cos, r sin per pair (before rounding), base64
//   {bad: seed} -> "accepted" or the error's "Name: message"
//   {ddim_pairs: [T, n]} -> spritegen.js's ddimPairs(T, n), or the error's "Name: message"
//   {dpmpp_indices: [T, n]} -> [dpmppIndices(T, n), solverTriples of those], or the error's "Name: message"
//   {to_image: base64 float32, shape: [B, C, H, W]} -> toImageData's RGBA bytes, base64
// Used by tests/test_web_noise.py.
import { readFileSync } from "node:fs";
import { normals, philox4x32, batchNoise, boxMullerFloat64 } from "../../examples/web/noise.js";
import { ddimPairs, dpmppIndices, solverTriples, toImageData } from "../../examples/web/spritegen.js";

const cases = JSON.parse(readFileSync(0, "utf8"));
const b64 = (floats) => Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString("base64");
const results = cases.map((c) => {
  if (c.philox) return Array.from(philox4x32(...c.philox));
  if (c.pairs) {  // float64 r cos, r sin of each [a, b], interleaved
    const values = new Float64Array(c.pairs.flatMap(([a, b]) => boxMullerFloat64(a, b)));
    return Buffer.from(values.buffer).toString("base64");
  }
  if (c.seeds) {
    const seeds = Array.isArray(c.seeds) ? c.seeds.map(BigInt) : BigInt(c.seeds);
    return b64(batchNoise(seeds, c.batch, c.stream, c.per_row));
  }
  if (c.to_image) {
    const bytes = Buffer.from(c.to_image, "base64");
    const sprites = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const rgba = toImageData(sprites, c.shape).flatMap((image) => Array.from(image.data));
    return Buffer.from(Uint8Array.from(rgba)).toString("base64");
  }
  if (c.ddim_pairs) {
    try { return ddimPairs(...c.ddim_pairs); } catch (e) { return `${e.name}: ${e.message}`; }
  }
  if (c.dpmpp_indices) {
    try {
      const indices = dpmppIndices(...c.dpmpp_indices);
      return [indices, solverTriples(indices)];
    } catch (e) { return `${e.name}: ${e.message}`; }
  }
  if (c.bad !== undefined) {
    try { normals(c.bad, 0, 4); return "accepted"; } catch (e) { return `${e.name}: ${e.message}`; }
  }
  return b64(normals(BigInt(c.seed), c.stream, c.count));
});
process.stdout.write(JSON.stringify(results));
