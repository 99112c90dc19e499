#include "orchestrator/sharded_sampler.h"

#include <algorithm>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"

namespace spar::orchestrator {
namespace {

// Units: runs of prompts between the replicas' batch boundaries (global index multiples of
// max_batch_size / K); each shard is a contiguous run of whole units. The start of each unit,
// then the number of prompts.
std::vector<int64_t> UnitStarts(const v1::GenerateRequest& request, int replica_max_batch_size) {
  const int64_t n = request.prompts_size();
  const int64_t first = request.first_index();
  const int64_t k =
      std::max(1, request.params().has_num_samples() ? request.params().num_samples() : 1);
  const int64_t unit = std::max<int64_t>(1, replica_max_batch_size / k);
  std::vector<int64_t> unit_start = {0};
  for (int64_t i = 1; i < n; ++i) {
    if ((first + i) % unit == 0) unit_start.push_back(i);
  }
  unit_start.push_back(n);
  return unit_start;
}

// Prompts [begin, end) of shard `shard`: everything but the prompts as the caller sent it
// (policy, params, chat_template, ...).
v1::GenerateRequest ShardRequest(const v1::GenerateRequest& request, int64_t shard,
                                 int64_t num_shards, int64_t begin, int64_t end) {
  v1::GenerateRequest sub = request;
  sub.clear_prompts();
  sub.set_idempotency_key(
      absl::StrFormat("%s/shard-%d-of-%d", request.idempotency_key(), shard, num_shards));
  sub.set_first_index(request.first_index() + begin);
  for (int64_t i = begin; i < end; ++i) sub.add_prompts(request.prompts(i));
  return sub;
}

}  // namespace

ShardedSamplerPort::ShardedSamplerPort(std::vector<SamplerPort*> replicas,
                                       int replica_max_batch_size)
    : replicas_(std::move(replicas)), replica_max_batch_size_(replica_max_batch_size) {}

absl::Status ShardedSamplerPort::Generate(
    const v1::GenerateRequest& request,
    const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
    const CancelCheck& cancelled) {
  if (replicas_.empty()) return absl::FailedPreconditionError("no sampler replicas configured");
  const int64_t n = request.prompts_size();
  const int64_t first = request.first_index();
  const std::vector<int64_t> unit_start = UnitStarts(request, replica_max_batch_size_);
  const int64_t num_units = static_cast<int64_t>(unit_start.size()) - 1;
  const int64_t num_shards = std::max<int64_t>(
      1, std::min<int64_t>(static_cast<int64_t>(replicas_.size()), n > 0 ? num_units : 1));
  std::mutex mu;  // guards delivered, result, and serializes on_result
  std::vector<bool> delivered(n, false);
  absl::Status result;
  bool stop = false;

  auto run_shard = [&](int64_t shard) {
    const int64_t begin = unit_start[shard * num_units / num_shards];
    const int64_t end = unit_start[(shard + 1) * num_units / num_shards];
    size_t replica = static_cast<size_t>(shard) % replicas_.size();
    absl::Status last;
    for (size_t tried = 0; tried < replicas_.size();
         ++tried, replica = (replica + 1) % replicas_.size()) {
      int64_t next = begin;  // first prompt of the shard not delivered yet
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop) return;
        while (next < end && delivered[next]) ++next;
      }
      if (next >= end) return;
      last = replicas_[replica]->Generate(
          ShardRequest(request, shard, num_shards, next, end),
          [&](const v1::GenerateResponse& r) -> absl::Status {
            std::lock_guard<std::mutex> lock(mu);
            if (stop) return absl::CancelledError("sharded sampling stopped");
            const int64_t i = r.index() - first;
            if (i < next || i >= end) {
              return absl::InternalError(absl::StrCat("sampler replica ", replica,
                                                      " returned index ", r.index(),
                                                      " outside its shard"));
            }
            if (delivered[i]) return absl::OkStatus();
            delivered[i] = true;
            absl::Status st = on_result(r);
            if (!st.ok() && result.ok()) {
              result = st;
              stop = true;
            }
            return st;
          },
          cancelled);
      if (last.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        bool whole = true;
        for (int64_t i = begin; i < end; ++i) whole = whole && delivered[i];
        if (whole) return;
        last = absl::UnavailableError(
            absl::StrCat("sampler replica ", replica, " ended its stream before the shard's end"));
      }
      if (!absl::IsUnavailable(last)) break;
      SPAR_LOG(Warning) << "sampler replica " << replica << " unavailable for shard " << shard
                        << " (" << last.message() << "); moving the rest to the next replica";
    }
    std::lock_guard<std::mutex> lock(mu);
    if (result.ok()) result = last;
    stop = true;
  };

  if (num_shards == 1) {
    run_shard(0);
  } else {
    std::vector<std::thread> threads;
    for (int64_t s = 0; s < num_shards; ++s) threads.emplace_back(run_shard, s);
    for (std::thread& t : threads) t.join();
  }
  return result;
}

}  // namespace spar::orchestrator
