#!/usr/bin/env python3
"""Submits a job spec file to Spar's orchestrator and watches it until it ends.

    python3 clients/python/spar_client.py generate /tmp/spar-py       # once: the gRPC stubs
    PYTHONPATH=/tmp/spar-py:clients/python \
      python3 clients/python/examples/submit_and_watch.py deploy/examples/dno-arith.json \
      --addr=127.0.0.1:50051 [--request_id=ID] [--timeout=3600]

Prints one line per stage event and a table row per finished round; exits 0 when the job
succeeds, 1 when it fails or is cancelled, 3 when the orchestrator is unreachable.
"""

import argparse
import sys

import grpc

import spar_client


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="job spec JSON file (a JobSpec, e.g. deploy/examples/dno-arith.json)")
    ap.add_argument("--addr", default=None, help="orchestrator address (default $SPAR_ADDR or 127.0.0.1:50051)")
    ap.add_argument("--request_id", default="", help="idempotency key: the same id returns the same job")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds to watch before giving up")
    args = ap.parse_args()

    try:
        with spar_client.Client(args.addr) as client:
            job = client.submit_file(args.spec, request_id=args.request_id)
            print("job", job.job_id, flush=True)
            for ev in client.watch(job.job_id, timeout=args.timeout):
                if ev.kind == "stage_finished":
                    where = "base" if ev.round == 0 else "round %d/%d" % (ev.round, job.spec.rounds)
                    print("  %-11s %-6s done  %s" % (where, ev.stage, ev.message), flush=True)
                elif ev.kind == "round_finished":
                    r = ev.job.rounds[-1] if ev.job.rounds else None
                    if r is not None:
                        print("  round %d: pairs %d  loss %.4f  reward acc %.3f  win vs pi0 %.3f  greedy acc %.3f"
                              % (r.round, r.pairs_kept, r.train_loss, r.reward_accuracy, r.win_rate_vs_base,
                                 r.greedy_accuracy), flush=True)
            final = client.get(job.job_id)
    except grpc.RpcError as e:
        print("spar: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 3 if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else 2
    state = spar_client.state_name(final.state)
    print("job %s %s" % (final.job_id, state) + (": " + final.error if final.error else ""))
    return 0 if state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
