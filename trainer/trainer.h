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

namespace spar::trainer {

class ProcessGroup;  // trainer/process_group.h

// Data-parallel group membership, torchrun-style (see DistributedFromEnv). world_size 1 = none.
struct DistributedConfig {
  int rank = 0;                        // this process, 0 .. world_size-1; rank 0 writes files
  int world_size = 1;                  // processes in the group
  std::string master_addr = "127.0.0.1";  // host of rank 0's TCPStore
  int master_port = 29500;             // port of rank 0's TCPStore
  int timeout_seconds = 120;           // rendezvous and collective timeout
  // An already joined group (not owned; outlives the call) to train on instead of joining one
  // from the fields above: the Trainer service joins once and runs every request on it. Its rank
  // and world size win over the fields above.
  ProcessGroup* group = nullptr;
};

// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (all optional; absent = single process).
// InvalidArgument naming the variable for malformed values.
absl::StatusOr<DistributedConfig> DistributedFromEnv();

struct TrainConfig {
  // "dpo" | "cdpo" | "robust" | "dno" | "ipo" | "ipo_sum" | "hinge" | "sppo" | "sppo_hard" |
  // "simpo" | "mpo" | "mpo_pg" | "sft" (TrainDpo: all; TrainSft: "sft"). Formulas:
  // trainer/losses.h.
  std::string loss = "dpo";
  double beta = 0.1;               // β on the log-ratio margin (DNO's η; SPPO: η = 1/β)
  double learning_rate = 1e-4;     // peak optimizer step size
  double weight_decay = 0.0;       // decoupled (AdamW) / L2 (RMSprop) weight decay; 0 = none
  int epochs = 1;                  // passes over the data
  int batch_size = 16;             // pairs (or SFT examples) per optimizer step, over all ranks
  double max_grad_norm = 1.0;      // global-norm clipping threshold; 0 = no clipping
  double nll_weight = 0.0;         // any loss: + nll_weight * -log pi(y_w)/|y_w| (RPO); 0 = off
  uint64_t seed = 0;               // shuffle order (and torch's RNG)
  double label_smoothing = 0.1;    // ε of cdpo and robust, in [0, 0.5)
  double simpo_gamma = 1.6;        // γ (target margin) of simpo
  double mpo_alpha = kDefaultMpoAlpha;  // α: magnet strength of mpo / mpo_pg (0.5)
  double mpo_eta = kDefaultMpoEta;      // η: mirror-descent step of mpo / mpo_pg (11)
  std::string magnet_checkpoint;   // mpo / mpo_pg: frozen magnet π_mag; empty = π_t itself
  std::string optimizer = "adamw";      // "adamw" | "rmsprop" (torch defaults otherwise)
  std::string lr_scheduler = "constant";  // "constant" | "linear" | "cosine" (after warmup)
  double warmup_ratio = 0.0;       // warmup steps = ceil(ratio * total) when warmup_steps = 0
  int warmup_steps = 0;            // linear warmup from 0 (HF convention); 0 = use warmup_ratio
  int gradient_accumulation_steps = 1;  // micro-batches per optimizer step (per rank)
  int max_prompt_length = 0;       // prompt tokens kept (the last ones); 0 = no limit
  int max_length = 0;              // prompt + response tokens kept (response cut at the end);
                                   // 0 = no limit
  bool length_bucketing = false;   // batch similar lengths together (deterministic given seed)
  // Activation checkpointing: keep only each decoder layer's input in the forward pass and
  // recompute the layer in backward (same gradients up to float rounding; less activation
  // memory, about one extra forward per step).
  bool gradient_checkpointing = false;
  // "no" (float32) | "bf16": the forward passes (policy, reference, magnet) under CUDA autocast
  // to bfloat16; losses, gradients and weights stay float32. bf16 needs a CUDA device (a CPU run
  // gets InvalidArgument naming this field).
  std::string mixed_precision = "no";
  int save_every_steps = 0;        // write train_state every N optimizer steps; 0 = never
  std::string train_state_dir;     // where; empty = "<out_checkpoint>.train_state"
  // How prompts are encoded, as the sampler does (model::Policy::EncodePrompt): "" / "none" = raw
  // text, "auto" = the checkpoint's chat template, or a template name (chatml, llama3, ...).
  std::string chat_template;
  DistributedConfig distributed;   // data-parallel group; default single process
};

// InvalidArgument naming the field, e.g. "train.loss: unknown loss \"x\"".
absl::Status Validate(const TrainConfig& config);

// InvalidArgument naming the field when `config` needs a device this process lacks
// (mixed_precision "bf16" without CUDA). TrainDpo / TrainSft check it too; services call it to
// refuse such a request up front.
absl::Status CheckDevice(const TrainConfig& config);

// The defaults for one loss: β 2.0 for simpo, β 0.001 (η = 1000) for sppo / sppo_hard, otherwise
// TrainConfig(); `loss` is set (unknown names are left for Validate to reject).
TrainConfig TrainConfigDefaults(const std::string& loss);

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

struct SftExample {
  std::string prompt;
  std::string response;
};

struct TrainProgress {
  int step = 0;         // optimizer steps done (1-based after the first step)
  int total_steps = 0;
  double loss = 0;      // this step's loss
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

// SFT: loss -log pi(y)/|y| over response tokens (bytes(response) + EOS), prompt masked.
absl::StatusOr<TrainResult> TrainSft(const std::string& init_checkpoint,
                                     const std::vector<SftExample>& examples,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress = nullptr);

}  // namespace spar::trainer
