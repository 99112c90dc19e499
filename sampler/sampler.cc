#include "sampler/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/chat_template.h"
#include "model/policy.h"

namespace spar::sampler {

absl::Status Validate(const SamplerConfig& c) {
  if (c.max_batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler.max_batch_size must be > 0, got ", c.max_batch_size));
  }
  if (c.policy_cache_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler.policy_cache_size must be > 0, got ", c.policy_cache_size));
  }
  return absl::OkStatus();
}

absl::Status Validate(const SamplingParams& p) {
  if (p.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", p.num_samples));
  }
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be >= 0, got ", p.temperature));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", p.max_new_tokens));
  }
  if (p.first_prompt_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("first_prompt_index must be >= 0, got ", p.first_prompt_index));
  }
  if (absl::Status st = model::ValidateChatTemplateSetting(p.chat_template); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplerConfig& config) : config_(config) {}
Sampler::~Sampler() = default;

absl::StatusOr<std::unique_ptr<Sampler>> Sampler::Create(const SamplerConfig& config) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  return std::unique_ptr<Sampler>(new Sampler(config));
}

absl::StatusOr<model::Policy*> Sampler::GetPolicyLocked(const std::string& checkpoint_dir) {
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->first == checkpoint_dir) {
      cache_.splice(cache_.begin(), cache_, it);
      return cache_.front().second.get();
    }
  }
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<model::Policy> policy, model::Policy::Load(checkpoint_dir));
  cache_.emplace_front(checkpoint_dir, std::move(policy));
  while (static_cast<int>(cache_.size()) > config_.policy_cache_size) cache_.pop_back();
  return cache_.front().second.get();
}

absl::Status Sampler::LoadPolicy(const std::string& checkpoint_dir) {
  std::lock_guard<std::mutex> lock(mu_);
  return GetPolicyLocked(checkpoint_dir).status();
}

absl::Status Sampler::Generate(const std::string& checkpoint_dir,
                               const std::vector<std::string>& prompts,
                               const SamplingParams& params,
                               const std::function<bool(PromptSamples)>& on_result) {
  SPAR_RETURN_IF_ERROR(Validate(params));
  std::lock_guard<std::mutex> lock(mu_);
  SPAR_ASSIGN_OR_RETURN(model::Policy * policy, GetPolicyLocked(checkpoint_dir));
  model::GenerationParams gp;
  gp.temperature = params.temperature;
  gp.top_p = params.top_p;
  gp.max_new_tokens = params.max_new_tokens;
  gp.seed = params.seed;
  gp.num_samples = params.num_samples;
  gp.max_batch_size = config_.max_batch_size;
  gp.chat_template = params.chat_template;
  // Whole prompts per chunk (at least one), so results stream as chunks finish. The sample draws
  // depend on the absolute prompt index, so chunking does not change them.
  const size_t per_chunk =
      std::max<size_t>(1, static_cast<size_t>(config_.max_batch_size / params.num_samples));
  // Chunk boundaries sit at multiples of per_chunk in the global prompt index (first_prompt_index
  // + position), so a shard that starts on a boundary is computed in exactly the batches the whole
  // list would be: bit-identical log-probs, not just equal tokens.
  const int64_t base = params.first_prompt_index;
  for (size_t start = 0, end = 0; start < prompts.size(); start = end) {
    const size_t to_boundary =
        per_chunk - static_cast<size_t>((base + static_cast<int64_t>(start)) % per_chunk);
    end = std::min(prompts.size(), start + to_boundary);
    std::vector<std::string> chunk(prompts.begin() + start, prompts.begin() + end);
    gp.first_prompt_index = params.first_prompt_index + static_cast<int64_t>(start);
    absl::StatusOr<std::vector<model::Generation>> gens = policy->Generate(chunk, gp);
    if (!gens.ok()) return gens.status();
    for (size_t i = 0; i < gens->size(); ++i) {
      model::Generation& g = (*gens)[i];
      PromptSamples out;
      out.index = static_cast<int64_t>(start + i);
      out.prompt = std::move(g.prompt);
      out.prompt_tokens = static_cast<int64_t>(g.prompt_ids.size());
      for (size_t j = 0; j < g.texts.size(); ++j) {
        SampleOut s;
        s.text = std::move(g.texts[j]);
        s.token_ids = std::move(g.token_ids[j]);
        s.logprob = g.logprobs[j];
        s.token_logprobs = std::move(g.token_logprobs[j]);
        s.finished = g.finished[j];
        tokens_generated_ += static_cast<int64_t>(s.token_ids.size());
        out.samples.push_back(std::move(s));
      }
      if (!on_result(std::move(out))) {
        return absl::CancelledError(
            absl::StrCat("generation cancelled by the caller after prompt ", start + i));
      }
    }
  }
  return absl::OkStatus();
}

int64_t Sampler::tokens_generated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_generated_;
}

std::vector<std::string> Sampler::cached_policies() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [dir, policy] : cache_) out.push_back(dir);
  return out;
}

}  // namespace spar::sampler
