// manifest.json -> spritegen::Manifest (see sampler.hpp), without exceptions: every lookup
// checks presence and type first, and JSON is parsed with allow_exceptions = false.
#include <nlohmann/json.hpp>

#include <set>

#include "noise.hpp"
#include "sampler.hpp"

namespace spritegen {
namespace {
using json = nlohmann::json;

constexpr const char* kFormatPrefix = "spritegen-export/1";  // the manifest format we read

// The inputs each graph must have (names from the export contract; order from the manifest).
const std::map<std::string, std::set<std::string>>& graph_inputs() {
  static const std::map<std::string, std::set<std::string>> inputs = {
      {"ddim_step", {"x", "c", "i", "i_prev", "eta", "z", "w"}},
      {"ddpm_step", {"x", "c", "i", "z", "w"}},
      {"ddim_loop", {"x", "c", "w"}},
  };
  return inputs;
}

// Typed lookups that report the dotted key they wanted.
class Reader {
 public:
  explicit Reader(std::string where) : where_(std::move(where)) {}

  Status missing(const std::string& key) const {
    return bad_export(where_ + " has no valid '" + key + "': re-export with spritegen-export");
  }
  const json* find(const json& node, const std::string& key) const {
    if (!node.is_object()) return nullptr;
    const auto it = node.find(key);
    return it == node.end() ? nullptr : &*it;
  }
  Status object(const json& node, const std::string& key, const std::string& path, const json** out) const {
    const json* v = find(node, key);
    if (!v || !v->is_object()) return missing(path + key);
    *out = v;
    return {};
  }
  Status text(const json& node, const std::string& key, const std::string& path, std::string* out) const {
    const json* v = find(node, key);
    if (!v || !v->is_string()) return missing(path + key);
    *out = v->get<std::string>();
    return {};
  }
  Status integer(const json& node, const std::string& key, const std::string& path, int* out) const {
    const json* v = find(node, key);
    if (!v || !v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > 1000000)
      return missing(path + key);
    *out = static_cast<int>(v->get<int64_t>());
    return {};
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

// The first name of a list of {"name": ...} tensor specs, or all of them.
Status names(const Reader& r, const json& graph, const std::string& key, const std::string& path,
             std::vector<std::string>* out) {
  const json* list = r.find(graph, key);
  if (!list || !list->is_array() || list->empty()) return r.missing(path + key);
  for (const json& spec : *list) {
    std::string name;
    SPRITEGEN_TRY(r.text(spec, "name", path + key + "[].", &name));
    out->push_back(name);
  }
  return {};
}

Status read_graph(const Reader& r, const json& doc, const std::string& key, Manifest::Graph* out) {
  const json *graphs = nullptr, *graph = nullptr, *files = nullptr;
  SPRITEGEN_TRY(r.object(doc, "graphs", "", &graphs));
  SPRITEGEN_TRY(r.object(*graphs, key, "graphs.", &graph));
  const std::string path = "graphs." + key + ".";
  SPRITEGEN_TRY(r.text(*graph, "file", path, &out->file));
  SPRITEGEN_TRY(names(r, *graph, "inputs", path, &out->inputs));
  std::vector<std::string> outputs;
  SPRITEGEN_TRY(names(r, *graph, "outputs", path, &outputs));
  out->output = outputs[0];
  if (std::set<std::string>(out->inputs.begin(), out->inputs.end()) != graph_inputs().at(key))
    return bad_export(out->file + " in the manifest has inputs this program does not know; "
                      "rebuild spritegen_cpp for this export format");
  SPRITEGEN_TRY(r.object(doc, "files", "", &files));
  const json* digest = r.find(*files, out->file);  // {name: hex} or {name: {"sha256": hex}}
  if (digest && digest->is_object()) return r.text(*digest, "sha256", "files." + out->file + ".", &out->sha256);
  if (!digest || !digest->is_string()) return r.missing("files." + out->file);
  out->sha256 = digest->get<std::string>();
  return {};
}

// The generator the export's seeds mean must be the one noise.cpp implements.
Status check_noise(const Reader& r, const json& doc) {
  const json* entry = r.find(doc, "noise");
  if (!entry) return {};  // exported before the record existed: spritegen-normal v1 (docs/noise.md)
  const json* generator = r.find(*entry, "generator");
  const json* version = r.find(*entry, "version");
  const bool ours = generator && generator->is_string() && generator->get<std::string>() == noise::kGenerator &&
                    version && version->is_number_integer() && version->get<int64_t>() == noise::kVersion;
  if (ours) return {};
  return bad_export(r.where() + " names the noise generator " + entry->dump() + ", but this program implements " +
                    noise::kGenerator + " version " + std::to_string(noise::kVersion) +
                    "; use the spritegen version that exported it");
}
}  // namespace

Status Manifest::parse(const std::string& json_text, const std::string& where, Manifest* out) {
  const json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return bad_export(where + " is not valid JSON: re-export with spritegen-export");
  const Reader r(where);
  std::string format;
  SPRITEGEN_TRY(r.text(doc, "format", "", &format));
  if (format.rfind(kFormatPrefix, 0) != 0)
    return bad_export("manifest format '" + format + "' is not " + kFormatPrefix + ": re-export or update");
  SPRITEGEN_TRY(check_noise(r, doc));
  Manifest m;
  const json *model = nullptr, *hyper = nullptr, *schedule = nullptr;
  SPRITEGEN_TRY(r.object(doc, "model", "", &model));
  SPRITEGEN_TRY(r.object(*model, "hyperparameters", "model.", &hyper));
  SPRITEGEN_TRY(r.integer(*hyper, "in_channels", "model.hyperparameters.", &m.channels));
  SPRITEGEN_TRY(r.integer(*hyper, "height", "model.hyperparameters.", &m.height));
  SPRITEGEN_TRY(r.integer(*hyper, "n_cfeat", "model.hyperparameters.", &m.n_cfeat));
  SPRITEGEN_TRY(r.object(doc, "schedule", "", &schedule));
  SPRITEGEN_TRY(r.integer(*schedule, "timesteps", "schedule.", &m.timesteps));
  SPRITEGEN_TRY(r.integer(doc, "ddim_loop_steps", "", &m.ddim_loop_steps));
  const json* classes = r.find(doc, "class_names");
  if (!classes || !classes->is_array() || classes->size() != static_cast<size_t>(m.n_cfeat))
    return r.missing("class_names");
  for (const json& name : *classes) {
    if (!name.is_string()) return r.missing("class_names");
    m.class_names.push_back(name.get<std::string>());
  }
  for (const auto& entry : graph_inputs()) SPRITEGEN_TRY(read_graph(r, doc, entry.first, &m.graphs[entry.first]));
  *out = std::move(m);
  return {};
}

}  // namespace spritegen
