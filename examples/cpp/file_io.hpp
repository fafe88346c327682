// Reading the export's files, portably (C++17 <filesystem> and <fstream> only): part of the
// library an engine copies, so no POSIX calls. A FIFO (which would block a read forever), a
// device such as /dev/zero (endless), a directory or an oversized file is refused by what it
// is, before anything is opened, read or allocated.
#pragma once

#include <cstdint>
#include <string>

#include "status.hpp"

namespace spritegen {

// What is at `path`, following symlinks: "a regular file", "a FIFO", "a character device",
// "a directory", "missing" (nothing there, or a dangling link), ...
std::string file_kind(const std::string& path);

// `path`'s size when it is a regular file of at most max_bytes; otherwise a Status naming what
// it is (`what` names the file's role in the message, e.g. "graph file").
Status regular_file_size(const std::string& path, uint64_t max_bytes, const std::string& what, uint64_t* size);

// The whole of `path` when it is a regular file of at most max_bytes (regular_file_size first).
Status read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what, std::string* bytes);

// `length` bytes of `path` from `offset` into `out` (already checked with regular_file_size).
Status read_range(const std::string& path, uint64_t offset, uint64_t length, char* out);

}  // namespace spritegen
