// Command-line parsing for the `spar` CLI: `spar <command> [positional...] [--flag=value|--flag
// value|--switch]`. Small on purpose: flags are looked up by name and typed at the call site.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spar::cli {

class Args {
 public:
  // `switches` are flags that take no value (--json, --watch).
  static absl::StatusOr<Args> Parse(int argc, char** argv, const std::set<std::string>& switches);
  const std::string& command() const { return command_; }
  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(const std::string& name) const { return flags_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  absl::StatusOr<int> GetInt(const std::string& name, int fallback) const;
  // A comma-separated flag (--name=a,b) as its items, empty items kept (so that callers'
  // validation can name them); {} when the flag is absent.
  std::vector<std::string> GetList(const std::string& name) const;
  // Rejects flags not in `known` ("unknown flag --x for spar <command>").
  absl::Status CheckKnown(const std::set<std::string>& known) const;

 private:
  std::string command_;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> flags_;
};

}  // namespace spar::cli
