// Minimal .npy reader/writer (see npy.hpp). Format: github.com/numpy/numpy NEP 1.
#include "npy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>

namespace spritegen {
namespace {
const char kMagic[] = "\x93NUMPY";

// The value of 'key' in the header dict, as written ("'<f4'", "False", "(1, 3, 16, 16)").
bool header_field(const std::string& header, const std::string& key, std::string* value) {
  const std::regex pattern("'" + key + "'\\s*:\\s*('[^']*'|True|False|\\([^)]*\\))");
  std::smatch match;
  if (!std::regex_search(header, match, pattern)) return false;
  *value = match[1];
  return true;
}

// "(1, 3, 16, 16)" -> {1, 3, 16, 16}; false on a dimension above 2^31.
bool parse_shape(const std::string& text, std::vector<int64_t>* shape) {
  int64_t dim = -1;
  for (char ch : text.substr(1)) {
    if (ch >= '0' && ch <= '9') {
      dim = (dim < 0 ? 0 : dim) * 10 + (ch - '0');
      if (dim > (int64_t{1} << 31)) return false;
    } else if (dim >= 0) {
      shape->push_back(dim);
      dim = -1;
    }
  }
  return true;
}
}  // namespace

Status read_npy(const std::string& path, Tensor* out) {
  std::string bytes;
  SPRITEGEN_TRY(read_regular_file(path, &bytes));
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0) return invalid(path + " is not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  const size_t len_size = major == 1 ? 2 : 4;
  size_t header_len = 0;
  for (size_t k = 0; k < len_size; ++k)
    header_len |= size_t(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
  const size_t offset = 8 + len_size + header_len;
  if (major < 1 || major > 3 || bytes.size() < offset) return invalid(path + ": unsupported or truncated .npy header");
  const std::string header = bytes.substr(8 + len_size, header_len);
  std::string descr, order, shape;
  if (!header_field(header, "descr", &descr) || !header_field(header, "fortran_order", &order) ||
      !header_field(header, "shape", &shape))
    return invalid(path + ": .npy header lacks descr, fortran_order or shape");
  if (descr != "'<f4'") return invalid(path + " holds dtype " + descr + "; float32 ('<f4') is needed (np.float32)");
  if (order != "False") return invalid(path + " is in Fortran order; save a C-order array (np.ascontiguousarray)");
  Tensor t;
  if (!parse_shape(shape, &t.shape)) return invalid(path + ": .npy shape " + shape + " is too large");
  if (bytes.size() - offset != t.numel() * sizeof(float))
    return invalid(path + ": data size does not match shape " + t.shape_str());
  t.data.resize(t.numel());
  std::memcpy(t.data.data(), bytes.data() + offset, t.numel() * sizeof(float));
  *out = std::move(t);
  return {};
}

Status write_npy(const std::string& path, const Tensor& tensor) {
  std::ostringstream dict;
  dict << "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (size_t k = 0; k < tensor.shape.size(); ++k)  // "(n,)" for one axis, "(a, b)" otherwise
    dict << tensor.shape[k] << (tensor.shape.size() == 1 ? "," : k + 1 < tensor.shape.size() ? ", " : "");
  dict << "), }";
  std::string header = dict.str();
  const size_t total = 10 + header.size() + 1;  // magic, version, length, header, newline
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string bytes(kMagic, 6);
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(tensor.data.data()), tensor.data.size() * sizeof(float));
  return write_file_atomic(path, bytes);
}

Status write_file_atomic(const std::string& path, const std::string& bytes) {
  struct stat info {};
  if (lstat(path.c_str(), &info) == 0 && !S_ISREG(info.st_mode))
    return invalid("'" + path + "' exists and is not a regular file (a symlink, FIFO, device or directory); "
                   "refusing to replace it: choose another output path");
  std::string tmp = path + ".XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return {Code::io, "cannot write '" + path + "' (" + std::strerror(errno) + ")"};
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const int saved = errno;
  const bool ok = done == bytes.size() && fchmod(fd, 0644) == 0 && ::close(fd) == 0;
  if (!ok) {
    if (done != bytes.size()) ::close(fd);
    std::remove(tmp.c_str());
    return {Code::io, "cannot write '" + path + "' (" + std::strerror(saved) + ")"};
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int why = errno;
    std::remove(tmp.c_str());
    return {Code::io, "cannot write '" + path + "' (" + std::strerror(why) + ")"};
  }
  return {};
}

Status read_regular_file(const std::string& path, std::string* bytes, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // O_NONBLOCK: a FIFO cannot block open
  if (fd < 0) return {Code::io, "cannot read '" + path + "' (" + std::strerror(errno) + ")"};
  struct stat info {};
  Status status;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    status = invalid("'" + path + "' is not a regular file (a directory, FIFO or device); refusing to read it");
  } else if (static_cast<uint64_t>(info.st_size) > max_bytes) {
    status = invalid("'" + path + "' is " + std::to_string(info.st_size) + " bytes, more than the " +
                     std::to_string(max_bytes) + " this program reads");
  } else {
    bytes->resize(static_cast<size_t>(info.st_size));
    size_t done = 0;
    while (done < bytes->size()) {
      const ssize_t n = ::read(fd, &(*bytes)[done], bytes->size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    if (done != bytes->size()) status = {Code::io, "cannot read '" + path + "' (it changed while being read)"};
  }
  ::close(fd);
  return status;
}

}  // namespace spritegen
