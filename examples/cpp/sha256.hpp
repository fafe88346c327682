// SHA-256 (FIPS 180-4) of a byte buffer, as lowercase hex: checks graph files against the manifest.
#pragma once

#include <cstddef>
#include <string>

namespace spritegen {

std::string sha256_hex(const void* data, size_t size);

}  // namespace spritegen
