// Sprites [B, 3, H, W] in [-1, 1] to a PPM or PNG grid, scaled up nearest-neighbour.
#pragma once

#include <string>

#include "sampler.hpp"

namespace spritegen {

// Writes the batch as a grid (up to 8 sprites a row), each pixel a scale x scale block.
// The format follows the extension: .ppm (binary P6) or .png (uncompressed, no zlib needed).
Status write_image(const std::string& path, const Tensor& sprites, int scale);

}  // namespace spritegen
