// ONNX Runtime C API plumbing and Sampler::Impl (see ort_state.hpp): sessions built from
// verified bytes, OrtValues over reused buffers, one Run per step. No exceptions: ORT's C
// API returns OrtStatus*, turned into spritegen::Status by check().
#include "ort_state.hpp"

#include <algorithm>
#include <iterator>

#include "graphs.hpp"
#include "noise.hpp"
#include "sha256.hpp"

namespace spritegen {
using detail::check;
using detail::ort;
using detail::OrtPtr;

namespace detail {
const OrtApi* ort() {
  static const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  return api;
}

Status check(OrtStatus* status, const std::string& what) {
  if (status == nullptr) return {};
  std::string message = ort()->GetErrorMessage(status);
  ort()->ReleaseStatus(status);
  message = message.substr(0, message.find('\n'));
  return {Code::runtime, what + ": " + message};
}

}  // namespace detail

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
  // The bytes checked against the manifest (sha256, then the graph's own metadata) are the
  // bytes ONNX Runtime loads.
  const auto listed = manifest->graphs.find(key);
  if (listed == manifest->graphs.end())
    return bad_export("the export has no " + key + " graph (its manifest.json lists none); re-export with "
                      "spritegen-export, or choose options that use a graph it has");
  const Manifest::Graph& io = listed->second;
  std::string bytes;
  SPRITEGEN_TRY(read(io.file, &bytes));
  if (sha256_hex(bytes.data(), bytes.size()) != io.sha256)
    return bad_export(origin + io.file + " does not match the sha256 in manifest.json: altered or swapped; re-export");
  SPRITEGEN_TRY(check_graph(*manifest, key, origin + io.file, bytes, &checkpoint));
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
  if (input == "m") return view(m[parity], image_shape, out);
  if (input == "z") return view(z, image_shape, out);
  if (input == "c") return view(c, context_shape, out);
  if (input == "i") return scalar(&i, sizeof i, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  if (input == "i_prev" || input == "i_next") return scalar(&i_to, sizeof i_to, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  if (input == "i_last") return scalar(&i_last, sizeof i_last, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  if (input == "eta") return scalar(&eta, sizeof eta, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  if (input == "w") return scalar(&w, sizeof w, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  return bad_export("unexpected graph input '" + input + "'");
}

// Where a step graph's output goes at parity p (reading x[p], m[p]): the state into x[1-p],
// the solver's x0 prediction into m[1-p] (the next call's m).
Status Sampler::Impl::output(const std::string& name, int parity, OrtValue** out) {
  if (name == "x_prev" || name == "x_next") return view(x[1 - parity], image_shape, out);
  if (name == "x0") return view(m[1 - parity], image_shape, out);
  return bad_export("unexpected graph output '" + name + "'");
}

void Sampler::Impl::fill_noise(int64_t stream) {
  if (step_noise) {  // step_noise[i-1] is the noise of the step that starts at i
    const float* src = step_noise->data.data() + (stream - 1) * z.size();
    std::copy(src, src + z.size(), z.begin());
  } else if (row_seeds) {  // row r: the batch-1 stream of seeds[r]
    const size_t row = z.size() / row_seeds->size();
    for (size_t r = 0; r < row_seeds->size(); ++r)
      noise::normals((*row_seeds)[r], static_cast<uint32_t>(stream), z.data() + r * row, row);
  } else {
    noise::normals(seed, static_cast<uint32_t>(stream), z.data(), z.size());
  }
}

Status Sampler::Impl::run_steps(const std::string& key, const std::vector<Step>& steps) {
  Session* s = nullptr;
  SPRITEGEN_TRY(session(key, &s));
  // 1. OrtValues over our buffers, built once per call: parity p reads x[p] (and m[p]), writes
  //    x[1-p] (and m[1-p])
  std::vector<OrtPtr<OrtValue>> owned;
  std::vector<const OrtValue*> inputs[2];
  std::vector<OrtValue*> outputs[2];
  std::vector<const char*> output_names;
  for (const std::string& name : s->io.outputs) output_names.push_back(name.c_str());
  for (int p = 0; p < 2; ++p) {
    for (const std::string& name : s->io.inputs) {
      OrtValue* v = nullptr;
      SPRITEGEN_TRY(value(name, p, &v));
      owned.emplace_back(v);
      inputs[p].push_back(v);
    }
    for (const std::string& name : s->io.outputs) {
      OrtValue* v = nullptr;
      SPRITEGEN_TRY(output(name, p, &v));
      owned.emplace_back(v);
      outputs[p].push_back(v);
    }
  }
  // 2. one Run per step; only i, i_to, i_last and z change in place between them
  for (const Step& step : steps) {
    i = step.i;
    i_to = step.to;
    i_last = step.last;
    if (step.noisy) fill_noise(step.i);  // else z stays zero: the graph ignores it
    SPRITEGEN_TRY(check(ort()->Run(s->session.get(), nullptr, s->names.data(), inputs[cur].data(), s->names.size(),
                                   output_names.data(), output_names.size(), outputs[cur].data()),
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
  const char* output = s->io.outputs[0].c_str();
  SPRITEGEN_TRY(check(ort()->Run(s->session.get(), nullptr, s->names.data(), inputs.data(), inputs.size(), &output,
                                 1, &result),
                      "ONNX Runtime failed running " + s->io.file));
  cur = 1;
  return {};
}

}  // namespace spritegen
