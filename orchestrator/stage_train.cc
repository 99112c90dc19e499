// The train stage: the round's policy trained on pairs.jsonl into iter_NNN/checkpoint
// (train.json records the final loss and metrics).
#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/mpo_defaults.h"
#include "common/status_macros.h"
#include "orchestrator/internal/stages.h"
#include "orchestrator/training_config.h"
#include "trainer/train_config.h"

namespace spar::orchestrator::internal {
namespace {

using nlohmann::json;

// Copies a checkpoint directory's files (used when a round has no pairs to train on).
absl::Status CopyCheckpoint(const std::string& from, const std::string& to) {
  std::string tmp = to + ".tmp-copy";
  SPAR_RETURN_IF_ERROR(RemoveAll(tmp));
  SPAR_RETURN_IF_ERROR(MakeDirs(tmp));
  auto remove_tmp = absl::MakeCleanup([&tmp] { (void)RemoveAll(tmp); });  // on any failure
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(from));
  for (const std::string& n : names) {
    if (IsDirectory(JoinPath(from, n))) continue;
    SPAR_ASSIGN_OR_RETURN(std::string data, ReadFile(JoinPath(from, n)));
    SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(tmp, n), data));
  }
  SPAR_RETURN_IF_ERROR(RemoveAll(to));
  return RenameDurable(tmp, to);
}

// mpo: the magnet checkpoint of round t (JobSpec.mpo_magnet_refresh).
std::string MagnetFor(const StageContext& ctx, int t) {
  // pi_0 for rounds 1..M, the checkpoint of round M for rounds M+1..2M, ... (ALGORITHMS.md §5).
  const v1::JobSpec& spec = ctx.spec();
  const int m = std::max(
      1, spec.has_mpo_magnet_refresh() ? spec.mpo_magnet_refresh() : kDefaultMpoMagnetRefresh);
  const int from = ((t - 1) / m) * m;  // the round whose output policy is the magnet (0 = pi_0)
  return ctx.PolicyFor(from + 1);
}

v1::StartTrainingRequest TrainRequest(const StageContext& ctx, int t, const std::string& policy) {
  const RunDir dir = ctx.dir();
  v1::StartTrainingRequest req;
  req.set_idempotency_key(ctx.Key(t, "train"));
  req.set_init_checkpoint(policy);
  if (ctx.recipe().Listwise()) {
    req.set_groups_path(dir.Groups(t));
  } else {
    req.set_pairs_path(dir.Pairs(t));
  }
  req.set_output_checkpoint(dir.Checkpoint(t));
  req.set_chat_template(ctx.spec().chat_template());
  *req.mutable_config() = RoundTrainingConfig(ctx.spec(), t);
  req.mutable_config()->set_seed(MixSeed(req.config().seed(), t, 3));
  if (ctx.spec().algorithm() == "mpo") {
    req.mutable_config()->set_magnet_checkpoint(MagnetFor(ctx, t));
  }
  if (trainer::UsesPrior(req.config().loss())) {
    req.mutable_config()->set_prior_checkpoint(ctx.PolicyFor(1));  // brain's π_SFT: π_0
  }
  return req;
}

// How many pairs (listwise: groups) round t trains on.
absl::StatusOr<size_t> TrainingRows(const StageContext& ctx, int t) {
  if (ctx.recipe().Listwise()) {
    SPAR_ASSIGN_OR_RETURN(std::vector<GroupRow> groups, ReadRows<GroupRow>(ctx.dir().Groups(t)));
    return groups.size();
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<PairRow> pairs, ReadRows<PairRow>(ctx.dir().Pairs(t)));
  return pairs.size();
}

}  // namespace

absl::Status StageTrain(StageContext& ctx, int t, const std::string& policy) {
  const RunDir dir = ctx.dir();
  SPAR_ASSIGN_OR_RETURN(const size_t rows, TrainingRows(ctx, t));
  if (rows == 0) {
    // Nothing to learn from: pi_{t+1} = pi_t.
    SPAR_RETURN_IF_ERROR(CopyCheckpoint(policy, dir.Checkpoint(t)));
    return WriteJsonFileAtomic(
        dir.Train(t),
        {{"skipped", true}, {"reason", ctx.recipe().Listwise() ? "no groups" : "no pairs"}});
  }
  SPAR_ASSIGN_OR_RETURN(v1::TrainingEvent last,
                        ctx.ports().trainer->Train(
                            TrainRequest(ctx, t, policy),
                            [&](const v1::TrainingEvent& ev) {
                              ctx.Emit(t, "train", "progress", ev.step(), ev.total_steps(),
                                       absl::StrFormat("loss %.4f", ev.loss()));
                              if (ev.step() > 0)
                                FaultHold(t, "train");  // test-only: the trainer is stepping
                            },
                            ctx.Cancelled()));
  if (!PathExists(JoinPath(dir.Checkpoint(t), "config.json"))) {
    return absl::InternalError(
        absl::StrCat("trainer reported success but ", dir.Checkpoint(t), " has no config.json"));
  }
  json metrics = json::object();
  for (const auto& [k, v] : last.metrics()) metrics[k] = v;
  const double acc =
      last.metrics().count("rewards/accuracies") ? last.metrics().at("rewards/accuracies") : 0;
  SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
      dir.Train(t), {{"steps", last.step()}, {"final_loss", last.loss()}, {"metrics", metrics}}));
  ctx.UpdateJob([&](v1::Job& job) {
    job.mutable_rounds(t - 1)->set_train_loss(last.loss());
    job.mutable_rounds(t - 1)->set_reward_accuracy(acc);
  });
  return absl::OkStatus();
}

}  // namespace spar::orchestrator::internal
