#include "common/path_confine.h"

#include <climits>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace spar {
namespace {

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char out[PATH_MAX];
  if (::realpath(path.c_str(), out) == nullptr) return absl::NotFoundError(path);
  return std::string(out);
}

// The resolved form of `full` (absolute): realpath of its longest existing prefix plus the
// remaining components, which must be plain names.
absl::StatusOr<std::string> ResolveMaybeMissing(const std::string& full, const std::string& field) {
  std::vector<std::string> parts = absl::StrSplit(full, '/', absl::SkipEmpty());
  for (size_t keep = parts.size() + 1; keep-- > 0;) {
    std::string prefix = "/" + absl::StrJoin(parts.begin(), parts.begin() + keep, "/");
    absl::StatusOr<std::string> real = RealPath(prefix);
    if (!real.ok()) continue;
    std::string out = *real;
    for (size_t i = keep; i < parts.size(); ++i) {
      if (parts[i] == "." || parts[i] == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": \"", full, "\" has \".\" or \"..\" below a missing directory"));
      }
      out = out == "/" ? "/" + parts[i] : out + "/" + parts[i];
    }
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": cannot resolve \"", full, "\""));
}

}  // namespace

absl::StatusOr<std::string> ConfinePath(const std::string& path,
                                        const std::vector<std::string>& roots,
                                        const std::string& field) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL byte"));
  }
  // No file system takes more (PATH_MAX); resolving is a realpath per component, so a
  // megabyte of "a/a/a/..." would otherwise cost seconds of CPU per request.
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", path.size(), " bytes long; the limit is ", PATH_MAX - 1));
  }
  if (roots.empty()) return path;
  const std::string full = path[0] == '/' ? path : absl::StrCat(roots[0], "/", path);
  absl::StatusOr<std::string> resolved = ResolveMaybeMissing(full, field);
  if (!resolved.ok()) return resolved.status();
  std::vector<std::string> real_roots;
  for (const std::string& root : roots) {
    absl::StatusOr<std::string> r = RealPath(root);
    if (!r.ok()) continue;  // not created yet (a runs dir): nothing can be inside it
    if (*resolved == *r || absl::StartsWith(*resolved, *r == "/" ? "/" : *r + "/")) {
      return *resolved;
    }
    real_roots.push_back(*r);
  }
  if (real_roots.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no root directory exists (", absl::StrJoin(roots, ", "), ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": \"", path,
                                                 "\" is outside the allowed roots (",
                                                 absl::StrJoin(real_roots, ", "), ")"));
}

}  // namespace spar
