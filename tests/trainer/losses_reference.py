#!/usr/bin/env python3
"""Independent reference values for tests/trainer/losses_test.cc.

Each loss is written from ALGORITHMS.md §5/§7 and the papers (DPO, cDPO/rDPO, DNO Eq. 8, IPO,
SLiC hinge, SPPO, SimPO, MPO), never from trainer/losses.cc. Gradients with respect to the policy's
sequence log-probs are central differences of these formulas (so a hand-derived gradient cannot
share a mistake with the C++); mpo_pg's is the surrogate gradient its stop-gradients define.

Run: python3 tests/trainer/losses_reference.py  (pure Python; prints the literals the test pins).
"""
import math

# Two fixed examples. Sequence log-probs are the sums of the token rows (mpo_pg reads the rows).
EXAMPLES = [
    dict(pc=-5.0, pr=-7.0, rc=-6.0, rr=-6.5, mc=-5.5, mr=-8.0, lw=2, ll=4,
         p=0.8, qw=0.7, ql=0.35,
         tpc=[-2, -3], tpr=[-1, -2, -3, -1], trc=[-2.5, -3.5], trr=[-1, -2.5, -2, -1],
         tmc=[-2, -3.5], tmr=[-1.5, -2, -3.5, -1]),
    dict(pc=-3.0, pr=-2.0, rc=-3.2, rr=-2.5, mc=-2.9, mr=-2.1, lw=3, ll=1,
         p=0.3, qw=0.45, ql=0.55,
         tpc=[-1, -1.5, -0.5], tpr=[-2], trc=[-1.2, -1.5, -0.5], trr=[-2.5],
         tmc=[-0.9, -1.4, -0.6], tmr=[-2.1]),
]

# Parameters per case (chosen so beta != 1/beta and p != 1-p change the numbers).
PARAMS = {
    "dpo": dict(beta=0.5),
    "cdpo": dict(beta=0.5, eps=0.1),
    "robust": dict(beta=0.5, eps=0.2),
    "dno": dict(beta=0.5),
    "ipo": dict(beta=0.25),
    "ipo_sum": dict(beta=0.25),
    "hinge": dict(beta=0.5),
    "sppo": dict(beta=0.5),
    "sppo_hard": dict(beta=0.5),
    "simpo": dict(beta=2.0, gamma=1.6),
    "mpo": dict(beta=0.1, alpha=0.1, eta=3.0),
    "mpo_pg": dict(beta=0.1, alpha=0.1, eta=3.0),
    "sft": dict(beta=0.1),
    "dpo+nll": dict(beta=0.5, nll=0.5),
}


def logsig(z):
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def targets(p=None, qw=None, ql=None):
    """The pair targets from optional judge data (ALGORITHMS.md §2, §4, §5).

    DNO Alg. 1 soft label: p = sigma(R(y1) - R(y2)) unless the pair was judged.
    SPPO with two samples, self included: P_hat_w = (1/2 + p)/2, P_hat_l = (1/2 + 1 - p)/2.
    mpo_pg: A(y) = P_hat(y > y') - 1/2, the judged preference of the pair, else the response's
    own win rate q_hat(y) vs pi_t.
    """
    wins = qw is not None and ql is not None
    soft = p if p is not None else (sigmoid(qw - ql) if wins else 1.0)
    win = (qw, ql) if wins else ((0.5 + soft) / 2, (0.5 + 1 - soft) / 2)
    if p is not None or not wins:
        adv = (soft - 0.5, (1 - soft) - 0.5)
    else:
        adv = (qw - 0.5, ql - 0.5)
    return dict(p=soft, win=win, adv=adv)


def loss(kind, x, pc, pr, a):
    """Per-example loss as a function of the policy's sequence log-probs pc, pr."""
    b = a["beta"]
    rho_w, rho_l = pc - x["rc"], pr - x["rr"]
    h = rho_w - rho_l
    if kind == "dpo":  # Rafailov et al. Eq. 7
        return -logsig(b * h)
    if kind == "cdpo":  # conservative DPO: labels flipped with prob eps
        e = a["eps"]
        return -(1 - e) * logsig(b * h) - e * logsig(-b * h)
    if kind == "robust":  # Chowdhury et al. rDPO
        e = a["eps"]
        return (-(1 - e) * logsig(b * h) + e * logsig(-b * h)) / (1 - 2 * e)
    if kind == "dno":  # DNO Eq. 8, eta = beta, soft label p
        p = x["p"]
        return -(p * logsig(b * h) + (1 - p) * logsig(-b * h))
    if kind == "ipo":  # TRL's IPO: per-token-averaged log-ratios
        hbar = rho_w / x["lw"] - rho_l / x["ll"]
        return (hbar - 1 / (2 * b)) ** 2
    if kind == "ipo_sum":  # IPO paper (Azar et al. Eq. 17): summed log-ratios, tau = beta
        return (h - 1 / (2 * b)) ** 2
    if kind == "hinge":  # SLiC-style hinge on the DPO margin
        return max(0.0, 1 - b * h)
    if kind == "sppo":  # SPPO: eta = 1/beta, targets eta (P_hat - 1/2)
        eta = 1 / b
        return 0.5 * ((rho_w - eta * (x["qw"] - 0.5)) ** 2 + (rho_l - eta * (x["ql"] - 0.5)) ** 2)
    if kind == "sppo_hard":  # TRL sppo_hard: P_hat_w = 1, P_hat_l = 0
        return (rho_w - 0.5 / b) ** 2 + (rho_l + 0.5 / b) ** 2
    if kind == "simpo":  # Meng et al.: length-normalised, no reference, margin gamma
        return -logsig(b * pc / x["lw"] - b * pr / x["ll"] - a["gamma"])
    if kind == "mpo":  # ALGORITHMS.md §5, batched closed-form regression
        al, eta = a["alpha"], a["eta"]
        z = 1 + al * eta
        rk_w = pc - (x["rc"] + al * eta * x["mc"]) / z
        rk_l = pr - (x["rr"] + al * eta * x["mr"]) / z
        return ((rk_w - rk_l) - eta * (x["qw"] - x["ql"]) / z) ** 2
    if kind == "sft":
        return -pc / x["lw"]
    if kind == "dpo+nll":  # RPO: DPO + nll_weight * (-log pi(y_w)/|y_w|)
        return -logsig(b * h) + a["nll"] * (-pc / x["lw"])
    raise ValueError(kind)


def mpo_pg(x, a, adv):
    """mpo_pg (§5): value and per-token surrogate gradients of
    -A(y) sum_t log pi(y_t) + alpha sum_t sg[log pi - log pi_mag] log pi
    + (1/eta) sum_t sg[log pi - log pi_k] log pi, over both responses."""
    al, inv_eta = a["alpha"], 1 / a["eta"]
    value, grads = 0.0, []
    for tp, tr, tm, A in ((x["tpc"], x["trc"], x["tmc"], adv[0]),
                          (x["tpr"], x["trr"], x["tmr"], adv[1])):
        value += -A * sum(tp)
        value += al * sum((u - m) * u for u, m in zip(tp, tm))
        value += inv_eta * sum((u - r) * u for u, r in zip(tp, tr))
        # d/du of the surrogate: the sg[] factors are constants.
        grads.append([-A + al * (u - m) + inv_eta * (u - r) for u, r, m in zip(tp, tr, tm)])
    return value, grads


def rewards(kind, x, a):
    b = a["beta"]
    if kind in ("simpo", "sft"):
        return b * x["pc"] / x["lw"], (b * x["pr"] / x["ll"] if kind == "simpo" else 0.0)
    return b * (x["pc"] - x["rc"]), b * (x["pr"] - x["rr"])


def fmt(v):
    return "%.10g" % v


def main():
    d = 1e-5
    print("// kind: losses {A, B}; d loss / d logp_chosen, d loss / d logp_rejected {A, B};"
          " rewards chosen, rejected {A, B}")
    for kind, a in PARAMS.items():
        if kind == "mpo_pg":
            continue
        vals, gw, gl, rw, rl = [], [], [], [], []
        for x in EXAMPLES:
            f = lambda pc, pr: loss(kind, x, pc, pr, a)
            vals.append(f(x["pc"], x["pr"]))
            gw.append((f(x["pc"] + d, x["pr"]) - f(x["pc"] - d, x["pr"])) / (2 * d))
            gl.append((f(x["pc"], x["pr"] + d) - f(x["pc"], x["pr"] - d)) / (2 * d))
            r = rewards(kind, x, a)
            rw.append(r[0])
            rl.append(r[1])
        print('{"%s", {%s}, {%s}, {%s}, {%s}, {%s}},' % (
            kind, ", ".join(map(fmt, vals)), ", ".join(map(fmt, gw)), ", ".join(map(fmt, gl)),
            ", ".join(map(fmt, rw)), ", ".join(map(fmt, rl))))

    print("\n// mpo_pg: A from the win rates for example A (no p), from p for example B")
    a = PARAMS["mpo_pg"]
    for name, x, t in (("A", EXAMPLES[0], targets(qw=EXAMPLES[0]["qw"], ql=EXAMPLES[0]["ql"])),
                       ("B", EXAMPLES[1], targets(p=EXAMPLES[1]["p"]))):
        value, grads = mpo_pg(x, a, t["adv"])
        print("%s: adv {%s, %s} loss %s grad_chosen {%s} grad_rejected {%s}" % (
            name, fmt(t["adv"][0]), fmt(t["adv"][1]), fmt(value),
            ", ".join(map(fmt, grads[0])), ", ".join(map(fmt, grads[1]))))

    print("\n// targets(p, q_w, q_l): p, win_chosen, win_rejected, adv_chosen, adv_rejected")
    for args in (dict(qw=0.9, ql=0.8), dict(p=0.7, qw=0.9, ql=0.8), dict(p=0.7), dict(),
                 dict(qw=0.2, ql=0.6)):
        t = targets(**args)
        print("%s -> {%s, %s, %s, %s, %s}" % (args, fmt(t["p"]), fmt(t["win"][0]),
                                              fmt(t["win"][1]), fmt(t["adv"][0]),
                                              fmt(t["adv"][1])))


if __name__ == "__main__":
    main()
