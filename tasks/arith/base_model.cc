#include "tasks/arith/base_model.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "tasks/arith/greedy_score.h"
#include "trainer/sft.h"

namespace spar::arith {

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
  std::vector<std::string> answers;
  for (const model::Generation& g : gens) answers.push_back(g.texts[0]);
  return ScoreGreedyAnswers(prompts, answers).accuracy;
}

namespace {

absl::Status CheckOptions(const ArithBaseOptions& o) {
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
  return absl::OkStatus();
}

trainer::SftOptions ToSftOptions(const ArithBaseOptions& o) {
  trainer::SftOptions s;
  s.seed = o.seed;
  s.max_steps = o.max_steps;
  s.batch_size = o.batch_size;
  s.learning_rate = o.learning_rate;
  s.warmup_steps = o.warmup_steps;
  s.weight_decay = o.weight_decay;
  s.beta2 = o.beta2;
  s.max_grad_norm = o.max_grad_norm;
  s.lr_schedule = o.lr_schedule;
  return s;
}

}  // namespace

absl::StatusOr<ArithBaseReport> BuildArithBaseModel(
    const ArithBaseOptions& o, const std::function<void(const ArithBaseProgress&)>& on_progress) {
  SPAR_RETURN_IF_ERROR(CheckOptions(o));
  trainer::SetCpuThreads(o.num_threads);
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<model::Policy> policy,
                        model::Policy::CreateRandom(o.model, o.seed));
  std::vector<trainer::SftExample> train;
  for (const ArithProblem& p : MakeArithProblems(ArithSplit::kTrain, -1, o.seed)) {
    train.push_back({p.prompt, p.answer});
  }
  const std::vector<ArithProblem> eval =
      MakeArithProblems(ArithSplit::kEval, o.eval_problems, o.eval_seed);
  const auto t0 = std::chrono::steady_clock::now();
  ArithBaseReport report;
  report.num_parameters = policy->NumParameters();
  bool rising = false;
  auto after_step = [&](int step, double loss) -> absl::StatusOr<bool> {
    report.steps = step;
    ArithBaseProgress progress;
    progress.step = step;
    progress.loss = loss;
    // Checks get denser once accuracy starts to rise: it climbs from near 0 to past 0.5 within
    // about 50 steps, and the demo wants pi_0 stopped partway up.
    const int every = rising ? o.fine_eval_every : o.eval_every;
    if (step % every != 0 && step != o.max_steps) {
      if (on_progress) on_progress(progress);
      return false;
    }
    SPAR_ASSIGN_OR_RETURN(double acc, ArithGreedyAccuracy(*policy, eval));
    progress.accuracy = acc;
    report.greedy_accuracy = acc;
    report.accuracy_curve.push_back({step, acc});
    if (on_progress) on_progress(progress);
    if (acc >= o.target_accuracy) return true;
    rising = rising || acc >= o.target_accuracy / 3;
    return false;
  };
  SPAR_RETURN_IF_ERROR(trainer::RunSft(*policy, train, ToSftOptions(o), after_step).status());
  SPAR_RETURN_IF_ERROR(policy->Save(o.out_dir));
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace spar::arith
