#include "services/cli/judge_command.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "oracle_client/oracle_client.h"
#include "oracle_client/oracle_config.h"
#include "services/common/judge_api_key.h"

namespace spar::cli {
namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct InputRow {
  int line = 0;
  json id;  // null when absent
  oracle::Comparison comparison;
};

absl::StatusOr<std::string> StringField(const json& row, const char* key,
                                        const std::string& where) {
  auto it = row.find(key);
  if (it == row.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing field \"", key, "\""));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field \"", key, "\" must be a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::vector<InputRow>> ReadPairs(const std::string& path) {
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<InputRow> rows;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view l = lines[i];
    if (l.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    const std::string where = absl::StrCat(path, ":", i + 1);
    json row = json::parse(l.begin(), l.end(), nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(where, ": not JSON"));
    if (!row.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    }
    InputRow r;
    r.line = static_cast<int>(i + 1);
    SPAR_ASSIGN_OR_RETURN(r.comparison.prompt, StringField(row, "prompt", where));
    if (row.contains("response_a") || row.contains("response_b")) {
      SPAR_ASSIGN_OR_RETURN(r.comparison.response_a, StringField(row, "response_a", where));
      SPAR_ASSIGN_OR_RETURN(r.comparison.response_b, StringField(row, "response_b", where));
    } else if (row.contains("chosen") || row.contains("rejected")) {
      SPAR_ASSIGN_OR_RETURN(r.comparison.response_a, StringField(row, "chosen", where));
      SPAR_ASSIGN_OR_RETURN(r.comparison.response_b, StringField(row, "rejected", where));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": missing fields \"response_a\"/\"response_b\" (or \"chosen\"/\"rejected\")"));
    }
    if (auto id = row.find("id"); id != row.end()) r.id = *id;
    rows.push_back(std::move(r));
  }
  return rows;
}

absl::StatusOr<oracle::OracleConfig> LoadConfig(const Args& args) {
  SPAR_ASSIGN_OR_RETURN(json j, ReadJsonFile(args.Get("config")));
  absl::StatusOr<oracle::OracleConfig> c = oracle::ParseOracleConfig(j);
  if (!c.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(args.Get("config"), ": ", c.status().message()));
  }
  if (args.Has("judge_url")) c->base_url = args.Get("judge_url");
  for (std::string& host : args.GetList("judge_allow_http_host")) {
    c->allow_http_hosts.push_back(std::move(host));
  }
  if (args.Has("cache")) c->cache_path = args.Get("cache");
  if (c->cache_path.empty()) c->cache_path = args.Get("out") + ".cache.sqlite";
  SPAR_ASSIGN_OR_RETURN(c->api_key, services::ResolveJudgeApiKey(*c));
  SPAR_RETURN_IF_ERROR(oracle::Validate(*c));
  return c;
}

class Progress {
 public:
  explicit Progress(size_t total) : total_(total), tty_(isatty(STDERR_FILENO) == 1) {}
  void Update(size_t done, size_t failed) {
    if (!tty_) return;
    size_t pct = total_ == 0 ? 100 : done * 100 / total_;
    if (pct == last_pct_ && done != total_) return;
    last_pct_ = pct;
    constexpr int kWidth = 30;
    int filled = static_cast<int>(pct * kWidth / 100);
    std::fprintf(stderr, "\rjudging [%s%s] %3zu%% %zu/%zu (%zu failed)",
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), pct,
                 done, total_, failed);
    if (done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  size_t total_;
  bool tty_;
  size_t last_pct_ = static_cast<size_t>(-1);
};

int Usage(const std::string& message) {
  std::fprintf(stderr, "spar judge: %s\n", message.c_str());
  return kExitUsage;
}

}  // namespace

int RunJudgeCommand(const Args& args) {
  if (absl::Status st =
          args.CheckKnown({"config", "in", "out", "cache", "judge_url", "judge_allow_http_host"});
      !st.ok()) {
    return Usage(std::string(st.message()));
  }
  for (const char* flag : {"config", "in", "out"}) {
    if (args.Get(flag).empty()) {
      return Usage(absl::StrCat(
          "--", flag,
          " is required (usage: spar judge --config oracle.json --in pairs.jsonl --out "
          "judgments.jsonl [--cache FILE] [--judge_url URL] "
          "[--judge_allow_http_host=NAME[,NAME]])"));
    }
  }
  absl::StatusOr<oracle::OracleConfig> config = LoadConfig(args);
  if (!config.ok()) return Usage(std::string(config.status().message()));
  absl::StatusOr<std::vector<InputRow>> rows = ReadPairs(args.Get("in"));
  if (!rows.ok()) return Usage(std::string(rows.status().message()));
  absl::StatusOr<std::unique_ptr<oracle::OracleClient>> client =
      oracle::OracleClient::Create(*config, nullptr, Clock::Real());
  if (!client.ok()) return Usage(std::string(client.status().message()));

  std::vector<oracle::Comparison> items;
  items.reserve(rows->size());
  for (const InputRow& r : *rows) items.push_back(r.comparison);
  std::vector<json> out(items.size());
  size_t done = 0, failed = 0;
  Progress progress(items.size());
  (*client)->CompareAll(items, [&](size_t i, absl::StatusOr<oracle::Judgment> j) {
    const InputRow& r = (*rows)[i];
    json row = {{"line", r.line}};
    if (!r.id.is_null()) row["id"] = r.id;
    if (j.ok()) {
      row["ok"] = true;
      row["p_a_wins"] = j->p_a_wins;
      row["p_ab"] = j->p_ab;
      row["p_ba"] = j->p_ba;
      row["verdict_ab"] = j->verdict_ab;
      row["verdict_ba"] = j->verdict_ba;
      row["cached_orders"] = j->cached_orders;
    } else {
      row["ok"] = false;
      row["error"] = j.status().ToString();
      ++failed;
    }
    out[i] = std::move(row);
    progress.Update(++done, failed);
  });
  if (absl::Status st = WriteJsonlAtomic(args.Get("out"), out); !st.ok()) {
    std::fprintf(stderr, "spar judge: %s\n", std::string(st.message()).c_str());
    return kExitFailed;
  }
  oracle::OracleClient::Usage u = (*client)->GetUsage();
  std::fprintf(stderr,
               "spar judge: %zu judgments, %zu ok, %zu failed; %lld HTTP calls, %lld cache hits, "
               "%lld+%lld tokens, $%.4f; swap consistency %.3f; wrote %s\n",
               items.size(), items.size() - failed, failed, static_cast<long long>(u.calls),
               static_cast<long long>(u.cache_hits), static_cast<long long>(u.prompt_tokens),
               static_cast<long long>(u.completion_tokens), u.cost_usd, u.swap_consistency(),
               args.Get("out").c_str());
  if (failed > 0) {
    std::fprintf(stderr,
                 "spar judge: %zu judgment(s) failed (see \"error\" in %s); re-run to "
                 "retry them, answers already paid for come from the cache\n",
                 failed, args.Get("out").c_str());
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace spar::cli
