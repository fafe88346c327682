// manifest.json -> spritegen::Manifest (see sampler.hpp), without exceptions: every lookup
// checks presence, type and range first (the Python runtime's bounds, contract_limits.hpp),
// and JSON is parsed with allow_exceptions = false.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <sstream>

#include "contract_limits.hpp"
#include "graphs.hpp"
#include "noise.hpp"
#include "sampler.hpp"

namespace spritegen {
namespace {
using json = nlohmann::json;

// "0", "0.5", "1" for a message.
std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Typed, bounded lookups that report the dotted key they wanted.
class Reader {
 public:
  explicit Reader(std::string where) : where_(std::move(where)) {}

  Status missing(const std::string& key, const std::string& why = "") const {
    return bad_export(where_ + " has no valid '" + key + "'" + why + ": re-export with spritegen-export");
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
  // An integer in low..high (JSON integers only: 2.0 or true is not one).
  Status integer(const json& node, const std::string& key, const std::string& path, int64_t low, int64_t high,
                 int* out) const {
    const json* v = find(node, key);
    const bool fits = v && v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX);
    const bool ok = fits && v->get<int64_t>() >= low && v->get<int64_t>() <= high;
    if (!ok) return missing(path + key, " (an integer in " + std::to_string(low) + ".." + std::to_string(high) + ")");
    *out = static_cast<int>(v->get<int64_t>());
    return {};
  }
  // A finite number in (low, high), or in [low, high] when `closed`.
  Status real(const json& node, const std::string& key, const std::string& path, double low, double high,
              double* out, bool closed = false) const {
    const json* v = find(node, key);
    const double x = v && v->is_number() ? v->get<double>() : NAN;
    const bool inside = closed ? x >= low && x <= high : x > low && x < high;
    if (!(std::isfinite(x) && inside))
      return missing(path + key, std::string(" (a number in ") + (closed ? "[" : "(") + number(low) + ", " +
                                     number(high) + (closed ? "]" : ")") + ")");
    *out = x;
    return {};
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

// The names of a list of {"name": ...} tensor specs.
Status names(const Reader& r, const json& graph, const std::string& key, const std::string& path,
             std::vector<std::string>* out) {
  const json* list = r.find(graph, key);
  if (!list || !list->is_array() || list->empty() || list->size() > 16) return r.missing(path + key);
  for (const json& spec : *list) {
    std::string name;
    SPRITEGEN_TRY(r.text(spec, "name", path + key + "[].", &name));
    out->push_back(name);
  }
  return {};
}

Status read_graph(const Reader& r, const json& doc, const json& graph, const GraphKind& kind, Manifest::Graph* out) {
  const std::string path = std::string("graphs.") + kind.key + ".";
  const json* files = nullptr;
  SPRITEGEN_TRY(r.text(graph, "file", path, &out->file));
  SPRITEGEN_TRY(names(r, graph, "inputs", path, &out->inputs));
  SPRITEGEN_TRY(names(r, graph, "outputs", path, &out->outputs));
  if (std::set<std::string>(out->inputs.begin(), out->inputs.end()) != kind.inputs ||
      std::set<std::string>(out->outputs.begin(), out->outputs.end()) != kind.outputs)
    return bad_export(out->file + " in the manifest has inputs or outputs this program does not know; "
                      "rebuild spritegen_cpp for this export format");
  SPRITEGEN_TRY(r.object(doc, "files", "", &files));
  const json* digest = r.find(*files, out->file);  // {name: hex} or {name: {"sha256": hex}}
  if (digest && digest->is_object()) SPRITEGEN_TRY(r.text(*digest, "sha256", "files." + out->file + ".", &out->sha256));
  else if (digest && digest->is_string()) out->sha256 = digest->get<std::string>();
  else return r.missing("files." + out->file);
  const bool hex = out->sha256.size() == 64 && std::all_of(out->sha256.begin(), out->sha256.end(), [](char c) {
                     return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                   });
  return hex ? Status{} : r.missing("files." + out->file + ".sha256", " (64 lowercase hex digits)");
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
  return bad_export(r.where() + " names the noise generator " + entry->dump().substr(0, 200) +
                    ", but this program implements " + noise::kGenerator + " version " +
                    std::to_string(noise::kVersion) + "; use the spritegen version that exported it");
}

// class_names: n_cfeat distinct (ignoring case) names of 1..kMaxClassName characters.
Status read_classes(const Reader& r, const json& doc, int count, std::vector<std::string>* out) {
  const json* classes = r.find(doc, "class_names");
  if (!classes || !classes->is_array() || classes->size() != static_cast<size_t>(count))
    return r.missing("class_names", " (a list of n_cfeat names)");
  std::set<std::string> seen;
  for (const json& name : *classes) {
    if (!name.is_string() || name.get<std::string>().empty() ||
        name.get<std::string>().size() > static_cast<size_t>(limits::kMaxClassName))
      return r.missing("class_names", " (names of 1.." + std::to_string(limits::kMaxClassName) + " characters)");
    std::string lower = name.get<std::string>();
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (!seen.insert(lower).second) return r.missing("class_names", " (a name is used twice)");
    out->push_back(name.get<std::string>());
  }
  return {};
}

// provenance.checkpoint_sha256, else provenance.sha256; empty when neither is recorded.
Status read_checkpoint(const Reader& r, const json& doc, std::string* out) {
  const json* provenance = r.find(doc, "provenance");
  if (!provenance || provenance->is_null()) return {};
  for (const char* key : {"checkpoint_sha256", "sha256"}) {
    const json* v = r.find(*provenance, key);
    if (!v || v->is_null()) continue;
    if (!v->is_string() || v->get<std::string>().size() != 64) return r.missing(std::string("provenance.") + key);
    *out = v->get<std::string>();
    return {};
  }
  return {};
}

// One fitted table: n + 1 integers falling strictly from T to 0 (contract.check_solver_indices).
Status read_table(const Reader& r, const json& table, const std::string& key, int timesteps,
                  std::vector<int64_t>* out) {
  const std::string where = std::string(limits::kFastKey) + ".indices[" + key.substr(0, 20) + "]";
  const bool digits = !key.empty() && key.size() <= 5 &&
                      std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
  const size_t n = digits ? static_cast<size_t>(std::stoi(key)) : 0;
  if (!digits || !table.is_array() || table.size() != n + 1 || n < 1 || n > static_cast<size_t>(timesteps))
    return r.missing(where, " (n + 1 step indices for a key n in 1.." + std::to_string(timesteps) + ")");
  for (const json& i : table) {
    if (!i.is_number_integer()) return r.missing(where, " (integer step indices)");
    out->push_back(i.get<int64_t>());
  }
  bool falls = out->front() == timesteps && out->back() == 0;
  for (size_t k = 1; k < out->size(); ++k) falls = falls && (*out)[k - 1] > (*out)[k];
  return falls ? Status{} : r.missing(where, " (step indices falling strictly from T=" + std::to_string(timesteps) +
                                                 " to 0)");
}

// The optional fitted few-step sampler ("fast"): as runtime/manifest_fields.py fast_sampler.
Status read_fast(const Reader& r, const json& doc, int timesteps, Manifest::Fast* out) {
  const std::string key = limits::kFastKey;
  const json* entry = r.find(doc, key);
  if (!entry || entry->is_null()) return {};  // exported without a fit: the fast sampler is refused when asked
  const json* tables = nullptr;
  SPRITEGEN_TRY(r.object(doc, key, "", &entry));
  SPRITEGEN_TRY(r.text(*entry, "solver", key + ".", &out->solver));
  if (out->solver != "dpmpp" && out->solver != "ddim")
    return bad_export(r.where() + " names the fast solver '" + out->solver.substr(0, 40) +
                      "', but this program implements dpmpp and ddim only; use the spritegen version that exported it");
  double eta = 0.0;
  SPRITEGEN_TRY(r.real(*entry, "eta", key + ".", 0.0, 1.0, &eta, /*closed=*/true));
  out->eta = static_cast<float>(eta);
  SPRITEGEN_TRY(r.object(*entry, "indices", key + ".", &tables));
  if (tables->empty() || tables->size() > static_cast<size_t>(limits::kMaxFastTables))
    return r.missing(key + ".indices", " (1.." + std::to_string(limits::kMaxFastTables) + " tables)");
  for (auto it = tables->begin(); it != tables->end(); ++it) {
    std::vector<int64_t> table;
    SPRITEGEN_TRY(read_table(r, it.value(), it.key(), timesteps, &table));
    out->indices[static_cast<int>(table.size() - 1)] = std::move(table);
  }
  SPRITEGEN_TRY(r.integer(*entry, "default_n", key + ".", 1, timesteps, &out->default_n));
  if (!out->indices.count(out->default_n))
    return r.missing(key + ".default_n", " (an n with a table in " + key + ".indices)");
  const json* student = r.find(*entry, "student");  // a distilled student's record: one table, its own
  if (student && !student->is_null()) {
    SPRITEGEN_TRY(r.object(*entry, "student", key + ".", &student));
    if (out->indices.size() != 1) return r.missing(key + ".indices", " (a distilled student's one table)");
    out->student = true;
  }
  return {};
}

Status read_model(const Reader& r, const json& doc, Manifest* m) {
  const json *model = nullptr, *hyper = nullptr, *schedule = nullptr;
  const std::string h = "model.hyperparameters.";
  SPRITEGEN_TRY(r.object(doc, "model", "", &model));
  SPRITEGEN_TRY(r.object(*model, "hyperparameters", "model.", &hyper));
  SPRITEGEN_TRY(r.integer(*hyper, "in_channels", h, 1, limits::kMaxChannels, &m->channels));
  SPRITEGEN_TRY(r.integer(*hyper, "height", h, 1, limits::kMaxHeight, &m->height));
  SPRITEGEN_TRY(r.integer(*hyper, "n_feat", h, 1, limits::kMaxFeatures, &m->n_feat));
  SPRITEGEN_TRY(r.integer(*hyper, "n_cfeat", h, 1, limits::kMaxClasses, &m->n_cfeat));
  SPRITEGEN_TRY(r.object(doc, "schedule", "", &schedule));
  SPRITEGEN_TRY(r.integer(*schedule, "timesteps", "schedule.", 1, limits::kMaxTimesteps, &m->timesteps));
  SPRITEGEN_TRY(r.real(*schedule, "beta1", "schedule.", 0.0, 1.0, &m->beta1));
  return r.real(*schedule, "beta2", "schedule.", 0.0, 1.0, &m->beta2);
}
}  // namespace

Status Manifest::parse(const std::string& json_text, const std::string& where, Manifest* out) {
  if (json_text.size() > static_cast<uint64_t>(limits::kMaxManifestBytes))
    return bad_export(where + " is larger than " + std::to_string(limits::kMaxManifestBytes) +
                      " bytes: not a spritegen manifest");
  const json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return bad_export(where + " is not valid JSON: re-export with spritegen-export");
  const Reader r(where);
  Manifest m;
  SPRITEGEN_TRY(r.text(doc, "format", "", &m.format));
  if (m.format != limits::kManifestFormat)
    return bad_export("manifest format '" + m.format.substr(0, 80) + "' is not " + limits::kManifestFormat +
                      ": re-export with this version of spritegen-export");
  SPRITEGEN_TRY(check_noise(r, doc));
  SPRITEGEN_TRY(read_model(r, doc, &m));
  SPRITEGEN_TRY(read_classes(r, doc, m.n_cfeat, &m.class_names));
  SPRITEGEN_TRY(read_checkpoint(r, doc, &m.checkpoint_sha256));
  const json* graphs = nullptr;
  SPRITEGEN_TRY(r.object(doc, "graphs", "", &graphs));
  for (const GraphKind& kind : graph_kinds()) {
    const json* graph = r.find(*graphs, kind.key);
    if (graph == nullptr) continue;  // an export without this graph: refused when a run needs it
    if (!graph->is_object()) return r.missing(std::string("graphs.") + kind.key);
    SPRITEGEN_TRY(read_graph(r, doc, *graph, kind, &m.graphs[kind.key]));
  }
  m.ddim_loop_steps = static_cast<int>(std::min<int64_t>(limits::kDdimDefaultSteps, m.timesteps));
  if (m.graphs.count("ddim_loop") || r.find(doc, "ddim_loop_steps"))
    SPRITEGEN_TRY(r.integer(doc, "ddim_loop_steps", "", 1, m.timesteps, &m.ddim_loop_steps));
  SPRITEGEN_TRY(read_fast(r, doc, m.timesteps, &m.fast));
  *out = std::move(m);
  return {};
}

}  // namespace spritegen
