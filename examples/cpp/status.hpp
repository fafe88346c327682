// Error codes instead of exceptions: every spritegen call that can fail returns a Status.
//
// Game engines build with exceptions off (-fno-exceptions is the default of Unreal and
// Godot), so nothing here throws: a failure comes back as a code plus one line saying what
// is wrong and what to do. Code that prefers exceptions wraps calls in throw_if_error().
#pragma once

#include <string>
#include <utility>
#if defined(__cpp_exceptions)
#include <stdexcept>
#endif

namespace spritegen {

enum class Code {
  ok = 0,
  invalid_argument,  // the request: shapes, class names, steps, seeds, options
  bad_export,        // the export: missing, foreign, incomplete, tampered (sha256), unknown noise generator
  io,                // reading or writing a file of the caller's
  runtime,           // ONNX Runtime refused or failed (its first message line is kept)
};

class Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  bool ok() const { return code_ == Code::ok; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::ok;
  std::string message_;
};

inline Status invalid(std::string message) { return {Code::invalid_argument, std::move(message)}; }
inline Status bad_export(std::string message) { return {Code::bad_export, std::move(message)}; }

#if defined(__cpp_exceptions)
// For callers with exceptions on: `throw_if_error(sampler->generate(...))`.
struct Error : std::runtime_error {
  Error(const Status& status) : std::runtime_error(status.message()), code(status.code()) {}
  Code code;
};
inline void throw_if_error(const Status& status) {
  if (!status.ok()) throw Error(status);
}
#endif

}  // namespace spritegen

// Returns from the enclosing function when `expr` (a Status) is not ok.
#define SPRITEGEN_TRY(expr)                                 \
  do {                                                      \
    ::spritegen::Status spritegen_status_ = (expr);         \
    if (!spritegen_status_.ok()) return spritegen_status_;  \
  } while (0)
