// spritegen_cpp's arguments (see cli_args.hpp).
#include "cli_args.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "contract_limits.hpp"

namespace spritegen {
namespace cli {
namespace {
const char kUsage[] = R"(usage: spritegen_cpp --export-dir D [options]
       spritegen_cpp noise --seed S[,S...] --stream I[,I...] --count N --out FILE.npy
       spritegen_cpp limits

Samples SpriteGen sprites from a spritegen-export directory with ONNX Runtime (C API).

  --export-dir D        export directory (manifest.json, ddim_step/ddpm_step/ddim_loop/solver_step.onnx)
  --class NAMES         comma-separated class names, one sprite each (hero,non-hero,food,
                        spell,side-facing); omitted: unconditional (zero context)
  --blend NAME=W[,...]  add W * NAME to every context row, e.g. --class hero --blend food=0.6
  --sampler S           ddim (default), ddpm, dpmpp (DPM-Solver++ 2M, n network calls; eta 1:
                        its SDE form) or fast (the export's few-step sampler fitted to its checkpoint)
  --n N                 DDIM steps, 1..T (default: the export's, its manifest's ddim_loop_steps);
                        dpmpp: network calls, 1..T (default {DPMPP_STEPS}); fast: one the export was
                        fitted for (default: its recommended one)
  --eta E               DDIM / dpmpp stochasticity in 0..1 (default 0: deterministic); not for fast,
                        which runs at the export's fitted eta
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

}  // namespace

// kUsage with its {MAX_...} placeholders filled from contract_limits.hpp (never retyped).
std::string usage() {
  std::string text = kUsage;
  std::ostringstream guidance;
  guidance << spritegen::limits::kMaxGuidance;
  const std::pair<std::string, std::string> values[] = {
      {"{MAX_BATCH}", std::to_string(spritegen::limits::kMaxBatch)},
      {"{MAX_GUIDANCE}", guidance.str()},
      {"{DPMPP_STEPS}", std::to_string(spritegen::limits::kDpmppDefaultSteps)}};
  for (const auto& [key, value] : values)
    for (size_t at; (at = text.find(key)) != std::string::npos;) text.replace(at, key.size(), value);
  return text;
}

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

Status to_seeds(const std::string& flag, const std::string& text, std::vector<uint64_t>* out) {
  for (const std::string& item : split(text, ',')) {
    uint64_t seed = 0;
    SPRITEGEN_TRY(to_u64(flag, item, UINT64_MAX, &seed));
    out->push_back(seed);
  }
  return {};
}

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

namespace {
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
    return a.n >= 1 ? Status{} : invalid("--n must be >= 1 (steps or network calls), got " + v);
  }
  else if (flag == "--eta") {
    a.eta_given = true;
    return to_float(flag, v, &a.eta);
  }
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

}  // namespace

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

Status validate(const Args& a) {
  const std::vector<std::pair<bool, std::string>> rules = {
      {!a.export_dir.empty(), "--export-dir is required (a spritegen-export directory)"},
      {!a.out.empty() || !a.out_npy.empty() || !a.out_rgba.empty() || a.repeat > 0,
       "--out FILE.ppm|png (or --out-npy / --out-rgba FILE) is required"},
      {a.out.empty() || ends_with(a.out, ".ppm") || ends_with(a.out, ".png"),
       "--out must end in .ppm or .png, got '" + a.out + "'"},
      {a.out_npy.empty() || ends_with(a.out_npy, ".npy"), "--out-npy must end in .npy, got '" + a.out_npy + "'"},
      {a.sampler == "ddim" || a.sampler == "ddpm" || a.sampler == "dpmpp" || a.sampler == "fast",
       "--sampler must be ddim, ddpm, dpmpp or fast, got '" + a.sampler + "'"},
      {!(a.sampler == "fast" && a.eta_given),
       "--eta is not an option of --sampler fast (it runs at the export's fitted eta); use --sampler dpmpp --eta E"},
      {a.graph == "auto" || a.graph == "loop" || a.graph == "step",
       "--graph must be auto, loop or step, got '" + a.graph + "'"},
      {a.seeds.empty() || a.noise.empty(), "give either --seed or --noise, not both"},
      {a.step_noise.empty() || !a.noise.empty(), "--step-noise needs --noise (x_T) too"},
      {a.noise.empty() || !a.num, "--num comes from the --noise file's batch; drop --num"},
      {a.sampler == "ddim" || a.graph != "loop", "--graph loop is DDIM only"},
  };
  for (const auto& [ok, message] : rules)
    if (!ok) return invalid(message);
  return distinct_outputs(a);
}

}  // namespace cli
}  // namespace spritegen
