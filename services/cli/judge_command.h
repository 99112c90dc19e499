// `spar judge --config oracle.json --in pairs.jsonl --out judgments.jsonl [--cache FILE]
// [--judge_url URL]`: offline pairwise judging with the same OracleClient the Oracle service uses,
// for evaluations and audits.
//
// Input: one JSON object per line, {"prompt","response_a","response_b"} or
// {"prompt","chosen","rejected"} (then response_a = chosen, so p_a_wins = P(chosen wins)); an
// optional "id" is copied to the output; other fields are ignored; blank lines are skipped.
// Output (written atomically once all items are judged, in input order): one object per input
// row, {"line","id"?,"ok","p_a_wins","p_ab","p_ba","verdict_ab","verdict_ba","cached_orders"} or
// {"line","id"?,"ok":false,"error"}.
// Resume: answers go to the SQLite judgment cache (oracle.cache_path, else --cache, else
// "<out>.cache.sqlite"), so a re-run after a crash or a failure pays only for what is missing.
// A progress bar is drawn on stderr when it is a terminal. The API key comes from
// services::ResolveJudgeApiKey (oracle.api_key_env, else $SPAR_JUDGE_API_KEY; the file named by
// $SPAR_JUDGE_API_KEY_FILE wins).
//
// Exit codes: 0 all judged; 1 some judgments failed (the output still has every row);
// 2 bad usage, config or input (the message names the file, line and field).
#pragma once

#include "services/cli/args.h"

namespace spar::cli {

int RunJudgeCommand(const Args& args);

}  // namespace spar::cli
