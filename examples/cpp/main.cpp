// spritegen_cpp: the command line around spritegen::Sampler (sampler.hpp).
//
//   spritegen_cpp --export-dir D --class hero [--blend food=0.6] [--sampler ddim|ddpm|dpmpp|fast] [--n 25]
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

#include "cli_args.hpp"
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
using spritegen::cli::Args;
using spritegen::cli::ends_with;
using spritegen::cli::split;
using spritegen::cli::to_seeds;
using spritegen::cli::to_u64;

spritegen::Options options_for(const Args& a) {
  spritegen::Options o;
  const std::pair<const char*, spritegen::Method> methods[] = {{"ddim", spritegen::Method::ddim},
      {"ddpm", spritegen::Method::ddpm}, {"dpmpp", spritegen::Method::dpmpp}, {"fast", spritegen::Method::fast}};
  for (const auto& [name, method] : methods)
    if (a.sampler == name) o.method = method;
  o.steps = a.n;
  o.eta = a.eta;
  o.guidance = a.guidance;
  o.use_loop = a.graph != "step";
  return o;
}

// The export from its directory, or (--from-memory) from bytes read here first, as an
// engine's asset system would hand them over: only the graph this run uses. Either way that
// graph is verified (sha256, metadata against the manifest) and loaded on first use (warm_up
// or the first generate), so load_ms stays the cost of opening the export.
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
    if (graph != manifest.graphs.end())  // (an export without it is refused on first use)
      SPRITEGEN_TRY(slurp(a.export_dir + "/" + graph->second.file, spritegen::limits::kMaxGraphBytes,
                          &files[graph->second.file]));
    SPRITEGEN_TRY(spritegen::Sampler::from_memory(manifest_json, std::move(files), config, out));
  }
  if (a.graph == "loop" && (*out)->graph_for(options) != "ddim_loop")
    return invalid("--graph loop needs --n " + std::to_string((*out)->manifest().ddim_loop_steps) +
                   " and --eta 0 (the steps baked into ddim_loop.onnx), and an export with ddim_loop.onnx");
  return {};
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
    int steps = 0;
    SPRITEGEN_TRY(sampler->calls(req.options, &steps));
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
  std::printf("\"kManifestFormat\": \"%s\", \"kFastKey\": \"%s\"}\n", spritegen::limits::kManifestFormat,
              spritegen::limits::kFastKey);
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
  Status status = spritegen::cli::parse(argc, argv, &args);
  if (status.ok() && args.help) {
    std::cout << spritegen::cli::usage();
    return 0;
  }
  if (status.ok()) status = spritegen::cli::validate(args);
  if (status.ok()) status = sample(args);
  return report(status);
}
