// SpriteGen sampler on ONNX Runtime's C++ API: the piece a game engine copies.
//
// Reads a `spritegen-export` directory (manifest.json + ddim_step.onnx / ddpm_step.onnx /
// ddim_loop.onnx) and turns starting noise plus a context vector into 16x16 sprites.
// The schedule lives inside the step graphs, so this code only walks step indices:
// DDPM i = T..1; DDIM (i, i_prev) with i = T, T-s, ... > 0, s = T / n, i_prev = max(i - s, 0).
//
// Dependencies: onnxruntime_cxx_api.h (any ORT >= 1.21 at run time) and nlohmann/json.
// Copy sampler.hpp/.cpp and sha256.hpp/.cpp; everything else in examples/cpp is the CLI around them.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace spritegen {

// Every failure the sampler detects itself (bad export dir, wrong shapes, unknown class).
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A dense float32 array in C order.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> dims);
  size_t numel() const;
  std::string shape_str() const;  // "[1, 3, 16, 16]"
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[1, 3, 16, 16]"

enum class Method { ddim, ddpm };

struct Options {
  Method method = Method::ddim;
  int steps = 25;         // DDIM steps n, 1..T (DDPM always takes all T steps)
  float eta = 0.0f;       // DDIM stochasticity: 0 = the course's deterministic DDIM
  float guidance = 0.0f;  // classifier-free guidance weight w: eps = (1+w) eps(c) - w eps(0)
  bool use_loop = true;   // DDIM: run ddim_loop.onnx (one call) when n and eta allow it
  const Tensor* step_noise = nullptr;  // [T,B,C,H,W]: step_noise[i-1] = noise of step i
  uint64_t seed = 0;      // step noise when step_noise is null: mt19937_64 + normal_distribution
};

// What this program needs from manifest.json.
struct Manifest {
  int timesteps = 0;        // T
  int channels = 0;         // C
  int height = 0;           // H = W
  int n_cfeat = 0;          // K, context length
  int ddim_loop_steps = 0;  // n baked into ddim_loop.onnx
  std::vector<std::string> class_names;  // in context-vector order
  struct Graph {
    std::string file;
    std::string sha256;               // from the manifest's "files"; checked before loading
    std::vector<std::string> inputs;  // in the graph's order
    std::string output;
  };
  std::map<std::string, Graph> graphs;  // "ddim_step", "ddpm_step", "ddim_loop"

  static Manifest load(const std::string& export_dir);
};

class Sampler {
 public:
  // Opens the export directory. threads = 0 lets ONNX Runtime use every core. spin = false
  // parks idle worker threads instead of busy-waiting: on a shared or busy machine (a game
  // engine has its own threads) spinning steals the cores the work needs.
  explicit Sampler(const std::string& export_dir, int threads = 0, bool spin = false);

  // context: [B, K] (one-hot, blend, or zeros); noise: x_T [B, C, H, W].
  // Returns the final sprites [B, C, H, W], clipped to [-1, 1].
  Tensor generate(const Tensor& context, const Tensor& noise, const Options& options = {});

  // One context row from class weights, e.g. {{"hero", 1}, {"food", 0.6f}}.
  std::vector<float> context_row(const std::vector<std::pair<std::string, float>>& weights) const;

  const Manifest& manifest() const { return manifest_; }
  // The (i, i_prev) pairs of an n-step DDIM run (the export contract's ddim_pairs).
  std::vector<std::pair<int64_t, int64_t>> ddim_pairs(int n) const;
  // Which graph generate() runs for these options: "ddim_loop", "ddim_step" or "ddpm_step".
  std::string graph_for(const Options& options) const;

 private:
  struct Session {
    Ort::Session session;
    Manifest::Graph io;
  };
  Session& session(const std::string& key);  // verified and opened on first use, then kept
  void check_inputs(const Tensor& context, const Tensor& noise, const Options& options) const;
  void run_loop();
  void run_steps(const std::string& key, const Options& options);
  void fill_noise(int64_t i, const Options& options);
  Ort::Value value_for(const std::string& input, int parity);  // an OrtValue over a buffer
  Ort::Value view(std::vector<float>& buffer, const std::vector<int64_t>& shape);

  std::string dir_;
  Manifest manifest_;
  Ort::Env env_;
  Ort::SessionOptions session_options_;
  Ort::MemoryInfo memory_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::map<std::string, std::unique_ptr<Session>> sessions_;

  // Buffers reused across steps (and across calls of the same batch size).
  std::vector<int64_t> image_shape_;  // [B, C, H, W]
  std::vector<float> x_[2];           // ping-pong state x_i -> x_prev
  std::vector<float> c_;              // [GB, K]: context, then zeros when guided
  std::vector<float> z_;              // this step's noise
  int64_t i_ = 0, i_prev_ = 0;
  float eta_ = 0.0f, w_ = 0.0f;
  std::vector<int64_t> context_shape_;  // [GB, K]
  int cur_ = 0;                       // x_[cur_] holds the current state
  std::mt19937_64 rng_;               // step noise when none is injected
};

}  // namespace spritegen
