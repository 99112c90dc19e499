#include "services/oracle/oracle_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"

namespace spar::services {
namespace {

// The request's accounting scope; InvalidArgument naming the field for a negative limit.
template <typename Request>
absl::StatusOr<oracle::JobScope> ScopeOf(const Request& r) {
  oracle::JobScope s;
  s.job_id = r.job_id();
  s.round = r.round();
  if (r.round() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("round must be >= 0, got ", r.round()));
  }
  const v1::JudgeBudget& b = r.budget();
  auto check = [](const char* field, double v) -> absl::Status {
    if (v >= 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("budget.", field, " must be >= 0, got ", v));
  };
  SPAR_RETURN_IF_ERROR(check("max_calls", static_cast<double>(b.max_calls())));
  SPAR_RETURN_IF_ERROR(check("max_tokens", static_cast<double>(b.max_tokens())));
  SPAR_RETURN_IF_ERROR(check("max_cost_usd", b.max_cost_usd()));
  SPAR_RETURN_IF_ERROR(check("round_max_calls", static_cast<double>(b.round_max_calls())));
  SPAR_RETURN_IF_ERROR(check("round_max_tokens", static_cast<double>(b.round_max_tokens())));
  SPAR_RETURN_IF_ERROR(check("round_max_cost_usd", b.round_max_cost_usd()));
  s.budget = {b.max_calls(),       b.max_tokens(),       b.max_cost_usd(),
              b.round_max_calls(), b.round_max_tokens(), b.round_max_cost_usd()};
  return s;
}

// How a judging stream ends: CANCELLED when its caller went away; UNAVAILABLE when this server is
// stopping (the judgments it could not finish were not sent: the caller retries them elsewhere
// or after the restart, and they do not count as the judge's failures); else OK.
grpc::Status EndOfStream(bool cancelled, bool client_stopped) {
  if (cancelled) return grpc::Status::CANCELLED;
  if (client_stopped) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "oracle is shutting down; retry");
  }
  return grpc::Status::OK;
}

}  // namespace

OracleService::OracleService(oracle::OracleClient& client, metrics::Registry& registry,
                             AccessPolicy access)
    : client_(client), access_(std::move(access)), rpc_metrics_(registry, "oracle") {}

OracleService::~OracleService() { workers_.JoinAll(); }

grpc::ServerWriteReactor<v1::Judgment>* OracleService::Compare(grpc::CallbackServerContext* ctx,
                                                               const v1::CompareRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::Judgment>::Create();
  if (RejectUnauthorizedStream(ctx, access_, rpc_metrics_, "Compare", started, *sink)) {
    return reactor;
  }
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
  absl::StatusOr<oracle::JobScope> scope = ScopeOf(*request);
  if (!scope.ok()) {
    rpc_metrics_.Record("Compare", "INVALID_ARGUMENT", started);
    sink->Finish(ToGrpcStatus(scope.status()));
    return reactor;
  }
  workers_.Spawn([this, sink = sink, items = std::move(items), started, scope = *std::move(scope)] {
    client_.CompareAll(
        items,
        [&](size_t index, absl::StatusOr<oracle::Judgment> j) {
          if (!j.ok() && client_.stopped()) return;  // not the judge's failure: asked again
          v1::Judgment out;
          out.set_index(static_cast<int64_t>(index));
          if (j.ok()) {
            out.set_ok(true);
            out.set_p_a_wins(j->p_a_wins);
            out.set_p_ab(j->p_ab);
            out.set_p_ba(j->p_ba);
            out.set_verdict_ab(j->verdict_ab);
            out.set_verdict_ba(j->verdict_ba);
            if (j->reward_a) out.set_reward_a(*j->reward_a);
            if (j->reward_b) out.set_reward_b(*j->reward_b);
          } else {
            out.set_ok(false);
            out.set_p_a_wins(0.5);
            out.set_error(j.status().ToString());
            out.set_code(static_cast<int32_t>(j.status().code()));
          }
          sink->Write(std::move(out));
        },
        [&] { return sink->cancelled(); }, scope);
    grpc::Status end = EndOfStream(sink->cancelled(), client_.stopped());
    rpc_metrics_.Record("Compare", GrpcCodeName(end.error_code()), started);
    sink->Finish(end);
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::ScoreResult>* OracleService::Score(grpc::CallbackServerContext* ctx,
                                                                const v1::ScoreRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::ScoreResult>::Create();
  if (RejectUnauthorizedStream(ctx, access_, rpc_metrics_, "Score", started, *sink)) {
    return reactor;
  }
  auto invalid = [&](const std::string& message) {
    rpc_metrics_.Record("Score", "INVALID_ARGUMENT", started);
    sink->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message));
    return reactor;
  };
  std::vector<oracle::SideBySideItem> items;
  items.reserve(request->items_size());
  for (int i = 0; i < request->items_size(); ++i) {
    const v1::ScoreItem& it = request->items(i);
    if (it.prompt().empty()) return invalid(absl::StrCat("items[", i, "].prompt is empty"));
    if (it.responses_size() < 1 || it.responses_size() > 16) {
      return invalid(absl::StrCat("items[", i, "].responses must hold 1..16 responses, got ",
                                  it.responses_size()));
    }
    items.push_back({it.prompt(), {it.responses().begin(), it.responses().end()}});
  }
  if (items.empty()) return invalid("items is empty");
  absl::StatusOr<oracle::JobScope> scope = ScopeOf(*request);
  if (!scope.ok()) {
    rpc_metrics_.Record("Score", "INVALID_ARGUMENT", started);
    sink->Finish(ToGrpcStatus(scope.status()));
    return reactor;
  }
  workers_.Spawn([this, sink = sink, items = std::move(items), started, scope = *std::move(scope)] {
    client_.ScoreSideBySideAll(
        items,
        [&](size_t index, absl::StatusOr<oracle::SideBySideScores> r) {
          if (!r.ok() && client_.stopped()) return;  // not the judge's failure: asked again
          v1::ScoreResult out;
          out.set_index(static_cast<int64_t>(index));
          if (r.ok()) {
            out.set_ok(true);
            for (int v : r->scores) out.add_scores(v);
            for (int o : r->order) out.add_order(o);
            out.set_verdict(r->text);
          } else {
            out.set_ok(false);
            out.set_error(r.status().ToString());
            out.set_code(static_cast<int32_t>(r.status().code()));
          }
          sink->Write(std::move(out));
        },
        [&] { return sink->cancelled(); }, scope);
    grpc::Status end = EndOfStream(sink->cancelled(), client_.stopped());
    rpc_metrics_.Record("Score", GrpcCodeName(end.error_code()), started);
    sink->Finish(end);
  });
  return reactor;
}

grpc::ServerUnaryReactor* OracleService::GetUsage(grpc::CallbackServerContext* ctx,
                                                  const v1::GetUsageRequest* request,
                                                  v1::GetUsageResponse* response) {
  absl::Time started = absl::Now();
  if (auto* denied = RejectUnauthorized(ctx, access_, rpc_metrics_, "GetUsage", started)) {
    return denied;
  }
  auto* reactor = ctx->DefaultReactor();
  if (!request->job_id().empty()) {
    absl::StatusOr<oracle::JobUsage> ju = client_.GetJobUsage(
        request->job_id(),
        request->has_round() ? std::optional<int>(request->round()) : std::nullopt);
    grpc::Status st = ju.ok() ? grpc::Status::OK : ToGrpcStatus(ju.status());
    if (ju.ok()) {
      response->set_calls(ju->calls);
      response->set_prompt_tokens(ju->prompt_tokens);
      response->set_completion_tokens(ju->completion_tokens);
      response->set_cost(ju->cost_usd);
    }
    rpc_metrics_.Record("GetUsage", ju.ok() ? "OK" : "UNAVAILABLE", started);
    reactor->Finish(st);
    return reactor;
  }
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
  response->set_single_flight_shared(u.shared);
  rpc_metrics_.Record("GetUsage", "OK", started);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace spar::services
