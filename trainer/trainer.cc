#include "trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "model/policy.h"
#include "trainer/internal/train_util.h"
#include "trainer/losses.h"

namespace spar::trainer {
namespace internal {

TokenizedExample Tokenize(const std::string& prompt, const std::string& response, int32_t eos) {
  TokenizedExample ex;
  ex.prompt = model::ByteTokenizer::Encode(prompt);
  ex.response = model::ByteTokenizer::Encode(response);
  ex.response.push_back(eos);
  return ex;
}

std::vector<size_t> Permutation(size_t n, std::mt19937_64& rng) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

SftLossOutput SftLoss(model::internal::LlamaForCausalLM& module,
                      const model::internal::ScoreBatch& batch) {
  torch::Tensor token_logps = model::internal::TokenLogProbs(module, batch);
  torch::Tensor seq = token_logps.sum(-1);
  torch::Tensor lens = batch.target_mask.sum(-1).clamp_min(1.0);
  SftLossOutput out;
  out.loss = (-seq / lens).mean();
  out.seq_logps = seq.detach();
  return out;
}

std::unique_ptr<torch::optim::AdamW> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                   double learning_rate, double weight_decay) {
  return std::make_unique<torch::optim::AdamW>(
      module->parameters(),
      torch::optim::AdamWOptions(learning_rate).weight_decay(weight_decay));
}

}  // namespace internal

namespace {

using model::internal::TorchCall;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Averages named values over steps.
class MetricMeans {
 public:
  void Add(const std::map<std::string, double>& values, double weight) {
    for (const auto& [k, v] : values) {
      sums_[k] += v * weight;
      weights_[k] += weight;
    }
  }
  std::map<std::string, double> Means() const {
    std::map<std::string, double> out;
    for (const auto& [k, v] : sums_) out[k] = v / weights_.at(k);
    return out;
  }
  void Clear() {
    sums_.clear();
    weights_.clear();
  }

 private:
  std::map<std::string, double> sums_, weights_;
};

absl::Status CheckText(const std::string& text, const char* list, size_t i, const char* field) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(list, "[", i, "].", field, " is empty"));
  }
  return absl::OkStatus();
}

void ClipAndStep(model::internal::LlamaForCausalLM& module, torch::optim::Optimizer& opt,
                 double max_grad_norm) {
  if (max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(module->parameters(), max_grad_norm);
  opt.step();
}

}  // namespace

absl::Status Validate(const TrainConfig& c) {
  if (c.loss != "dpo" && c.loss != "sft") {
    return absl::InvalidArgumentError(absl::StrCat("train.loss: unknown loss \"", c.loss, "\""));
  }
  if (!(c.beta > 0) || !std::isfinite(c.beta)) {
    return absl::InvalidArgumentError(absl::StrCat("train.beta must be > 0, got ", c.beta));
  }
  if (!(c.learning_rate > 0) || !std::isfinite(c.learning_rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.learning_rate must be > 0, got ", c.learning_rate));
  }
  if (!(c.weight_decay >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.weight_decay must be >= 0, got ", c.weight_decay));
  }
  if (c.epochs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("train.epochs must be >= 1, got ", c.epochs));
  }
  if (c.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.batch_size must be >= 1, got ", c.batch_size));
  }
  if (!(c.max_grad_norm >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.max_grad_norm must be >= 0 (0 = no clipping), got ", c.max_grad_norm));
  }
  if (!(c.nll_weight >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.nll_weight must be >= 0, got ", c.nll_weight));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> TrainDpo(const std::string& init_checkpoint,
                                     const std::vector<PreferencePair>& pairs,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (config.loss != "dpo") {
    return absl::InvalidArgumentError(
        absl::StrCat("train.loss: TrainDpo needs \"dpo\", got \"", config.loss, "\""));
  }
  if (pairs.empty()) return absl::InvalidArgumentError("pairs: no preference pairs to train on");
  for (size_t i = 0; i < pairs.size(); ++i) {
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].prompt, "pairs", i, "prompt"));
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].chosen, "pairs", i, "chosen"));
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].rejected, "pairs", i, "rejected"));
  }
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<model::Policy> policy,
                        model::Policy::Load(init_checkpoint));
  absl::StatusOr<TrainResult> result = TorchCall("TrainDpo", [&]() -> absl::StatusOr<TrainResult> {
    const auto t0 = Clock::now();
    torch::manual_seed(config.seed);
    model::Policy::Impl& impl = policy->impl();
    auto& module = impl.module;
    const auto& cfg = impl.config;
    const int32_t eos = static_cast<int32_t>(cfg.eos_token_id);
    const size_t n = pairs.size();
    std::vector<internal::TokenizedExample> chosen(n), rejected(n);
    for (size_t i = 0; i < n; ++i) {
      chosen[i] = internal::Tokenize(pairs[i].prompt, pairs[i].chosen, eos);
      rejected[i] = internal::Tokenize(pairs[i].prompt, pairs[i].rejected, eos);
    }
    auto make_batch = [&](const std::vector<size_t>& idx) {
      // Chosen rows first, then rejected: one padded forward for both.
      std::vector<std::vector<int32_t>> prompts, responses;
      for (size_t i : idx) {
        prompts.push_back(chosen[i].prompt);
        responses.push_back(chosen[i].response);
      }
      for (size_t i : idx) {
        prompts.push_back(rejected[i].prompt);
        responses.push_back(rejected[i].response);
      }
      return model::internal::MakeScoreBatch(prompts, responses, cfg.bos_token_id,
                                             cfg.pad_token_id, impl.device);
    };

    // Reference log-probs under pi_t, once, before any update.
    std::vector<float> ref_chosen(n), ref_rejected(n);
    {
      torch::NoGradGuard no_grad;
      module->eval();
      const size_t chunk = std::max<size_t>(64, config.batch_size);
      for (size_t s = 0; s < n; s += chunk) {
        std::vector<size_t> idx;
        for (size_t i = s; i < std::min(n, s + chunk); ++i) idx.push_back(i);
        torch::Tensor lp = model::internal::SequenceLogProbs(module, make_batch(idx))
                               .to(torch::kCPU)
                               .contiguous();
        const float* p = lp.data_ptr<float>();
        for (size_t k = 0; k < idx.size(); ++k) {
          ref_chosen[idx[k]] = p[k];
          ref_rejected[idx[k]] = p[idx.size() + k];
        }
      }
    }

    module->train();
    auto optimizer = internal::MakeOptimizer(module, config.learning_rate, config.weight_decay);
    std::mt19937_64 rng(config.seed);
    const int steps_per_epoch = static_cast<int>((n + config.batch_size - 1) / config.batch_size);
    const int total_steps = steps_per_epoch * config.epochs;
    TrainResult result;
    result.num_parameters = policy->NumParameters();
    MetricMeans epoch_means;
    int step = 0;
    for (int epoch = 0; epoch < config.epochs; ++epoch) {
      epoch_means.Clear();
      const std::vector<size_t> order = internal::Permutation(n, rng);
      for (size_t s = 0; s < n; s += config.batch_size) {
        const auto step_t0 = Clock::now();
        std::vector<size_t> idx(order.begin() + s,
                                order.begin() + std::min(n, s + config.batch_size));
        const int64_t b = static_cast<int64_t>(idx.size());
        model::internal::ScoreBatch batch = make_batch(idx);
        std::vector<float> rc, rr;
        for (size_t i : idx) {
          rc.push_back(ref_chosen[i]);
          rr.push_back(ref_rejected[i]);
        }
        torch::Tensor ref_c = torch::tensor(rc).to(impl.device);
        torch::Tensor ref_r = torch::tensor(rr).to(impl.device);

        torch::Tensor token_logps = model::internal::TokenLogProbs(module, batch);
        torch::Tensor seq = token_logps.sum(-1);
        torch::Tensor pol_c = seq.narrow(0, 0, b), pol_r = seq.narrow(0, b, b);
        DpoLossOutput dpo = DpoLoss(pol_c, pol_r, ref_c, ref_r, config.beta);
        torch::Tensor loss = dpo.loss;
        if (config.nll_weight > 0) {
          torch::Tensor len_c = batch.target_mask.narrow(0, 0, b).sum(-1).clamp_min(1.0);
          loss = loss + config.nll_weight * (-pol_c / len_c).mean();
        }
        optimizer->zero_grad();
        loss.backward();
        ClipAndStep(module, *optimizer, config.max_grad_norm);
        ++step;

        torch::Tensor margins = dpo.chosen_rewards - dpo.rejected_rewards;
        std::map<std::string, double> m = {
            {"loss", loss.item<double>()},
            {"rewards/chosen", dpo.chosen_rewards.mean().item<double>()},
            {"rewards/rejected", dpo.rejected_rewards.mean().item<double>()},
            {"rewards/margins", margins.mean().item<double>()},
            {"rewards/accuracies", (margins > 0).to(torch::kFloat32).mean().item<double>()},
            {"logps/chosen", pol_c.detach().mean().item<double>()},
            {"logps/rejected", pol_r.detach().mean().item<double>()},
        };
        epoch_means.Add(m, static_cast<double>(b));
        if (on_progress) {
          TrainProgress progress;
          progress.step = step;
          progress.total_steps = total_steps;
          progress.loss = m["loss"];
          progress.tokens_per_second = batch.num_tokens / std::max(1e-9, Seconds(step_t0));
          progress.metrics = m;
          if (!on_progress(progress)) {
            return absl::CancelledError(absl::StrCat("training cancelled at step ", step));
          }
        }
      }
    }
    result.steps = step;
    result.metrics = epoch_means.Means();
    result.final_loss = result.metrics["loss"];
    result.seconds = Seconds(t0);
    module->eval();
    return result;
  });
  if (!result.ok()) return result.status();
  SPAR_RETURN_IF_ERROR(policy->Save(out_checkpoint));
  return result;
}

absl::StatusOr<TrainResult> TrainSft(const std::string& init_checkpoint,
                                     const std::vector<SftExample>& examples,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (config.loss != "sft") {
    return absl::InvalidArgumentError(
        absl::StrCat("train.loss: TrainSft needs \"sft\", got \"", config.loss, "\""));
  }
  if (examples.empty()) return absl::InvalidArgumentError("examples: no SFT examples to train on");
  for (size_t i = 0; i < examples.size(); ++i) {
    SPAR_RETURN_IF_ERROR(CheckText(examples[i].prompt, "examples", i, "prompt"));
    SPAR_RETURN_IF_ERROR(CheckText(examples[i].response, "examples", i, "response"));
  }
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<model::Policy> policy,
                        model::Policy::Load(init_checkpoint));
  absl::StatusOr<TrainResult> result = TorchCall("TrainSft", [&]() -> absl::StatusOr<TrainResult> {
    const auto t0 = Clock::now();
    torch::manual_seed(config.seed);
    model::Policy::Impl& impl = policy->impl();
    auto& module = impl.module;
    const auto& cfg = impl.config;
    const size_t n = examples.size();
    std::vector<internal::TokenizedExample> data(n);
    for (size_t i = 0; i < n; ++i) {
      data[i] = internal::Tokenize(examples[i].prompt, examples[i].response,
                                   static_cast<int32_t>(cfg.eos_token_id));
    }
    module->train();
    auto optimizer = internal::MakeOptimizer(module, config.learning_rate, config.weight_decay);
    std::mt19937_64 rng(config.seed);
    const int total_steps =
        static_cast<int>((n + config.batch_size - 1) / config.batch_size) * config.epochs;
    TrainResult result;
    result.num_parameters = policy->NumParameters();
    MetricMeans epoch_means;
    int step = 0;
    for (int epoch = 0; epoch < config.epochs; ++epoch) {
      epoch_means.Clear();
      const std::vector<size_t> order = internal::Permutation(n, rng);
      for (size_t s = 0; s < n; s += config.batch_size) {
        const auto step_t0 = Clock::now();
        std::vector<std::vector<int32_t>> prompts, responses;
        for (size_t k = s; k < std::min(n, s + config.batch_size); ++k) {
          prompts.push_back(data[order[k]].prompt);
          responses.push_back(data[order[k]].response);
        }
        model::internal::ScoreBatch batch = model::internal::MakeScoreBatch(
            prompts, responses, cfg.bos_token_id, cfg.pad_token_id, impl.device);
        internal::SftLossOutput sft = internal::SftLoss(module, batch);
        optimizer->zero_grad();
        sft.loss.backward();
        ClipAndStep(module, *optimizer, config.max_grad_norm);
        ++step;
        const double tokens = batch.target_mask.sum().item<double>();
        std::map<std::string, double> m = {
            {"loss", sft.loss.item<double>()},
            {"nll/token", -sft.seq_logps.sum().item<double>() / std::max(1.0, tokens)},
        };
        epoch_means.Add(m, static_cast<double>(prompts.size()));
        if (on_progress) {
          TrainProgress progress;
          progress.step = step;
          progress.total_steps = total_steps;
          progress.loss = m["loss"];
          progress.tokens_per_second = batch.num_tokens / std::max(1e-9, Seconds(step_t0));
          progress.metrics = m;
          if (!on_progress(progress)) {
            return absl::CancelledError(absl::StrCat("training cancelled at step ", step));
          }
        }
      }
    }
    result.steps = step;
    result.metrics = epoch_means.Means();
    result.final_loss = result.metrics["loss"];
    result.seconds = Seconds(t0);
    module->eval();
    return result;
  });
  if (!result.ok()) return result.status();
  SPAR_RETURN_IF_ERROR(policy->Save(out_checkpoint));
  return result;
}

}  // namespace spar::trainer
