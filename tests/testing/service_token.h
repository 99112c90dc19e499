// The service token the services tests run with. Auth on is the tested configuration, as in every
// deployment (Compose sets SPAR_API_TOKEN); the tests that run without one say so by name.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "services/common/server_runner.h"

namespace spar::testing {

inline constexpr char kServiceToken[] = "spar-test-service-token";

// A channel whose every call carries kServiceToken.
inline std::shared_ptr<grpc::Channel> TokenChannel(const std::string& address) {
  return services::MakeChannel(address, kServiceToken);
}

}  // namespace spar::testing
