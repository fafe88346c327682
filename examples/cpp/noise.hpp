// The portable seeded noise "spritegen-normal" version 1 (docs/noise.md): the same seed gives
// the same float32 normals, bit for bit, here, in the Python runtime and in the browser.
//
// noise.cpp must be compiled without floating-point contraction (-ffp-contract=off) and
// without -ffast-math: a fused multiply-add rounds once where the specification rounds twice.
// CMakeLists.txt sets this for that file; keep it when you copy the file into an engine.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace spritegen {
namespace noise {

constexpr const char* kGenerator = "spritegen-normal";  // as recorded in manifest.json "noise"
constexpr int kVersion = 1;
constexpr uint32_t kXTStream = 0;  // stream 0: x_T; stream i: the noise of the step that starts at i

// Philox4x32-10 (Salmon et al. 2011): one 4-word block from counter and key.
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// Two normals from two uint32 words (docs/noise.md section 3).
void box_muller(uint32_t a, uint32_t b, float* n0, float* n1);

// The first `count` normals of `stream` under `seed`: block j is philox((j, stream, 0, 0),
// (seed mod 2^32, seed >> 32)), giving normals 4j..4j+3.
void normals(uint64_t seed, uint32_t stream, float* out, size_t count);

}  // namespace noise
}  // namespace spritegen
