#!/usr/bin/env python3
"""Spar's Llama-family model against transformers and PEFT (ctest label `parity`).

The references are computed here, at test time, by the pinned libraries in the .venv that
`scripts/dev` sets up (torch on CPU, one thread). Checkpoints are tiny random models made by
transformers with fixed seeds (hidden 64, 2 layers, 4 query / 2 key-value heads, vocab 300,
bos/eos/pad 256/257/258 so that Spar's byte tokenizer reads their prompts), weights drawn so that
logits are O(1-10) rather than the near-uniform output of the 0.02 initialisation. Suites:
  logits            llama, mistral, qwen2, qwen3 variants (tied and untied embeddings, attention
                    bias, qk-norm, explicit head_dim, llama3 and linear RoPE scaling, a sliding
                    window), each saved f32; the first of each family also bf16 and sharded
                    (and the first llama f16).
                    Spar's logits for a batch of rows of different lengths (left padding with a
                    key mask as in generation, right padding as in scoring) against transformers
                    on each row alone; greedy generation of 32 tokens token for token against
                    generate(do_sample=False), with the log-probs Spar reports per token;
                    ScoreTokens against summed log_softmax. Then configurations transformers
                    runs and Spar does not implement (gelu, mlp_bias, qwen2 sliding-window layers,
                    yarn RoPE): Spar must refuse to load them, naming the field.
  train_checkpoint  a checkpoint Spar's trainer writes (spar_trainer_test_helper: TrainDpo, 6
                    steps) from a transformers checkpoint (f32 and bf16) loads in transformers with
                    no missing or unexpected tensors, keeps its dtype and gives Spar's logits; so
                    does the same policy saved by Policy::Save in 40 KB shards.
  lora              a Spar LoRA run (hf_model_parity_tool lora): its adapter loads in PEFT and
                    gives Spar's logits; PEFT's merge_and_unload() equals Spar's merged export.
  sampler           sampler::Sampler and Policy::Generate at temperature 1 and 0.7: the (untempered)
                    log-probs returned for the sampled tokens equal log_softmax of transformers'
                    logits for the same prefix.
--device cuda (scripts/gpu-check) runs transformers on cuda:0 and Spar's tools on the GPU; float32
matmuls stay full precision on both sides (TF32 is off by default in torch and LibTorch), so the
tolerances below hold there too.
Tolerances: 1e-4 absolute on f32 logits and on per-token log-probs (Spar and torch differ only by
float32 rounding in different kernel orders: at most 2e-5 measured, on logits of up to ~12),
1e-4 per token on summed log-probs, 1e-5 on merged LoRA weights (both are W + s * B @ A in f32). A
bf16 (f16) checkpoint is compared with 1e-4 against transformers loading it as float32 (Spar computes
in float32 on the bf16 weights, so the math is the same); against transformers computing in bf16 the
bound is BF16_TOL relative to the row's largest logit (bf16 keeps 8 significant bits, 2^-8 = 0.4%
per rounding, compounded over 2 layers; 0.03 measured).
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' loading progress bars
import torch

TOL = 1e-4
DEVICE = "cpu"  # --device: where transformers (and, through CUDA_VISIBLE_DEVICES, Spar) run
BF16_TOL = 0.05
BOS, EOS, PAD, VOCAB = 256, 257, 258, 300
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-5, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
# (name, model_type, config overrides). The first of each family is also saved bf16 and sharded.
VARIANTS = [
    ("llama_untied", "llama", dict(tie_word_embeddings=False, rope_theta=50000.0)),
    ("llama_tied_bias", "llama", dict(tie_word_embeddings=True, attention_bias=True)),
    ("llama_rope_llama3", "llama", dict(tie_word_embeddings=False, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
        high_freq_factor=4.0, original_max_position_embeddings=16))),
    ("llama_rope_linear", "llama", dict(tie_word_embeddings=True, rope_parameters=dict(
        rope_type="linear", rope_theta=10000.0, factor=2.0))),
    ("mistral_tied", "mistral", dict(tie_word_embeddings=True, sliding_window=None,
                                     rope_theta=30000.0)),
    ("mistral_window6", "mistral", dict(tie_word_embeddings=False, sliding_window=6)),
    ("qwen2_untied", "qwen2", dict(tie_word_embeddings=False, rope_theta=1000000.0)),
    ("qwen2_tied", "qwen2", dict(tie_word_embeddings=True)),
    ("qwen3_tied", "qwen3", dict(tie_word_embeddings=True, head_dim=32, rope_theta=1000000.0)),
    ("qwen3_untied", "qwen3", dict(tie_word_embeddings=False, head_dim=16)),
]
# Configurations transformers runs but Spar's decoder does not implement: Spar must refuse to load
# them, naming the field, rather than compute something else. (model_type, overrides, needle)
REFUSED = [
    ("llama", dict(hidden_act="gelu"), "config.hidden_act"),
    ("llama", dict(mlp_bias=True), "config.mlp_bias"),
    ("qwen2", dict(use_sliding_window=True, sliding_window=8, max_window_layers=1),
     "sliding-window layers are not supported"),
    ("llama", dict(rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=2.0)),
     "unsupported \"yarn\""),
]
PROMPTS = ["Hello, world!", "2+2=", "The quick brown fox", "x"]


def encode(text):
    """Spar's byte tokenizer: BOS + UTF-8 bytes."""
    return [BOS] + list(text.encode("utf-8"))


def make_model(model_type, overrides, seed):
    """A transformers model with random weights of a useful scale (drawn from `seed`)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.for_model(model_type, **{**BASE, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(1 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.2 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.3 * noise)
            else:
                p.copy_(noise * (1.5 / p.shape[1] ** 0.5))
    return model


def save(model, path, dtype="float32", shard=None):
    shutil.rmtree(path, ignore_errors=True)
    m = copy.deepcopy(model).to(getattr(torch, dtype)) if dtype != "float32" else model
    kwargs = {"max_shard_size": shard} if shard else {}
    m.save_pretrained(path, **kwargs)
    return path


def load_hf(path, dtype=torch.float32):
    from transformers import AutoModelForCausalLM
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype,
                                                       output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise AssertionError(f"{path}: transformers loading info {bad}")
    return model.to(DEVICE).eval()


class Tool:
    """One spar_hf_model_parity_tool process answering JSON-line requests."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"tool exited: {self.proc.stderr.read().strip()}")
        out = json.loads(line)
        if "error" in out:
            raise AssertionError(f"tool error on {request['op']}: {out['error']}")
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class Report:
    """Counts cases and failures; keeps the largest difference per kind."""

    def __init__(self):
        self.cases = self.failures = 0
        self.max_diff = {}

    def check(self, name, kind, diff, tol):
        self.cases += 1
        self.max_diff[kind] = max(self.max_diff.get(kind, 0.0), diff)
        if not diff <= tol:
            self.failures += 1
            print(f"FAIL {name} {kind}: max abs diff {diff:.3g} > {tol:.3g}")

    def require(self, name, what, ok, detail=""):
        self.cases += 1
        if not ok:
            self.failures += 1
            print(f"FAIL {name} {what} {detail}")

    def summary(self, suite, checkpoints, seconds):
        diffs = ", ".join(f"{k} {v:.2g}" for k, v in sorted(self.max_diff.items()))
        print(f"{suite}: {checkpoints} checkpoints, {self.cases} cases, {self.failures} failures; "
              f"max abs diff: {diffs}; {seconds:.1f} s")
        return 1 if self.failures else 0


def logit_rows(seed):
    """The logits rows: three prompts of different lengths and 20 random ids (any of the vocab)."""
    gen = torch.Generator().manual_seed(seed)
    return [encode(p) for p in PROMPTS[:3]] + [
        [BOS] + torch.randint(0, VOCAB, (19,), generator=gen).tolist()]


def hf_logits(model, rows):
    """Each row alone, no padding: [len, vocab] float64 per row."""
    with torch.no_grad():
        return [model(torch.tensor([r], device=DEVICE)).logits[0].double().cpu() for r in rows]


def max_diff(spar_rows, ref_rows):
    return max((torch.as_tensor(s, dtype=torch.float64) - r).abs().max().item()
               for s, r in zip(spar_rows, ref_rows))


def check_logits(report, name, tool, ref, rows):
    for padding in ("left", "right"):
        got = tool.ask(op="logits", rows=rows, padding=padding)["logits"]
        report.check(name, f"logits_{padding}_pad", max_diff(got, ref), TOL)


def hf_greedy(model, ids, max_new_tokens):
    """transformers' greedy continuation of `ids` (cut after EOS) and its per-token log-probs."""
    input_ids = torch.tensor([ids], device=DEVICE)
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                             do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=EOS,
                             pad_token_id=PAD, output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[0, len(ids):].tolist()
    if EOS in tokens:
        tokens = tokens[:tokens.index(EOS) + 1]
    logprobs = [torch.log_softmax(out.logits[j][0].double().cpu(), -1)[t].item()
                for j, t in enumerate(tokens)]
    return tokens, logprobs


def check_greedy(report, name, tool, model, steps=32):
    got = tool.ask(op="generate", prompts=PROMPTS, temperature=0, max_new_tokens=steps)
    for prompt, g in zip(PROMPTS, got["generations"]):
        want, want_lp = hf_greedy(model, encode(prompt), steps)
        report.require(name, f"greedy {prompt!r}", g["token_ids"][0] == want,
                       f"\n    spar: {g['token_ids'][0]}\n    hf:   {want}")
        n = min(len(want_lp), len(g["token_logprobs"][0]))
        diff = max(abs(a - b) for a, b in zip(g["token_logprobs"][0][:n], want_lp[:n]))
        report.check(name, "greedy_token_logprob", diff, TOL)


def hf_token_logprobs(model, prompt_ids, tokens):
    """log pi(tokens[j] | prompt_ids + tokens[:j]) by teacher forcing, float64."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + tokens], device=DEVICE)).logits[0].double().cpu()
    logp = torch.log_softmax(logits, -1)
    return [logp[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(tokens)]


def check_scores(report, name, tool, model, seed):
    gen = torch.Generator().manual_seed(seed)
    pairs = [(encode(p), torch.randint(0, VOCAB, (5 + i,), generator=gen).tolist())
             for i, p in enumerate(PROMPTS)]
    got = tool.ask(op="score", pairs=pairs)["scores"]
    for (prompt, response), score in zip(pairs, got):
        want = sum(hf_token_logprobs(model, prompt, response))
        report.check(name, "score", abs(score - want) / len(response), TOL)


def check_bf16_native(report, name, tool, path, rows):
    """Spar (float32 math on the bf16 weights) against transformers computing in bf16."""
    model = load_hf(path, torch.bfloat16)
    got = tool.ask(op="logits", rows=rows, padding="left")["logits"]
    for s, r in zip(got, hf_logits(model, rows)):
        rel = (torch.tensor(s, dtype=torch.float64) - r).abs().max().item() / r.abs().max().item()
        report.check(name, "bf16_native_logits_relative", rel, BF16_TOL)


def suite_logits(args, report):
    count = 0
    families = set()
    for seed, (name, model_type, overrides) in enumerate(VARIANTS, start=1):
        model = make_model(model_type, overrides, seed)
        saves = [(name, {})]
        if model_type not in families:
            families.add(model_type)
            saves += [(f"{name}_bf16", dict(dtype="bfloat16")),
                      (f"{name}_sharded", dict(shard="40KB"))]
            if model_type == "llama":
                saves.append((f"{name}_f16", dict(dtype="float16")))
        for ckpt, kwargs in saves:
            print(f"checkpoint {ckpt}", flush=True)
            path = save(model, os.path.join(args.work, ckpt), **kwargs)
            shards = len([f for f in os.listdir(path) if f.endswith(".safetensors")])
            if kwargs.get("shard"):
                report.require(ckpt, "is sharded", shards > 1, f"({shards} files)")
            ref_model = load_hf(path)
            rows = logit_rows(seed)
            tool = Tool([args.tool, "serve", path])
            check_logits(report, ckpt, tool, hf_logits(ref_model, rows), rows)
            check_greedy(report, ckpt, tool, ref_model)
            check_scores(report, ckpt, tool, ref_model, seed)
            if kwargs.get("dtype") == "bfloat16":
                check_bf16_native(report, ckpt, tool, path, rows)
            tool.close()
            count += 1
    return count + check_refusals(args, report)


def check_refusals(args, report):
    for i, (model_type, overrides, needle) in enumerate(REFUSED):
        name = f"refused_{i}_{model_type}"
        path = save(make_model(model_type, overrides, 100 + i), os.path.join(args.work, name))
        res = subprocess.run([args.tool, "serve", path], input="", capture_output=True,
                             text=True, check=False)
        report.require(name, f"refused naming {needle!r}",
                       res.returncode == 2 and needle in res.stderr, res.stderr.strip())
    return len(REFUSED)


def variant(name):
    seed = [v[0] for v in VARIANTS].index(name) + 1
    return VARIANTS[seed - 1], seed


def spar_dtype(path):
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    return config.get("dtype", config.get("torch_dtype"))


def suite_train_checkpoint(args, report):
    cases = [("llama_untied", "float32"), ("mistral_window6", "float32"),
             ("qwen2_tied", "float32"), ("qwen3_tied", "bfloat16")]
    for name, dtype in cases:
        (_, model_type, overrides), seed = variant(name)
        ckpt = f"{name}_{dtype}"
        print(f"checkpoint {ckpt}", flush=True)
        init = save(make_model(model_type, overrides, seed), os.path.join(args.work, ckpt),
                    dtype=dtype)
        out = os.path.join(args.work, f"{ckpt}_trained")
        res = subprocess.run([args.trainer, init, out, os.path.join(args.work, f"{ckpt}_state"),
                              "0"], capture_output=True, text=True, check=False)
        report.require(ckpt, "trains", res.returncode == 0, res.stderr.strip())
        if res.returncode != 0:
            continue
        report.require(ckpt, "keeps dtype", spar_dtype(out) == dtype, spar_dtype(out))
        before, after = load_hf(init), load_hf(out)
        moved = max((a - b).abs().max().item() for a, b in
                    zip(before.state_dict().values(), after.state_dict().values()))
        report.require(ckpt, "weights changed by training", moved > 1e-3, f"({moved:.3g})")
        rows = logit_rows(seed)
        tool = Tool([args.tool, "serve", out])
        check_logits(report, ckpt, tool, hf_logits(after, rows), rows)
        check_greedy(report, ckpt, tool, after)
        check_sharded_save(report, ckpt, tool, os.path.join(args.work, f"{ckpt}_sharded"), rows)
        tool.close()
    return len(cases)


def check_sharded_save(report, name, tool, path, rows):
    """Policy::Save in small shards (model.safetensors.index.json): transformers reads it."""
    tool.ask(op="save", dir=path, max_shard_bytes=40000)
    shards = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    report.require(name, "saves sharded", len(shards) > 1, f"({len(shards)} files)")
    got = tool.ask(op="logits", rows=rows, padding="left")["logits"]
    report.check(name, "sharded_save_logits", max_diff(got, hf_logits(load_hf(path), rows)), TOL)


def suite_lora(args, report):
    from peft import PeftModel
    from safetensors.torch import load_file
    names = ["qwen2_untied", "llama_tied_bias", "qwen3_tied"]
    for name in names:
        (_, model_type, overrides), seed = variant(name)
        print(f"checkpoint {name}", flush=True)
        base_dir = save(make_model(model_type, overrides, seed), os.path.join(args.work, name))
        adapter, merged = (os.path.join(args.work, f"{name}_{k}") for k in ("adapter", "merged"))
        shutil.rmtree(merged, ignore_errors=True)
        tool = Tool([args.tool, "lora", base_dir, adapter, merged])
        rows = logit_rows(seed)
        got = tool.ask(op="logits", rows=rows, padding="left")["logits"]
        base = load_hf(base_dir)
        base_ref = hf_logits(base, rows)
        peft = PeftModel.from_pretrained(base, adapter).eval()
        peft_ref = hf_logits(peft, rows)
        effect = max((a - b).abs().max().item() for a, b in zip(peft_ref, base_ref))
        report.require(name, "adapter changes the logits", effect > 0.05, f"({effect:.3g})")
        report.check(name, "lora_logits_vs_peft", max_diff(got, peft_ref), TOL)
        check_greedy(report, name, tool, peft)
        tool.close()
        want = peft.merge_and_unload().state_dict()
        spar = load_file(os.path.join(merged, "model.safetensors"))
        want_names = set(want) - ({"lm_head.weight"} if overrides["tie_word_embeddings"] else set())
        extra = set(spar) ^ want_names
        report.require(name, "merged tensor names", not extra, sorted(extra))
        diff = max((spar[k] - want[k]).abs().max().item() for k in spar if k in want)
        report.check(name, "merged_weights_vs_merge_and_unload", diff, 1e-5)
        report.check(name, "merged_export_logits_vs_peft",
                     max_diff(hf_logits(load_hf(merged), rows), peft_ref), TOL)
    return len(names)


def suite_sampler(args, report):
    names = ["llama_untied", "qwen3_tied"]
    for name in names:
        (_, model_type, overrides), seed = variant(name)
        print(f"checkpoint {name}", flush=True)
        path = save(make_model(model_type, overrides, seed), os.path.join(args.work, name))
        model = load_hf(path)
        tool = Tool([args.tool, "serve", path])
        for temperature in (1.0, 0.7):
            request = dict(prompts=PROMPTS, temperature=temperature, max_new_tokens=24,
                           num_samples=3, seed=5)
            gens = tool.ask(op="generate", **request)["generations"]
            samples = tool.ask(op="sample", **request)["samples"]
            distinct = set()
            for prompt, g, s in zip(PROMPTS, gens, samples):
                for tokens, token_lp, logprob in zip(s["token_ids"], g["token_logprobs"],
                                                     s["logprobs"]):
                    want = hf_token_logprobs(model, encode(prompt), tokens)
                    distinct.add(tuple(tokens))
                    report.check(name, "sampler_logprob_per_token",
                                 abs(logprob - sum(want)) / len(tokens), TOL)
                    if len(token_lp) == len(want):
                        report.check(name, "generate_token_logprob",
                                     max(abs(a - b) for a, b in zip(token_lp, want)), TOL)
                report.require(name, "Policy::Generate and Sampler agree",
                               g["token_ids"] == s["token_ids"])
            report.require(name, f"samples differ at T={temperature}",
                           len(distinct) == len(PROMPTS) * 3, f"({len(distinct)} distinct)")
        tool.close()
    return len(names)


SUITES = {"logits": suite_logits, "train_checkpoint": suite_train_checkpoint,
          "lora": suite_lora, "sampler": suite_sampler}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite", choices=sorted(SUITES))
    ap.add_argument("--tool", required=True, help="spar_hf_model_parity_tool")
    ap.add_argument("--trainer", required=True, help="spar_trainer_test_helper")
    ap.add_argument("--work", required=True, help="scratch folder (rewritten)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu: both sides on CPU (no GPU visible to Spar's tools either); "
                         "cuda: transformers on cuda:0 and Spar's tools on the GPU they pick")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # inherited by the tools; before CUDA starts
    elif not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    start = time.time()
    torch.set_num_threads(1)
    import transformers
    transformers.logging.set_verbosity_error()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    report = Report()
    checkpoints = SUITES[args.suite](args, report)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    return report.summary(args.suite, checkpoints, time.time() - start)


if __name__ == "__main__":
    sys.exit(main())
