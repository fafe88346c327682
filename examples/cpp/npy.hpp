// Minimal .npy reader/writer for float32 C-order arrays (NumPy format versions 1-3).
#pragma once

#include <string>

#include "sampler.hpp"

namespace spritegen {

// Reads a float32 ('<f4'), C-order .npy file; anything else is a clear invalid_argument/io Status.
Status read_npy(const std::string& path, Tensor* out);

// Writes a float32 C-order .npy (format 1.0), via a temporary file renamed at the end.
Status write_npy(const std::string& path, const Tensor& tensor);

// Writes `bytes` to path through path + ".tmp" and a rename, so no half-written file is left.
Status write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace spritegen
