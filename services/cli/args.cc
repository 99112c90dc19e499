#include "services/cli/args.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace spar::cli {

absl::StatusOr<Args> Args::Parse(int argc, char** argv, const std::set<std::string>& switches) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (absl::StartsWith(arg, "--")) {
      std::string body = arg.substr(2);
      size_t eq = body.find('=');
      if (eq != std::string::npos) {
        a.flags_[body.substr(0, eq)] = body.substr(eq + 1);
      } else if (switches.count(body) > 0) {
        a.flags_[body] = "true";
      } else if (i + 1 < argc) {
        a.flags_[body] = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", body, " needs a value"));
      }
    } else if (a.command_.empty()) {
      a.command_ = arg;
    } else {
      a.positional_.push_back(arg);
    }
  }
  return a;
}

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = flags_.find(name);
  return it == flags_.end() ? fallback : it->second;
}

absl::StatusOr<int> Args::GetInt(const std::string& name, int fallback) const {
  auto it = flags_.find(name);
  if (it == flags_.end()) return fallback;
  int v = 0;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be an integer, got \"", it->second, "\""));
  }
  return v;
}

std::vector<std::string> Args::GetList(const std::string& name) const {
  auto it = flags_.find(name);
  if (it == flags_.end()) return {};
  return absl::StrSplit(it->second, ',');
}

absl::Status Args::CheckKnown(const std::set<std::string>& known) const {
  for (const auto& [k, v] : flags_) {
    if (known.count(k) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", k, " for spar ", command_));
    }
  }
  return absl::OkStatus();
}

}  // namespace spar::cli
