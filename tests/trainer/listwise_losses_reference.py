#!/usr/bin/env python3
"""Independent reference values for tests/trainer/listwise_losses_test.cc.

The two listwise losses, written from the papers' equations, never from
trainer/listwise_losses.cc, and in a different shape: a group is a plain list of the
responses it has (no padding, no masks), each response a dict.

BRAIn (Pandey et al., ICML 2024, arXiv 2402.02479; ALGORITHMS.md §9). Target: the
reward-conditioned posterior p(y|x) ∝ π_SFT(y|x)·exp(r(x,y)/β), reached through K samples of a
proposal q with self-normalized importance weights
    α_i = w_i / Σ_j w_j,   w_i = π_SFT(y_i|x)·exp(r_i/β) / q(y_i|x)      (constants),
and the self-normalized baseline weights
    β_i(θ) = v_i / Σ_j v_j, v_i = π_θ(y_i|x) / q(y_i|x).
BRAIn's gradient estimate is -Σ_i (α_i - β_i) ∇ log π_θ(y_i|x) (the authors' own estimator,
gradient_estimators.py `estimator_brain` in github.com/gauravpandeyamu/BRAIn_experiments:
weights = alpha_hat - beta_hat); the loss whose gradient that is: -Σ_i α_i log β_i(θ).
The "no baseline" ablation drops β: -Σ_i α_i log π_θ(y_i|x).

RRHF (Yuan et al. 2023, arXiv 2304.05302, Eqs. 1-5; official code GanjinZero/RRHF train.py):
    p_i = Σ_t log π(y_i,t | x, y_i,<t) / |y_i|              (Eq. 1, length_penalty = 1)
    L_rank = Σ_{r_i < r_j} max(0, p_i - p_j)                 (Eq. 2; strict <, ties excluded)
    i' = argmax_i r_i (first on ties, like torch.argmax)    (Eq. 3)
    L_ft = -Σ_t log π(y_i',t | ...) = -ℓ(y_i')              (Eq. 4, summed)
    L = L_rank + w·L_ft                                      (Eq. 5 has w = 1)

Gradients with respect to each ℓ_θ(y_i) are central finite differences (five-point stencil, so
the truncation error is O(h^4)) of these formulas; for BRAIn the script also checks them against
the closed-form -(α_i - β_i) / -α_i.

Run: python3 tests/trainer/listwise_losses_reference.py  (pure Python; prints the literals the
test pins).
"""
import math

# The test's three groups: G0 has 3 responses (the C++ pads it to K = 4), G1 a single response
# (3 padded), G2 four responses with two reward ties (0.5, 0.5 and 0.9, 0.9: the best reward is
# tied, so "first on ties" matters, and tied pairs must not enter L_rank).
# logp = ℓ_θ(y) summed over the response, n = |y| tokens, q = log q(y|x), sft = log π_SFT(y|x).
GROUPS = [
    [dict(logp=-12.0, n=6, q=-11.0, sft=-11.5, r=0.7),
     dict(logp=-8.0, n=2, q=-9.0, sft=-8.3, r=0.2),
     dict(logp=-20.0, n=8, q=-18.0, sft=-19.0, r=1.3)],
    [dict(logp=-5.0, n=4, q=-5.5, sft=-6.0, r=-0.4)],
    [dict(logp=-6.0, n=3, q=-6.5, sft=-7.0, r=0.5),
     dict(logp=-9.0, n=3, q=-8.0, sft=-8.8, r=0.9),
     dict(logp=-4.0, n=4, q=-4.2, sft=-3.9, r=0.5),
     dict(logp=-7.5, n=5, q=-7.0, sft=-7.2, r=0.9)],
]
BETA = 0.5  # BRAIn's β (so r/β != r·β)
SFT_WEIGHT = 1.0  # RRHF's w (the paper's unweighted sum)


def normalized(log_weights):
    """Self-normalized weights exp(a_i) / Σ_j exp(a_j), shifted by the max for stability."""
    m = max(log_weights)
    e = [math.exp(a - m) for a in log_weights]
    z = sum(e)
    return [x / z for x in e]


def brain_alpha(group, beta):
    """α_i ∝ π_SFT(y_i|x)·exp(r_i/β) / q(y_i|x): target over proposal, in log space."""
    return normalized([y["r"] / beta + y["sft"] - y["q"] for y in group])


def brain_loss(group, logps, beta, baseline):
    alpha = brain_alpha(group, beta)
    if not baseline:  # ablation: -Σ α_i log π_θ(y_i|x)
        return -sum(a * lp for a, lp in zip(alpha, logps))
    # log β_i(θ) = log v_i - log Σ_j v_j with log v_i = ℓ_θ(y_i) - log q(y_i|x).
    log_v = [lp - y["q"] for lp, y in zip(logps, group)]
    m = max(log_v)
    log_z = m + math.log(sum(math.exp(v - m) for v in log_v))
    return -sum(a * (v - log_z) for a, v in zip(alpha, log_v))


def rrhf_parts(group, logps, sft_weight):
    """(L_rank, L_ft, L) for one group."""
    p = [lp / y["n"] for lp, y in zip(logps, group)]
    rank = 0.0
    for i in range(len(group)):
        for j in range(len(group)):
            if group[i]["r"] < group[j]["r"]:
                rank += max(0.0, p[i] - p[j])
    best = 0
    for i in range(1, len(group)):
        if group[i]["r"] > group[best]["r"]:  # strict: the first of tied maxima wins
            best = i
    ft = -logps[best]
    return rank, ft, rank + sft_weight * ft


def fd_grad(f, logps, h=1e-3):
    """d f / d logps[i] by the five-point central difference."""
    grads = []
    for i in range(len(logps)):
        def at(d):
            x = list(logps)
            x[i] += d
            return f(x)
        grads.append((-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h))
    return grads


def fmt(v):
    return "%.15g" % (v + 0.0)  # + 0.0: no "-0"


def row(values):
    return "{" + ", ".join(fmt(v) for v in values) + "}"


def main():
    print("// beta = %s, sft_weight = %s; per group: loss, then d loss / d logp per response"
          % (fmt(BETA), fmt(SFT_WEIGHT)))
    for name, baseline in (("brain (self-normalized baseline)", True),
                           ("brain (no baseline)", False)):
        print("\n// " + name)
        for g in GROUPS:
            logps = [y["logp"] for y in g]
            f = lambda x, g=g: brain_loss(g, x, BETA, baseline)
            grads = fd_grad(f, logps)
            alpha = brain_alpha(g, BETA)
            if baseline:
                b = normalized([lp - y["q"] for lp, y in zip(logps, g)])
                closed = [-(a - bb) for a, bb in zip(alpha, b)]
            else:
                closed = [-a for a in alpha]
            assert all(abs(x - y) < 1e-9 for x, y in zip(grads, closed)), (grads, closed)
            print("{%s, %s},  // alpha %s ess %s" % (
                fmt(f(logps)), row(grads), row(alpha), fmt(1 / sum(a * a for a in alpha))))

    print("\n// rrhf: loss, grads; rank, ft")
    for g in GROUPS:
        logps = [y["logp"] for y in g]
        f = lambda x, g=g: rrhf_parts(g, x, SFT_WEIGHT)[2]
        rank, ft, total = rrhf_parts(g, logps, SFT_WEIGHT)
        print("{%s, %s, %s, %s}," % (fmt(total), row(fd_grad(f, logps)), fmt(rank), fmt(ft)))


if __name__ == "__main__":
    main()
