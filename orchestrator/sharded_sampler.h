// Sampler replicas (ARCHITECTURE.md "several sampler replicas"): a SamplerPort over several
// replicas' ports. A request's prompts are split into contiguous shards, one per replica, sampled
// in parallel; each shard is sent with GenerateRequest.first_index set to its global position, so
// the samples equal what one replica would draw for the whole list. A replica failing with
// UNAVAILABLE (killed, restarting) hands the rest of its shard (the prompts it has not delivered)
// to the next replica; only when every replica has failed a shard does Generate return
// UNAVAILABLE. Results reach `on_result` one at a time (serialized), in index order within a
// shard, shards interleaved. Thread-safe when the replicas' ports are.
#pragma once

#include <vector>

#include "orchestrator/ports.h"

namespace spar::orchestrator {

class ShardedSamplerPort final : public SamplerPort {
 public:
  // `replicas` are not owned and must outlive this port; at least one. `replica_max_batch_size`:
  // the replicas' sampler.max_batch_size (rows per forward pass). Shard boundaries are put on the
  // replicas' batch boundaries (multiples of max_batch_size / K prompts in the global index), so
  // every prompt is computed in the same batch as on one replica and the log-probs are
  // bit-identical too; 0 or 1 = any prompt boundary (tokens identical, log-probs equal up to float
  // rounding of differently shaped batches).
  explicit ShardedSamplerPort(std::vector<SamplerPort*> replicas, int replica_max_batch_size = 0);
  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
                        const CancelCheck& cancelled) override;

 private:
  std::vector<SamplerPort*> replicas_;
  int replica_max_batch_size_;
};

}  // namespace spar::orchestrator
