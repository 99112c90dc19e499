// The shared service token (docs/operations.md#secrets) as servers and clients read it from the
// environment: SPAR_API_TOKEN, or the file named by SPAR_API_TOKEN_FILE (a Compose secret
// mounted under /run/secrets). Used by `spar` (serve/up and every client command) and by the
// light `spar-health` probe. The token is never logged; errors name the variable and the path,
// never the contents. Thread-safe (reads the environment and one file).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace spar::services {

// SPAR_API_TOKEN when set and non-empty; otherwise, when SPAR_API_TOKEN_FILE is set, that file's
// contents without trailing whitespace (InvalidArgument naming the variable when the file cannot
// be read or holds no token); otherwise "" (auth off).
absl::StatusOr<std::string> ApiTokenFromEnv();

}  // namespace spar::services
