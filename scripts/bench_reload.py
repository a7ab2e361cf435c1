#!/usr/bin/env python3
"""What a reload costs a running `saker run` holding a large window state.

Writes KEYS events stamped now, each with its own audit ID, to a file that
`saker run --follow` reads with one windowed rule keyed by audit ID over a
day (every key stays live) next to a per-event rule. Once every event is
counted, it reloads ROUNDS times, alternating:

- "unchanged": SIGHUP with the same rules; the windowed rule keeps its state
  (moved to the new set);
- "edited": the per-event rule's output edited in place; the windowed rule
  still keeps its state (a file change is noticed by polling, so `seconds`
  includes up to two poll intervals);
- "changed": the windowed rule's threshold edited; its state is finished and
  let go, then it starts fresh (and the next round builds it again by
  appending KEYS new events).

For each round it prints the log line's load_seconds, apply_seconds (the time
events wait) and seconds, and the process's resident memory before and after
(from /proc). Usage:

    cargo build --release
    python3 scripts/bench_reload.py [--keys 200000] [--rounds 3] [--also-rules rules/]
"""

import argparse
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

WINDOWED = """- rule: Keys
  desc: one key per audit ID, a day's window, never fires
  condition: ka.auditid exists
  aggregate: count >= {threshold} over 24h by ka.auditid
  output: "%ka.auditid seen %agg.value times"
  priority: INFO
  source: k8s_audit
"""

PER_EVENT = """- rule: Exec
  desc: exec
  condition: ka.target.subresource = exec
  output: "{output} %ka.target.name"
  priority: NOTICE
  source: k8s_audit
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(n):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": f"bench-{n:09d}",
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/shop/pods",
            "verb": "list",
            "user": {"username": "bench"},
            "objectRef": {"resource": "pods", "namespace": "shop", "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "stageTimestamp": stamp,
        },
        separators=(",", ":"),
    )


def append(path, start, count):
    with open(path, "a") as f:
        for n in range(start, start + count):
            f.write(event(n) + "\n")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(what, check, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default="target/release/saker")
    ap.add_argument("--also-rules", action="append", default=[], metavar="PATH",
                    help="more rule files or directories to load (and reload) before the bench's own, e.g. rules/")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="saker-bench-reload-")
    audit = os.path.join(work, "audit.log")
    rules = os.path.join(work, "rules.yaml")
    log = os.path.join(work, "saker.log")
    threshold = 1_000_000_000
    output = "exec into"

    def write_rules():
        tmp = rules + ".tmp"
        with open(tmp, "w") as f:
            f.write(WINDOWED.format(threshold=threshold) + PER_EVENT.format(output=output))
        os.replace(tmp, rules)

    write_rules()
    open(audit, "w").close()
    port = free_port()
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [args.binary, "run", "--follow", "--input", audit]
            + [a for p in args.also_rules for a in ("--rules", p)]
            + ["--rules", rules,
             "--metrics-listen", f"127.0.0.1:{port}", "--max-keys", str(4 * args.keys),
             "--log-format", "json", "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=logf,
        )
    try:
        wait_for("the metrics listener", lambda: _up(port))
        events = 0
        print(f"{'round':>5} {'kind':<10} {'keys':>8} {'load_s':>9} {'apply_s':>9} {'seconds':>9} {'rss_before_kb':>14} {'rss_after_kb':>13}")
        seen_lines = 0
        for rnd in range(1, args.rounds * 3 + 1):
            kind = ["unchanged", "edited", "changed"][(rnd - 1) % 3]
            keys = metric(port, "saker_window_keys")
            if keys < args.keys:
                append(audit, events, args.keys)
                events += args.keys
                wait_for("the events", lambda: metric(port, "saker_events_total") >= events)
                wait_for("the keys", lambda: metric(port, "saker_window_keys") >= args.keys)
                keys = metric(port, "saker_window_keys")
            before = rss_kb(proc.pid)
            reloads = metric(port, "saker_reloads_total")
            if kind == "unchanged":
                proc.send_signal(signal.SIGHUP)
            elif kind == "edited":
                output = "exec into pod" if output == "exec into" else "exec into"
                write_rules()
            else:
                threshold -= 1
                write_rules()
            wait_for("the reload", lambda: metric(port, "saker_reloads_total") > reloads)
            wait_for("the log line", lambda: len(_reload_lines(log)) > seen_lines, timeout=30)
            lines = _reload_lines(log)
            line = lines[-1]
            seen_lines = len(lines)
            after = rss_kb(proc.pid)
            print(f"{rnd:>5} {kind:<10} {int(keys):>8} {line.get('load_seconds', '?'):>9} "
                  f"{line.get('apply_seconds', '?'):>9} {line.get('seconds', '?'):>9} {before:>14} {after:>13}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        subprocess.run(["rm", "-rf", work])


def _up(port):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
        return True
    except OSError:
        return False


def _reload_lines(log):
    out = []
    with open(log) as f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            fields = rec.get("fields", rec)
            if fields.get("message") == "rules reloaded" or rec.get("message") == "rules reloaded":
                merged = dict(rec)
                merged.update(fields)
                out.append(merged)
    return out


if __name__ == "__main__":
    main()
