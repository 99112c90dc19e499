#include "services/common/audit_log.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace spar::services {

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("audit log ", path, ": cannot open for appending: ", std::strerror(errno)));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, f));
}

AuditLog::~AuditLog() { std::fclose(file_); }

void AuditLog::Record(const Caller& who, const std::string& rpc, const std::string& job_id,
                      const std::string& code, absl::Time when) {
  nlohmann::json line = {
      {"time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", when, absl::UTCTimeZone())},
      {"who", who.name},
      {"scope", ScopeName(who.scope)},
      {"rpc", rpc},
      {"code", code}};
  if (!job_id.empty()) line["job_id"] = job_id;
  const std::string text = DumpJson(line) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
    SPAR_LOG(Error) << "audit log " << path_ << ": write failed: " << std::strerror(errno);
  }
}

}  // namespace spar::services
