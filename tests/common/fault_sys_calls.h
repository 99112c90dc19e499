// A fault-injecting internal::FileSysCalls for tests: writes to files whose path contains
// `match` (empty: every file) fail with `error` (default ENOSPC) once `budget` bytes have been
// written to such files in total; the write that crosses the budget writes the part that fits
// (a short write, as a filling disk gives) and the next one fails. Install it with
// internal::ScopedFileSysCallsForTesting. Thread-safe.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "common/internal/file_sys_calls.h"

namespace spar::testing {

class FaultSysCalls final : public internal::FileSysCalls {
 public:
  FaultSysCalls(std::string match, size_t budget, int error = ENOSPC)
      : match_(std::move(match)), budget_(budget), error_(error) {}

  int Open(const char* path, int flags, mode_t mode) override {
    const int fd = FileSysCalls::Open(path, flags, mode);
    std::lock_guard<std::mutex> lock(mu_);
    if (fd >= 0 && std::string(path).find(match_) != std::string::npos) faulty_.insert(fd);
    return fd;
  }
  ssize_t Write(int fd, const void* data, size_t size) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (faulty_.count(fd) != 0) {
        if (written_ >= budget_) {
          ++failures_;
          errno = error_;
          return -1;
        }
        size = std::min(size, budget_ - written_);
        written_ += size;
      }
    }
    return FileSysCalls::Write(fd, data, size);
  }
  int Close(int fd) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      faulty_.erase(fd);
    }
    return FileSysCalls::Close(fd);
  }
  // Lets writes through again ("space was freed").
  void Heal() {
    std::lock_guard<std::mutex> lock(mu_);
    budget_ = static_cast<size_t>(-1);
  }
  // Writes refused so far.
  int failures() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

 private:
  const std::string match_;
  mutable std::mutex mu_;
  size_t budget_;
  const int error_;
  size_t written_ = 0;
  int failures_ = 0;
  std::set<int> faulty_;
};

}  // namespace spar::testing
