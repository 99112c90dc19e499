#include "orchestrator/grpc_ports.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "orchestrator/internal/stream_watch.h"
#include "spar/v1/oracle.grpc.pb.h"
#include "spar/v1/sampler.grpc.pb.h"
#include "spar/v1/trainer.grpc.pb.h"

namespace spar::orchestrator {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(s.error_code())),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// The only call context this file makes: every call has a deadline. (The service token is added
// by the channel: grpc_ports.h.)
class CallContext {
 public:
  explicit CallContext(absl::Duration deadline) { ctx_.set_deadline(Deadline(deadline)); }
  grpc::ClientContext* get() { return &ctx_; }
  void TryCancel() { ctx_.TryCancel(); }

 private:
  grpc::ClientContext ctx_;
};

// Runs `attempt` until it succeeds, fails with a non-retryable code, or attempts run out.
// `attempt` reports whether it delivered any result (then a retry would duplicate work).
template <typename F>
absl::Status WithRetries(const GrpcPortsConfig& config, const std::string& what, F attempt) {
  absl::Duration backoff = config.initial_backoff;
  absl::Status st;
  for (int i = 0; i < config.max_attempts; ++i) {
    bool delivered = false;
    st = attempt(&delivered);
    if (st.ok() || !absl::IsUnavailable(st) || delivered) return st;
    SPAR_LOG(Warning) << what << " unavailable (attempt " << i + 1 << "): " << st.message();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  return st;
}

// One server-streaming call read to its end: each message goes to `on_message` (whose error
// stops the call); a StreamWatch ends the call when the job is cancelled or the peer goes quiet.
// `start` opens the call on the given context. `delivered` turns true with the first message.
template <typename Msg, typename Start>
absl::Status ReadStream(const GrpcPortsConfig& config, const std::string& what, Start start,
                        const std::function<absl::Status(const Msg&)>& on_message,
                        const CancelCheck& cancelled, bool* delivered) {
  CallContext ctx(config.stream_deadline);
  internal::StreamWatch watch([&ctx] { ctx.TryCancel(); }, cancelled, config.stream_idle_timeout);
  auto reader = start(ctx.get());
  Msg msg;
  absl::Status cb_status;
  while (reader->Read(&msg)) {
    watch.Touch();
    *delivered = true;
    cb_status = on_message(msg);
    if (!cb_status.ok()) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (!cb_status.ok()) return cb_status;
  return watch.Explain(FromGrpc(st, what), what);
}

class GrpcSamplerPort final : public SamplerPort {
 public:
  GrpcSamplerPort(std::shared_ptr<grpc::Channel> ch, GrpcPortsConfig c)
      : stub_(v1::Sampler::NewStub(ch)), config_(c) {}

  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
                        const CancelCheck& cancelled) override {
    const std::string what = "sampler.Generate";
    return WithRetries(config_, what, [&](bool* delivered) {
      auto start = [&](grpc::ClientContext* ctx) { return stub_->Generate(ctx, request); };
      return ReadStream<v1::GenerateResponse>(config_, what, start, on_result, cancelled,
                                              delivered);
    });
  }

 private:
  std::unique_ptr<v1::Sampler::Stub> stub_;
  GrpcPortsConfig config_;
};

class GrpcOraclePort final : public OraclePort {
 public:
  GrpcOraclePort(std::shared_ptr<grpc::Channel> ch, GrpcPortsConfig c)
      : stub_(v1::Oracle::NewStub(ch)), config_(c) {}

  absl::Status Compare(const v1::CompareRequest& request,
                       const std::function<absl::Status(const v1::Judgment&)>& on_judgment,
                       const CancelCheck& cancelled) override {
    const std::string what = "oracle.Compare";
    return WithRetries(config_, what, [&](bool* delivered) {
      auto start = [&](grpc::ClientContext* ctx) { return stub_->Compare(ctx, request); };
      return ReadStream<v1::Judgment>(config_, what, start, on_judgment, cancelled, delivered);
    });
  }

  absl::Status Score(const v1::ScoreRequest& request,
                     const std::function<absl::Status(const v1::ScoreResult&)>& on_result,
                     const CancelCheck& cancelled) override {
    const std::string what = "oracle.Score";
    return WithRetries(config_, what, [&](bool* delivered) {
      auto start = [&](grpc::ClientContext* ctx) { return stub_->Score(ctx, request); };
      return ReadStream<v1::ScoreResult>(config_, what, start, on_result, cancelled, delivered);
    });
  }

 private:
  std::unique_ptr<v1::Oracle::Stub> stub_;
  GrpcPortsConfig config_;
};

class GrpcTrainerPort final : public TrainerPort {
 public:
  GrpcTrainerPort(std::shared_ptr<grpc::Channel> ch, GrpcPortsConfig c)
      : stub_(v1::Trainer::NewStub(ch)), config_(c) {}

  absl::StatusOr<v1::TrainingEvent> Train(
      const v1::StartTrainingRequest& request,
      const std::function<void(const v1::TrainingEvent&)>& on_event,
      const CancelCheck& cancelled) override {
    v1::TrainingEvent last;
    absl::Status st = WithRetries(config_, "trainer", [&](bool* /*delivered*/) -> absl::Status {
      // Training is idempotent by key: retrying after UNAVAILABLE attaches to the same run (or
      // restarts it from scratch on a restarted trainer), so retries are always safe here.
      v1::StartTrainingResponse started;
      {
        CallContext ctx(config_.unary_deadline);
        grpc::Status s = stub_->StartTraining(ctx.get(), request, &started);
        if (!s.ok()) return FromGrpc(s, "trainer.StartTraining");
      }
      CallContext ctx(config_.stream_deadline);
      v1::WatchTrainingRequest watch;
      watch.set_run_id(started.run_id());
      // Idle only: a cancel is sent to the trainer (below) rather than dropping the stream.
      internal::StreamWatch idle([&ctx] { ctx.TryCancel(); }, nullptr, config_.stream_idle_timeout);
      auto reader = stub_->WatchTraining(ctx.get(), watch);
      v1::TrainingEvent ev;
      bool cancel_sent = false;
      while (reader->Read(&ev)) {
        idle.Touch();
        last = ev;
        if (on_event) on_event(ev);
        if (!cancel_sent && cancelled && cancelled()) {
          CallContext cctx(config_.unary_deadline);
          v1::CancelTrainingRequest creq;
          creq.set_run_id(started.run_id());
          v1::CancelTrainingResponse cresp;
          (void)stub_->CancelTraining(cctx.get(), creq, &cresp);
          cancel_sent = true;
        }
      }
      grpc::Status s = reader->Finish();
      if (!s.ok())
        return idle.Explain(FromGrpc(s, "trainer.WatchTraining"), "trainer.WatchTraining");
      switch (last.state()) {
        case v1::TRAINING_STATE_SUCCEEDED:
          return absl::OkStatus();
        case v1::TRAINING_STATE_CANCELLED:
          return absl::CancelledError("training cancelled");
        case v1::TRAINING_STATE_FAILED:
          // The trainer's code travels on (RESOURCE_EXHAUSTED for a full disk pauses the job);
          // a trainer that sets none is INTERNAL.
          return absl::Status(last.error_code() > 0 && last.error_code() <= 16
                                  ? static_cast<absl::StatusCode>(last.error_code())
                                  : absl::StatusCode::kInternal,
                              absl::StrCat("training failed: ", last.error()));
        default:
          return absl::UnavailableError("trainer stream ended before the run finished");
      }
    });
    if (!st.ok()) return st;
    return last;
  }

  absl::Status CheckConfig(const v1::TrainingConfig& config, const std::string& chat_template,
                           const std::string& init_checkpoint) override {
    v1::StartTrainingRequest req;
    *req.mutable_config() = config;
    req.set_chat_template(chat_template);
    req.set_init_checkpoint(init_checkpoint);
    req.set_validate_only(true);
    v1::StartTrainingResponse resp;
    CallContext ctx(config_.unary_deadline);
    grpc::Status s = stub_->StartTraining(ctx.get(), req, &resp);
    switch (s.error_code()) {
      case grpc::StatusCode::OK:
        break;
      case grpc::StatusCode::INVALID_ARGUMENT:
        return absl::InvalidArgumentError(s.error_message());
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
        // A deployment whose trainer refuses the orchestrator: every train stage would fail after
        // sampling and judging were paid, so the job is refused now.
        return absl::FailedPreconditionError(
            absl::StrCat("trainer refused the orchestrator's token: ", s.error_message()));
      default:
        SPAR_LOG(Warning) << "trainer.StartTraining(validate_only): " << s.error_message()
                          << "; the train stage will check the config";
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<v1::Trainer::Stub> stub_;
  GrpcPortsConfig config_;
};

}  // namespace

std::unique_ptr<SamplerPort> MakeGrpcSamplerPort(std::shared_ptr<grpc::Channel> channel,
                                                 GrpcPortsConfig config) {
  return std::make_unique<GrpcSamplerPort>(std::move(channel), config);
}
std::unique_ptr<OraclePort> MakeGrpcOraclePort(std::shared_ptr<grpc::Channel> channel,
                                               GrpcPortsConfig config) {
  return std::make_unique<GrpcOraclePort>(std::move(channel), config);
}
std::unique_ptr<TrainerPort> MakeGrpcTrainerPort(std::shared_ptr<grpc::Channel> channel,
                                                 GrpcPortsConfig config) {
  return std::make_unique<GrpcTrainerPort>(std::move(channel), config);
}

}  // namespace spar::orchestrator
