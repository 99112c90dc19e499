// A persistent c10d data-parallel group (Gloo on CPU) that outlives one training run: the Trainer
// service joins it once at startup (torchrun-style env, see DistributedFromEnv) and hands it to
// every TrainDpo call through DistributedConfig::group. Besides the training collectives it
// carries the service's control messages: rank 0 broadcasts bytes (a length, then the bytes) to
// every rank. torch and c10d stay in the .cc (pimpl).
//
// Collectives must be called by every rank in the same order. A collective that fails (a rank
// died, a timeout) marks the group broken: it cannot be used again, and every rank should exit
// (torchrun semantics: restart all ranks together).
// Thread-compatible: one collective at a time (callers serialize runs).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/trainer.h"

namespace spar::trainer {

namespace internal {
class Communicator;
}  // namespace internal

class ProcessGroup {
 public:
  // Joins the group (config.world_size >= 2): blocks until every rank has connected or
  // config.timeout_seconds pass (Internal / DeadlineExceeded carrying c10d's message).
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> Create(const DistributedConfig& config);
  ~ProcessGroup();

  int rank() const;
  int world_size() const;

  // Rank 0 sends *bytes; every other rank receives into *bytes. `timeout` bounds the wait of a
  // receiving rank (InfiniteDuration: wait as long as it takes, e.g. an idle worker waiting for
  // the next command); on rank 0 it bounds the send. Internal when the group fails.
  absl::Status BroadcastFromRank0(std::string* bytes, absl::Duration timeout);

  // Sum of `value` over all ranks (default collective timeout).
  absl::StatusOr<int64_t> AllReduceSum(int64_t value);

  // False once a collective failed: the group must not be used again.
  bool healthy() const;

  // For trainer/ internals.
  internal::Communicator* communicator() const { return comm_.get(); }

 private:
  explicit ProcessGroup(std::unique_ptr<internal::Communicator> comm);
  std::unique_ptr<internal::Communicator> comm_;
};

}  // namespace spar::trainer
