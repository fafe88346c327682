// SpriteGen sampler (see sampler.hpp): opening an export, checking requests, drawing the
// noise and driving Sampler::Impl (ort_state.cpp). No exceptions anywhere.
#include "sampler.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iterator>
#include <set>
#include <sstream>
#include <system_error>

#include "contract_limits.hpp"
#include "file_io.hpp"
#include "noise.hpp"
#include "ort_state.hpp"

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

namespace {
// A number for a message: "100", "3.4e+38", "nan".
std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}
}  // namespace

// ------------------------------------------------------------------ construction
Sampler::Sampler(Manifest manifest, std::unique_ptr<Impl> impl)
    : manifest_(std::move(manifest)), impl_(std::move(impl)) {
  impl_->manifest = &manifest_;
}

Sampler::~Sampler() = default;

Status Sampler::open(const std::string& export_dir, const Config& config, std::unique_ptr<Sampler>* out) {
  std::error_code ec;
  if (!fs::is_directory(export_dir, ec))
    return bad_export("export directory '" + export_dir + "' does not exist; run spritegen-export first");
  const std::string path = (fs::path(export_dir) / "manifest.json").string();
  if (file_kind(path) == "missing")
    return bad_export("no manifest.json in '" + export_dir + "': not a spritegen export directory");
  std::string text;
  const Status read = read_regular_file(path, limits::kMaxManifestBytes, "manifest", &text);
  if (!read.ok()) return bad_export(read.message());
  Manifest manifest;
  SPRITEGEN_TRY(Manifest::parse(text, path, &manifest));
  auto impl = std::make_unique<Impl>();
  SPRITEGEN_TRY(impl->init(config));
  impl->origin = (fs::path(export_dir) / "").string();
  impl->read = [dir = fs::path(export_dir)](const std::string& file, std::string* bytes) {
    const Status st = read_regular_file((dir / file).string(), limits::kMaxGraphBytes, "graph file", bytes);
    return st.ok() ? st : bad_export(st.message() + "; the export directory is incomplete or altered: re-export");
  };
  out->reset(new Sampler(std::move(manifest), std::move(impl)));
  return {};
}

Status Sampler::from_memory(const std::string& manifest_json, Files files, const Config& config,
                            std::unique_ptr<Sampler>* out) {
  Manifest manifest;
  SPRITEGEN_TRY(Manifest::parse(manifest_json, "manifest.json (in memory)", &manifest));
  auto impl = std::make_unique<Impl>();
  SPRITEGEN_TRY(impl->init(config));
  impl->files = std::move(files);
  impl->origin = "in-memory ";
  Impl* state = impl.get();
  impl->read = [state](const std::string& file, std::string* bytes) {
    const auto it = state->files.find(file);
    if (it == state->files.end())
      return bad_export("the in-memory export lacks " + file + ", which this run uses: hand it over to from_memory");
    if (it->second.size() > static_cast<uint64_t>(limits::kMaxGraphBytes))
      return bad_export("in-memory " + file + " is larger than " + std::to_string(limits::kMaxGraphBytes) +
                        " bytes: not an ONNX graph");
    *bytes = it->second;  // a copy: the original goes once its session is built
    return Status{};
  };
  out->reset(new Sampler(std::move(manifest), std::move(impl)));
  return {};
}

// ---------------------------------------------------------------------- requests
namespace {
// DDIM's n: the request's, else the export's default (Options::steps == 0).
int ddim_steps(const Manifest& m, const Options& o) { return o.steps > 0 ? o.steps : m.ddim_loop_steps; }

bool solver(const Options& o) { return o.method == Method::dpmpp || o.method == Method::fast; }

// The eta the graphs run at: the request's, or for `fast` the export's fitted one.
float run_eta(const Manifest& m, const Options& o) { return o.method == Method::fast ? m.fast.eta : o.eta; }

// The fast sampler's table for the request's n (checked by check_options first).
const std::vector<int64_t>& fast_indices(const Manifest& m, const Options& o) {
  return m.fast.indices.at(o.steps > 0 ? o.steps : m.fast.default_n);
}

// DPM-Solver++'s step indices T = i_0 > ... > i_n = 0 (contract.dpmpp_indices: integer math).
std::vector<int64_t> dpmpp_indices(int64_t T, int64_t n) {
  std::vector<int64_t> out;
  for (int64_t k = 0; k <= n; ++k) out.push_back(T * (n - k) / n);
  return out;
}

int dpmpp_steps(const Manifest& m, const Options& o) {
  return o.steps > 0 ? o.steps : static_cast<int>(std::min<int64_t>(limits::kDpmppDefaultSteps, m.timesteps));
}

// Every network call of a step-graph run (contract.ddim_pairs, the DDPM chain, solver_triples).
std::vector<Step> steps_for(const Manifest& m, const Options& o) {
  std::vector<Step> steps;
  if (o.method == Method::ddpm) {
    for (int64_t i = m.timesteps; i > 0; --i) steps.push_back({i, i - 1, i, i > 1});
    return steps;
  }
  if (solver(o)) {  // (i, i_next, i_last): i_last = i on the first step, and on every step of DDIM (first order)
    const std::vector<int64_t> indices =
        o.method == Method::fast ? fast_indices(m, o) : dpmpp_indices(m.timesteps, dpmpp_steps(m, o));
    const bool stochastic = run_eta(m, o) > 0.0f;
    const bool first_order = o.method == Method::fast && m.fast.first_order();
    for (size_t k = 0; k + 1 < indices.size(); ++k)
      steps.push_back({indices[k], indices[k + 1], indices[first_order || !k ? k : k - 1],
                       stochastic && indices[k + 1] > 0});
    return steps;
  }
  const int s = m.timesteps / ddim_steps(m, o);  // the export contract's ddim_pairs, last step clamped to 0
  for (int i = m.timesteps; i > 0; i -= s) steps.push_back({i, std::max(i - s, 0), i, o.eta > 0.0f});
  return steps;
}

// The fast sampler's own checks (runtime Sampler.check_fast): a fit, an n it has a table for, no eta.
Status check_fast(const Manifest& m, const Options& o) {
  if (m.fast.indices.empty())
    return bad_export("this export has no fitted few-step sampler (no \"" + std::string(limits::kFastKey) +
                      "\" section in manifest.json); re-export with spritegen-export --fit, or use the dpmpp sampler");
  std::string allowed;
  for (const auto& entry : m.fast.indices) allowed += (allowed.empty() ? "" : ", ") + std::to_string(entry.first);
  if (o.steps != 0 && !m.fast.indices.count(o.steps))
    return invalid("the fast sampler of this export is fitted for n in " + allowed + " network calls, got " +
                   std::to_string(o.steps) + "; use one of those, or the dpmpp sampler for any n");
  if (o.eta != 0.0f)
    return invalid("the fast sampler runs at the export's fitted eta (" + number(m.fast.eta) +
                   "); leave eta out, or use the dpmpp sampler to choose one");
  return {};
}

// A distilled student's export (manifest fast.student) runs fast with its own call count only
// (runtime FastSampler.student_only: the same words).
Status check_student(const Manifest& m, const Options& o) {
  if (!m.fast.student || (o.method == Method::fast && (o.steps == 0 || o.steps == m.fast.default_n))) return {};
  const std::string n = std::to_string(m.fast.default_n);
  return invalid("this export holds a " + n + "-step distilled student: use --sampler fast (" + n +
                 " calls); its weights give sprites on its own step indices only");
}

Status check_options(const Manifest& m, const Options& o) {
  SPRITEGEN_TRY(check_student(m, o));
  const int n = ddim_steps(m, o);
  if (o.method == Method::ddim && (o.steps < 0 || n < 1 || n > m.timesteps))
    return invalid("DDIM needs 1 <= n <= " + std::to_string(m.timesteps) + ", got " + std::to_string(o.steps));
  if (o.method == Method::dpmpp && (o.steps < 0 || o.steps > m.timesteps))
    return invalid("DPM-Solver++ needs 1 <= n <= " + std::to_string(m.timesteps) + ", got " + std::to_string(o.steps));
  if (o.method == Method::fast) SPRITEGEN_TRY(check_fast(m, o));
  if (!(o.eta >= 0.0f && o.eta <= 1.0f)) return invalid("eta must be a number in 0..1");
  if (!(o.guidance >= 0.0f && o.guidance <= limits::kMaxGuidance))
    return invalid("guidance must be a finite number in 0.." + number(limits::kMaxGuidance) + " (beyond it float32 "
                   "overflows to NaN sprites), got " + number(o.guidance));
  return {};
}

Status check_context(const Manifest& m, const Tensor& context) {
  if (context.shape.size() != 2 || context.shape[0] < 1 || context.shape[0] > limits::kMaxBatch ||
      context.shape[1] != m.n_cfeat)
    return invalid("context must be [B, " + std::to_string(m.n_cfeat) + "] with 1 <= B <= " +
                   std::to_string(limits::kMaxBatch) + ", got " +
                   context.shape_str());
  if (context.data.size() != context.numel() || !all_finite(context.data))
    return invalid("context must hold " + std::to_string(context.numel()) + " finite values");
  return {};
}
}  // namespace

std::string graph_for(const Manifest& m, const Options& o) {
  if (o.method == Method::ddpm) return "ddpm_step";
  if (solver(o)) return "solver_step";
  const bool loop_fits = ddim_steps(m, o) == m.ddim_loop_steps && o.eta == 0.0f && m.graphs.count("ddim_loop");
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
    if (!(weight >= 0.0f && weight <= limits::kMaxContextWeight))
      return invalid("weight of '" + name + "' must be a finite number in 0.." + number(limits::kMaxContextWeight) +
                     ", got " + number(weight));
    (*row)[it - names.begin()] += weight;
  }
  return {};
}

Status Sampler::calls(const Options& options, int* out) const {
  SPRITEGEN_TRY(check_options(manifest_, options));
  *out = static_cast<int>(steps_for(manifest_, options).size());
  return {};
}

Status Sampler::preload(const Options& options) {
  SPRITEGEN_TRY(check_options(manifest_, options));
  Impl::Session* unused = nullptr;
  return impl_->session(graph_for(options), &unused);
}

Status Sampler::warm_up(int64_t batch, const Options& options) {
  if (batch < 1 || batch > limits::kMaxBatch)  // before the context it sizes is allocated
    return invalid("warm_up batch must be in 1.." + std::to_string(limits::kMaxBatch) + ", got " +
                   std::to_string(batch));
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
  SPRITEGEN_TRY(check_options(m, options));  // (fast's eta comes from the export: checked first)
  const bool noisy = options.method == Method::ddpm || run_eta(m, options) > 0.0f;
  if (step_noise) {
    std::vector<int64_t> want{m.timesteps};
    want.insert(want.end(), image.begin(), image.end());
    if (step_noise->shape != want || step_noise->data.size() != step_noise->numel())
      return invalid("step noise must be " + shape_string(want) + ", got " + step_noise->shape_str());
  } else if (noisy) {
    return invalid("DDPM, and DDIM or DPM-Solver++ at eta > 0 (fast: the export's eta is " + number(run_eta(m, options)) +
                   "), add noise at every step: pass step_noise [T, B, C, H, W], or a seed");
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
  for (auto& m : s.m) m.assign(solver(options) ? noise.numel() : 0, 0.0f);  // the first step's m: zeros
  s.z.assign(noise.numel(), 0.0f);
  s.cur = 0;
  std::copy(noise.data.begin(), noise.data.end(), s.x[0].begin());
  // 2. context rows [GB, K]: with guidance B more rows of zeros (the unconditional context)
  const int64_t groups = options.guidance > 0.0f ? 2 : 1;
  s.c.assign(groups * B * K, 0.0f);
  s.context_shape = {groups * B, K};
  std::copy(context.data.begin(), context.data.end(), s.c.begin());
  s.w = options.guidance;
  s.eta = run_eta(manifest_, options);
  // 3. the sampler itself
  const std::string key = graph_for(options);
  SPRITEGEN_TRY(key == "ddim_loop" ? s.run_loop() : s.run_steps(key, steps_for(manifest_, options)));
  // 4. final sprites, clipped as the reference samplers return them; never NaN or Inf ones
  if (!all_finite(s.x[s.cur]))
    return invalid("sampling produced NaN or Inf (guidance " + number(options.guidance) + ", largest context weight " +
                   number(*std::max_element(context.data.begin(), context.data.end())) +
                   "): float32 overflowed; use a smaller guidance, smaller weights or standard normal noise");
  *sprites = Tensor(noise.shape);
  std::transform(s.x[s.cur].begin(), s.x[s.cur].end(), sprites->data.begin(),
                 [](float v) { return std::clamp(v, -1.0f, 1.0f); });
  return {};
}

}  // namespace spritegen
