#include "trainer/pairs_file.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace spar::trainer {

absl::StatusOr<std::vector<PreferencePair>> ReadPairsFile(const std::string& path,
                                                          const std::string& source_field) {
  auto rows = ReadJsonl(path);
  if (!rows.ok()) return rows.status();
  std::vector<PreferencePair> pairs;
  for (size_t i = 0; i < rows->size(); ++i) {
    const nlohmann::json& r = (*rows)[i];
    for (const char* f : {"prompt", "chosen", "rejected"}) {
      if (!r.contains(f) || !r[f].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(source_field, ": line ", i + 1, ": field \"",
                                                       f, "\" missing or not a string"));
      }
    }
    PreferencePair pair;
    pair.prompt = r["prompt"].get<std::string>();
    pair.chosen = r["chosen"].get<std::string>();
    pair.rejected = r["rejected"].get<std::string>();
    // Optional judge data (dno / sppo / mpo): soft label and win rates vs pi_t.
    for (auto [field, slot] : {std::pair<const char*, std::optional<double>*>{"p", &pair.p},
                               {"chosen_win_rate", &pair.chosen_win_rate},
                               {"rejected_win_rate", &pair.rejected_win_rate}}) {
      if (!r.contains(field) || r[field].is_null()) continue;
      if (!r[field].is_number()) {
        return absl::InvalidArgumentError(absl::StrCat(source_field, ": line ", i + 1, ": field \"",
                                                       field, "\" is not a number"));
      }
      *slot = r[field].get<double>();
    }
    // Truncated responses (absent = finished, as in files written before the field existed).
    for (auto [field, slot] :
         {std::pair<const char*, bool*>{"chosen_finished", &pair.chosen_finished},
          {"rejected_finished", &pair.rejected_finished}}) {
      if (!r.contains(field) || r[field].is_null()) continue;
      if (!r[field].is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat(source_field, ": line ", i + 1, ": field \"",
                                                       field, "\" is not a boolean"));
      }
      *slot = r[field].get<bool>();
    }
    pairs.push_back(std::move(pair));
  }
  return pairs;
}

}  // namespace spar::trainer
