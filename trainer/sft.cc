#include "trainer/sft.h"

#include <memory>
#include <random>

#include "common/status_macros.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "trainer/internal/train_util.h"

namespace spar::trainer {

void SetCpuThreads(int threads) { model::internal::SetCpuThreads(threads); }

absl::StatusOr<int> RunSft(model::Policy& policy, const std::vector<SftExample>& examples,
                           const SftOptions& o, const SftStepHook& after_step) {
  int steps = 0;
  SPAR_RETURN_IF_ERROR(model::internal::TorchCall("RunSft", [&]() -> absl::Status {
    torch::manual_seed(o.seed);
    model::Policy::Impl& impl = policy.impl();
    auto& module = impl.module;
    const auto& cfg = impl.config;
    std::vector<internal::TokenizedExample> data;
    for (const SftExample& e : examples) {
      data.push_back(
          internal::Tokenize(e.prompt, e.response, static_cast<int32_t>(cfg.eos_token_id)));
    }
    auto optimizer = std::make_unique<torch::optim::AdamW>(
        module->parameters(), torch::optim::AdamWOptions(o.learning_rate)
                                  .weight_decay(o.weight_decay)
                                  .betas({0.9, o.beta2}));
    std::mt19937_64 rng(o.seed);
    std::vector<size_t> order = internal::Permutation(data.size(), rng);
    size_t cursor = 0;
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
      steps = step;
      SPAR_ASSIGN_OR_RETURN(bool stop, after_step(step, sft.loss.item<double>()));
      if (stop) break;
    }
    module->eval();
    return absl::OkStatus();
  }));
  return steps;
}

}  // namespace spar::trainer
