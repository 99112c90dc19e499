// Exceptions do not cross our library boundaries (STYLE.md R4.2): every entry point of model/,
// sampler/ and trainer/ that touches LibTorch runs its body through TorchCall, which turns
// std::bad_alloc and out-of-memory errors into ResourceExhausted and any other c10::Error /
// std::exception into Internal, carrying e.what().
#pragma once

#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace spar::model::internal {

inline absl::Status StatusFromException(const std::exception& e, const char* what) {
  const std::string message = e.what();
  // c10::Error messages can carry a long backtrace; keep the first line(s).
  std::string brief = message.substr(0, message.find("\nException raised from"));
  if (brief.size() > 2000) brief.resize(2000);
  if (absl::StrContains(brief, "out of memory") ||
      absl::StrContains(brief, "DefaultCPUAllocator")) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": ", brief));
  }
  return absl::InternalError(absl::StrCat(what, ": ", brief));
}

// Runs `f` (returning absl::Status or absl::StatusOr<T>) and converts escaping exceptions.
// `what` names the operation for the error message.
template <typename F>
auto TorchCall(const char* what, F&& f) -> decltype(f()) {
  using R = decltype(f());
  static_assert(std::is_convertible_v<absl::Status, R>, "f must return Status or StatusOr");
  try {
    return std::forward<F>(f)();
  } catch (const std::bad_alloc& e) {
    return R(absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory (", e.what(), ")")));
  } catch (const std::exception& e) {
    return R(StatusFromException(e, what));
  } catch (...) {
    return R(absl::InternalError(absl::StrCat(what, ": unknown exception")));
  }
}

}  // namespace spar::model::internal
