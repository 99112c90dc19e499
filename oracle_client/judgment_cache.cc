#include "oracle_client/judgment_cache.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace spar::oracle {
namespace {

constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS judgments ("
    " key TEXT PRIMARY KEY,"
    " value REAL NOT NULL,"
    " verdict TEXT NOT NULL,"
    " prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL,"
    " created_unix INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS job_usage ("
    " job_id TEXT NOT NULL,"
    " round INTEGER NOT NULL,"
    " calls INTEGER NOT NULL,"
    " prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL,"
    " cost_usd REAL NOT NULL,"
    " PRIMARY KEY (job_id, round)"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS leases ("
    " key TEXT PRIMARY KEY,"
    " owner TEXT NOT NULL,"
    " expires_unix_ms INTEGER NOT NULL"
    ") WITHOUT ROWID";

// Binds text ?index of `st`.
void BindText(sqlite3_stmt* st, int index, const std::string& text) {
  sqlite3_bind_text(st, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

}  // namespace

JudgmentCache::JudgmentCache(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

JudgmentCache::~JudgmentCache() {
  absl::MutexLock lock(&mu_);
  sqlite3_finalize(get_);
  sqlite3_finalize(put_);
  sqlite3_finalize(charge_);
  sqlite3_close_v2(db_);
}

absl::Status JudgmentCache::Error(const char* what) const {
  return absl::UnavailableError(
      absl::StrCat("judgment cache ", path_, ": ", what, ": ", sqlite3_errmsg(db_)));
}

absl::StatusOr<std::unique_ptr<JudgmentCache>> JudgmentCache::Open(const std::string& path,
                                                                   absl::Duration busy_timeout) {
  if (path.empty()) return absl::InvalidArgumentError("judgment cache path is empty");
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return absl::UnavailableError(absl::StrCat("judgment cache ", path, ": cannot open: ", msg));
  }
  std::unique_ptr<JudgmentCache> cache(new JudgmentCache(path, db));
  absl::MutexLock lock(&cache->mu_);
  sqlite3_busy_timeout(db, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
  // WAL: readers never block the writer and several processes can share the file. Switching the
  // journal mode itself needs a moment without other writers; retry within the busy timeout.
  absl::Time deadline = absl::Now() + busy_timeout;
  for (;;) {
    char* err = nullptr;
    rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr,
                      &err);
    sqlite3_free(err);
    if (rc == SQLITE_OK) break;
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || absl::Now() > deadline) {
      return cache->Error("cannot enable WAL");
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return cache->Error("cannot create table");
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT value, verdict, prompt_tokens, completion_tokens FROM judgments "
                         "WHERE key = ?1",
                         -1, &cache->get_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO judgments (key, value, verdict, prompt_tokens, "
                         "completion_tokens, created_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                         -1, &cache->put_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db,
                         "INSERT INTO job_usage (job_id, round, calls, prompt_tokens, "
                         "completion_tokens, cost_usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                         "ON CONFLICT (job_id, round) DO UPDATE SET "
                         "calls = calls + excluded.calls, "
                         "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                         "completion_tokens = completion_tokens + excluded.completion_tokens, "
                         "cost_usd = cost_usd + excluded.cost_usd",
                         -1, &cache->charge_, nullptr) != SQLITE_OK) {
    return cache->Error("cannot prepare statements");
  }
  return cache;
}

std::string JudgmentCache::Key(const CacheKeyFields& f) {
  const std::string& first = f.order == JudgeOrder::kAB ? f.response_a : f.response_b;
  const std::string& second = f.order == JudgeOrder::kAB ? f.response_b : f.response_a;
  return Sha256HexOfFields({"spar-judgment-v1", f.model, f.template_id, f.prompt, first, second});
}

absl::StatusOr<std::optional<CachedAnswer>> JudgmentCache::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  sqlite3_reset(get_);
  sqlite3_bind_text(get_, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(get_);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(get_);
    return std::optional<CachedAnswer>();
  }
  if (rc != SQLITE_ROW) {
    absl::Status st = Error("lookup failed");
    sqlite3_reset(get_);
    return st;
  }
  CachedAnswer a;
  a.value = sqlite3_column_double(get_, 0);
  const unsigned char* text = sqlite3_column_text(get_, 1);
  a.verdict_text = text != nullptr ? reinterpret_cast<const char*>(text) : "";
  a.prompt_tokens = sqlite3_column_int64(get_, 2);
  a.completion_tokens = sqlite3_column_int64(get_, 3);
  sqlite3_reset(get_);
  return std::optional<CachedAnswer>(std::move(a));
}

absl::Status JudgmentCache::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return Error(sql);
  return absl::OkStatus();
}

absl::Status JudgmentCache::ChargeLocked(const UsageCharge& c) {
  sqlite3_reset(charge_);
  sqlite3_bind_text(charge_, 1, c.job_id.data(), static_cast<int>(c.job_id.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_int(charge_, 2, c.round);
  sqlite3_bind_int64(charge_, 3, c.usage.calls);
  sqlite3_bind_int64(charge_, 4, c.usage.prompt_tokens);
  sqlite3_bind_int64(charge_, 5, c.usage.completion_tokens);
  sqlite3_bind_double(charge_, 6, c.usage.cost_usd);
  int rc = sqlite3_step(charge_);
  absl::Status st = rc == SQLITE_DONE ? absl::OkStatus() : Error("usage update failed");
  sqlite3_reset(charge_);
  return st;
}

absl::Status JudgmentCache::Put(const std::string& key, const CachedAnswer& a,
                                const UsageCharge* charge) {
  absl::MutexLock lock(&mu_);
  const bool txn = charge != nullptr;
  // IMMEDIATE: take the write lock up front (waiting up to the busy timeout) so the two writes
  // cannot deadlock against another process's transaction.
  if (txn) {
    absl::Status st = Exec("BEGIN IMMEDIATE");
    if (!st.ok()) return st;
  }
  sqlite3_reset(put_);
  sqlite3_bind_text(put_, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  sqlite3_bind_double(put_, 2, a.value);
  sqlite3_bind_text(put_, 3, a.verdict_text.data(), static_cast<int>(a.verdict_text.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_int64(put_, 4, a.prompt_tokens);
  sqlite3_bind_int64(put_, 5, a.completion_tokens);
  sqlite3_bind_int64(put_, 6, absl::ToUnixSeconds(absl::Now()));
  int rc = sqlite3_step(put_);
  absl::Status st = rc == SQLITE_DONE ? absl::OkStatus() : Error("insert failed");
  sqlite3_reset(put_);
  if (!txn) return st;
  if (st.ok()) st = ChargeLocked(*charge);
  if (st.ok()) st = Exec("COMMIT");
  if (!st.ok()) (void)Exec("ROLLBACK");
  return st;
}

absl::Status JudgmentCache::Charge(const UsageCharge& charge) {
  absl::MutexLock lock(&mu_);
  return ChargeLocked(charge);
}

absl::StatusOr<std::vector<RoundUsage>> JudgmentCache::JobUsage(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT round, calls, prompt_tokens, completion_tokens, cost_usd "
                         "FROM job_usage WHERE job_id = ?1 ORDER BY round",
                         -1, &st, nullptr) != SQLITE_OK) {
    return Error("usage query failed");
  }
  sqlite3_bind_text(st, 1, job_id.data(), static_cast<int>(job_id.size()), SQLITE_TRANSIENT);
  std::vector<RoundUsage> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    RoundUsage u;
    u.round = sqlite3_column_int(st, 0);
    u.calls = sqlite3_column_int64(st, 1);
    u.prompt_tokens = sqlite3_column_int64(st, 2);
    u.completion_tokens = sqlite3_column_int64(st, 3);
    u.cost_usd = sqlite3_column_double(st, 4);
    out.push_back(u);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Error("usage query failed");
  return out;
}

absl::StatusOr<int> JudgmentCache::ExecKeyOwner(const char* sql, const std::string& key,
                                                const std::string& owner, int64_t number) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return Error("lease query");
  BindText(st, 1, key);
  BindText(st, 2, owner);
  sqlite3_bind_int64(st, 3, number);
  const int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Error("lease update failed");
  return sqlite3_changes(db_);
}

absl::StatusOr<JudgmentCache::Lease> JudgmentCache::ClaimLeaseLocked(const std::string& key,
                                                                     const std::string& owner,
                                                                     absl::Time now,
                                                                     absl::Time expires,
                                                                     std::string* holder) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT (SELECT COUNT(*) FROM judgments WHERE key = ?1), "
                         "(SELECT owner FROM leases WHERE key = ?1 AND owner != ?2 "
                         "AND expires_unix_ms > ?3)",
                         -1, &st, nullptr) != SQLITE_OK) {
    return Error("lease query");
  }
  BindText(st, 1, key);
  BindText(st, 2, owner);
  sqlite3_bind_int64(st, 3, absl::ToUnixMillis(now));
  int64_t answered = -1;
  bool held = false;
  if (sqlite3_step(st) == SQLITE_ROW) {
    answered = sqlite3_column_int64(st, 0);
    const unsigned char* held_by = sqlite3_column_text(st, 1);
    held = held_by != nullptr;
    if (held && holder != nullptr) *holder = reinterpret_cast<const char*>(held_by);
  }
  sqlite3_finalize(st);
  if (answered < 0) return Error("lease query failed");
  if (answered > 0) return Lease::kAnswered;
  if (held) return Lease::kHeld;
  SPAR_RETURN_IF_ERROR(
      ExecKeyOwner(
          "INSERT OR REPLACE INTO leases (key, owner, expires_unix_ms) VALUES (?1, ?2, ?3)", key,
          owner, absl::ToUnixMillis(expires))
          .status());
  return Lease::kAcquired;
}

absl::StatusOr<JudgmentCache::Lease> JudgmentCache::ClaimLease(const std::string& key,
                                                               const std::string& owner,
                                                               absl::Time now, absl::Time expires,
                                                               std::string* holder) {
  absl::MutexLock lock(&mu_);
  // IMMEDIATE: the check and the claim are one step for every process sharing the file.
  SPAR_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::StatusOr<Lease> out = ClaimLeaseLocked(key, owner, now, expires, holder);
  absl::Status st = out.ok() ? Exec("COMMIT") : out.status();
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return out;
}

absl::StatusOr<bool> JudgmentCache::ExtendLease(const std::string& key, const std::string& owner,
                                                absl::Time expires) {
  absl::MutexLock lock(&mu_);
  SPAR_ASSIGN_OR_RETURN(
      int changed,
      ExecKeyOwner("UPDATE leases SET expires_unix_ms = ?3 WHERE key = ?1 AND owner = ?2", key,
                   owner, absl::ToUnixMillis(expires)));
  return changed > 0;
}

absl::Status JudgmentCache::ReleaseLease(const std::string& key, const std::string& owner) {
  absl::MutexLock lock(&mu_);
  return ExecKeyOwner("DELETE FROM leases WHERE key = ?1 AND owner = ?2 AND ?3 = ?3", key, owner, 0)
      .status();
}

absl::StatusOr<int64_t> JudgmentCache::Size() {
  absl::MutexLock lock(&mu_);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM judgments", -1, &st, nullptr) != SQLITE_OK) {
    return Error("count failed");
  }
  int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (n < 0) return Error("count failed");
  return n;
}

}  // namespace spar::oracle
