// The one exception handler of Spar's cpp-httplib servers (the sampler's OpenAI-compatible
// endpoint, the reference judge): an exception escaping a route becomes a reply built by the
// server from "internal error: <what>" instead of httplib's opaque 500 (STYLE R4.2).
#pragma once

#include <httplib.h>

#include <functional>
#include <string>

namespace spar::services {

// Installs on `server` a handler that calls `reply(res, "internal error: " + e.what())`
// ("unknown exception" for anything not derived from std::exception).
void SetInternalErrorHandler(
    httplib::Server& server,
    std::function<void(httplib::Response& res, const std::string& message)> reply);

}  // namespace spar::services
