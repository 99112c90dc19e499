// Who may call the services: the API tokens a deployment accepts, each named per holder with a
// scope (docs/operations.md#tokens-and-scopes). Two sources:
//   * the service token (SPAR_API_TOKEN / _FILE, services/common/api_token.h): the peers' shared
//     token, holder "service", scope admin;
//   * the tokens file the operator manages (SPAR_API_TOKENS_FILE): JSON
//     {"tokens": [{"name": "alice", "scope": "read|submit|admin", "sha256": "<64 hex>"}]}, each
//     entry holding the SHA-256 of a token, never the token (`spar token new` prints both).
// No token at all = auth off (every caller is "anonymous" with scope admin). gRPC-free;
// immutable after Load; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spar::services {

// What a token may do, each scope including the ones before it: read (list, get, watch, usage and
// status), submit (create jobs; cancel and resume one's own), admin (everything: any job, and the
// services' own RPCs).
enum class Scope { kRead = 1, kSubmit = 2, kAdmin = 3 };

const char* ScopeName(Scope scope);
// OK for a holder name of 1..64 of [A-Za-z0-9._@-] other than "service" (the peers' token);
// InvalidArgument naming the rule otherwise.
absl::Status CheckHolderName(const std::string& name);

// "read" | "submit" | "admin"; InvalidArgument otherwise.
absl::StatusOr<Scope> ParseScope(const std::string& name);

// The holder of the token a call carried.
struct Caller {
  std::string name;
  Scope scope = Scope::kRead;
};

class TokenTable {
 public:
  // Auth off.
  TokenTable() = default;
  // `service_token`: "" = none. `tokens_file`: "" = none; InvalidArgument naming the file and the
  // entry for unreadable JSON, unknown keys, a bad name (1..64 of [A-Za-z0-9._@-]), scope or
  // digest, a name used twice ("service" is taken), or a digest listed twice.
  static absl::StatusOr<TokenTable> Load(const std::string& service_token,
                                         const std::string& tokens_file);
  // Load with SPAR_API_TOKENS_FILE as the tokens file.
  static absl::StatusOr<TokenTable> FromEnv(const std::string& service_token);

  bool enabled() const { return !entries_.empty(); }
  // The holder of `token`, comparing its digest with every entry in constant time; nullopt when
  // no entry matches.
  std::optional<Caller> Find(const std::string& token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Caller caller;
    std::string sha256;  // lower-case hex
  };
  std::vector<Entry> entries_;
};

}  // namespace spar::services
