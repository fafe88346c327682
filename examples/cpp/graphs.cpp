// The graph table and each graph file's metadata check (see graphs.hpp).
#include "graphs.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace spritegen {
namespace {
using json = nlohmann::json;

// Protobuf wire format (protobuf.dev/programming-guides/encoding): each field is a varint key
// (number << 3 | wire type), then a varint, 8 bytes, 4 bytes or a length-prefixed payload.
// ModelProto.metadata_props is field 14, a StringStringEntryProto {key = 1, value = 2}.
constexpr uint64_t kMetadataProps = 14;

struct Field {
  uint64_t number = 0;
  const char* data = nullptr;  // the payload of a length-delimited field, else null
  size_t size = 0;
};

bool varint(const char* data, size_t end, size_t* pos, uint64_t* out) {
  uint64_t value = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    if (*pos >= end) return false;
    const auto byte = static_cast<unsigned char>(data[(*pos)++]);
    value |= uint64_t{byte & 0x7fu} << shift;
    if (byte < 0x80) {
      *out = value;
      return true;
    }
  }
  return false;
}

// The top-level fields of one message; false when it is not well-formed.
bool fields(const char* data, size_t size, std::vector<Field>* out) {
  size_t pos = 0;
  while (pos < size) {
    uint64_t key = 0, value = 0;
    if (!varint(data, size, &pos, &key)) return false;
    Field field{key >> 3};
    switch (key & 7) {
      case 0: if (!varint(data, size, &pos, &value)) return false; break;
      case 1: pos += 8; break;
      case 5: pos += 4; break;
      case 2:
        if (!varint(data, size, &pos, &value) || value > size - pos) return false;
        field.data = data + pos;
        field.size = static_cast<size_t>(value);
        pos += field.size;
        break;
      default: return false;  // groups (3, 4) are not used by ONNX; 6 and 7 do not exist
    }
    if (pos > size) return false;
    out->push_back(field);
  }
  return true;
}

// JSON-equal, numbers compared to 1e-9 relative (they round-trip through JSON), as Python's.
bool same(const json& a, const json& b) {
  if (a.is_number() && b.is_number() && !a.is_boolean() && !b.is_boolean()) {
    const double x = a.get<double>(), y = b.get<double>();
    return std::isfinite(x) && std::isfinite(y) && std::abs(x - y) <= 1e-9 * std::max({std::abs(x), std::abs(y), 1e-30});
  }
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it)
      if (!b.contains(it.key()) || !same(it.value(), b.at(it.key()))) return false;
    return true;
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t k = 0; k < a.size(); ++k)
      if (!same(a[k], b[k])) return false;
    return true;
  }
  return a == b;
}

// The facts a graph's metadata must agree with, as the exporter writes them (GraphMeta keys).
std::map<std::string, json> facts(const Manifest& m, bool loop) {
  std::map<std::string, json> out = {
      {"hyperparameters", {{"in_channels", m.channels}, {"n_feat", m.n_feat}, {"n_cfeat", m.n_cfeat},
                           {"height", m.height}}},
      {"class_names", m.class_names},
      {"schedule", {{"timesteps", m.timesteps}, {"beta1", m.beta1}, {"beta2", m.beta2}}},
  };
  if (loop) out["ddim_loop_steps"] = m.ddim_loop_steps;
  return out;
}

// The checkpoint sha256 a graph records: "checkpoint_sha256", else the one in its "source".
Status graph_checkpoint(const std::map<std::string, std::string>& meta, const std::string& label, std::string* out) {
  out->clear();
  const auto direct = meta.find("checkpoint_sha256");
  if (direct != meta.end()) {
    *out = direct->second;
  } else if (meta.count("source")) {
    const json source = json::parse(meta.at("source"), nullptr, false);
    for (const char* key : {"checkpoint_sha256", "sha256"})
      if (out->empty() && source.is_object() && source.contains(key) && source[key].is_string())
        *out = source[key].get<std::string>();
  }
  const bool hex = out->size() == 64 && std::all_of(out->begin(), out->end(), [](char c) {
                     return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                   });
  if (out->empty() || hex) return {};
  return bad_export(label + " records checkpoint sha256 '" + out->substr(0, 80) + "', not 64 hex digits; re-export");
}
}  // namespace

const std::vector<GraphKind>& graph_kinds() {
  static const std::vector<GraphKind> kinds = {
      {"ddim_step", {"x", "c", "i", "i_prev", "eta", "z", "w"}, {"x_prev"}, false},
      {"ddpm_step", {"x", "c", "i", "z", "w"}, {"x_prev"}, false},
      {"ddim_loop", {"x", "c", "w"}, {"sample"}, true},
      {"solver_step", {"x", "m", "c", "i", "i_next", "i_last", "eta", "z", "w"}, {"x_next", "x0"}, false},
  };
  return kinds;
}

Status onnx_metadata(const std::string& bytes, const std::string& label, std::map<std::string, std::string>* out) {
  std::vector<Field> top;
  if (!fields(bytes.data(), bytes.size(), &top)) return bad_export(label + " is not an ONNX model; re-export");
  for (const Field& field : top) {
    if (field.number != kMetadataProps || field.data == nullptr) continue;
    std::vector<Field> entry;
    if (!fields(field.data, field.size, &entry)) return bad_export(label + " is not an ONNX model; re-export");
    std::string key, value;
    for (const Field& part : entry)
      if (part.data && part.number == 1) key.assign(part.data, part.size);
      else if (part.data && part.number == 2) value.assign(part.data, part.size);
    (*out)[key] = value;  // last wins, as protobuf's own parser does
  }
  return {};
}

Status check_graph(const Manifest& m, const std::string& key, const std::string& label, const std::string& bytes,
                   std::string* checkpoint) {
  std::map<std::string, std::string> meta;
  SPRITEGEN_TRY(onnx_metadata(bytes, label, &meta));
  const auto format = meta.find("spritegen.format");
  if (format != meta.end() && format->second != m.format)
    return bad_export(label + " was written as format '" + format->second.substr(0, 80) + "', the manifest says '" +
                      m.format + "': files of different exports were mixed; re-export");
  const auto kind = meta.find("graph");
  if (kind != meta.end() && kind->second != key)
    return bad_export(label + " holds the exporter's '" + kind->second.substr(0, 40) + "' graph, not " + key +
                      ": files of the export were swapped; re-export");
  const bool loop = std::any_of(graph_kinds().begin(), graph_kinds().end(),
                                [&](const GraphKind& k) { return k.key == key && k.has_loop_steps; });
  for (const auto& [name, ours] : facts(m, loop)) {
    const auto found = meta.find(name);
    if (found == meta.end()) continue;  // exports from before the key was recorded
    const json theirs = json::parse(found->second, nullptr, false);
    if (theirs.is_discarded() || !same(theirs, ours))
      return bad_export("the manifest says " + name + " = " + ours.dump().substr(0, 200) + " but " + label +
                        " was exported with " + found->second.substr(0, 200) + ": the manifest was edited; re-export");
  }
  std::string theirs;
  SPRITEGEN_TRY(graph_checkpoint(meta, label, &theirs));
  const std::string& want = !m.checkpoint_sha256.empty() ? m.checkpoint_sha256 : *checkpoint;
  if (!want.empty() && theirs != want)
    return bad_export(label + " was exported from checkpoint '" + theirs.substr(0, 12) + "' but " +
                      (m.checkpoint_sha256.empty() ? "the graphs loaded before" : "manifest.json") + " from '" +
                      want.substr(0, 12) + "': files of different exports were mixed; re-export");
  if (checkpoint->empty()) *checkpoint = theirs.empty() ? want : theirs;
  return {};
}

}  // namespace spritegen
