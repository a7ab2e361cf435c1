#!/usr/bin/env python3
"""Tests the Kubernetes manifests in deploy/ (DESIGN 7).

Each base (deploy/kafka, deploy/webhook, deploy/node) is built alone with
`kubectl kustomize`, and what it builds is
- validated, strictly (unknown fields are errors), against the schemas of every
  Kubernetes version that kubernetes-validate bundles (it needs no network);
- checked for the properties the deployment promises: non-root, read-only root
  filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp,
  resources, probes on /healthz and /readyz of the metrics listener, Prometheus
  scrape annotations, the config from a ConfigMap mounted as a directory (no
  subPath) and named by --config, a NetworkPolicy in front of the metrics port,
  and what each way of running needs (the Kafka StatefulSet's static member id,
  the webhook's replicas, Service, Secret, PodDisruptionBudget and kubeconfig, the
  DaemonSet's control-plane placement and host directories).
- Its saker.yaml is held to `saker run --help`: every key is a long flag of run
  (or one DESIGN 5 defines that is still being built, listed in PENDING_FLAGS),
  and its rules, resolved to the repository's files (the image's copies and the
  ConfigMap's keys), load and give the same alerts on examples/audit-sample.jsonl
  as the embedded defaults. The webhook's is run as it is, with `saker run
  --config` (its paths moved to a temporary directory).

The checks are then run on broken copies of the manifests, each of which must
be caught, so that a check that cannot fail fails the run.

Needs kubectl on PATH (or beside this interpreter) and the kubernetes-validate
package; scripts/test installs both into target/deploy-venv. A missing tool is a
failure, never a skip.

Usage: scripts/test_deploy.py [--saker target/debug/saker]
"""
import argparse
import copy
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import yaml

try:
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError:  # a failure, not a skip: the run must not pass without it
    kubernetes_validate = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = "/etc/saker"
CONFIG_PATH = CONFIG_DIR + "/saker.yaml"
IMAGE_RULES_DIR = "/usr/share/saker/rules"
# Flags of `saker run` that DESIGN 5 defines and the config file uses, but that
# are being added to the binary at the same time as these manifests. Remove a
# name once `saker run --help` lists it.
PENDING_FLAGS = {"state-dir"}
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"

BASES = {
    "kafka": "StatefulSet",
    "webhook": "Deployment",
    "node": "DaemonSet",
}


class Build:
    """What one base builds into, with lookups the checks share."""

    def __init__(self, name, docs):
        self.name = name
        self.docs = docs

    def of_kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind, name=None):
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        if len(found) != 1:
            raise CheckFailed(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
        return found[0]

    def workload(self):
        return self.one(BASES[self.name])

    def pod(self):
        return self.workload()["spec"]["template"]

    def containers(self):
        spec = self.pod()["spec"]
        return spec.get("initContainers", []) + spec["containers"]

    def config_volume(self):
        """The ConfigMap volume mounted at /etc/saker, and its ConfigMap."""
        spec = self.pod()["spec"]
        mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", [])
                  if m["mountPath"] == CONFIG_DIR]
        if len(mounts) != 1:
            raise CheckFailed(f"expected one mount at {CONFIG_DIR}, found {len(mounts)}")
        volume = volume_named(spec, mounts[0]["name"])
        if "configMap" not in volume:
            raise CheckFailed(f"{CONFIG_DIR} is not a ConfigMap volume")
        return mounts[0], self.one("ConfigMap", volume["configMap"]["name"])

    def config(self):
        """saker.yaml, as the pods read it."""
        _, cm = self.config_volume()
        if "saker.yaml" not in cm.get("data", {}):
            raise CheckFailed(f"ConfigMap {cm['metadata']['name']} has no saker.yaml")
        return yaml.safe_load(cm["data"]["saker.yaml"])

    def metrics_port(self):
        listen = str(self.config().get("metrics-listen", ""))
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            raise CheckFailed(f"metrics-listen {listen!r} has no port")
        return host, int(port)


class CheckFailed(Exception):
    pass


def volume_named(pod_spec, name):
    for v in pod_spec.get("volumes", []):
        if v["name"] == name:
            return v
    raise CheckFailed(f"no volume named {name}")


def mount_of(build, path):
    """The container mount whose mountPath holds `path`, and its volume."""
    best = None
    for c in build.pod()["spec"]["containers"]:
        for m in c.get("volumeMounts", []):
            mp = m["mountPath"].rstrip("/")
            if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
                best = m
    if best is None:
        raise CheckFailed(f"{path} is on no volume mount")
    return best, volume_named(build.pod()["spec"], best["name"])


def container_port(container, port):
    """A probe's port (a number or a port name) as a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise CheckFailed(f"container {container['name']} has no port named {port}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def fail_unless(condition, message):
    if not condition:
        raise CheckFailed(message)


# ---------------------------------------------------------------- the checks
# Each takes a Build (and the context) and raises CheckFailed with the reason.

def check_schemas(build, ctx):
    versions = sorted(set(kv_utils.all_versions()), key=lambda v: [int(x) for x in v.split(".")])
    fail_unless(versions, "kubernetes-validate bundles no schemas")
    for doc in build.docs:
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as e:  # ValidationError, SchemaNotFoundError, ...
                what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                raise CheckFailed(f"{what} against {version}: {getattr(e, 'message', e)}")


def check_workload_kind(build, ctx):
    build.workload()


def check_security(build, ctx):
    pod = build.pod()["spec"]
    psc = pod.get("securityContext", {})
    fail_unless(pod.get("automountServiceAccountToken") is False, "the pod mounts an API token")
    fail_unless(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"),
                "the pod shares a host namespace")
    for c in build.containers():
        sc = c.get("securityContext", {})
        name = c["name"]
        fail_unless(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot is not true")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        fail_unless(uid == ctx["image_uid"],
                    f"{name}: runAsUser {uid} is not the image's USER {ctx['image_uid']}")
        fail_unless(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem is not true")
        fail_unless(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation is not false")
        fail_unless(not sc.get("privileged"), f"{name}: privileged")
        caps = sc.get("capabilities", {})
        fail_unless("ALL" in caps.get("drop", []), f"{name}: capabilities are not all dropped")
        fail_unless(not caps.get("add"), f"{name}: capabilities added: {caps.get('add')}")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        fail_unless(seccomp == "RuntimeDefault", f"{name}: seccomp profile {seccomp}, not RuntimeDefault")


def check_resources(build, ctx):
    for c in build.containers():
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                fail_unless(what in res.get(kind, {}), f"{c['name']}: no {what} in {kind}")
        for what in ("cpu", "memory"):
            fail_unless(quantity(res["requests"][what]) <= quantity(res["limits"][what]),
                        f"{c['name']}: {what} request over its limit")


def quantity(q):
    """A Kubernetes quantity (cpu or memory) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m or (m.group(2) and m.group(2) not in units):
        raise CheckFailed(f"unreadable quantity {q!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def check_probes(build, ctx):
    """Liveness on the metrics listener's /healthz; readiness on a /readyz:
    the metrics listener's, or for the webhook the receiver's own (HTTPS),
    which stops the Service's traffic on SIGTERM and not on a failed reload."""
    host, port = build.metrics_port()
    fail_unless(host == "0.0.0.0",
                f"metrics-listen binds {host or 'loopback'}: the kubelet's probes could not reach it")
    ready_port, ready_scheme = port, "HTTP"
    if build.name == "webhook":
        ready_port, ready_scheme = int(str(build.config()["listen"]).rpartition(":")[2]), "HTTPS"
    c = build.pod()["spec"]["containers"][0]
    for probe, path, want_port, scheme in (("livenessProbe", "/healthz", port, "HTTP"),
                                           ("readinessProbe", "/readyz", ready_port, ready_scheme)):
        get = c.get(probe, {}).get("httpGet")
        fail_unless(get is not None, f"no HTTP {probe}")
        fail_unless(get.get("path") == path, f"{probe} asks {get.get('path')}, not {path}")
        fail_unless(container_port(c, get["port"]) == want_port, f"{probe} port is not {want_port}")
        fail_unless(get.get("scheme", "HTTP") == scheme, f"{probe}: scheme is not {scheme}")


def check_scrape_annotations(build, ctx):
    _, port = build.metrics_port()
    ann = build.pod()["metadata"].get("annotations", {})
    fail_unless(ann.get("prometheus.io/scrape") == "true", "prometheus.io/scrape is not \"true\"")
    fail_unless(ann.get("prometheus.io/port") == str(port), f"prometheus.io/port is not {port}")
    fail_unless(ann.get("prometheus.io/path") == "/metrics", "prometheus.io/path is not /metrics")
    c = build.pod()["spec"]["containers"][0]
    fail_unless(port in [p["containerPort"] for p in c.get("ports", [])], f"port {port} is not declared")


def check_config_mount(build, ctx):
    c = build.pod()["spec"]["containers"][0]
    args = c.get("args", [])
    fail_unless(args[:1] == ["run"], f"the container does not run `saker run`: {args}")
    fail_unless(any(args[i:i + 2] == ["--config", CONFIG_PATH] for i in range(len(args))),
                f"`--config {CONFIG_PATH}` is not among the arguments")
    mount, _ = build.config_volume()
    fail_unless(mount.get("readOnly") is True, "the config is mounted writable")
    for cc in build.containers():
        for m in cc.get("volumeMounts", []):
            fail_unless("subPath" not in m and "subPathExpr" not in m,
                        f"{m['mountPath']} is a subPath mount, which never sees an update")


def check_config_keys(build, ctx):
    config = build.config()
    fail_unless(isinstance(config, dict), "saker.yaml is not a mapping")
    unknown = sorted(set(config) - ctx["run_flags"] - PENDING_FLAGS)
    fail_unless(not unknown, f"saker.yaml keys that are no long flag of `saker run`: {unknown}")
    fail_unless(config.get("log-format") == "json", "log-format is not json")
    for key in ("rules", "alertmanager"):
        fail_unless(isinstance(config.get(key), list), f"{key} is not a list (the flag repeats)")


def resolve_rules(build, ctx, into):
    """The config's rule files as files of this checkout: the image's copies
    (Containerfile) and the ConfigMap's keys, written into `into`."""
    _, cm = build.config_volume()
    paths = []
    for path in build.config()["rules"]:
        directory, _, name = path.rpartition("/")
        if directory == IMAGE_RULES_DIR:
            fail_unless(name in ctx["image_rules"], f"{path}: the Containerfile does not copy rules/{name}")
            paths.append(os.path.join(ROOT, "rules", name))
        elif directory == CONFIG_DIR:
            fail_unless(name in cm.get("data", {}), f"{path}: not a key of ConfigMap {cm['metadata']['name']}")
            local = os.path.join(into, name)
            with open(local, "w") as f:
                f.write(cm["data"][name])
            paths.append(local)
        else:
            raise CheckFailed(f"{path} is neither in the image nor in the ConfigMap")
    return paths


def check_rules(build, ctx):
    with tempfile.TemporaryDirectory() as tmp:
        rules = resolve_rules(build, ctx, tmp)
        checked = subprocess.run([ctx["saker"], "check", *rules], capture_output=True, text=True)
        fail_unless(checked.returncode == 0, f"saker check: {checked.stdout}{checked.stderr}")
        args = [a for r in rules for a in ("--rules", r)]
        alerts = saker_alerts(ctx, args)
    fail_unless(alerts == ctx["default_alerts"],
                f"the config's rules give {len(alerts)} alert(s) on the sample, the embedded ones "
                f"{len(ctx['default_alerts'])}")


def saker_alerts(ctx, args):
    sample = os.path.join(ROOT, "examples", "audit-sample.jsonl")
    run = subprocess.run([ctx["saker"], "run", "--no-summary", "--input", sample, *args],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise CheckFailed(f"saker run {' '.join(args)}: exit {run.returncode}: {run.stderr}")
    return run.stdout.splitlines()


def check_network_policy(build, ctx):
    _, port = build.metrics_port()
    labels = build.pod()["metadata"]["labels"]
    policies = [p for p in build.of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]
    fail_unless(policies, "no NetworkPolicy selects the pods")
    for p in policies:
        fail_unless("Ingress" in p["spec"].get("policyTypes", []), f"{p['metadata']['name']} is not an Ingress policy")
    rules = [r for p in policies for r in p["spec"].get("ingress", [])]
    metrics_rules = [r for r in rules if port in [x.get("port") for x in r.get("ports", [])]]
    fail_unless(metrics_rules, f"no ingress rule names the metrics port {port}")
    for r in metrics_rules:
        peers = r.get("from", [])
        fail_unless(peers and all("podSelector" in x or "namespaceSelector" in x for x in peers),
                    "the metrics port is open to more than selected pods (Prometheus)")
    for r in rules:
        fail_unless(r.get("from") and r.get("ports"), "an ingress rule lets in every source or every port")


def check_kafka(build, ctx):
    sts = build.workload()
    config = build.config()
    fail_unless(config.get("input") == "kafka", "input is not kafka")
    for key in ("kafka-brokers", "kafka-topic", "kafka-group"):
        fail_unless(config.get(key), f"{key} is not set")
    fail_unless(sts["spec"].get("replicas", 1) >= 1, "no replicas")
    service = build.one("Service", sts["spec"]["serviceName"])
    fail_unless(service["spec"].get("clusterIP") == "None", "the StatefulSet's Service is not headless")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    field = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    fail_unless(field == "metadata.name", "POD_NAME does not come from the pod's name")
    args = c["args"]
    fail_unless(any(args[i:i + 2] == ["-X", "group.instance.id=$(POD_NAME)"] for i in range(len(args))),
                "the pod name is not passed as -X group.instance.id")


def check_webhook(build, ctx):
    dep = build.workload()
    config = build.config()
    labels = build.pod()["metadata"]["labels"]
    fail_unless(config.get("input") == "http", "input is not http")
    fail_unless(dep["spec"].get("replicas", 1) > 1, "a single replica")
    listen_host, _, listen_port = str(config["listen"]).rpartition(":")
    listen_port = int(listen_port)
    fail_unless(listen_host == "0.0.0.0", "the receiver does not listen on the pod's address")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    # TLS and client certificates, from the Secret, through a directory mount.
    for key in ("tls-cert", "tls-key", "tls-client-ca"):
        path = config.get(key)
        fail_unless(path, f"{key} is not set")
        mount, volume = mount_of(build, path)
        fail_unless("secret" in volume, f"{key} is not from a Secret")
        secret = build.one("Secret", volume["secret"]["secretName"])
        name = os.path.relpath(path, mount["mountPath"])
        fail_unless(name in secret.get("data", {}), f"{key}: the Secret has no key {name}")
    for name in os.listdir(os.path.join(ROOT, "deploy", "webhook", "tls-placeholder")):
        with open(os.path.join(ROOT, "deploy", "webhook", "tls-placeholder", name)) as f:
            fail_unless("-----BEGIN" not in f.read(), f"tls-placeholder/{name} holds PEM data: keys are never committed")
    # The Service the kubeconfig names, and who may reach the receiver port.
    services = [s for s in build.of_kind("Service") if selects({"matchLabels": s["spec"].get("selector", {})}, labels)
                and s["spec"].get("selector")]
    fail_unless(len(services) == 1, f"expected one Service for the receivers, found {len(services)}")
    svc = services[0]["spec"]
    receiver = [p for p in svc["ports"] if container_port(c, p.get("targetPort", p["port"])) == listen_port]
    fail_unless(receiver, "the Service does not reach the receiver's port")
    with open(os.path.join(ROOT, "deploy", "webhook", "audit-webhook-kubeconfig.yaml")) as f:
        kubeconfig = yaml.safe_load(f)
    viewed = subprocess.run([ctx["kubectl"], "config", "view", "--kubeconfig",
                             os.path.join(ROOT, "deploy", "webhook", "audit-webhook-kubeconfig.yaml"),
                             "-o", "jsonpath={.clusters[0].cluster.server}"], capture_output=True, text=True)
    fail_unless(viewed.returncode == 0, f"kubectl cannot read the webhook kubeconfig: {viewed.stderr}")
    want = f"https://{svc['clusterIP']}:{receiver[0]['port']}/k8s-audit"
    fail_unless(viewed.stdout == want, f"the kubeconfig names {viewed.stdout}, the Service is {want}")
    ipaddress.ip_address(svc["clusterIP"])  # a fixed address: the API server does not use cluster DNS
    user = kubeconfig["users"][0]["user"]
    fail_unless(user.get("client-certificate") and user.get("client-key"),
                "the kubeconfig gives the API server no client certificate")
    fail_unless(not any(d.get("kind") == "Config" for d in build.docs), "the kubeconfig is applied to the cluster")
    policies = [p for p in build.of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]
    for r in [r for p in policies for r in p["spec"].get("ingress", [])]:
        if listen_port in [x.get("port") for x in r.get("ports", [])]:
            fail_unless(all(set(x) == {"ipBlock"} for x in r["from"]),
                        "the receiver port is open to pods, not only to the API servers' addresses")
    # Disruptions leave a receiver.
    pdbs = [p for p in build.of_kind("PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
    fail_unless(len(pdbs) == 1, "no PodDisruptionBudget for the receivers")
    fail_unless(1 <= pdbs[0]["spec"].get("minAvailable", 0) < dep["spec"]["replicas"],
                "the PodDisruptionBudget keeps no replica, or blocks every eviction")
    state, volume = mount_of(build, config["state-dir"])
    fail_unless(not state.get("readOnly") and "emptyDir" in volume, "state-dir is not a writable emptyDir")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_file(config, remap, run_flags, path):
    """Writes saker.yaml as `saker run --config` reads it, its paths moved by
    `remap`, without the Alertmanager (there is none here); a pending flag
    the binary does not have yet is left out."""
    out = {}
    for key, value in config.items():
        if key not in run_flags or key == "alertmanager":
            continue
        if isinstance(value, list):
            out[key] = [remap(key, str(v)) for v in value]
        elif isinstance(value, bool):
            out[key] = value
        else:
            out[key] = remap(key, str(value))
    with open(path, "w") as f:
        yaml.safe_dump(out, f)


def check_webhook_live(build, ctx):
    """The receiver, started with the base's settings and certificates made as
    the README says, takes a batch from a client that uses the API server's
    kubeconfig (its CA, its client certificate, its server address), refuses
    one without a certificate, and answers the readiness probe's request."""
    config = build.config()
    deploy = os.path.join(ROOT, "deploy", "webhook")
    with open(os.path.join(deploy, "audit-webhook-kubeconfig.yaml")) as f:
        kubeconfig = yaml.safe_load(f)
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    m = re.fullmatch(r"https://([0-9.]+):(\d+)(/.*)", server)
    fail_unless(m, f"unexpected server {server}")
    address, port, path = m.groups()
    with tempfile.TemporaryDirectory() as tmp:
        made = subprocess.run([os.path.join(ROOT, "examples", "webhook", "make-certs.sh"),
                               "saker-webhook.saker.svc", address], cwd=tmp, capture_output=True, text=True)
        fail_unless(made.returncode == 0, f"make-certs.sh: {made.stderr}")
        rules_dir = os.path.join(tmp, "configmap")
        os.mkdir(rules_dir)
        resolved = iter(resolve_rules(build, ctx, rules_dir))
        tls_mount, _ = mount_of(build, config["tls-cert"])
        listen, metrics = free_port(), free_port()

        def remap(key, value):
            if key == "rules":
                return next(resolved)
            if value.startswith(tls_mount["mountPath"] + "/"):
                return os.path.join(tmp, os.path.basename(value))
            if key == "listen":
                return f"127.0.0.1:{listen}"
            if key == "metrics-listen":
                return f"127.0.0.1:{metrics}"
            if key == "state-dir":
                return os.path.join(tmp, "state")
            return value

        saker_yaml = os.path.join(tmp, "saker.yaml")
        config_file(config, remap, ctx["run_flags"], saker_yaml)
        proc = subprocess.Popen([ctx["saker"], "run", "--config", saker_yaml], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            up = False
            for _ in range(100):
                if proc.poll() is not None:
                    break
                if curl(["-s", f"http://127.0.0.1:{metrics}/healthz"])[1] == "ok\n":
                    up = True
                    break
                time.sleep(0.1)
            fail_unless(up, f"the receiver did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
            with open(os.path.join(ROOT, "examples", "audit-sample.jsonl")) as f:
                execs = [line.strip() for line in f if '"subresource":"exec"' in line][:3]
            batch = os.path.join(tmp, "batch.json")
            with open(batch, "w") as f:
                f.write('{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + ",".join(execs) + "]}")
            target = ["--connect-to", f"{address}:{port}:127.0.0.1:{listen}", server]
            user = kubeconfig["users"][0]["user"]
            cluster = kubeconfig["clusters"][0]["cluster"]
            as_api_server = ["--cacert", os.path.join(tmp, os.path.basename(cluster["certificate-authority"])),
                             "--cert", os.path.join(tmp, os.path.basename(user["client-certificate"])),
                             "--key", os.path.join(tmp, os.path.basename(user["client-key"]))]
            code, body = curl(["-s", "-w", "\n%{http_code}", *as_api_server, "--data-binary", "@" + batch, *target])
            fail_unless(code == 0 and body.endswith("\n200"), f"the API server's batch: curl {code}, {body!r}")
            code, body = curl(["-s", "-w", "\n%{http_code}", "--cacert", as_api_server[1],
                               "--data-binary", "@" + batch, *target])
            fail_unless(code == 0 and body.endswith("\n401"), f"a batch without a client certificate: {body!r}")
            probe = build.pod()["spec"]["containers"][0]["readinessProbe"]["httpGet"]
            code, body = curl(["-s", "-k", "-w", "\n%{http_code}", f"https://127.0.0.1:{listen}{probe['path']}"])
            fail_unless(code == 0 and body.endswith("\n200"), f"the readiness probe's request: {body!r}")
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        alerts = [json.loads(a)["rule"] for a in out.splitlines()]
        fail_unless("Exec Into Pod" in alerts, f"the batch gave no exec alert: {alerts}")


def curl(args):
    if not shutil.which("curl"):
        raise CheckFailed("curl is missing (scripts/test installs it)")
    done = subprocess.run(["curl", "--max-time", "20", *args], capture_output=True, text=True)
    return done.returncode, done.stdout


def check_node(build, ctx):
    spec = build.pod()["spec"]
    config = build.config()
    fail_unless(CONTROL_PLANE in spec.get("nodeSelector", {}), "not placed on control-plane nodes")
    fail_unless(any(t.get("key") == CONTROL_PLANE and t.get("operator") == "Exists"
                    and t.get("effect") in (None, "NoSchedule") for t in spec.get("tolerations", [])),
                "no toleration for the control-plane taint")
    fail_unless(config.get("input") == "/var/log/kubernetes/audit/audit.log", "not the API server's audit log")
    fail_unless(config.get("follow") is True, "follow is not on")
    mount, volume = mount_of(build, config["input"])
    fail_unless(mount["mountPath"] == os.path.dirname(config["input"]),
                "the log's directory is not the mount (rotation would go unseen)")
    fail_unless(volume.get("hostPath", {}).get("type") == "Directory", "the log is not a hostPath Directory")
    fail_unless(mount.get("readOnly") is True, "the audit log is mounted writable")
    state, volume = mount_of(build, config["state-dir"])
    fail_unless(volume.get("hostPath", {}).get("type") == "DirectoryOrCreate",
                "state-dir is not a hostPath DirectoryOrCreate")
    fail_unless(not state.get("readOnly"), "state-dir is mounted read-only")


CHECKS = [
    ("schemas", check_schemas, None),
    ("workload kind", check_workload_kind, None),
    ("security context", check_security, None),
    ("resources", check_resources, None),
    ("probes", check_probes, None),
    ("scrape annotations", check_scrape_annotations, None),
    ("config mount", check_config_mount, None),
    ("config keys", check_config_keys, None),
    ("rules", check_rules, None),
    ("network policy", check_network_policy, None),
    ("kafka", check_kafka, "kafka"),
    ("webhook", check_webhook, "webhook"),
    ("webhook receiver, as configured", check_webhook_live, "webhook"),
    ("node", check_node, "node"),
]


def run_checks(build, ctx, only=None):
    """[(check name, failure or None)] for the checks that apply to `build`."""
    results = []
    for name, check, base in CHECKS:
        if (base is not None and base != build.name) or (only and name not in only):
            continue
        try:
            check(build, ctx)
            results.append((name, None))
        except CheckFailed as e:
            results.append((name, str(e)))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            results.append((name, f"malformed manifest: {type(e).__name__}: {e}"))
    return results


# ------------------------------------------------ broken copies must be caught

def first_container(docs, kind):
    return next(d for d in docs if d["kind"] == kind)["spec"]["template"]["spec"]["containers"][0]


def workload_of(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def set_config(docs, key, value):
    """Sets a key of saker.yaml; None removes it."""
    for d in docs:
        if d["kind"] == "ConfigMap" and "saker.yaml" in d.get("data", {}):
            config = yaml.safe_load(d["data"]["saker.yaml"])
            config[key] = value
            if value is None:
                del config[key]
            d["data"]["saker.yaml"] = yaml.safe_dump(config)


MUTATIONS = [
    # (base, check that must fail, what is broken, how)
    ("kafka", "security context", "readOnlyRootFilesystem dropped",
     lambda d: first_container(d, "StatefulSet")["securityContext"].pop("readOnlyRootFilesystem")),
    ("node", "security context", "runs as root",
     lambda d: first_container(d, "DaemonSet")["securityContext"].update(runAsUser=0)),
    ("webhook", "config mount", "the ConfigMap mounted by subPath",
     lambda d: first_container(d, "Deployment")["volumeMounts"][0].update(subPath="saker.yaml")),
    ("webhook", "probes", "readiness over plain HTTP on the TLS receiver",
     lambda d: first_container(d, "Deployment")["readinessProbe"]["httpGet"].pop("scheme")),
    ("kafka", "probes", "readiness on /healthz",
     lambda d: first_container(d, "StatefulSet")["readinessProbe"]["httpGet"].update(path="/healthz")),
    ("node", "probes", "metrics on loopback",
     lambda d: set_config(d, "metrics-listen", "9464")),
    ("webhook", "scrape annotations", "no scrape annotation",
     lambda d: workload_of(d, "Deployment")["spec"]["template"]["metadata"]["annotations"].pop("prometheus.io/scrape")),
    ("kafka", "resources", "no memory limit",
     lambda d: first_container(d, "StatefulSet")["resources"]["limits"].pop("memory")),
    ("webhook", "webhook", "one replica",
     lambda d: workload_of(d, "Deployment")["spec"].update(replicas=1)),
    ("webhook", "webhook receiver, as configured", "no client CA",
     lambda d: set_config(d, "tls-client-ca", None)),
    ("kafka", "kafka", "no static member id",
     lambda d: first_container(d, "StatefulSet").update(args=["run", "--config", CONFIG_PATH])),
    ("node", "node", "the log mounted writable",
     lambda d: next(m for m in first_container(d, "DaemonSet")["volumeMounts"]
                    if m["name"] == "audit-log").update(readOnly=False)),
    ("kafka", "config keys", "a key that is no flag",
     lambda d: set_config(d, "kafka-broker", "kafka:9092")),
    ("node", "rules", "a rules file the image does not have",
     lambda d: set_config(d, "rules", [IMAGE_RULES_DIR + "/k8s_audit_extra.yaml"])),
    ("webhook", "rules", "the windowed and stateful rules left out",
     lambda d: set_config(d, "rules", [IMAGE_RULES_DIR + "/k8s_audit.yaml", CONFIG_DIR + "/local-rules.yaml"])),
    ("kafka", "network policy", "metrics open to all",
     lambda d: next(x for x in d if x["kind"] == "NetworkPolicy")["spec"]["ingress"][0].pop("from")),
    ("kafka", "schemas", "an unknown field",
     lambda d: first_container(d, "StatefulSet").update(bogus=True)),
]


# ------------------------------------------------------------------- context

def find_kubectl():
    found = shutil.which("kubectl") or shutil.which("kubectl", path=os.path.dirname(sys.executable))
    if not found:
        raise SystemExit("test_deploy: kubectl is missing (scripts/test installs one into target/deploy-venv)")
    return found


def run_flags(saker):
    """The long flags `saker run --help` lists."""
    helped = subprocess.run([saker, "run", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)", helped, re.M))


def containerfile_facts():
    with open(os.path.join(ROOT, "Containerfile")) as f:
        text = f.read()
    user = re.search(r"^USER (\d+)(?::(\d+))?\s*$", text, re.M)
    if not user:
        raise SystemExit("test_deploy: the Containerfile has no numeric USER")
    rules = set()
    for line in re.findall(r"^COPY (rules/.*)$", text, re.M):
        *sources, dest = line.split()
        if dest.rstrip("/") == IMAGE_RULES_DIR:
            rules |= {os.path.basename(s) for s in sources}
    return int(user.group(1)), rules


def build_base(kubectl, name):
    built = subprocess.run([kubectl, "kustomize", os.path.join(ROOT, "deploy", name)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        return None, built.stderr.strip()
    return Build(name, [d for d in yaml.safe_load_all(built.stdout) if d]), None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saker", default=os.path.join(ROOT, "target", "debug", "saker"))
    args = parser.parse_args()
    if kubernetes_validate is None:
        raise SystemExit("test_deploy: the kubernetes-validate package is missing "
                         "(scripts/test installs it into target/deploy-venv)")
    if not os.access(args.saker, os.X_OK):
        raise SystemExit(f"test_deploy: no saker binary at {args.saker} (cargo build first)")
    kubectl = find_kubectl()
    uid, image_rules = containerfile_facts()
    ctx = {
        "saker": args.saker,
        "kubectl": kubectl,
        "run_flags": run_flags(args.saker),
        "image_uid": uid,
        "image_rules": image_rules,
        "default_alerts": saker_alerts({"saker": args.saker}, []),
    }
    if not ctx["default_alerts"]:
        raise SystemExit("test_deploy: the embedded rules give no alert on the sample; nothing to compare")

    passed, failed = 0, 0

    def report(label, failure):
        nonlocal passed, failed
        if failure is None:
            passed += 1
            print(f"ok   {label}")
        else:
            failed += 1
            print(f"FAIL {label}: {failure}")

    builds = {}
    for name in BASES:
        build, error = build_base(kubectl, name)
        report(f"{name}: kubectl kustomize deploy/{name}", error)
        if build is None:
            continue
        builds[name] = build
        for check, failure in run_checks(build, ctx):
            report(f"{name}: {check}", failure)

    for base, check, what, mutate in MUTATIONS:
        if base not in builds:
            report(f"{base}: broken copy ({what}) caught by '{check}'", "the base did not build")
            continue
        docs = copy.deepcopy(builds[base].docs)
        mutate(docs)
        results = dict(run_checks(Build(base, docs), ctx, only={check}))
        caught = results.get(check)
        report(f"{base}: broken copy ({what}) caught by '{check}'",
               None if caught else "the check passed a broken manifest")

    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
