#!/usr/bin/env python3
"""Copies the Panther corpus into tests/corpus/panther/ and writes the
expectations the coverage test (tests/it/corpus.rs) holds the default rules to.

  plain.jsonl            the `k8s-audit` records (audit.k8s.io Events), verbatim
  managed-pending.jsonl  the GKE LogEntry and AKS records, verbatim; awaiting the
                         managed-shapes decoder (DESIGN 1.1), not scored
  expected.json          per plain record: how it is scored and the rules that fire

Run after a change to the default rules (it runs the built saker on every plain
event, repaired as the corpus README says), then read the diff of expected.json:
every negative that fires and every positive that does not needs a reason in
REASONS below, or the script stops.

Usage: python3 scripts/panther_corpus.py /path/to/panther-k8s-tests.jsonl [target/debug/saker]
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "corpus", "panther")

# Panther positives that one audit event alone cannot show.
WINDOWED = {"forbidden-burst", "secret-access-denied", "secret-enumeration"}
LOOKUP = {"ioc-tor-ip", "system-principal-public-ip"}

# Why a negative fires a default rule, or a scored positive does not, keyed by
# (category, case). Each was looked at and kept on purpose.
REASONS = {
    ("cluster-admin-binding", "ClusterRoleBinding to non-privileged role"):
        "Pod Log Access Granted In Kube-System rightly fires: view grants get on pods/log, and a ClusterRoleBinding grants it in kube-system too, where the API server's logs (the audit trail, when it logs to stdout) are",
    ("admission-webhook", "Webhook Update (Not Create)"):
        "Admission Webhook Changed covers every change: an update can redirect or disable a webhook as well as a create",
    ("cluster-admin-binding", "RoleBinding (not ClusterRoleBinding)"):
        "a RoleBinding to cluster-admin gives full control of its namespace; Panther's rule only looks at ClusterRoleBindings",
    ("ingress-no-tls", "System namespace (excluded)"):
        "an Ingress without TLS created by a person is clear text in kube-system too",
    ("kubectl-cp", "EKS kubectl cp TO pod (not exfiltration)"):
        "Exec Into Pod fires on every exec; Panther's rule is about tar in the command only",
    ("kubectl-cp", "EKS regular tar archive creation"):
        "Exec Into Pod fires on every exec",
    ("kubectl-cp", "EKS regular exec without tar"):
        "Exec Into Pod fires on every exec",
    ("kubectl-cp", "EKS system namespace (excluded)"):
        "an exec by a kube-system service account: no controller execs, so a stolen token is the likely user",
    ("kubectl-cp", "EKS failed request (excluded)"):
        "a denied exec is an attempt worth seeing (the rule's own tests pin it)",
    ("role-node-proxy", "Role with pod permissions (not nodes)"):
        "the role grants create/delete on pods: Role Grants Write On Sensitive Resources",
    ("role-node-proxy", "Updating existing role (not creating)"):
        "an update can add nodes/proxy as well as a create; the audit event has no old object to tell",
    ("role-pod-exec", "Updating existing role (not creating)"):
        "an update can add pods/exec as well as a create",
    ("role-wildcard", "Updating existing role (not creating)"):
        "an update can add a wildcard as well as a create",
    ("role-write-permissions", "Updating existing role (not creating)"):
        "an update can add write verbs as well as a create",
    ("sa-token-theft", "Regular exec without token access"):
        "Exec Into Pod fires on every exec",
    ("sa-token-theft", "System principal in system namespace (excluded)"):
        "an exec by kube-proxy's service account: kube-proxy never execs",
    ("sa-token-theft", "Failed exec (excluded)"):
        "a denied exec is an attempt worth seeing",
    ("system-principal-public-ip", "system:anonymous from Public IP (Excluded - Not a Real Principal)"):
        "a denied anonymous PROPFIND is a scanner: Anonymous Request Denied (INFO)",
    ("system-role-modified", "System:coredns modified (excluded - expected)"):
        "a person changed a system: ClusterRole; EKS's own updates come from eks:addon-manager, a system identity",
}


def fix_time(t):
    if isinstance(t, str) and re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t):
        return t.replace(" ", "T") + "Z"
    return t


def repair(e, n):
    """The corpus README's repair; tests/it/corpus.rs does the same."""
    e = dict(e)
    e.setdefault("kind", "Event")
    e.setdefault("apiVersion", "audit.k8s.io/v1")
    code = (e.get("responseStatus") or {}).get("code")
    e.setdefault("stage", "ResponseStarted" if code == 101 else "ResponseComplete")
    e.setdefault("auditID", "panther-%d" % n)
    for k in ("stageTimestamp", "requestReceivedTimestamp"):
        if k in e:
            e[k] = fix_time(e[k])
    rfc = lambda t: isinstance(t, str) and re.match(r"^\d{4}-\d\d-\d\dT", t)
    if not rfc(e.get("stageTimestamp")) and not rfc(e.get("requestReceivedTimestamp")):
        e["stageTimestamp"] = fix_time(e.get("p_event_time") or "2022-11-29 00:09:04.38")
    return e


def scored(r):
    """How a record is scored: every negative must stay quiet (or have a
    reason); positives are scored unless they need a count or a look-up."""
    if not r["expected"]:
        return "negative"
    if r["category"] in LOOKUP:
        return "lookup"
    if (r["category"] in WINDOWED or (r.get("threshold") or 0) > 1):
        return "windowed"
    return "positive"


def main():
    corpus = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target", "debug", "saker")
    lines = open(corpus).read().splitlines()
    plain, pending, expected = [], [], []
    for line in lines:
        r = json.loads(line)
        if r["format"] in ("gke-logentry", "aks"):
            pending.append(line)
        elif r["format"] == "k8s-audit":
            plain.append(line)
    for n, line in enumerate(plain):
        r = json.loads(line)
        ev = json.dumps(repair(r["event"], n), separators=(",", ":"))
        out = subprocess.run([binary, "run", "--rule-matching", "all"], input=ev.encode(),
                             capture_output=True, check=True)
        fires = sorted({json.loads(l)["rule"] for l in out.stdout.decode().splitlines() if l.strip()})
        cls = scored(r)
        x = {"case": r["case"], "category": r["category"], "panther": r["expected"], "scored": cls, "fires": fires}
        odd = (cls == "negative" and fires) or (cls == "positive" and not fires)
        reason = REASONS.get((r["category"], r["case"]))
        if odd and not reason:
            sys.exit("no reason for %s / %s firing %s" % (r["category"], r["case"], fires))
        if reason and (odd or cls in ("windowed", "lookup")):
            x["reason"] = reason
        expected.append(x)
    with open(os.path.join(OUT, "plain.jsonl"), "w") as f:
        f.write("\n".join(plain) + "\n")
    with open(os.path.join(OUT, "managed-pending.jsonl"), "w") as f:
        f.write("\n".join(pending) + "\n")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(x) for x in expected) + "\n]\n")
    pos = [x for x in expected if x["scored"] == "positive"]
    neg = [x for x in expected if x["scored"] == "negative"]
    print("plain: positives fired %d/%d, negatives quiet %d/%d; %d managed-shape records pending" % (
        sum(1 for x in pos if x["fires"]), len(pos), sum(1 for x in neg if not x["fires"]), len(neg), len(pending)))


if __name__ == "__main__":
    main()
