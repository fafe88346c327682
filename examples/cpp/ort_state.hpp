// Private to the sampler (sampler.cpp, ort_state.cpp): ONNX Runtime C API plumbing and the
// state one Sampler keeps between calls. Not part of the API an engine calls.
#pragma once

#include <onnxruntime_c_api.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sampler.hpp"

namespace spritegen {
namespace detail {
const OrtApi* ort();  // null when the library is older than the headers (docs/cpp.md)

struct OrtRelease {
  void operator()(OrtEnv* p) const { ort()->ReleaseEnv(p); }
  void operator()(OrtSessionOptions* p) const { ort()->ReleaseSessionOptions(p); }
  void operator()(OrtSession* p) const { ort()->ReleaseSession(p); }
  void operator()(OrtMemoryInfo* p) const { ort()->ReleaseMemoryInfo(p); }
  void operator()(OrtValue* p) const { ort()->ReleaseValue(p); }
};
template <typename T>
using OrtPtr = std::unique_ptr<T, OrtRelease>;

Status check(OrtStatus* status, const std::string& what);  // null -> ok; else runtime + ORT's first line
}  // namespace detail

// One network call of a step graph: from index i to `to` (DDIM's i_prev, the solver's i_next;
// DDPM: i - 1), `last` the solver's i_last, `noisy` whether it draws stream i's noise into z.
struct Step {
  int64_t i = 0, to = 0, last = 0;
  bool noisy = false;
};

// The state of one Sampler: sessions, reused buffers, and this call's noise source.
struct Sampler::Impl {
  struct Session {
    detail::OrtPtr<OrtSession> session;
    Manifest::Graph io;
    std::vector<const char*> names;  // into io.inputs
  };
  using Reader = std::function<Status(const std::string& file, std::string* bytes)>;

  const Manifest* manifest = nullptr;
  Reader read;             // the export's files: from the directory, or from `files`
  Files files;             // an in-memory export's bytes, dropped as sessions are built
  std::string origin;      // where the files are, for messages
  std::string checkpoint;  // the checkpoint the graphs checked so far were traced from
  detail::OrtPtr<OrtEnv> env;
  detail::OrtPtr<OrtSessionOptions> options;
  detail::OrtPtr<OrtMemoryInfo> memory;
  std::map<std::string, Session> sessions;

  // Buffers reused across steps and calls (reallocated only when the batch changes).
  std::vector<int64_t> image_shape, context_shape;  // [B, C, H, W], [GB, K]
  std::vector<float> x[2], m[2], c, z;  // ping-pong state and x0 predictions (solver), context, noise
  int64_t i = 0, i_to = 0, i_last = 0;
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
  Status output(const std::string& name, int parity, OrtValue** out);
  void fill_noise(int64_t stream);
  Status run_steps(const std::string& key, const std::vector<Step>& steps);
  Status run_loop();
};

}  // namespace spritegen
