#include "trainer/internal/train_inputs.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"

namespace spar::trainer::internal {
namespace {

// A SentencePiece tokenizer.model without tokenizer.json would be read as the byte tokenizer:
// refused before loading.
absl::Status CheckTokenizerFiles(const std::string& dir, const char* field) {
  if (PathExists(JoinPath(dir, "tokenizer.model")) &&
      !PathExists(JoinPath(dir, "tokenizer.json"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": checkpoint \"", dir,
        "\" has tokenizer.model but no tokenizer.json; only "
        "tokenizer.json tokenizers are supported (transformers' save_pretrained writes one)"));
  }
  return absl::OkStatus();
}

// Policy::Load with errors prefixed by the request field (e.g. a tokenizer with more ids than
// config.vocab_size: "init_checkpoint: <dir>: tokenizer has N ids, config.vocab_size is only M").
absl::StatusOr<std::unique_ptr<model::Policy>> LoadCheckpoint(const std::string& dir,
                                                              const char* field) {
  absl::StatusOr<std::unique_ptr<model::Policy>> policy = model::Policy::Load(dir);
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat(field, ": ", policy.status().message()));
  }
  return policy;
}

}  // namespace

absl::Status CheckByteTokenizerIds(const std::string& dir, const model::LlamaConfig& c,
                                   const char* field) {
  if (c.vocab_size < model::ByteTokenizer::kVocabSize ||
      c.bos_token_id != model::ByteTokenizer::kBos ||
      c.eos_token_id != model::ByteTokenizer::kEos ||
      c.pad_token_id != model::ByteTokenizer::kPad) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": checkpoint \"", dir, "\" does not match the byte tokenizer (vocab_size ",
        c.vocab_size, ", bos/eos/pad ", c.bos_token_id, "/", c.eos_token_id, "/", c.pad_token_id,
        "; want vocab_size >= ", model::ByteTokenizer::kVocabSize, ", bos/eos/pad ",
        model::ByteTokenizer::kBos, "/", model::ByteTokenizer::kEos, "/",
        model::ByteTokenizer::kPad, ")"));
  }
  return absl::OkStatus();
}

namespace {

// A checkpoint without tokenizer.json uses the byte tokenizer: its config's special ids must be
// the byte tokenizer's.
absl::Status CheckTokenizer(const std::string& dir, const model::Policy& policy,
                            const char* field) {
  if (policy.tokenizer() != nullptr) return absl::OkStatus();
  return CheckByteTokenizerIds(dir, policy.config(), field);
}

absl::Status LoadMagnet(const std::string& init_checkpoint, const std::string& dir,
                        TrainInputs& in) {
  SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(dir, "magnet_checkpoint"));
  SPAR_ASSIGN_OR_RETURN(in.magnet, LoadCheckpoint(dir, "train.magnet_checkpoint"));
  SPAR_RETURN_IF_ERROR(CheckTokenizer(dir, *in.magnet, "magnet_checkpoint"));
  // The magnet scores the sequences tokenized by π_t's tokenizer: the ids must mean the same.
  if (in.magnet->TokenizerFingerprint() != in.policy->TokenizerFingerprint()) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.magnet_checkpoint: mismatched tokenizer: \"", dir, "\" has ",
                     in.magnet->TokenizerDescription(), ", init_checkpoint \"", init_checkpoint,
                     "\" has ", in.policy->TokenizerDescription(),
                     " (token strings or special ids differ; both must use the same tokenizer)"));
  }
  return absl::OkStatus();
}

// pairs[i]'s prompt and `response` (its `field`) through π_t's tokenizer, then truncated.
absl::Status TokenizeExample(const model::Policy& policy, const PreferencePair& pair, size_t i,
                             const std::string& response, bool finished, const char* field,
                             const TrainConfig& config, TokenizedExample* ex) {
  const int64_t vocab = policy.config().vocab_size;
  absl::StatusOr<std::vector<int32_t>> prompt =
      policy.EncodePrompt(pair.prompt, config.chat_template);
  if (!prompt.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pairs[", i, "].prompt: ", prompt.status().message()));
  }
  absl::StatusOr<std::vector<int32_t>> resp = policy.EncodeResponse(response, finished);
  if (!resp.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pairs[", i, "].", field, ": ", resp.status().message()));
  }
  if (resp->empty()) {  // only an unfinished response has no EOS to fall back on
    return absl::InvalidArgumentError(
        absl::StrCat("pairs[", i, "].", field, ": encodes to no tokens"));
  }
  for (const auto* ids : {&*prompt, &*resp}) {
    for (int32_t id : *ids) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pairs[", i, "]: token id ", id, " is outside init_checkpoint's config.vocab_size ",
            vocab, " (mismatched tokenizer)"));
      }
    }
  }
  ex->first = prompt->front();
  ex->prompt.assign(prompt->begin() + 1, prompt->end());
  ex->response = *std::move(resp);
  Truncate(*ex, config.max_prompt_length, config.max_length);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCheckpointWithoutWeights(const std::string& dir, const char* field) {
  SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(dir, field));
  absl::StatusOr<nlohmann::json> json = ReadJsonFile(JoinPath(dir, "config.json"));
  if (!json.ok()) {
    return absl::Status(json.status().code(), absl::StrCat(field, ": ", json.status().message()));
  }
  absl::StatusOr<model::LlamaConfig> config = model::ParseLlamaConfig(*json);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", dir, "/config.json: ", config.status().message()));
  }
  if (PathExists(JoinPath(dir, "tokenizer.json"))) return absl::OkStatus();
  return CheckByteTokenizerIds(dir, *config, field);
}

absl::StatusOr<TrainInputs> LoadTrainInputs(const std::string& init_checkpoint,
                                            const std::vector<PreferencePair>& pairs,
                                            const TrainConfig& config, bool pairwise,
                                            bool uses_magnet) {
  TrainInputs in;
  SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(init_checkpoint, "init_checkpoint"));
  SPAR_ASSIGN_OR_RETURN(in.policy, LoadCheckpoint(init_checkpoint, "init_checkpoint"));
  SPAR_RETURN_IF_ERROR(CheckTokenizer(init_checkpoint, *in.policy, "init_checkpoint"));
  if (config.mixed_precision == "bf16" && !in.policy->impl().device.is_cuda()) {
    return absl::InvalidArgumentError(kBf16NeedsCuda);
  }
  if (uses_magnet && !config.magnet_checkpoint.empty()) {
    SPAR_RETURN_IF_ERROR(LoadMagnet(init_checkpoint, config.magnet_checkpoint, in));
  }
  if (absl::StatusOr<std::string> t = in.policy->ResolveChatTemplate(config.chat_template);
      !t.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("train.chat_template: ", t.status().message()));
  }
  in.chosen.resize(pairs.size());
  in.rejected.resize(pairwise ? pairs.size() : 0);
  for (size_t i = 0; i < pairs.size(); ++i) {
    SPAR_RETURN_IF_ERROR(TokenizeExample(*in.policy, pairs[i], i, pairs[i].chosen,
                                         pairs[i].chosen_finished, "chosen", config,
                                         &in.chosen[i]));
    if (pairwise) {
      SPAR_RETURN_IF_ERROR(TokenizeExample(*in.policy, pairs[i], i, pairs[i].rejected,
                                           pairs[i].rejected_finished, "rejected", config,
                                           &in.rejected[i]));
    }
  }
  return in;
}

}  // namespace spar::trainer::internal
