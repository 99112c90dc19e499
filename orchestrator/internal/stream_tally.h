// Internal to orchestrator/: the results of one streamed call (a sampler's GenerateResponse, an
// oracle's Judgment or ScoreResult), one per request entry, by index. Receive checks that an
// index is in range and new and counts it; CheckWhole says whether every entry came back. Not
// thread-safe: one per call, used from the call's callback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace spar::orchestrator::internal {

class StreamTally {
 public:
  // `source` streams the results ("oracle", "sampler"); `index_name` is what an index names in
  // errors ("index", "score index").
  StreamTally(size_t expected, std::string source, std::string index_name = "index")
      : seen_(expected, false), source_(std::move(source)), index_name_(std::move(index_name)) {}

  // InternalError "<source> returned <index_name> <index> twice or out of range" (the stream
  // is broken: stop the call), else counts the index.
  absl::Status Receive(int64_t index) {
    if (index < 0 || index >= static_cast<int64_t>(seen_.size()) || seen_[index]) {
      return absl::InternalError(
          absl::StrCat(source_, " returned ", index_name_, " ", index, " twice or out of range"));
    }
    seen_[index] = true;
    ++received_;
    return absl::OkStatus();
  }

  size_t received() const { return received_; }
  size_t expected() const { return seen_.size(); }
  bool whole() const { return received_ == seen_.size(); }
  // True for every `every`-th result and the last one (when to report progress).
  bool ProgressDue(size_t every) const { return received_ % every == 0 || whole(); }

  // UnavailableError "<source> returned <received> of <expected> <items>" when the stream ended
  // early (the stage is re-run), else OK.
  absl::Status CheckWhole(absl::string_view items) const {
    if (whole()) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrFormat("%s returned %d of %d %s", source_, received_, seen_.size(), items));
  }

 private:
  std::vector<bool> seen_;
  size_t received_ = 0;
  std::string source_;
  std::string index_name_;
};

}  // namespace spar::orchestrator::internal
