// Internal to model/: lenient field reads of tokenizer.json / tokenizer_config.json objects,
// shared by the tokenizer, its normalizers and its pre-tokenizers. A missing field, or one of
// another JSON type, reads as `fallback` (the files leave out fields at their defaults).
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace spar::model::internal {

inline std::string JsonString(const nlohmann::json& obj, const char* key,
                              const std::string& fallback = "") {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

inline bool JsonBool(const nlohmann::json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

}  // namespace spar::model::internal
