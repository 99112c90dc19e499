#include "trainer/internal/training_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "model/policy.h"
#include "trainer/internal/distributed.h"
#include "trainer/internal/train_inputs.h"
#include "trainer/internal/train_state.h"
#include "trainer/internal/train_util.h"
#include "trainer/listwise_losses.h"
#include "trainer/losses.h"
#include "trainer/process_group.h"

namespace spar::trainer::internal {
namespace {

using model::internal::TorchCall;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Judge data → the per-pair targets of the losses (see PreferencePair).
PairTargets TargetsOf(const PreferencePair& pair) {
  return TargetsFromJudgeData(pair.p, pair.chosen_win_rate, pair.rejected_win_rate);
}

// The sums of one optimizer step over its micro-batches and, in a group, over the ranks.
struct StepStats {
  double loss = 0;              // Σ per-example loss
  double chosen_rewards = 0;    // Σ chosen reward
  double rejected_rewards = 0;  // Σ rejected reward
  double correct = 0;           // examples whose reward margin is > 0
  double chosen_logps = 0;      // Σ ℓ_θ(y_w)
  double rejected_logps = 0;    // Σ ℓ_θ(y_l) (pairwise losses only)
  double examples = 0;          // examples in the step
  double chosen_tokens = 0;     // Σ |y_w| (scored response tokens)
  double chosen_nll = 0;        // Σ -ℓ_θ(y_w)
  double tokens = 0;            // real tokens fed
  // Listwise (examples count groups; chosen_* sum over every response):
  double responses = 0;  // responses in the step's groups
  double ess = 0;        // brain: Σ effective sample size of the target weights
  double rank_loss = 0;  // rrhf: Σ L_rank
  double ft_loss = 0;    // rrhf: Σ L_ft

  // Sums every field over the ranks: one float64 all-reduce of the fields in declaration order.
  void AllReduce(Communicator& comm) {
    std::vector<double> packed = {loss,         chosen_rewards, rejected_rewards, correct,
                                  chosen_logps, rejected_logps, examples,         chosen_tokens,
                                  chosen_nll,   tokens,         responses,        ess,
                                  rank_loss,    ft_loss};
    torch::Tensor s = torch::tensor(packed, torch::kFloat64);
    comm.AllReduceSum(s);
    for (size_t k = 0; k < packed.size(); ++k) packed[k] = s[k].item<double>();
    loss = packed[0];
    chosen_rewards = packed[1];
    rejected_rewards = packed[2];
    correct = packed[3];
    chosen_logps = packed[4];
    rejected_logps = packed[5];
    examples = packed[6];
    chosen_tokens = packed[7];
    chosen_nll = packed[8];
    tokens = packed[9];
    responses = packed[10];
    ess = packed[11];
    rank_loss = packed[12];
    ft_loss = packed[13];
  }
};

// The run's step counts, fixed before the first step.
struct Schedule {
  size_t global_batch = 0;  // pairs (or groups) per optimizer step, over all ranks
  int steps_per_epoch = 0;
  int total_steps = 0;
  int warmup = 0;  // warmup steps
};

// The state of one run; the public methods are the steps RunTraining takes in order.
class TrainingRun {
 public:
  TrainingRun(LossKind kind, const std::vector<PreferencePair>& pairs,
              const std::vector<ListwiseGroup>& groups, const TrainConfig& config,
              const ProgressCallback& on_progress)
      : kind_(kind),
        pairs_(pairs),
        groups_(groups),
        config_(config),
        on_progress_(on_progress),
        pairwise_(IsPairwise(kind)),
        listwise_(IsListwise(kind)),
        uses_magnet_(kind == LossKind::kMpo || kind == LossKind::kMpoPg),
        token_level_(kind == LossKind::kMpoPg),
        bf16_(config.mixed_precision == "bf16") {}

  // The group: the caller's (the Trainer service keeps one), or one joined for this run.
  absl::Status JoinGroup();
  Communicator* comm() const { return comm_; }
  // Rank 0 (or a single process) writes files.
  bool writer() const { return comm_ == nullptr || comm_->rank() == 0; }

  // Loads π_t (and the magnet), checks them and tokenizes every example with π_t's tokenizer.
  absl::Status LoadInputs(const std::string& init_checkpoint) {
    SPAR_ASSIGN_OR_RETURN(
        TrainInputs in,
        listwise_ ? LoadListwiseInputs(init_checkpoint, groups_, config_, NeedsReference(kind_))
                  : LoadTrainInputs(init_checkpoint, pairs_, config_, pairwise_, uses_magnet_));
    policy_ = std::move(in.policy);
    magnet_ = std::move(in.magnet);
    chosen_ = std::move(in.chosen);
    rejected_ = std::move(in.rejected);
    group_starts_ = std::move(in.group_starts);
    return absl::OkStatus();
  }
  // The training itself; throws c10::Error (RunTraining calls it under TorchCall).
  absl::StatusOr<TrainResult> Train(const std::string& state_dir, const std::string& fingerprint);
  // Rank 0 saves the trained policy and removes train_state (when save_state).
  absl::Status Write(const std::string& out_checkpoint, bool save_state,
                     const std::string& state_dir);

 private:
  size_t Units() const { return listwise_ ? groups_.size() : pairs_.size(); }
  void PrepareData();
  void PrepareGroups();
  absl::StatusOr<bool> InitState(const std::string& state_dir, const std::string& fingerprint);
  void ScoreFrozenLogps();
  void MakeSchedule();
  absl::Status TrainEpochs(const std::string& state_dir, const std::string& fingerprint);
  absl::Status Step(const std::vector<size_t>& global_idx, const std::string& rng_at_epoch,
                    const std::string& state_dir, const std::string& fingerprint);
  void MicroBatch(const std::vector<size_t>& idx, double global_count, StepStats& stats);
  void ListwiseMicroBatch(const std::vector<size_t>& idx, double global_count, StepStats& stats);
  torch::Tensor Forward(const std::vector<const TokenizedExample*>& rows,
                        model::internal::ScoreBatch* batch);
  PairLossInputs LossInputs(const std::vector<size_t>& idx, const torch::Tensor& token_logps,
                            const torch::Tensor& seq, const torch::Tensor& lens) const;
  void AllReduceGradients();
  absl::StatusOr<double> Update(StepStats& stats);
  std::map<std::string, double> StepMetrics(const StepStats& stats) const;
  bool Report(const StepStats& stats, const std::map<std::string, double>& m, double lr,
              Clock::time_point step_t0) const;
  TrainResult Result(Clock::time_point t0) const;

  const LossKind kind_;
  const std::vector<PreferencePair>& pairs_;
  const std::vector<ListwiseGroup>& groups_;
  const TrainConfig& config_;
  const ProgressCallback& on_progress_;
  const bool pairwise_, listwise_, uses_magnet_, token_level_, bf16_;

  std::unique_ptr<Communicator> owned_comm_;
  Communicator* comm_ = nullptr;
  std::unique_ptr<model::Policy> policy_, magnet_;
  std::vector<TokenizedExample> chosen_, rejected_;  // listwise: chosen_ holds every response
  std::vector<size_t> group_starts_;  // listwise: group g is chosen_[starts[g], starts[g+1])

  // PrepareData: batching lengths, per-pair loss targets, per-token offsets.
  std::vector<size_t> lengths_;
  torch::Tensor p_t_, win_c_t_, win_r_t_, adv_c_t_, adv_r_t_;
  torch::Tensor reward_t_, proposal_t_;  // listwise: per response (float64)
  std::vector<int64_t> off_c_, off_r_;

  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  TrainState state_;
  bool resumed_ = false;
  int resumed_from_step_ = 0;
  Schedule schedule_;
  LossParams loss_params_;
  std::vector<torch::Tensor> params_list_;
  std::mt19937_64 rng_;
  int step_ = 0;
  MetricMeans epoch_means_;
};

absl::Status TrainingRun::JoinGroup() {
  const DistributedConfig& dist = config_.distributed;
  if (dist.group != nullptr) {
    comm_ = dist.group->communicator();
    if (!comm_->healthy()) {
      return absl::FailedPreconditionError(
          "distributed.group is broken (a collective failed earlier); restart every rank");
    }
  } else if (dist.world_size > 1) {
    SPAR_ASSIGN_OR_RETURN(owned_comm_, Communicator::Create(dist));
    comm_ = owned_comm_.get();
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> TrainingRun::Train(const std::string& state_dir,
                                               const std::string& fingerprint) {
  const auto t0 = Clock::now();
  torch::manual_seed(config_.seed);
  PrepareData();
  SPAR_ASSIGN_OR_RETURN(resumed_, InitState(state_dir, fingerprint));
  if (comm_) comm_->Barrier();  // every rank has read the state before rank 0 may rewrite it

  auto& module = policy_->impl().module;
  module->train();
  module->set_gradient_checkpointing(config_.gradient_checkpointing);
  rng_.seed(config_.seed);
  MakeSchedule();
  loss_params_ = LossParams{config_.beta,      config_.label_smoothing, config_.simpo_gamma,
                            config_.mpo_alpha, config_.mpo_eta,         config_.nll_weight};
  params_list_ = module->parameters();
  SPAR_RETURN_IF_ERROR(TrainEpochs(state_dir, fingerprint));
  return Result(t0);
}

// Batching lengths, the per-pair loss targets from the judge data, the per-token offsets.
void TrainingRun::PrepareData() {
  if (listwise_) return PrepareGroups();
  const size_t n = pairs_.size();
  lengths_.assign(n, 0);
  std::vector<float> p(n), win_c(n), win_r(n), adv_c(n), adv_r(n);
  for (size_t i = 0; i < n; ++i) {
    lengths_[i] = chosen_[i].prompt.size() + chosen_[i].response.size();
    if (pairwise_) {
      lengths_[i] =
          std::max(lengths_[i], rejected_[i].prompt.size() + rejected_[i].response.size());
    }
    const PairTargets targets = TargetsOf(pairs_[i]);
    p[i] = static_cast<float>(targets.p);
    win_c[i] = static_cast<float>(targets.win_chosen);
    win_r[i] = static_cast<float>(targets.win_rejected);
    adv_c[i] = static_cast<float>(targets.adv_chosen);
    adv_r[i] = static_cast<float>(targets.adv_rejected);
  }
  off_c_ = Offsets(chosen_);
  off_r_ = Offsets(rejected_);
  p_t_ = torch::tensor(p);
  win_c_t_ = torch::tensor(win_c);
  win_r_t_ = torch::tensor(win_r);
  adv_c_t_ = torch::tensor(adv_c);
  adv_r_t_ = torch::tensor(adv_r);
}

// Listwise: a group's batching length is its longest response's; rewards and proposal log-probs
// per response (NaN where a proposal is absent: only rrhf, which does not read it).
void TrainingRun::PrepareGroups() {
  lengths_.assign(groups_.size(), 0);
  std::vector<double> reward, proposal;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t r = group_starts_[g]; r < group_starts_[g + 1]; ++r) {
      lengths_[g] = std::max(lengths_[g], chosen_[r].prompt.size() + chosen_[r].response.size());
    }
    for (const ListwiseResponse& resp : groups_[g].responses) {
      reward.push_back(resp.reward);
      proposal.push_back(resp.proposal_logprob.value_or(std::nan("")));
    }
  }
  reward_t_ = torch::tensor(reward, torch::kFloat64);
  proposal_t_ = torch::tensor(proposal, torch::kFloat64);
}

// The optimizer, then either a matching train_state (weights, optimizer, RNGs, cached log-probs)
// or the frozen log-probs scored now. True when resumed.
absl::StatusOr<bool> TrainingRun::InitState(const std::string& state_dir,
                                            const std::string& fingerprint) {
  auto& module = policy_->impl().module;
  optimizer_ = MakeOptimizer(module, config_);
  bool resumed = false;
  if (config_.save_every_steps > 0) {
    SPAR_ASSIGN_OR_RETURN(resumed,
                          LoadTrainState(state_dir, fingerprint, state_, module, *optimizer_));
  }
  resumed_from_step_ = resumed ? static_cast<int>(state_.step) : 0;
  if (!resumed) {
    ScoreFrozenLogps();
  } else {
    SetTorchRng(state_.torch_rng);
  }
  magnet_.reset();
  return resumed;
}

// Reference log-probs once, before any update: π_t's, or (brain) the prior's from its frozen
// checkpoint when one is given (then freed); the magnet's from its frozen checkpoint (then
// freed), or π_t's when no magnet is given.
void TrainingRun::ScoreFrozenLogps() {
  model::Policy::Impl& impl = policy_->impl();
  if (NeedsReference(kind_)) {
    model::Policy::Impl& ri = listwise_ && magnet_ ? magnet_->impl() : impl;
    ScoreFrozen(ri.module, ri.config, ri.device, chosen_, token_level_, bf16_, &state_.ref.chosen,
                &state_.ref.token_chosen);
    if (pairwise_) {
      ScoreFrozen(impl.module, impl.config, impl.device, rejected_, token_level_, bf16_,
                  &state_.ref.rejected, &state_.ref.token_rejected);
    }
  }
  if (uses_magnet_ && magnet_) {
    model::Policy::Impl& mi = magnet_->impl();
    ScoreFrozen(mi.module, mi.config, mi.device, chosen_, token_level_, bf16_,
                &state_.magnet.chosen, &state_.magnet.token_chosen);
    ScoreFrozen(mi.module, mi.config, mi.device, rejected_, token_level_, bf16_,
                &state_.magnet.rejected, &state_.magnet.token_rejected);
  } else if (uses_magnet_) {
    state_.magnet = state_.ref;
  }
}

void TrainingRun::MakeSchedule() {
  const size_t n = Units();
  schedule_.global_batch = static_cast<size_t>(config_.batch_size);
  schedule_.steps_per_epoch =
      static_cast<int>((n + schedule_.global_batch - 1) / schedule_.global_batch);
  schedule_.total_steps = schedule_.steps_per_epoch * config_.epochs;
  schedule_.warmup =
      config_.warmup_steps > 0
          ? config_.warmup_steps
          : static_cast<int>(std::ceil(config_.warmup_ratio * schedule_.total_steps));
}

absl::Status TrainingRun::TrainEpochs(const std::string& state_dir,
                                      const std::string& fingerprint) {
  step_ = static_cast<int>(state_.step);
  const int start_epoch = step_ / schedule_.steps_per_epoch;
  if (resumed_) {
    std::istringstream in(state_.epoch_rng);
    in >> rng_;
  } else {
    // Skip to the start epoch (fresh runs start at 0).
    for (int e = 0; e < start_epoch; ++e) {
      EpochBatches(lengths_, schedule_.global_batch, config_.length_bucketing, rng_);
    }
  }
  for (int epoch = start_epoch; epoch < config_.epochs; ++epoch) {
    epoch_means_.Clear();
    std::ostringstream rng_at_epoch;
    rng_at_epoch << rng_;
    const std::vector<std::vector<size_t>> batches =
        EpochBatches(lengths_, schedule_.global_batch, config_.length_bucketing, rng_);
    for (size_t bi = step_ - epoch * schedule_.steps_per_epoch; bi < batches.size(); ++bi) {
      SPAR_RETURN_IF_ERROR(Step(batches[bi], rng_at_epoch.str(), state_dir, fingerprint));
    }
  }
  return absl::OkStatus();
}

// One optimizer step on the global batch `global_idx`: this rank's share in micro-batches, the
// update, train_state, progress, and the cancellation every rank agrees on.
absl::Status TrainingRun::Step(const std::vector<size_t>& global_idx,
                               const std::string& rng_at_epoch, const std::string& state_dir,
                               const std::string& fingerprint) {
  const auto step_t0 = Clock::now();
  const double global_count = static_cast<double>(global_idx.size());
  const int world = comm_ ? comm_->world_size() : 1;
  const int rank = comm_ ? comm_->rank() : 0;
  // This rank's share, then micro-batches.
  const size_t per_rank = (global_idx.size() + world - 1) / world;
  const size_t lo = std::min(global_idx.size(), rank * per_rank);
  const size_t hi = std::min(global_idx.size(), lo + per_rank);
  const size_t local = hi - lo;
  const size_t accum = static_cast<size_t>(config_.gradient_accumulation_steps);
  const size_t micro = std::max<size_t>(1, (local + accum - 1) / accum);
  optimizer_->zero_grad();
  StepStats stats;
  for (size_t m = lo; m < hi; m += micro) {
    std::vector<size_t> idx(global_idx.begin() + m, global_idx.begin() + std::min(hi, m + micro));
    MicroBatch(idx, global_count, stats);
  }
  SPAR_ASSIGN_OR_RETURN(const double lr, Update(stats));
  const std::map<std::string, double> m = StepMetrics(stats);
  epoch_means_.Add(m, std::max(1.0, stats.examples));
  if (config_.save_every_steps > 0 && step_ % config_.save_every_steps == 0 &&
      step_ < schedule_.total_steps && writer()) {
    state_.step = step_;
    state_.epoch_rng = rng_at_epoch;
    state_.torch_rng = GetTorchRng();
    SPAR_RETURN_IF_ERROR(
        SaveTrainState(state_dir, fingerprint, state_, policy_->impl().module, *optimizer_));
  }
  bool cancel = on_progress_ ? !Report(stats, m, lr, step_t0) : false;
  if (comm_) cancel = CountRanks(*comm_, cancel) > 0;
  if (cancel) return absl::CancelledError(absl::StrCat("training cancelled at step ", step_));
  return absl::OkStatus();
}

// One micro-batch: chosen rows first, then rejected, in one padded forward; the loss, and the
// backward of its share of the global batch mean; its sums added to `stats`.
void TrainingRun::MicroBatch(const std::vector<size_t>& idx, double global_count,
                             StepStats& stats) {
  if (listwise_) return ListwiseMicroBatch(idx, global_count, stats);
  const int64_t b = static_cast<int64_t>(idx.size());
  std::vector<const TokenizedExample*> rows;
  for (size_t i : idx) rows.push_back(&chosen_[i]);
  if (pairwise_) {
    for (size_t i : idx) rows.push_back(&rejected_[i]);
  }
  model::internal::ScoreBatch batch;
  torch::Tensor token_logps = Forward(rows, &batch);
  torch::Tensor seq = token_logps.sum(-1);
  torch::Tensor lens = batch.target_mask.sum(-1).clamp_min(1.0);
  const PairLossInputs in = LossInputs(idx, token_logps, seq, lens);
  PairLossOutput out = PairLoss(kind_, in, loss_params_);  // NLL term included
  const torch::Tensor& losses = out.losses;
  // Sum over this micro-batch / global batch size: the gradients summed over micro-batches
  // and ranks are the gradient of the global batch mean.
  (losses.sum() / global_count).backward();
  torch::Tensor margins = out.chosen_rewards - out.rejected_rewards;
  stats.loss += losses.detach().sum().item<double>();
  stats.chosen_rewards += out.chosen_rewards.sum().item<double>();
  stats.rejected_rewards += out.rejected_rewards.sum().item<double>();
  stats.correct += (margins > 0).to(torch::kFloat64).sum().item<double>();
  stats.chosen_logps += in.policy_chosen.detach().sum().item<double>();
  if (pairwise_) stats.rejected_logps += in.policy_rejected.detach().sum().item<double>();
  stats.examples += static_cast<double>(b);
  stats.chosen_tokens += in.chosen_len.sum().item<double>();
  stats.chosen_nll += -in.policy_chosen.detach().sum().item<double>();
  stats.tokens += static_cast<double>(batch.num_tokens);
}

// `rows` in one padded forward of π_θ (autocast for the forward only; backward in float32):
// per-token log-probs [rows, T] in float32, the batch in *batch.
torch::Tensor TrainingRun::Forward(const std::vector<const TokenizedExample*>& rows,
                                   model::internal::ScoreBatch* batch) {
  model::Policy::Impl& impl = policy_->impl();
  std::vector<std::vector<int32_t>> prompts, responses;
  std::vector<int64_t> firsts;
  for (const TokenizedExample* ex : rows) {
    firsts.push_back(ex->first);
    prompts.push_back(ex->prompt);
    responses.push_back(ex->response);
  }
  *batch = model::internal::MakeScoreBatch(prompts, responses, firsts, impl.config.pad_token_id,
                                           impl.device);
  model::internal::CudaAutocast autocast(bf16_);
  return model::internal::TokenLogProbs(impl.module, *batch).to(torch::kFloat32);
}

// One listwise micro-batch: every response of groups `idx` in one padded forward, laid out as
// [groups, longest group] for the loss (padding masked); the backward of its share of the global
// batch mean; its sums added to `stats`.
void TrainingRun::ListwiseMicroBatch(const std::vector<size_t>& idx, double global_count,
                                     StepStats& stats) {
  model::Policy::Impl& impl = policy_->impl();
  const int64_t g_count = static_cast<int64_t>(idx.size());
  int64_t width = 0;
  for (size_t g : idx) {
    width = std::max(width, static_cast<int64_t>(group_starts_[g + 1] - group_starts_[g]));
  }
  std::vector<int64_t> slots;
  std::vector<size_t> rows;
  std::vector<const TokenizedExample*> examples;
  for (int64_t gi = 0; gi < g_count; ++gi) {
    const size_t g = idx[gi];
    for (size_t r = group_starts_[g]; r < group_starts_[g + 1]; ++r) {
      examples.push_back(&chosen_[r]);
      rows.push_back(r);
      slots.push_back(gi * width + static_cast<int64_t>(r - group_starts_[g]));
    }
  }
  model::internal::ScoreBatch batch;
  torch::Tensor token_logps = Forward(examples, &batch);
  torch::Tensor seq = token_logps.sum(-1);
  torch::Tensor lens = batch.target_mask.sum(-1).to(torch::kFloat32);
  const torch::Tensor slot = torch::tensor(slots, torch::kInt64).to(impl.device);
  // [R] per response -> [G, width], zeros on padding (index_copy is differentiable in `flat`).
  auto grid = [&](const torch::Tensor& flat) {
    return torch::zeros({g_count * width}, flat.options())
        .index_copy(0, slot, flat)
        .view({g_count, width});
  };
  ListwiseInputs in;
  in.policy_logp = grid(seq);
  in.lengths = grid(lens);
  in.mask = grid(torch::ones_like(lens));
  in.rewards = grid(Select(reward_t_, rows, impl.device));
  torch::Tensor losses;
  if (kind_ == LossKind::kRrhf) {
    RrhfOutput out = RrhfLoss(in);
    losses = out.losses;
    stats.rank_loss += out.rank_losses.sum().item<double>();
    stats.ft_loss += out.ft_losses.sum().item<double>();
  } else {
    in.proposal_logp = grid(Select(proposal_t_, rows, impl.device));
    in.sft_logp = grid(Select(state_.ref.chosen, rows, impl.device).to(torch::kFloat64));
    BrainOutput out = BrainLoss(in, config_.beta,
                                kind_ == LossKind::kBrain ? BrainVariant::kSelfNormalizedBaseline
                                                          : BrainVariant::kNoBaseline);
    losses = out.losses;
    stats.ess += out.effective_sample_size.sum().item<double>();
  }
  (losses.sum() / global_count).backward();
  stats.loss += losses.detach().sum().item<double>();
  stats.examples += static_cast<double>(g_count);
  stats.responses += static_cast<double>(rows.size());
  stats.chosen_logps += seq.detach().sum().item<double>();
  stats.chosen_tokens += lens.sum().item<double>();
  stats.chosen_nll += -seq.detach().sum().item<double>();
  stats.tokens += static_cast<double>(batch.num_tokens);
}

// The loss inputs of rows `idx` (b rows; `seq`, `lens`, `token_logps` hold the chosen rows,
// then the rejected ones).
PairLossInputs TrainingRun::LossInputs(const std::vector<size_t>& idx,
                                       const torch::Tensor& token_logps, const torch::Tensor& seq,
                                       const torch::Tensor& lens) const {
  const torch::Device device = policy_->impl().device;
  const int64_t b = static_cast<int64_t>(idx.size());
  PairLossInputs in;
  in.policy_chosen = seq.narrow(0, 0, b);
  in.chosen_len = lens.narrow(0, 0, b);
  if (pairwise_) {
    in.policy_rejected = seq.narrow(0, b, b);
    in.rejected_len = lens.narrow(0, b, b);
  }
  if (NeedsReference(kind_)) {
    in.ref_chosen = Select(state_.ref.chosen, idx, device);
    in.ref_rejected = Select(state_.ref.rejected, idx, device);
  }
  if (uses_magnet_) {
    in.magnet_chosen = Select(state_.magnet.chosen, idx, device);
    in.magnet_rejected = Select(state_.magnet.rejected, idx, device);
  }
  in.p = Select(p_t_, idx, device);
  in.win_chosen = Select(win_c_t_, idx, device);
  in.win_rejected = Select(win_r_t_, idx, device);
  in.adv_chosen = Select(adv_c_t_, idx, device);
  in.adv_rejected = Select(adv_r_t_, idx, device);
  if (token_level_) {
    const int64_t width = token_logps.size(1);
    in.token_policy_chosen = token_logps.narrow(0, 0, b);
    in.token_policy_rejected = token_logps.narrow(0, b, b);
    in.token_ref_chosen =
        GatherTokens(state_.ref.token_chosen, off_c_, chosen_, idx, width).to(device);
    in.token_ref_rejected =
        GatherTokens(state_.ref.token_rejected, off_r_, rejected_, idx, width).to(device);
    in.token_magnet_chosen =
        GatherTokens(state_.magnet.token_chosen, off_c_, chosen_, idx, width).to(device);
    in.token_magnet_rejected =
        GatherTokens(state_.magnet.token_rejected, off_r_, rejected_, idx, width).to(device);
  }
  return in;
}

// One flat all-reduce of every gradient (fp32; CPU over Gloo, CUDA over NCCL), copied back.
void TrainingRun::AllReduceGradients() {
  std::vector<torch::Tensor> flat_parts;
  for (torch::Tensor& prm : params_list_) {
    flat_parts.push_back(prm.grad().reshape({-1}).to(comm_->gradient_device(), torch::kFloat32));
  }
  torch::Tensor flat = torch::cat(flat_parts);
  comm_->AllReduceSum(flat);
  int64_t o = 0;
  for (torch::Tensor& prm : params_list_) {
    const int64_t k = prm.numel();
    prm.mutable_grad().copy_(flat.narrow(0, o, k).view(prm.sizes()));
    o += k;
  }
}

// Sums the gradients and `stats` over the ranks, refuses a non-finite loss, and takes the
// optimizer step (schedule, clipping). The step's learning rate.
absl::StatusOr<double> TrainingRun::Update(StepStats& stats) {
  for (torch::Tensor& prm : params_list_) {
    if (!prm.grad().defined()) prm.mutable_grad() = torch::zeros_like(prm);
  }
  if (comm_) {
    AllReduceGradients();
    stats.AllReduce(*comm_);
  }
  // A diverged step fails the run: nothing non-finite is ever applied or saved (#12).
  if (!std::isfinite(stats.loss)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "non-finite loss at step ", step_ + 1, " (", stats.loss / std::max(1.0, stats.examples),
        "): check training.beta, learning_rate, nll_weight and the data"));
  }
  const double lr = config_.learning_rate *
                    LrFactor(config_.lr_scheduler, step_, schedule_.total_steps, schedule_.warmup);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  if (config_.max_grad_norm > 0) {
    torch::nn::utils::clip_grad_norm_(params_list_, config_.max_grad_norm);
  }
  optimizer_->step();
  ++step_;
  SPAR_RETURN_IF_ERROR(CheckFiniteWeights(params_list_, step_));
  return lr;
}

// This step's metrics (TRL names for the pairwise losses).
std::map<std::string, double> TrainingRun::StepMetrics(const StepStats& s) const {
  const double count = std::max(1.0, s.examples);
  std::map<std::string, double> m;
  m["loss"] = s.loss / count;
  if (listwise_) {
    const double responses = std::max(1.0, s.responses);
    m["logps/responses"] = s.chosen_logps / responses;
    m["nll/token"] = s.chosen_nll / std::max(1.0, s.chosen_tokens);
    m["group/responses"] = s.responses / count;
    if (kind_ == LossKind::kRrhf) {
      m["rrhf/rank_loss"] = s.rank_loss / count;
      m["rrhf/ft_loss"] = s.ft_loss / count;
    } else {
      m["brain/effective_sample_size"] = s.ess / count;
    }
    return m;
  }
  m["logps/chosen"] = s.chosen_logps / count;
  if (pairwise_) {
    m["rewards/chosen"] = s.chosen_rewards / count;
    m["rewards/rejected"] = s.rejected_rewards / count;
    m["rewards/margins"] = (s.chosen_rewards - s.rejected_rewards) / count;
    m["rewards/accuracies"] = s.correct / count;
    m["logps/rejected"] = s.rejected_logps / count;
  } else {
    m["nll/token"] = s.chosen_nll / std::max(1.0, s.chosen_tokens);
  }
  return m;
}

// Calls on_progress; false when it asks to cancel.
bool TrainingRun::Report(const StepStats& stats, const std::map<std::string, double>& m, double lr,
                         Clock::time_point step_t0) const {
  TrainProgress progress;
  progress.step = step_;
  progress.total_steps = schedule_.total_steps;
  progress.loss = m.at("loss");
  progress.tokens_per_second = stats.tokens / std::max(1e-9, Seconds(step_t0));
  progress.metrics = m;
  progress.metrics["tokens"] = stats.tokens;
  progress.metrics["learning_rate"] = lr;
  progress.resumed_from_step = resumed_from_step_;
  return on_progress_(progress);
}

TrainResult TrainingRun::Result(Clock::time_point t0) const {
  TrainResult result;
  result.num_parameters = policy_->NumParameters();
  result.steps = step_;
  result.resumed_from_step = resumed_from_step_;
  result.metrics = epoch_means_.Means();
  // What the examples were tokenized into (first id included): how a caller checks the
  // tokenizer and chat template the trainer used.
  double prompt_tokens = 0, response_tokens = 0;
  for (const TokenizedExample& ex : chosen_) {
    prompt_tokens += 1.0 + static_cast<double>(ex.prompt.size());
    response_tokens += static_cast<double>(ex.response.size());
  }
  result.metrics["data/prompt_tokens"] = prompt_tokens;
  result.metrics[listwise_ ? "data/response_tokens" : "data/chosen_tokens"] = response_tokens;
  result.final_loss = result.metrics["loss"];
  result.seconds = Seconds(t0);
  policy_->impl().module->eval();
  return result;
}

absl::Status TrainingRun::Write(const std::string& out_checkpoint, bool save_state,
                                const std::string& state_dir) {
  if (!writer()) return absl::OkStatus();
  absl::Status written = policy_->Save(out_checkpoint);
  if (written.ok() && save_state) written = RemoveAll(state_dir);
  return written;
}

}  // namespace

absl::StatusOr<TrainResult> RunTraining(const char* what, const std::string& init_checkpoint,
                                        const std::vector<PreferencePair>& pairs,
                                        const std::vector<ListwiseGroup>& groups,
                                        const TrainConfig& config,
                                        const std::string& out_checkpoint,
                                        const ProgressCallback& on_progress) {
  SPAR_ASSIGN_OR_RETURN(const LossKind kind, ParseLossKind(config.loss));
  TrainingRun run(kind, pairs, groups, config, on_progress);
  SPAR_RETURN_IF_ERROR(run.JoinGroup());
  // Every rank learns whether any rank failed to set up, so all return before the training
  // collectives and the group stays in step.
  SPAR_RETURN_IF_ERROR(
      AgreeAll(run.comm(), run.LoadInputs(init_checkpoint), "setup agreement", [](double n) {
        return absl::StrCat(
            n, " other rank(s) failed to load or check the run's inputs (see their logs)");
      }));
  const bool save_state = config.save_every_steps > 0;
  const std::string state_dir = !config.train_state_dir.empty()
                                    ? config.train_state_dir
                                    : absl::StrCat(out_checkpoint, ".train_state");
  const std::string fingerprint = RequestFingerprint(init_checkpoint, pairs, groups, config);
  absl::StatusOr<TrainResult> result =
      TorchCall(what, [&] { return run.Train(state_dir, fingerprint); });
  if (!result.ok()) {
    // Cancellation is agreed by an all-reduce each step; any other failure may have left the
    // ranks at different points of the collective sequence.
    if (run.comm() && !absl::IsCancelled(result.status())) run.comm()->MarkBroken();
    return result.status();
  }
  // Doubles as the final barrier: every rank learns whether rank 0's write succeeded.
  SPAR_RETURN_IF_ERROR(AgreeAll(
      run.comm(), run.Write(out_checkpoint, save_state, state_dir), "write agreement",
      [](double) { return std::string("rank 0 failed to write the checkpoint (see its log)"); }));
  return result;
}

}  // namespace spar::trainer::internal
