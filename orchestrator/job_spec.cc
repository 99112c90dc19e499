#include "orchestrator/job_spec.h"

#include <google/protobuf/util/json_util.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/mpo_defaults.h"
#include "common/status_macros.h"
#include "model/chat_template.h"
#include "model/chat_template_setting.h"
#include "orchestrator/best_round.h"
#include "orchestrator/prompt_file.h"
#include "orchestrator/training_config.h"
#include "tasks/arith/problems.h"
#include "trainer/train_config.h"

namespace spar::orchestrator {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, " ", what));
}

// The pair policy of each algorithm (PairPolicy.policy in orchestrator.proto).
std::string PolicyFor(const std::string& algorithm) {
  if (algorithm == "spin") return "gold_vs_sample";
  if (algorithm == "dpo") return "best_vs_worst";
  if (algorithm == "sppo") return "sppo_argmax_argmin";
  if (algorithm == "mpo") return "mpo_pairs";
  if (algorithm == "brain" || algorithm == "rrhf") return "listwise";
  return "dno_margin";
}

// The pair policies each algorithm accepts (the first is its default).
std::vector<std::string> PoliciesFor(const std::string& algorithm) {
  if (algorithm == "dno") return {"dno_margin", "dno_soft_all"};
  return {PolicyFor(algorithm)};
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpecJson(const std::string& text) {
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(text, &spec, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec: ", st.message().ToString()));
  }
  return spec;
}

bool PromptsCarryGold(const v1::JobSpec& spec, const std::string& data_root) {
  if (!spec.prompts().has_path()) return true;
  absl::StatusOr<std::string> path =
      ResolveDataPath(spec.prompts().path(), data_root, "prompts.path");
  if (!path.ok()) return false;
  absl::StatusOr<std::vector<PromptRow>> rows = ReadPromptFile(*path, "prompts.path");
  if (!rows.ok() || rows->empty()) return false;
  return std::all_of(rows->begin(), rows->end(),
                     [](const PromptRow& r) { return r.gold.has_value(); });
}

bool HasValidation(const v1::JobSpec& spec) {
  return spec.validation_prompts().has_builtin() || spec.validation_prompts().has_path();
}

v1::JobSpec WithDefaults(const v1::JobSpec& in) {
  return WithDefaults(in, !in.prompts().has_path());
}

v1::JobSpec WithDefaults(const v1::JobSpec& in, bool prompts_carry_gold) {
  v1::JobSpec s = in;
  if (!s.has_name()) s.set_name("job");
  if (!s.has_algorithm()) s.set_algorithm("dno");
  if (!s.has_preset()) s.set_preset("paper");
  // DNO-Prct (the paper's Algorithm 2) unless the spec asks for self-play alone.
  const bool dno_paper = s.algorithm() == "dno" && s.preset() == "paper";
  if (!s.has_rounds()) s.set_rounds(3);
  if (!s.has_prompts_per_round()) s.set_prompts_per_round(256);
  if (!s.prompts().has_builtin() && !s.prompts().has_path())
    s.mutable_prompts()->set_builtin("arith");
  if (!s.eval_prompts().has_builtin() && !s.eval_prompts().has_path()) {
    s.mutable_eval_prompts()->set_builtin("arith");
  }
  // The built-in task's validation slice (left out of its rounds); a prompt file has none
  // unless one is named.
  if (!HasValidation(s) && s.prompts().has_builtin()) {
    s.mutable_validation_prompts()->set_builtin(s.prompts().builtin());
  }
  v1::SamplingParams* sp = s.mutable_sampling();
  // SPIN pairs the gold answer with one sample (ALGORITHMS.md §3); the judged recipes need two.
  // The papers' sampling: DNO-Prct K 5, T 0.7, top-p 0.95; SPPO K 5, T 0.7, top-p 0.9.
  const bool sppo = s.algorithm() == "sppo";
  if (!sp->has_num_samples()) {
    sp->set_num_samples(s.algorithm() == "spin" ? 1 : dno_paper || sppo ? 5 : 4);
  }
  if (!sp->has_temperature()) sp->set_temperature(dno_paper || sppo ? 0.7f : 1.0f);
  if (!sp->has_top_p()) sp->set_top_p(dno_paper ? 0.95f : sppo ? 0.9f : 1.0f);
  if (!sp->has_max_new_tokens()) sp->set_max_new_tokens(8);
  if (!s.has_seed()) s.set_seed(1);
  if (!sp->has_seed()) sp->set_seed(s.seed());
  v1::PairPolicy* pp = s.mutable_pairs();
  if (!pp->has_policy()) {
    pp->set_policy(PolicyFor(s.algorithm()));
  }
  if (!pp->has_win_rate_gate()) pp->set_win_rate_gate(0.5);
  if (!pp->has_min_gap()) pp->set_min_gap(0.25);
  if (!pp->has_unfinished_negative()) pp->set_unfinished_negative(true);
  if (s.algorithm() == "dno") {
    // DNO-Prct (ALGORITHMS.md §2): the teacher as a candidate wherever there is one, earlier
    // rounds' pairs mixed back; teacher margin twice the samples' (2 vs 1 of 6 points).
    if (!pp->has_use_teacher()) pp->set_use_teacher(dno_paper && prompts_carry_gold);
    if (dno_paper && pp->policy() == "dno_margin" && pp->mix_previous_size() == 0) {
      pp->add_mix_previous(0.3);
      pp->add_mix_previous(0.15);
    }
    if (!pp->has_teacher_min_gap()) pp->set_teacher_min_gap(std::min(1.0, 2 * pp->min_gap()));
    if (!pp->has_defect_ngram()) pp->set_defect_ngram(4);
    if (!pp->has_defect_max_repeats()) pp->set_defect_max_repeats(2);
    if (!pp->has_scoring()) pp->set_scoring("pairwise");
  }
  v1::TrainingConfig* tc = s.mutable_training();
  if (!tc->has_loss()) {
    // dno_soft_all's soft labels are for the DNO loss (Algorithm 1); dno_margin trains DPO.
    tc->set_loss(s.algorithm() == "sppo"          ? "sppo"
                 : s.algorithm() == "mpo"         ? "mpo"
                 : s.algorithm() == "brain"       ? "brain"
                 : s.algorithm() == "rrhf"        ? "rrhf"
                 : pp->policy() == "dno_soft_all" ? "dno"
                                                  : "dpo");
  }
  if (s.algorithm() == "mpo") {
    // Defaults whose last iterate converges (common/mpo_defaults.h, orchestrator/mpo_game.h).
    if (!s.has_mpo_magnet_refresh()) s.set_mpo_magnet_refresh(kDefaultMpoMagnetRefresh);
    if (!tc->has_mpo_alpha()) tc->set_mpo_alpha(kDefaultMpoAlpha);
    if (!tc->has_mpo_eta()) tc->set_mpo_eta(kDefaultMpoEta);
  }
  if (!s.has_chat_template()) s.set_chat_template("auto");
  if (!s.judge().has_max_failure_rate()) {
    s.mutable_judge()->set_max_failure_rate(kDefaultJudgeMaxFailureRate);
  }
  // The trainer's defaults (trainer::TrainConfigDefaults: simpo beta 2.0; sppo / sppo_hard beta
  // 0.001, i.e. eta = 1000, ALGORITHMS.md §4), written into the spec so that job.json shows them.
  const trainer::TrainConfig d = trainer::TrainConfigDefaults(tc->loss());
  if (!tc->has_beta()) tc->set_beta(d.beta);
  if (!tc->has_learning_rate()) tc->set_learning_rate(d.learning_rate);
  if (!tc->has_weight_decay()) tc->set_weight_decay(d.weight_decay);
  if (!tc->has_epochs()) tc->set_epochs(d.epochs);
  if (!tc->has_batch_size()) tc->set_batch_size(d.batch_size);
  if (!tc->has_max_grad_norm()) tc->set_max_grad_norm(d.max_grad_norm);
  if (!tc->has_nll_weight()) tc->set_nll_weight(d.nll_weight);
  if (!tc->has_seed()) tc->set_seed(s.seed());
  v1::EvalSpec* ev = s.mutable_eval();
  if (!ev->has_num_prompts()) ev->set_num_prompts(1000);
  if (!ev->has_max_new_tokens()) ev->set_max_new_tokens(sp->max_new_tokens());
  if (!ev->has_early_stop_win_rate()) ev->set_early_stop_win_rate(0.0);
  if (!ev->has_select_best()) ev->set_select_best(HasValidation(s) ? kSelectBestDefault : "last");
  if (!ev->has_validation_num_prompts()) ev->set_validation_num_prompts(500);
  return s;
}

absl::StatusOr<std::string> ResolveDataPath(const std::string& path, const std::string& data_root,
                                            const std::string& field) {
  if (path.empty()) return Invalid(field, "is required");
  std::string full = (!data_root.empty() && path[0] != '/') ? JoinPath(data_root, path) : path;
  char resolved[PATH_MAX];
  if (::realpath(full.c_str(), resolved) == nullptr) {
    return Invalid(field, absl::StrCat("not found: \"", path, "\""));
  }
  std::string out = resolved;
  if (!data_root.empty()) {
    char root[PATH_MAX];
    if (::realpath(data_root.c_str(), root) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("data root not found: ", data_root));
    }
    std::string r = root;
    if (out != r && !absl::StartsWith(out, r + "/")) {
      return Invalid(field, absl::StrCat("\"", path, "\" is outside the data root ", r));
    }
  }
  return out;
}

namespace {

absl::Status ValidatePromptSource(const v1::PromptSource& src, const std::string& field,
                                  const std::string& data_root) {
  if (src.has_builtin() && src.has_path()) {
    return Invalid(field, "must set exactly one of builtin and path");
  }
  if (src.has_builtin()) {
    if (src.builtin() != "arith") {
      return Invalid(field + ".builtin",
                     absl::StrCat("unknown builtin \"", src.builtin(), "\" (known: arith)"));
    }
    return absl::OkStatus();
  }
  SPAR_ASSIGN_OR_RETURN(std::string path, ResolveDataPath(src.path(), data_root, field + ".path"));
  // Read whole now: a file that cannot be used is refused before anything is paid for.
  return ReadPromptFile(path, field + ".path").status();
}

// A validation file shares no prompt with the training or the eval prompts files: the best round
// is chosen on prompts training never saw, and never on what is reported. (The built-in task's
// splits are disjoint by construction.)
absl::Status CheckValidationDisjoint(const v1::JobSpec& s, const std::string& data_root) {
  if (!s.validation_prompts().has_path()) return absl::OkStatus();
  auto read = [&](const v1::PromptSource& src,
                  const std::string& field) -> absl::StatusOr<std::vector<PromptRow>> {
    SPAR_ASSIGN_OR_RETURN(std::string path, ResolveDataPath(src.path(), data_root, field));
    return ReadPromptFile(path, field);
  };
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptRow> validation,
                        read(s.validation_prompts(), "validation_prompts.path"));
  for (const auto& [src, field] : {std::make_pair(&s.prompts(), "prompts.path"),
                                   std::make_pair(&s.eval_prompts(), "eval_prompts.path")}) {
    if (!src->has_path()) continue;
    SPAR_ASSIGN_OR_RETURN(std::vector<PromptRow> other, read(*src, field));
    std::map<std::string, size_t> line;
    for (size_t i = 0; i < other.size(); ++i) line.emplace(other[i].prompt, i + 1);
    for (size_t i = 0; i < validation.size(); ++i) {
      auto it = line.find(validation[i].prompt);
      if (it == line.end()) continue;
      return Invalid("validation_prompts.path",
                     absl::StrCat("line ", i + 1, " is also line ", it->second, " of ", field,
                                  ": validation prompts must be ones the job neither trains on "
                                  "nor reports"));
    }
  }
  return absl::OkStatus();
}

// MPO losses and algorithm mpo go together. The runner passes a magnet checkpoint (chosen by
// mpo_magnet_refresh) for algorithm mpo only, and only mpo / mpo_pg read one: the trainer refuses a
// magnet with any other loss, which would fail round 1's train stage after its sampling and
// judging were paid for; an MPO loss elsewhere would regress on win rates and a magnet no other
// recipe provides. A magnet set by hand is never right. (round_training cannot change the loss.)
absl::Status ValidateMpoPairing(const v1::JobSpec& s) {
  const std::string& loss = s.training().loss();
  if (trainer::UsesMagnet(loss) && s.algorithm() != "mpo") {
    return Invalid("training.loss", absl::StrCat("\"", loss, "\" needs algorithm \"mpo\", got \"",
                                                 s.algorithm(), "\""));
  }
  if (s.algorithm() == "mpo" && !trainer::UsesMagnet(loss)) {
    return Invalid("training.loss",
                   absl::StrCat("must be \"mpo\" or \"mpo_pg\" with algorithm \"mpo\" (its rounds "
                                "train against a magnet that only those losses use), got \"",
                                loss, "\""));
  }
  const char* why =
      s.algorithm() == "mpo"
          ? "is chosen by the orchestrator for algorithm \"mpo\" (use mpo_magnet_refresh)"
          : "is only used by the mpo / mpo_pg losses (algorithm \"mpo\"), which choose it with "
            "mpo_magnet_refresh";
  if (s.training().has_magnet_checkpoint()) return Invalid("training.magnet_checkpoint", why);
  for (int i = 0; i < s.round_training_size(); ++i) {
    if (s.round_training(i).training().has_magnet_checkpoint()) {
      return Invalid(absl::StrCat("round_training[", i, "].training.magnet_checkpoint"), why);
    }
  }
  return absl::OkStatus();
}

// The listwise losses and the listwise algorithms go together (brain: brain or
// brain_no_baseline; rrhf: rrhf). brain's importance weights take the sampler's untempered
// log π_t(y|x) as the proposal's log-prob: exact only when the samples are drawn at temperature 1
// and top-p 1, so nothing else is accepted. Its prior π_SFT is π_0, chosen by the orchestrator.
absl::Status ValidateListwisePairing(const v1::JobSpec& s) {
  const std::string& loss = s.training().loss();
  const bool brain = s.algorithm() == "brain", rrhf = s.algorithm() == "rrhf";
  if (trainer::IsListwiseLoss(loss) || brain || rrhf) {
    const bool fits = brain ? trainer::UsesPrior(loss) : rrhf && loss == "rrhf";
    if (!fits) {
      return Invalid(
          "training.loss",
          absl::StrCat("\"", loss, "\" does not fit algorithm \"", s.algorithm(),
                       "\" (brain: \"brain\" or \"brain_no_baseline\"; rrhf: \"rrhf\")"));
    }
  }
  const char* why = "is chosen by the orchestrator: brain's prior is pi_0 (the base model)";
  if (s.training().has_prior_checkpoint()) return Invalid("training.prior_checkpoint", why);
  for (int i = 0; i < s.round_training_size(); ++i) {
    if (s.round_training(i).training().has_prior_checkpoint()) {
      return Invalid(absl::StrCat("round_training[", i, "].training.prior_checkpoint"), why);
    }
  }
  if (brain && (s.sampling().temperature() != 1.0f || s.sampling().top_p() != 1.0f)) {
    return Invalid(s.sampling().temperature() != 1.0f ? "sampling.temperature" : "sampling.top_p",
                   absl::StrCat("must be 1 for algorithm \"brain\" (its importance weights use "
                                "the sampler's untempered log-probs as the proposal's), got ",
                                s.sampling().temperature() != 1.0f ? s.sampling().temperature()
                                                                   : s.sampling().top_p()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateJudgeBudget(const v1::JudgeBudget& b, const std::string& field) {
  auto check = [&](const char* name, double v, bool is_set) -> absl::Status {
    if (!is_set || v >= 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".", name, " must be >= 0 (0 = unlimited), got ", v));
  };
  for (absl::Status st :
       {check("max_calls", static_cast<double>(b.max_calls()), b.has_max_calls()),
        check("max_tokens", static_cast<double>(b.max_tokens()), b.has_max_tokens()),
        check("max_cost_usd", b.max_cost_usd(), b.has_max_cost_usd()),
        check("round_max_calls", static_cast<double>(b.round_max_calls()), b.has_round_max_calls()),
        check("round_max_tokens", static_cast<double>(b.round_max_tokens()),
              b.has_round_max_tokens()),
        check("round_max_cost_usd", b.round_max_cost_usd(), b.has_round_max_cost_usd())}) {
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

namespace {

// The longest built-in arithmetic prompt ("99+99="), in bytes: byte-tokenizer tokens less BOS.
int64_t ArithMaxPromptBytes() {
  return static_cast<int64_t>(
      absl::StrCat(arith::kArithMaxOperand, "+", arith::kArithMaxOperand, "=").size());
}

absl::Status CountIn(const std::string& field, int64_t v, int64_t lo, int64_t hi,
                     const std::string& note = "") {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be in [", lo, ", ", hi, "]", note, ", got ", v));
}

// algorithm, base_model, chat_template, rounds, prompts. Sets *base to base_model's directory.
absl::Status ValidateBasics(const v1::JobSpec& s, const std::string& data_root, std::string* base) {
  if (s.algorithm() != "dno" && s.algorithm() != "dpo" && s.algorithm() != "spin" &&
      s.algorithm() != "sppo" && s.algorithm() != "mpo" && s.algorithm() != "brain" &&
      s.algorithm() != "rrhf") {
    return Invalid("algorithm", absl::StrCat("unknown algorithm \"", s.algorithm(),
                                             "\" (known: dno, dpo, spin, sppo, mpo, brain, rrhf)"));
  }
  if (s.has_mpo_magnet_refresh()) {
    SPAR_RETURN_IF_ERROR(CountIn("mpo_magnet_refresh", s.mpo_magnet_refresh(), 1, kMaxRounds));
  }
  if (s.preset() != "paper" && !(s.preset() == "self_play" && s.algorithm() == "dno")) {
    return Invalid(
        "preset",
        absl::StrCat("must be \"paper\"", s.algorithm() == "dno" ? " or \"self_play\"" : "",
                     " for algorithm \"", s.algorithm(), "\", got \"", s.preset(), "\""));
  }
  if (!s.has_base_model() || s.base_model().empty()) return Invalid("base_model", "is required");
  SPAR_ASSIGN_OR_RETURN(*base, ResolveDataPath(s.base_model(), data_root, "base_model"));
  if (!PathExists(JoinPath(*base, "config.json"))) {
    return Invalid("base_model",
                   absl::StrCat("\"", s.base_model(), "\" is not a checkpoint (no config.json)"));
  }
  // The template every stage will render, resolved now: an unknown setting, a name on a byte
  // tokenizer, or a checkpoint template the interpreter cannot render (named) is refused here.
  if (absl::StatusOr<std::optional<model::ChatTemplate>> t =
          model::ResolveChatTemplateSetting(s.chat_template(), *base);
      !t.ok()) {
    return Invalid("chat_template", std::string(t.status().message()));
  }
  SPAR_RETURN_IF_ERROR(CountIn("rounds", s.rounds(), 1, kMaxRounds));
  SPAR_RETURN_IF_ERROR(CountIn("prompts_per_round", s.prompts_per_round(), 1, kMaxPromptsPerRound));
  SPAR_RETURN_IF_ERROR(ValidatePromptSource(s.prompts(), "prompts", data_root));
  if (HasValidation(s)) {
    SPAR_RETURN_IF_ERROR(
        ValidatePromptSource(s.validation_prompts(), "validation_prompts", data_root));
  }
  SPAR_RETURN_IF_ERROR(ValidatePromptSource(s.eval_prompts(), "eval_prompts", data_root));
  return CheckValidationDisjoint(s, data_root);
}

absl::Status ValidateSampling(const v1::JobSpec& s) {
  const v1::SamplingParams& sp = s.sampling();
  if (s.algorithm() == "spin" && sp.num_samples() < 1) {
    return Invalid("sampling.num_samples",
                   absl::StrCat("must be >= 1 (spin pairs the gold answer with a sample), got ",
                                sp.num_samples()));
  }
  if (s.algorithm() != "spin" && sp.num_samples() < 2) {
    return Invalid("sampling.num_samples",
                   absl::StrCat("must be >= 2 (pairs need two responses; only spin allows 1), got ",
                                sp.num_samples()));
  }
  SPAR_RETURN_IF_ERROR(CountIn("sampling.num_samples", sp.num_samples(), 1, kMaxSamplesPerPrompt));
  if (!(sp.temperature() >= 0.0f) || sp.temperature() > 10.0f) {
    return Invalid("sampling.temperature",
                   absl::StrCat("must be in [0, 10], got ", sp.temperature()));
  }
  if (!(sp.top_p() > 0.0f && sp.top_p() <= 1.0f)) {
    return Invalid("sampling.top_p", absl::StrCat("must be in (0, 1], got ", sp.top_p()));
  }
  SPAR_RETURN_IF_ERROR(CountIn("sampling.max_new_tokens", sp.max_new_tokens(), 1, kMaxNewTokens));
  const int64_t samples = int64_t{s.prompts_per_round()} * sp.num_samples();
  if (samples > kMaxSamplesPerRound) {
    return Invalid("prompts_per_round",
                   absl::StrCat("* sampling.num_samples must be <= ", kMaxSamplesPerRound,
                                " samples per round, got ", s.prompts_per_round(), " * ",
                                sp.num_samples(), " = ", samples));
  }
  if (samples * sp.max_new_tokens() > kMaxTokensPerRound) {
    return Invalid(
        "sampling.max_new_tokens",
        absl::StrCat("* prompts_per_round * num_samples must be <= ", kMaxTokensPerRound,
                     " generated tokens per round, got ", samples * sp.max_new_tokens()));
  }
  return absl::OkStatus();
}

absl::Status ValidateDnoPairs(const v1::JobSpec& s) {
  const v1::PairPolicy& pp = s.pairs();
  if (!(pp.teacher_min_gap() > 0.0 && pp.teacher_min_gap() <= 1.0)) {
    return Invalid("pairs.teacher_min_gap",
                   absl::StrCat("must be in (0, 1], got ", pp.teacher_min_gap()));
  }
  SPAR_RETURN_IF_ERROR(CountIn("pairs.defect_ngram", pp.defect_ngram(), 0, 64, " (0 = off)"));
  SPAR_RETURN_IF_ERROR(CountIn("pairs.defect_max_repeats", pp.defect_max_repeats(), 1, 1 << 16));
  if (pp.scoring() != "pairwise" && pp.scoring() != "side_by_side") {
    return Invalid("pairs.scoring", absl::StrCat("must be \"pairwise\" or \"side_by_side\", got \"",
                                                 pp.scoring(), "\""));
  }
  if (pp.policy() == "dno_soft_all" && pp.scoring() != "pairwise") {
    return Invalid("pairs.scoring",
                   absl::StrCat("must be \"pairwise\" with pairs.policy \"dno_soft_all\" (its "
                                "soft labels are win rates from pairwise judgments), got \"",
                                pp.scoring(), "\""));
  }
  const int candidates = s.sampling().num_samples() + (pp.use_teacher() ? 1 : 0);
  if (pp.scoring() == "side_by_side" && candidates > 16) {
    return Invalid("sampling.num_samples",
                   absl::StrCat("with pairs.scoring \"side_by_side\" at most 16 candidates fit one "
                                "judge call (num_samples",
                                pp.use_teacher() ? " + the teacher" : "", "), got ", candidates));
  }
  return absl::OkStatus();
}

absl::Status ValidatePairs(const v1::JobSpec& s) {
  const v1::PairPolicy& pp = s.pairs();
  const std::vector<std::string> policies = PoliciesFor(s.algorithm());
  if (std::find(policies.begin(), policies.end(), pp.policy()) == policies.end()) {
    return Invalid("pairs.policy",
                   absl::StrCat("\"", pp.policy(), "\" does not fit algorithm \"", s.algorithm(),
                                "\" (use \"", absl::StrJoin(policies, "\" or \""), "\")"));
  }
  SPAR_RETURN_IF_ERROR(
      CountIn("pairs.mix_previous (entries)", pp.mix_previous_size(), 0, kMaxRounds));
  for (int i = 0; i < pp.mix_previous_size(); ++i) {
    if (!(pp.mix_previous(i) >= 0.0 && pp.mix_previous(i) <= 1.0)) {
      return Invalid(absl::StrCat("pairs.mix_previous[", i, "]"),
                     absl::StrCat("must be in [0, 1], got ", pp.mix_previous(i)));
    }
  }
  if (!(pp.win_rate_gate() >= 0.0 && pp.win_rate_gate() <= 1.0)) {
    return Invalid("pairs.win_rate_gate",
                   absl::StrCat("must be in [0, 1], got ", pp.win_rate_gate()));
  }
  if (!(pp.min_gap() > 0.0 && pp.min_gap() <= 1.0)) {
    return Invalid("pairs.min_gap", absl::StrCat("must be in (0, 1], got ", pp.min_gap()));
  }
  if (s.algorithm() == "dno") return ValidateDnoPairs(s);
  // DNO-Prct's candidate rules belong to dno_margin.
  const char* set = pp.has_use_teacher()          ? "use_teacher"
                    : pp.has_teacher_min_gap()    ? "teacher_min_gap"
                    : pp.has_defect_ngram()       ? "defect_ngram"
                    : pp.has_defect_max_repeats() ? "defect_max_repeats"
                    : pp.has_scoring()            ? "scoring"
                                                  : nullptr;
  if (set != nullptr) {
    return Invalid(absl::StrCat("pairs.", set),
                   absl::StrCat("only applies to algorithm \"dno\", got \"", s.algorithm(), "\""));
  }
  return absl::OkStatus();
}

// The trainer's own rules (trainer::Validate) on what each round's train stage will send:
// spec.training, and spec.training merged with each round_training override.
absl::Status ValidateTraining(const v1::JobSpec& s) {
  const v1::TrainingConfig& tc = s.training();
  // DNO Algorithm 1: the soft labels of dno_soft_all are what the dno loss reads.
  if (s.pairs().policy() == "dno_soft_all" && tc.loss() != "dno") {
    return Invalid("training.loss",
                   absl::StrCat("must be \"dno\" with pairs.policy \"dno_soft_all\" (soft labels), "
                                "got \"",
                                tc.loss(), "\""));
  }
  SPAR_RETURN_IF_ERROR(ValidateMpoPairing(s));
  SPAR_RETURN_IF_ERROR(ValidateListwisePairing(s));
  SPAR_RETURN_IF_ERROR(trainer::Validate(ToTrainConfig(tc), "spec.training"));
  SPAR_RETURN_IF_ERROR(CountIn("round_training (entries)", s.round_training_size(), 0, kMaxRounds));
  for (int i = 0; i < s.round_training_size(); ++i) {
    const v1::RoundTraining& rt = s.round_training(i);
    const std::string f = absl::StrCat("round_training[", i, "]");
    if (rt.round() < 1 || rt.round() > s.rounds()) {
      return Invalid(f + ".round",
                     absl::StrCat("must be in [1, rounds=", s.rounds(), "], got ", rt.round()));
    }
    // One entry per round: what is validated here is exactly what that round's train stage sends
    // (RoundTrainingConfig would merge two entries into a config nobody checked).
    for (int j = 0; j < i; ++j) {
      if (s.round_training(j).round() == rt.round()) {
        return Invalid(f + ".round",
                       absl::StrCat("repeats round ", rt.round(), " of round_training[", j,
                                    "]: one entry per round"));
      }
    }
    if (rt.training().has_loss()) {
      return Invalid(f + ".training.loss", "cannot change between rounds");
    }
    v1::TrainingConfig merged = tc;
    merged.MergeFrom(rt.training());
    SPAR_RETURN_IF_ERROR(trainer::Validate(ToTrainConfig(merged), "spec." + f + ".training"));
  }
  return absl::OkStatus();
}

absl::Status ValidateEval(const v1::JobSpec& s) {
  const v1::EvalSpec& ev = s.eval();
  SPAR_RETURN_IF_ERROR(CountIn("eval.num_prompts", ev.num_prompts(), 1, kMaxEvalPrompts));
  if (!(ev.early_stop_win_rate() >= 0.0 && ev.early_stop_win_rate() <= 1.0)) {
    return Invalid("eval.early_stop_win_rate",
                   absl::StrCat("must be in [0, 1], got ", ev.early_stop_win_rate()));
  }
  SPAR_RETURN_IF_ERROR(CountIn("eval.max_new_tokens", ev.max_new_tokens(), 1, kMaxNewTokens));
  if (!IsKnownSelectBest(ev.select_best())) {
    return Invalid("eval.select_best",
                   absl::StrCat("must be \"win_rate_vs_base\", \"greedy_accuracy\" or \"last\", "
                                "got \"",
                                ev.select_best(), "\""));
  }
  SPAR_RETURN_IF_ERROR(
      CountIn("eval.validation_num_prompts", ev.validation_num_prompts(), 1, kMaxEvalPrompts));
  // The best round is chosen where nothing is reported (EvalSpec.select_best).
  if (ev.select_best() != "last" && !HasValidation(s)) {
    return Invalid("eval.select_best",
                   absl::StrCat("\"", ev.select_best(),
                                "\" compares rounds on a validation split, and the job has none: "
                                "set validation_prompts (choosing on the eval prompts would make "
                                "the reported numbers read high), or use \"last\""));
  }
  if (ev.select_best() == "greedy_accuracy" && !s.validation_prompts().has_builtin()) {
    return Invalid("eval.select_best",
                   "\"greedy_accuracy\" needs a verifiable validation task "
                   "(validation_prompts.builtin); a prompts file has no answers to check: use "
                   "\"win_rate_vs_base\"");
  }
  const double rate = s.judge().max_failure_rate();
  if (!(rate >= 0.0 && rate <= 1.0)) {
    return Invalid("judge.max_failure_rate", absl::StrCat("must be in [0, 1], got ", rate));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> ModelContextLength(const std::string& checkpoint_dir) {
  SPAR_ASSIGN_OR_RETURN(nlohmann::json config,
                        ReadJsonFile(JoinPath(checkpoint_dir, "config.json")));
  const auto it = config.is_object() ? config.find("max_position_embeddings") : config.end();
  if (!config.is_object() || it == config.end()) return kDefaultContextLength;
  if (!it->is_number_integer() || it->get<int64_t>() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(checkpoint_dir,
                     "/config.json: max_position_embeddings must be a positive "
                     "integer, got ",
                     DumpJson(*it)));
  }
  return it->get<int64_t>();
}

namespace {

// What the base model can hold: every sampled and evaluated sequence (prompt, BOS and
// max_new_tokens) and every trained one (max_length) fits its context.
absl::Status ValidateModelContext(const v1::JobSpec& s, const std::string& base) {
  absl::StatusOr<int64_t> ctx = ModelContextLength(base);
  if (!ctx.ok()) return Invalid("base_model", std::string(ctx.status().message()));
  // Prompt positions known up front: BOS, plus the longest built-in question with the byte
  // tokenizer (a prompts file or another tokenizer: at least the BOS).
  const bool bytes = !PathExists(JoinPath(base, "tokenizer.json"));
  auto prompt_min = [&](const v1::PromptSource& src) {
    return 1 + (bytes && src.has_builtin() ? ArithMaxPromptBytes() : 0);
  };
  auto fits = [&](const std::string& field, int64_t new_tokens, int64_t prompt) -> absl::Status {
    if (new_tokens + prompt <= *ctx) return absl::OkStatus();
    return Invalid(field, absl::StrCat("must be <= ", *ctx - prompt, ": the base model's context ",
                                       "is ", *ctx, " tokens (max_position_embeddings) and ",
                                       "prompts take at least ", prompt, ", got ", new_tokens));
  };
  SPAR_RETURN_IF_ERROR(
      fits("sampling.max_new_tokens", s.sampling().max_new_tokens(), prompt_min(s.prompts())));
  SPAR_RETURN_IF_ERROR(
      fits("eval.max_new_tokens", s.eval().max_new_tokens(), prompt_min(s.eval_prompts())));
  for (int t = 1; t <= s.rounds(); ++t) {
    const int64_t max_length = RoundTrainingConfig(s, t).max_length();
    if (max_length > *ctx) {
      return Invalid(
          "training.max_length",
          absl::StrCat("must be <= the base model's context (", *ctx,
                       " tokens, max_position_embeddings) in round ", t, ", got ", max_length));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateJobSpec(const v1::JobSpec& s, const std::string& data_root) {
  std::string base;
  SPAR_RETURN_IF_ERROR(ValidateBasics(s, data_root, &base));
  SPAR_RETURN_IF_ERROR(ValidateSampling(s));
  SPAR_RETURN_IF_ERROR(ValidatePairs(s));
  SPAR_RETURN_IF_ERROR(ValidateTraining(s));
  SPAR_RETURN_IF_ERROR(ValidateEval(s));
  SPAR_RETURN_IF_ERROR(ValidateModelContext(s, base));
  return ValidateJudgeBudget(s.judge_budget(), "spec.judge_budget");
}

}  // namespace spar::orchestrator
