// PPM and PNG writers for sprite grids (see image_io.hpp).
#include "image_io.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "npy.hpp"

namespace spritegen {
namespace {
constexpr int64_t kPerRow = 8;

struct Rgb {
  int64_t width = 0, height = 0;
  std::string pixels;  // row-major RGB bytes
};

// [-1, 1] -> 0..255 per channel, sprite b at grid cell (b % kPerRow, b / kPerRow).
Rgb to_grid(const Tensor& s, int scale) {
  const int64_t B = s.shape[0], H = s.shape[2], W = s.shape[3];
  const int64_t cols = std::min(B, kPerRow), rows = (B + kPerRow - 1) / kPerRow;
  Rgb img{cols * W * scale, rows * H * scale, {}};
  img.pixels.assign(static_cast<size_t>(img.width * img.height * 3), '\0');
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t y = 0; y < H * scale; ++y)
        for (int64_t x = 0; x < W * scale; ++x) {
          const float v = s.data[((b * 3 + ch) * H + y / scale) * W + x / scale];
          const int64_t gy = (b / kPerRow) * H * scale + y, gx = (b % kPerRow) * W * scale + x;
          const long byte = std::lround((std::clamp(v, -1.0f, 1.0f) + 1.0f) * 127.5f);
          img.pixels[static_cast<size_t>((gy * img.width + gx) * 3 + ch)] = static_cast<char>(byte);
        }
  return img;
}

void put_be32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

uint32_t crc32(const std::string& bytes, size_t from) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t k = from; k < bytes.size(); ++k) c = table[(c ^ static_cast<uint8_t>(bytes[k])) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

void put_chunk(std::string& png, const char* type, const std::string& data) {
  put_be32(png, static_cast<uint32_t>(data.size()));
  const size_t start = png.size();
  png += type;
  png += data;
  put_be32(png, crc32(png, start));
}

// A zlib stream of stored (uncompressed) deflate blocks: valid PNG data without zlib.
std::string zlib_stored(const std::string& raw) {
  std::string out("\x78\x01", 2);
  uint32_t a = 1, b = 0;  // Adler-32
  for (size_t pos = 0; pos < raw.size() || pos == 0; pos += 65535) {
    const size_t len = std::min<size_t>(65535, raw.size() - pos);
    out += static_cast<char>(pos + len >= raw.size() ? 1 : 0);  // BFINAL, BTYPE = stored
    out += static_cast<char>(len & 0xff);
    out += static_cast<char>(len >> 8);
    out += static_cast<char>(~len & 0xff);
    out += static_cast<char>((~len >> 8) & 0xff);
    out.append(raw, pos, len);
    if (raw.empty()) break;
  }
  for (char ch : raw) {
    a = (a + static_cast<uint8_t>(ch)) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(out, (b << 16) | a);
  return out;
}

std::string encode_png(const Rgb& img) {
  std::string raw;  // each row: filter byte 0, then RGB
  for (int64_t y = 0; y < img.height; ++y) {
    raw += '\0';
    raw.append(img.pixels, static_cast<size_t>(y * img.width * 3), static_cast<size_t>(img.width * 3));
  }
  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(img.width));
  put_be32(ihdr, static_cast<uint32_t>(img.height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, deflate, no filter, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", "");
  return png;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                                                 [](char a, char b) { return std::tolower(a) == b; });
}
}  // namespace

Status write_image(const std::string& path, const Tensor& sprites, int scale) {
  if (scale < 1 || scale > 64) return invalid("--scale must be in 1..64, got " + std::to_string(scale));
  if (sprites.shape.size() != 4 || sprites.shape[1] != 3 || sprites.data.size() != sprites.numel())
    return invalid("images must be [B, 3, H, W], got " + sprites.shape_str());
  const Rgb img = to_grid(sprites, scale);
  if (ends_with(path, ".png")) return write_file_atomic(path, encode_png(img));
  if (!ends_with(path, ".ppm")) return invalid("output '" + path + "' must end in .ppm or .png");
  const std::string header = "P6\n" + std::to_string(img.width) + " " + std::to_string(img.height) + "\n255\n";
  return write_file_atomic(path, header + img.pixels);
}

}  // namespace spritegen
