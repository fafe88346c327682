// Minimal .npy reader/writer for float32 C-order arrays (NumPy format versions 1-3): the command
// line's, not part of the library an engine copies (write_file_atomic uses POSIX calls).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sampler.hpp"

namespace spritegen {

// Reads a float32 ('<f4'), C-order .npy file of shape `want`, where a dimension of -1 is the
// batch, 1..max_batch. The header (at most kMaxNpyHeader bytes), the shape and the file's size
// are checked before the data is read or anything it sizes is allocated; anything else is one
// invalid_argument/io Status line.
Status read_npy(const std::string& path, const std::vector<int64_t>& want, int64_t max_batch, Tensor* out);

// numpy's own bound on a .npy header (np.load's max_header_size): a longer one is not a
// sprite array.
constexpr size_t kMaxNpyHeader = 10000;

// Writes a float32 C-order .npy (format 1.0), via a temporary file renamed at the end.
Status write_npy(const std::string& path, const Tensor& tensor);

// Writes `bytes` to path through a fresh temporary file beside it (mkstemp, never an existing
// name) and a rename, so no half-written file is left. Only a regular file (or nothing) at
// path is replaced: a symlink, FIFO, device or directory there is refused, not swapped out.
Status write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace spritegen
