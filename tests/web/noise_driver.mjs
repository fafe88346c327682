// Test driver: reads a JSON list of {seed, stream, count} (seed as a decimal string, so
// values past 2^53 stay exact) or {philox: [c0, c1, c2, c3, k0, k1]} cases on stdin and
// writes one JSON list back: float32 normals as base64 of their little-endian bytes,
// Philox words as numbers. Used by tests/test_web_noise.py.
import { readFileSync } from "node:fs";
import { normals, philox4x32, batchNoise } from "../../examples/web/noise.js";

const cases = JSON.parse(readFileSync(0, "utf8"));
const b64 = (floats) => Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString("base64");
const results = cases.map((c) => {
  if (c.philox) return Array.from(philox4x32(...c.philox));
  if (c.seeds) {
    const seeds = Array.isArray(c.seeds) ? c.seeds.map(BigInt) : BigInt(c.seeds);
    return b64(batchNoise(seeds, c.batch, c.stream, c.per_row));
  }
  if (c.bad !== undefined) {
    try { normals(c.bad, 0, 4); return "accepted"; } catch (e) { return `${e.name}: ${e.message}`; }
  }
  return b64(normals(BigInt(c.seed), c.stream, c.count));
});
process.stdout.write(JSON.stringify(results));
