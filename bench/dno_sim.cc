// In-process DNO simulation on the built-in addition task, used to tune the demo's settings:
// base model (SFT) -> 3 rounds of {sample K per prompt with pi_t, rule judge (correct beats wrong,
// closer beats farther), win rates, dno_margin pairs, DPO vs pi_t} -> greedy eval accuracy.
// Usage: spar_dno_sim [--key=value ...]   (keys: see Flags below; defaults = the tuned demo
// settings: seed 1, 512 prompts/round, K 8, T 0.7, top_p 0.95, gate 0.5, min_gap 0.25,
// beta 0.1, lr 5e-5, 1 epoch, batch 16, nll_weight 1.0)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "model/policy.h"
#include "tasks/arith/base_model.h"
#include "tasks/arith/problems.h"
#include "trainer/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Flags {
  std::string work_dir = "/tmp/spar_dno_sim";
  uint64_t seed = 1;
  double base_target = 0.45;
  int rounds = 3;
  int prompts_per_round = 512;
  int k = 8;
  double temperature = 0.7;
  double top_p = 0.95;
  double gate = 0.5;
  double min_gap = 0.25;
  double beta = 0.1;
  double lr = 5e-5;
  int epochs = 1;
  int batch_size = 16;
  double nll_weight = 1.0;
  int eval_n = 500;
  int reuse_base = 1;
  int strict = 0;  // 1: the judge ties two wrong answers (only correct beats wrong)
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  std::map<std::string, std::string> kv;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.find('=') == std::string::npos) {
      std::fprintf(stderr, "bad flag %s\n", a.c_str());
      return false;
    }
    kv[a.substr(2, a.find('=') - 2)] = a.substr(a.find('=') + 1);
  }
  bool ok = true;
  auto d = [&](const char* k, double* v) {
    if (kv.count(k)) ok &= absl::SimpleAtod(kv[k], v), kv.erase(k);
  };
  auto i = [&](const char* k, int* v) {
    if (kv.count(k)) ok &= absl::SimpleAtoi(kv[k], v), kv.erase(k);
  };
  auto u = [&](const char* k, uint64_t* v) {
    if (kv.count(k)) ok &= absl::SimpleAtoi(kv[k], v), kv.erase(k);
  };
  if (kv.count("work_dir")) f->work_dir = kv["work_dir"], kv.erase("work_dir");
  u("seed", &f->seed);
  d("base_target", &f->base_target);
  i("rounds", &f->rounds);
  i("prompts_per_round", &f->prompts_per_round);
  i("k", &f->k);
  d("temperature", &f->temperature);
  d("top_p", &f->top_p);
  d("gate", &f->gate);
  d("min_gap", &f->min_gap);
  d("beta", &f->beta);
  d("lr", &f->lr);
  i("epochs", &f->epochs);
  i("batch_size", &f->batch_size);
  d("nll_weight", &f->nll_weight);
  i("eval_n", &f->eval_n);
  i("reuse_base", &f->reuse_base);
  i("strict", &f->strict);
  for (const auto& [k, v] : kv) {
    std::fprintf(stderr, "unknown flag --%s\n", k.c_str());
    ok = false;
  }
  return ok;
}

// Distance of a response's answer from the truth; +inf when it states no number.
double Distance(const std::string& prompt, const std::string& response) {
  auto truth = spar::arith::ArithTruth(prompt);
  auto got = spar::arith::ParseArithAnswer(response);
  if (!truth || !got) return std::numeric_limits<double>::infinity();
  return std::fabs(static_cast<double>(*got - *truth));
}

// P(a beats b) under the rule judge: correct beats wrong, closer beats farther, ties 1/2.
double Prefer(double da, double db) { return da < db ? 1.0 : (da > db ? 0.0 : 0.5); }

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

// pi_0 for this seed and base target, built unless --reuse_base finds it.
absl::Status EnsureBase(const Flags& f, const std::string& base_dir) {
  if (f.reuse_base && spar::PathExists(spar::JoinPath(base_dir, "model.safetensors"))) {
    return absl::OkStatus();
  }
  spar::arith::ArithBaseOptions opts;
  opts.out_dir = base_dir;
  opts.seed = f.seed;
  opts.target_accuracy = f.base_target;
  auto report = spar::arith::BuildArithBaseModel(opts, [](const auto& p) {
    if (p.accuracy >= 0) {
      std::printf("  base step %d loss %.3f acc %.3f\n", p.step, p.loss, p.accuracy);
    }
  });
  if (!report.ok()) return report.status();
  std::printf("base: steps=%d seconds=%.1f acc200=%.3f params=%lld\n", report->steps,
              report->seconds, report->greedy_accuracy, (long long)report->num_parameters);
  return absl::OkStatus();
}

struct RoundPairs {
  std::vector<spar::trainer::PreferencePair> pairs;
  int sample_correct = 0;
  int total = 0;
};

// The rule judge's all-pairs win rates within each prompt's K samples, then dno_margin pairs:
// a sample whose win rate passes the gate over every distinct one at least min_gap below it.
RoundPairs MakePairs(const Flags& f, const std::vector<spar::model::Generation>& gens) {
  RoundPairs out;
  for (const auto& g : gens) {
    const int k = static_cast<int>(g.texts.size());
    std::vector<double> dist(k), win(k, 0.0);
    for (int a = 0; a < k; ++a) {
      dist[a] = Distance(g.prompt, g.texts[a]);
      out.sample_correct += dist[a] == 0.0;
      ++out.total;
    }
    for (int a = 0; a < k; ++a) {
      for (int b = 0; b < k; ++b) {
        if (a == b) continue;
        const bool tie = f.strict && dist[a] > 0 && dist[b] > 0;
        win[a] += tie ? 0.5 : Prefer(dist[a], dist[b]);
      }
      win[a] /= std::max(1, k - 1);
    }
    for (int a = 0; a < k; ++a) {
      if (win[a] < f.gate || g.texts[a].empty()) continue;
      for (int b = 0; b < k; ++b) {
        if (b == a || g.texts[b] == g.texts[a] || g.texts[b].empty()) continue;
        if (win[a] - win[b] >= f.min_gap) out.pairs.push_back({g.prompt, g.texts[a], g.texts[b]});
      }
    }
  }
  return out;
}

absl::StatusOr<double> EvalAccuracy(const std::string& dir,
                                    const std::vector<spar::arith::ArithProblem>& eval) {
  auto policy = spar::model::Policy::Load(dir);
  if (!policy.ok()) return policy.status();
  return spar::arith::ArithGreedyAccuracy(**policy, eval);
}

// One round: sample K per prompt with pi_t, judge, pair, train pi_{t+1} (in *current), evaluate.
absl::Status RunRound(const Flags& f, int round,
                      const std::vector<spar::arith::ArithProblem>& train,
                      const std::vector<spar::arith::ArithProblem>& eval, std::string* current) {
  const auto t0 = Clock::now();
  auto policy = spar::model::Policy::Load(*current);
  if (!policy.ok()) return policy.status();
  std::vector<std::string> prompts;
  for (int i = 0; i < f.prompts_per_round; ++i) {
    prompts.push_back(train[(round * f.prompts_per_round + i) % train.size()].prompt);
  }
  spar::model::GenerationParams gp;
  gp.temperature = static_cast<float>(f.temperature);
  gp.top_p = static_cast<float>(f.top_p);
  gp.num_samples = f.k;
  gp.max_new_tokens = 6;
  gp.seed = f.seed * 1000 + round;
  auto gens = (*policy)->Generate(prompts, gp);
  if (!gens.ok()) return gens.status();
  const double t_sample = Since(t0);
  const RoundPairs rp = MakePairs(f, *gens);
  const auto t1 = Clock::now();
  spar::trainer::TrainConfig tc;
  tc.beta = f.beta;
  tc.learning_rate = f.lr;
  tc.epochs = f.epochs;
  tc.batch_size = f.batch_size;
  tc.nll_weight = f.nll_weight;
  tc.seed = f.seed + round;
  const std::string next = spar::JoinPath(f.work_dir, absl::StrCat("iter_", round + 1));
  double train_s = 0;
  std::map<std::string, double> metrics;
  if (!rp.pairs.empty()) {
    auto result = spar::trainer::TrainDpo(*current, rp.pairs, tc, next);
    if (!result.ok()) return result.status();
    train_s = Since(t1);
    metrics = result->metrics;
    *current = next;
  }
  const auto t2 = Clock::now();
  absl::StatusOr<double> acc = EvalAccuracy(*current, eval);
  if (!acc.ok()) return acc.status();
  std::printf(
      "round %d: eval_acc=%.3f sample_acc=%.3f pairs=%zu margin=%.3f racc=%.3f "
      "sample_s=%.1f train_s=%.1f eval_s=%.1f\n",
      round + 1, *acc, double(rp.sample_correct) / rp.total, rp.pairs.size(),
      metrics["rewards/margins"], metrics["rewards/accuracies"], t_sample, train_s, Since(t2));
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!ParseFlags(argc, argv, &f)) return 2;
  const auto t_all = Clock::now();
  const std::string base_dir =
      spar::JoinPath(f.work_dir, absl::StrCat("base_s", f.seed, "_t", f.base_target));
  if (absl::Status st = EnsureBase(f, base_dir); !st.ok()) return Fail(st);
  const auto eval = spar::arith::MakeArithProblems(spar::arith::ArithSplit::kEval, f.eval_n, 99);
  const auto train =
      spar::arith::MakeArithProblems(spar::arith::ArithSplit::kTrain, -1, f.seed + 1000);
  std::string current = base_dir;
  absl::StatusOr<double> acc = EvalAccuracy(current, eval);
  if (!acc.ok()) return Fail(acc.status());
  std::printf("round 0: eval_acc=%.3f\n", *acc);
  const auto t_rounds = Clock::now();
  for (int round = 0; round < f.rounds; ++round) {
    if (absl::Status st = RunRound(f, round, train, eval, &current); !st.ok()) return Fail(st);
  }
  std::printf("rounds_total_s=%.1f all_s=%.1f\n", Since(t_rounds), Since(t_all));
  return 0;
}
