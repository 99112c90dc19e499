// Internal to oracle_client: the worker loop behind OracleClient::CompareAll and
// ScoreSideBySideAll.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::oracle::internal {

// Runs job(i) for every i in [0, n) on up to max_concurrency threads and hands each result to
// on_done (calls serialized, in completion order); once `cancelled` is true the remaining items
// get CancelledError(cancel_message) without running.
template <typename T>
void RunConcurrently(size_t n, int max_concurrency, const std::function<bool()>& cancelled,
                     const char* cancel_message,
                     const std::function<absl::StatusOr<T>(size_t)>& job,
                     const std::function<void(size_t, absl::StatusOr<T>)>& on_done) {
  if (n == 0) return;
  std::atomic<size_t> next{0};
  std::mutex callback_mu;
  auto work = [&] {
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= n) return;
      absl::StatusOr<T> r = (cancelled && cancelled())
                                ? absl::StatusOr<T>(absl::CancelledError(cancel_message))
                                : job(i);
      std::lock_guard<std::mutex> lock(callback_mu);
      on_done(i, std::move(r));
    }
  };
  const size_t workers = std::min<size_t>(n, static_cast<size_t>(std::max(1, max_concurrency)));
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
}

}  // namespace spar::oracle::internal
