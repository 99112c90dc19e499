// The supervised engine process: started on a checkpoint path, and never handed Spar's secrets.
#include "orchestrator/internal/engine_process.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "absl/time/clock.h"
#include "common/file_util.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator::internal {
namespace {

using ::spar::testing::IsOk;

// The engine here is a shell that writes its environment and its model path to a file.
TEST(EngineProcessTest, ChildGetsTheModelPathAndNoSecrets) {
  char tmpl[] = "/tmp/spar_engine_env_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string out = JoinPath(dir, "env.txt");
  for (const char* name : {"SPAR_API_TOKEN", "SPAR_API_TOKEN_FILE", "SPAR_JUDGE_API_KEY",
                           "SPAR_JUDGE_API_KEY_FILE", "SPAR_SAMPLER_ENGINE_API_KEY"}) {
    ::setenv(name, "secret-value-123", 1);
  }
  ::setenv("SPAR_ENGINE_TEST_PLAIN", "plain-value", 1);
  EngineProcess engine(
      {"/bin/sh", "-c",
       "env > " + out + ".tmp && echo \"model=$0\" >> " + out + ".tmp && mv " + out + ".tmp " + out,
       "{model_path}"});
  ASSERT_THAT(engine.Start("/models/ckpt-1"), IsOk());
  for (int i = 0; i < 3000 && engine.Running(); ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(engine.ExitDescription(), "exit 0");
  absl::StatusOr<std::string> env = ReadFile(out);
  ASSERT_THAT(env, IsOk());
  EXPECT_EQ(env->find("secret-value-123"), std::string::npos) << *env;
  EXPECT_NE(env->find("SPAR_ENGINE_TEST_PLAIN=plain-value"), std::string::npos) << *env;
  EXPECT_NE(env->find("model=/models/ckpt-1"), std::string::npos) << *env;
  RemoveAll(dir).IgnoreError();
}

}  // namespace
}  // namespace spar::orchestrator::internal
