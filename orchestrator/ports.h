// The orchestrator's ports: what a round needs from the sampler, the oracle and the trainer.
// Implemented over gRPC by grpc_ports.h (what `spar up` and the cluster use) and by fakes in
// tests. Requests and results are the API's own messages (the orchestrator depends on proto for
// the job spec anyway); no gRPC types appear here. Implementations must be thread-safe.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spar/v1/oracle.pb.h"
#include "spar/v1/sampler.pb.h"
#include "spar/v1/trainer.pb.h"

namespace spar::orchestrator {

// Asked while a call waits (a user's cancel or the server's shutdown): an implementation ends the
// call soon after it turns true and returns Cancelled. May be empty.
using CancelCheck = std::function<bool()>;

class SamplerPort {
 public:
  virtual ~SamplerPort() = default;
  // Streams one result per prompt to `on_result` (which may stop the call by returning an error).
  virtual absl::Status Generate(
      const v1::GenerateRequest& request,
      const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
      const CancelCheck& cancelled) = 0;
};

class OraclePort {
 public:
  virtual ~OraclePort() = default;
  // Streams one judgment per comparison, in completion order.
  virtual absl::Status Compare(const v1::CompareRequest& request,
                               const std::function<absl::Status(const v1::Judgment&)>& on_judgment,
                               const CancelCheck& cancelled) = 0;
  // Side-by-side 6-point scores (pairs.scoring = "side_by_side"): streams one result per item, in
  // completion order. Unimplemented unless the port supports it.
  virtual absl::Status Score(
      const v1::ScoreRequest& /*request*/,
      const std::function<absl::Status(const v1::ScoreResult&)>& /*on_result*/,
      const CancelCheck& /*cancelled*/) {
    return absl::UnimplementedError("this oracle port does not implement Score");
  }
};

class TrainerPort {
 public:
  virtual ~TrainerPort() = default;
  // Starts (or attaches to, by idempotency key) a training run and follows it to the end.
  // Returns the final event (state SUCCEEDED) or an error; `cancelled` is polled between events.
  virtual absl::StatusOr<v1::TrainingEvent> Train(
      const v1::StartTrainingRequest& request,
      const std::function<void(const v1::TrainingEvent&)>& on_event,
      const CancelCheck& cancelled) = 0;
  // Checks `config` against the trainer's rules and devices (bf16 needs CUDA), and, when
  // `init_checkpoint` is not empty, what training requires of that checkpoint (its config and
  // tokenizer, without its weights), without starting anything: InvalidArgument naming the field
  // ("init_checkpoint: ..." for the checkpoint) when the trainer refuses; OK when it accepts or
  // cannot be asked (the train stage checks again).
  virtual absl::Status CheckConfig(const v1::TrainingConfig& /*config*/,
                                   const std::string& /*chat_template*/,
                                   const std::string& /*init_checkpoint*/) {
    return absl::OkStatus();
  }
};

struct Ports {
  SamplerPort* sampler = nullptr;
  OraclePort* oracle = nullptr;
  TrainerPort* trainer = nullptr;
};

}  // namespace spar::orchestrator
