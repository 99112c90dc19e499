#include "model/policy.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <string_view>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/chat_template.h"
#include "model/chat_template_setting.h"
#include "model/internal/llama.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "model/safetensors.h"

namespace spar::model {

using internal::TorchCall;

Policy::Policy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Policy::~Policy() = default;

const HfTokenizer* Policy::tokenizer() const { return impl_->tokenizer.get(); }

absl::Status Policy::AddLora(const LoraConfig& config) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (impl_->lora) return absl::FailedPreconditionError("LoRA adapters are already attached");
  return TorchCall("Policy::AddLora", [&]() -> absl::Status {
    internal::AddLoraAdapters(impl_->module, config.rank, config.scaling(), config.dropout,
                              config.target_modules, config.seed);
    impl_->lora = config;
    return absl::OkStatus();
  });
}

bool Policy::has_lora() const { return impl_->lora.has_value(); }

absl::StatusOr<std::optional<ChatTemplate>> Policy::ChatTemplateFor(
    const std::string& chat_template) const {
  std::lock_guard<std::mutex> lock(impl_->templates_mu);
  auto it = impl_->templates.find(chat_template);
  if (it == impl_->templates.end()) {
    it = impl_->templates
             .emplace(chat_template, ResolveChatTemplateSetting(chat_template, impl_->source_dir))
             .first;
  }
  return it->second;
}

absl::StatusOr<std::string> Policy::ResolveChatTemplate(const std::string& chat_template) const {
  SPAR_ASSIGN_OR_RETURN(std::optional<ChatTemplate> t, ChatTemplateFor(chat_template));
  return t ? t->name() : std::string();
}

absl::StatusOr<std::vector<int32_t>> Policy::EncodePrompt(const std::string& prompt,
                                                          const std::string& chat_template) const {
  const LlamaConfig& cfg = impl_->config;
  SPAR_ASSIGN_OR_RETURN(std::optional<ChatTemplate> t, ChatTemplateFor(chat_template));
  if (t) {
    SPAR_ASSIGN_OR_RETURN(std::string text, t->Render({{"user", prompt}}));
    // As transformers' apply_chat_template(tokenize=True): the specials are in the text.
    return impl_->tokenizer->Encode(text, EncodeOptions{});
  }
  if (chat_template == kVerbatimPrompt) {
    // Text a template rendered (an engine request): its specials are in the text already.
    std::vector<int32_t> ids;
    if (impl_->tokenizer == nullptr) {
      ids = ByteTokenizer::Encode(prompt);
    } else {
      SPAR_ASSIGN_OR_RETURN(ids, impl_->tokenizer->Encode(prompt, EncodeOptions{}));
    }
    if (ids.empty()) ids.push_back(static_cast<int32_t>(cfg.bos_token_id));
    return ids;
  }
  if (impl_->tokenizer == nullptr) {
    std::vector<int32_t> ids = {static_cast<int32_t>(cfg.bos_token_id)};
    std::vector<int32_t> bytes = ByteTokenizer::Encode(prompt);
    ids.insert(ids.end(), bytes.begin(), bytes.end());
    return ids;
  }
  const HfTokenizer& tok = *impl_->tokenizer;
  EncodeOptions options;
  // A chat-rendered prompt already starts with the BOS text: do not add a second one.
  std::optional<std::string> bos = tok.bos_token();
  options.add_special_tokens = !(bos && !bos->empty() && absl::StartsWith(prompt, *bos));
  SPAR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(prompt, options));
  if (ids.empty()) {
    // Nothing to condition on: start from BOS (or the configured one).
    ids.push_back(static_cast<int32_t>(tok.bos_token_id().value_or(cfg.bos_token_id)));
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> Policy::EncodeResponse(const std::string& response,
                                                            bool finished) const {
  std::vector<int32_t> ids;
  if (impl_->tokenizer == nullptr) {
    ids = ByteTokenizer::Encode(response);
  } else {
    SPAR_ASSIGN_OR_RETURN(ids, impl_->tokenizer->Encode(response));
  }
  if (finished) ids.push_back(static_cast<int32_t>(impl_->config.eos_token_id));
  return ids;
}

std::string Policy::TokenizerFingerprint() const {
  // FNV-1a: stable across processes.
  uint64_t h = 14695981039346656037ULL;
  auto add = [&h](std::string_view s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
  };
  const LlamaConfig& cfg = impl_->config;
  const std::string ids =
      absl::StrCat(cfg.bos_token_id, "/", cfg.eos_token_id, "/", cfg.pad_token_id);
  const HfTokenizer* tok = impl_->tokenizer.get();
  if (tok == nullptr) return absl::StrCat("byte/", ids);
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    std::optional<std::string> t = tok->IdToToken(id);
    add(t ? *t : std::string("\x01unused"));
    add(tok->IsSpecial(id) ? "s" : "-");
  }
  add(absl::StrCat(tok->bos_token_id().value_or(-1), "/", tok->eos_token_id().value_or(-1), "/",
                   tok->pad_token_id().value_or(-1)));
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return absl::StrCat("hf/", tok->vocab_size(), "/", ids, "/", hex);
}

std::string Policy::TokenizerDescription() const {
  const LlamaConfig& cfg = impl_->config;
  if (impl_->tokenizer == nullptr) {
    return absl::StrCat("byte tokenizer (eos ", cfg.eos_token_id, ")");
  }
  return absl::StrCat("tokenizer.json with ", impl_->tokenizer->vocab_size(), " ids (eos ",
                      cfg.eos_token_id, ")");
}

absl::StatusOr<std::vector<double>> Policy::ScoreResponses(
    const std::vector<std::pair<std::string, std::string>>& prompt_response, int max_batch_size,
    const std::string& chat_template) {
  const LlamaConfig& cfg = impl_->config;
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> tokens;
  tokens.reserve(prompt_response.size());
  for (size_t i = 0; i < prompt_response.size(); ++i) {
    SPAR_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                          EncodePrompt(prompt_response[i].first, chat_template));
    SPAR_ASSIGN_OR_RETURN(std::vector<int32_t> response, EncodeResponse(prompt_response[i].second));
    const size_t len = prompt.size() + response.size();
    if (static_cast<int64_t>(len) > cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt_response[", i, "] is ", len,
                       " tokens, over max_position_embeddings=", cfg.max_position_embeddings));
    }
    tokens.emplace_back(std::move(prompt), std::move(response));
  }
  return ScoreTokens(tokens, max_batch_size);
}

absl::StatusOr<std::vector<double>> Policy::ScoreTokens(
    const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& prompt_response,
    int max_batch_size) {
  if (max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size must be >= 1, got ", max_batch_size));
  }
  const LlamaConfig& cfg = impl_->config;
  for (size_t i = 0; i < prompt_response.size(); ++i) {
    const auto& [prompt, response] = prompt_response[i];
    if (prompt.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_response[", i, "]: empty prompt"));
    }
    if (static_cast<int64_t>(prompt.size() + response.size()) > cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt_response[", i, "] is ", prompt.size() + response.size(),
                       " tokens, over max_position_embeddings=", cfg.max_position_embeddings));
    }
    for (const auto* ids : {&prompt, &response}) {
      for (int32_t id : *ids) {
        if (id < 0 || id >= cfg.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat("prompt_response[", i, "]: token id ", id,
                                                         " out of range [0, ", cfg.vocab_size,
                                                         ")"));
        }
      }
    }
  }
  return TorchCall("Policy::ScoreTokens", [&]() -> absl::StatusOr<std::vector<double>> {
    internal::InferenceGuard guard;
    impl_->module->eval();
    std::vector<double> out;
    out.reserve(prompt_response.size());
    for (size_t start = 0; start < prompt_response.size(); start += max_batch_size) {
      const size_t end = std::min(prompt_response.size(), start + max_batch_size);
      // MakeScoreBatch puts one leading token per row: rows start with their own first token,
      // so the rest of the prompt follows it. Rows are right-padded with pad_token_id.
      std::vector<std::vector<int32_t>> prompts, responses;
      std::vector<int64_t> first;
      for (size_t i = start; i < end; ++i) {
        const auto& prompt = prompt_response[i].first;
        first.push_back(prompt[0]);
        prompts.emplace_back(prompt.begin() + 1, prompt.end());
        responses.push_back(prompt_response[i].second);
      }
      internal::ScoreBatch batch =
          internal::MakeScoreBatch(prompts, responses, first[0], cfg.pad_token_id, impl_->device);
      // Rows whose first token differs from row 0's.
      torch::Tensor firsts = torch::tensor(first, torch::kInt64).to(impl_->device);
      batch.input_ids.select(1, 0).copy_(firsts);
      torch::Tensor lp = internal::SequenceLogProbs(impl_->module, batch)
                             .to(torch::kCPU)
                             .to(torch::kFloat64)
                             .contiguous();
      const double* p = lp.data_ptr<double>();
      out.insert(out.end(), p, p + lp.numel());
    }
    return out;
  });
}

int64_t Policy::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->module->parameters()) n += p.numel();
  return n;
}

const LlamaConfig& Policy::config() const { return impl_->config; }

}  // namespace spar::model
