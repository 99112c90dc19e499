// A Llama-family policy with its tokenizer (HF tokenizer.json, or the built-in byte tokenizer):
// load/save HF-layout checkpoints (config.json + model.safetensors), batched sampling and response
// scoring. Shared by the sampler (generation, log-probs of its samples) and the trainer (which
// reaches the torch module through model/internal/policy_internal.h). LibTorch stays behind the
// pimpl: this header is torch-free. Thread-compatible: one Policy is used by one thread at a time
// (callers serialize).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/chat_template.h"
#include "model/hf_tokenizer.h"
#include "model/llama_config.h"
#include "model/lora.h"

namespace spar::model {

struct GenerationParams {
  float temperature = 1.0f;  // softmax temperature; 0 = greedy (argmax)
  float top_p = 1.0f;        // nucleus mass kept, in (0, 1]; 1 = no truncation
  int max_new_tokens = 8;    // response tokens generated at most (EOS included)
  uint64_t seed = 0;         // the draw for (prompt i, sample j, step s) depends only on these
  int num_samples = 1;       // responses per prompt
  int max_batch_size = 256;  // sequences per forward pass
  int top_k = 0;             // keep the k most likely tokens; 0 = no limit
  float min_p = 0.0f;        // drop tokens with p < min_p * p_max, in [0, 1); 0 = off
  // Generation stops after any of these ids (besides config eos_token_id and its extra ids).
  std::vector<int32_t> stop_token_ids;
  // Generation stops once the decoded response contains one of these; the text is cut before it.
  std::vector<std::string> stop_strings;
  // Index of prompts[0] in the caller's numbering, for the draws: a caller that splits one
  // request into several Generate calls passes each slice's offset and gets the same samples.
  int64_t first_prompt_index = 0;
  // How each prompt string becomes the model's input (see Policy::EncodePrompt): "" / "none",
  // "auto" or a template name.
  std::string chat_template;
};

// The samples of one prompt.
struct Generation {
  std::string prompt;
  std::vector<std::string> texts;               // decoded response bytes, EOS excluded
  std::vector<std::vector<int32_t>> token_ids;  // generated ids, EOS included when emitted
  std::vector<double> logprobs;                 // sum of log pi(token) over token_ids, untempered
  std::vector<std::vector<double>> token_logprobs;  // log pi(token) per entry of token_ids
  std::vector<bool> finished;                       // true when EOS was emitted
  std::vector<int32_t> prompt_ids;                  // the prompt as fed (BOS included)
};

class Policy {
 public:
  struct Impl;  // model/internal/policy_internal.h

  ~Policy();
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  // Reads a Hugging Face model directory: config.json (model_type llama, mistral, qwen2, qwen3),
  // model.safetensors or the shards of model.safetensors.index.json (F32/F16/BF16/F64 tensors,
  // converted to float32), and tokenizer.json (+ tokenizer_config.json) when present; without
  // tokenizer.json the built-in byte tokenizer is used. NotFound naming the missing file;
  // InvalidArgument naming a bad config field, an unsupported model type or a missing,
  // unexpected or mis-shaped tensor.
  static absl::StatusOr<std::unique_ptr<Policy>> Load(const std::string& checkpoint_dir);
  // A freshly initialised model (normal(0, 0.02) weights from `seed`). InvalidArgument for a bad
  // config or a vocabulary smaller than the byte tokenizer's (259).
  static absl::StatusOr<std::unique_ptr<Policy>> CreateRandom(const LlamaConfig& config,
                                                              uint64_t seed);

  // Writes config.json, model.safetensors and tokenizer_config.json into a "tmp-*" sibling of
  // `checkpoint_dir` and renames it into place (an existing checkpoint there is replaced), so a
  // reader sees the whole old or the whole new directory. Every checkpoint carries the marker
  // file kSparCheckpointMarker; an existing `checkpoint_dir` without it (a directory Spar did not
  // write) is never replaced or deleted: FailedPrecondition naming it. Readers ignore "tmp-*"
  // entries. Weights are written in config.torch_dtype, split into model-0000i-of-0000n.safetensors
  // shards with model.safetensors.index.json when larger than `max_shard_bytes`; the tokenizer
  // files of the directory the policy was loaded from are copied (the byte tokenizer's
  // tokenizer_config.json otherwise).
  absl::Status Save(const std::string& checkpoint_dir) const;
  absl::Status Save(const std::string& checkpoint_dir, int64_t max_shard_bytes) const;
  // The marker file Save() writes into every checkpoint directory.
  static constexpr char kSparCheckpointMarker[] = ".spar-checkpoint";

  // Samples params.num_samples responses per prompt: prompt tokens = BOS + bytes(prompt); stops at
  // EOS or after max_new_tokens. Results are in prompt order. Deterministic: sample j of prompt i
  // is a function of (weights, params.seed, i, j), whatever max_batch_size. InvalidArgument for
  // bad params or a prompt longer than max_position_embeddings - max_new_tokens - 1.
  absl::StatusOr<std::vector<Generation>> Generate(const std::vector<std::string>& prompts,
                                                   const GenerationParams& params);

  // Token-level scoring: log pi(response_ids | prompt_ids) per pair, summed over response tokens.
  // prompt_ids are fed as given (BOS included when wanted) and must not be empty.
  absl::StatusOr<std::vector<double>> ScoreTokens(
      const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& prompt_response,
      int max_batch_size = 256);

  // The prompt's ids as Generate feeds them. chat_template "" or "none": the raw text, i.e. BOS +
  // bytes for the byte tokenizer, the HF tokenizer's encoding with its special tokens (BOS not
  // doubled when the text starts with it). "auto": the checkpoint's own Jinja template
  // (chat_template.jinja or tokenizer_config.json's; the raw text when there is none, and always
  // for the byte tokenizer). A name (chatml, llama3, ...): that family's template. With a template
  // the prompt is rendered as one user message plus the generation prompt, as transformers'
  // apply_chat_template renders it, and encoded without adding special tokens (the rendered text
  // carries them). Errors as ResolveChatTemplateSetting (chat_template_setting.h).
  absl::StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& prompt,
                                                    const std::string& chat_template = "") const;
  // The template EncodePrompt applies for `chat_template` (nullopt: the raw text); resolved once
  // per setting and kept.
  absl::StatusOr<std::optional<ChatTemplate>> ChatTemplateFor(
      const std::string& chat_template) const;
  // Where that template came from (ChatTemplate::name; "" when the raw text is used).
  absl::StatusOr<std::string> ResolveChatTemplate(const std::string& chat_template) const;
  // A response's ids as scored and trained on: the tokenizer's encoding of `response` without
  // special tokens (bytes for the byte tokenizer), then config.eos_token_id when `finished`. An
  // unfinished response (cut at max_new_tokens) gets no EOS: training on one must not teach the
  // policy to stop mid-answer. The trainer and ScoreResponses both use EncodePrompt +
  // EncodeResponse, so they agree token for token.
  absl::StatusOr<std::vector<int32_t>> EncodeResponse(const std::string& response,
                                                      bool finished = true) const;
  // The HF tokenizer, or null for the byte tokenizer.
  const HfTokenizer* tokenizer() const;
  // Identifies the tokenizer as the trainer sees it: a hash over every token string, the special
  // flags, the tokenizer's bos/eos/pad and the config's bos/eos/pad ids ("byte/..." for the byte
  // tokenizer). Two checkpoints whose ids mean the same text have the same fingerprint.
  std::string TokenizerFingerprint() const;
  // One line for error messages: "byte tokenizer" or "tokenizer.json with N ids, eos E".
  std::string TokenizerDescription() const;

  // log pi(response + EOS | prompt) per pair, summed over response tokens (prompt encoded as by
  // EncodePrompt with `chat_template`, the response by EncodeResponse).
  absl::StatusOr<std::vector<double>> ScoreResponses(
      const std::vector<std::pair<std::string, std::string>>& prompt_response,
      int max_batch_size = 256, const std::string& chat_template = "");

  // Attaches LoRA adapters to config.target_modules of every layer and freezes all other
  // parameters, so an optimizer over the trainable parameters updates the adapters alone.
  // InvalidArgument for a bad config; FailedPrecondition when adapters are already attached.
  // Save() then writes merged weights (W + alpha/r * B A), loadable without Spar or PEFT.
  absl::Status AddLora(const LoraConfig& config);
  bool has_lora() const;
  // Writes the adapters alone, PEFT-style: adapter_model.safetensors (float32, tensors named
  // "base_model.model.<param>.lora_A.weight" / ".lora_B.weight") and adapter_config.json.
  // FailedPrecondition without adapters.
  absl::Status SaveLoraAdapter(const std::string& dir, const std::string& base_model = "") const;

  int64_t NumParameters() const;
  const LlamaConfig& config() const;

  Impl& impl() { return *impl_; }
  const Impl& impl() const { return *impl_; }

 private:
  explicit Policy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Validates generation parameters; InvalidArgument naming the field.
absl::Status Validate(const GenerationParams& params);

// True when `dir` holds the marker Policy::Save writes: a checkpoint Spar wrote and may replace.
bool IsSparCheckpoint(const std::string& dir);

}  // namespace spar::model
