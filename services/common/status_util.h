// The one conversion between absl::Status (libraries) and grpc::Status (services/ only).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace spar::services {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace spar::services
