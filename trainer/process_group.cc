#include "trainer/process_group.h"

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/internal/torch_call.h"
#include "trainer/internal/distributed.h"

namespace spar::trainer {
namespace {

using model::internal::TorchCall;

// Gloo wants a finite timeout; a year stands for "as long as it takes".
std::chrono::milliseconds ToMillis(absl::Duration d) {
  if (d == absl::InfiniteDuration() || d > absl::Hours(24 * 365)) {
    return std::chrono::milliseconds(int64_t{1000} * 3600 * 24 * 365);
  }
  return std::chrono::milliseconds(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

}  // namespace

ProcessGroup::ProcessGroup(std::unique_ptr<internal::Communicator> comm) : comm_(std::move(comm)) {}
ProcessGroup::~ProcessGroup() = default;

absl::StatusOr<std::unique_ptr<ProcessGroup>> ProcessGroup::Create(const DistributedConfig& c) {
  if (c.world_size < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "distributed.world_size must be >= 2 for a process group, got ", c.world_size));
  }
  if (c.rank < 0 || c.rank >= c.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("distributed.rank must be in [0, ", c.world_size, "), got ", c.rank));
  }
  absl::StatusOr<std::unique_ptr<internal::Communicator>> comm = internal::Communicator::Create(c);
  if (!comm.ok()) return comm.status();
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(*comm)));
}

int ProcessGroup::rank() const { return comm_->rank(); }
int ProcessGroup::world_size() const { return comm_->world_size(); }
bool ProcessGroup::healthy() const { return comm_->healthy(); }

absl::Status ProcessGroup::BroadcastFromRank0(std::string* bytes, absl::Duration timeout) {
  if (!comm_->healthy()) return absl::FailedPreconditionError("process group is broken");
  return TorchCall("broadcast", [&]() -> absl::Status {
    const auto ms = ToMillis(timeout);
    const bool root = comm_->rank() == 0;
    // A length, then the bytes.
    torch::Tensor len =
        torch::tensor({root ? static_cast<int64_t>(bytes->size()) : int64_t{0}}, torch::kInt64);
    comm_->Broadcast(len, 0, ms);
    const int64_t n = len.item<int64_t>();
    if (n < 0) return absl::InternalError(absl::StrCat("broadcast: bad length ", n));
    if (n == 0) {
      bytes->clear();
      return absl::OkStatus();
    }
    torch::Tensor data = torch::empty({n}, torch::kUInt8);
    if (root) std::memcpy(data.data_ptr<uint8_t>(), bytes->data(), static_cast<size_t>(n));
    comm_->Broadcast(data, 0, ms);
    if (!root) bytes->assign(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()), n);
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> ProcessGroup::AllReduceSum(int64_t value) {
  if (!comm_->healthy()) return absl::FailedPreconditionError("process group is broken");
  return TorchCall("all-reduce", [&]() -> absl::StatusOr<int64_t> {
    torch::Tensor t = torch::tensor({value}, torch::kInt64);
    comm_->AllReduceSum(t);
    return t.item<int64_t>();
  });
}

}  // namespace spar::trainer
