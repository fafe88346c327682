// The spritegen_cpp command line's arguments: parsing and validation, each refusal one Status
// line (main.cpp runs them). Bounds come from contract_limits.hpp, never retyped.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "status.hpp"

namespace spritegen {
namespace cli {

struct Args {
  std::string export_dir, out, out_npy, out_rgba, noise, step_noise, sampler = "ddim", graph = "auto";
  std::vector<std::string> classes;
  std::vector<std::pair<std::string, float>> blend;
  std::vector<uint64_t> seeds;
  int n = 0, num = 0, scale = 4, threads = 0, repeat = 0;
  bool spin = false, warm_up = false, from_memory = false, help = false, eta_given = false;
  float eta = 0.0f, guidance = 0.0f;
};

// The --help text, its bounds filled in from contract_limits.hpp.
std::string usage();
// argv -> Args: unknown options and malformed values refused by name.
Status parse(int argc, char** argv, Args* a);
// The rules between options (one export, one output at least, distinct output files, ...).
Status validate(const Args& a);

std::vector<std::string> split(const std::string& s, char sep);
bool ends_with(const std::string& s, const std::string& end);
Status to_u64(const std::string& flag, const std::string& text, uint64_t max, uint64_t* out);
Status to_seeds(const std::string& flag, const std::string& text, std::vector<uint64_t>* out);

}  // namespace cli
}  // namespace spritegen
