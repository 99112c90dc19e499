#include "trainer/groups_file.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace spar::trainer {
namespace {

using nlohmann::json;

// One element of a row's "responses" (`field` names it for errors).
absl::StatusOr<ListwiseResponse> ReadResponse(const json& r, const std::string& field,
                                              const std::string& where) {
  auto bad = [&](const char* f, const char* what) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field \"", field, ".", f, "\" ", what));
  };
  if (!r.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field \"", field, "\" is not an object"));
  }
  ListwiseResponse out;
  if (!r.contains("text") || !r["text"].is_string()) return bad("text", "missing or not a string");
  out.text = r["text"].get<std::string>();
  if (!r.contains("reward") || !r["reward"].is_number()) {
    return bad("reward", "missing or not a number");
  }
  out.reward = r["reward"].get<double>();
  if (r.contains("proposal_logprob") && !r["proposal_logprob"].is_null()) {
    if (!r["proposal_logprob"].is_number()) return bad("proposal_logprob", "is not a number");
    out.proposal_logprob = r["proposal_logprob"].get<double>();
  }
  if (r.contains("finished") && !r["finished"].is_null()) {
    if (!r["finished"].is_boolean()) return bad("finished", "is not a boolean");
    out.finished = r["finished"].get<bool>();
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<ListwiseGroup>> ReadGroupsFile(const std::string& path,
                                                          const std::string& source_field) {
  SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
  std::vector<ListwiseGroup> groups;
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& r = rows[i];
    const std::string where = absl::StrCat(source_field, ": line ", i + 1);
    if (!r.contains("prompt") || !r["prompt"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field \"prompt\" missing or not a string"));
    }
    if (!r.contains("responses") || !r["responses"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field \"responses\" missing or not an array"));
    }
    ListwiseGroup group;
    group.prompt = r["prompt"].get<std::string>();
    for (size_t k = 0; k < r["responses"].size(); ++k) {
      SPAR_ASSIGN_OR_RETURN(
          ListwiseResponse resp,
          ReadResponse(r["responses"][k], absl::StrCat("responses[", k, "]"), where));
      group.responses.push_back(std::move(resp));
    }
    groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace spar::trainer
