// SHA-256 (FIPS 180-4): judgment-cache keys and judge template ids (oracle_client), the digests of
// API tokens in the tokens file (services/common/token_table). Written here so that neither needs
// OpenSSL just to hash. Thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace spar {

// Lower-case hex digest (64 characters) of `data`.
std::string Sha256Hex(absl::string_view data);

// Digest of several fields, each length-prefixed so that ("ab","c") and ("a","bc") differ.
std::string Sha256HexOfFields(std::initializer_list<absl::string_view> fields);

}  // namespace spar
