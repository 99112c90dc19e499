// The environment for a child process a test spawns: this process's environment with `extra`
// ("NAME=value" entries) added, an entry of the same NAME replaced. Header-only, for tests.
#pragma once

#include <string>
#include <vector>

extern char** environ;

namespace spar::testing {

inline std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  auto name_of = [](const std::string& kv) { return kv.substr(0, kv.find('=') + 1); };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    bool overridden = false;
    for (const std::string& x : extra) overridden = overridden || name_of(kv) == name_of(x);
    if (!overridden) env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

}  // namespace spar::testing
