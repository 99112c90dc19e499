#include "services/common/api_token.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace spar::services {

absl::StatusOr<std::string> ApiTokenFromEnv() {
  if (const char* t = std::getenv("SPAR_API_TOKEN"); t != nullptr && *t != '\0') return t;
  const char* file = std::getenv("SPAR_API_TOKEN_FILE");
  if (file == nullptr || *file == '\0') return std::string();
  absl::StatusOr<std::string> text = ReadFile(file);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SPAR_API_TOKEN_FILE: ", text.status().message()));
  }
  std::string token(absl::StripTrailingAsciiWhitespace(*text));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SPAR_API_TOKEN_FILE names ", file, ", which holds no token"));
  }
  return token;
}

}  // namespace spar::services
