#!/usr/bin/env python3
"""Builds examples/audit-sample.jsonl: background traffic plus the events of
the shipped rules' firing tests, interleaved in time order, with klog lines
as `kubectl logs` shows them.

Background events come from a realistic generator (one JSON event per line,
such as the team's gen_events.py); any of them that a shipped rule flags is
dropped, so the sample's alerts are exactly the planted attacks.

Usage: python3 scripts/make_sample.py BACKGROUND.jsonl [SAKER]
"""
import json
import random
import subprocess
import sys

import yaml  # PyYAML, only needed to rebuild the sample


def main():
    background_path = sys.argv[1]
    saker = sys.argv[2] if len(sys.argv) > 2 else "target/release/saker"
    random.seed(7)
    background = [l for l in open(background_path).read().splitlines() if l.strip()]
    alerting = subprocess.run([saker, "run", "--rule-matching", "all", "--no-summary", "--input", background_path],
                              capture_output=True, text=True, check=True).stdout
    # Drop background events that alert, matched by their event time.
    flagged = {json.loads(a)["time"][:26] for a in alerting.splitlines()}
    background = [l for l in background if json.loads(l)["stageTimestamp"][:26] not in flagged]

    tests = yaml.safe_load(open("rules/tests/k8s_audit_test.yaml"))
    attacks = [e for case in tests["tests"] if case["expect"] and "Noise" not in case["name"]
               for e in case["events"] if isinstance(e, dict)]
    positions = sorted(random.sample(range(len(background)), len(attacks)))
    klog = ["I1029 12:22:15.861424       1 controller.go:615] quota admission added evaluator for: leases.coordination.k8s.io",
            "W1029 12:22:16.001234       1 dispatcher.go:205] Failed calling webhook, failing open gatekeeper.sh",
            "E1029 12:22:17.123456       1 status.go:71] apiserver received an error that is not an metav1.Status"]
    out, ai = [], 0
    for i, line in enumerate(background):
        while ai < len(attacks) and positions[ai] == i:
            neighbour = json.loads(line)
            a = dict(attacks[ai])
            a["requestReceivedTimestamp"] = neighbour["requestReceivedTimestamp"]
            a["stageTimestamp"] = neighbour["stageTimestamp"]
            text = json.dumps(a, separators=(",", ":"))
            out.append(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))
            ai += 1
        out.append(line)
        if i % 97 == 13:
            out.append(klog[i % 3])
    with open("examples/audit-sample.jsonl", "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote %d lines (%d planted attack events)" % (len(out), len(attacks)))


if __name__ == "__main__":
    main()
