// JudgeUsage: what judge requests cost (HTTP calls, prompt and completion tokens, dollars). The one
// counters struct of oracle_client: the client's totals (OracleClient::Usage extends it), a job's
// or a round's account (JobUsage, RoundUsage), one request's charge (UsageCharge) and the budget
// ledger's spent and reserved amounts are all JudgeUsage.
#pragma once

#include <cstdint>

namespace spar::oracle {

struct JudgeUsage {
  int64_t calls = 0;  // HTTP requests
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double cost_usd = 0;  // priced with oracle.price_*_per_1k_usd

  int64_t tokens() const { return prompt_tokens + completion_tokens; }

  JudgeUsage& operator+=(const JudgeUsage& other) {
    calls += other.calls;
    prompt_tokens += other.prompt_tokens;
    completion_tokens += other.completion_tokens;
    cost_usd += other.cost_usd;
    return *this;
  }
  JudgeUsage& operator-=(const JudgeUsage& other) {
    calls -= other.calls;
    prompt_tokens -= other.prompt_tokens;
    completion_tokens -= other.completion_tokens;
    cost_usd -= other.cost_usd;
    return *this;
  }
};

}  // namespace spar::oracle
