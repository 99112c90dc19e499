// `spar demo` and the job-watching views shared with `spar watch` / `spar status`.
#pragma once

#include <cstdio>
#include <string>

#include "services/cli/args.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::cli {

// Builds (or reuses) the tiny arithmetic base model, starts a local judge and all four services
// on loopback, runs a DNO job through the gRPC API and prints one row per round.
int RunDemo(const Args& args);

// Follows a job's events until it ends, drawing a progress bar per stage on a terminal (plain
// lines otherwise). Returns 0 when the job succeeded, 1 otherwise, 3 when unreachable.
int WatchJob(const std::string& address, const std::string& job_id, bool quiet,
             v1::Job* final_job = nullptr);

// One row per round: pairs kept, final train loss, reward accuracy, win rate vs pi_0, greedy acc;
// then the best round (Job.best_round) once a round is evaluated.
void PrintRoundTable(const v1::Job& job, std::FILE* out);

}  // namespace spar::cli
