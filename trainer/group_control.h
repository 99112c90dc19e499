// The control protocol of a data-parallel Trainer (services/trainer drives it from rank 0):
// for each run rank 0 broadcasts a train command (a length, then 'T' + the request's bytes,
// opaque here: the service serializes its StartTrainingRequest), every rank says whether it can
// read the run's inputs (an all-reduce), and all ranks call TrainDpo on their share of each
// batch; shutdown is a broadcast 'S'. Ranks > 0 run RunGroupWorker. No gRPC.
// Thread-compatible: the caller serializes runs on the group.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "trainer/process_group.h"
#include "trainer/trainer.h"

namespace spar::trainer {

// How long rank 0 waits to deliver a control message.
inline constexpr absl::Duration kControlTimeout = absl::Seconds(120);

// Rank 0: sends the train command carrying `request` and learns whether every other rank can
// read the run's inputs. Unavailable when the group fails; FailedPrecondition naming how many
// ranks cannot.
absl::Status SendTrainCommand(ProcessGroup& group, const std::string& request);

// Rank 0: tells the other ranks to exit (RunGroupWorker returns OK).
absl::Status SendShutdownCommand(ProcessGroup& group);

// What a rank > 0 trains for one train command.
struct TrainJob {
  std::string key;  // names the run in logs
  std::string init_checkpoint;
  std::string output_checkpoint;
  TrainConfig config;
  std::vector<PreferencePair> pairs;  // a pairwise loss
  std::vector<ListwiseGroup> groups;  // a listwise loss
};

// Trains `job`: TrainListwise for a listwise loss, TrainDpo otherwise.
absl::StatusOr<TrainResult> RunTrainJob(const TrainJob& job,
                                        const ProgressCallback& on_progress = nullptr);
// Reads a train command's request bytes into *job; an error when this rank cannot train it
// (job->key, when known, still names it in the log).
using DecodeTrainCommand = std::function<absl::Status(const std::string& request, TrainJob* job)>;

// The loop of a rank > 0: waits for rank 0's commands and trains each request on its share
// (writing nothing). OK when rank 0 sends shutdown; Unavailable when the group fails (rank 0
// died, a collective failed): the process should exit and be restarted with the other ranks.
absl::Status RunGroupWorker(ProcessGroup& group, const DecodeTrainCommand& decode);

}  // namespace spar::trainer
