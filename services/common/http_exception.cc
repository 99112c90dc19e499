#include "services/common/http_exception.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace spar::services {

void SetInternalErrorHandler(
    httplib::Server& server,
    std::function<void(httplib::Response& res, const std::string& message)> reply) {
  server.set_exception_handler([reply = std::move(reply)](const httplib::Request&,
                                                          httplib::Response& res,
                                                          std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    reply(res, absl::StrCat("internal error: ", what));
  });
}

}  // namespace spar::services
