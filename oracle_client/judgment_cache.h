// JudgmentCache: a persistent SQLite store of judge answers, so that a re-run of a round (after a
// crash, a cancel/resume, or another job asking the same question) pays for nothing already
// judged. One row per presentation order of one comparison, keyed by the SHA-256 of
// (judge model, template id, prompt, response a, response b, order); the order is canonicalised
// into "text shown as A, text shown as B", so asking (a, b) in order BA shares the row with
// asking (b, a) in order AB: it is the identical HTTP request. Only successful, parsed answers
// are stored (a failure is never cached, so a later run retries it).
//
// The same file holds the per-job usage accounts (calls, tokens, cost per (job, round)) behind
// job budgets: a paid answer's charge is written in the same transaction as the answer itself,
// so a restarted oracle continues every job's count and never counts an answer twice.
//
// One DB file may be shared by several clients and processes (jobs): WAL journal, a busy timeout,
// and INSERT OR REPLACE of identical values make concurrent writers safe. Leases make single-flight
// work across processes (issue #12 item 11): before asking the judge, a client claims the key
// (a row in `leases` with its owner id and an expiry); another client that finds an unexpired
// lease waits for the answer instead of paying for it again, and takes the key over once the
// lease expires (its holder died). Used by OracleClient.
// Thread-safe (one connection per cache, serialised by a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "oracle_client/judge_usage.h"

struct sqlite3;
struct sqlite3_stmt;

namespace spar::oracle {

// Which presentation order a cached answer belongs to.
enum class JudgeOrder { kAB, kBA };

struct CacheKeyFields {
  std::string model;        // judge model name sent in the request
  std::string template_id;  // JudgeTemplate::id plus anything that changes the answer's meaning
  std::string prompt;
  std::string response_a;
  std::string response_b;  // "" for pointwise scores
  JudgeOrder order = JudgeOrder::kAB;
};

// One stored answer.
struct CachedAnswer {
  double value = 0.5;        // P(the output shown as A wins), or the pointwise score
  std::string verdict_text;  // the judge's raw text answer
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// What one or more HTTP requests to the judge cost a job's round.
struct UsageCharge {
  std::string job_id;
  int round = 0;
  JudgeUsage usage;
};

// One round's recorded usage of a job.
struct RoundUsage : JudgeUsage {
  int round = 0;
};

class JudgmentCache {
 public:
  // Opens or creates the database at `path` (its directory must exist), sets WAL mode and the
  // busy timeout, creates the table. InvalidArgument for an empty path, Unavailable when SQLite
  // cannot open or initialise the file (message names the path and SQLite's error).
  static absl::StatusOr<std::unique_ptr<JudgmentCache>> Open(
      const std::string& path, absl::Duration busy_timeout = absl::Seconds(30));
  ~JudgmentCache();
  JudgmentCache(const JudgmentCache&) = delete;
  JudgmentCache& operator=(const JudgmentCache&) = delete;

  // The 64-hex-digit key of `fields` (see the header comment for the canonical order).
  static std::string Key(const CacheKeyFields& fields);

  // nullopt when absent. Unavailable on a SQLite error (the caller treats it as a miss).
  absl::StatusOr<std::optional<CachedAnswer>> Get(const std::string& key);
  // Inserts or replaces; with `charge`, adds it to the job's usage account in the same
  // transaction (both or neither are stored). Unavailable on a SQLite error (e.g. busy beyond the
  // timeout).
  absl::Status Put(const std::string& key, const CachedAnswer& answer,
                   const UsageCharge* charge = nullptr);
  // Adds `charge` to its job's usage account (a request that produced no answer to store).
  absl::Status Charge(const UsageCharge& charge);
  // Every recorded round of `job_id`, by round; empty for an unknown job.
  absl::StatusOr<std::vector<RoundUsage>> JobUsage(const std::string& job_id);
  // What ClaimLease found.
  enum class Lease {
    kAcquired,  // the caller now holds the key's lease until the given expiry
    kAnswered,  // the answer is already stored: Get it
    kHeld,      // another owner holds an unexpired lease: wait and claim again
  };
  // In one write transaction: kAnswered when `key` has a stored answer; kHeld when an owner other
  // than `owner` holds a lease on it expiring after `now` (its id in *holder when not null);
  // otherwise the lease becomes `owner`'s until `expires` (wall clock, shared by processes) and
  // kAcquired. Unavailable on SQLite errors.
  absl::StatusOr<Lease> ClaimLease(const std::string& key, const std::string& owner, absl::Time now,
                                   absl::Time expires, std::string* holder = nullptr);
  // Moves the expiry of `owner`'s lease on `key` (a long retry keeps it alive). False (and no
  // change) when `owner` no longer holds it: it expired and was taken over, or was released.
  absl::StatusOr<bool> ExtendLease(const std::string& key, const std::string& owner,
                                   absl::Time expires);
  // Drops `owner`'s lease on `key` (after storing the answer, or after giving up); no-op when the
  // lease is not `owner`'s.
  absl::Status ReleaseLease(const std::string& key, const std::string& owner);

  // Number of stored answers.
  absl::StatusOr<int64_t> Size();

  const std::string& path() const { return path_; }

 private:
  JudgmentCache(std::string path, sqlite3* db);
  absl::Status Error(const char* what) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ChargeLocked(const UsageCharge& charge) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Lease> ClaimLeaseLocked(const std::string& key, const std::string& owner,
                                         absl::Time now, absl::Time expires, std::string* holder)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `sql` with ?1 = key, ?2 = owner, ?3 = int64 `number`; returns the rows changed.
  absl::StatusOr<int> ExecKeyOwner(const char* sql, const std::string& key,
                                   const std::string& owner, int64_t number)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  sqlite3_stmt* get_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* put_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* charge_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace spar::oracle
