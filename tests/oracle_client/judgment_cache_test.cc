#include "oracle_client/judgment_cache.h"

#include <stdlib.h>

#include <thread>
#include <vector>

#include "common/file_util.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::oracle {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

class JudgmentCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_cache_test_XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = JoinPath(dir_, "judgments.sqlite");
  }
  void TearDown() override { RemoveAll(dir_).IgnoreError(); }
  std::string dir_, path_;
};

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
  EXPECT_NE(Sha256HexOfFields({"ab", "c"}), Sha256HexOfFields({"a", "bc"}));
}

TEST_F(JudgmentCacheTest, KeyCoversEveryFieldAndCanonicalisesOrder) {
  CacheKeyFields f{"m", "t", "p", "a", "b", JudgeOrder::kAB};
  const std::string k = JudgmentCache::Key(f);
  EXPECT_EQ(k.size(), 64u);
  for (auto mutate : std::vector<void (*)(CacheKeyFields&)>{
           [](CacheKeyFields& x) { x.model = "m2"; },
           [](CacheKeyFields& x) { x.template_id = "t2"; },
           [](CacheKeyFields& x) { x.prompt = "p2"; },
           [](CacheKeyFields& x) { x.response_a = "a2"; },
           [](CacheKeyFields& x) { x.response_b = "b2"; },
           [](CacheKeyFields& x) { x.order = JudgeOrder::kBA; }}) {
    CacheKeyFields g = f;
    mutate(g);
    EXPECT_NE(JudgmentCache::Key(g), k);
  }
  // (a, b) asked in order BA is the same request as (b, a) asked in order AB.
  EXPECT_EQ(JudgmentCache::Key({"m", "t", "p", "a", "b", JudgeOrder::kBA}),
            JudgmentCache::Key({"m", "t", "p", "b", "a", JudgeOrder::kAB}));
}

TEST_F(JudgmentCacheTest, PutGetSurvivesReopen) {
  {
    auto cache = JudgmentCache::Open(path_);
    ASSERT_THAT(cache, IsOk());
    EXPECT_FALSE((*cache)->Get("k1")->has_value());
    ASSERT_TRUE((*cache)->Put("k1", {0.25, "B", 120, 1}).ok());
    EXPECT_EQ(*(*cache)->Size(), 1);
  }
  auto cache = JudgmentCache::Open(path_);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<std::optional<CachedAnswer>> got = (*cache)->Get("k1");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_DOUBLE_EQ((*got)->value, 0.25);
  EXPECT_EQ((*got)->verdict_text, "B");
  EXPECT_EQ((*got)->prompt_tokens, 120);
  EXPECT_EQ((*got)->completion_tokens, 1);
}

TEST_F(JudgmentCacheTest, ConcurrentWritersOnOneFile) {
  auto a = JudgmentCache::Open(path_);
  auto b = JudgmentCache::Open(path_);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      JudgmentCache& c = t % 2 == 0 ? **a : **b;
      for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(c.Put(std::to_string(t * 1000 + i), {0.5, "A", 1, 1}).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(*(*a)->Size(), 200);
  EXPECT_TRUE((*b)->Get("3049")->has_value());
}

TEST_F(JudgmentCacheTest, OpenErrorsNameThePath) {
  EXPECT_THAT(JudgmentCache::Open(""), StatusIs(absl::StatusCode::kInvalidArgument));
  absl::Status st = JudgmentCache::Open("/nonexistent/dir/x.sqlite").status();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(st.message().find("/nonexistent/dir/x.sqlite"), absl::string_view::npos);
}

TEST_F(JudgmentCacheTest, UsageChargesAddUpPerRoundAndSurviveReopening) {
  {
    auto cache = JudgmentCache::Open(path_);
    ASSERT_THAT(cache, IsOk());
    UsageCharge c{"job-1", 1, 1, 100, 1, 0.25};
    // An answer and its charge in one transaction; a charge without an answer; another round.
    ASSERT_TRUE((*cache)->Put("k1", CachedAnswer{0.9, "A", 100, 1}, &c).ok());
    ASSERT_TRUE((*cache)->Charge(c).ok());
    ASSERT_TRUE((*cache)->Charge(UsageCharge{"job-1", 2, 1, 50, 0, 0.125}).ok());
    ASSERT_TRUE((*cache)->Charge(UsageCharge{"job-2", 1, 3, 0, 0, 0}).ok());
    // Without a charge Put stores the answer only.
    ASSERT_TRUE((*cache)->Put("k2", CachedAnswer{0.1, "B", 7, 1}).ok());
  }
  auto cache = JudgmentCache::Open(path_);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(*(*cache)->Size(), 2);
  absl::StatusOr<std::vector<RoundUsage>> rows = (*cache)->JobUsage("job-1");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].round, 1);
  EXPECT_EQ((*rows)[0].calls, 2);
  EXPECT_EQ((*rows)[0].prompt_tokens, 200);
  EXPECT_EQ((*rows)[0].completion_tokens, 2);
  EXPECT_DOUBLE_EQ((*rows)[0].cost_usd, 0.5);
  EXPECT_EQ((*rows)[1].round, 2);
  EXPECT_EQ((*rows)[1].calls, 1);
  EXPECT_DOUBLE_EQ((*rows)[1].cost_usd, 0.125);
  EXPECT_EQ((*cache)->JobUsage("job-2")->at(0).calls, 3);
  EXPECT_TRUE((*cache)->JobUsage("nobody")->empty());
}

}  // namespace
}  // namespace spar::oracle

namespace spar::oracle {
namespace {

// Leases (issue #12 item 11): one owner at a time per key, an answered key needs no lease, an
// expired lease is taken over, release and extend touch only the owner's own lease.
TEST_F(JudgmentCacheTest, LeasesGiveOneOwnerPerKeyAndExpire) {
  absl::StatusOr<std::unique_ptr<JudgmentCache>> a = JudgmentCache::Open(path_);
  absl::StatusOr<std::unique_ptr<JudgmentCache>> b = JudgmentCache::Open(path_);  // 2nd connection
  ASSERT_TRUE(a.ok() && b.ok());
  using Lease = JudgmentCache::Lease;
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  const std::string key = JudgmentCache::Key({"m", "t", "p", "a", "b", JudgeOrder::kAB});
  EXPECT_EQ(*(*a)->ClaimLease(key, "A", t0, t0 + absl::Seconds(10)), Lease::kAcquired);
  EXPECT_EQ(*(*a)->ClaimLease(key, "A", t0, t0 + absl::Seconds(10)), Lease::kAcquired);  // own
  EXPECT_EQ(*(*b)->ClaimLease(key, "B", t0 + absl::Seconds(9), t0 + absl::Seconds(20)),
            Lease::kHeld);
  ASSERT_TRUE((*b)->ReleaseLease(key, "B").ok());                      // not B's: no effect
  EXPECT_FALSE(*(*b)->ExtendLease(key, "B", t0 + absl::Seconds(99)));  // not B's either
  EXPECT_EQ(*(*b)->ClaimLease(key, "B", t0 + absl::Seconds(9), t0 + absl::Seconds(20)),
            Lease::kHeld);
  EXPECT_TRUE(*(*a)->ExtendLease(key, "A", t0 + absl::Seconds(30)));
  EXPECT_EQ(*(*b)->ClaimLease(key, "B", t0 + absl::Seconds(29), t0 + absl::Seconds(40)),
            Lease::kHeld);
  // A died: its lease expires and B takes the key over.
  EXPECT_EQ(*(*b)->ClaimLease(key, "B", t0 + absl::Seconds(31), t0 + absl::Seconds(40)),
            Lease::kAcquired);
  std::string holder;
  EXPECT_EQ(*(*a)->ClaimLease(key, "A", t0 + absl::Seconds(32), t0 + absl::Seconds(40), &holder),
            Lease::kHeld);
  EXPECT_EQ(holder, "B");
  EXPECT_FALSE(*(*a)->ExtendLease(key, "A", t0 + absl::Seconds(50)));  // A lost it
  ASSERT_TRUE((*b)->Put(key, CachedAnswer{0.9, "A", 1, 1}).ok());
  ASSERT_TRUE((*b)->ReleaseLease(key, "B").ok());
  EXPECT_EQ(*(*a)->ClaimLease(key, "A", t0 + absl::Seconds(33), t0 + absl::Seconds(40)),
            Lease::kAnswered);
}

}  // namespace
}  // namespace spar::oracle
