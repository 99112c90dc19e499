// The audit log: one JSON line per user action on the orchestrator — who (the token's holder and
// scope), what (the RPC and the job), when (UTC), and how it ended (the status code name) —
// including every refused call. Never a token or any other secret. Appended and flushed line by
// line (a crash loses at most the line being written); the file is <runs_dir>/audit.jsonl.
// Thread-safe. gRPC-free.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/token_table.h"

namespace spar::services {

class AuditLog {
 public:
  // Opens `path` for appending (created if absent); InvalidArgument naming it when it cannot be.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // {"time", "who", "scope", "rpc", "job_id" (omitted when ""), "code"}: `code` is the status
  // code's name ("OK", "PERMISSION_DENIED", ...). A write error is logged, never thrown.
  void Record(const Caller& who, const std::string& rpc, const std::string& job_id,
              const std::string& code, absl::Time when);

  const std::string& path() const { return path_; }

 private:
  AuditLog(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  const std::string path_;
  std::mutex mu_;
  std::FILE* file_;  // guarded by mu_
};

}  // namespace spar::services
