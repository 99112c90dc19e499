// c10d data-parallel group over Gloo (CPU): a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT
// (rank 0 hosts it) and a ProcessGroupGloo; on CUDA builds with a GPU also a ProcessGroupNCCL for
// the gradients. Private to trainer/. The c10d headers stay in
// distributed.cc (they need USE_C10D_GLOO and gloo's headers).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/trainer.h"

namespace spar::trainer::internal {

class Communicator {
 public:
  virtual ~Communicator() = default;
  // Joins the group described by `config` (world_size >= 2). Internal (carrying c10d's message)
  // when the rendezvous fails or times out.
  static absl::StatusOr<std::unique_ptr<Communicator>> Create(const DistributedConfig& config);

  // In-place sum over all ranks (CPU tensor, contiguous). Throws c10::Error on failure (and
  // marks the communicator broken).
  virtual void AllReduceSum(torch::Tensor& tensor) = 0;
  // In place: `root`'s tensor is copied to every rank (same shape and dtype everywhere).
  // timeout < 0: the group's default collective timeout.
  virtual void Broadcast(torch::Tensor& tensor, int root, std::chrono::milliseconds timeout) = 0;
  virtual void Barrier() = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Where gradient all-reduces run: CUDA over ProcessGroupNCCL on CUDA builds (USE_C10D_NCCL)
  // with a visible GPU, CPU over Gloo otherwise. AllReduceSum picks the group by the tensor's
  // device; the other collectives (agreements, control messages) always use Gloo on CPU.
  virtual torch::Device gradient_device() const { return torch::Device(torch::kCPU); }

  // False after a collective threw, or after MarkBroken: ranks may disagree on where they are in
  // the collective sequence, so the group must not be used again.
  bool healthy() const { return healthy_.load(); }
  void MarkBroken() { healthy_.store(false); }

 private:
  std::atomic<bool> healthy_{true};
};

// How many ranks of the group pass `flag` = true: a sum all-reduce of one float64, so every rank
// calls it at the same point of the collective sequence. Throws c10::Error like AllReduceSum.
double CountRanks(Communicator& comm, bool flag);

// "Every rank agrees": each rank learns whether any rank's `local` failed (CountRanks under
// TorchCall(what)), so that all ranks leave or go on together and the group stays in step.
// Returns the collective's own error when it failed; Internal(others_failed(n)) when `local` is
// OK and n other ranks failed; `local` otherwise. Without a group (comm == nullptr): `local`.
absl::Status AgreeAll(Communicator* comm, const absl::Status& local, const char* what,
                      const std::function<std::string(double)>& others_failed);

}  // namespace spar::trainer::internal
