// Private to the sampler: the table of graphs it knows, and the check of a graph file's own
// metadata against the manifest (as the Python runtime's runtime/verify.py does), so a hand-
// edited manifest (swapped class names, another T or loop step count) or a graph copied in
// from another export is refused before a session is built from it.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "sampler.hpp"

namespace spritegen {

// One graph an export may hold: its key in the manifest's "graphs" (the file name is the
// manifest's), the inputs the sampler feeds it and the outputs it reads (names from the export
// contract). A new graph is one row here plus the code that runs it.
struct GraphKind {
  const char* key;
  std::set<std::string> inputs;
  std::set<std::string> outputs;
  bool has_loop_steps;  // its metadata records ddim_loop_steps (the unrolled loop)
};
const std::vector<GraphKind>& graph_kinds();

// {key: value} of an ONNX file's metadata_props, read from its bytes by walking the
// protobuf's top-level fields (no session, no onnx library); bad_export when the bytes are
// not a well-formed protobuf message.
Status onnx_metadata(const std::string& bytes, const std::string& label, std::map<std::string, std::string>* out);

// Checks the metadata of graph `key`'s bytes against the manifest: format, graph kind,
// hyperparameters, class names, schedule, loop step count (ddim_loop), and the checkpoint
// it was traced from. `checkpoint` carries the checkpoint of the graphs checked before
// (empty: none recorded yet) and is updated: one export, one checkpoint. `label` names the
// file in messages.
Status check_graph(const Manifest& manifest, const std::string& key, const std::string& label,
                   const std::string& bytes, std::string* checkpoint);

}  // namespace spritegen
