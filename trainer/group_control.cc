#include "trainer/group_control.h"

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace spar::trainer {
namespace {

constexpr char kCommandTrain = 'T';     // followed by the request's bytes
constexpr char kCommandShutdown = 'S';  // the service is stopping: workers exit

}  // namespace

absl::Status SendTrainCommand(ProcessGroup& group, const std::string& request) {
  std::string message = std::string(1, kCommandTrain) + request;
  absl::Status st = group.BroadcastFromRank0(&message, kControlTimeout);
  absl::StatusOr<int64_t> failed = st.ok() ? group.AllReduceSum(0) : absl::StatusOr<int64_t>(st);
  if (!failed.ok()) {
    return absl::UnavailableError(absl::StrCat("trainer: sending the request to the other ranks: ",
                                               failed.status().message()));
  }
  if (*failed > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(*failed, " other rank(s) cannot read the request's inputs (see their logs)"));
  }
  return absl::OkStatus();
}

absl::Status SendShutdownCommand(ProcessGroup& group) {
  std::string message(1, kCommandShutdown);
  return group.BroadcastFromRank0(&message, kControlTimeout);
}

absl::StatusOr<TrainResult> RunTrainJob(const TrainJob& job, const ProgressCallback& on_progress) {
  if (IsListwiseLoss(job.config.loss)) {
    return TrainListwise(job.init_checkpoint, job.groups, job.config, job.output_checkpoint,
                         on_progress);
  }
  return TrainDpo(job.init_checkpoint, job.pairs, job.config, job.output_checkpoint, on_progress);
}

absl::Status RunGroupWorker(ProcessGroup& group, const DecodeTrainCommand& decode) {
  const std::string who = absl::StrCat("trainer rank ", group.rank(), "/", group.world_size());
  SPAR_LOG(Info) << who << ": waiting for rank 0's requests";
  while (true) {
    std::string message;
    absl::Status st = group.BroadcastFromRank0(&message, absl::InfiniteDuration());
    if (!st.ok())
      return absl::UnavailableError(absl::StrCat(who, ": lost the group: ", st.message()));
    if (message.size() == 1 && message[0] == kCommandShutdown) {
      SPAR_LOG(Info) << who << ": rank 0 is shutting down";
      return absl::OkStatus();
    }
    TrainJob job;
    absl::Status prepared = absl::InternalError("malformed control message");
    if (!message.empty() && message[0] == kCommandTrain) prepared = decode(message.substr(1), &job);
    if (!prepared.ok()) {
      SPAR_LOG(Error) << who << ": cannot train " << job.key << ": " << prepared;
    }
    // Every rank says whether it can train this request; all skip it if one cannot.
    absl::StatusOr<int64_t> failed = group.AllReduceSum(prepared.ok() ? 0 : 1);
    if (!failed.ok()) {
      return absl::UnavailableError(
          absl::StrCat(who, ": lost the group: ", failed.status().message()));
    }
    if (*failed > 0) continue;
    job.config.distributed.group = &group;
    SPAR_LOG(Info) << who << ": training " << job.key;
    absl::StatusOr<TrainResult> result = RunTrainJob(job);
    if (result.ok()) {
      SPAR_LOG(Info) << who << ": " << job.key << " done, " << result->steps << " steps";
    } else {
      SPAR_LOG(Warning) << who << ": " << job.key << ": " << result.status();
    }
    if (!group.healthy()) {
      return absl::UnavailableError(
          absl::StrCat(who, ": the group broke during training: ", result.status().message()));
    }
  }
}

}  // namespace spar::trainer
