// The trainer's configuration and its rules, without LibTorch: TrainConfig, Validate (the one
// home of the training rules: the trainer checks every run with it, and the orchestrator checks a
// job spec's training settings, per round, with it at CreateJob), the loss names and each loss's
// defaults. Device checks (bf16 needs CUDA) need torch and live in trainer.h (CheckDevice).
// Plain data and pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/mpo_defaults.h"

namespace spar::trainer {

class ProcessGroup;  // trainer/process_group.h

// Upper bounds on the counts of a TrainConfig (docs/job-spec.md, "Limits"): beyond them a run
// cannot finish on any machine we serve, so they are refused up front.
inline constexpr int kMaxEpochs = 1000;
inline constexpr int kMaxBatchSize = 1 << 16;
inline constexpr int kMaxGradientAccumulationSteps = 1 << 16;
inline constexpr int kMaxWarmupSteps = 10000000;
inline constexpr int kMaxSequenceLength = 1 << 20;  // max_length, max_prompt_length (tokens)
inline constexpr double kMaxWeightDecay = 1.0;

// Data-parallel group membership, torchrun-style (see DistributedFromEnv). world_size 1 = none.
struct DistributedConfig {
  int rank = 0;                           // this process, 0 .. world_size-1; rank 0 writes files
  int world_size = 1;                     // processes in the group
  std::string master_addr = "127.0.0.1";  // host of rank 0's TCPStore
  int master_port = 29500;                // port of rank 0's TCPStore
  int timeout_seconds = 120;              // rendezvous and collective timeout
  // An already joined group (not owned; outlives the call) to train on instead of joining one
  // from the fields above: the Trainer service joins once and runs every request on it. Its rank
  // and world size win over the fields above.
  ProcessGroup* group = nullptr;
};

struct TrainConfig {
  // Pairwise: "dpo" | "cdpo" | "robust" | "dno" | "ipo" | "ipo_sum" | "hinge" | "sppo" |
  // "sppo_hard" | "simpo" | "mpo" | "mpo_pg" | "sft" (TrainDpo: all; TrainSft: "sft"); formulas:
  // trainer/losses.h. Listwise (TrainListwise): "brain" | "brain_no_baseline" | "rrhf";
  // formulas: trainer/listwise_losses.h.
  std::string loss = "dpo";
  double beta = 0.1;  // β on the log-ratio margin (DNO's η; SPPO: η = 1/β); brain: the reward
                      // temperature of the target π_SFT·exp(r/β)
  double learning_rate = 1e-4;   // peak optimizer step size
  double weight_decay = 0.0;     // decoupled (AdamW) / L2 (RMSprop) weight decay; 0 = none
  int epochs = 1;                // passes over the data
  int batch_size = 16;           // pairs (or SFT examples) per optimizer step, over all ranks
  double max_grad_norm = 1.0;    // global-norm clipping threshold; 0 = no clipping
  double nll_weight = 0.0;       // any loss: + nll_weight * -log pi(y_w)/|y_w| (RPO); 0 = off
  uint64_t seed = 0;             // shuffle order (and torch's RNG)
  double label_smoothing = 0.1;  // ε of cdpo and robust, in [0, 0.5)
  double simpo_gamma = 1.6;      // γ (target margin) of simpo
  double mpo_alpha = kDefaultMpoAlpha;  // α: magnet strength of mpo / mpo_pg (0.5)
  double mpo_eta = kDefaultMpoEta;      // η: mirror-descent step of mpo / mpo_pg (11)
  std::string magnet_checkpoint;        // mpo / mpo_pg: frozen magnet π_mag; empty = π_t itself
  std::string prior_checkpoint;     // brain*: the prior π_SFT of the target; empty = π_t itself
  std::string optimizer = "adamw";  // "adamw" | "rmsprop" (torch defaults otherwise)
  std::string lr_scheduler = "constant";  // "constant" | "linear" | "cosine" (after warmup)
  double warmup_ratio = 0.0;  // warmup steps = ceil(ratio * total) when warmup_steps = 0
  int warmup_steps = 0;       // linear warmup from 0 (HF convention); 0 = use warmup_ratio
  int gradient_accumulation_steps = 1;  // micro-batches per optimizer step (per rank)
  int max_prompt_length = 0;            // prompt tokens kept (the last ones); 0 = no limit
  int max_length = 0;                   // prompt + response tokens kept (response cut at the end);
                                        // 0 = no limit
  bool length_bucketing = false;        // batch similar lengths together (deterministic given seed)
  // Activation checkpointing: keep only each decoder layer's input in the forward pass and
  // recompute the layer in backward (same gradients up to float rounding; less activation
  // memory, about one extra forward per step).
  bool gradient_checkpointing = false;
  // "no" (float32) | "bf16": the forward passes (policy, reference, magnet) under CUDA autocast
  // to bfloat16; losses, gradients and weights stay float32. bf16 needs a CUDA device (a CPU run
  // gets InvalidArgument naming this field).
  std::string mixed_precision = "no";
  int save_every_steps = 0;     // write train_state every N optimizer steps; 0 = never
  std::string train_state_dir;  // where; empty = "<out_checkpoint>.train_state"
  // How prompts are encoded, as the sampler does (model::Policy::EncodePrompt): "" / "none" = raw
  // text, "auto" = the checkpoint's chat template, or a template name (chatml, llama3, ...).
  std::string chat_template;
  DistributedConfig distributed;  // data-parallel group; default single process
};

// InvalidArgument naming the field as "<prefix>.<field>", e.g. "train.loss: unknown loss \"x\""
// or "spec.training.weight_decay must be finite and in [0, 1], got inf". Every number must be
// finite; counts are bounded by the kMax* limits above.
absl::Status Validate(const TrainConfig& config, const std::string& prefix = "train");

// The loss names TrainDpo and TrainListwise accept ("dpo", "cdpo", ..., "sft", then the listwise
// "brain", "brain_no_baseline", "rrhf").
const std::vector<std::string>& KnownLosses();
bool IsKnownLoss(const std::string& name);

// Whether `loss` trains on listwise groups (TrainListwise: brain, brain_no_baseline, rrhf) rather
// than on pairs (TrainDpo).
bool IsListwiseLoss(const std::string& loss);

// Whether `loss` weighs its targets by a prior π_SFT (brain, brain_no_baseline): the only losses
// that accept prior_checkpoint.
bool UsesPrior(const std::string& loss);

// Whether `loss` trains against a magnet π_mag (mpo / mpo_pg, ALGORITHMS.md §MPO): the only losses
// that accept magnet_checkpoint, and the ones algorithm "mpo" requires.
bool UsesMagnet(const std::string& loss);

// The defaults for one loss: β 2.0 for simpo (ALGORITHMS.md's table), β 0.001 (η = 1000) for
// sppo / sppo_hard, otherwise TrainConfig(); `loss` is set (unknown names are left for Validate to
// reject). Job specs take their training defaults from here too (orchestrator/job_spec.cc).
TrainConfig TrainConfigDefaults(const std::string& loss);

}  // namespace spar::trainer
