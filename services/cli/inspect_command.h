// `spar inspect DIR [--json]`: a checkpoint's architecture, parameter count and every tensor
// (name, dtype, shape, sum of its values in float64) from config.json and model.safetensors or
// the shards of model.safetensors.index.json. How users check what they are about to train and
// how a checkpoint is compared from outside. Reads safetensors directly (no torch).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "services/cli/args.h"

namespace spar::cli {

// Exit codes: 0 ok, 2 bad flags or a malformed checkpoint, 4 missing directory or files.
int RunInspectCommand(const Args& args);

// The report as printed with --json: {"dir", "model_type", "architectures", "num_parameters",
// "tensors": [{"name", "dtype", "shape", "sum", "file"}]} (tensors sorted by name).
absl::StatusOr<nlohmann::json> InspectCheckpoint(const std::string& dir);

}  // namespace spar::cli
