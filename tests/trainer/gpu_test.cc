// bf16 autocast on CUDA (label gpu; skipped without a CUDA device): a DPO run with
// mixed_precision "bf16" trains (finite loss, weights move) and ends close to the float32 run of
// the same request, and activation checkpointing under autocast matches it too. A one-rank c10d
// group all-reduces CUDA tensors over NCCL (what multi-rank training uses for gradients).
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"
#include "tests/trainer/toy_data.h"
#include "trainer/internal/distributed.h"
#include "trainer/trainer.h"

namespace spar::trainer {
namespace {

using ::spar::testing::IsOk;

double MaxDiff(const std::string& a, const std::string& b) {
  auto pa = model::Policy::Load(a);
  auto pb = model::Policy::Load(b);
  EXPECT_TRUE(pa.ok() && pb.ok());
  if (!pa.ok() || !pb.ok()) return INFINITY;
  auto na = (*pa)->impl().module->named_parameters();
  auto nb = (*pb)->impl().module->named_parameters();
  double d = 0;
  for (const auto& item : na) {
    d = std::max(d, (item.value() - nb[item.key()]).abs().max().item<double>());
  }
  return d;
}

TEST(Bf16GpuTest, Bf16RunIsCloseToFloat32) {
  auto init = model::Policy::CreateRandom(testing::TinyConfig(), 51);
  ASSERT_TRUE(init.ok());
  if (!(*init)->impl().device.is_cuda()) GTEST_SKIP() << "no CUDA device";
  const std::string root =
      JoinPath(::testing::TempDir(), absl::StrCat("spar_bf16_gpu_", ::getpid()));
  ASSERT_TRUE(RemoveAll(root).ok());
  ASSERT_TRUE((*init)->Save(JoinPath(root, "init")).ok());
  TrainConfig c = testing::ResumableConfig();
  c.save_every_steps = 0;
  ASSERT_TRUE(
      TrainDpo(JoinPath(root, "init"), testing::ToyPairs(), c, JoinPath(root, "fp32")).ok());
  c.mixed_precision = "bf16";
  absl::StatusOr<TrainResult> r =
      TrainDpo(JoinPath(root, "init"), testing::ToyPairs(), c, JoinPath(root, "bf16"));
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(std::isfinite(r->final_loss));
  c.gradient_checkpointing = true;
  ASSERT_TRUE(
      TrainDpo(JoinPath(root, "init"), testing::ToyPairs(), c, JoinPath(root, "bf16_ckpt")).ok());
  // 6 AdamW steps of lr 1e-3 move each weight by up to ~6e-3; bf16 forward noise changes the
  // step directions a little, not the scale.
  EXPECT_GT(MaxDiff(JoinPath(root, "init"), JoinPath(root, "bf16")), 1e-3);
  EXPECT_LT(MaxDiff(JoinPath(root, "fp32"), JoinPath(root, "bf16")), 5e-3);
  EXPECT_LT(MaxDiff(JoinPath(root, "bf16"), JoinPath(root, "bf16_ckpt")), 1e-4);
  RemoveAll(root).IgnoreError();
}

TEST(NcclGpuTest, OneRankGroupAllReducesOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  DistributedConfig c;
  c.world_size = 1;
  c.master_port = 0;  // the TCPStore server picks a free port
  c.timeout_seconds = 60;
  auto comm = internal::Communicator::Create(c);
  ASSERT_THAT(comm, IsOk());
  ASSERT_TRUE((*comm)->gradient_device().is_cuda()) << "LibTorch built without c10d NCCL";
  torch::Tensor t = torch::arange(8, torch::dtype(torch::kFloat32).device(torch::kCUDA));
  (*comm)->AllReduceSum(t);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::arange(8, torch::kFloat32)));
  (*comm)->Barrier();
  EXPECT_TRUE((*comm)->healthy());
}

}  // namespace
}  // namespace spar::trainer
