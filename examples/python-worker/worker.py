#!/usr/bin/env python3
"""A jobd external worker in plain Python (standard library only).

It pulls jobs of one queue from jobd's HTTP API, runs them, and reports back:

    claim     POST /api/queues/{queue}/claim   {worker, leaseMs, wait}  -> 200 {job, token} | 204
    heartbeat POST /api/jobs/{id}/heartbeat    {token}                  (a thread, every lease/3)
    progress  POST /api/jobs/{id}/progress     {token, percent, message}
    complete  POST /api/jobs/{id}/complete     {token, result, logTail}
    fail      POST /api/jobs/{id}/fail         {token, error: {name, message}, retryable}

Every write names the lease token. When jobd answers 409 the lease is gone (it expired and the job
was rescued, or it was cancelled): the worker drops the job and writes nothing more for it.

    JOBD_TOKEN=<worker token> python3 worker.py --url http://127.0.0.1:19000 --queue squares

The example job: params {"n": 7, "steps": 5, "stepMs": 200} -> result {"square": 49}, reporting
progress after each step. Replace run_job() with real work.
"""

import argparse
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request


class LeaseLost(Exception):
    """jobd refused a write: this worker no longer holds the job."""


class Api:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def post(self, path, body, timeout=30):
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                text = res.read().decode()
                return res.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as err:
            problem = json.loads(err.read().decode() or "{}")
            if err.code == 409:
                raise LeaseLost(problem.get("detail", "lease lost")) from None
            raise RuntimeError(f"{err.code} {problem.get('detail', err.reason)}") from None


def say(event, **fields):
    """One JSON line per event on stdout, for people and for tests."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Lease:
    """Renews a job's lease in the background until stopped or lost."""

    def __init__(self, api, job_id, token, lease_ms):
        self.api, self.job_id, self.token = api, job_id, token
        self.lost = None
        self._stop = threading.Event()
        self._every = lease_ms / 3000.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._every):
            try:
                self.api.post(f"/api/jobs/{self.job_id}/heartbeat", {"token": self.token})
            except LeaseLost as err:
                self.lost = str(err)
                return
            except Exception as err:  # a network blip: try again next round
                say("heartbeat-error", jobId=self.job_id, error=str(err))

    def stop(self):
        self._stop.set()
        self._thread.join()


def run_job(job, progress):
    """The work itself: square params.n in `steps` steps of `stepMs` each."""
    params = job.get("params") or {}
    n = params.get("n", 0)
    steps = int(params.get("steps", 3))
    for i in range(steps):
        time.sleep(params.get("stepMs", 200) / 1000.0)
        progress(100.0 * (i + 1) / steps, f"step {i + 1} of {steps}")
    if params.get("fail"):
        raise ValueError(f"asked to fail (n={n})")
    return {"square": n * n}


def work_one(api, args):
    status, body = api.post(
        f"/api/queues/{args.queue}/claim",
        {"worker": args.worker, "leaseMs": args.lease_ms, "wait": args.wait},
        timeout=args.wait + 30,
    )
    if status == 204:
        return False
    job, token = body["job"], body["token"]
    job_id = job["_id"]
    say("claimed", jobId=job_id, token=token, attempt=job["attempts"])
    lease = Lease(api, job_id, token, args.lease_ms)
    log = []

    def progress(percent, message):
        if lease.lost:
            raise LeaseLost(lease.lost)
        api.post(f"/api/jobs/{job_id}/progress", {"token": token, "percent": percent, "message": message})
        log.append(message)
        say("progress", jobId=job_id, percent=percent)

    try:
        try:
            result = run_job(job, progress)
        except LeaseLost:
            raise
        except Exception as err:
            lease.stop()
            api.post(
                f"/api/jobs/{job_id}/fail",
                {
                    "token": token,
                    "error": {"name": type(err).__name__, "message": str(err)},
                    "retryable": not isinstance(err, ValueError),
                    "logTail": "\n".join(log),
                },
            )
            say("failed", jobId=job_id, error=str(err))
            return True
        lease.stop()
        api.post(f"/api/jobs/{job_id}/complete", {"token": token, "result": result, "logTail": "\n".join(log)})
        say("completed", jobId=job_id, result=result)
    except LeaseLost as err:
        lease.stop()
        say("lease-lost", jobId=job_id, detail=str(err))
    return True


def main():
    p = argparse.ArgumentParser(description="A jobd external worker (HTTP pull API).")
    p.add_argument("--url", default=os.environ.get("JOBD_URL", "http://127.0.0.1:19000"))
    p.add_argument("--queue", required=True)
    p.add_argument("--worker", default=f"{socket.gethostname()}-py-{os.getpid()}")
    p.add_argument("--lease-ms", type=int, default=30000)
    p.add_argument("--wait", type=float, default=20, help="seconds a claim waits for a job (long poll)")
    p.add_argument("--max-jobs", type=int, default=0, help="stop after this many jobs (0: run until killed)")
    args = p.parse_args()
    # The token comes from the environment, never the command line (which other users can read).
    api = Api(args.url, os.environ.get("JOBD_TOKEN"))
    done = 0
    say("started", worker=args.worker, queue=args.queue)
    while args.max_jobs == 0 or done < args.max_jobs:
        try:
            if work_one(api, args):
                done += 1
        except (urllib.error.URLError, RuntimeError, OSError) as err:
            say("error", error=str(err))
            time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
