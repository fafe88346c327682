// spritegen_cpp: the command line around spritegen::Sampler (sampler.hpp).
//
//   spritegen_cpp --export-dir D --class hero [--blend food=0.6] [--sampler ddim|ddpm] [--n 25]
//                 [--seed S | --noise x_T.npy [--step-noise z.npy]] --out sprite.ppm|png
//                 [--out-npy sprite.npy] [--repeat N]
// Every bad argument or file: one `error:` line on stderr and a non-zero exit (2 usage, 1 run).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "image_io.hpp"
#include "npy.hpp"
#include "sampler.hpp"

namespace {
using spritegen::Error;
using spritegen::Tensor;

const char kUsage[] = R"(usage: spritegen_cpp --export-dir D [options]

Samples SpriteGen sprites from a spritegen-export directory with ONNX Runtime (C++ API).

  --export-dir D        export directory (manifest.json, ddim_step/ddpm_step/ddim_loop.onnx)
  --class NAMES         comma-separated class names, one sprite each (hero,non-hero,food,
                        spell,side-facing); omitted: unconditional (zero context)
  --blend NAME=W[,...]  add W * NAME to every context row, e.g. --class hero --blend food=0.6
  --sampler ddim|ddpm   default ddim
  --n N                 DDIM steps, 1..T (default 25)
  --eta E               DDIM stochasticity, >= 0 (default 0: deterministic)
  --guidance W          classifier-free guidance weight, >= 0 (default 0: off)
  --graph auto|loop|step  DDIM graph: ddim_loop.onnx when n and eta allow (auto), or per step
  --num N               sprites when noise is drawn (default: number of --class names, or 1)
  --seed S              seed of the standard-normal draws (std::mt19937_64; default 0)
  --noise FILE          x_T as float32 .npy [B,3,H,W] (instead of --seed)
  --step-noise FILE     per-step noise float32 .npy [T,B,3,H,W], step_noise[i-1] = noise of step i
  --out FILE            sprite grid, .ppm or .png
  --out-npy FILE        final sprites as float32 .npy [B,3,H,W] in [-1,1]
  --scale K             pixels per sprite pixel in --out (default 4)
  --threads N           ONNX Runtime intra-op threads (default: all cores)
  --spin                let idle ORT threads busy-wait (faster on an idle machine only)
  --repeat N            time N more generate() calls after the first; prints one JSON line
  --help                this text
)";

struct Args {
  std::string export_dir, out, out_npy, noise, step_noise, sampler = "ddim", graph = "auto";
  std::vector<std::string> classes;
  std::vector<std::pair<std::string, float>> blend;
  int n = 25, num = 0, scale = 4, threads = 0, repeat = 0;
  bool spin = false;
  float eta = 0.0f, guidance = 0.0f;
  std::optional<uint64_t> seed;
};

struct UsageError : Error {
  using Error::Error;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t end; (end = s.find(sep, start)) != std::string::npos; start = end + 1)
    parts.push_back(s.substr(start, end - start));
  parts.push_back(s.substr(start));
  return parts;
}

template <typename T>
T number(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const long double v = std::stold(text, &used);
    if (used != text.size() || !std::isfinite(static_cast<double>(v))) throw std::invalid_argument(text);
    if constexpr (std::is_integral_v<T>) {
      if (v != std::floor(v) || v < 0 || v > 1e15) throw std::invalid_argument(text);
    }
    return static_cast<T>(v);
  } catch (const std::logic_error&) {
    throw UsageError(flag + " needs a " + (std::is_integral_v<T> ? "non-negative integer" : "number") +
                     ", got '" + text + "'");
  }
}

Args parse(int argc, char** argv) {
  Args a;
  for (int k = 1; k < argc; ++k) {
    const std::string flag = argv[k];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (flag == "--spin") {
      a.spin = true;
      continue;
    }
    if (k + 1 >= argc)
      throw UsageError(flag.rfind("--", 0) == 0 ? flag + " needs a value" : "unexpected argument '" + flag + "'");
    const std::string v = argv[++k];
    if (flag == "--export-dir") a.export_dir = v;
    else if (flag == "--class") a.classes = split(v, ',');
    else if (flag == "--blend") {
      for (const std::string& item : split(v, ',')) {
        const size_t eq = item.find('=');
        if (eq == std::string::npos) throw UsageError("--blend takes NAME=WEIGHT, got '" + item + "'");
        const std::string name = item.substr(0, eq);
        a.blend.emplace_back(name, number<float>("--blend " + name, item.substr(eq + 1)));
      }
    } else if (flag == "--sampler") a.sampler = v;
    else if (flag == "--graph") a.graph = v;
    else if (flag == "--n") a.n = number<int>(flag, v);
    else if (flag == "--eta") a.eta = number<float>(flag, v);
    else if (flag == "--guidance") a.guidance = number<float>(flag, v);
    else if (flag == "--num") a.num = number<int>(flag, v);
    else if (flag == "--seed") a.seed = number<uint64_t>(flag, v);
    else if (flag == "--noise") a.noise = v;
    else if (flag == "--step-noise") a.step_noise = v;
    else if (flag == "--out") a.out = v;
    else if (flag == "--out-npy") a.out_npy = v;
    else if (flag == "--scale") a.scale = number<int>(flag, v);
    else if (flag == "--threads") a.threads = number<int>(flag, v);
    else if (flag == "--repeat") a.repeat = number<int>(flag, v);
    else throw UsageError("unknown option '" + flag + "' (see --help)");
  }
  return a;
}

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError(message);
}

void validate(const Args& a) {
  require(!a.export_dir.empty(), "--export-dir is required (a spritegen-export directory)");
  require(!a.out.empty() || !a.out_npy.empty() || a.repeat > 0, "--out FILE.ppm|png (or --out-npy FILE) is required");
  require(a.out.empty() || ends_with(a.out, ".ppm") || ends_with(a.out, ".png"),
          "--out must end in .ppm or .png, got '" + a.out + "'");
  require(a.out_npy.empty() || ends_with(a.out_npy, ".npy"), "--out-npy must end in .npy, got '" + a.out_npy + "'");
  require(a.sampler == "ddim" || a.sampler == "ddpm", "--sampler must be ddim or ddpm, got '" + a.sampler + "'");
  require(a.graph == "auto" || a.graph == "loop" || a.graph == "step",
          "--graph must be auto, loop or step, got '" + a.graph + "'");
  require(!(a.seed && !a.noise.empty()), "give either --seed or --noise, not both");
  require(a.step_noise.empty() || !a.noise.empty(), "--step-noise needs --noise (x_T) too");
  require(a.noise.empty() || !a.num, "--num comes from the --noise file's batch; drop --num");
  require(a.num >= 0 && a.num <= 4096, "--num must be in 1..4096");
  require(a.scale >= 1 && a.scale <= 64, "--scale must be in 1..64");
  require(!(a.sampler == "ddpm" && a.graph == "loop"), "--graph loop is DDIM only");
}

// x_T: from --noise, or standard normal draws from mt19937_64(seed) (documented, not numpy's).
Tensor initial_noise(const Args& a, const spritegen::Manifest& m) {
  if (!a.noise.empty()) return spritegen::read_npy(a.noise);
  const int64_t batch = a.num ? a.num : std::max<int64_t>(1, static_cast<int64_t>(a.classes.size()));
  Tensor x({batch, m.channels, m.height, m.height});
  std::mt19937_64 rng(a.seed.value_or(0));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x.data) v = normal(rng);
  return x;
}

// [B, K]: one row per --class name (or one row for all), each plus the --blend weights.
Tensor make_context(const Args& a, const spritegen::Sampler& s, int64_t batch) {
  std::vector<std::vector<float>> rows;
  if (a.classes.empty()) rows.push_back(s.context_row(a.blend));
  for (const std::string& name : a.classes) {
    auto weights = a.blend;
    weights.emplace_back(name, 1.0f);
    rows.push_back(s.context_row(weights));
  }
  if (rows.size() != 1 && static_cast<int64_t>(rows.size()) != batch)
    throw UsageError(std::to_string(rows.size()) + " --class names for a batch of " + std::to_string(batch) +
                     ": give one name or one per sprite");
  const int64_t K = s.manifest().n_cfeat;
  Tensor c({batch, K});
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<float>& row = rows[rows.size() == 1 ? 0 : b];
    std::copy(row.begin(), row.end(), c.data.begin() + b * K);
  }
  return c;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(std::lround(q * static_cast<double>(v.size() - 1)))];
}

// Times a.repeat generate() calls (after run()'s first, the warm-up); one JSON line on stdout.
void print_latency(const Args& a, spritegen::Sampler& sampler, const Tensor& context, const Tensor& noise,
                   const spritegen::Options& o) {
  using clock = std::chrono::steady_clock;
  std::vector<double> ms;
  for (int r = 0; r < a.repeat; ++r) {
    const auto start = clock::now();
    sampler.generate(context, noise, o);
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - start).count());
  }
  const int steps = o.method == spritegen::Method::ddpm ? sampler.manifest().timesteps : o.steps;
  std::printf("{\"sampler\": \"%s\", \"graph\": \"%s\", \"n\": %d, \"batch\": %lld, \"repeat\": %d, "
              "\"median_ms\": %.3f, \"p90_ms\": %.3f, \"min_ms\": %.3f}\n",
              a.sampler.c_str(), sampler.graph_for(o).c_str(), steps, static_cast<long long>(noise.shape[0]),
              a.repeat, percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.0));
}

int run(const Args& a) {
  spritegen::Sampler sampler(a.export_dir, a.threads, a.spin);
  const Tensor noise = initial_noise(a, sampler.manifest());
  std::optional<Tensor> step_noise;
  if (!a.step_noise.empty()) step_noise = spritegen::read_npy(a.step_noise);
  spritegen::Options o;
  o.method = a.sampler == "ddpm" ? spritegen::Method::ddpm : spritegen::Method::ddim;
  o.steps = a.n;
  o.eta = a.eta;
  o.guidance = a.guidance;
  o.use_loop = a.graph != "step";
  o.step_noise = step_noise ? &*step_noise : nullptr;
  o.seed = a.seed.value_or(0) + 1;  // step noise: a stream apart from x_T's
  if (a.graph == "loop" && sampler.graph_for(o) != "ddim_loop")
    throw UsageError("--graph loop needs --n " + std::to_string(sampler.manifest().ddim_loop_steps) +
                     " and --eta 0 (the steps baked into ddim_loop.onnx)");
  const Tensor context = make_context(a, sampler, noise.shape.empty() ? 0 : noise.shape[0]);
  const Tensor sprites = sampler.generate(context, noise, o);  // also the warm-up for --repeat
  if (a.repeat > 0) print_latency(a, sampler, context, noise, o);
  if (!a.out.empty()) spritegen::write_image(a.out, sprites, a.scale);
  if (!a.out_npy.empty()) spritegen::write_npy(a.out_npy, sprites);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    validate(args);
    return run(args);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {  // spritegen::Error, Ort::Exception, std::bad_alloc
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
