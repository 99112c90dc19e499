// Preference and supervised training of a model::Policy checkpoint: the loss family of
// ALGORITHMS.md §7 (trainer/losses.h; reference log-probs from the initial policy π_t computed
// once before the first update, magnet log-probs from a frozen checkpoint for MPO), AdamW or
// RMSprop with warmup + constant/linear/cosine schedules, gradient accumulation, global-norm
// clipping, truncation, length bucketing, resumable train_state/, activation checkpointing, bf16
// autocast on CUDA, and c10d data parallel (Gloo; NCCL for gradients on CUDA builds).
// Saves the result with Policy::Save (whole-directory atomic). No gRPC; torch stays in the .cc
// files. Thread-compatible: one training run per call; runs on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mpo_defaults.h"
#include "trainer/train_config.h"

namespace spar::trainer {

// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (all optional; absent = single process).
// InvalidArgument naming the variable for malformed values.
absl::StatusOr<DistributedConfig> DistributedFromEnv();

// InvalidArgument naming the field when `config` needs a device this process lacks
// (mixed_precision "bf16" without CUDA). TrainDpo / TrainSft check it too; services call it to
// refuse such a request up front.
absl::Status CheckDevice(const TrainConfig& config);

// What training will require of checkpoint `dir` before loading its weights (its config.json, its
// tokenizer files, a byte-tokenizer checkpoint's special ids): InvalidArgument naming
// "init_checkpoint" otherwise. Cheap; asked at CreateJob of the base model (validate_only).
absl::Status CheckInitCheckpoint(const std::string& dir);

struct PreferencePair {
  std::string prompt;
  std::string chosen;    // y_w
  std::string rejected;  // y_l
  // Optional judge data, each in [0, 1]: p = the judged P(y_w ≻ y_l) and the win rates
  // P̂ / q̂(y ≻ π_t). What each loss makes of them (σ(q̂_w - q̂_l) as dno's soft label when p is
  // absent, mpo_pg's advantages q̂ - ½, ...): TargetsFromJudgeData in trainer/losses.h.
  std::optional<double> p;
  std::optional<double> chosen_win_rate;
  std::optional<double> rejected_win_rate;
  // False for a response cut at max_new_tokens (samples.jsonl "finished": false): it is trained
  // and scored as its tokens alone, without the EOS a finished response ends with.
  bool chosen_finished = true;
  bool rejected_finished = true;
};

// One response of a listwise group.
struct ListwiseResponse {
  std::string text;
  double reward = 0;  // r(x, y): the judge's score of the response, any finite scale
  // log q(y|x) of the policy that sampled it (the sampler's untempered sequence log-prob, in
  // π_t's tokenization): brain's proposal. Required by brain and brain_no_baseline.
  std::optional<double> proposal_logprob;
  bool finished = true;  // false: cut at max_new_tokens (trained without EOS)
};

// Listwise training input (ALGORITHMS.md §9-§10): all the responses to one prompt, trained
// together.
struct ListwiseGroup {
  std::string prompt;
  std::vector<ListwiseResponse> responses;
};

struct SftExample {
  std::string prompt;
  std::string response;
};

struct TrainProgress {
  int step = 0;  // optimizer steps done (1-based after the first step)
  int total_steps = 0;
  double loss = 0;  // this step's loss
  double tokens_per_second = 0;
  std::map<std::string, double> metrics;  // this step's metrics (TRL names for DPO)
  int resumed_from_step = 0;  // steps restored from train_state when the run started; 0 = fresh
};

struct TrainResult {
  int steps = 0;
  double final_loss = 0;  // mean loss over the last epoch
  // DPO: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies, logps/chosen,
  // logps/rejected, loss — averaged over the last epoch. SFT: loss, nll/token.
  std::map<std::string, double> metrics;
  int64_t num_parameters = 0;
  double seconds = 0;
  int resumed_from_step = 0;  // steps restored from train_state; 0 = trained from step 0
};

// Called after every optimizer step; returning false cancels the run (CancelledError, nothing
// written).
using ProgressCallback = std::function<bool(const TrainProgress&)>;

// Trains with config.loss (any of the family; "sft" trains on the chosen responses) from
// init_checkpoint (pi_t, also the reference) into out_checkpoint (pi_{t+1}). Responses are scored
// as Policy::EncodeResponse encodes them: the tokens, then EOS unless the response is unfinished.
// InvalidArgument for a bad config, no pairs, an empty prompt/response (naming pairs[i].field), a
// checkpoint whose tokenizer is not the byte tokenizer; NotFound / InvalidArgument from loading;
// CancelledError when on_progress returns false (train_state, if any, is kept). With
// save_every_steps > 0 the run resumes from a matching train_state (same request) and removes it
// after success. With distributed.world_size > 1 every rank calls this with the same arguments;
// only rank 0 writes files. In a group, a failure to load or check the inputs on any rank fails the
// run on every rank (Internal on the ranks that did not fail themselves) and leaves the group
// usable; a failure during training marks it broken (ProcessGroup::healthy).
absl::StatusOr<TrainResult> TrainDpo(const std::string& init_checkpoint,
                                     const std::vector<PreferencePair>& pairs,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress = nullptr);

// Listwise training with config.loss "brain", "brain_no_baseline" or "rrhf"
// (trainer/listwise_losses.h) on `groups` (batch_size counts groups): as TrainDpo otherwise. brain
// weighs its targets by the prior π_SFT from config.prior_checkpoint (empty = init_checkpoint):
// its log-probs are scored once before the first update, like TrainDpo's reference.
// InvalidArgument naming groups[g].responses[k].field for a group with fewer than 2 responses, an
// empty text, a non-finite reward, or (brain) a missing or non-finite proposal_logprob.
absl::StatusOr<TrainResult> TrainListwise(const std::string& init_checkpoint,
                                          const std::vector<ListwiseGroup>& groups,
                                          const TrainConfig& config,
                                          const std::string& out_checkpoint,
                                          const ProgressCallback& on_progress = nullptr);

// SFT: loss -log pi(y)/|y| over response tokens (bytes(response) + EOS), prompt masked.
absl::StatusOr<TrainResult> TrainSft(const std::string& init_checkpoint,
                                     const std::vector<SftExample>& examples,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress = nullptr);

}  // namespace spar::trainer
