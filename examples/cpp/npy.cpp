// Minimal .npy reader/writer (see npy.hpp). Format: github.com/numpy/numpy NEP 1.
#include "npy.hpp"

#include "file_io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace spritegen {
namespace {
const char kMagic[] = "\x93NUMPY";

// The value of 'key' in the header dict, as written ("'<f4'", "False", "(1, 3, 16, 16)"):
// a plain scan (std::regex recursed per character and overflowed the stack on long headers).
bool header_field(const std::string& header, const std::string& key, std::string* value) {
  size_t pos = header.find("'" + key + "'");
  if (pos == std::string::npos) return false;
  pos += key.size() + 2;
  while (pos < header.size() && (header[pos] == ' ' || header[pos] == ':')) ++pos;
  if (pos >= header.size()) return false;
  const char open = header[pos];
  const char close = open == '\'' ? '\'' : open == '(' ? ')' : '\0';
  size_t stop = close ? header.find(close, pos + 1) : header.find_first_of(",} ", pos);
  if (stop == std::string::npos) return false;
  *value = header.substr(pos, stop - pos + (close ? 1 : 0));
  return true;
}

// "(1, 3, 16, 16)" -> {1, 3, 16, 16}; false on more than 8 axes or a dimension above 2^31.
bool parse_shape(const std::string& text, std::vector<int64_t>* shape) {
  int64_t dim = -1;
  for (char ch : text.substr(1)) {
    if (ch >= '0' && ch <= '9') {
      dim = (dim < 0 ? 0 : dim) * 10 + (ch - '0');
      if (dim > (int64_t{1} << 31)) return false;
    } else if (dim >= 0) {
      shape->push_back(dim);
      dim = -1;
      if (shape->size() > 8) return false;
    }
  }
  return true;
}

// The expected shape as text: -1 reads "B".
std::string want_string(const std::vector<int64_t>& want) {
  std::string out = "[";
  for (size_t k = 0; k < want.size(); ++k) out += (k ? ", " : "") + (want[k] < 0 ? "B" : std::to_string(want[k]));
  return out + "]";
}

// The header's shape must be `want` (-1: the batch, 1..max_batch).
Status check_shape(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& want,
                   int64_t max_batch) {
  bool ok = shape.size() == want.size();
  for (size_t k = 0; ok && k < want.size(); ++k)
    ok = want[k] < 0 ? shape[k] >= 1 && shape[k] <= max_batch : shape[k] == want[k];
  if (ok) return {};
  return invalid(path + " holds shape " + shape_string(shape) + "; " + want_string(want) + " is needed (1 <= B <= " +
                 std::to_string(max_batch) + ")");
}

// Magic, version, header length and header dict of a .npy file of `size` bytes.
Status read_header(const std::string& path, uint64_t size, std::string* header, uint64_t* offset) {
  char prefix[12] = {};
  if (size < 10 || !read_range(path, 0, 10, prefix).ok() || std::memcmp(prefix, kMagic, 6) != 0)
    return invalid(path + " is not a .npy file");
  const int major = static_cast<unsigned char>(prefix[6]);
  if (major < 1 || major > 3) return invalid(path + ": unsupported .npy format version " + std::to_string(major));
  const size_t len_size = major == 1 ? 2 : 4;
  if (len_size == 4) SPRITEGEN_TRY(read_range(path, 10, 2, prefix + 10));
  uint64_t header_len = 0;
  for (size_t k = 0; k < len_size; ++k) header_len |= uint64_t(static_cast<unsigned char>(prefix[8 + k])) << (8 * k);
  if (header_len > kMaxNpyHeader)
    return invalid(path + ": .npy header of " + std::to_string(header_len) + " bytes, more than numpy's " +
                   std::to_string(kMaxNpyHeader) + "; save the array with np.save");
  *offset = 8 + len_size + header_len;
  if (size < *offset) return invalid(path + ": truncated .npy header");
  header->assign(static_cast<size_t>(header_len), '\0');
  return read_range(path, 8 + len_size, header_len, header->data());
}
}  // namespace

Status read_npy(const std::string& path, const std::vector<int64_t>& want, int64_t max_batch, Tensor* out) {
  uint64_t size = 0, offset = 0;
  // no size bound here: nothing is allocated from the file's size, only from a checked shape
  SPRITEGEN_TRY(regular_file_size(path, UINT64_MAX, "noise file", &size));
  std::string header, descr, order, shape;
  SPRITEGEN_TRY(read_header(path, size, &header, &offset));
  if (!header_field(header, "descr", &descr) || !header_field(header, "fortran_order", &order) ||
      !header_field(header, "shape", &shape) || shape.empty() || shape[0] != '(')
    return invalid(path + ": .npy header lacks descr, fortran_order or shape");
  if (descr != "'<f4'") return invalid(path + " holds dtype " + descr + "; float32 ('<f4') is needed (np.float32)");
  if (order != "False") return invalid(path + " is in Fortran order; save a C-order array (np.ascontiguousarray)");
  Tensor t;
  if (!parse_shape(shape, &t.shape)) return invalid(path + ": .npy shape " + shape.substr(0, 80) + " is too large");
  SPRITEGEN_TRY(check_shape(path, t.shape, want, max_batch));  // before anything the shape sizes
  if (size - offset != t.numel() * sizeof(float))
    return invalid(path + ": " + std::to_string(size - offset) + " data bytes do not match shape " + t.shape_str());
  t.data.resize(t.numel());
  SPRITEGEN_TRY(read_range(path, offset, t.numel() * sizeof(float), reinterpret_cast<char*>(t.data.data())));
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

}  // namespace spritegen
