// Fakes of the orchestrator's ports (orchestrator/ports.h) for tests of the round engine: a
// sampler whose samples answer the built-in arithmetic task at chosen distances from the truth,
// an oracle that judges (or scores) by that distance, and a trainer that writes an empty
// checkpoint. Each records what it was asked; public fields set the faults to inject.
// Thread-safe where the runner calls concurrently (the oracle and sampler; the trainer is called
// from the runner's thread only).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "orchestrator/ports.h"
#include "tasks/arith/problems.h"

namespace spar::testing {

using orchestrator::CancelCheck;
using orchestrator::OraclePort;
using orchestrator::SamplerPort;
using orchestrator::TrainerPort;

// Thread-safe: the runner sends chunks of a round's comparisons concurrently (pipelining).
class FakeOracle : public OraclePort {
 public:
  absl::Status Compare(const v1::CompareRequest& req,
                       const std::function<absl::Status(const v1::Judgment&)>& cb,
                       const CancelCheck& /*cancelled*/) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (absl::Status st = AdmitLocked(req.idempotency_key()); !st.ok()) return st;
      scopes.push_back(req);
      scopes.back().clear_comparisons();
      if (exhaust_key.empty() || !absl::StrContains(req.idempotency_key(), exhaust_key)) {
        for (const v1::Comparison& c : req.comparisons()) {
          ++paid[absl::StrCat(c.prompt(), "|", c.response_a(), "|", c.response_b())];
        }
      }
      if (req.comparisons_size() > 0) received_any = true;
    }
    cv.notify_all();
    for (int i = 0; i < req.comparisons_size(); ++i) {
      const v1::Comparison& c = req.comparisons(i);
      if (!exhaust_key.empty() && absl::StrContains(req.idempotency_key(), exhaust_key)) {
        v1::Judgment j;  // what the oracle answers once a judge budget is spent
        j.set_index(i);
        j.set_ok(false);
        j.set_error("RESOURCE_EXHAUSTED: budget: job job-1 round 1 judge_budget.round_max_calls");
        j.set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
        absl::Status st = cb(j);
        if (!st.ok()) return st;
        continue;
      }
      if (fail_every > 0 && FailNext(c)) {
        v1::Judgment j;  // what the oracle answers when the judge failed for this pair
        j.set_index(i);
        j.set_ok(false);
        j.set_error(absl::Status(fail_code, "judge failed").ToString());
        j.set_code(static_cast<int>(fail_code));
        absl::Status st = cb(j);
        if (!st.ok()) return st;
        continue;
      }
      int64_t truth = *arith::ArithTruth(c.prompt());
      int64_t da = std::llabs(*arith::ParseArithAnswer(c.response_a()) - truth);
      int64_t db = std::llabs(*arith::ParseArithAnswer(c.response_b()) - truth);
      v1::Judgment j;
      j.set_index(i);
      j.set_ok(true);
      j.set_p_a_wins(da < db ? 1.0 : da > db ? 0.0 : 0.5);
      absl::Status st = cb(j);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  // Side-by-side: 6 for the right number, 5 one off, 3 two off, 1 otherwise; items whose prompt
  // is in fail_prompts fail as an unparsable answer would.
  absl::Status Score(const v1::ScoreRequest& req,
                     const std::function<absl::Status(const v1::ScoreResult&)>& cb,
                     const CancelCheck& /*cancelled*/) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (absl::Status st = AdmitLocked(req.idempotency_key()); !st.ok()) return st;
      for (const v1::ScoreItem& item : req.items()) {
        ++paid[absl::StrCat(item.prompt(), "|", absl::StrJoin(item.responses(), "|"))];
        score_items.push_back(item);
      }
    }
    for (int i = 0; i < req.items_size(); ++i) {
      const v1::ScoreItem& item = req.items(i);
      v1::ScoreResult r;
      r.set_index(i);
      if (fail_prompts.count(item.prompt()) > 0) {
        r.set_ok(false);
        r.set_error("DATA_LOSS: judge answer unparsable twice; not guessing");
        r.set_code(static_cast<int>(absl::StatusCode::kDataLoss));
      } else {
        r.set_ok(true);
        int64_t truth = *arith::ArithTruth(item.prompt());
        for (int k = 0; k < item.responses_size(); ++k) {
          r.add_order(item.responses_size() - 1 - k);
          int64_t d = std::llabs(*arith::ParseArithAnswer(item.responses(k)) - truth);
          r.add_scores(d == 0 ? 6 : d == 1 ? 5 : d == 2 ? 3 : 1);
        }
        r.set_verdict("{}");
      }
      absl::Status st = cb(r);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  // Records the call's key; UNAVAILABLE for the next unavailable_times judge-stage calls.
  // Requires mu held.
  absl::Status AdmitLocked(const std::string& key) {
    keys.push_back(key);
    if (unavailable_times > 0 && absl::StrContains(key, "/judge")) {
      --unavailable_times;
      return absl::UnavailableError("oracle restarting");
    }
    return absl::OkStatus();
  }
  // Every fail_every-th comparison fails (recorded in `failed`).
  bool FailNext(const v1::Comparison& c) {
    std::lock_guard<std::mutex> lock(mu);
    if (++compared % fail_every != 0) return false;
    failed.insert(absl::StrCat(c.prompt(), "|", c.response_a(), "|", c.response_b()));
    return true;
  }
  // True once a Compare call with comparisons has arrived.
  bool WaitForFirstComparison(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [this] { return received_any; });
  }
  std::mutex mu;
  std::condition_variable cv;
  bool received_any = false;
  int unavailable_times = 0;  // the next N judge-stage calls fail with UNAVAILABLE
  std::vector<std::string> keys;
  std::vector<v1::CompareRequest> scopes;  // each request without its comparisons
  std::map<std::string, int> paid;
  std::string exhaust_key;  // requests whose key contains this: every judgment budget-refused
  std::vector<v1::ScoreItem> score_items;  // every side-by-side item received
  std::set<std::string> fail_prompts;      // side-by-side items that fail
  int fail_every = 0;  // > 0: every fail_every-th comparison fails with fail_code
  absl::StatusCode fail_code = absl::StatusCode::kUnavailable;
  int64_t compared = 0;
  std::set<std::string> failed;  // comparisons answered with a failure
};

// Samples: sample j of a prompt answers truth + j (sample 0 is right). Greedy answers are right
// only for trained checkpoints (paths containing "iter_"), so accuracy rises after round 1.
class FakeSampler : public SamplerPort {
 public:
  absl::Status Generate(const v1::GenerateRequest& req,
                        const std::function<absl::Status(const v1::GenerateResponse&)>& cb,
                        const CancelCheck& /*cancelled*/) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      keys.push_back(req.idempotency_key());
      if (!fail_key.empty() && absl::StrContains(req.idempotency_key(), fail_key)) {
        return absl::InternalError("sampler crashed");
      }
      if (!bad_alloc_key.empty() && absl::StrContains(req.idempotency_key(), bad_alloc_key)) {
        throw std::bad_alloc();  // what an allocation the run cannot hold ends in
      }
      if (unavailable_times > 0) {
        --unavailable_times;
        return absl::UnavailableError("sampler restarting");
      }
    }
    bool trained = absl::StrContains(req.policy(), "iter_");
    for (int n = 0; n < req.prompts_size(); ++n) {
      const int i = reverse ? req.prompts_size() - 1 - n : n;
      if (n == 1 && hold_after_first && req.params().temperature() > 0 && !hold_after_first()) {
        // A latch, not a sleep: judging must start while this stream is held open.
        blocked_timed_out = true;
        return absl::InternalError("no comparison reached the oracle while sampling was held");
      }
      v1::GenerateResponse r;
      r.set_index(i);
      r.set_prompt(req.prompts(i));
      int64_t truth = *arith::ArithTruth(req.prompts(i));
      for (int j = 0; j < req.params().num_samples(); ++j) {
        int64_t ans = req.params().temperature() == 0
                          ? (trained ? truth : truth + 1)
                          : truth + offset + (distinct > 0 ? j % distinct : j);
        const bool sampled = req.params().temperature() > 0;
        const bool last = j == req.params().num_samples() - 1 && sampled;
        v1::Sample* sample = r.add_samples();
        sample->set_text(defect_last && last ? "7 7 7 7 7 7 7 7 7 7 7 7" : std::to_string(ans));
        sample->set_finished(!(sampled && j == unfinished_index));
      }
      absl::Status st = cb(r);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  std::mutex mu;
  std::vector<std::string> keys;
  std::string fail_key;
  std::string bad_alloc_key;  // calls whose key contains this throw std::bad_alloc
  int unavailable_times = 0;  // the next N calls fail with UNAVAILABLE
  int distinct = 0;           // > 0: sample j answers truth + j % distinct (repeated texts)
  bool reverse = false;       // deliver prompts last to first (as sharded replicas may)
  int offset = 0;             // sample j answers truth + offset + j
  bool defect_last = false;   // the last sample is a repetition defect
  int unfinished_index = -1;  // this round sample was cut at max_new_tokens (finished: false)
  // Round sampling holds the stream open after the first prompt until this returns (false:
  // timed out, the call fails).
  std::function<bool()> hold_after_first;
  bool blocked_timed_out = false;
};

class FakeTrainer : public TrainerPort {
 public:
  absl::StatusOr<v1::TrainingEvent> Train(
      const v1::StartTrainingRequest& req,
      const std::function<void(const v1::TrainingEvent&)>& on_event,
      const std::function<bool()>&) override {
    keys.push_back(req.idempotency_key());
    configs.push_back(req.config());
    auto pairs = ReadJsonl(req.pairs_path());
    if (!pairs.ok()) return pairs.status();
    absl::Status st = MakeDirs(req.output_checkpoint());
    if (!st.ok()) return st;
    st = WriteFileAtomic(JoinPath(req.output_checkpoint(), "config.json"), "{}");
    if (!st.ok()) return st;
    v1::TrainingEvent ev;
    ev.set_state(v1::TRAINING_STATE_SUCCEEDED);
    ev.set_step(static_cast<int>(pairs->size()));
    ev.set_loss(0.25);
    (*ev.mutable_metrics())["rewards/accuracies"] = 0.75;
    if (on_event) on_event(ev);
    return ev;
  }
  std::vector<std::string> keys;
  std::vector<v1::TrainingConfig> configs;  // per Train call, in round order
};

}  // namespace spar::testing
