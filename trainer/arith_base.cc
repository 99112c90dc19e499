#include "trainer/arith_base.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "trainer/internal/train_util.h"

namespace spar::trainer {

model::LlamaConfig ArithBaseModelConfig() {
  model::LlamaConfig c;
  c.vocab_size = model::ByteTokenizer::kVocabSize;
  c.hidden_size = 128;
  c.intermediate_size = 352;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = true;
  c.bos_token_id = model::ByteTokenizer::kBos;
  c.eos_token_id = model::ByteTokenizer::kEos;
  c.pad_token_id = model::ByteTokenizer::kPad;
  return c;
}

absl::StatusOr<double> ArithGreedyAccuracy(model::Policy& policy,
                                           const std::vector<ArithProblem>& problems,
                                           int max_new_tokens) {
  if (problems.empty()) return absl::InvalidArgumentError("problems: empty");
  std::vector<std::string> prompts;
  for (const auto& p : problems) prompts.push_back(p.prompt);
  model::GenerationParams params;
  params.temperature = 0;
  params.max_new_tokens = max_new_tokens;
  SPAR_ASSIGN_OR_RETURN(std::vector<model::Generation> gens, policy.Generate(prompts, params));
  int correct = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    if (ArithCorrect(problems[i].prompt, gens[i].texts[0])) ++correct;
  }
  return static_cast<double>(correct) / problems.size();
}

absl::StatusOr<ArithBaseReport> BuildArithBaseModel(
    const ArithBaseOptions& o, const std::function<void(const ArithBaseProgress&)>& on_progress) {
  if (o.out_dir.empty()) return absl::InvalidArgumentError("arith_base.out_dir is empty");
  if (!(o.target_accuracy >= 0 && o.target_accuracy <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("arith_base.target_accuracy must be in [0, 1], got ", o.target_accuracy));
  }
  if (o.max_steps < 1 || o.batch_size < 1 || o.eval_every < 1 || o.fine_eval_every < 1 ||
      o.eval_problems < 1) {
    return absl::InvalidArgumentError(
        "arith_base: max_steps, batch_size, eval_every, fine_eval_every and eval_problems must be "
        ">= 1");
  }
  if (!(o.learning_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("arith_base.learning_rate must be > 0, got ", o.learning_rate));
  }
  model::internal::SetCpuThreads(o.num_threads);
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<model::Policy> policy,
                        model::Policy::CreateRandom(o.model, o.seed));
  const std::vector<ArithProblem> train = MakeArithProblems(ArithSplit::kTrain, -1, o.seed);
  const std::vector<ArithProblem> eval =
      MakeArithProblems(ArithSplit::kEval, o.eval_problems, o.eval_seed);
  const auto t0 = std::chrono::steady_clock::now();
  ArithBaseReport report;
  report.num_parameters = policy->NumParameters();
  SPAR_RETURN_IF_ERROR(model::internal::TorchCall("BuildArithBaseModel", [&]() -> absl::Status {
    torch::manual_seed(o.seed);
    model::Policy::Impl& impl = policy->impl();
    auto& module = impl.module;
    const auto& cfg = impl.config;
    std::vector<internal::TokenizedExample> data;
    for (const auto& p : train) {
      data.push_back(internal::Tokenize(p.prompt, p.answer, static_cast<int32_t>(cfg.eos_token_id)));
    }
    auto optimizer = std::make_unique<torch::optim::AdamW>(
        module->parameters(), torch::optim::AdamWOptions(o.learning_rate)
                                  .weight_decay(o.weight_decay)
                                  .betas({0.9, o.beta2}));
    std::mt19937_64 rng(o.seed);
    std::vector<size_t> order = internal::Permutation(data.size(), rng);
    size_t cursor = 0;
    bool rising = false;
    for (int step = 1; step <= o.max_steps; ++step) {
      module->train();
      const double lr =
          o.learning_rate * internal::LrFactor(o.lr_schedule, step, o.max_steps, o.warmup_steps);
      for (auto& group : optimizer->param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      std::vector<std::vector<int32_t>> prompts, responses;
      for (int k = 0; k < o.batch_size; ++k) {
        if (cursor == order.size()) {
          order = internal::Permutation(data.size(), rng);
          cursor = 0;
        }
        prompts.push_back(data[order[cursor]].prompt);
        responses.push_back(data[order[cursor]].response);
        ++cursor;
      }
      model::internal::ScoreBatch batch = model::internal::MakeScoreBatch(
          prompts, responses, cfg.bos_token_id, cfg.pad_token_id, impl.device);
      internal::SftLossOutput sft = internal::SftLoss(module, batch);
      optimizer->zero_grad();
      sft.loss.backward();
      if (o.max_grad_norm > 0) {
        torch::nn::utils::clip_grad_norm_(module->parameters(), o.max_grad_norm);
      }
      optimizer->step();
      report.steps = step;
      ArithBaseProgress progress;
      progress.step = step;
      progress.loss = sft.loss.item<double>();
      // Checks get denser once accuracy starts to rise: it climbs from near 0 to past 0.5 within
      // about 50 steps, and the demo wants pi_0 stopped partway up.
      const int every = rising ? o.fine_eval_every : o.eval_every;
      if (step % every == 0 || step == o.max_steps) {
        module->eval();
        SPAR_ASSIGN_OR_RETURN(double acc, ArithGreedyAccuracy(*policy, eval));
        progress.accuracy = acc;
        report.greedy_accuracy = acc;
        report.accuracy_curve.push_back({step, acc});
        if (on_progress) on_progress(progress);
        if (acc >= o.target_accuracy) break;
        rising = rising || acc >= o.target_accuracy / 3;
      } else if (on_progress) {
        on_progress(progress);
      }
    }
    module->eval();
    return absl::OkStatus();
  }));
  SPAR_RETURN_IF_ERROR(policy->Save(o.out_dir));
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace spar::trainer
