#include "services/common/rpc_scopes.h"

#include <vector>

namespace spar::services {
namespace {

struct Named {
  const char* method;
  RpcRule rule;
};

// Users read and submit through the orchestrator; the peers' RPCs (sampling, judging, training)
// are the services' own (the service token is admin), their read-only status and usage RPCs
// open to read.
const std::vector<Named>& Table() {
  static const std::vector<Named> kTable = {
      {"CreateJob", {Scope::kSubmit, false}},   {"GetJob", {Scope::kRead, false}},
      {"ListJobs", {Scope::kRead, false}},      {"CancelJob", {Scope::kSubmit, true}},
      {"ResumeJob", {Scope::kSubmit, true}},    {"WatchJob", {Scope::kRead, false}},
      {"DeleteJob", {Scope::kAdmin, false}},    {"Compare", {Scope::kAdmin, false}},
      {"Score", {Scope::kAdmin, false}},        {"GetUsage", {Scope::kRead, false}},
      {"Generate", {Scope::kAdmin, false}},     {"LoadPolicy", {Scope::kAdmin, false}},
      {"GetStatus", {Scope::kRead, false}},     {"StartTraining", {Scope::kAdmin, false}},
      {"WatchTraining", {Scope::kRead, false}}, {"CancelTraining", {Scope::kAdmin, false}},
  };
  return kTable;
}

}  // namespace

RpcRule RuleOf(const std::string& method) {
  for (const Named& n : Table()) {
    if (method == n.method) return n.rule;
  }
  return RpcRule{};
}

const std::vector<std::string>& AllRpcs() {
  static const std::vector<std::string> kAll = [] {
    std::vector<std::string> out;
    for (const Named& n : Table()) out.push_back(n.method);
    return out;
  }();
  return kAll;
}

}  // namespace spar::services
