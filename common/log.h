// Minimal leveled logging to stderr (Debian 12's Abseil has no absl/log) and invariant checks.
// Thread-safe: each message is written with one call under a mutex.
#pragma once

#include <sstream>
#include <string>

namespace spar {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Messages below this level are dropped. Default kInfo; SPAR_LOG_LEVEL=debug|info|warning|error.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

namespace internal {
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
struct LogVoidify {
  void operator&(std::ostream&) {}
};
}  // namespace internal
}  // namespace spar

#define SPAR_LOG(level)                                \
  (::spar::LogLevel::k##level < ::spar::MinLogLevel()) \
      ? (void)0                                        \
      : ::spar::internal::LogVoidify() &               \
            ::spar::internal::LogMessage(::spar::LogLevel::k##level, __FILE__, __LINE__).stream()

#define SPAR_CHECK(cond)                                                                           \
  (cond) ? (void)0                                                                                 \
         : ::spar::internal::LogVoidify() &                                                        \
               ::spar::internal::LogMessage(::spar::LogLevel::kFatal, __FILE__, __LINE__).stream() \
                   << "Check failed: " #cond " "

#ifndef NDEBUG
#define SPAR_DCHECK(cond) SPAR_CHECK(cond)
#else
#define SPAR_DCHECK(cond) \
  while (false) SPAR_CHECK(cond)
#endif
