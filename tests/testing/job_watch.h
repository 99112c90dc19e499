// Following a job over the Orchestrator API to its end, for the services tests.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "spar/v1/orchestrator.grpc.pb.h"

namespace spar::testing {

// Reads the job's events until job_finished; returns the last job snapshot.
inline v1::Job WatchToEnd(v1::Orchestrator::Stub& stub, const std::string& job_id) {
  grpc::ClientContext ctx;
  v1::WatchJobRequest req;
  req.set_job_id(job_id);
  auto reader = stub.WatchJob(&ctx, req);
  v1::JobEvent ev;
  v1::Job last;
  while (reader->Read(&ev)) {
    if (ev.has_job()) last = ev.job();
    if (ev.kind() == "job_finished") break;
  }
  ctx.TryCancel();
  (void)reader->Finish();
  return last;
}

}  // namespace spar::testing
