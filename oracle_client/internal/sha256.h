// Internal to oracle_client: SHA-256 (FIPS 180-4), for judgment-cache keys and template ids.
// Written here because the client must not depend on OpenSSL just to hash a key. Thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace spar::oracle::internal {

// Lower-case hex digest (64 characters) of `data`.
std::string Sha256Hex(absl::string_view data);

// Digest of several fields, each length-prefixed so that ("ab","c") and ("a","bc") differ.
std::string Sha256HexOfFields(std::initializer_list<absl::string_view> fields);

}  // namespace spar::oracle::internal
