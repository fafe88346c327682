// SpriteGen sampler on ONNX Runtime's C API: the piece a game engine copies.
//
// Reads a `spritegen-export` (manifest.json + ddim_step.onnx / ddpm_step.onnx / ddim_loop.onnx /
// solver_step.onnx) from a directory or from bytes the engine's asset system hands over, and
// turns a context vector plus a seed into 16x16 sprites: the same sprites, for the same seed, as
// the Python runtime and the browser module (the noise is spritegen-normal, noise.hpp). The
// schedule lives inside the step graphs, so this code only walks step indices:
// DDPM i = T..1; DDIM (i, i_prev) with i = T, T-s, ... > 0, s = T / n, i_prev = max(i - s, 0);
// DPM-Solver++ (dpmpp, fast) over indices T = i_0 > ... > i_n = 0, one call per (i, i_next,
// i_last) with i_last the step before (i itself on the first), the previous call's x0 fed back
// as m: dpmpp i_k = floor(T (n - k) / n), fast the manifest's fitted table for n.
//
// Nothing throws: every call that can fail returns a spritegen::Status (status.hpp), so it
// builds and works with -fno-exceptions. It uses ONNX Runtime's C API (its C++ API throws).
// Dependencies: onnxruntime_c_api.h (any ORT >= 1.21 at run time) and nlohmann/json.
// The files an engine copies are listed in docs/cpp.md ("In an engine"); the rest of
// examples/cpp is the CLI.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "status.hpp"

namespace spritegen {

// A dense float32 array in C order.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> dims);
  size_t numel() const;
  std::string shape_str() const;  // "[1, 3, 16, 16]"
};

std::string shape_string(const std::vector<int64_t>& shape);

// ddim, ddpm: the course's samplers. dpmpp: DPM-Solver++ (2M) with n network calls, eta 1 its
// SDE form. fast: the export's few-step sampler fitted to its checkpoint (the manifest's "fast"
// section): its solver and eta on the step indices fitted for n calls.
enum class Method { ddim, ddpm, dpmpp, fast };

struct Options {
  Method method = Method::ddim;
  int steps = 0;          // DDIM steps n, 1..T; 0 = the manifest's ddim_loop_steps, the export's
                          // default (contract.DDIM_DEFAULT_STEPS without a loop graph); DDPM: all T;
                          // dpmpp: network calls n, 1..T, 0 = contract.DPMPP_DEFAULT_STEPS;
                          // fast: an n the export was fitted for, 0 = its default_n
  float eta = 0.0f;       // DDIM / DPM-Solver++ stochasticity: 0 = deterministic; fast: must stay 0
                          // (it runs at the export's fitted eta)
  float guidance = 0.0f;  // classifier-free guidance weight w in 0..limits::kMaxGuidance:
                          // eps = (1+w) eps(c) - w eps(0)
  bool use_loop = true;   // DDIM: run ddim_loop.onnx (one call) when n and eta allow it
};

struct Config {
  int threads = 0;     // ONNX Runtime intra-op threads; 0 = all cores
  bool spin = false;   // idle ORT threads busy-wait (only on cores nothing else needs)
};

// What this program needs from manifest.json, every number bounded as the Python runtime
// bounds it (contract_limits.hpp, generated from spritegen.runtime.limits).
struct Manifest {
  std::string format;       // contract.MANIFEST_FORMAT
  int timesteps = 0;        // T
  double beta1 = 0.0, beta2 = 0.0;  // the schedule's ends (checked against the graphs' metadata)
  int channels = 0;         // C
  int height = 0;           // H = W
  int n_feat = 0;           // checked against the graphs' metadata only
  int n_cfeat = 0;          // K, context length
  int ddim_loop_steps = 0;  // n baked into ddim_loop.onnx (DDIM's default n)
  // The manifest's optional "fast" section (the fitted few-step sampler), checked as the Python
  // runtime checks it (runtime/manifest_fields.py fast_sampler); `indices` empty: none.
  struct Fast {
    std::string solver;  // "dpmpp" (2M on fitted indices) or "ddim" (first order: a distilled student's)
    float eta = 0.0f;    // 0..1
    int default_n = 0;   // has a table in `indices`
    std::map<int, std::vector<int64_t>> indices;  // n -> [T, ..., 0], n + 1 strictly falling indices
    bool student = false;  // the network is a distilled student: fast with default_n calls only
    bool first_order() const { return solver == "ddim"; }  // i_last = i on every step
  } fast;
  std::string checkpoint_sha256;  // provenance.checkpoint_sha256 (or .sha256); empty: not recorded
  std::vector<std::string> class_names;  // in context-vector order
  struct Graph {
    std::string file;
    std::string sha256;               // from the manifest's "files"; checked before loading
    std::vector<std::string> inputs;   // in the graph's order
    std::vector<std::string> outputs;  // in the graph's order (solver_step: x_next, x0)
  };
  // The graphs the manifest lists, by key ("ddim_step", "ddpm_step", "ddim_loop", "solver_step"; the table of
  // known graphs is in manifest.cpp). An export may omit some; a run needing one is refused.
  std::map<std::string, Graph> graphs;

  // Parses manifest.json text; `where` names it in messages. Refuses a noise generator
  // other than spritegen-normal v1 (a manifest without "noise" predates the record: v1).
  static Status parse(const std::string& json_text, const std::string& where, Manifest* out);
};

// Which graph a run with these options uses: "ddim_loop" (DDIM at the manifest's
// ddim_loop_steps, eta 0, use_loop), "ddim_step", "ddpm_step" or "solver_step" (dpmpp and
// fast: a game using only those loads just solver_step.onnx). A caller that opens an
// export from memory hands over only this graph's file.
std::string graph_for(const Manifest& manifest, const Options& options);

// File name -> bytes: an export handed over in memory (the manifest's graph files).
using Files = std::map<std::string, std::string>;

class Sampler {
 public:
  // An export directory. Checks the manifest; each graph is read and checked (regular file,
  // sha256, its own metadata against the manifest) when first used (or in preload/warm_up),
  // so only the graphs a game uses are ever read.
  static Status open(const std::string& export_dir, const Config& config, std::unique_ptr<Sampler>* out);
  // The same export as bytes: manifest.json's text and the graph files by name, only those the
  // caller will use (graph_for; e.g. just ddim_step.onnx). The sampler owns the bytes and drops
  // each graph's once its session is built; a run needing a graph not handed over is refused.
  static Status from_memory(const std::string& manifest_json, Files files, const Config& config,
                            std::unique_ptr<Sampler>* out);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Verifies and opens the graph `options` runs, now instead of in the first generate().
  Status preload(const Options& options = {});
  // preload, then one throw-away generate() at `batch`: ONNX Runtime's first run of a
  // session plans memory and picks kernels (about ten times a steady call), so a game
  // pays that at a loading screen, not in a frame.
  Status warm_up(int64_t batch, const Options& options = {});

  // Sprites [B, C, H, W] in [-1, 1] for context [B, K] (one-hot, blend, or zeros).
  // One seed: x_T and every step's noise drawn for the whole batch in C order.
  Status generate(const Tensor& context, uint64_t seed, const Options& options, Tensor* sprites);
  // One seed per row: row r equals the batch-1 call with seeds[r] (how a server merges requests).
  Status generate(const Tensor& context, const std::vector<uint64_t>& seeds, const Options& options,
                  Tensor* sprites);
  // Injected noise: x_T [B, C, H, W], and step_noise [T, B, C, H, W] (step_noise[i-1] is the
  // noise of the step starting at i) when the sampler adds noise (DDPM; DDIM, dpmpp with eta > 0;
  // fast when the export's eta is > 0).
  Status generate(const Tensor& context, const Tensor& noise, const Tensor* step_noise, const Options& options,
                  Tensor* sprites);

  // One context row from class weights, e.g. {{"hero", 1}, {"food", 0.6f}}.
  Status context_row(const std::vector<std::pair<std::string, float>>& weights, std::vector<float>* row) const;

  const Manifest& manifest() const { return manifest_; }
  // Which graph generate() runs for these options (the free graph_for on this manifest).
  std::string graph_for(const Options& options) const { return spritegen::graph_for(manifest_, options); }
  // The network calls (steps) generate() makes with these options, after checking them
  // (ddim_loop: its n steps, run inside one graph call).
  Status calls(const Options& options, int* out) const;

 private:
  struct Impl;
  Sampler(Manifest manifest, std::unique_ptr<Impl> impl);
  Status run(const Tensor& context, const Tensor& noise, const Options& options, Tensor* sprites);

  Manifest manifest_;
  std::unique_ptr<Impl> impl_;
};

// Sprites [B, 3, H, W] in [-1, 1] -> RGBA8 [B, H, W, 4] (alpha 255), ready for a texture
// upload: byte = round((clamp(x, -1, 1) + 1) * 127.5).
std::vector<uint8_t> to_rgba8(const Tensor& sprites);

}  // namespace spritegen
