#include "trainer/internal/distributed.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/str_cat.h"
#include "model/internal/torch_call.h"

namespace spar::trainer::internal {
namespace {

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store,
                   c10::intrusive_ptr<c10d::ProcessGroupGloo> group, int rank, int world_size)
      : store_(std::move(store)), group_(std::move(group)), rank_(rank), world_size_(world_size) {}

  void AllReduceSum(torch::Tensor& tensor) override {
    Guarded([&] {
      std::vector<torch::Tensor> tensors = {tensor};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
#ifdef USE_C10D_NCCL
      if (tensor.is_cuda() && nccl_) {
        nccl_->allreduce(tensors, opts)->wait();
        return;
      }
#endif
      group_->allreduce(tensors, opts)->wait();
    });
  }
#ifdef USE_C10D_NCCL
  void SetNccl(c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl) { nccl_ = std::move(nccl); }
  torch::Device gradient_device() const override {
    return nccl_ ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
#endif
  void Broadcast(torch::Tensor& tensor, int root, std::chrono::milliseconds timeout) override {
    Guarded([&] {
      std::vector<torch::Tensor> tensors = {tensor};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      if (timeout.count() >= 0) opts.timeout = timeout;
      group_->broadcast(tensors, opts)->wait();
    });
  }
  void Barrier() override {
    Guarded([&] { group_->barrier()->wait(); });
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

 private:
  // A throwing collective leaves the ranks out of step: mark the group broken, then rethrow.
  template <typename F>
  void Guarded(F&& f) {
    try {
      f();
    } catch (...) {
      MarkBroken();
      throw;
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;  // gradients on CUDA; null on CPU
#endif
  int rank_, world_size_;
};

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> Communicator::Create(const DistributedConfig& c) {
  return model::internal::TorchCall(
      "distributed rendezvous", [&]() -> absl::StatusOr<std::unique_ptr<Communicator>> {
        const auto timeout = std::chrono::milliseconds(1000LL * c.timeout_seconds);
        c10d::TCPStoreOptions opts;
        opts.port = static_cast<std::uint16_t>(c.master_port);
        opts.isServer = c.rank == 0;
        opts.numWorkers = static_cast<std::size_t>(c.world_size);
        opts.waitWorkers = true;
        opts.timeout = timeout;
        auto tcp = c10::make_intrusive<c10d::TCPStore>(c.master_addr, opts);
        auto store = c10::make_intrusive<c10d::PrefixStore>("spar_trainer", tcp);
        auto options = c10d::ProcessGroupGloo::Options::create(timeout);
        if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        } else if (IsLoopback(c.master_addr)) {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        } else {
          options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        options->threads = 2;
        auto group =
            c10::make_intrusive<c10d::ProcessGroupGloo>(store, c.rank, c.world_size, options);
        auto comm = std::make_unique<GlooCommunicator>(store, group, c.rank, c.world_size);
#ifdef USE_C10D_NCCL
        // The policy trains on cuda:0 (model::internal::DefaultDevice; one visible GPU per rank,
        // e.g. CUDA_VISIBLE_DEVICES=$LOCAL_RANK).
        if (torch::cuda::is_available()) {
          auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
          nccl_options->timeout = timeout;
          comm->SetNccl(c10::make_intrusive<c10d::ProcessGroupNCCL>(
              c10::make_intrusive<c10d::PrefixStore>("spar_trainer_nccl", tcp), c.rank,
              c.world_size, nccl_options));
        }
#endif
        return std::unique_ptr<Communicator>(std::move(comm));
      });
}

double CountRanks(Communicator& comm, bool flag) {
  torch::Tensor t = torch::tensor({flag ? 1.0 : 0.0}, torch::kFloat64);
  comm.AllReduceSum(t);
  return t.item<double>();
}

absl::Status AgreeAll(Communicator* comm, const absl::Status& local, const char* what,
                      const std::function<std::string(double)>& others_failed) {
  if (comm == nullptr) return local;
  absl::StatusOr<double> failed = model::internal::TorchCall(
      what, [&]() -> absl::StatusOr<double> { return CountRanks(*comm, !local.ok()); });
  if (!failed.ok()) return failed.status();
  if (local.ok() && *failed > 0) return absl::InternalError(others_failed(*failed));
  return local;
}

}  // namespace spar::trainer::internal
