// Trainer throughput: tokens/s and achieved FLOP/s of TrainDpo steps against this machine's
// measured fp32 matmul FLOP/s, for the tiny model and a ~100M-parameter config.
//
// Achieved FLOP/s = 6 * N * tokens/s, N = parameter count, tokens = every token fed to the policy
// (prompt + response, chosen and rejected rows). 6N = forward 2N + backward 4N per token; the
// reference log-probs are cached (computed once before step 1 and not timed), so no reference
// forward is counted; attention score FLOPs (~12 * layers * hidden * seq per token) are left out.
// Steady state: the first step is discarded as warm-up.
//
//   spar_trainer_bench [tiny|100m|all|tiny-ckpt|100m-ckpt] (default all; max_rss per process)
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/blas_kernel.h"
#include "common/file_util.h"
#include "model/byte_tokenizer.h"
#include "model/policy.h"
#include "trainer/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;

// One measurement of fp32 1024^3 matmul FLOP/s over about `seconds`.
double MatmulFlops(double seconds) {
  const int64_t n = 1024;
  torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::Tensor c = torch::mm(a, b);  // warm-up
  int reps = 0;
  const auto t0 = Clock::now();
  double secs = 0;
  while (secs < seconds) {
    c = torch::mm(a, b);
    ++reps;
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return 2.0 * n * n * n * reps / secs;
}

// The matmul bound as the best of several measurements taken before, between and after the
// workload's steps (a bound measured once, before the workload, under a different load, let a
// ratio above 1 appear on a busy machine). Measuring time is excluded from the workload's.
class MatmulBound {
 public:
  void Sample() {
    best_ = std::max(best_, MatmulFlops(0.25));
    ++samples_;
  }
  double best() const { return best_; }
  int samples() const { return samples_; }

 private:
  double best_ = 0;
  int samples_ = 0;
};

std::string RandomText(std::mt19937_64& rng, int len) {
  std::string s;
  for (int i = 0; i < len; ++i) s.push_back(static_cast<char>('a' + rng() % 26));
  return s;
}

struct BenchCase {
  std::string name;
  spar::model::LlamaConfig config;
  int batch_size;  // pairs per step
  int steps;
  int prompt_len, response_len;
  bool checkpointing = false;  // TrainConfig::gradient_checkpointing
};

// Peak resident memory of this process so far (MiB). Run one case per process to compare.
double MaxRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

int RunCase(const BenchCase& bc, MatmulBound& bound) {
  using namespace spar;
  auto policy = model::Policy::CreateRandom(bc.config, 1);
  if (!policy.ok()) {
    std::fprintf(stderr, "%s\n", policy.status().ToString().c_str());
    return 1;
  }
  const int64_t n_params = (*policy)->NumParameters();
  const std::string dir = JoinPath("/tmp", absl::StrCat("spar_trainer_bench_", bc.name));
  const std::string out = dir + "_out";
  (void)RemoveAll(dir);
  if (!(*policy)->Save(dir).ok()) return 1;
  policy->reset();
  std::mt19937_64 rng(3);
  std::vector<trainer::PreferencePair> pairs;
  for (int i = 0; i < bc.batch_size * bc.steps; ++i) {
    trainer::PreferencePair p;
    p.prompt = RandomText(rng, bc.prompt_len);
    p.chosen = RandomText(rng, bc.response_len);
    p.rejected = RandomText(rng, bc.response_len);
    pairs.push_back(p);
  }
  trainer::TrainConfig config;
  config.batch_size = bc.batch_size;
  config.learning_rate = 1e-5;
  config.gradient_checkpointing = bc.checkpointing;
  double tokens = 0, secs = 0;
  bound.Sample();
  auto last = Clock::now();
  auto result = trainer::TrainDpo(dir, pairs, config, out, [&](const trainer::TrainProgress& p) {
    const auto now = Clock::now();
    if (p.step > 1) {  // step 1 is warm-up
      tokens += p.metrics.at("tokens");
      secs += std::chrono::duration<double>(now - last).count();
    }
    if (p.step % 3 == 0) bound.Sample();  // interleaved with the steps, not timed
    last = Clock::now();
    return true;
  });
  bound.Sample();
  const double matmul_flops = bound.best();
  (void)RemoveAll(dir);
  (void)RemoveAll(out);
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    return 1;
  }
  const double tps = tokens / secs;
  const double flops = 6.0 * n_params * tps;
  std::printf(
      "%-6s N=%.1fM  batch=%d pairs x %d tokens/row  steps=%d  tokens/s=%.0f  "
      "achieved=%.2f GFLOP/s  matmul=%.2f GFLOP/s (best of %d)  ratio=%.3f  "
      "max_rss=%.0f MiB\n",
      bc.name.c_str(), n_params / 1e6, bc.batch_size, 1 + bc.prompt_len + bc.response_len + 1,
      bc.steps, tps, flops / 1e9, matmul_flops / 1e9, bound.samples(), flops / matmul_flops,
      MaxRssMiB());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "all";
  const spar::BlasKernelChoice blas = spar::CurrentBlasKernelChoice();
  std::printf("torch threads: %d  blas kernel: %s (%s)  cpu: %s\n", torch::get_num_threads(),
              blas.kernel.c_str(), blas.how.c_str(), spar::CpuCapability().c_str());
  spar::model::LlamaConfig tiny;  // the demo's arithmetic base model size
  tiny.vocab_size = spar::model::ByteTokenizer::kVocabSize;
  tiny.hidden_size = 128;
  tiny.intermediate_size = 352;
  tiny.num_hidden_layers = 4;
  tiny.num_attention_heads = 4;
  tiny.num_key_value_heads = 4;
  spar::model::LlamaConfig m100 = tiny;  // ~100M parameters
  m100.hidden_size = 768;
  m100.intermediate_size = 2048;
  m100.num_hidden_layers = 14;
  m100.num_attention_heads = 12;
  m100.num_key_value_heads = 12;
  int rc = 0;
  MatmulBound mm;  // one bound per case: each is measured under that case's load
  if (which == "tiny" || which == "all") rc |= RunCase({"tiny", tiny, 16, 12, 24, 40}, mm);
  mm = MatmulBound();
  if (which == "100m" || which == "all") rc |= RunCase({"100m", m100, 4, 4, 48, 80}, mm);
  mm = MatmulBound();
  // Activation checkpointing (each decoder layer recomputed in backward): run one case per
  // process and compare max_rss with the plain case; the FLOP/s count stays 6N (the extra
  // forward is not counted), so the ratio shows the time cost.
  if (which == "tiny-ckpt") rc |= RunCase({"tiny-ckpt", tiny, 16, 12, 24, 40, true}, mm);
  if (which == "100m-ckpt") rc |= RunCase({"100m-ckpt", m100, 4, 4, 48, 80, true}, mm);
  return rc;
}
