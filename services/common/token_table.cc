#include "services/common/token_table.h"

#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "nlohmann/json.hpp"

namespace spar::services {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '@' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

bool ValidDigest(const std::string& hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  }
  return true;
}

// Equal digests, in time independent of where they differ.
bool SameDigest(const std::string& a, const std::string& b) {
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

// One entry of the tokens file; `where` names it in errors.
absl::StatusOr<std::pair<Caller, std::string>> ParseEntry(const nlohmann::json& e,
                                                          const std::string& where) {
  if (!e.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
  for (auto it = e.begin(); it != e.end(); ++it) {
    if (it.key() != "name" && it.key() != "scope" && it.key() != "sha256") {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".", it.key(),
                       " is not a known key (a token is listed by its sha256, never "
                       "in clear)"));
    }
  }
  auto text = [&](const char* key) -> std::string {
    auto it = e.find(key);
    return it != e.end() && it->is_string() ? it->get<std::string>() : "";
  };
  Caller caller;
  caller.name = text("name");
  if (absl::Status st = CheckHolderName(caller.name); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", st.message()));
  }
  absl::StatusOr<Scope> scope = ParseScope(text("scope"));
  if (!scope.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".scope: ", scope.status().message()));
  }
  caller.scope = *scope;
  std::string digest = absl::AsciiStrToLower(text("sha256"));
  if (!ValidDigest(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".sha256 must be 64 hex digits (the SHA-256 of the token)"));
  }
  return std::make_pair(caller, digest);
}

}  // namespace

absl::Status CheckHolderName(const std::string& name) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("name must be 1..64 of [A-Za-z0-9._@-], got \"", name, "\""));
  }
  if (name == "service") {
    return absl::InvalidArgumentError("name \"service\" is the service token's (SPAR_API_TOKEN)");
  }
  return absl::OkStatus();
}

const char* ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kRead:
      return "read";
    case Scope::kSubmit:
      return "submit";
    case Scope::kAdmin:
      return "admin";
  }
  return "read";
}

absl::StatusOr<Scope> ParseScope(const std::string& name) {
  if (name == "read") return Scope::kRead;
  if (name == "submit") return Scope::kSubmit;
  if (name == "admin") return Scope::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("scope must be \"read\", \"submit\" or \"admin\", got \"", name, "\""));
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& service_token,
                                            const std::string& tokens_file) {
  TokenTable table;
  std::set<std::string> names, digests;
  if (!service_token.empty()) {
    table.entries_.push_back({Caller{"service", Scope::kAdmin}, Sha256Hex(service_token)});
    names.insert("service");
    digests.insert(table.entries_.back().sha256);
  }
  if (tokens_file.empty()) return table;
  const std::string file = absl::StrCat("tokens file ", tokens_file);
  absl::StatusOr<std::string> text = ReadFile(tokens_file);
  if (!text.ok())
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", text.status().message()));
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array() || j.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": must be JSON {\"tokens\": [{\"name\", \"scope\", \"sha256\"}, ...]}"));
  }
  for (size_t i = 0; i < j["tokens"].size(); ++i) {
    const std::string where = absl::StrCat(file, ": tokens[", i, "]");
    absl::StatusOr<std::pair<Caller, std::string>> e = ParseEntry(j["tokens"][i], where);
    if (!e.ok()) return e.status();
    if (!names.insert(e->first.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".name \"", e->first.name, "\" is already taken"));
    }
    if (!digests.insert(e->second).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".sha256 is listed twice"));
    }
    table.entries_.push_back({e->first, e->second});
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::FromEnv(const std::string& service_token) {
  const char* file = std::getenv("SPAR_API_TOKENS_FILE");
  return Load(service_token, file == nullptr ? "" : file);
}

std::optional<Caller> TokenTable::Find(const std::string& token) const {
  const std::string digest = Sha256Hex(token);
  std::optional<Caller> found;
  for (const Entry& e : entries_) {  // no early exit: every entry is compared
    if (SameDigest(digest, e.sha256) && !found) found = e.caller;
  }
  return found;
}

}  // namespace spar::services
