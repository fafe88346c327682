// Portable bounded file reads (see file_io.hpp).
#include "file_io.hpp"

#include <filesystem>
#include <fstream>
#include <system_error>

namespace spritegen {
namespace fs = std::filesystem;

std::string file_kind(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);  // follows symlinks: a link to /dev/zero is a device
  switch (st.type()) {
    case fs::file_type::regular: return "a regular file";
    case fs::file_type::directory: return "a directory";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::not_found: return "missing";
    default: return "not a readable file";
  }
}

Status regular_file_size(const std::string& path, uint64_t max_bytes, const std::string& what, uint64_t* size) {
  const std::string kind = file_kind(path);
  if (kind == "missing") return {Code::io, what + " '" + path + "' is missing"};
  if (kind != "a regular file")
    return invalid(what + " '" + path + "' is " + kind + ", not a regular file; refusing to read it");
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(path, ec);
  if (ec) return {Code::io, "cannot read " + what + " '" + path + "' (" + ec.message() + ")"};
  if (bytes > max_bytes)
    return invalid(what + " '" + path + "' is " + std::to_string(bytes) + " bytes, more than the " +
                   std::to_string(max_bytes) + " allowed; it is not what it claims to be");
  *size = bytes;
  return {};
}

Status read_range(const std::string& path, uint64_t offset, uint64_t length, char* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in || !in.seekg(static_cast<std::streamoff>(offset)))
    return {Code::io, "cannot read '" + path + "'"};
  in.read(out, static_cast<std::streamsize>(length));
  if (static_cast<uint64_t>(in.gcount()) != length)
    return {Code::io, "cannot read '" + path + "' (it changed while being read)"};
  return {};
}

Status read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what, std::string* bytes) {
  uint64_t size = 0;
  SPRITEGEN_TRY(regular_file_size(path, max_bytes, what, &size));
  std::string data(static_cast<size_t>(size), '\0');
  SPRITEGEN_TRY(read_range(path, 0, size, data.data()));
  *bytes = std::move(data);
  return {};
}

}  // namespace spritegen
