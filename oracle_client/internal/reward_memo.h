// Internal to oracle_client: the rewards a reward-model oracle has received, kept in memory when
// the client has no judgment cache file, so that a response met in many comparisons (every pair
// of a prompt's K samples) is scored once per process, not once per comparison. Bounded: the
// oldest entries are dropped past `capacity`. Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace spar::oracle::internal {

class RewardMemo {
 public:
  explicit RewardMemo(size_t capacity = size_t{1} << 16) : capacity_(capacity) {}

  std::optional<double> Get(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = rewards_.find(key);
    if (it == rewards_.end()) return std::nullopt;
    return it->second;
  }

  void Put(const std::string& key, double reward) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!rewards_.emplace(key, reward).second) return;
    order_.push_back(key);
    while (order_.size() > capacity_) {
      rewards_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, double> rewards_;
  std::deque<std::string> order_;  // insertion order, for eviction
};

}  // namespace spar::oracle::internal
