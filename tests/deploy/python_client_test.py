#!/usr/bin/python3
"""The Python client against `spar up`: generates the stubs from proto/spar/v1 with protoc +
grpc_python_plugin into WORK_DIR/gen, starts spar-judge and `spar up` on loopback (port 0), and
runs the documented example clients/python/examples/submit_and_watch.py on
deploy/examples/dno-arith.json as written (Debian's python3-grpcio / python3-protobuf). Also:
the same request id returns the same job, and a bad spec is INVALID_ARGUMENT naming the field.

usage: python_client_test.py BIN_DIR REPO_DIR WORK_DIR CACHE_DIR
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_common import Procs, data_root_with_model, fail, fresh_dir, start_judge, start_spar  # noqa: E402

bin_dir, repo, work, cache = sys.argv[1:5]
repo = os.path.abspath(repo)
spar_bin = os.path.join(bin_dir, "spar")
work = fresh_dir(work)
t0 = time.monotonic()

client_dir = os.path.join(repo, "clients", "python")
gen = os.path.join(work, "gen")
r = subprocess.run([sys.executable, os.path.join(client_dir, "spar_client.py"), "generate", gen],
                   capture_output=True, text=True, timeout=120)
if r.returncode != 0:
    fail("stub generation: %s %s" % (r.stdout, r.stderr))
env = dict(os.environ, PYTHONPATH=os.pathsep.join([gen, client_dir]))
env.pop("SPAR_ADDR", None)

data = data_root_with_model(spar_bin, cache, work)
procs = Procs(work)
try:
    _, judge_url = start_judge(procs, os.path.join(bin_dir, "spar-judge"))
    _, addr, _ = start_spar(procs, "spar-up", spar_bin, [
        "up", "--port=0", "--metrics_port=0", "--judge_url=" + judge_url,
        "--runs_dir=" + os.path.join(work, "runs"), "--data_root=" + data])

    example = os.path.join(client_dir, "examples", "submit_and_watch.py")
    spec = os.path.join(repo, "deploy", "examples", "dno-arith.json")
    r = subprocess.run([sys.executable, example, spec, "--addr=" + addr, "--request_id=py-1"],
                       env=env, capture_output=True, text=True, timeout=600)
    print(r.stdout)
    if r.returncode != 0:
        fail("submit_and_watch.py exited %d: %s" % (r.returncode, r.stderr))
    lines = r.stdout.splitlines()
    job_id = lines[0].split()[1]
    if not lines[-1].startswith("job %s succeeded" % job_id):
        fail("last line: %s" % lines[-1])
    rounds = [l for l in lines if l.strip().startswith("round ") and ": pairs " in l]
    if len(rounds) != 3:
        fail("expected 3 round rows, got %d" % len(rounds))

    # The library directly: idempotent submit, list, status, and a bad spec.
    code = r'''
import sys, grpc, spar_client
c = spar_client.Client(sys.argv[1])
again = c.submit_file(sys.argv[2], request_id="py-1")
assert again.job_id == sys.argv[3], (again.job_id, sys.argv[3])
assert spar_client.state_name(c.get(sys.argv[3]).state) == "succeeded"
assert sys.argv[3] in [j.job_id for j in c.list(state="succeeded")]
assert len(c.get(sys.argv[3]).rounds) == 3
try:
    c.submit(c.parse_spec('{"base_model": "models/arith-base", "sampling": {"num_samples": 1}}'))
    raise SystemExit("bad spec accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    assert "sampling.num_samples" in e.details(), e.details()
print("library: ok")
'''
    r = subprocess.run([sys.executable, "-c", code, addr, spec, job_id], env=env,
                       capture_output=True, text=True, timeout=60)
    print(r.stdout, r.stderr)
    if r.returncode != 0:
        fail("library checks failed")
    print("python client: ok in %.1fs" % (time.monotonic() - t0))
except SystemExit:
    procs.dump_logs()
    raise
finally:
    procs.stop_all()
