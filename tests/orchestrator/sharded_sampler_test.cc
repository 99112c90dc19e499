// ShardedSamplerPort over in-process replicas that honour first_index the way the sampler
// service does (a sample depends on the seed and the global prompt index only): shards are
// contiguous and parallel, the merged results equal one replica's, and a replica failing with
// UNAVAILABLE (before or mid-shard) hands the rest of its shard to another one. Injected faults
// only; the real services are covered by tests/services (two sampler replicas on loopback).
#include "orchestrator/sharded_sampler.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

class FakeReplica : public SamplerPort {
 public:
  absl::Status Generate(const v1::GenerateRequest& req,
                        const std::function<absl::Status(const v1::GenerateResponse&)>& cb,
                        const CancelCheck& /*cancelled*/) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back({req.first_index(), req.prompts_size()});
      if (down) return absl::UnavailableError("replica down");
    }
    for (int i = 0; i < req.prompts_size(); ++i) {
      if (fail_after >= 0 && i >= fail_after) return absl::UnavailableError("replica killed");
      const int64_t global = req.first_index() + i;
      v1::GenerateResponse r;
      r.set_index(global);
      r.set_prompt(req.prompts(i));
      for (int j = 0; j < req.params().num_samples(); ++j) {
        r.add_samples()->set_text(
            absl::StrCat(req.prompts(i), "#", req.params().seed(), ":", global, ":", j));
      }
      absl::Status st = cb(r);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  std::mutex mu;
  std::vector<std::pair<int64_t, int>> calls;  // (first_index, prompts)
  bool down = false;
  int fail_after = -1;  // >= 0: UNAVAILABLE after delivering this many prompts
};

v1::GenerateRequest Request(int n) {
  v1::GenerateRequest req;
  req.set_policy("p");
  for (int i = 0; i < n; ++i) req.add_prompts(absl::StrCat("prompt-", i));
  req.mutable_params()->set_num_samples(2);
  req.mutable_params()->set_seed(9);
  req.set_idempotency_key("job/iter_001/sample");
  return req;
}

std::map<int64_t, std::string> Collect(SamplerPort& port, const v1::GenerateRequest& req,
                                       absl::Status* st) {
  std::map<int64_t, std::string> out;
  *st = port.Generate(
      req,
      [&](const v1::GenerateResponse& r) {
        EXPECT_EQ(out.count(r.index()), 0u) << "index " << r.index() << " delivered twice";
        out[r.index()] = r.samples(0).text() + "|" + r.samples(1).text();
        return absl::OkStatus();
      },
      nullptr);
  return out;
}

TEST(ShardedSamplerTest, ContiguousShardsMergeToWhatOneReplicaDraws) {
  FakeReplica one;
  ShardedSamplerPort single({&one});
  absl::Status st;
  auto want = Collect(single, Request(10), &st);
  ASSERT_THAT(st, IsOk());
  ASSERT_EQ(want.size(), 10u);

  FakeReplica a, b, c;
  ShardedSamplerPort sharded({&a, &b, &c});
  auto got = Collect(sharded, Request(10), &st);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(got, want);
  // 10 prompts over 3 replicas: [0,3) [3,6) [6,10).
  ASSERT_EQ(a.calls.size(), 1u);
  ASSERT_EQ(b.calls.size(), 1u);
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(a.calls[0], std::make_pair(int64_t{0}, 3));
  EXPECT_EQ(b.calls[0], std::make_pair(int64_t{3}, 3));
  EXPECT_EQ(c.calls[0], std::make_pair(int64_t{6}, 4));
}

TEST(ShardedSamplerTest, ShardsFollowTheReplicasBatchBoundaries) {
  FakeReplica a, b;
  // max_batch_size 6 rows, K = 2: batches of 3 prompts at global indices 0, 3, 6, 9.
  ShardedSamplerPort sharded({&a, &b}, /*replica_max_batch_size=*/6);
  absl::Status st;
  auto got = Collect(sharded, Request(10), &st);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(got.size(), 10u);
  ASSERT_EQ(a.calls.size(), 1u);
  ASSERT_EQ(b.calls.size(), 1u);
  EXPECT_EQ(a.calls[0], std::make_pair(int64_t{0}, 6));
  EXPECT_EQ(b.calls[0], std::make_pair(int64_t{6}, 4));
  // Fewer prompts than one batch: one shard.
  FakeReplica c, d;
  ShardedSamplerPort one_batch({&c, &d}, 64);
  Collect(one_batch, Request(10), &st);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(c.calls.size() + d.calls.size(), 1u);
}

TEST(ShardedSamplerTest, FewerPromptsThanReplicasUsesOneShardPerPrompt) {
  FakeReplica a, b, c;
  ShardedSamplerPort sharded({&a, &b, &c});
  absl::Status st;
  auto got = Collect(sharded, Request(2), &st);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(a.calls.size() + b.calls.size() + c.calls.size(), 2u);
  EXPECT_TRUE(c.calls.empty());
}

TEST(ShardedSamplerTest, AReplicaDownHandsItsShardToAnother) {
  FakeReplica one;
  ShardedSamplerPort single({&one});
  absl::Status st;
  auto want = Collect(single, Request(8), &st);

  FakeReplica a, b;
  b.down = true;
  ShardedSamplerPort sharded({&a, &b});
  auto got = Collect(sharded, Request(8), &st);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(got, want);
  // a sampled its own shard [0,4) and then b's [4,8).
  ASSERT_EQ(a.calls.size(), 2u);
}

TEST(ShardedSamplerTest, AReplicaKilledMidShardResumesAtItsFirstUndeliveredPrompt) {
  FakeReplica one;
  ShardedSamplerPort single({&one});
  absl::Status st;
  auto want = Collect(single, Request(8), &st);

  FakeReplica a, b;
  a.fail_after = 1;  // a delivers prompt 0 of [0,4), then dies
  ShardedSamplerPort sharded({&a, &b});
  auto got = Collect(sharded, Request(8), &st);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(got, want);
  std::lock_guard<std::mutex> lock(b.mu);
  bool resumed = false;
  for (const auto& [first, n] : b.calls) resumed |= first == 1 && n == 3;
  EXPECT_TRUE(resumed) << "b did not get prompts [1,4)";
}

TEST(ShardedSamplerTest, EveryReplicaDownIsUnavailable) {
  FakeReplica a, b;
  a.down = b.down = true;
  ShardedSamplerPort sharded({&a, &b});
  absl::Status st;
  Collect(sharded, Request(4), &st);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ShardedSamplerTest, ACallbackErrorStopsEveryShard) {
  FakeReplica a, b;
  ShardedSamplerPort sharded({&a, &b});
  int seen = 0;
  absl::Status st = sharded.Generate(
      Request(8),
      [&](const v1::GenerateResponse&) {
        return ++seen == 2 ? absl::CancelledError("job cancelled") : absl::OkStatus();
      },
      nullptr);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LE(seen, 3);
}

}  // namespace
}  // namespace spar::orchestrator
