// The orchestrator's ports implemented with gRPC stubs: the only place in orchestrator/ that
// speaks gRPC. Every call has a deadline; UNAVAILABLE (a restarting service) is retried with
// backoff, re-sending the same idempotency key so the service attaches to work already running.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "orchestrator/ports.h"

namespace grpc {
class Channel;
}

namespace spar::orchestrator {

struct GrpcPortsConfig {
  // Deadline of one streaming call (a whole stage's sampling/judging), and of unary calls.
  absl::Duration stream_deadline = absl::Hours(6);
  absl::Duration unary_deadline = absl::Seconds(30);
  // A stream on which no message arrived for this long is ended (DEADLINE_EXCEEDED naming the
  // call; the job fails and can be resumed): a peer that stopped answering does not hold a job
  // RUNNING for stream_deadline. Above the oracle's judgment_deadline (10 min) and a training
  // step. Streams also end within ~0.1 s of the job's cancel or the server's shutdown.
  absl::Duration stream_idle_timeout = absl::Minutes(30);
  // Attempts for a call that fails with UNAVAILABLE before any result arrived.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(200);
};
// The service token (SPAR_API_TOKEN) travels with the channel: services::MakeChannel(address,
// token) adds "authorization: Bearer <token>" to every call made on it.

std::unique_ptr<SamplerPort> MakeGrpcSamplerPort(std::shared_ptr<grpc::Channel> channel,
                                                 GrpcPortsConfig config = {});
std::unique_ptr<OraclePort> MakeGrpcOraclePort(std::shared_ptr<grpc::Channel> channel,
                                               GrpcPortsConfig config = {});
std::unique_ptr<TrainerPort> MakeGrpcTrainerPort(std::shared_ptr<grpc::Channel> channel,
                                                 GrpcPortsConfig config = {});

}  // namespace spar::orchestrator
