// gMock matchers for absl::Status and absl::StatusOr<T>, so a test states a refusal in one line and
// a failure prints the whole status:
//   EXPECT_THAT(ParseJobSpecJson("{"), StatusIs(absl::StatusCode::kInvalidArgument));
//   EXPECT_THAT(Policy::Load(dir), StatusIs(kNotFound, HasSubstr("config.json")));
//   ASSERT_THAT(WriteFile(path, text), IsOk());
// The message matcher sees the message as a std::string. Header-only; torch- and gRPC-free.
#pragma once

#include <gmock/gmock.h>

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::testing {
namespace internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }

template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Matches a status (or a StatusOr's status) whose code is `code` and whose message `message`
// matches. Polymorphic: gMock instantiates MatchAndExplain for the argument's type.
class StatusIsMatcher {
 public:
  StatusIsMatcher(absl::StatusCode code, ::testing::Matcher<const std::string&> message)
      : code_(code), message_(std::move(message)) {}

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& value, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = StatusOf(value);
    *listener << "which is " << status;
    if (status.code() != code_) return false;
    ::testing::StringMatchResultListener inner;
    if (message_.MatchAndExplain(std::string(status.message()), &inner)) return true;
    if (!inner.str().empty()) *listener << ", and its message " << inner.str();
    return false;
  }

  void DescribeTo(std::ostream* os) const {
    *os << "has code " << absl::StatusCodeToString(code_) << " and a message that ";
    message_.DescribeTo(os);
  }

  void DescribeNegationTo(std::ostream* os) const {
    *os << "has a code other than " << absl::StatusCodeToString(code_)
        << " or a message that does not match (";
    message_.DescribeTo(os);
    *os << ")";
  }

 private:
  absl::StatusCode code_;
  ::testing::Matcher<const std::string&> message_;
};

}  // namespace internal

// The status has `code` and a message matching `message` (any message when left out).
inline ::testing::PolymorphicMatcher<internal::StatusIsMatcher> StatusIs(
    absl::StatusCode code,
    ::testing::Matcher<const std::string&> message = ::testing::A<const std::string&>()) {
  return ::testing::MakePolymorphicMatcher(internal::StatusIsMatcher(code, std::move(message)));
}

// The status is OK (a StatusOr holds a value); a failure prints the error.
inline ::testing::PolymorphicMatcher<internal::StatusIsMatcher> IsOk() {
  return StatusIs(absl::StatusCode::kOk);
}

}  // namespace spar::testing
