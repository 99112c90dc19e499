#!/usr/bin/env python3
"""Independent reference values for the DNO soft-label test in tests/orchestrator/dno_test.cc.

Written from the DNO paper's Algorithm 1 (arXiv 2404.03715) and ALGORITHMS.md §2, not from
orchestrator/dno.cc: R_t(y) = E_{y'~pi_t} P(y > y'), estimated over the policy's own K samples
(every y' other than y itself; the teacher, a candidate after them, is never an opponent); the
pair label is p = sigmoid(R_t(y1) - R_t(y2)). Automatic negatives (cut or repetitive responses)
lose to every sound response (P = 1, whatever a judge said) and have R = 0; two negatives make no
pair. Here it is a preference matrix of observation lists, not a stream of judgments.

Run: python3 tests/orchestrator/dno_label_reference.py  (pure Python; prints what the test pins).
"""
import math

K = 5  # policy samples; index 5 is the teacher
TEXTS = ["a", "b", "c", "a", "cut", "gold"]
NEGATIVE = [False, False, False, False, True, False]
# (i, j, P(i > j), ok): one judge verdict each; failed ones carry nothing.
JUDGMENTS = [(0, 1, 0.9, True), (0, 2, 0.0, False), (1, 2, 0.2, True), (3, 1, 0.7, True),
             (3, 2, 0.6, True), (0, 5, 0.1, True), (1, 5, 0.0, True), (2, 5, 0.3, True),
             (3, 5, 0.2, True), (0, 4, 0.0, True)]


def preference_observations():
    n = len(TEXTS)
    obs = [[[] for _ in range(n)] for _ in range(n)]
    for i, j, p, ok in JUDGMENTS:
        if ok and not NEGATIVE[i] and not NEGATIVE[j]:
            obs[i][j].append(p)
            obs[j][i].append(1.0 - p)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if TEXTS[i] == TEXTS[j]:
                obs[i][j].append(0.5)
            elif not NEGATIVE[i] and NEGATIVE[j]:
                obs[i][j].append(1.0)
                obs[j][i].append(0.0)
    return obs


def win_rates():
    obs = preference_observations()
    rates = []
    for i in range(len(TEXTS)):
        if NEGATIVE[i]:
            rates.append(0.0)
            continue
        seen = [p for j in range(K) if j != i for p in obs[i][j]]
        rates.append(sum(seen) / len(seen) if seen else 0.5)
    return rates


def labels():
    r = win_rates()
    out, done = {}, set()
    for a in range(len(TEXTS)):
        for b in range(a + 1, len(TEXTS)):
            key = frozenset((TEXTS[a], TEXTS[b]))
            if TEXTS[a] == TEXTS[b] or (NEGATIVE[a] and NEGATIVE[b]) or key in done:
                continue
            done.add(key)
            p = 1.0 / (1.0 + math.exp(-(r[a] - r[b])))
            chosen, rejected = (a, b) if p >= 0.5 else (b, a)
            out[(TEXTS[chosen], TEXTS[rejected])] = max(p, 1.0 - p)
    return r, out


if __name__ == "__main__":
    r, out = labels()
    print("win rates:", ", ".join(f"{x:.17g}" for x in r))
    for (c, rj), p in sorted(out.items()):
        print(f'{{{{"{c}", "{rj}"}}, {p:.17g}}},')
