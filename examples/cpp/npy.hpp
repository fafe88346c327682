// Minimal .npy reader/writer for float32 C-order arrays (NumPy format versions 1-3).
#pragma once

#include <cstdint>
#include <string>

#include "sampler.hpp"

namespace spritegen {

// Reads a float32 ('<f4'), C-order .npy file; anything else is a clear invalid_argument/io Status.
Status read_npy(const std::string& path, Tensor* out);

// Writes a float32 C-order .npy (format 1.0), via a temporary file renamed at the end.
Status write_npy(const std::string& path, const Tensor& tensor);

// Writes `bytes` to path through a fresh temporary file beside it (mkstemp, never an existing
// name) and a rename, so no half-written file is left. Only a regular file (or nothing) at
// path is replaced: a symlink, FIFO, device or directory there is refused, not swapped out.
Status write_file_atomic(const std::string& path, const std::string& bytes);

// The most bytes read_regular_file reads: step noise for 256 sprites at T = 500 is ~0.4 GB.
constexpr uint64_t kMaxReadBytes = uint64_t{2} << 30;

// Reads the whole of `path` when it is a regular file of at most max_bytes; a FIFO (which
// would block forever), a device such as /dev/zero (endless) or an oversized file is refused
// before anything is read or allocated.
Status read_regular_file(const std::string& path, std::string* bytes, uint64_t max_bytes = kMaxReadBytes);

}  // namespace spritegen
