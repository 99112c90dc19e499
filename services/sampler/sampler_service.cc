#include "services/sampler/sampler_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/utf8.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"

namespace spar::services {

absl::StatusOr<sampler::SamplingParams> FromProto(const v1::SamplingParams& p) {
  sampler::SamplingParams out;
  if (p.has_num_samples()) out.num_samples = p.num_samples();
  if (p.has_temperature()) out.temperature = p.temperature();
  if (p.has_top_p()) out.top_p = p.top_p();
  if (p.has_max_new_tokens()) out.max_new_tokens = p.max_new_tokens();
  if (p.has_seed()) out.seed = p.seed();
  absl::Status st = sampler::Validate(out);
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("params: ", st.message()));
  return out;
}

SamplerService::SamplerService(sampler::Sampler& sampler, metrics::Registry& registry,
                               AccessPolicy access)
    : sampler_(sampler),
      access_(std::move(access)),
      rpc_metrics_(registry, "sampler"),
      prompts_(registry.AddCounter("spar_sampler_prompts_total", "Prompts sampled.").Add({})),
      samples_(registry.AddCounter("spar_sampler_samples_total", "Responses generated.").Add({})),
      tokens_(
          registry.AddCounter("spar_sampler_generated_tokens_total", "Response tokens generated.")
              .Add({})),
      tokens_per_second_(registry
                             .AddGauge("spar_sampler_tokens_per_second",
                                       "Generation throughput of the latest request.")
                             .Add({})),
      in_flight_(registry.AddGauge("spar_sampler_in_flight_requests", "Generate calls in progress.")
                     .Add({})) {}

SamplerService::~SamplerService() { workers_.JoinAll(); }

grpc::ServerWriteReactor<v1::GenerateResponse>* SamplerService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::GenerateResponse>::Create();
  if (RejectUnauthorizedStream(ctx, access_, rpc_metrics_, "Generate", started, *sink)) {
    return reactor;
  }
  absl::StatusOr<std::string> policy = access_.Confine(request->policy(), "policy");
  absl::Status invalid = policy.status();
  if (invalid.ok() && request->prompts_size() == 0) {
    invalid = absl::InvalidArgumentError("prompts is empty");
  } else if (invalid.ok() && request->first_index() < 0) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("first_index must be >= 0, got ", request->first_index()));
  }
  absl::StatusOr<sampler::SamplingParams> params = FromProto(request->params());
  if (invalid.ok() && !params.ok()) invalid = params.status();
  if (invalid.ok()) {
    // Seeds follow the global prompt index: a shard (first_index > 0) draws what the whole list
    // would for those prompts.
    params->first_prompt_index = request->first_index();
    params->chat_template = request->chat_template();
    if (absl::Status st = sampler::Validate(*params); !st.ok()) invalid = st;
  }
  if (!invalid.ok()) {
    rpc_metrics_.Record("Generate", GrpcCodeName(ToGrpcStatus(invalid).error_code()), started);
    sink->Finish(ToGrpcStatus(invalid));
    return reactor;
  }
  std::vector<std::string> prompts(request->prompts().begin(), request->prompts().end());
  in_flight_.Increment();
  workers_.Spawn([this, sink = sink, prompts = std::move(prompts), params = *params,
                  policy = *policy, first = request->first_index(), started] {
    int64_t tokens = 0;
    absl::Status st = sampler_.Generate(policy, prompts, params, [&](sampler::PromptSamples ps) {
      v1::GenerateResponse out;
      out.set_index(first + ps.index);
      out.set_prompt(SanitizeUtf8(ps.prompt));
      for (sampler::SampleOut& s : ps.samples) {
        v1::Sample* o = out.add_samples();
        // Token ids are exact; the text must be valid UTF-8 for proto3 and JSON.
        o->set_text(SanitizeUtf8(s.text));
        o->mutable_token_ids()->Add(s.token_ids.begin(), s.token_ids.end());
        o->set_logprob(s.logprob);
        o->mutable_token_logprobs()->Add(s.token_logprobs.begin(), s.token_logprobs.end());
        o->set_finished(s.finished);
        tokens += static_cast<int64_t>(s.token_ids.size());
        samples_.Increment();
        tokens_.Increment(static_cast<double>(s.token_ids.size()));
      }
      prompts_.Increment();
      return sink->Write(std::move(out));
    });
    double secs = absl::ToDoubleSeconds(absl::Now() - started);
    if (secs > 0) tokens_per_second_.Set(static_cast<double>(tokens) / secs);
    in_flight_.Decrement();
    if (sink->cancelled()) st = absl::CancelledError("client cancelled");
    grpc::Status g = ToGrpcStatus(st);
    rpc_metrics_.Record("Generate", GrpcCodeName(g.error_code()), started);
    sink->Finish(g);
  });
  return reactor;
}

grpc::ServerUnaryReactor* SamplerService::LoadPolicy(grpc::CallbackServerContext* ctx,
                                                     const v1::LoadPolicyRequest* request,
                                                     v1::LoadPolicyResponse* response) {
  absl::Time started = absl::Now();
  if (auto* denied = RejectUnauthorized(ctx, access_, rpc_metrics_, "LoadPolicy", started)) {
    return denied;
  }
  auto* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> policy = access_.Confine(request->policy(), "policy");
  if (!policy.ok()) {
    rpc_metrics_.Record("LoadPolicy", "INVALID_ARGUMENT", started);
    reactor->Finish(ToGrpcStatus(policy.status()));
    return reactor;
  }
  // Loading a small checkpoint is quick, but it is still disk + torch work: run it off-thread.
  workers_.Spawn([this, reactor, policy = *policy, started] {
    grpc::Status g = ToGrpcStatus(sampler_.LoadPolicy(policy));
    rpc_metrics_.Record("LoadPolicy", GrpcCodeName(g.error_code()), started);
    reactor->Finish(g);
  });
  return reactor;
}

grpc::ServerUnaryReactor* SamplerService::GetStatus(grpc::CallbackServerContext* ctx,
                                                    const v1::GetSamplerStatusRequest*,
                                                    v1::GetSamplerStatusResponse* response) {
  absl::Time started = absl::Now();
  if (auto* denied = RejectUnauthorized(ctx, access_, rpc_metrics_, "GetStatus", started)) {
    return denied;
  }
  response->set_tokens_generated(sampler_.tokens_generated());
  rpc_metrics_.Record("GetStatus", "OK", started);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace spar::services
