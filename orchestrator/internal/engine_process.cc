#include "orchestrator/internal/engine_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/log.h"

extern char** environ;

namespace spar::orchestrator::internal {
namespace {

// The environment an engine starts with: this process's, minus Spar's secrets (the service token,
// the judge's and the engine's API keys, and the files naming them). Secrets never reach child
// processes; an engine that needs a key of its own is given it by its own configuration.
std::vector<std::string> EngineEnvironment() {
  static constexpr const char* kSecretPrefixes[] = {"SPAR_API_TOKEN", "SPAR_JUDGE_API_KEY",
                                                    "SPAR_SAMPLER_ENGINE_API_KEY"};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool secret = false;
    for (const char* prefix : kSecretPrefixes) {
      secret = secret || name == prefix || name == absl::StrCat(prefix, "_FILE");
    }
    if (!secret) env.push_back(entry);
  }
  return env;
}

}  // namespace

EngineProcess::EngineProcess(std::vector<std::string> command_template)
    : template_(std::move(command_template)) {}

EngineProcess::~EngineProcess() { Stop(); }

absl::Status EngineProcess::Start(const std::string& model_path) {
  if (template_.empty()) return absl::InvalidArgumentError("sampler_engine.command is empty");
  Stop();
  std::vector<std::string> args;
  for (const std::string& a : template_) {
    args.push_back(absl::StrReplaceAll(a, {{"{model_path}", model_path}}));
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = EngineEnvironment();
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: Stop reaches the engine's workers too
  pid_t pid = -1;
  const int err = posix_spawnp(&pid, argv[0], nullptr, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    return absl::InternalError(absl::StrCat("sampler_engine.command: cannot start \"", args[0],
                                            "\": ", std::strerror(err)));
  }
  pid_ = pid;
  model_path_ = model_path;
  exit_.clear();
  SPAR_LOG(Info) << "engine process " << pid << " started on " << model_path;
  return absl::OkStatus();
}

bool EngineProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    exit_ = WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status))
                              : absl::StrCat("signal ", WTERMSIG(status));
  } else {
    exit_ = absl::StrCat("lost (waitpid: ", std::strerror(errno), ")");
  }
  if (stopping_) {
    SPAR_LOG(Info) << "engine process " << pid_ << " stopped: " << exit_;
  } else {
    SPAR_LOG(Warning) << "engine process " << pid_ << " ended: " << exit_;
  }
  pid_ = -1;
  model_path_.clear();
  return false;
}

void EngineProcess::Stop(absl::Duration grace) {
  if (!Running()) return;
  stopping_ = true;
  ::kill(-pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  while (Running()) {
    if (absl::Now() > deadline) {
      ::kill(-pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      exit_ = "signal 9 (killed after the grace period)";
      pid_ = -1;
      model_path_.clear();
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  stopping_ = false;
}

}  // namespace spar::orchestrator::internal
