// The judge's API key, read in one place at the edge (STYLE R5: secrets come from the
// environment, read in main only and passed in; oracle_client never reads the environment).
// Used by `spar serve`/`spar up` (the oracle role), `spar judge` and `spar-judge` (the key the
// reference judge expects). The key is never logged; errors name the variable and the path, never
// the contents. Thread-safe (reads the environment and one file).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "oracle_client/oracle_config.h"

namespace spar::services {

// The judge API key, by precedence (last wins):
//   1. the variable named by config.api_key_env when set (it must then be set and non-empty:
//      InvalidArgument "oracle.api_key_env names X, which is not set or empty"), else
//      $SPAR_JUDGE_API_KEY when set;
//   2. when $SPAR_JUDGE_API_KEY_FILE is set, that file's contents without trailing newlines,
//      carriage returns and spaces (the Compose secret; the error of reading it otherwise).
// "" when none is set (no Authorization header).
absl::StatusOr<std::string> ResolveJudgeApiKey(const oracle::OracleConfig& config);

}  // namespace spar::services
