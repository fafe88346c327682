// Minimal .npy reader/writer (see npy.hpp). Format: github.com/numpy/numpy NEP 1.
#include "npy.hpp"

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
std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const std::regex pattern("'" + key + "'\\s*:\\s*('[^']*'|True|False|\\([^)]*\\))");
  std::smatch match;
  if (!std::regex_search(header, match, pattern)) throw Error(path + ": .npy header has no '" + key + "'");
  return match[1];
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::string digits;
  for (char ch : text.substr(1)) {
    if (ch >= '0' && ch <= '9') digits += ch;
    else if (!digits.empty()) shape.push_back(std::stoll(digits)), digits.clear();
  }
  return shape;
}
}  // namespace

Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path + "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0) throw Error(path + " is not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  const size_t len_size = major == 1 ? 2 : 4;
  size_t header_len = 0;
  for (size_t k = 0; k < len_size; ++k)
    header_len |= size_t(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
  const size_t offset = 8 + len_size + header_len;
  if (major < 1 || major > 3 || bytes.size() < offset) throw Error(path + ": unsupported or truncated .npy header");
  const std::string header = bytes.substr(8 + len_size, header_len);
  const std::string descr = header_field(header, "descr", path);
  if (descr != "'<f4'") throw Error(path + " holds dtype " + descr + "; float32 ('<f4') is needed (np.float32)");
  if (header_field(header, "fortran_order", path) != "False")
    throw Error(path + " is in Fortran order; save a C-order array (np.ascontiguousarray)");
  Tensor t;
  t.shape = parse_shape(header_field(header, "shape", path));
  t.data.resize(t.numel());
  if (bytes.size() - offset != t.numel() * sizeof(float))
    throw Error(path + ": data size does not match shape " + t.shape_str());
  std::memcpy(t.data.data(), bytes.data() + offset, t.numel() * sizeof(float));
  return t;
}

void write_npy(const std::string& path, const Tensor& tensor) {
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
  write_file_atomic(path, bytes);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) {
      std::remove(tmp.c_str());
      throw Error("cannot write '" + path + "'");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot write '" + path + "'");
  }
}

}  // namespace spritegen
