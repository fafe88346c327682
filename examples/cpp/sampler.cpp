// SpriteGen sampler on ONNX Runtime's C++ API (see sampler.hpp).
#include "sampler.hpp"

#include <nlohmann/json.hpp>

#include "sha256.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <sstream>

namespace spritegen {
namespace fs = std::filesystem;
using json = nlohmann::json;

// ------------------------------------------------------------------------- Tensor
Tensor::Tensor(std::vector<int64_t> dims) : shape(std::move(dims)), data(numel(), 0.0f) {}

size_t Tensor::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

std::string Tensor::shape_str() const { return shape_string(shape); }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t k = 0; k < shape.size(); ++k) out << (k ? ", " : "") << shape[k];
  out << "]";
  return out.str();
}

// ----------------------------------------------------------------------- Manifest
namespace {
constexpr const char* kFormatPrefix = "spritegen-export/1";  // the manifest format we read

// The inputs each graph must have (names from the export contract; order from the manifest).
const std::map<std::string, std::set<std::string>> kGraphInputs = {
    {"ddim_step", {"x", "c", "i", "i_prev", "eta", "z", "w"}},
    {"ddpm_step", {"x", "c", "i", "z", "w"}},
    {"ddim_loop", {"x", "c", "w"}},
};

const json& at(const json& node, const std::string& key, const std::string& where) {
  if (!node.is_object() || !node.contains(key))
    throw Error("manifest.json has no '" + where + key + "': re-export with spritegen-export");
  return node.at(key);
}

Manifest::Graph read_graph(const json& graphs, const std::string& key) {
  const json& g = at(graphs, key, "graphs.");
  Manifest::Graph out;
  out.file = at(g, "file", "graphs." + key + ".").get<std::string>();
  for (const json& spec : at(g, "inputs", "graphs." + key + "."))
    out.inputs.push_back(spec.at("name").get<std::string>());
  out.output = at(g, "outputs", "graphs." + key + ".").at(0).at("name").get<std::string>();
  const std::set<std::string> names(out.inputs.begin(), out.inputs.end());
  if (names != kGraphInputs.at(key))
    throw Error(out.file + " in the manifest has inputs this program does not know; "
                "rebuild spritegen_cpp for this export format");
  return out;
}
}  // namespace

Manifest Manifest::load(const std::string& export_dir) {
  const fs::path path = fs::path(export_dir) / "manifest.json";
  if (!fs::is_directory(export_dir))
    throw Error("export directory '" + export_dir + "' does not exist; run spritegen-export first");
  std::ifstream in(path);
  if (!in) throw Error("no manifest.json in '" + export_dir + "': not a spritegen export directory");
  json doc;
  try {
    doc = json::parse(in);
    const std::string format = at(doc, "format", "").get<std::string>();
    if (format.rfind(kFormatPrefix, 0) != 0)
      throw Error("manifest format '" + format + "' is not " + kFormatPrefix + ": re-export or update");
    Manifest m;
    const json& model = at(at(doc, "model", ""), "hyperparameters", "model.");
    m.channels = at(model, "in_channels", "model.hyperparameters.").get<int>();
    m.height = at(model, "height", "model.hyperparameters.").get<int>();
    m.n_cfeat = at(model, "n_cfeat", "model.hyperparameters.").get<int>();
    m.timesteps = at(at(doc, "schedule", ""), "timesteps", "schedule.").get<int>();
    m.class_names = at(doc, "class_names", "").get<std::vector<std::string>>();
    m.ddim_loop_steps = at(doc, "ddim_loop_steps", "").get<int>();
    const json& graphs = at(doc, "graphs", "");
    const json& files = at(doc, "files", "");
    for (const auto& entry : kGraphInputs) {
      Manifest::Graph g = read_graph(graphs, entry.first);
      const json& digest = at(files, g.file, "files.");  // {name: hex} or {name: {"sha256": hex}}
      g.sha256 = (digest.is_object() ? at(digest, "sha256", "files." + g.file + ".") : digest).get<std::string>();
      m.graphs[entry.first] = g;
    }
    return m;
  } catch (const json::exception& e) {
    throw Error(path.string() + " is not a valid manifest: " + e.what());
  }
}

// ------------------------------------------------------------------------ Sampler
Sampler::Sampler(const std::string& export_dir, int threads, bool spin)
    : dir_(export_dir), manifest_(Manifest::load(export_dir)),
      env_(ORT_LOGGING_LEVEL_WARNING, "spritegen") {
  session_options_.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  session_options_.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);  // the graphs are chains
  session_options_.SetInterOpNumThreads(1);
  if (threads > 0) session_options_.SetIntraOpNumThreads(threads);
  session_options_.AddConfigEntry("session.intra_op.allow_spinning", spin ? "1" : "0");
  for (const auto& entry : manifest_.graphs) {
    const fs::path file = fs::path(dir_) / entry.second.file;
    if (!fs::is_regular_file(file))
      throw Error("missing " + file.string() + ": the export directory is incomplete; re-export");
  }
}

Sampler::Session& Sampler::session(const std::string& key) {
  auto found = sessions_.find(key);
  if (found != sessions_.end()) return *found->second;
  // The bytes checked against the manifest's sha256 are the bytes ONNX Runtime loads.
  const Manifest::Graph& io = manifest_.graphs.at(key);
  const std::string file = (fs::path(dir_) / io.file).string();
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw Error("cannot read " + file);
  if (sha256_hex(bytes.data(), bytes.size()) != io.sha256)
    throw Error(file + " does not match the sha256 in manifest.json: altered or swapped; re-export");
  auto made = std::unique_ptr<Session>(
      new Session{Ort::Session(env_, bytes.data(), bytes.size(), session_options_), io});
  return *sessions_.emplace(key, std::move(made)).first->second;
}

std::vector<std::pair<int64_t, int64_t>> Sampler::ddim_pairs(int n) const {
  const int T = manifest_.timesteps;
  if (n < 1 || n > T) throw Error("DDIM needs 1 <= n <= " + std::to_string(T) + ", got " + std::to_string(n));
  const int s = T / n;
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int i = T; i > 0; i -= s) pairs.emplace_back(i, std::max(i - s, 0));
  return pairs;
}

std::string Sampler::graph_for(const Options& o) const {
  if (o.method == Method::ddpm) return "ddpm_step";
  const bool loop_fits = o.steps == manifest_.ddim_loop_steps && o.eta == 0.0f;
  return o.use_loop && loop_fits ? "ddim_loop" : "ddim_step";
}

std::vector<float> Sampler::context_row(const std::vector<std::pair<std::string, float>>& weights) const {
  std::vector<float> row(manifest_.n_cfeat, 0.0f);
  for (const auto& [name, weight] : weights) {
    const auto& names = manifest_.class_names;
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      std::string valid;
      for (const auto& n : names) valid += (valid.empty() ? "" : ", ") + n;
      throw Error("unknown class '" + name + "'; valid classes: " + valid);
    }
    if (!(weight >= 0.0f) || weight > 1e6f)
      throw Error("weight of '" + name + "' must be a finite number >= 0, got " + std::to_string(weight));
    row[it - names.begin()] += weight;
  }
  return row;
}

void Sampler::check_inputs(const Tensor& context, const Tensor& noise, const Options& o) const {
  const Manifest& m = manifest_;
  const bool noise_ok = noise.shape.size() == 4 && noise.shape[0] >= 1 && noise.shape[1] == m.channels &&
                        noise.shape[2] == m.height && noise.shape[3] == m.height;
  if (!noise_ok)
    throw Error("noise must be [B, " + std::to_string(m.channels) + ", " + std::to_string(m.height) + ", " +
                std::to_string(m.height) + "], got " + noise.shape_str());
  const int64_t B = noise.shape[0];
  for (const Tensor* t : {&context, &noise, o.step_noise})
    if (t && t->data.size() != t->numel())
      throw Error("a tensor holds " + std::to_string(t->data.size()) + " values for shape " + t->shape_str());
  if (context.shape != std::vector<int64_t>{B, m.n_cfeat})
    throw Error("context must be [" + std::to_string(B) + ", " + std::to_string(m.n_cfeat) + "], got " +
                context.shape_str());
  if (o.step_noise) {
    std::vector<int64_t> want{m.timesteps};
    want.insert(want.end(), noise.shape.begin(), noise.shape.end());
    if (o.step_noise->shape != want)
      throw Error("step noise must be " + shape_string(want) + ", got " + o.step_noise->shape_str());
  }
  if (o.method == Method::ddim) ddim_pairs(o.steps);  // throws on a bad n
  if (!(o.eta >= 0.0f) || !(o.guidance >= 0.0f))
    throw Error("eta and guidance must be >= 0");
}

Tensor Sampler::generate(const Tensor& context, const Tensor& noise, const Options& options) {
  check_inputs(context, noise, options);
  const int64_t B = noise.shape[0], K = manifest_.n_cfeat;
  // 1. state buffers: resized only when the batch changes, x_T copied in
  image_shape_ = noise.shape;
  for (auto& x : x_) x.resize(noise.numel());
  z_.assign(noise.numel(), 0.0f);
  cur_ = 0;
  std::copy(noise.data.begin(), noise.data.end(), x_[0].begin());
  // 2. context rows [GB, K]: with guidance B more rows of zeros (the unconditional context)
  const int64_t groups = options.guidance > 0.0f ? 2 : 1;
  c_.assign(groups * B * K, 0.0f);
  context_shape_ = {groups * B, K};
  std::copy(context.data.begin(), context.data.end(), c_.begin());
  w_ = options.guidance;
  eta_ = options.eta;
  // 3. the sampler itself
  const std::string key = graph_for(options);
  if (key == "ddim_loop") run_loop();
  else run_steps(key, options);
  // 4. final sprites, clipped as the reference samplers return them
  Tensor out(noise.shape);
  std::transform(x_[cur_].begin(), x_[cur_].end(), out.data.begin(),
                 [](float v) { return std::clamp(v, -1.0f, 1.0f); });
  return out;
}

// ------------------------------------------------------------------ the hot loop
Ort::Value Sampler::view(std::vector<float>& buffer, const std::vector<int64_t>& shape) {
  return Ort::Value::CreateTensor<float>(memory_, buffer.data(), buffer.size(), shape.data(), shape.size());
}

Ort::Value Sampler::value_for(const std::string& input, int parity) {
  static const std::vector<int64_t> one{1};
  if (input == "x") return view(x_[parity], image_shape_);
  if (input == "z") return view(z_, image_shape_);
  if (input == "c") return view(c_, context_shape_);
  if (input == "i") return Ort::Value::CreateTensor<int64_t>(memory_, &i_, 1, one.data(), 1);
  if (input == "i_prev") return Ort::Value::CreateTensor<int64_t>(memory_, &i_prev_, 1, one.data(), 1);
  if (input == "eta") return Ort::Value::CreateTensor<float>(memory_, &eta_, 1, one.data(), 1);
  if (input == "w") return Ort::Value::CreateTensor<float>(memory_, &w_, 1, one.data(), 1);
  throw Error("unexpected graph input '" + input + "'");
}

void Sampler::fill_noise(int64_t i, const Options& o) {
  const bool needed = o.method == Method::ddpm ? i > 1 : o.eta > 0.0f;  // z is ignored otherwise
  if (!needed) return;
  if (o.step_noise) {  // step_noise[i-1] is the noise of the step that starts at i
    const float* src = o.step_noise->data.data() + (i - 1) * z_.size();
    std::copy(src, src + z_.size(), z_.begin());
    return;
  }
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : z_) v = normal(rng_);
}

void Sampler::run_steps(const std::string& key, const Options& o) {
  Session& s = session(key);
  // 1. OrtValues over our buffers, built once per call: parity p reads x_[p], writes x_[1-p]
  std::vector<const char*> names;
  for (const std::string& n : s.io.inputs) names.push_back(n.c_str());
  const char* output = s.io.output.c_str();
  std::vector<Ort::Value> inputs[2];
  for (int p = 0; p < 2; ++p)
    for (const std::string& n : s.io.inputs) inputs[p].push_back(value_for(n, p));
  Ort::Value outputs[2] = {view(x_[1], image_shape_), view(x_[0], image_shape_)};
  // 2. the step indices: DDPM i -> i-1 for i = T..1, DDIM the contract's (i, i_prev) pairs
  std::vector<std::pair<int64_t, int64_t>> steps;
  if (o.method == Method::ddpm)
    for (int64_t i = manifest_.timesteps; i > 0; --i) steps.emplace_back(i, i - 1);
  else
    steps = ddim_pairs(o.steps);
  rng_.seed(o.seed);
  // 3. one Run per step; only i, i_prev and z change in place between them
  const Ort::RunOptions run_options{nullptr};
  for (const auto& [i, i_prev] : steps) {
    i_ = i;
    i_prev_ = i_prev;
    fill_noise(i, o);
    s.session.Run(run_options, names.data(), inputs[cur_].data(), names.size(), &output, &outputs[cur_], 1);
    cur_ = 1 - cur_;
  }
}

void Sampler::run_loop() {
  Session& s = session("ddim_loop");
  std::vector<const char*> names;
  std::vector<Ort::Value> inputs;
  for (const std::string& n : s.io.inputs) {
    names.push_back(n.c_str());
    inputs.push_back(value_for(n, 0));
  }
  const char* output = s.io.output.c_str();
  Ort::Value result = view(x_[1], image_shape_);
  s.session.Run(Ort::RunOptions{nullptr}, names.data(), inputs.data(), names.size(), &output, &result, 1);
  cur_ = 1;
}

}  // namespace spritegen
