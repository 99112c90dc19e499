#include "services/common/judge_api_key.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace spar::services {

absl::StatusOr<std::string> ResolveJudgeApiKey(const oracle::OracleConfig& config) {
  std::string key;
  if (!config.api_key_env.empty()) {
    const char* v = std::getenv(config.api_key_env.c_str());
    if (v == nullptr || *v == '\0') {
      return absl::InvalidArgumentError(absl::StrCat(
          "oracle.api_key_env names ", config.api_key_env, ", which is not set or empty"));
    }
    key = v;
  } else if (const char* v = std::getenv("SPAR_JUDGE_API_KEY")) {
    key = v;
  }
  if (const char* file = std::getenv("SPAR_JUDGE_API_KEY_FILE")) {
    absl::StatusOr<std::string> text = ReadFile(file);
    if (!text.ok()) return text.status();
    key = *std::move(text);
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) {
      key.pop_back();
    }
  }
  return key;
}

}  // namespace spar::services
