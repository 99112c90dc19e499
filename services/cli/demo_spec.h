// The demo's job settings per algorithm: each recipe as its paper states, except where the tiny
// built-in model needs a tuned value, which is listed next to the paper's (printed by the demo).
#pragma once

#include <string>
#include <vector>

#include "spar/v1/orchestrator.pb.h"

namespace spar::cli {

// The demo's job settings (prompts per round, sampling, DPO beta/lr ...) on top of `spec`'s name,
// algorithm, preset, base model, rounds and seed.
v1::JobSpec DemoSpecDefaults(const v1::JobSpec& spec);

// A setting the demo keeps at a value tuned for its 0.8M-parameter model instead of the paper's.
struct TunedSetting {
  std::string field;  // as in the job spec, e.g. "training.nll_weight"
  std::string demo;   // the demo's value
  std::string paper;  // the paper's (ALGORITHMS.md)
  std::string why;
};

// The demo's tuned settings of `algorithm`, in the order the demo prints them.
std::vector<TunedSetting> DemoTunedSettings(const std::string& algorithm);

}  // namespace spar::cli
