#include "services/oracle/oracle_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"

namespace spar::services {

OracleService::OracleService(oracle::OracleClient& client, metrics::Registry& registry)
    : client_(client), rpc_metrics_(registry, "oracle") {}

OracleService::~OracleService() { workers_.JoinAll(); }

grpc::ServerWriteReactor<v1::Judgment>* OracleService::Compare(grpc::CallbackServerContext* ctx,
                                                               const v1::CompareRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::Judgment>::Create();
  std::vector<oracle::Comparison> items;
  items.reserve(request->comparisons_size());
  for (int i = 0; i < request->comparisons_size(); ++i) {
    const v1::Comparison& c = request->comparisons(i);
    if (c.prompt().empty()) {
      rpc_metrics_.Record("Compare", "INVALID_ARGUMENT", started);
      sink->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StrCat("comparisons[", i, "].prompt is empty")));
      return reactor;
    }
    items.push_back({c.prompt(), c.response_a(), c.response_b()});
  }
  if (items.empty()) {
    rpc_metrics_.Record("Compare", "INVALID_ARGUMENT", started);
    sink->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "comparisons is empty"));
    return reactor;
  }
  workers_.Spawn([this, sink = sink, items = std::move(items), started] {
    client_.CompareAll(
        items,
        [&](size_t index, absl::StatusOr<oracle::Judgment> j) {
          v1::Judgment out;
          out.set_index(static_cast<int64_t>(index));
          if (j.ok()) {
            out.set_ok(true);
            out.set_p_a_wins(j->p_a_wins);
            out.set_p_ab(j->p_ab);
            out.set_p_ba(j->p_ba);
            out.set_verdict_ab(j->verdict_ab);
            out.set_verdict_ba(j->verdict_ba);
          } else {
            out.set_ok(false);
            out.set_p_a_wins(0.5);
            out.set_error(j.status().ToString());
          }
          sink->Write(std::move(out));
        },
        [&] { return sink->cancelled(); });
    bool cancelled = sink->cancelled();
    rpc_metrics_.Record("Compare", cancelled ? "CANCELLED" : "OK", started);
    sink->Finish(cancelled ? grpc::Status::CANCELLED : grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* OracleService::GetUsage(grpc::CallbackServerContext* ctx,
                                                  const v1::GetUsageRequest*,
                                                  v1::GetUsageResponse* response) {
  absl::Time started = absl::Now();
  oracle::OracleClient::Usage u = client_.GetUsage();
  response->set_calls(u.calls);
  response->set_retries(u.retries);
  response->set_failures(u.failures);
  response->set_prompt_tokens(u.prompt_tokens);
  response->set_completion_tokens(u.completion_tokens);
  response->set_cost(u.cost_usd);
  response->set_cache_hits(u.cache_hits);
  response->set_cache_misses(u.cache_misses);
  response->set_swap_consistency(u.swap_consistency());
  response->set_swap_judgments(u.swap_judgments);
  rpc_metrics_.Record("GetUsage", "OK", started);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace spar::services
