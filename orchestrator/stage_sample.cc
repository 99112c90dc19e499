// The sample stage: round t's prompts, K samples each from the round's policy (samples.jsonl).
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "orchestrator/internal/stages.h"
#include "orchestrator/internal/stream_tally.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/prompt_file.h"
#include "tasks/arith/problems.h"

namespace spar::orchestrator::internal {
namespace {

using nlohmann::json;

// The prompts file's rows ({"prompt", "gold"?}); a gold answer where the recipe needs one.
absl::StatusOr<std::vector<PromptItem>> ReadPromptPool(const StageContext& ctx) {
  SPAR_ASSIGN_OR_RETURN(std::string path, ResolveDataPath(ctx.spec().prompts().path(),
                                                          ctx.data_root(), "prompts.path"));
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptRow> rows, ReadPromptFile(path, "prompts.path"));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (ctx.recipe().NeedsGold() && !rows[i].gold.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("prompts.path: ", path, ": prompt ", i + 1,
                                                     ": algorithm \"", ctx.spec().algorithm(),
                                                     "\" needs a \"gold\" answer"));
    }
  }
  return rows;
}

}  // namespace

absl::StatusOr<std::vector<PromptItem>> RoundPrompts(const StageContext& ctx, int t) {
  std::vector<PromptItem> all;
  if (ctx.spec().prompts().has_builtin()) {
    for (const arith::ArithProblem& p :
         arith::MakeArithProblems(arith::ArithSplit::kRounds, -1, ctx.spec().seed())) {
      all.push_back({p.prompt, p.answer});
    }
  } else {
    SPAR_ASSIGN_OR_RETURN(all, ReadPromptPool(ctx));
  }
  // A fresh slice per round (ALGORITHMS.md §2: disjoint prompt partitions), wrapping around when
  // the pool is smaller than rounds * prompts_per_round.
  std::vector<PromptItem> out;
  const size_t n = static_cast<size_t>(ctx.spec().prompts_per_round());
  const size_t start = static_cast<size_t>(t - 1) * n;
  for (size_t i = 0; i < n; ++i) out.push_back(all[(start + i) % all.size()]);
  return out;
}

v1::GenerateRequest SampleRequest(const StageContext& ctx, int t, const std::string& policy,
                                  const std::vector<PromptItem>& items) {
  v1::GenerateRequest req;
  req.set_policy(policy);
  for (const PromptItem& it : items) req.add_prompts(it.prompt);
  *req.mutable_params() = ctx.spec().sampling();
  req.mutable_params()->set_seed(MixSeed(ctx.spec().sampling().seed(), t, 1));
  req.set_chat_template(ctx.spec().chat_template());
  req.set_idempotency_key(ctx.Key(t, "sample"));
  return req;
}

SampleRow SampleRowOf(const v1::GenerateResponse& r, const PromptItem& item) {
  SampleRow row;
  row.index = r.index();
  row.prompt = item.prompt;
  row.gold = item.gold;
  for (const v1::Sample& s : r.samples()) {
    row.samples.push_back(
        {s.text(), s.logprob(), s.finished(),
         std::vector<int32_t>(s.token_ids().begin(), s.token_ids().end()),
         std::vector<double>(s.token_logprobs().begin(), s.token_logprobs().end())});
  }
  return row;
}

void SampleFinished(const StageContext& ctx, int t, size_t num_prompts) {
  ctx.UpdateJob([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_num_prompts(static_cast<int>(num_prompts));
    r->set_num_samples(static_cast<int>(num_prompts) * ctx.spec().sampling().num_samples());
  });
}

absl::Status StageSample(StageContext& ctx, int t, const std::string& policy) {
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptItem> items, RoundPrompts(ctx, t));
  const v1::GenerateRequest req = SampleRequest(ctx, t, policy, items);
  std::vector<SampleRow> rows(items.size());
  StreamTally tally(items.size(), "sampler");
  SPAR_RETURN_IF_ERROR(ctx.ports().sampler->Generate(
      req,
      [&](const v1::GenerateResponse& r) {
        SPAR_RETURN_IF_ERROR(tally.Receive(r.index()));
        rows[r.index()] = SampleRowOf(r, items[r.index()]);
        if (tally.ProgressDue(32))
          ctx.Emit(t, "sample", "progress", tally.received(), items.size());
        return ctx.CheckCancelled();
      },
      ctx.Cancelled()));
  SPAR_RETURN_IF_ERROR(tally.CheckWhole("prompts"));
  SPAR_RETURN_IF_ERROR(WriteRows(ctx.dir().Samples(t), rows));
  SampleFinished(ctx, t, items.size());
  return absl::OkStatus();
}

}  // namespace spar::orchestrator::internal
