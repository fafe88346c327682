// SpriteGen sampler on ONNX Runtime's C API (see sampler.hpp). No exceptions: ORT's C API
// returns OrtStatus*, turned into spritegen::Status by check().
#include "sampler.hpp"

#include <onnxruntime_c_api.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <sstream>
#include <system_error>

#include "noise.hpp"
#include "sha256.hpp"

namespace spritegen {
namespace fs = std::filesystem;

// ------------------------------------------------------------------------- Tensor
Tensor::Tensor(std::vector<int64_t> dims) : shape(std::move(dims)), data(numel(), 0.0f) {}

size_t Tensor::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(std::max<int64_t>(d, 0));
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

std::vector<uint8_t> to_rgba8(const Tensor& sprites) {
  if (sprites.shape.size() != 4 || sprites.shape[1] != 3 || sprites.data.size() != sprites.numel()) return {};
  const int64_t B = sprites.shape[0], H = sprites.shape[2], W = sprites.shape[3];
  std::vector<uint8_t> rgba(static_cast<size_t>(B * H * W * 4), 255);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t p = 0; p < H * W; ++p) {
        const float v = sprites.data[static_cast<size_t>((b * 3 + ch) * H * W + p)];
        rgba[static_cast<size_t>((b * H * W + p) * 4 + ch)] =
            static_cast<uint8_t>(std::lround((std::clamp(v, -1.0f, 1.0f) + 1.0f) * 127.5f));
      }
  return rgba;
}

// ---------------------------------------------------------- ONNX Runtime plumbing
namespace {
const OrtApi* ort() {  // null when the library is older than the headers (docs/cpp.md)
  static const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  return api;
}

struct OrtRelease {
  void operator()(OrtEnv* p) const { ort()->ReleaseEnv(p); }
  void operator()(OrtSessionOptions* p) const { ort()->ReleaseSessionOptions(p); }
  void operator()(OrtSession* p) const { ort()->ReleaseSession(p); }
  void operator()(OrtMemoryInfo* p) const { ort()->ReleaseMemoryInfo(p); }
  void operator()(OrtValue* p) const { ort()->ReleaseValue(p); }
};
template <typename T>
using OrtPtr = std::unique_ptr<T, OrtRelease>;

Status check(OrtStatus* status, const std::string& what) {
  if (status == nullptr) return {};
  std::string message = ort()->GetErrorMessage(status);
  ort()->ReleaseStatus(status);
  message = message.substr(0, message.find('\n'));
  return {Code::runtime, what + ": " + message};
}

Status read_file(const fs::path& path, std::string* bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {Code::io, "cannot read " + path.string()};
  bytes->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) return {Code::io, "cannot read " + path.string()};
  return {};
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}
}  // namespace

// ----------------------------------------------------------------------- the state
struct Sampler::Impl {
  struct Session {
    OrtPtr<OrtSession> session;
    Manifest::Graph io;
    std::vector<const char*> names;  // into io.inputs
  };
  using Reader = std::function<Status(const std::string& file, std::string* bytes)>;

  const Manifest* manifest = nullptr;
  Reader read;             // the export's files: from the directory, or from `files`
  Files files;             // an in-memory export's bytes, dropped as sessions are built
  std::string origin;      // where the files are, for messages
  OrtPtr<OrtEnv> env;
  OrtPtr<OrtSessionOptions> options;
  OrtPtr<OrtMemoryInfo> memory;
  std::map<std::string, Session> sessions;

  // Buffers reused across steps and calls (reallocated only when the batch changes).
  std::vector<int64_t> image_shape, context_shape;  // [B, C, H, W], [GB, K]
  std::vector<float> x[2], c, z;                    // ping-pong state, context rows, step noise
  int64_t i = 0, i_prev = 0;
  float eta = 0.0f, w = 0.0f;
  int cur = 0;  // x[cur] holds the current state

  // Where this call's step noise comes from: injected, one seed, or one seed per row.
  const Tensor* step_noise = nullptr;
  const std::vector<uint64_t>* row_seeds = nullptr;
  uint64_t seed = 0;

  Status init(const Config& config);
  Status session(const std::string& key, Session** out);
  Status value(const std::string& input, int parity, OrtValue** out);
  Status view(std::vector<float>& buffer, const std::vector<int64_t>& shape, OrtValue** out);
  void fill_noise(int64_t step, const Options& o);
  Status run_steps(const std::string& key, const Options& o, const std::vector<std::pair<int64_t, int64_t>>& steps);
  Status run_loop();
};

Status Sampler::Impl::init(const Config& config) {
  if (ort() == nullptr)
    return {Code::runtime, "libonnxruntime is older than the ONNX Runtime headers this program was built with "
                           "(C API version " + std::to_string(ORT_API_VERSION) + "); use headers <= the library"};
  OrtEnv* e = nullptr;
  SPRITEGEN_TRY(check(ort()->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "spritegen", &e), "cannot start ONNX Runtime"));
  env.reset(e);
  OrtSessionOptions* so = nullptr;
  SPRITEGEN_TRY(check(ort()->CreateSessionOptions(&so), "cannot create session options"));
  options.reset(so);
  SPRITEGEN_TRY(check(ort()->SetSessionGraphOptimizationLevel(so, ORT_ENABLE_ALL), "session options"));
  SPRITEGEN_TRY(check(ort()->SetSessionExecutionMode(so, ORT_SEQUENTIAL), "session options"));  // chains
  SPRITEGEN_TRY(check(ort()->SetInterOpNumThreads(so, 1), "session options"));
  if (config.threads > 0) SPRITEGEN_TRY(check(ort()->SetIntraOpNumThreads(so, config.threads), "session options"));
  SPRITEGEN_TRY(check(ort()->AddSessionConfigEntry(so, "session.intra_op.allow_spinning", config.spin ? "1" : "0"),
                      "session options"));
  OrtMemoryInfo* mem = nullptr;
  SPRITEGEN_TRY(check(ort()->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "memory info"));
  memory.reset(mem);
  return {};
}

Status Sampler::Impl::session(const std::string& key, Session** out) {
  const auto found = sessions.find(key);
  if (found != sessions.end()) {
    *out = &found->second;
    return {};
  }
  // The bytes checked against the manifest's sha256 are the bytes ONNX Runtime loads.
  const Manifest::Graph& io = manifest->graphs.at(key);
  std::string bytes;
  SPRITEGEN_TRY(read(io.file, &bytes));
  if (sha256_hex(bytes.data(), bytes.size()) != io.sha256)
    return bad_export(origin + io.file + " does not match the sha256 in manifest.json: altered or swapped; re-export");
  OrtSession* raw = nullptr;
  SPRITEGEN_TRY(check(ort()->CreateSessionFromArray(env.get(), bytes.data(), bytes.size(), options.get(), &raw),
                      "ONNX Runtime cannot load " + origin + io.file));
  Session& s = sessions[key];
  s.session.reset(raw);
  s.io = io;
  for (const std::string& name : s.io.inputs) s.names.push_back(name.c_str());
  files.erase(io.file);  // an in-memory export's bytes are no longer needed
  *out = &s;
  return {};
}

Status Sampler::Impl::view(std::vector<float>& buffer, const std::vector<int64_t>& shape, OrtValue** out) {
  return check(ort()->CreateTensorWithDataAsOrtValue(memory.get(), buffer.data(), buffer.size() * sizeof(float),
                                                     shape.data(), shape.size(),
                                                     ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, out),
               "cannot wrap a buffer");
}

Status Sampler::Impl::value(const std::string& input, int parity, OrtValue** out) {
  static const int64_t one = 1;
  const auto scalar = [&](void* data, size_t bytes, ONNXTensorElementDataType type) {
    return check(ort()->CreateTensorWithDataAsOrtValue(memory.get(), data, bytes, &one, 1, type, out),
                 "cannot wrap a scalar");
  };
  if (input == "x") return view(x[parity], image_shape, out);
  if (input == "z") return view(z, image_shape, out);
  if (input == "c") return view(c, context_shape, out);
  if (input == "i") return scalar(&i, sizeof i, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  if (input == "i_prev") return scalar(&i_prev, sizeof i_prev, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  if (input == "eta") return scalar(&eta, sizeof eta, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  if (input == "w") return scalar(&w, sizeof w, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  return bad_export("unexpected graph input '" + input + "'");
}

void Sampler::Impl::fill_noise(int64_t step, const Options& o) {
  const bool needed = o.method == Method::ddpm ? step > 1 : o.eta > 0.0f;  // z is ignored otherwise
  if (!needed) return;
  if (step_noise) {  // step_noise[i-1] is the noise of the step that starts at i
    const float* src = step_noise->data.data() + (step - 1) * z.size();
    std::copy(src, src + z.size(), z.begin());
  } else if (row_seeds) {  // row r: the batch-1 stream of seeds[r]
    const size_t row = z.size() / row_seeds->size();
    for (size_t r = 0; r < row_seeds->size(); ++r)
      noise::normals((*row_seeds)[r], static_cast<uint32_t>(step), z.data() + r * row, row);
  } else {
    noise::normals(seed, static_cast<uint32_t>(step), z.data(), z.size());
  }
}

Status Sampler::Impl::run_steps(const std::string& key, const Options& o,
                                const std::vector<std::pair<int64_t, int64_t>>& steps) {
  Session* s = nullptr;
  SPRITEGEN_TRY(session(key, &s));
  // 1. OrtValues over our buffers, built once per call: parity p reads x[p], writes x[1-p]
  std::vector<OrtPtr<OrtValue>> owned;
  std::vector<const OrtValue*> inputs[2];
  for (int p = 0; p < 2; ++p)
    for (const std::string& name : s->io.inputs) {
      OrtValue* v = nullptr;
      SPRITEGEN_TRY(value(name, p, &v));
      owned.emplace_back(v);
      inputs[p].push_back(v);
    }
  OrtValue* outputs[2] = {nullptr, nullptr};
  SPRITEGEN_TRY(view(x[1], image_shape, &outputs[0]));
  owned.emplace_back(outputs[0]);
  SPRITEGEN_TRY(view(x[0], image_shape, &outputs[1]));
  owned.emplace_back(outputs[1]);
  const char* output = s->io.output.c_str();
  // 2. one Run per step; only i, i_prev and z change in place between them
  for (const auto& [step, step_prev] : steps) {
    i = step;
    i_prev = step_prev;
    fill_noise(step, o);
    SPRITEGEN_TRY(check(ort()->Run(s->session.get(), nullptr, s->names.data(), inputs[cur].data(), s->names.size(),
                                   &output, 1, &outputs[cur]),
                        "ONNX Runtime failed running " + s->io.file));
    cur = 1 - cur;
  }
  return {};
}

Status Sampler::Impl::run_loop() {
  Session* s = nullptr;
  SPRITEGEN_TRY(session("ddim_loop", &s));
  std::vector<OrtPtr<OrtValue>> owned;
  std::vector<const OrtValue*> inputs;
  for (const std::string& name : s->io.inputs) {
    OrtValue* v = nullptr;
    SPRITEGEN_TRY(value(name, 0, &v));
    owned.emplace_back(v);
    inputs.push_back(v);
  }
  OrtValue* result = nullptr;
  SPRITEGEN_TRY(view(x[1], image_shape, &result));
  owned.emplace_back(result);
  const char* output = s->io.output.c_str();
  SPRITEGEN_TRY(check(ort()->Run(s->session.get(), nullptr, s->names.data(), inputs.data(), inputs.size(), &output,
                                 1, &result),
                      "ONNX Runtime failed running " + s->io.file));
  cur = 1;
  return {};
}

// ------------------------------------------------------------------ construction
Sampler::Sampler(Manifest manifest, std::unique_ptr<Impl> impl) : manifest_(std::move(manifest)), impl_(std::move(impl)) {
  impl_->manifest = &manifest_;
}

Sampler::~Sampler() = default;

Status Sampler::open(const std::string& export_dir, const Config& config, std::unique_ptr<Sampler>* out) {
  std::error_code ec;
  if (!fs::is_directory(export_dir, ec))
    return bad_export("export directory '" + export_dir + "' does not exist; run spritegen-export first");
  const fs::path path = fs::path(export_dir) / "manifest.json";
  std::string text;
  if (!fs::is_regular_file(path, ec) || !read_file(path, &text).ok())
    return bad_export("no manifest.json in '" + export_dir + "': not a spritegen export directory");
  Manifest manifest;
  SPRITEGEN_TRY(Manifest::parse(text, path.string(), &manifest));
  for (const auto& entry : manifest.graphs) {
    const fs::path file = fs::path(export_dir) / entry.second.file;
    if (!fs::is_regular_file(file, ec))
      return bad_export("missing " + file.string() + ": the export directory is incomplete; re-export");
  }
  auto impl = std::make_unique<Impl>();
  SPRITEGEN_TRY(impl->init(config));
  impl->origin = (fs::path(export_dir) / "").string();
  impl->read = [dir = fs::path(export_dir)](const std::string& file, std::string* bytes) {
    return read_file(dir / file, bytes);
  };
  out->reset(new Sampler(std::move(manifest), std::move(impl)));
  return {};
}

Status Sampler::from_memory(const std::string& manifest_json, Files files, const Config& config,
                            std::unique_ptr<Sampler>* out) {
  Manifest manifest;
  SPRITEGEN_TRY(Manifest::parse(manifest_json, "manifest.json (in memory)", &manifest));
  for (const auto& entry : manifest.graphs)
    if (!files.count(entry.second.file))
      return bad_export("the in-memory export lacks " + entry.second.file +
                        " (listed in its manifest.json): hand over every graph file");
  auto impl = std::make_unique<Impl>();
  SPRITEGEN_TRY(impl->init(config));
  impl->files = std::move(files);
  impl->origin = "in-memory ";
  Impl* state = impl.get();
  impl->read = [state](const std::string& file, std::string* bytes) {
    const auto it = state->files.find(file);
    if (it == state->files.end()) return bad_export("the in-memory export lacks " + file);
    *bytes = it->second;  // a copy: the original goes once its session is built
    return Status{};
  };
  out->reset(new Sampler(std::move(manifest), std::move(impl)));
  return {};
}

// ---------------------------------------------------------------------- requests
namespace {
std::vector<std::pair<int64_t, int64_t>> pairs_for(const Manifest& m, const Options& o) {
  std::vector<std::pair<int64_t, int64_t>> steps;
  if (o.method == Method::ddpm) {
    for (int64_t i = m.timesteps; i > 0; --i) steps.emplace_back(i, i - 1);
    return steps;
  }
  const int s = m.timesteps / o.steps;  // the export contract's ddim_pairs, last step clamped to 0
  for (int i = m.timesteps; i > 0; i -= s) steps.emplace_back(i, std::max(i - s, 0));
  return steps;
}

Status check_options(const Manifest& m, const Options& o) {
  if (o.method == Method::ddim && (o.steps < 1 || o.steps > m.timesteps))
    return invalid("DDIM needs 1 <= n <= " + std::to_string(m.timesteps) + ", got " + std::to_string(o.steps));
  if (!(o.eta >= 0.0f && o.eta <= 1.0f)) return invalid("eta must be a number in 0..1");
  if (!(o.guidance >= 0.0f && std::isfinite(o.guidance))) return invalid("guidance must be a finite number >= 0");
  return {};
}

Status check_context(const Manifest& m, const Tensor& context) {
  if (context.shape.size() != 2 || context.shape[0] < 1 || context.shape[0] > 65536 || context.shape[1] != m.n_cfeat)
    return invalid("context must be [B, " + std::to_string(m.n_cfeat) + "] with 1 <= B <= 65536, got " +
                   context.shape_str());
  if (context.data.size() != context.numel() || !all_finite(context.data))
    return invalid("context must hold " + std::to_string(context.numel()) + " finite values");
  return {};
}
}  // namespace

std::string Sampler::graph_for(const Options& o) const {
  if (o.method == Method::ddpm) return "ddpm_step";
  const bool loop_fits = o.steps == manifest_.ddim_loop_steps && o.eta == 0.0f;
  return o.use_loop && loop_fits ? "ddim_loop" : "ddim_step";
}

Status Sampler::context_row(const std::vector<std::pair<std::string, float>>& weights, std::vector<float>* row) const {
  row->assign(manifest_.n_cfeat, 0.0f);
  for (const auto& [name, weight] : weights) {
    const auto& names = manifest_.class_names;
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      std::string valid;
      for (const auto& n : names) valid += (valid.empty() ? "" : ", ") + n;
      return invalid("unknown class '" + name + "'; valid classes: " + valid);
    }
    if (!(weight >= 0.0f) || weight > 1e6f)
      return invalid("weight of '" + name + "' must be a finite number >= 0, got " + std::to_string(weight));
    (*row)[it - names.begin()] += weight;
  }
  return {};
}

Status Sampler::preload(const Options& options) {
  SPRITEGEN_TRY(check_options(manifest_, options));
  Impl::Session* unused = nullptr;
  return impl_->session(graph_for(options), &unused);
}

Status Sampler::warm_up(int64_t batch, const Options& options) {
  SPRITEGEN_TRY(preload(options));
  Tensor sprites;
  return generate(Tensor({batch, manifest_.n_cfeat}), uint64_t{0}, options, &sprites);
}

Status Sampler::generate(const Tensor& context, uint64_t seed, const Options& options, Tensor* sprites) {
  SPRITEGEN_TRY(check_context(manifest_, context));
  Tensor x_T({context.shape[0], manifest_.channels, manifest_.height, manifest_.height});
  noise::normals(seed, noise::kXTStream, x_T.data.data(), x_T.numel());
  impl_->step_noise = nullptr;
  impl_->row_seeds = nullptr;
  impl_->seed = seed;
  return run(context, x_T, options, sprites);
}

Status Sampler::generate(const Tensor& context, const std::vector<uint64_t>& seeds, const Options& options,
                         Tensor* sprites) {
  SPRITEGEN_TRY(check_context(manifest_, context));
  if (seeds.size() != static_cast<size_t>(context.shape[0]))
    return invalid(std::to_string(seeds.size()) + " seeds for a batch of " + std::to_string(context.shape[0]) +
                   " sprites: give one seed per sprite");
  Tensor x_T({context.shape[0], manifest_.channels, manifest_.height, manifest_.height});
  const size_t row = x_T.numel() / seeds.size();
  for (size_t r = 0; r < seeds.size(); ++r) noise::normals(seeds[r], noise::kXTStream, x_T.data.data() + r * row, row);
  impl_->step_noise = nullptr;
  impl_->row_seeds = &seeds;
  return run(context, x_T, options, sprites);
}

Status Sampler::generate(const Tensor& context, const Tensor& noise, const Tensor* step_noise, const Options& options,
                         Tensor* sprites) {
  const Manifest& m = manifest_;
  const std::vector<int64_t> image{noise.shape.empty() ? 0 : noise.shape[0], m.channels, m.height, m.height};
  if (noise.shape != image || image[0] < 1)
    return invalid("noise must be [B, " + std::to_string(m.channels) + ", " + std::to_string(m.height) + ", " +
                   std::to_string(m.height) + "], got " + noise.shape_str());
  if (noise.data.size() != noise.numel() || !all_finite(noise.data))
    return invalid("noise must hold " + std::to_string(noise.numel()) + " finite values");
  if (context.shape.empty() || context.shape[0] != image[0])
    return invalid("context must be [" + std::to_string(image[0]) + ", " + std::to_string(m.n_cfeat) + "], got " +
                   context.shape_str());
  const bool noisy = options.method == Method::ddpm || options.eta > 0.0f;
  if (step_noise) {
    std::vector<int64_t> want{m.timesteps};
    want.insert(want.end(), image.begin(), image.end());
    if (step_noise->shape != want || step_noise->data.size() != step_noise->numel())
      return invalid("step noise must be " + shape_string(want) + ", got " + step_noise->shape_str());
  } else if (noisy) {
    return invalid("DDPM and DDIM with eta > 0 add noise at every step: pass step_noise [T, B, C, H, W], or a seed");
  }
  impl_->step_noise = step_noise;
  impl_->row_seeds = nullptr;
  return run(context, noise, options, sprites);
}

Status Sampler::run(const Tensor& context, const Tensor& noise, const Options& options, Tensor* sprites) {
  SPRITEGEN_TRY(check_context(manifest_, context));
  SPRITEGEN_TRY(check_options(manifest_, options));
  Impl& s = *impl_;
  const int64_t B = noise.shape[0], K = manifest_.n_cfeat;
  // 1. state buffers: resized only when the batch changes, x_T copied in
  s.image_shape = noise.shape;
  for (auto& x : s.x) x.resize(noise.numel());
  s.z.assign(noise.numel(), 0.0f);
  s.cur = 0;
  std::copy(noise.data.begin(), noise.data.end(), s.x[0].begin());
  // 2. context rows [GB, K]: with guidance B more rows of zeros (the unconditional context)
  const int64_t groups = options.guidance > 0.0f ? 2 : 1;
  s.c.assign(groups * B * K, 0.0f);
  s.context_shape = {groups * B, K};
  std::copy(context.data.begin(), context.data.end(), s.c.begin());
  s.w = options.guidance;
  s.eta = options.eta;
  // 3. the sampler itself
  const std::string key = graph_for(options);
  SPRITEGEN_TRY(key == "ddim_loop" ? s.run_loop() : s.run_steps(key, options, pairs_for(manifest_, options)));
  // 4. final sprites, clipped as the reference samplers return them
  *sprites = Tensor(noise.shape);
  std::transform(s.x[s.cur].begin(), s.x[s.cur].end(), sprites->data.begin(),
                 [](float v) { return std::clamp(v, -1.0f, 1.0f); });
  return {};
}

}  // namespace spritegen
