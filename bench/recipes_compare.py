#!/usr/bin/env python3
"""Two recipes' results compared paired, seed by seed: McNemar on the held-out problems.

After tests/e2e/recipes_test.py has run both recipes (e.g. `ctest -R 'e2e.demo$|e2e.demo_dpo'`),
each seed's result (the best round, chosen on the validation split) of recipe A and of recipe B
answered the same 1,253 held-out problems; this counts the problems only A answers right and only
B does, and gives McNemar's exact two-sided p-value (math.comb, no approximation) and the 95%
interval of the paired accuracy difference. Two marginal intervals that overlap say little; this
sees through the problems both get right or both get wrong.

usage: recipes_compare.py WORK_DIR ALGO_A ALGO_B   (WORK_DIR: build/tests/e2e/work)
"""
import json
import math
import os
import re
import sys


def truth(prompt):
    m = re.fullmatch(r"\s*(\d+)\s*\+\s*(\d+)\s*=\s*", prompt)
    return int(m.group(1)) + int(m.group(2)) if m else None


def correct(prompt, text):
    m = re.match(r"\s*(-?\d+)", text)
    t = truth(prompt)
    return t is not None and m is not None and int(m.group(1)) == t


def answers(work, algo, result):
    runs = os.path.join(work, "%s-s%d-runs" % (algo, result["seed"]))  # recipes_test.py's layout
    (job,) = os.listdir(runs)
    path = os.path.join(runs, job, "iter_%03d" % result["best_round"], "eval_answers.jsonl")
    rows = [json.loads(l) for l in open(path)]
    return {r["prompt"]: r["text"] for r in rows}


def mcnemar_p(only_a, only_b):
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def main():
    work, algo_a, algo_b = sys.argv[1:4]
    a = {r["seed"]: r for r in json.load(open(os.path.join(work, algo_a + ".json")))["seeds"]}
    b = {r["seed"]: r for r in json.load(open(os.path.join(work, algo_b + ".json")))["seeds"]}
    print("| seed | %s | %s | only %s right | only %s right | McNemar p | difference, 95%% |"
          % (algo_a, algo_b, algo_a, algo_b))
    print("|---|---|---|---|---|---|---|")
    for seed in sorted(set(a) & set(b)):
        ans_a, ans_b = answers(work, algo_a, a[seed]), answers(work, algo_b, b[seed])
        prompts = [p for p in ans_a if p in ans_b and truth(p) is not None]
        only_a = sum(1 for p in prompts if correct(p, ans_a[p]) and not correct(p, ans_b[p]))
        only_b = sum(1 for p in prompts if correct(p, ans_b[p]) and not correct(p, ans_a[p]))
        n = len(prompts)
        d = (only_a - only_b) / n
        var = max(0.0, (only_a + only_b) / n - d * d) / n
        half = 1.959963984540054 * math.sqrt(var)
        acc_a = sum(correct(p, ans_a[p]) for p in prompts) / n
        acc_b = sum(correct(p, ans_b[p]) for p in prompts) / n
        print("| %d | %.3f (round %d) | %.3f (round %d) | %d | %d | %.2g | %+.1f [%+.1f, %+.1f] |"
              % (seed, acc_a, a[seed]["best_round"], acc_b, b[seed]["best_round"], only_a,
                 only_b, mcnemar_p(only_a, only_b), 100 * d, 100 * (d - half),
                 100 * (d + half)))


if __name__ == "__main__":
    main()
