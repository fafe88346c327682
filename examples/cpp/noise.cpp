// spritegen-normal v1 (see noise.hpp and docs/noise.md). Only IEEE-754 float64 + - * / and
// sqrt, each correctly rounded, in the order written: no libm log/sin/cos. Build with
// -ffp-contract=off and never with -ffast-math.
#include "noise.hpp"

#include <cmath>

#if defined(__FAST_MATH__)
#error "noise.cpp must not be compiled with -ffast-math: it changes the generator's results"
#endif

namespace spritegen {
namespace noise {
namespace {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key bumps
constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kLn2 = 0.6931471805599453;
constexpr double kHalfPi = 1.5707963267948966;
constexpr int kTerms = 10;  // L, S, C hold terms 0..10

struct Series {
  double log[kTerms + 1], sin[kTerms + 1], cos[kTerms + 1];
  Series() {
    sin[0] = cos[0] = 1.0;
    for (int j = 0; j <= kTerms; ++j) log[j] = 1.0 / static_cast<double>(2 * j + 1);
    for (int j = 1; j <= kTerms; ++j) {
      sin[j] = sin[j - 1] / static_cast<double>(-(2 * j) * (2 * j + 1));  // (-1)^j / (2j+1)!
      cos[j] = cos[j - 1] / static_cast<double>(-(2 * j - 1) * (2 * j));  // (-1)^j / (2j)!
    }
  }
};
const Series& series() {  // built once, on first use (safe from other static initialisers)
  static const Series built;
  return built;
}

// sqrt(-2 log u), u = (2a + 1) 2^-33: log u = (k - 33) ln2 + 2 atanh(s), s = (f - 1)/(f + 1).
double radius(uint32_t a) {
  const Series& c = series();
  int k = 0;
  for (uint32_t v = a; v; v >>= 1) ++k;  // bitlength(a)
  double f = static_cast<double>(2 * static_cast<uint64_t>(a) + 1) / static_cast<double>(uint64_t{1} << k);
  if (f > kSqrt2) {
    f = f / 2.0;
    k = k + 1;
  }
  const double s = (f - 1.0) / (f + 1.0);
  const double s2 = s * s;
  double p = c.log[kTerms];
  for (int j = kTerms - 1; j >= 0; --j) p = p * s2 + c.log[j];
  const double logu = static_cast<double>(k - 33) * kLn2 + (s + s) * p;
  return std::sqrt(-2.0 * logu);
}
}  // namespace

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k[0] += kW0;
      k[1] += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0], p1 = static_cast<uint64_t>(kM1) * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
  }
  return c;
}

void box_muller(uint32_t a, uint32_t b, float* n0, float* n1) {
  const double r = radius(a);
  // (cos, sin) of 2 pi b / 2^32: the quadrant from the top two bits, series on [0, pi/2)
  const double phi = static_cast<double>(b & 0x3FFFFFFFu) * (1.0 / 1073741824.0) * kHalfPi;
  const double ph2 = phi * phi;
  const Series& c = series();
  double sp = c.sin[kTerms], cp = c.cos[kTerms];
  for (int j = kTerms - 1; j >= 0; --j) {
    sp = sp * ph2 + c.sin[j];
    cp = cp * ph2 + c.cos[j];
  }
  const double sin_phi = phi * sp, cos_phi = cp;
  double cos = cos_phi, sin = sin_phi;
  switch (b >> 30) {
    case 1: cos = -sin_phi; sin = cos_phi; break;
    case 2: cos = -cos_phi; sin = -sin_phi; break;
    case 3: cos = sin_phi; sin = -cos_phi; break;
    default: break;
  }
  *n0 = static_cast<float>(r * cos);  // one rounding, to nearest even
  *n1 = static_cast<float>(r * sin);
}

void normals(uint64_t seed, uint32_t stream, float* out, size_t count) {
  const std::array<uint32_t, 2> key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  float block[4];
  for (size_t j = 0; 4 * j < count; ++j) {
    const auto x = philox4x32({static_cast<uint32_t>(j), stream, 0u, 0u}, key);
    box_muller(x[0], x[1], &block[0], &block[1]);
    box_muller(x[2], x[3], &block[2], &block[3]);
    for (size_t m = 0; m < 4 && 4 * j + m < count; ++m) out[4 * j + m] = block[m];
  }
}

}  // namespace noise
}  // namespace spritegen
