#!/usr/bin/env python3
"""Alert latency on a live stream: from an event written to `saker run`'s
stdin to its alert read from its stdout.

Feeds `saker run` (the embedded default rules, JSON output) a steady stream
of RATE events/s for SECONDS, through a pipe as `kubectl logs -f` would. Every
EVERY-th event is an exec into a pod named after its number (the "Exec Into
Pod" rule alerts on it at once); the others are background events that match
no per-event rule (reads by a controller). The event times are the wall clock,
so windows and sequences run as they would live. For each exec it records when
the line was written and when its alert line arrived, and prints the count and
the 50th, 90th, 99th percentiles and the maximum, in milliseconds. The figure
includes the pipe in both directions and this script's own scheduling, so it is
an upper bound of what Saker adds. Usage:

    cargo build --release
    python3 scripts/bench_latency.py [--rate 2000] [--seconds 30] [--every 20] [--threads 1]
"""

import argparse
import datetime
import json
import subprocess
import sys
import threading
import time

EXEC = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "stage": "ResponseStarted",
    "verb": "get",
    "user": {"username": "alice@example.com", "groups": ["devs", "system:authenticated"]},
    "sourceIPs": ["10.0.12.11"],
    "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/39683505",
    "responseStatus": {"metadata": {}, "code": 101},
    "annotations": {"authorization.k8s.io/decision": "allow"},
}

BACKGROUND = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "stage": "ResponseComplete",
    "verb": "get",
    "user": {
        "username": "system:serviceaccount:kube-system:replicaset-controller",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    },
    "sourceIPs": ["10.0.0.2"],
    "userAgent": "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/39683505",
    "responseStatus": {"metadata": {}, "code": 200},
    "annotations": {"authorization.k8s.io/decision": "allow"},
}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(template, audit_id, uri, object_ref):
    """A copy of `template` with its own ID, target and the time now."""
    ev = dict(template)
    ev["auditID"] = audit_id
    ev["requestURI"] = uri
    ev["objectRef"] = object_ref
    t = now_rfc3339()
    ev["requestReceivedTimestamp"] = t
    ev["stageTimestamp"] = t
    return json.dumps(ev, separators=(",", ":"))


def exec_event(n):
    name = f"lat-{n}"
    return event(
        EXEC,
        f"00000000-0000-4000-8000-{n:012d}",
        f"/api/v1/namespaces/shop/pods/{name}/exec?command=sh&container=app",
        {"resource": "pods", "namespace": "shop", "name": name, "apiVersion": "v1",
         "subresource": "exec"},
    )


def background_event(n):
    name = f"web-{n % 50}"
    return event(
        BACKGROUND,
        f"10000000-0000-4000-8000-{n:012d}",
        f"/apis/apps/v1/namespaces/shop/replicasets/{name}",
        {"resource": "replicasets", "namespace": "shop", "name": name, "apiGroup": "apps",
         "apiVersion": "v1"},
    )


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/release/saker")
    ap.add_argument("--rate", type=int, default=2000, help="events per second")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--every", type=int, default=20, help="one exec every N events")
    ap.add_argument("--threads", type=int, default=1, help="saker run --threads")
    args = ap.parse_args()
    # The reader thread must get the interpreter as soon as an alert arrives,
    # not after the writer's default 5 ms slice.
    sys.setswitchinterval(0.0001)

    proc = subprocess.Popen(
        [args.binary, "run", "--no-summary", "--threads", str(args.threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
    )
    sent = {}
    received = {}
    other_alerts = [0]

    def read_alerts():
        for line in proc.stdout:
            t = time.perf_counter()
            try:
                alert = json.loads(line)
            except ValueError:
                continue
            name = alert.get("output_fields", {}).get("ka.target.name", "")
            if alert.get("rule") == "Exec Into Pod" and name.startswith("lat-"):
                received.setdefault(int(name[4:]), t)
            else:
                other_alerts[0] += 1

    reader = threading.Thread(target=read_alerts, daemon=True)
    reader.start()
    # Let the process load its rules before the clock starts.
    time.sleep(1.0)
    total = int(args.rate * args.seconds)
    start = time.perf_counter()
    for n in range(total):
        due = start + n / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if n % args.every == 0:
            line = exec_event(n)
            proc.stdin.write(line.encode() + b"\n")
            sent[n] = time.perf_counter()
        else:
            proc.stdin.write(background_event(n).encode() + b"\n")
    elapsed = time.perf_counter() - start
    # Wait for the last alerts, then end the stream.
    deadline = time.perf_counter() + 10
    while len(received) < len(sent) and time.perf_counter() < deadline:
        time.sleep(0.05)
    proc.stdin.close()
    proc.wait(timeout=30)
    reader.join(timeout=5)

    latencies = sorted((received[n] - sent[n]) * 1000 for n in sent if n in received)
    print(
        f"{total} events in {elapsed:.1f} s ({total / elapsed:.0f}/s), "
        f"{len(sent)} execs, {len(latencies)} of their alerts read, "
        f"{other_alerts[0]} other alerts"
    )
    print(
        "latency ms: p50 {:.2f}  p90 {:.2f}  p99 {:.2f}  max {:.2f}".format(
            percentile(latencies, 0.50),
            percentile(latencies, 0.90),
            percentile(latencies, 0.99),
            latencies[-1] if latencies else float("nan"),
        )
    )
    return 0 if len(latencies) == len(sent) else 1


if __name__ == "__main__":
    sys.exit(main())
