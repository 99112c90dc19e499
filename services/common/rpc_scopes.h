// The one table of who may call what (docs/operations.md#tokens-and-scopes): the least scope
// each of the 16 RPCs needs, by method name, and which of them act on one job that a submit-scoped
// caller must own. gRPC-free.
#pragma once

#include <string>
#include <vector>

#include "services/common/token_table.h"

namespace spar::services {

struct RpcRule {
  Scope least = Scope::kAdmin;
  // Acts on one job: a caller below admin must be the job's owner (CancelJob, ResumeJob).
  bool own_job_only = false;
};

// The rule of `method` (e.g. "CreateJob", "Generate"); an unknown method needs admin.
RpcRule RuleOf(const std::string& method);

// Every RPC of the four services, in proto order (tests walk it).
const std::vector<std::string>& AllRpcs();

}  // namespace spar::services
