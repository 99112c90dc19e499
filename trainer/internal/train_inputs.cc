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

// The mpo magnet or brain's prior (`field`), loaded into in.magnet.
absl::Status LoadFrozen(const std::string& init_checkpoint, const std::string& dir,
                        const char* field, TrainInputs& in) {
  SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(dir, field));
  SPAR_ASSIGN_OR_RETURN(in.magnet, LoadCheckpoint(dir, absl::StrCat("train.", field).c_str()));
  SPAR_RETURN_IF_ERROR(CheckTokenizer(dir, *in.magnet, field));
  // It scores the sequences tokenized by π_t's tokenizer: the ids must mean the same.
  if (in.magnet->TokenizerFingerprint() != in.policy->TokenizerFingerprint()) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.", field, ": mismatched tokenizer: \"", dir, "\" has ",
                     in.magnet->TokenizerDescription(), ", init_checkpoint \"", init_checkpoint,
                     "\" has ", in.policy->TokenizerDescription(),
                     " (token strings or special ids differ; both must use the same tokenizer)"));
  }
  return absl::OkStatus();
}

// `prompt` and `response` through π_t's tokenizer, then truncated. Errors name
// "<where>.prompt" and "<where>.<field>" (where: "pairs[3]", "groups[2]").
absl::Status TokenizeExample(const model::Policy& policy, const std::string& prompt_text,
                             const std::string& response, bool finished, const std::string& where,
                             const std::string& field, const TrainConfig& config,
                             TokenizedExample* ex) {
  const int64_t vocab = policy.config().vocab_size;
  absl::StatusOr<std::vector<int32_t>> prompt =
      policy.EncodePrompt(prompt_text, config.chat_template);
  if (!prompt.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".prompt: ", prompt.status().message()));
  }
  absl::StatusOr<std::vector<int32_t>> resp = policy.EncodeResponse(response, finished);
  if (!resp.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", field, ": ", resp.status().message()));
  }
  if (resp->empty()) {  // only an unfinished response has no EOS to fall back on
    return absl::InvalidArgumentError(absl::StrCat(where, ".", field, ": encodes to no tokens"));
  }
  for (const auto* ids : {&*prompt, &*resp}) {
    for (int32_t id : *ids) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": token id ", id, " is outside init_checkpoint's config.vocab_size ", vocab,
            " (mismatched tokenizer)"));
      }
    }
  }
  ex->first = prompt->front();
  ex->prompt.assign(prompt->begin() + 1, prompt->end());
  ex->response = *std::move(resp);
  Truncate(*ex, config.max_prompt_length, config.max_length);
  return absl::OkStatus();
}

// π_t with its checks, the frozen second model (the mpo magnet or brain's prior) when
// `frozen_field` names a checkpoint, and the chat template.
absl::Status LoadModels(const std::string& init_checkpoint, const TrainConfig& config,
                        const std::string& frozen_dir, const char* frozen_field, TrainInputs& in) {
  SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(init_checkpoint, "init_checkpoint"));
  SPAR_ASSIGN_OR_RETURN(in.policy, LoadCheckpoint(init_checkpoint, "init_checkpoint"));
  SPAR_RETURN_IF_ERROR(CheckTokenizer(init_checkpoint, *in.policy, "init_checkpoint"));
  if (config.mixed_precision == "bf16" && !in.policy->impl().device.is_cuda()) {
    return absl::InvalidArgumentError(kBf16NeedsCuda);
  }
  if (!frozen_dir.empty()) {
    SPAR_RETURN_IF_ERROR(LoadFrozen(init_checkpoint, frozen_dir, frozen_field, in));
  }
  if (absl::StatusOr<std::string> t = in.policy->ResolveChatTemplate(config.chat_template);
      !t.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("train.chat_template: ", t.status().message()));
  }
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
  SPAR_RETURN_IF_ERROR(LoadModels(init_checkpoint, config,
                                  uses_magnet ? config.magnet_checkpoint : std::string(),
                                  "magnet_checkpoint", in));
  in.chosen.resize(pairs.size());
  in.rejected.resize(pairwise ? pairs.size() : 0);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string where = absl::StrCat("pairs[", i, "]");
    SPAR_RETURN_IF_ERROR(TokenizeExample(*in.policy, pairs[i].prompt, pairs[i].chosen,
                                         pairs[i].chosen_finished, where, "chosen", config,
                                         &in.chosen[i]));
    if (pairwise) {
      SPAR_RETURN_IF_ERROR(TokenizeExample(*in.policy, pairs[i].prompt, pairs[i].rejected,
                                           pairs[i].rejected_finished, where, "rejected", config,
                                           &in.rejected[i]));
    }
  }
  return in;
}

absl::StatusOr<TrainInputs> LoadListwiseInputs(const std::string& init_checkpoint,
                                               const std::vector<ListwiseGroup>& groups,
                                               const TrainConfig& config, bool uses_prior) {
  TrainInputs in;
  SPAR_RETURN_IF_ERROR(LoadModels(init_checkpoint, config,
                                  uses_prior ? config.prior_checkpoint : std::string(),
                                  "prior_checkpoint", in));
  in.group_starts.push_back(0);
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string where = absl::StrCat("groups[", g, "]");
    for (size_t k = 0; k < groups[g].responses.size(); ++k) {
      const ListwiseResponse& r = groups[g].responses[k];
      TokenizedExample ex;
      SPAR_RETURN_IF_ERROR(TokenizeExample(*in.policy, groups[g].prompt, r.text, r.finished, where,
                                           absl::StrCat("responses[", k, "].text"), config, &ex));
      in.chosen.push_back(std::move(ex));
    }
    in.group_starts.push_back(in.chosen.size());
  }
  return in;
}

}  // namespace spar::trainer::internal
