"""Spar's Python client: a thin wrapper over the gRPC stubs generated from proto/spar/v1.

The stubs are generated, not committed. Generate them once (Debian 12: protobuf-compiler,
protobuf-compiler-grpc for grpc_python_plugin, python3-grpcio, python3-protobuf):

    python3 clients/python/spar_client.py generate OUT_DIR     # or: see generate() below
    export PYTHONPATH=OUT_DIR:clients/python

Then:

    import spar_client
    client = spar_client.Client("127.0.0.1:50051")
    job = client.submit_file("deploy/examples/dno-arith.json", request_id="my-run-1")
    for event in client.watch(job.job_id):
        print(event.kind, event.round, event.stage, event.done, event.total)
    print(spar_client.state_name(client.get(job.job_id).state))
"""

import os
import shutil
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_PROTO_ROOT = os.path.normpath(os.path.join(_HERE, "..", "..", "proto"))
_PROTOS = ["spar/v1/sampler.proto", "spar/v1/trainer.proto", "spar/v1/oracle.proto",
           "spar/v1/orchestrator.proto"]


def generate(out_dir, proto_root=_PROTO_ROOT, protoc="protoc", plugin=None):
    """Runs protoc + grpc_python_plugin on proto/spar/v1/*.proto into out_dir (spar/v1/*_pb2.py,
    *_pb2_grpc.py). Returns out_dir."""
    plugin = plugin or shutil.which("grpc_python_plugin")
    if not plugin:
        raise RuntimeError("grpc_python_plugin not found (Debian: apt-get install protobuf-compiler-grpc)")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run([protoc, "-I" + proto_root, "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
                    "--plugin=protoc-gen-grpc_python=" + plugin] + _PROTOS, check=True)
    for d in ("spar", os.path.join("spar", "v1")):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    return out_dir


def _stubs():
    try:
        from spar.v1 import orchestrator_pb2, orchestrator_pb2_grpc  # noqa: F401
    except ImportError as e:
        raise ImportError("generated Spar stubs not on sys.path; run spar_client.generate(DIR) and add "
                          "DIR to PYTHONPATH (%s)" % e) from e
    return orchestrator_pb2, orchestrator_pb2_grpc


def state_name(state):
    """JOB_STATE_SUCCEEDED -> "succeeded"."""
    pb2, _ = _stubs()
    return pb2.JobState.Name(state).replace("JOB_STATE_", "").lower()


TERMINAL = ("succeeded", "failed", "cancelled")


class Client:
    """The Orchestrator service. Every unary call has a deadline (seconds); errors are grpc.RpcError
    with the server's status code (INVALID_ARGUMENT names the bad spec field). When the
    orchestrator requires a bearer token, pass `token` or set SPAR_API_TOKEN (as for `spar`)."""

    def __init__(self, address=None, timeout=30.0, token=None):
        import grpc
        self._pb2, pb2_grpc = _stubs()
        self.address = address or os.environ.get("SPAR_ADDR", "127.0.0.1:50051")
        self.timeout = timeout
        token = token if token is not None else os.environ.get("SPAR_API_TOKEN", "")
        self._md = [("authorization", "Bearer " + token)] if token else None
        self._channel = grpc.insecure_channel(self.address, options=[
            ("grpc.max_receive_message_length", 64 << 20)])
        self._stub = pb2_grpc.OrchestratorStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def parse_spec(self, text):
        """A JobSpec from its JSON (the proto JSON mapping; unknown fields are errors, as in
        `spar submit`)."""
        from google.protobuf import json_format
        return json_format.Parse(text, self._pb2.JobSpec(), ignore_unknown_fields=False)

    def submit(self, spec, request_id=""):
        """CreateJob. The same request_id returns the same job (safe to retry)."""
        req = self._pb2.CreateJobRequest(spec=spec, request_id=request_id)
        return self._stub.CreateJob(req, timeout=self.timeout, metadata=self._md)

    def submit_file(self, path, request_id=""):
        with open(path) as f:
            return self.submit(self.parse_spec(f.read()), request_id=request_id)

    def get(self, job_id):
        return self._stub.GetJob(self._pb2.GetJobRequest(job_id=job_id), timeout=self.timeout, metadata=self._md)

    def list(self, state=None):
        req = self._pb2.ListJobsRequest()
        if state:
            req.state = self._pb2.JobState.Value("JOB_STATE_" + state.upper())
        jobs = []
        while True:  # every page (the server sends at most 500 jobs per page)
            resp = self._stub.ListJobs(req, timeout=self.timeout, metadata=self._md)
            jobs.extend(resp.jobs)
            if not resp.next_page_token:
                return jobs
            req.page_token = resp.next_page_token

    def delete(self, job_id):
        """Removes an ended job and its run directory (FAILED_PRECONDITION while it runs)."""
        self._stub.DeleteJob(self._pb2.DeleteJobRequest(job_id=job_id), timeout=self.timeout, metadata=self._md)

    def cancel(self, job_id):
        return self._stub.CancelJob(self._pb2.CancelJobRequest(job_id=job_id), timeout=self.timeout, metadata=self._md)

    def resume(self, job_id, **judge_budget):
        """Resumes a job. Keyword arguments (max_calls, max_tokens, max_cost_usd, round_max_calls,
        round_max_tokens, round_max_cost_usd) replace those limits of its spec's judge_budget."""
        req = self._pb2.ResumeJobRequest(job_id=job_id)
        for field, value in judge_budget.items():
            setattr(req.judge_budget, field, value)
        return self._stub.ResumeJob(req, timeout=self.timeout, metadata=self._md)

    def watch(self, job_id, timeout=None):
        """Yields JobEvents until the job ends (the stream closes) or `timeout` seconds pass."""
        return self._stub.WatchJob(self._pb2.WatchJobRequest(job_id=job_id), timeout=timeout, metadata=self._md)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        print(generate(sys.argv[2]))
    else:
        print("usage: spar_client.py generate OUT_DIR", file=sys.stderr)
        sys.exit(2)
