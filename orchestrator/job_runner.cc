#include "orchestrator/job_runner.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/arith_task.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "orchestrator/dno.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/run_dir.h"

namespace spar::orchestrator {
namespace {

using nlohmann::json;

uint64_t MixSeed(uint64_t seed, uint64_t round, uint64_t salt) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ULL ^ (round + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL;
  h ^= salt * 0x94D049BB133111EBULL;
  h ^= h >> 31;
  return h;
}

absl::Status WriteStage(const RunDir& dir, int t, const std::string& stage) {
  return WriteFileAtomic(dir.Stage(t), stage + "\n");
}

std::string ReadStage(const RunDir& dir, int t) {
  auto text = ReadFile(dir.Stage(t));
  if (!text.ok()) return "";
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

absl::StatusOr<std::vector<std::string>> ReadPromptFile(const std::string& path) {
  SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
  std::vector<std::string> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].is_object() || !rows[i].contains("prompt") || !rows[i]["prompt"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", i + 1, ": expected {\"prompt\": \"...\"}"));
    }
    out.push_back(rows[i]["prompt"].get<std::string>());
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return out;
}

// Copies a checkpoint directory's files (used when a round has no pairs to train on).
absl::Status CopyCheckpoint(const std::string& from, const std::string& to) {
  std::string tmp = to + ".tmp-copy";
  SPAR_RETURN_IF_ERROR(RemoveAll(tmp));
  SPAR_RETURN_IF_ERROR(MakeDirs(tmp));
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(from));
  for (const std::string& n : names) {
    if (IsDirectory(JoinPath(from, n))) continue;
    SPAR_ASSIGN_OR_RETURN(std::string data, ReadFile(JoinPath(from, n)));
    SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(tmp, n), data));
  }
  SPAR_RETURN_IF_ERROR(RemoveAll(to));
  return RenameDurable(tmp, to);
}

}  // namespace

JobRunner::JobRunner(std::string job_id, std::string job_dir, v1::JobSpec spec, Ports ports,
                     JobRunnerCallbacks callbacks, const std::atomic<bool>* cancel,
                     std::string data_root)
    : job_id_(std::move(job_id)),
      job_dir_(std::move(job_dir)),
      spec_(std::move(spec)),
      ports_(ports),
      callbacks_(std::move(callbacks)),
      cancel_(cancel),
      data_root_(std::move(data_root)) {}

absl::Status JobRunner::CheckCancelled() const {
  if (cancel_ != nullptr && cancel_->load()) return absl::CancelledError("job cancelled");
  return absl::OkStatus();
}

std::string JobRunner::Key(int t, const std::string& stage) const {
  return absl::StrFormat("%s/iter_%03d/%s", job_id_, t, stage);
}

std::string JobRunner::PolicyFor(int t) const {
  if (t <= 1) {
    auto base = ResolveDataPath(spec_.base_model(), data_root_, "base_model");
    return base.ok() ? *base : spec_.base_model();
  }
  return RunDir(job_dir_).Checkpoint(t - 1);
}

void JobRunner::Emit(int round, const std::string& stage, const std::string& kind, int64_t done,
                     int64_t total, const std::string& message) {
  if (!callbacks_.on_event) return;
  v1::JobEvent ev;
  ev.set_job_id(job_id_);
  ev.set_round(round);
  ev.set_stage(stage);
  ev.set_kind(kind);
  ev.set_done(done);
  ev.set_total(total);
  ev.set_message(message);
  callbacks_.on_event(ev);
}

absl::StatusOr<std::vector<std::string>> JobRunner::RoundPrompts(int t) {
  std::vector<std::string> all;
  if (spec_.prompts().has_builtin()) {
    for (const ArithProblem& p : MakeArithProblems(ArithSplit::kTrain, -1, spec_.seed())) {
      all.push_back(p.prompt);
    }
  } else {
    SPAR_ASSIGN_OR_RETURN(std::string path,
                          ResolveDataPath(spec_.prompts().path(), data_root_, "prompts.path"));
    SPAR_ASSIGN_OR_RETURN(all, ReadPromptFile(path));
  }
  // A fresh slice per round (ALGORITHMS.md §2: disjoint prompt partitions), wrapping around when
  // the pool is smaller than rounds * prompts_per_round.
  std::vector<std::string> out;
  const size_t n = static_cast<size_t>(spec_.prompts_per_round());
  const size_t start = static_cast<size_t>(t - 1) * n;
  for (size_t i = 0; i < n; ++i) out.push_back(all[(start + i) % all.size()]);
  return out;
}

absl::StatusOr<std::vector<std::string>> JobRunner::EvalPrompts() {
  std::vector<std::string> out;
  if (spec_.eval_prompts().has_builtin()) {
    for (const ArithProblem& p :
         MakeArithProblems(ArithSplit::kEval, spec_.eval().num_prompts(), spec_.seed())) {
      out.push_back(p.prompt);
    }
    return out;
  }
  SPAR_ASSIGN_OR_RETURN(std::string path, ResolveDataPath(spec_.eval_prompts().path(), data_root_,
                                                          "eval_prompts.path"));
  SPAR_ASSIGN_OR_RETURN(out, ReadPromptFile(path));
  if (static_cast<int>(out.size()) > spec_.eval().num_prompts()) {
    out.resize(spec_.eval().num_prompts());
  }
  return out;
}

absl::Status JobRunner::Greedy(const std::string& policy, const std::vector<std::string>& prompts,
                               const std::string& key, std::vector<std::string>* texts) {
  v1::GenerateRequest req;
  req.set_policy(policy);
  for (const std::string& p : prompts) req.add_prompts(p);
  req.mutable_params()->set_num_samples(1);
  req.mutable_params()->set_temperature(0.0f);
  req.mutable_params()->set_top_p(1.0f);
  req.mutable_params()->set_max_new_tokens(spec_.eval().max_new_tokens());
  req.mutable_params()->set_seed(spec_.seed());
  req.set_idempotency_key(key);
  texts->assign(prompts.size(), "");
  std::vector<bool> seen(prompts.size(), false);
  SPAR_RETURN_IF_ERROR(ports_.sampler->Generate(req, [&](const v1::GenerateResponse& r) {
    if (r.index() < 0 || r.index() >= static_cast<int64_t>(prompts.size()) || r.samples_size() < 1) {
      return absl::InternalError(absl::StrCat("sampler returned a bad result for index ", r.index()));
    }
    (*texts)[r.index()] = r.samples(0).text();
    seen[r.index()] = true;
    return CheckCancelled();
  }));
  if (std::find(seen.begin(), seen.end(), false) != seen.end()) {
    return absl::UnavailableError("sampler stream ended before every prompt had a result");
  }
  return absl::OkStatus();
}

absl::Status JobRunner::EnsureBaseEval() {
  RunDir dir(job_dir_);
  if (PathExists(dir.BaseEval())) return absl::OkStatus();
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> prompts, EvalPrompts());
  Emit(0, "eval", "stage_started", 0, prompts.size(), "greedy answers of the base policy");
  std::vector<std::string> texts;
  SPAR_RETURN_IF_ERROR(Greedy(PolicyFor(1), prompts, Key(0, "eval"), &texts));
  std::vector<json> rows;
  int correct = 0, verifiable = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    rows.push_back({{"index", i}, {"prompt", prompts[i]}, {"text", texts[i]}});
    if (ArithTruth(prompts[i]).has_value()) {
      ++verifiable;
      correct += ArithCorrect(prompts[i], texts[i]) ? 1 : 0;
    }
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.BaseEval(), rows));
  double acc = verifiable > 0 ? static_cast<double>(correct) / verifiable : -1.0;
  callbacks_.update_job([acc](v1::Job& job) { job.set_base_greedy_accuracy(acc); });
  Emit(0, "eval", "stage_finished", prompts.size(), prompts.size(),
       absl::StrFormat("base greedy accuracy %.3f", acc));
  return absl::OkStatus();
}

absl::Status JobRunner::Run() {
  SPAR_RETURN_IF_ERROR(CheckCancelled());
  SPAR_RETURN_IF_ERROR(EnsureBaseEval());
  for (int t = 1; t <= spec_.rounds(); ++t) {
    SPAR_RETURN_IF_ERROR(CheckCancelled());
    SPAR_RETURN_IF_ERROR(RunRound(t));
  }
  return absl::OkStatus();
}

absl::Status JobRunner::RunRound(int t) {
  RunDir dir(job_dir_);
  SPAR_RETURN_IF_ERROR(MakeDirs(dir.Round(t)));
  std::string done = ReadStage(dir, t);
  int next = StageIndex(done) + 1;
  if (next >= kNumStages) return absl::OkStatus();  // round already complete
  absl::Time started = absl::Now();
  callbacks_.update_job([t](v1::Job& job) {
    job.set_current_round(t);
    while (job.rounds_size() < t) job.add_rounds()->set_round(job.rounds_size());
  });
  const std::string policy = PolicyFor(t);
  for (int s = next; s < kNumStages; ++s) {
    SPAR_RETURN_IF_ERROR(CheckCancelled());
    const std::string stage = kStages[s];
    callbacks_.update_job([&](v1::Job& job) { job.set_current_stage(stage); });
    Emit(t, stage, "stage_started", 0, 0);
    absl::Status st;
    switch (s) {
      case 0: st = StageSample(t, policy); break;
      case 1: st = StageJudge(t); break;
      case 2: st = StagePairs(t); break;
      case 3: st = StageTrain(t, policy); break;
      case 4: st = StageEval(t); break;
    }
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrFormat("round %d stage %s: %s", t, stage,
                                                     st.message()));
    }
    SPAR_RETURN_IF_ERROR(WriteStage(dir, t, stage));
    callbacks_.update_job([&](v1::Job& job) { job.mutable_rounds(t - 1)->set_stage(stage); });
    Emit(t, stage, "stage_finished", 1, 1);
  }
  double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  callbacks_.update_job([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_seconds(r->seconds() + seconds);
  });
  Emit(t, "eval", "round_finished", 1, 1);
  return absl::OkStatus();
}

absl::Status JobRunner::StageSample(int t, const std::string& policy) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> prompts, RoundPrompts(t));
  v1::GenerateRequest req;
  req.set_policy(policy);
  for (const std::string& p : prompts) req.add_prompts(p);
  *req.mutable_params() = spec_.sampling();
  req.mutable_params()->set_seed(MixSeed(spec_.sampling().seed(), t, 1));
  req.set_idempotency_key(Key(t, "sample"));
  std::vector<json> rows(prompts.size());
  size_t received = 0;
  int64_t total = static_cast<int64_t>(prompts.size());
  SPAR_RETURN_IF_ERROR(ports_.sampler->Generate(req, [&](const v1::GenerateResponse& r) {
    if (r.index() < 0 || r.index() >= total) {
      return absl::InternalError(absl::StrCat("sampler returned index ", r.index()));
    }
    json samples = json::array();
    for (const v1::Sample& s : r.samples()) {
      samples.push_back({{"text", s.text()}, {"logprob", s.logprob()}, {"finished", s.finished()},
                         {"num_tokens", s.token_ids_size()}});
    }
    rows[r.index()] = {{"index", r.index()}, {"prompt", prompts[r.index()]}, {"samples", samples}};
    ++received;
    if (received % 32 == 0 || received == prompts.size()) {
      Emit(t, "sample", "progress", received, total);
    }
    return CheckCancelled();
  }));
  if (received != prompts.size()) {
    return absl::UnavailableError(absl::StrFormat("sampler returned %d of %d prompts", received,
                                                  prompts.size()));
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.Samples(t), rows));
  callbacks_.update_job([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_num_prompts(static_cast<int>(prompts.size()));
    r->set_num_samples(static_cast<int>(prompts.size()) * spec_.sampling().num_samples());
  });
  return absl::OkStatus();
}

absl::Status JobRunner::StageJudge(int t) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> samples, ReadJsonl(dir.Samples(t)));
  v1::CompareRequest req;
  req.set_idempotency_key(Key(t, "judge"));
  struct Ref {
    int64_t prompt_index;
    int i, j;
  };
  std::vector<Ref> refs;
  for (const json& row : samples) {
    std::vector<std::string> texts;
    for (const json& s : row["samples"]) texts.push_back(s["text"].get<std::string>());
    for (const PairRef& p : PairsToJudge(texts)) {
      v1::Comparison* c = req.add_comparisons();
      c->set_prompt(row["prompt"].get<std::string>());
      c->set_response_a(texts[p.i]);
      c->set_response_b(texts[p.j]);
      refs.push_back({row["index"].get<int64_t>(), p.i, p.j});
    }
  }
  std::vector<json> out(refs.size());
  std::vector<bool> seen(refs.size(), false);
  size_t received = 0;
  int64_t total = static_cast<int64_t>(refs.size());
  if (!refs.empty()) {
    SPAR_RETURN_IF_ERROR(ports_.oracle->Compare(req, [&](const v1::Judgment& jd) {
      if (jd.index() < 0 || jd.index() >= total || seen[jd.index()]) {
        return absl::InternalError(absl::StrCat("oracle returned index ", jd.index(), " twice or out of range"));
      }
      const Ref& r = refs[jd.index()];
      seen[jd.index()] = true;
      out[jd.index()] = {{"index", r.prompt_index}, {"i", r.i}, {"j", r.j}, {"ok", jd.ok()},
                         {"p_a_wins", jd.p_a_wins()}, {"p_ab", jd.p_ab()}, {"p_ba", jd.p_ba()},
                         {"verdict_ab", jd.verdict_ab()}, {"verdict_ba", jd.verdict_ba()}};
      if (!jd.ok()) out[jd.index()]["error"] = jd.error();
      ++received;
      if (received % 256 == 0 || received == refs.size()) {
        Emit(t, "judge", "progress", received, total);
      }
      return CheckCancelled();
    }));
  }
  if (received != refs.size()) {
    return absl::UnavailableError(absl::StrFormat("oracle returned %d of %d judgments", received,
                                                  refs.size()));
  }
  return WriteJsonlAtomic(dir.Judgments(t), out);
}

absl::Status JobRunner::StagePairs(int t) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> samples, ReadJsonl(dir.Samples(t)));
  SPAR_ASSIGN_OR_RETURN(std::vector<json> judgments, ReadJsonl(dir.Judgments(t)));
  std::map<int64_t, std::vector<PairJudgment>> by_prompt;
  int failed = 0;
  for (const json& j : judgments) {
    bool ok = j["ok"].get<bool>();
    failed += ok ? 0 : 1;
    by_prompt[j["index"].get<int64_t>()].push_back(
        {j["i"].get<int>(), j["j"].get<int>(), j["p_a_wins"].get<double>(), ok});
  }
  std::vector<json> rows;
  int dropped_empty = 0;
  for (const json& row : samples) {
    std::vector<std::string> texts;
    for (const json& s : row["samples"]) texts.push_back(s["text"].get<std::string>());
    int64_t index = row["index"].get<int64_t>();
    std::vector<double> wr = WinRates(texts, by_prompt[index]);
    for (const PreferencePairRow& p :
         DnoMarginPairs(row["prompt"].get<std::string>(), texts, wr, spec_.pairs().win_rate_gate(),
                        spec_.pairs().min_gap())) {
      // The trainer rejects empty responses (nothing but EOS to score); such samples still count
      // in the win rates above, they just cannot be one side of a training pair.
      if (p.chosen.empty() || p.rejected.empty()) {
        ++dropped_empty;
        continue;
      }
      rows.push_back({{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected},
                      {"chosen_win_rate", p.chosen_win_rate},
                      {"rejected_win_rate", p.rejected_win_rate}, {"source_index", index}});
    }
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.Pairs(t), rows));
  int kept = static_cast<int>(rows.size());
  callbacks_.update_job([&](v1::Job& job) { job.mutable_rounds(t - 1)->set_pairs_kept(kept); });
  Emit(t, "pairs", "progress", kept, kept,
       absl::StrFormat("%d pairs kept, %d failed judgments excluded, %d pairs with an empty "
                       "response dropped",
                       kept, failed, dropped_empty));
  return absl::OkStatus();
}

absl::Status JobRunner::StageTrain(int t, const std::string& policy) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> pairs, ReadJsonl(dir.Pairs(t)));
  if (pairs.empty()) {
    // Nothing to learn from: pi_{t+1} = pi_t.
    SPAR_RETURN_IF_ERROR(CopyCheckpoint(policy, dir.Checkpoint(t)));
    return WriteJsonFileAtomic(dir.Train(t), {{"skipped", true}, {"reason", "no pairs"}});
  }
  v1::StartTrainingRequest req;
  req.set_idempotency_key(Key(t, "train"));
  req.set_init_checkpoint(policy);
  req.set_pairs_path(dir.Pairs(t));
  req.set_output_checkpoint(dir.Checkpoint(t));
  *req.mutable_config() = spec_.training();
  req.mutable_config()->set_seed(MixSeed(spec_.training().seed(), t, 3));
  SPAR_ASSIGN_OR_RETURN(
      v1::TrainingEvent last,
      ports_.trainer->Train(
          req,
          [&](const v1::TrainingEvent& ev) {
            Emit(t, "train", "progress", ev.step(), ev.total_steps(),
                 absl::StrFormat("loss %.4f", ev.loss()));
          },
          [&] { return !CheckCancelled().ok(); }));
  if (!PathExists(JoinPath(dir.Checkpoint(t), "config.json"))) {
    return absl::InternalError(absl::StrCat("trainer reported success but ", dir.Checkpoint(t),
                                            " has no config.json"));
  }
  json metrics = json::object();
  for (const auto& [k, v] : last.metrics()) metrics[k] = v;
  double acc = last.metrics().count("rewards/accuracies") ? last.metrics().at("rewards/accuracies") : 0;
  SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
      dir.Train(t), {{"steps", last.step()}, {"final_loss", last.loss()}, {"metrics", metrics}}));
  callbacks_.update_job([&](v1::Job& job) {
    job.mutable_rounds(t - 1)->set_train_loss(last.loss());
    job.mutable_rounds(t - 1)->set_reward_accuracy(acc);
  });
  return absl::OkStatus();
}

absl::Status JobRunner::StageEval(int t) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> base_rows, ReadJsonl(dir.BaseEval()));
  std::vector<std::string> prompts, base_texts;
  for (const json& r : base_rows) {
    prompts.push_back(r["prompt"].get<std::string>());
    base_texts.push_back(r["text"].get<std::string>());
  }
  std::vector<std::string> texts;
  SPAR_RETURN_IF_ERROR(Greedy(dir.Checkpoint(t), prompts, Key(t, "eval"), &texts));

  // Win rate of pi_t vs pi_0 on held-out prompts, judged by the oracle (identical answers: 0.5).
  v1::CompareRequest req;
  req.set_idempotency_key(Key(t, "eval"));
  std::vector<size_t> judged;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (texts[i] == base_texts[i]) continue;
    v1::Comparison* c = req.add_comparisons();
    c->set_prompt(prompts[i]);
    c->set_response_a(texts[i]);
    c->set_response_b(base_texts[i]);
    judged.push_back(i);
  }
  std::vector<double> p(prompts.size(), 0.5);
  std::vector<bool> ok(prompts.size(), true);
  if (!judged.empty()) {
    SPAR_RETURN_IF_ERROR(ports_.oracle->Compare(req, [&](const v1::Judgment& jd) {
      if (jd.index() < 0 || jd.index() >= static_cast<int64_t>(judged.size())) {
        return absl::InternalError("oracle returned an out-of-range index");
      }
      p[judged[jd.index()]] = jd.p_a_wins();
      ok[judged[jd.index()]] = jd.ok();
      return CheckCancelled();
    }));
  }
  double wsum = 0;
  int wn = 0, correct = 0, verifiable = 0;
  double len_sum = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (ok[i]) {
      wsum += p[i];
      ++wn;
    }
    len_sum += static_cast<double>(texts[i].size());
    if (ArithTruth(prompts[i]).has_value()) {
      ++verifiable;
      correct += ArithCorrect(prompts[i], texts[i]) ? 1 : 0;
    }
  }
  double win_rate = wn > 0 ? wsum / wn : 0.5;
  double acc = verifiable > 0 ? static_cast<double>(correct) / verifiable : -1.0;
  double mean_len = prompts.empty() ? 0 : len_sum / prompts.size();
  json eval = {{"round", t},
               {"num_prompts", prompts.size()},
               {"greedy_accuracy", acc},
               {"win_rate_vs_base", win_rate},
               {"judged", judged.size()},
               {"failed_judgments", static_cast<int>(wn < static_cast<int>(prompts.size())) *
                                        (static_cast<int>(prompts.size()) - wn)},
               {"mean_response_length_bytes", mean_len}};
  SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(dir.Eval(t), eval));
  callbacks_.update_job([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_greedy_accuracy(acc);
    r->set_win_rate_vs_base(win_rate);
    r->set_mean_response_length(mean_len);
  });
  return absl::OkStatus();
}

}  // namespace spar::orchestrator
