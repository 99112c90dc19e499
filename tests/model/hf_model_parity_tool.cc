// Test helper for hf_model_parity.py (ctest label `parity`): answers JSON-line requests on stdin
// with Spar's results for one checkpoint, one JSON line each:
//   serve DIR                    the checkpoint at DIR as model::Policy::Load reads it;
//   lora BASE ADAPTER MERGED     BASE with LoRA adapters trained for a few steps, saved with
//                                Policy::SaveLoraAdapter (ADAPTER) and Policy::Save (MERGED),
//                                then serves the adapted policy.
// Requests ({"op": ...}):
//   logits   {"rows": [[ids]], "padding": "left"|"right"} -> {"logits": [row][token][vocab]} for
//            each row's own tokens, the rows batched in one forward pass (left: as Generate's
//            prefill, key mask + per-row positions; right: as scoring, causal mask only).
//   generate {"prompts": [text], "temperature", "max_new_tokens", "num_samples", "seed"} ->
//            Policy::Generate: {"generations": [{"prompt_ids", "token_ids", "token_logprobs",
//            "logprobs"}]}.
//   sample   the same fields through sampler::Sampler on the checkpoint's directory ->
//            {"samples": [{"token_ids", "logprobs"}]} (serve only).
//   score    {"pairs": [[prompt_ids, response_ids]]} -> Policy::ScoreTokens: {"scores"}.
//   save     {"dir", "max_shard_bytes"} -> Policy::Save: {} (shards when the weights are larger).
// An error becomes {"error"}. Exits 2 on usage or load errors, with the message on stderr.
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "model/internal/llama.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "nlohmann/json.hpp"
#include "sampler/sampler.h"

namespace {

using nlohmann::json;
using spar::model::Policy;

// Rows batched to the longest with pad_token_id, on the left or the right.
struct Padded {
  torch::Tensor ids, positions, key_mask;  // [B, T]; key_mask undefined for right padding
  std::vector<int64_t> offsets, lengths;
};

Padded Pad(const std::vector<std::vector<int64_t>>& rows, int64_t pad, bool left) {
  const int64_t b = static_cast<int64_t>(rows.size());
  int64_t t = 0;
  for (const auto& r : rows) t = std::max<int64_t>(t, r.size());
  Padded p;
  p.ids = torch::full({b, t}, pad, torch::kInt64);
  p.positions = torch::zeros({b, t}, torch::kInt64);
  torch::Tensor mask = torch::zeros({b, t}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = static_cast<int64_t>(rows[i].size()), off = left ? t - len : 0;
    p.offsets.push_back(off);
    p.lengths.push_back(len);
    for (int64_t j = 0; j < len; ++j) {
      p.ids[i][off + j] = rows[i][j];
      p.positions[i][off + j] = j;
      mask[i][off + j] = 1;
    }
    if (!left) p.positions[i] = torch::arange(t, torch::kInt64);
  }
  if (left) p.key_mask = mask;
  return p;
}

json Logits(Policy& policy, const json& req) {
  Policy::Impl& impl = policy.impl();
  const auto rows = req.at("rows").get<std::vector<std::vector<int64_t>>>();
  Padded p = Pad(rows, impl.config.pad_token_id, req.value("padding", "left") == "left");
  torch::InferenceMode guard;
  impl.module->eval();
  torch::Tensor mask = p.key_mask.defined() ? p.key_mask.to(impl.device) : torch::Tensor();
  torch::Tensor logits =
      impl.module->forward(p.ids.to(impl.device), p.positions.to(impl.device), mask)
          .to(torch::kCPU, torch::kFloat64);
  json out = json::array();
  for (size_t i = 0; i < rows.size(); ++i) {
    torch::Tensor row = logits[i].narrow(0, p.offsets[i], p.lengths[i]).contiguous();
    const double* v = row.data_ptr<double>();
    json tokens = json::array();
    for (int64_t j = 0; j < row.size(0); ++j) {
      tokens.push_back(std::vector<double>(v + j * row.size(1), v + (j + 1) * row.size(1)));
    }
    out.push_back(std::move(tokens));
  }
  return {{"logits", out}};
}

spar::model::GenerationParams ReadParams(const json& req) {
  spar::model::GenerationParams params;
  params.temperature = req.value("temperature", 0.0f);
  params.max_new_tokens = req.value("max_new_tokens", 32);
  params.num_samples = req.value("num_samples", 1);
  params.seed = req.value("seed", uint64_t{0});
  return params;
}

json Generate(Policy& policy, const json& req) {
  auto gens = policy.Generate(req.at("prompts").get<std::vector<std::string>>(), ReadParams(req));
  if (!gens.ok()) return {{"error", gens.status().ToString()}};
  json out = json::array();
  for (const auto& g : *gens) {
    out.push_back({{"prompt_ids", g.prompt_ids},
                   {"token_ids", g.token_ids},
                   {"token_logprobs", g.token_logprobs},
                   {"logprobs", g.logprobs}});
  }
  return {{"generations", out}};
}

json Sample(const std::string& dir, const json& req) {
  auto sampler = spar::sampler::Sampler::Create(spar::sampler::SamplerConfig{});
  if (!sampler.ok()) return {{"error", sampler.status().ToString()}};
  const spar::model::GenerationParams g = ReadParams(req);
  spar::sampler::SamplingParams params;
  params.temperature = g.temperature;
  params.max_new_tokens = g.max_new_tokens;
  params.num_samples = g.num_samples;
  params.seed = g.seed;
  json out = json::array();
  auto collect = [&out](spar::sampler::PromptSamples ps) {
    json token_ids = json::array(), logprobs = json::array();
    for (const auto& s : ps.samples) {
      token_ids.push_back(s.token_ids);
      logprobs.push_back(s.logprob);
    }
    out.push_back({{"token_ids", token_ids}, {"logprobs", logprobs}});
    return true;
  };
  absl::Status st =
      (*sampler)->Generate(dir, req.at("prompts").get<std::vector<std::string>>(), params, collect);
  if (!st.ok()) return {{"error", st.ToString()}};
  return {{"samples", out}};
}

json Score(Policy& policy, const json& req) {
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> pairs;
  for (const json& p : req.at("pairs")) {
    pairs.emplace_back(p.at(0).get<std::vector<int32_t>>(), p.at(1).get<std::vector<int32_t>>());
  }
  auto scores = policy.ScoreTokens(pairs);
  if (!scores.ok()) return {{"error", scores.status().ToString()}};
  return {{"scores", *scores}};
}

json Save(const Policy& policy, const json& req) {
  absl::Status st =
      policy.Save(req.at("dir").get<std::string>(), req.at("max_shard_bytes").get<int64_t>());
  if (!st.ok()) return {{"error", st.ToString()}};
  return json::object();
}

json Answer(Policy& policy, const std::string& dir, const json& req) {
  const std::string op = req.value("op", "");
  if (op == "logits") return Logits(policy, req);
  if (op == "generate") return Generate(policy, req);
  if (op == "sample" && !dir.empty()) return Sample(dir, req);
  if (op == "score") return Score(policy, req);
  if (op == "save") return Save(policy, req);
  return {{"error", "unknown op \"" + op + "\""}};
}

// A short LoRA run: adapters on every projection, AdamW on -log pi of a few fixed byte strings.
absl::Status TrainLora(Policy& policy) {
  spar::model::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  lora.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                         "gate_proj", "up_proj", "down_proj"};
  lora.seed = 11;
  if (absl::Status st = policy.AddLora(lora); !st.ok()) return st;
  Policy::Impl& impl = policy.impl();
  std::vector<std::vector<int32_t>> prompts, responses;
  for (const char* text : {"2+3=5", "hello world", "the cat sat"}) {
    prompts.push_back({});
    for (const char* c = text; *c != '\0'; ++c) prompts.back().push_back(*c);
    responses.push_back({static_cast<int32_t>(impl.config.eos_token_id)});
  }
  spar::model::internal::ScoreBatch batch = spar::model::internal::MakeScoreBatch(
      prompts, responses, impl.config.bos_token_id, impl.config.pad_token_id, impl.device);
  batch.target_mask = torch::ones_like(batch.target_mask);  // the whole string
  std::vector<torch::Tensor> params;
  for (const auto& p : impl.module->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(2e-2));
  impl.module->train();
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    torch::Tensor loss = -spar::model::internal::SequenceLogProbs(impl.module, batch).mean();
    loss.backward();
    opt.step();
  }
  impl.module->eval();
  return absl::OkStatus();
}

int Usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s serve DIR | lora BASE ADAPTER_OUT MERGED_OUT  < requests\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (!((mode == "serve" && argc == 3) || (mode == "lora" && argc == 5))) return Usage(argv[0]);
  torch::set_num_threads(1);
  auto policy = Policy::Load(argv[2]);
  absl::Status st = policy.ok() ? absl::OkStatus() : policy.status();
  if (st.ok() && mode == "lora") {
    st = TrainLora(**policy);
    if (st.ok()) st = (*policy)->SaveLoraAdapter(argv[3], argv[2]);
    if (st.ok()) st = (*policy)->Save(argv[4]);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  const std::string dir = mode == "serve" ? argv[2] : "";
  std::string line;
  while (std::getline(std::cin, line)) {
    json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!req.is_object()) return Usage(argv[0]);
    json out;
    try {
      out = Answer(**policy, dir, req);
    } catch (const std::exception& e) {  // a malformed request or a torch error
      out = {{"error", e.what()}};
    }
    std::cout << out.dump() << '\n' << std::flush;
  }
  return 0;
}
