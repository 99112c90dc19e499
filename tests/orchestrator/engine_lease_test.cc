// The engine lease (orchestrator/internal/engine_lease.h): one policy on an engine at a time,
// shared by callers of that policy, in arrival order. Waits are observed through waiting() /
// holding(), never by sleeping.
#include "orchestrator/internal/engine_lease.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>

namespace spar::orchestrator::internal {
namespace {

// Spins (yielding) until `done` holds; the lease's own state is what the tests wait on.
template <typename F>
void WaitUntil(F done) {
  while (!done()) std::this_thread::yield();
}

TEST(EngineLeaseTest, AnotherPolicyWaitsUntilTheHolderIsDone) {
  EngineLease lease;
  std::optional<EngineLease::Holder> a(*lease.Acquire("/models/job-a/iter_001", nullptr));
  std::atomic<bool> b_in{false};
  std::thread b([&] {
    auto h = lease.Acquire("/models/job-b/iter_001", nullptr);
    ASSERT_TRUE(h.ok());
    b_in = true;
  });
  WaitUntil([&] { return lease.waiting() == 1; });
  EXPECT_FALSE(b_in.load());  // job a's policy is on the engine
  EXPECT_EQ(lease.holding(), 1);
  a.reset();
  b.join();
  EXPECT_TRUE(b_in.load());
  EXPECT_EQ(lease.holding(), 0);
  EXPECT_EQ(lease.waiting(), 0);
}

TEST(EngineLeaseTest, CallersOfTheServingPolicyShareIt) {
  EngineLease lease;
  auto a1 = lease.Acquire("/models/base", nullptr);
  auto a2 = lease.Acquire("/models/base", nullptr);  // would deadlock if it had to wait
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(lease.holding(), 2);
}

// No starvation: once another policy waits, a newcomer of the serving policy queues behind it.
TEST(EngineLeaseTest, ArrivalOrderIsKeptAcrossPolicies) {
  EngineLease lease;
  std::optional<EngineLease::Holder> a(*lease.Acquire("A", nullptr));
  std::vector<std::string> order;
  std::mutex mu;
  auto take = [&](const std::string& policy) {
    auto h = lease.Acquire(policy, nullptr);
    ASSERT_TRUE(h.ok());
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(policy);
  };
  std::thread b([&] { take("B"); });
  WaitUntil([&] { return lease.waiting() == 1; });
  std::thread a2([&] { take("A"); });
  WaitUntil([&] { return lease.waiting() == 2; });
  EXPECT_EQ(lease.holding(), 1);  // the second A did not slip in beside the first
  a.reset();
  b.join();
  a2.join();
  EXPECT_EQ(order, (std::vector<std::string>{"B", "A"}));
}

TEST(EngineLeaseTest, AWaitingCallerThatIsCancelledLeavesTheQueue) {
  EngineLease lease;
  auto a = lease.Acquire("A", nullptr);
  ASSERT_TRUE(a.ok());
  std::atomic<bool> cancel{false};
  absl::Status got;
  std::thread b([&] { got = lease.Acquire("B", [&] { return cancel.load(); }).status(); });
  WaitUntil([&] { return lease.waiting() == 1; });
  cancel = true;
  b.join();
  EXPECT_EQ(got.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(lease.waiting(), 0);
  EXPECT_EQ(lease.holding(), 1);
}

}  // namespace
}  // namespace spar::orchestrator::internal
