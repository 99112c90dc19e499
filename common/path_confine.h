// Confines file paths taken from requests to a set of root directories (the data root and the
// runs dir), so a caller cannot make a service read or write elsewhere. Symlinks and ".." are
// resolved before the check. Thread-safe (pure functions over the file system).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spar {

// Resolves `path` and checks it lies inside one of `roots` (or is one). A relative path is
// joined to roots[0]. The path need not exist (an output): its longest existing prefix is
// resolved and the rest may not contain "." or "..". Empty `roots` = no confinement (the path is
// returned as given). Returns the resolved absolute path, or InvalidArgument naming `field`
// (empty, NUL byte, PATH_MAX bytes or longer, outside every root); FailedPrecondition when no root
// exists (a root that does not exist yet is skipped).
absl::StatusOr<std::string> ConfinePath(const std::string& path,
                                        const std::vector<std::string>& roots,
                                        const std::string& field);

}  // namespace spar
