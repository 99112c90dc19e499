// Builds the demo's base policy pi_0 (spar::arith::BuildArithBaseModel) for several seeds in one
// process and prints one JSON line per seed: steps to the target, seconds, final accuracy, the
// accuracy curve, the intra-op thread count and the BLAS kernel in use. Used by the convergence
// matrix test (base_model_matrix_test.py runs it under several OPENBLAS_CORETYPE values and thread
// counts) and to tune the recipe.
// Usage: spar_arith_base_run --out=DIR [--seeds=1,2,3] [--threads=N] [--key=value ...]
//   keys: target, max_steps, batch_size, lr, warmup, weight_decay, beta2, max_grad_norm,
//         schedule, eval_every, eval_problems (defaults: spar::arith::ArithBaseOptions's)
// Exit 0 when every seed reached the target, 1 otherwise, 2 on bad flags.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/blas_kernel.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "tasks/arith/base_model.h"

namespace {

bool ParseFlags(int argc, char** argv, std::map<std::string, std::string>* kv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    size_t eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::fprintf(stderr, "bad flag %s (want --key=value)\n", a.c_str());
      return false;
    }
    (*kv)[a.substr(2, eq - 2)] = a.substr(eq + 1);
  }
  return true;
}

bool Apply(std::map<std::string, std::string>& kv_, spar::arith::ArithBaseOptions* o,
           std::vector<uint64_t>* seeds) {
  auto& kv = kv_;
  bool ok = true;
  auto d = [&](const char* k, double* v) {
    if (kv.count(k)) ok &= absl::SimpleAtod(kv[k], v), kv.erase(k);
  };
  auto i = [&](const char* k, int* v) {
    if (kv.count(k)) ok &= absl::SimpleAtoi(kv[k], v), kv.erase(k);
  };
  d("target", &o->target_accuracy);
  i("max_steps", &o->max_steps);
  i("batch_size", &o->batch_size);
  d("lr", &o->learning_rate);
  i("warmup", &o->warmup_steps);
  d("weight_decay", &o->weight_decay);
  d("beta2", &o->beta2);
  d("max_grad_norm", &o->max_grad_norm);
  i("eval_every", &o->eval_every);
  i("fine_eval_every", &o->fine_eval_every);
  i("eval_problems", &o->eval_problems);
  i("threads", &o->num_threads);
  int64_t hidden = o->model.hidden_size, inter = o->model.intermediate_size;
  int64_t layers = o->model.num_hidden_layers, heads = o->model.num_attention_heads;
  int64_t kvh = o->model.num_key_value_heads;
  auto l = [&](const char* k, int64_t* v) {
    if (kv_.count(k)) ok &= absl::SimpleAtoi(kv_[k], v), kv_.erase(k);
  };
  l("hidden", &hidden);
  l("intermediate", &inter);
  l("layers", &layers);
  l("heads", &heads);
  l("kv_heads", &kvh);
  o->model.hidden_size = hidden;
  o->model.intermediate_size = inter;
  o->model.num_hidden_layers = layers;
  o->model.num_attention_heads = heads;
  o->model.num_key_value_heads = kvh;
  if (kv.count("schedule")) o->lr_schedule = kv["schedule"], kv.erase("schedule");
  if (kv.count("out")) o->out_dir = kv["out"], kv.erase("out");
  if (kv.count("seeds")) {
    seeds->clear();
    for (absl::string_view s : absl::StrSplit(kv["seeds"], ',')) {
      uint64_t v = 0;
      ok &= absl::SimpleAtoi(s, &v);
      seeds->push_back(v);
    }
    kv.erase("seeds");
  }
  for (const auto& [k, v] : kv) {
    std::fprintf(stderr, "unknown flag --%s\n", k.c_str());
    ok = false;
  }
  return ok && !o->out_dir.empty() && !seeds->empty();
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> kv;
  spar::arith::ArithBaseOptions base;
  std::vector<uint64_t> seeds = {1};
  if (!ParseFlags(argc, argv, &kv) || !Apply(kv, &base, &seeds)) {
    std::fprintf(stderr, "usage: %s --out=DIR [--seeds=1,2] [--threads=N] [--key=value ...]\n",
                 argv[0]);
    return 2;
  }
  bool all = true;
  const bool verbose = std::getenv("SPAR_VERBOSE") != nullptr;
  for (uint64_t seed : seeds) {
    spar::arith::ArithBaseOptions o = base;
    o.seed = seed;
    o.out_dir = spar::JoinPath(base.out_dir, absl::StrCat("seed", seed));
    auto r = spar::arith::BuildArithBaseModel(o, [&](const spar::arith::ArithBaseProgress& p) {
      if (verbose && p.accuracy >= 0) {
        std::fprintf(stderr, "seed %llu step %d loss %.4f accuracy %.3f\n",
                     static_cast<unsigned long long>(seed), p.step, p.loss, p.accuracy);
      }
    });
    if (!r.ok()) {
      std::fprintf(stderr, "seed %llu: %s\n", static_cast<unsigned long long>(seed),
                   r.status().ToString().c_str());
      return 1;
    }
    nlohmann::json curve = nlohmann::json::array();
    for (const auto& [step, acc] : r->accuracy_curve) curve.push_back({step, acc});
    const bool reached = r->greedy_accuracy >= o.target_accuracy;
    all &= reached;
    nlohmann::json line = {{"seed", seed},
                           {"threads", o.num_threads},
                           {"kernel", spar::CurrentBlasKernelChoice().kernel},
                           {"steps", r->steps},
                           {"seconds", r->seconds},
                           {"accuracy", r->greedy_accuracy},
                           {"reached", reached},
                           {"curve", curve}};
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
  }
  return all ? 0 : 1;
}
