// The sample and judge stages overlapped (JobRunner::set_pipeline_judging): a round's
// comparisons go to the oracle in chunks as soon as each prompt's samples arrive. The files and
// markers are those of StageSample followed by StageJudge.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "orchestrator/internal/judge_calls.h"
#include "orchestrator/internal/stages.h"
#include "orchestrator/internal/stream_tally.h"

namespace spar::orchestrator::internal {
namespace {

// A chunk of the round's judging and what came back: comparisons (pairwise) or prompts to score
// (side_by_side), never both.
struct Chunk {
  std::vector<ComparisonKey> keys;
  std::vector<v1::Judgment> judgments;
  std::vector<ScoreKey> score_keys;
  std::vector<v1::ScoreResult> scores;
  absl::Status status;
};

// Keys waiting for a chunk; each distinct key is queued once.
template <typename Key>
class KeyQueue {
 public:
  void Add(Key key) {
    if (requested_.insert(key).second) waiting_.push_back(std::move(key));
  }
  std::vector<Key> Take(size_t n) {
    std::vector<Key> out;
    while (!waiting_.empty() && out.size() < n) {
      out.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    return out;
  }
  size_t waiting() const { return waiting_.size(); }
  size_t requested() const { return requested_.size(); }

 private:
  std::set<Key> requested_;
  std::deque<Key> waiting_;
};

// One round's sampling and judging. Worker threads (the sampler stream, one per judge chunk) only
// hand results to the runner's thread through `sh_`; every callback, file write and decision
// happens on it (Run).
class PipelinedRound {
 public:
  PipelinedRound(StageContext& ctx, int t, std::vector<PromptItem> items, v1::GenerateRequest req)
      : ctx_(ctx),
        t_(t),
        items_(std::move(items)),
        req_(std::move(req)),
        side_by_side_(ctx.recipe().ScoresSideBySide()),
        rows_(items_.size()),
        tally_(items_.size(), "sampler") {}
  ~PipelinedRound() { Stop(); }

  absl::Status Run() {
    StartSampler();
    bool going = true;
    while (going) going = Step();
    Stop();
    if (!sample_error_.ok()) return sample_error_;
    if (!judge_error_.ok()) return judge_error_;
    if (!judge_started_) ctx_.Emit(t_, "judge", "stage_started", 0, 0);
    if (side_by_side_) return ScoreRows(ctx_, t_, rows_, &scored_);
    return JudgeRows(ctx_, t_, rows_, &judged_);
  }

 private:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<v1::GenerateResponse> results;
    bool sampling_done = false;
    absl::Status sampling_status;
    std::deque<Chunk> chunks;
    std::atomic<bool> abort{false};
  };

  // --- worker threads ---
  void Notify(const std::function<void()>& fn) {
    {
      std::lock_guard<std::mutex> lock(sh_.mu);
      fn();
    }
    sh_.cv.notify_all();
  }

  void StartSampler() {
    sampler_ = std::thread([this] {
      absl::Status st = Guarded([&] {
        return ctx_.ports().sampler->Generate(
            req_,
            [&](const v1::GenerateResponse& r) {
              if (sh_.abort.load()) return absl::CancelledError("round stopped");
              Notify([&] { sh_.results.push_back(r); });
              return ctx_.CheckCancelled();
            },
            stopped_);
      });
      Notify([&] {
        sh_.sampling_done = true;
        sh_.sampling_status = st;
      });
    });
  }

  // Sends `chunk` to the oracle on a new worker thread (idempotency key "<judge key>/NNNN").
  void Dispatch(Chunk chunk) {
    ++in_flight_;
    const std::string key = absl::StrFormat("%s/%04d", ctx_.Key(t_, "judge"), chunk_no_++);
    judges_.emplace_back([this, key, chunk = std::move(chunk)]() mutable {
      chunk.status = Guarded([&] { return JudgeChunk(key, &chunk); });
      Notify([&] { sh_.chunks.push_back(std::move(chunk)); });
    });
  }

  absl::Status JudgeChunk(const std::string& key, Chunk* ch) const {
    const OnResult on_result = [this](size_t, size_t) {
      if (sh_.abort.load()) return absl::CancelledError("round stopped");
      return ctx_.CheckCancelled();
    };
    if (!ch->score_keys.empty()) {
      SPAR_ASSIGN_OR_RETURN(ch->scores,
                            ScoreAll(ctx_, t_, key, ch->score_keys, stopped_, on_result));
      return absl::OkStatus();
    }
    SPAR_ASSIGN_OR_RETURN(ch->judgments, CompareAll(ctx_, t_, key, ch->keys, stopped_, on_result));
    return absl::OkStatus();
  }

  // Ends the streams (they stop soon after `abort`) and joins every worker.
  void Stop() {
    sh_.abort.store(true);
    if (sampler_.joinable()) sampler_.join();
    for (std::thread& th : judges_) {
      if (th.joinable()) th.join();
    }
  }

  // --- the runner's thread ---
  // Handles what the workers handed over since the last wake-up; false when the loop is done.
  bool Step() {
    std::deque<v1::GenerateResponse> got;
    std::deque<Chunk> finished;
    std::optional<absl::Status> sampling_ended;
    {
      std::unique_lock<std::mutex> lock(sh_.mu);
      sh_.cv.wait(lock, [&] {
        return !sh_.results.empty() || !sh_.chunks.empty() ||
               (sh_.sampling_done && !sampling_finished_);
      });
      got.swap(sh_.results);
      finished.swap(sh_.chunks);
      if (sh_.sampling_done && !sampling_finished_) sampling_ended = sh_.sampling_status;
    }
    for (const v1::GenerateResponse& r : got) {
      if (!sample_error_.ok()) break;
      OnSampled(r);
    }
    for (Chunk& ch : finished) OnChunk(ch);
    if (sampling_ended.has_value()) OnSamplingEnded(*sampling_ended);
    if (!sample_error_.ok()) return false;
    if (absl::Status st = ctx_.CheckCancelled(); !st.ok()) {
      judge_error_ = st;
      if (!sampling_finished_) sample_error_ = st;
      return false;
    }
    DispatchReady();
    return !(sampling_finished_ && in_flight_ == 0);
  }

  // One prompt's samples: its row, and its questions queued for the judge.
  void OnSampled(const v1::GenerateResponse& r) {
    if (absl::Status st = tally_.Receive(r.index()); !st.ok()) {
      sample_error_ = st;
      return;
    }
    const SampleRow& row = rows_[r.index()] = SampleRowOf(r, items_[r.index()]);
    if (tally_.ProgressDue(32)) {
      ctx_.Emit(t_, "sample", "progress", tally_.received(), items_.size());
    }
    if (side_by_side_) {
      RowScore rs = RowScoreOf(ctx_.recipe(), row);
      if (!rs.key.second.empty()) scores_.Add(std::move(rs.key));
      return;
    }
    for (RowComparison& c : RowComparisons(ctx_.recipe(), row)) comparisons_.Add(std::move(c.key));
  }

  void OnChunk(Chunk& ch) {
    --in_flight_;
    if (!ch.status.ok()) {
      if (judge_error_.ok()) judge_error_ = ch.status;
      return;
    }
    for (size_t k = 0; k < ch.keys.size(); ++k) judged_[ch.keys[k]] = ch.judgments[k];
    for (size_t k = 0; k < ch.score_keys.size(); ++k) scored_[ch.score_keys[k]] = ch.scores[k];
    if (sampling_finished_) FaultHold(t_, "judge");  // test-only: sampled, judging under way
    // Judge progress while sampling still runs shows the overlap (message: prompts sampled).
    ctx_.Emit(t_, "judge", "progress", judged_.size() + scored_.size(),
              comparisons_.requested() + scores_.requested(),
              absl::StrFormat("%d of %d prompts sampled", tally_.received(), items_.size()));
  }

  void OnSamplingEnded(const absl::Status& status) {
    sampling_finished_ = true;
    if (sample_error_.ok()) sample_error_ = status;
    if (sample_error_.ok()) sample_error_ = tally_.CheckWhole("prompts");
    if (sample_error_.ok()) sample_error_ = WriteSamples();
  }

  // Sampling is whole: its output and marker, exactly as the unpipelined stage writes them.
  absl::Status WriteSamples() {
    SPAR_RETURN_IF_ERROR(WriteRows(ctx_.dir().Samples(t_), rows_));
    SPAR_RETURN_IF_ERROR(WriteStage(ctx_.dir(), t_, "sample"));
    SampleFinished(ctx_, t_, items_.size());
    ctx_.UpdateJob([&](v1::Job& job) {
      job.mutable_rounds(t_ - 1)->set_stage("sample");
      job.set_current_stage("judge");
    });
    ctx_.Emit(t_, "sample", "stage_finished", 1, 1);
    return absl::OkStatus();
  }

  // Sends full chunks while there is room in flight; a partial one when nothing is in flight or
  // sampling is over.
  void DispatchReady() {
    const size_t chunk = static_cast<size_t>(ctx_.options().judge_chunk);
    auto waiting = [this] { return comparisons_.waiting() + scores_.waiting(); };
    while (judge_error_.ok() && waiting() > 0 && in_flight_ < ctx_.options().judge_in_flight &&
           (waiting() >= chunk || in_flight_ == 0 || sampling_finished_)) {
      if (!judge_started_) {
        judge_started_ = true;
        ctx_.Emit(t_, "judge", "stage_started", 0, 0,
                  sampling_finished_ ? "" : "pipelined: judging while sampling continues");
      }
      Chunk ch;
      if (side_by_side_) {
        ch.score_keys = scores_.Take(chunk);
      } else {
        ch.keys = comparisons_.Take(chunk);
      }
      Dispatch(std::move(ch));
    }
  }

  StageContext& ctx_;
  const int t_;
  const std::vector<PromptItem> items_;
  const v1::GenerateRequest req_;
  const bool side_by_side_;
  Shared sh_;
  // The streams end soon after the round stops or the job is cancelled.
  const CancelCheck stopped_ = [this] { return sh_.abort.load() || !ctx_.CheckCancelled().ok(); };
  std::thread sampler_;
  std::vector<std::thread> judges_;
  int in_flight_ = 0;
  int chunk_no_ = 0;
  // The runner thread's state.
  std::vector<SampleRow> rows_;
  StreamTally tally_;
  KeyQueue<ComparisonKey> comparisons_;
  KeyQueue<ScoreKey> scores_;
  JudgedMap judged_;
  ScoredMap scored_;
  absl::Status sample_error_, judge_error_;
  bool sampling_finished_ = false;
  bool judge_started_ = false;
};

}  // namespace

absl::Status StageSampleAndJudge(StageContext& ctx, int t, const std::string& policy) {
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptItem> items, RoundPrompts(ctx, t));
  v1::GenerateRequest req = SampleRequest(ctx, t, policy, items);
  PipelinedRound round(ctx, t, std::move(items), std::move(req));
  return round.Run();
}

}  // namespace spar::orchestrator::internal
