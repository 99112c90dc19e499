#include "orchestrator/prompt_file.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace spar::orchestrator {
namespace {

absl::StatusOr<PromptRow> ParseRow(absl::string_view line, const std::string& where) {
  if (size_t bad = FirstInvalidUtf8(line); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: not UTF-8 (byte 0x%02X at column %d); prompt files are UTF-8: convert it, e.g. "
        "`iconv -f latin1 -t utf-8`",
        where, static_cast<unsigned char>(line[bad]), bad + 1));
  }
  nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (row.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(where, ": not JSON"));
  if (!row.is_object() || !row.contains("prompt") || !row["prompt"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected {\"prompt\": \"...\"}"));
  }
  PromptRow out{row["prompt"].get<std::string>(), std::nullopt};
  if (row.contains("gold") && row["gold"].is_string()) out.gold = row["gold"].get<std::string>();
  return out;
}

}  // namespace

absl::StatusOr<std::vector<PromptRow>> ReadPromptFile(const std::string& path,
                                                      const std::string& field) {
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<PromptRow> rows;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    SPAR_ASSIGN_OR_RETURN(PromptRow row,
                          ParseRow(line, absl::StrCat(field, ": ", path, ":", line_number)));
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, ": no prompts"));
  }
  return rows;
}

}  // namespace spar::orchestrator
