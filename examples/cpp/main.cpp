// spritegen_cpp: the command line around spritegen::Sampler (sampler.hpp).
//
//   spritegen_cpp --export-dir D --class hero [--blend food=0.6] [--sampler ddim|ddpm] [--n 25]
//                 [--seed S[,S...] | --noise x_T.npy [--step-noise z.npy]] --out sprite.ppm|png
//                 [--out-npy sprite.npy] [--out-rgba sprite.rgba] [--warm-up] [--from-memory] [--repeat N]
//   spritegen_cpp noise --seed S[,S...] --stream I[,I...] --count N --out normals.npy
// No exceptions anywhere (it builds with -fno-exceptions): every bad argument or file is a
// Status, printed as one `error:` line on stderr with exit 2 (invalid request) or 1 (the rest).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "contract_limits.hpp"
#include "file_io.hpp"
#include "image_io.hpp"
#include "noise.hpp"
#include "npy.hpp"
#include "sampler.hpp"

namespace {
using spritegen::Code;
using spritegen::invalid;
using spritegen::Status;
using spritegen::Tensor;

const char kUsage[] = R"(usage: spritegen_cpp --export-dir D [options]
       spritegen_cpp noise --seed S[,S...] --stream I[,I...] --count N --out FILE.npy
       spritegen_cpp limits

Samples SpriteGen sprites from a spritegen-export directory with ONNX Runtime (C API).

  --export-dir D        export directory (manifest.json, ddim_step/ddpm_step/ddim_loop.onnx)
  --class NAMES         comma-separated class names, one sprite each (hero,non-hero,food,
                        spell,side-facing); omitted: unconditional (zero context)
  --blend NAME=W[,...]  add W * NAME to every context row, e.g. --class hero --blend food=0.6
  --sampler ddim|ddpm   default ddim
  --n N                 DDIM steps, 1..T (default: the export's, its manifest's ddim_loop_steps)
  --eta E               DDIM stochasticity in 0..1 (default 0: deterministic)
  --guidance W          classifier-free guidance weight, 0..{MAX_GUIDANCE} (default 0: off)
  --graph auto|loop|step  DDIM graph: ddim_loop.onnx when n and eta allow (auto), or per step
  --num N               sprites when noise is drawn, 1..{MAX_BATCH} (default: number of --class names, or 1)
  --seed S[,S...]       seed in [0, 2^64) of the portable noise (docs/noise.md; default 0);
                        several: one per sprite (row r = the batch-1 sprite of seed r)
  --noise FILE          x_T as float32 .npy [B,3,H,W], 1 <= B <= {MAX_BATCH} (instead of --seed)
  --step-noise FILE     per-step noise float32 .npy [T,B,3,H,W], step_noise[i-1] = noise of step i
  --out FILE            sprite grid, .ppm or .png
  --out-npy FILE        final sprites as float32 .npy [B,3,H,W] in [-1,1]
  --out-rgba FILE       final sprites as raw RGBA8 bytes [B,H,W,4] (a texture upload's layout)
  --scale K             pixels per sprite pixel in --out (default 4)
  --threads N           ONNX Runtime intra-op threads, 1..4 per core (default: all cores)
  --spin                let idle ORT threads busy-wait (faster on an idle machine only)
  --from-memory         read the files first and open the export from bytes (the engine path)
  --warm-up             Sampler::warm_up at the batch size before the first sprite
  --repeat N            time N more generate() calls after the first; prints one JSON line
  --help                this text

noise: writes float32 [streams, seeds, count]: normals(seed, stream, count) of spritegen-normal.
limits: prints the bounds this program checks (from the Python package's runtime/limits.py) as JSON.
)";

// kUsage with its {MAX_...} placeholders filled from contract_limits.hpp (never retyped).
std::string usage() {
  std::string text = kUsage;
  std::ostringstream guidance;
  guidance << spritegen::limits::kMaxGuidance;
  const std::pair<std::string, std::string> values[] = {
      {"{MAX_BATCH}", std::to_string(spritegen::limits::kMaxBatch)},
      {"{MAX_GUIDANCE}", guidance.str()}};
  for (const auto& [key, value] : values)
    for (size_t at; (at = text.find(key)) != std::string::npos;) text.replace(at, key.size(), value);
  return text;
}

struct Args {
  std::string export_dir, out, out_npy, out_rgba, noise, step_noise, sampler = "ddim", graph = "auto";
  std::vector<std::string> classes;
  std::vector<std::pair<std::string, float>> blend;
  std::vector<uint64_t> seeds;
  int n = 0, num = 0, scale = 4, threads = 0, repeat = 0;
  bool spin = false, warm_up = false, from_memory = false, help = false;
  float eta = 0.0f, guidance = 0.0f;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t end; (end = s.find(sep, start)) != std::string::npos; start = end + 1)
    parts.push_back(s.substr(start, end - start));
  parts.push_back(s.substr(start));
  return parts;
}

Status to_u64(const std::string& flag, const std::string& text, uint64_t max, uint64_t* out) {
  const bool digits = !text.empty() && text.size() <= 20 &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  errno = 0;
  const unsigned long long v = digits ? std::strtoull(text.c_str(), nullptr, 10) : 0;
  if (!digits || errno == ERANGE || v > max)
    return invalid(flag + " needs an integer in 0.." + std::to_string(max) + ", got '" + text + "'");
  *out = v;
  return {};
}

Status to_int(const std::string& flag, const std::string& text, int* out) {
  uint64_t v = 0;
  SPRITEGEN_TRY(to_u64(flag, text, 1000000000, &v));
  *out = static_cast<int>(v);
  return {};
}

// An option whose 0 would read as "not given" (--num, --scale, --threads): 1..max or refused,
// so an explicit `--threads 0` is not silently "all cores" nor `--num 0` "one per class".
Status to_count(const std::string& flag, const std::string& text, uint64_t max, int* out) {
  uint64_t v = 0;
  SPRITEGEN_TRY(to_u64(flag, text, max, &v));
  if (v < 1) return invalid(flag + " needs an integer in 1.." + std::to_string(max) + ", got '" + text + "'");
  *out = static_cast<int>(v);
  return {};
}

// The most ORT threads: limits.THREADS_PER_CORE per core, as the Python runtime (more only
// adds contention; ~100000 crashed ONNX Runtime).
uint64_t max_threads() {
  return spritegen::limits::kThreadsPerCore * uint64_t{std::max(1u, std::thread::hardware_concurrency())};
}

Status to_float(const std::string& flag, const std::string& text, float* out) {
  char* end = nullptr;
  errno = 0;
  const float v = text.empty() ? NAN : std::strtof(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v))
    return invalid(flag + " needs a number, got '" + text + "'");
  *out = v;
  return {};
}

Status to_seeds(const std::string& flag, const std::string& text, std::vector<uint64_t>* out) {
  for (const std::string& item : split(text, ',')) {
    uint64_t seed = 0;
    SPRITEGEN_TRY(to_u64(flag, item, UINT64_MAX, &seed));
    out->push_back(seed);
  }
  return {};
}

Status parse_value(Args& a, const std::string& flag, const std::string& v) {
  if (flag == "--export-dir") a.export_dir = v;
  else if (flag == "--class") a.classes = split(v, ',');
  else if (flag == "--blend") {
    for (const std::string& item : split(v, ',')) {
      const size_t eq = item.find('=');
      if (eq == std::string::npos) return invalid("--blend takes NAME=WEIGHT, got '" + item + "'");
      float weight = 0.0f;
      SPRITEGEN_TRY(to_float("--blend " + item.substr(0, eq), item.substr(eq + 1), &weight));
      const std::string name = item.substr(0, eq);
      if (std::any_of(a.blend.begin(), a.blend.end(), [&](const auto& b) { return b.first == name; }))
        return invalid("--blend names '" + name + "' twice; give each class one weight");
      a.blend.emplace_back(name, weight);
    }
  } else if (flag == "--sampler") a.sampler = v;
  else if (flag == "--graph") a.graph = v;
  else if (flag == "--n") {
    SPRITEGEN_TRY(to_int(flag, v, &a.n));
    return a.n >= 1 ? Status{} : invalid("--n must be >= 1 (DDIM steps), got " + v);
  }
  else if (flag == "--eta") return to_float(flag, v, &a.eta);
  else if (flag == "--guidance") return to_float(flag, v, &a.guidance);
  else if (flag == "--num") return to_count(flag, v, spritegen::limits::kMaxBatch, &a.num);
  else if (flag == "--seed") return to_seeds(flag, v, &a.seeds);
  else if (flag == "--noise") a.noise = v;
  else if (flag == "--step-noise") a.step_noise = v;
  else if (flag == "--out") a.out = v;
  else if (flag == "--out-npy") a.out_npy = v;
  else if (flag == "--out-rgba") a.out_rgba = v;
  else if (flag == "--scale") return to_count(flag, v, spritegen::limits::kMaxScale, &a.scale);
  else if (flag == "--threads") return to_count(flag, v, max_threads(), &a.threads);
  else if (flag == "--repeat") return to_int(flag, v, &a.repeat);
  else return invalid("unknown option '" + flag + "' (see --help)");
  return {};
}

Status parse(int argc, char** argv, Args* a) {
  for (int k = 1; k < argc; ++k) {
    const std::string flag = argv[k];
    if (flag == "--help" || flag == "-h") a->help = true;
    else if (flag == "--spin") a->spin = true;
    else if (flag == "--warm-up") a->warm_up = true;
    else if (flag == "--from-memory") a->from_memory = true;
    else if (k + 1 >= argc)
      return invalid(flag.rfind("--", 0) == 0 ? flag + " needs a value" : "unexpected argument '" + flag + "'");
    else SPRITEGEN_TRY(parse_value(*a, flag, argv[++k]));
  }
  return {};
}

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

// --out, --out-npy and --out-rgba on one file would overwrite each other: refused.
Status distinct_outputs(const Args& a) {
  const std::pair<const char*, std::string> outs[] = {{"--out", a.out}, {"--out-npy", a.out_npy},
                                                      {"--out-rgba", a.out_rgba}};
  const auto canonical = [](const std::string& path) {
    std::error_code ec;
    const std::filesystem::path full = std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec);
    return ec ? path : full.string();
  };
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = i + 1; j < 3; ++j)
      if (!outs[i].second.empty() && !outs[j].second.empty() &&
          canonical(outs[i].second) == canonical(outs[j].second))
        return invalid(std::string(outs[i].first) + " and " + outs[j].first + " name the same file '" +
                       outs[j].second + "'; give each output its own path");
  return {};
}

Status validate(const Args& a) {
  const std::vector<std::pair<bool, std::string>> rules = {
      {!a.export_dir.empty(), "--export-dir is required (a spritegen-export directory)"},
      {!a.out.empty() || !a.out_npy.empty() || !a.out_rgba.empty() || a.repeat > 0,
       "--out FILE.ppm|png (or --out-npy / --out-rgba FILE) is required"},
      {a.out.empty() || ends_with(a.out, ".ppm") || ends_with(a.out, ".png"),
       "--out must end in .ppm or .png, got '" + a.out + "'"},
      {a.out_npy.empty() || ends_with(a.out_npy, ".npy"), "--out-npy must end in .npy, got '" + a.out_npy + "'"},
      {a.sampler == "ddim" || a.sampler == "ddpm", "--sampler must be ddim or ddpm, got '" + a.sampler + "'"},
      {a.graph == "auto" || a.graph == "loop" || a.graph == "step",
       "--graph must be auto, loop or step, got '" + a.graph + "'"},
      {a.seeds.empty() || a.noise.empty(), "give either --seed or --noise, not both"},
      {a.step_noise.empty() || !a.noise.empty(), "--step-noise needs --noise (x_T) too"},
      {a.noise.empty() || !a.num, "--num comes from the --noise file's batch; drop --num"},
      {!(a.sampler == "ddpm" && a.graph == "loop"), "--graph loop is DDIM only"},
  };
  for (const auto& [ok, message] : rules)
    if (!ok) return invalid(message);
  return distinct_outputs(a);
}

spritegen::Options options_for(const Args& a) {
  spritegen::Options o;
  o.method = a.sampler == "ddpm" ? spritegen::Method::ddpm : spritegen::Method::ddim;
  o.steps = a.n;
  o.eta = a.eta;
  o.guidance = a.guidance;
  o.use_loop = a.graph != "step";
  return o;
}

// The export from its directory, or (--from-memory) from bytes read here first, as an
// engine's asset system would hand them over: only the graph this run uses. Either way the
// run's graph is then verified (sha256, metadata against the manifest) and loaded.
Status open_sampler(const Args& a, const spritegen::Options& options, std::unique_ptr<spritegen::Sampler>* out) {
  const spritegen::Config config{a.threads, a.spin};
  if (!a.from_memory) {
    SPRITEGEN_TRY(spritegen::Sampler::open(a.export_dir, config, out));
  } else {
    const auto slurp = [](const std::string& path, uint64_t most, std::string* bytes) -> Status {
      const Status read = spritegen::read_regular_file(path, most, "export file", bytes);
      if (!read.ok()) return {Code::bad_export, read.message() + ": not a complete spritegen export"};
      return {};
    };
    std::string manifest_json;
    SPRITEGEN_TRY(slurp(a.export_dir + "/manifest.json", spritegen::limits::kMaxManifestBytes, &manifest_json));
    spritegen::Manifest manifest;
    SPRITEGEN_TRY(spritegen::Manifest::parse(manifest_json, a.export_dir + "/manifest.json", &manifest));
    spritegen::Files files;
    const auto graph = manifest.graphs.find(spritegen::graph_for(manifest, options));
    if (graph != manifest.graphs.end())  // (an export without it is refused by preload below)
      SPRITEGEN_TRY(slurp(a.export_dir + "/" + graph->second.file, spritegen::limits::kMaxGraphBytes,
                          &files[graph->second.file]));
    SPRITEGEN_TRY(spritegen::Sampler::from_memory(manifest_json, std::move(files), config, out));
  }
  if (a.graph == "loop" && (*out)->graph_for(options) != "ddim_loop")
    return invalid("--graph loop needs --n " + std::to_string((*out)->manifest().ddim_loop_steps) +
                   " and --eta 0 (the steps baked into ddim_loop.onnx), and an export with ddim_loop.onnx");
  return (*out)->preload(options);
}

// [B, K]: one row per --class name (or one row for all), each plus the --blend weights.
Status make_context(const Args& a, const spritegen::Sampler& s, int64_t batch, Tensor* out) {
  std::vector<std::vector<float>> rows;
  std::vector<std::pair<std::string, float>> weights = a.blend;
  if (a.classes.empty()) {
    rows.emplace_back();
    SPRITEGEN_TRY(s.context_row(weights, &rows.back()));
  }
  for (const std::string& name : a.classes) {
    weights = a.blend;
    weights.emplace_back(name, 1.0f);
    rows.emplace_back();
    SPRITEGEN_TRY(s.context_row(weights, &rows.back()));
  }
  if (rows.size() != 1 && static_cast<int64_t>(rows.size()) != batch)
    return invalid(std::to_string(rows.size()) + " --class names for a batch of " + std::to_string(batch) +
                   ": give one name or one per sprite");
  const int64_t K = s.manifest().n_cfeat;
  *out = Tensor({batch, K});
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<float>& row = rows[rows.size() == 1 ? 0 : b];
    std::copy(row.begin(), row.end(), out->data.begin() + b * K);
  }
  return {};
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(std::lround(q * static_cast<double>(v.size() - 1)))];
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// One call of the sampler: seeded (one seed, or one per row) or fed the noise files.
struct Request {
  Tensor context, noise, step_noise;
  bool injected = false, has_step_noise = false;
  std::vector<uint64_t> seeds;
  spritegen::Options options;

  Status run(spritegen::Sampler& s, Tensor* sprites) const {
    if (injected) return s.generate(context, noise, has_step_noise ? &step_noise : nullptr, options, sprites);
    if (seeds.size() == 1) return s.generate(context, seeds[0], options, sprites);
    return s.generate(context, seeds, options, sprites);
  }
};

Status sample(const Args& a) {
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  std::unique_ptr<spritegen::Sampler> sampler;
  Request req;
  req.options = options_for(a);
  SPRITEGEN_TRY(open_sampler(a, req.options, &sampler));
  const double load_ms = ms_since(start);
  const spritegen::Manifest& m = sampler->manifest();
  int64_t batch = a.num ? a.num : std::max<int64_t>({1, static_cast<int64_t>(a.classes.size()),
                                                     static_cast<int64_t>(a.seeds.size())});
  req.injected = !a.noise.empty();
  if (req.injected) {
    const int64_t max_batch = spritegen::limits::kMaxBatch;
    SPRITEGEN_TRY(spritegen::read_npy(a.noise, {-1, m.channels, m.height, m.height}, max_batch, &req.noise));
    batch = req.noise.shape[0];
    req.has_step_noise = !a.step_noise.empty();
    if (req.has_step_noise)
      SPRITEGEN_TRY(spritegen::read_npy(a.step_noise, {m.timesteps, batch, m.channels, m.height, m.height},
                                        max_batch, &req.step_noise));
  } else {
    req.seeds = a.seeds.empty() ? std::vector<uint64_t>{0} : a.seeds;
    if (req.seeds.size() > 1 && static_cast<int64_t>(req.seeds.size()) != batch)
      return invalid(std::to_string(req.seeds.size()) + " seeds for a batch of " + std::to_string(batch) +
                     ": give one seed, or one per sprite");
  }
  SPRITEGEN_TRY(make_context(a, *sampler, batch, &req.context));
  double warm_up_ms = -1;
  if (a.warm_up) {
    start = clock::now();
    SPRITEGEN_TRY(sampler->warm_up(batch, req.options));
    warm_up_ms = ms_since(start);
  }
  Tensor sprites;
  start = clock::now();
  SPRITEGEN_TRY(req.run(*sampler, &sprites));
  const double first_ms = ms_since(start);
  if (a.repeat > 0) {  // steady state: the calls after the first
    std::vector<double> ms;
    Tensor again;
    for (int r = 0; r < a.repeat; ++r) {
      start = clock::now();
      SPRITEGEN_TRY(req.run(*sampler, &again));
      ms.push_back(ms_since(start));
    }
    const int steps = a.sampler == "ddpm" ? m.timesteps : a.n ? a.n : m.ddim_loop_steps;
    std::printf("{\"sampler\": \"%s\", \"graph\": \"%s\", \"n\": %d, \"batch\": %lld, \"repeat\": %d, "
                "\"load_ms\": %.3f, \"warm_up_ms\": %s, \"first_ms\": %.3f, \"median_ms\": %.3f, \"p90_ms\": %.3f, "
                "\"min_ms\": %.3f}\n",
                a.sampler.c_str(), sampler->graph_for(req.options).c_str(), steps, static_cast<long long>(batch),
                a.repeat, load_ms, warm_up_ms < 0 ? "null" : std::to_string(warm_up_ms).c_str(), first_ms,
                percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.0));
  }
  if (!a.out.empty()) SPRITEGEN_TRY(spritegen::write_image(a.out, sprites, a.scale));
  if (!a.out_npy.empty()) SPRITEGEN_TRY(spritegen::write_npy(a.out_npy, sprites));
  if (!a.out_rgba.empty()) {
    const std::vector<uint8_t> rgba = spritegen::to_rgba8(sprites);
    SPRITEGEN_TRY(spritegen::write_file_atomic(a.out_rgba, std::string(rgba.begin(), rgba.end())));
  }
  return {};
}

// `noise`: float32 [streams, seeds, count], out[s, r] = normals(seeds[r], streams[s], count).
Status noise_command(int argc, char** argv) {
  std::vector<uint64_t> seeds, streams;
  uint64_t count = 0;
  std::string out;
  for (int k = 2; k < argc; k += 2) {
    const std::string flag = argv[k];
    if (k + 1 >= argc) return invalid(flag + " needs a value");
    const std::string v = argv[k + 1];
    if (flag == "--seed") SPRITEGEN_TRY(to_seeds(flag, v, &seeds));
    else if (flag == "--stream") {
      for (const std::string& item : split(v, ',')) {
        streams.emplace_back();
        SPRITEGEN_TRY(to_u64(flag, item, UINT32_MAX, &streams.back()));
      }
    } else if (flag == "--count") SPRITEGEN_TRY(to_u64(flag, v, uint64_t{1} << 28, &count));
    else if (flag == "--out") out = v;
    else return invalid("unknown noise option '" + flag + "' (see --help)");
  }
  if (seeds.empty() || streams.empty() || count == 0 || !ends_with(out, ".npy"))
    return invalid("noise needs --seed, --stream, --count >= 1 and --out FILE.npy");
  const uint64_t most = uint64_t{1} << 28;  // 1 GiB of float32, before it is allocated
  if (count > most / seeds.size() / streams.size())
    return invalid("noise would hold " + std::to_string(seeds.size()) + " x " + std::to_string(streams.size()) +
                   " x " + std::to_string(count) + " values, more than 2^28; draw fewer");
  Tensor t({static_cast<int64_t>(streams.size()), static_cast<int64_t>(seeds.size()), static_cast<int64_t>(count)});
  for (size_t s = 0; s < streams.size(); ++s)
    for (size_t r = 0; r < seeds.size(); ++r)
      spritegen::noise::normals(seeds[r], static_cast<uint32_t>(streams[s]),
                                t.data.data() + (s * seeds.size() + r) * count, count);
  return spritegen::write_npy(out, t);
}

// `limits`: the bounds this build checks, as JSON (tests/test_cpp.py compares them with Python's).
int print_limits() {
  std::printf("{");
  for (const auto& entry : spritegen::limits::kNumbers) std::printf("\"%s\": %.17g, ", entry.name, entry.value);
  std::printf("\"kManifestFormat\": \"%s\"}\n", spritegen::limits::kManifestFormat);
  return 0;
}

int report(const Status& status) {
  if (status.ok()) return 0;
  std::cerr << "error: " << status.message() << "\n";
  return status.code() == Code::invalid_argument ? 2 : 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "noise") return report(noise_command(argc, argv));
  if (argc == 2 && std::string(argv[1]) == "limits") return print_limits();
  Args args;
  Status status = parse(argc, argv, &args);
  if (status.ok() && args.help) {
    std::cout << usage();
    return 0;
  }
  if (status.ok()) status = validate(args);
  if (status.ok()) status = sample(args);
  return report(status);
}
