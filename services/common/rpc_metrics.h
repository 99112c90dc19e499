// Per-service RPC metrics: spar_<component>_rpc_requests_total{method,code} and
// spar_<component>_rpc_duration_seconds{method}. Registered once per service at startup.
#pragma once

#include <string>

#include "absl/time/clock.h"
#include "common/metrics/registry.h"

namespace spar::services {

class RpcMetrics {
 public:
  RpcMetrics(metrics::Registry& registry, const std::string& component)
      : requests_(registry.AddCounter("spar_" + component + "_rpc_requests_total",
                                      "RPCs handled, by method and gRPC status code.")),
        duration_(registry.AddHistogram("spar_" + component + "_rpc_duration_seconds",
                                        "RPC handling time, by method.",
                                        metrics::ExponentialBuckets(0.001, 4, 10))) {}

  // Records one finished RPC. `code` is the gRPC code name ("OK", "INVALID_ARGUMENT", ...).
  void Record(const std::string& method, const std::string& code, absl::Time started) {
    requests_.Add({{"method", method}, {"code", code}}).Increment();
    duration_.Add({{"method", method}}).Observe(absl::ToDoubleSeconds(absl::Now() - started));
  }

 private:
  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Histogram>& duration_;
};

std::string GrpcCodeName(int code);

}  // namespace spar::services
