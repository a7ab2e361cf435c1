#!/usr/bin/env python3
"""Writes rules/tests/k8s_audit_test.yaml: for every shipped rule, events that
must fire it and near-misses that must not, as `saker test` cases.

The events are built the way the API server writes them (Go key order,
RFC 3339 times with six fractional digits, `responseStatus.metadata: {}`), from
one template and a few overrides per case, so each case shows only what makes
it fire or not. Run it after changing a case, then `saker test`.

Usage: python3 scripts/gen_rule_tests.py
"""
import json
import os

BASE_TIME = "2024-10-29T12:22:{:02d}.{:06d}Z"
_counter = [0]


def ev(verb, resource=None, *, user="alice@example.com", groups=("devs", "system:authenticated"),
       ns="default", name=None, sub=None, code=None, stage="ResponseComplete", uri=None,
       req=None, resp=None, level=None, decision="allow", reason=None, imp=None, ua="kubectl/v1.30.2 (linux/amd64) kubernetes/39683505",
       api_group=None, audit_id=None, at=None):
    """One audit.k8s.io/v1 Event, keys in the order the API server writes them."""
    _counter[0] += 1
    n = _counter[0]
    if code is None:
        code = {"create": 201}.get(verb, 200)
    if uri is None:
        if resource is None:
            uri = "/healthz"
        else:
            prefix = "/api/v1" if api_group is None else "/apis/%s/v1" % api_group
            path = prefix + ("/namespaces/%s" % ns if ns else "") + "/" + resource
            if name:
                path += "/" + name
            if sub:
                path += "/" + sub
            uri = path
    e = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level or ("RequestResponse" if req is not None else "Metadata"),
        "auditID": audit_id or "00000000-0000-4000-8000-%012d" % n,
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": list(groups)},
    }
    if imp:
        e["impersonatedUser"] = {"username": imp, "groups": ["system:authenticated"]}
    e["sourceIPs"] = ["10.0.12.%d" % (10 + n % 200)]
    e["userAgent"] = ua
    if resource is not None:
        ref = {"resource": resource}
        if ns:
            ref["namespace"] = ns
        if name:
            ref["name"] = name
        if api_group:
            ref["apiGroup"] = api_group
        ref["apiVersion"] = "v1"
        if sub:
            ref["subresource"] = sub
        e["objectRef"] = ref
    if stage != "RequestReceived":
        e["responseStatus"] = {"metadata": {}, "code": code}
    if req is not None:
        e["requestObject"] = req
    if resp is not None:
        e["responseObject"] = resp
    if at is None:
        t = BASE_TIME.format(n % 60, (n * 7919) % 1000000)
    else:
        # `at` seconds after 12:00:00, for the windowed rules' tests.
        minute, second = divmod(int(at), 60)
        t = "2024-10-29T12:%02d:%02d.%06dZ" % (minute, second, int(round((at - int(at)) * 1e6)))
    e["requestReceivedTimestamp"] = t
    e["stageTimestamp"] = t
    ann = {}
    if decision:
        ann["authorization.k8s.io/decision"] = decision
        ann["authorization.k8s.io/reason"] = reason or 'RBAC: allowed by ClusterRoleBinding "devs" of ClusterRole "edit" to Group "devs"'
    if ann:
        e["annotations"] = ann
    return e


def pod(name="web", *, image="nginx:1.27.0", sc=None, spec=None, init=None, ephemeral=None, volumes=None):
    c = {"name": "app"}
    if image is not None:
        c["image"] = image
    if sc:
        c["securityContext"] = sc
    s = {"containers": [c]}
    if init:
        s["initContainers"] = init
    if ephemeral:
        s["ephemeralContainers"] = ephemeral
    if volumes:
        s["volumes"] = volumes
    s.update(spec or {})
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name}, "spec": s}


def pod_create(ns="default", user="alice@example.com", name="web", **kw):
    body = pod(name, **kw)
    return ev("create", "pods", ns=ns, user=user, req=body,
              resp={"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}})


def role(kind, rules, name="r1", ns="default", verb="create", user="alice@example.com"):
    res = "clusterroles" if kind == "ClusterRole" else "roles"
    return ev(verb, res, api_group="rbac.authorization.k8s.io", ns=None if kind == "ClusterRole" else ns,
              name=name if verb != "create" else None, user=user,
              req={"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": name}, "rules": rules})


def binding(role_name, name="b1", res="clusterrolebindings", verb="create", user="alice@example.com", ns="default"):
    return ev(verb, res, api_group="rbac.authorization.k8s.io", ns=None if res == "clusterrolebindings" else ns,
              user=user, req={"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": name},
                              "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "mallory"}],
                              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name}})


CASES = []


def case(name, events, expect):
    CASES.append((name, events, expect))


def fire(rule, **fields):
    d = {"rule": rule}
    if fields:
        d["output_fields"] = fields
    return d


def window(rule, state, key, time=None):
    d = {"rule": rule, "state": state, "key": key}
    if time:
        d["time"] = time
    return d


# --- exec / attach / port-forward / proxy -----------------------------------
exec_uri = "/api/v1/namespaces/shop/pods/web-7d4b9/exec?command=sh&command=-c&container=app&stdin=true&stdout=true&tty=true"
case("Exec Into Pod: kubectl >= 1.30 (WebSocket, verb get) fires once for its two stages",
     [ev("get", "pods", ns="shop", name="web-7d4b9", sub="exec", stage="ResponseStarted", code=101, uri=exec_uri),
      ev("get", "pods", ns="shop", name="web-7d4b9", sub="exec", stage="ResponseComplete", code=101, uri=exec_uri)],
     [fire("Exec Into Pod", **{"ka.user.name": "alice@example.com", "ka.target.name": "web-7d4b9", "ka.uri.param[command]": "sh", "ka.verb": "get"})])
case("Exec Into Pod: kubectl <= 1.29 (SPDY, verb create) fires",
     [ev("create", "pods", ns="shop", name="web-7d4b9", sub="exec", stage="ResponseStarted", code=101, uri=exec_uri)],
     [fire("Exec Into Pod", **{"ka.verb": "create"})])
case("Exec Into Pod: a denied exec fires at ResponseComplete",
     [ev("create", "pods", ns="shop", name="web-7d4b9", sub="exec", code=403, uri=exec_uri, decision="forbid")],
     [fire("Exec Into Pod", **{"ka.response.code": "403"})])
case("Exec Into Pod: near miss, reading logs is not exec",
     [ev("get", "pods", ns="shop", name="web-7d4b9", sub="log")], [])
case("Attach To Pod fires",
     [ev("create", "pods", ns="shop", name="web-7d4b9", sub="attach", stage="ResponseStarted", code=101,
         uri="/api/v1/namespaces/shop/pods/web-7d4b9/attach?container=app&stdin=true")],
     [fire("Attach To Pod", **{"ka.uri.param[container]": "app"})])
case("Attach To Pod: near miss, the completion of a started attach",
     [ev("create", "pods", ns="shop", name="web-7d4b9", sub="attach", code=101)], [])
case("Ephemeral Container Added fires (kubectl debug)",
     [ev("patch", "pods", ns="shop", name="web-7d4b9", sub="ephemeralcontainers",
         req={"spec": {"ephemeralContainers": [{"name": "debugger-x", "image": "busybox:1.36", "stdin": True, "tty": True}]}})],
     [fire("Ephemeral Container Added", **{"ka.req.pod.ephemeralContainers.image": ["busybox:1.36"]})])
case("Ephemeral Container Added: near miss, a rejected patch",
     [ev("patch", "pods", ns="shop", name="web-7d4b9", sub="ephemeralcontainers", code=422)], [])
case("Port Forward To Pod fires",
     [ev("get", "pods", ns="shop", name="db-0", sub="portforward", stage="ResponseStarted", code=101,
         uri="/api/v1/namespaces/shop/pods/db-0/portforward?ports=5432")],
     [fire("Port Forward To Pod", **{"ka.uri.param[ports]": "5432"})])
case("Port Forward To Pod: near miss, an ordinary pod read",
     [ev("get", "pods", ns="shop", name="db-0")], [])
case("Proxy To Node, Pod Or Service: kubelet API through the node proxy fires",
     [ev("get", "nodes", ns=None, name="ip-10-0-12-14", sub="proxy", uri="/api/v1/nodes/ip-10-0-12-14/proxy/pods")],
     [fire("Proxy To Node, Pod Or Service", **{"ka.target.resource": "nodes"})])
case("Proxy To Node, Pod Or Service: near miss, the metrics server (a system user)",
     [ev("get", "nodes", ns=None, name="ip-10-0-12-14", sub="proxy", user="system:serviceaccount:kube-system:metrics-server")], [])

# --- pods reaching into the host -----------------------------------------------
case("Privileged Pod Created fires",
     [pod_create(sc={"privileged": True})],
     [fire("Privileged Pod Created", **{"ka.req.pod.containers.image": ["nginx:1.27.0"]})])
case("Privileged Pod Created: a privileged init container fires",
     [pod_create(init=[{"name": "setup", "image": "busybox:1.36", "securityContext": {"privileged": True}}])],
     [fire("Privileged Pod Created", **{"ka.req.pod.initContainers.image": ["busybox:1.36"]})])
case("Privileged Pod Created: near miss, a DaemonSet's pod created by its controller",
     [pod_create(ns="kube-system", name="cilium-x7k2p", user="system:serviceaccount:kube-system:daemon-set-controller", sc={"privileged": True})], [])
case("Privileged Pod Created: near miss, privileged: false",
     [pod_create(sc={"privileged": False, "runAsNonRoot": True})], [])
case("Sensitive HostPath Mounted: the container runtime socket fires",
     [pod_create(volumes=[{"name": "sock", "hostPath": {"path": "/run/containerd/containerd.sock", "type": "Socket"}}])],
     [fire("Sensitive HostPath Mounted", **{"ka.req.pod.volumes.hostpath": ["/run/containerd/containerd.sock"]})])
case("Sensitive HostPath Mounted: near miss, a configMap volume",
     [pod_create(volumes=[{"name": "config", "configMap": {"name": "web"}}])], [])
case("Sensitive HostPath Mounted: a hostPath under /var/log is not sensitive, only rule HostPath Volume Mounted fires",
     [pod_create(volumes=[{"name": "logs", "hostPath": {"path": "/var/log/pods"}}])],
     [fire("HostPath Volume Mounted", **{"ka.req.pod.volumes.hostpath": ["/var/log/pods"]})])
case("Host Network Pod Created fires",
     [pod_create(spec={"hostNetwork": True})], [fire("Host Network Pod Created")])
case("Host Network Pod Created: near miss, hostNetwork false",
     [pod_create(spec={"hostNetwork": False})], [])
case("Host PID Pod Created fires",
     [pod_create(spec={"hostPID": True})], [fire("Host PID Pod Created")])
case("Host PID Pod Created: near miss, a failed create",
     [dict(pod_create(spec={"hostPID": True}), responseStatus={"metadata": {}, "code": 403})], [])
case("Host IPC Pod Created fires",
     [pod_create(spec={"hostIPC": True})], [fire("Host IPC Pod Created")])
case("Host IPC Pod Created: near miss, a dry-run style read of the same pod",
     [ev("get", "pods", name="web")], [])
case("Pod With Dangerous Capabilities: SYS_ADMIN fires",
     [pod_create(sc={"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}})],
     [fire("Pod With Dangerous Capabilities", **{"ka.req.pod.containers.add_capabilities": ["NET_BIND_SERVICE", "SYS_ADMIN"]})])
case("Pod With Dangerous Capabilities: near miss, only NET_BIND_SERVICE",
     [pod_create(sc={"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}})], [])
case("Pod Created In System Namespace By Non-System User: kube-system fires",
     [pod_create(ns="kube-system", name="debug")],
     [fire("Pod Created In System Namespace By Non-System User", **{"ka.resp.name": "debug"})])
case("Pod Created In System Namespace By Non-System User: kube-node-lease fires",
     [pod_create(ns="kube-node-lease", name="hidden")],
     [fire("Pod Created In System Namespace By Non-System User", **{"ka.target.namespace": "kube-node-lease"})])
case("Pod Created In System Namespace By Non-System User: near miss, an EKS component (eks:*) is a system identity",
     [pod_create(ns="kube-public", name="probe", user="eks:addon-manager")], [])
case("Pod Created In System Namespace: near miss, the DaemonSet controller",
     [pod_create(ns="kube-system", name="kube-proxy-x2x", user="system:serviceaccount:kube-system:daemon-set-controller")], [])

case("Pod Running As Root Created: runAsUser 0 on a container fires",
     [pod_create(sc={"runAsUser": 0})],
     [fire("Pod Running As Root Created", **{"ka.req.pod.containers.run_as_user": ["0"]})])
case("Pod Running As Root Created: runAsNonRoot false fires",
     [pod_create(sc={"runAsNonRoot": False})], [fire("Pod Running As Root Created")])
case("Pod Running As Root Created: near miss, runAsNonRoot true and user 1000",
     [pod_create(sc={"runAsNonRoot": True, "runAsUser": 1000})], [])
case("HostPath Volume Mounted: a host directory outside the sensitive list fires",
     [pod_create(volumes=[{"name": "data", "hostPath": {"path": "/mnt/data"}}])],
     [fire("HostPath Volume Mounted", **{"ka.req.pod.volumes.hostpath": ["/mnt/data"]})])
case("HostPath Volume Mounted: near miss, an emptyDir volume",
     [pod_create(volumes=[{"name": "scratch", "emptyDir": {}}])], [])
# The allow-list fix: a pod whose containers name no image yields an empty
# list of repositories, and an empty list is inside every set, so without the
# length check in `trusted_image_only` this pod counted as running trusted
# images only and every pod rule was silenced for it.
case("Allow-list: a privileged pod whose container names no image is not trusted (fires)",
     [pod_create(image=None, sc={"privileged": True})],
     [fire("Privileged Pod Created", **{"ka.req.pod.containers.image": []})])
case("Allow-list: a host-IPC pod whose container names no image is not trusted (fires)",
     [pod_create(image=None, spec={"hostIPC": True})],
     [fire("Host IPC Pod Created")])

# --- RBAC and identity ------------------------------------------------------------
case("Binding To Privileged Role Or Group: cluster-admin fires",
     [binding("cluster-admin")],
     [fire("Binding To Privileged Role Or Group", **{"ka.req.binding.subjects": ['{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}']})])
case("Binding To Privileged Role Or Group: the controller manager's role fires",
     [binding("system:kube-controller-manager")],
     [fire("Binding To Privileged Role Or Group", **{"ka.req.binding.role": "system:kube-controller-manager"})])
case("Binding To Privileged Role Or Group: the group system:masters fires",
     [ev("create", "clusterrolebindings", api_group="rbac.authorization.k8s.io", ns=None,
         req={"kind": "ClusterRoleBinding", "metadata": {"name": "b2"},
              "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}],
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}})],
     [fire("Binding To Privileged Role Or Group", **{"ka.req.binding.role": "view"})])
case("Binding To Privileged Role Or Group: near miss, a binding to a namespace reader",
     [binding("namespace-reader")], [])
case("Role Grants Pod Exec fires",
     [role("ClusterRole", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}])],
     [fire("Role Grants Pod Exec", **{"ka.req.role.rules.resources": ["pods/exec"]})])
case("Role Grants Pod Exec: near miss, pods/log",
     [role("Role", [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}])], [])
case("Role Grants Node Proxy fires",
     [role("ClusterRole", [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}])],
     [fire("Role Grants Node Proxy", **{"ka.req.role.rules.resources": ["nodes/proxy"]})])
case("Role Grants Node Proxy: near miss, listing nodes",
     [role("ClusterRole", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}])], [])
case("Role Grants Write On Sensitive Resources: delete on secrets fires",
     [role("Role", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "delete"]}])],
     [fire("Role Grants Write On Sensitive Resources", **{"ka.req.role.rules.verbs": ["get", "delete"]})])
case("Role Grants Write On Sensitive Resources: near miss, reading secrets",
     [role("Role", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}])], [])
case("Role With Wildcard Permissions: verbs * fires",
     [role("ClusterRole", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])],
     [fire("Role With Wildcard Permissions", **{"ka.req.role.rules.verbs": ["*"]})])
case("Role With Wildcard Permissions: near miss, explicit verbs",
     [role("Role", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])], [])
case("Role Grants Escalate, Bind Or Impersonate fires",
     [role("ClusterRole", [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}])],
     [fire("Role Grants Escalate, Bind Or Impersonate", **{"ka.req.role.rules.verbs": ["impersonate"]})])
case("Role Grants Escalate, Bind Or Impersonate: near miss, the same role created by the API server",
     [role("ClusterRole", [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}], user="system:apiserver")], [])
case("System Role Or Binding Modified Or Deleted: a ClusterRole fires",
     [ev("delete", "clusterroles", ns=None, name="system:node-proxier", api_group="rbac.authorization.k8s.io")],
     [fire("System Role Or Binding Modified Or Deleted", **{"ka.target.name": "system:node-proxier"})])
case("System Role Or Binding Modified Or Deleted: a Role in kube-system fires",
     [ev("patch", "roles", ns="kube-system", name="system:controller:bootstrap-signer", api_group="rbac.authorization.k8s.io")],
     [fire("System Role Or Binding Modified Or Deleted", **{"ka.target.namespace": "kube-system"})])
case("System Role Or Binding Modified Or Deleted: near miss, a system: Role in an app namespace",
     [ev("patch", "roles", ns="shop", name="system:shop-reader", api_group="rbac.authorization.k8s.io")], [])
case("System Role Or Binding Modified Or Deleted: near miss, a user's own ClusterRole",
     [ev("delete", "clusterroles", ns=None, name="team-a-reader", api_group="rbac.authorization.k8s.io")], [])
case("Anonymous Request Allowed fires",
     [ev("list", "secrets", ns="default", user="system:anonymous", groups=["system:unauthenticated"],
         reason='RBAC: allowed by ClusterRoleBinding "oops" of ClusterRole "cluster-admin" to User "system:anonymous"')],
     [fire("Anonymous Request Allowed", **{"ka.target.resource": "secrets"})])
case("Anonymous Request Allowed: near miss, an anonymous health probe",
     [ev("get", None, user="system:anonymous", groups=["system:unauthenticated"], uri="/readyz?verbose", ns=None, reason="")], [])
case("Anonymous Request Denied fires (a scanner)",
     [ev("get", None, user="system:anonymous", groups=["system:unauthenticated"], ns=None, code=403, decision="forbid", reason="",
         uri="/vendor/phpunit/src/Util/PHP/eval-stdin.php", ua="Custom-AsyncHttpClient")],
     [fire("Anonymous Request Denied", **{"ka.uri": "/vendor/phpunit/src/Util/PHP/eval-stdin.php"})])
case("Anonymous Request Denied: near miss, an anonymous liveness probe",
     [ev("get", None, user="system:anonymous", groups=["system:unauthenticated"], uri="/livez", ns=None, reason="")], [])
def health_probe(ip):
    e = ev("get", None, user="system:anonymous", groups=["system:unauthenticated"], uri="/healthz", ns=None,
           reason="", ua="ELB-HealthChecker/2.0")
    e["sourceIPs"] = [ip]
    return e

case("Anonymous Health Check From Outside The Cluster Networks fires",
     [health_probe("54.10.20.30")],
     [fire("Anonymous Health Check From Outside The Cluster Networks", **{"ka.sourceips": ["54.10.20.30"]})])
case("Anonymous Health Check From Outside The Cluster Networks: near miss, a load balancer inside 172.16.0.0/12",
     [health_probe("172.20.1.9")], [])
case("Anonymous Request Allowed: reading /version (fingerprinting) fires",
     [ev("get", None, user="system:anonymous", groups=["system:unauthenticated"], uri="/version", ns=None,
         reason='RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"')],
     [fire("Anonymous Request Allowed", **{"ka.uri": "/version"})])
case("Service Account Token Requested By User fires (kubectl create token)",
     [ev("create", "serviceaccounts", ns="ci", name="deployer", sub="token")],
     [fire("Service Account Token Requested By User", **{"ka.target.name": "deployer"})])
case("Service Account Token Requested By User: a control-plane identity in an app namespace fires",
     [ev("create", "serviceaccounts", ns="shop", name="app", sub="token", user="system:kube-controller-manager", groups=[])],
     [fire("Service Account Token Requested By User", **{"ka.user.name": "system:kube-controller-manager"})])
case("Service Account Token Requested: near miss, the controller manager in kube-system",
     [ev("create", "serviceaccounts", ns="kube-system", name="job-controller", sub="token", user="system:kube-controller-manager", groups=[])], [])
case("Service Account Token Requested: near miss, the kubelet projecting a token",
     [ev("create", "serviceaccounts", ns="ci", name="deployer", sub="token", user="system:node:ip-10-0-12-14", groups=["system:nodes"])], [])
case("Certificate Signing Request Created By Non-Node fires",
     [ev("create", "certificatesigningrequests", ns=None, api_group="certificates.k8s.io",
         resp={"kind": "CertificateSigningRequest", "metadata": {"name": "mallory-admin"}})],
     [fire("Certificate Signing Request Created By Non-Node", **{"ka.resp.name": "mallory-admin"})])
case("Certificate Signing Request Created: near miss, a serving certificate",
     [ev("create", "certificatesigningrequests", ns=None, api_group="certificates.k8s.io",
         req={"kind": "CertificateSigningRequest", "metadata": {"name": "web-serving"},
              "spec": {"signerName": "kubernetes.io/kubelet-serving", "usages": ["digital signature", "server auth"]}})], [])
case("Certificate Signing Request Created: near miss, a node's client certificate",
     [ev("create", "certificatesigningrequests", ns=None, api_group="certificates.k8s.io", user="system:node:ip-10-0-12-14", groups=["system:nodes"])], [])
case("Certificate Signing Request Approved fires",
     [ev("update", "certificatesigningrequests", ns=None, name="mallory-admin", sub="approval", api_group="certificates.k8s.io")],
     [fire("Certificate Signing Request Approved", **{"ka.target.name": "mallory-admin"})])
case("Certificate Signing Request Approved: near miss, the controller manager's auto-approval",
     [ev("update", "certificatesigningrequests", ns=None, name="node-csr-x", sub="approval", api_group="certificates.k8s.io",
         user="system:serviceaccount:kube-system:certificate-controller")], [])
case("Impersonation Of Privileged Identity fires",
     [ev("get", "secrets", ns="kube-system", name="etcd-ca", imp="system:node:ip-10-0-12-14")],
     [fire("Impersonation Of Privileged Identity", **{"ka.impuser.name": "system:node:ip-10-0-12-14"})])
case("Impersonation Of Privileged Identity: near miss, impersonating an ordinary user",
     [ev("list", "pods", ns="default", imp="bob@example.com")], [])
case("Self Subject Review fires (kubectl auth can-i --list)",
     [ev("create", "selfsubjectrulesreviews", ns=None, api_group="authorization.k8s.io")],
     [fire("Self Subject Review", **{"ka.target.resource": "selfsubjectrulesreviews"})])
case("Self Subject Review: near miss, a controller's SubjectAccessReview",
     [ev("create", "subjectaccessreviews", ns=None, api_group="authorization.k8s.io")], [])

# --- configuration and defence evasion ---------------------------------------------
case("Admission Webhook Changed fires",
     [ev("delete", "validatingwebhookconfigurations", ns=None, name="gatekeeper-validating-webhook-configuration",
         api_group="admissionregistration.k8s.io")],
     [fire("Admission Webhook Changed", **{"ka.verb": "delete"})])
case("Admission Webhook Changed: near miss, cert-manager's cainjector updating the CA bundle",
     [ev("update", "validatingwebhookconfigurations", ns=None, name="cert-manager-webhook", api_group="admissionregistration.k8s.io",
         user="system:serviceaccount:cert-manager:cert-manager-cainjector")], [])
case("CronJob Created Or Modified fires",
     [ev("create", "cronjobs", ns="default", api_group="batch",
         req={"kind": "CronJob", "metadata": {"name": "backup"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "alpine:3.20"}]}}}}}})],
     [fire("CronJob Created Or Modified", **{"jevt.value[/requestObject/spec/jobTemplate/spec/template/spec/containers]": '[{"name":"c","image":"alpine:3.20"}]'})])
case("CronJob Created Or Modified: near miss, the CronJob controller updating status",
     [ev("update", "cronjobs", ns="default", name="backup", sub="status", api_group="batch", user="system:serviceaccount:kube-system:cronjob-controller")], [])
case("Kubernetes Events Deleted fires",
     [ev("deletecollection", "events", ns="shop")],
     [fire("Kubernetes Events Deleted", **{"ka.verb": "deletecollection"})])
case("Kubernetes Events Deleted: near miss, the API server's TTL cleanup",
     [ev("delete", "events", ns="shop", name="web.17f", user="system:apiserver")], [])
case("CoreDNS Configuration Changed fires",
     [ev("patch", "configmaps", ns="kube-system", name="coredns")],
     [fire("CoreDNS Configuration Changed", **{"ka.target.name": "coredns"})])
case("CoreDNS Configuration Changed: near miss, reading it",
     [ev("get", "configmaps", ns="kube-system", name="coredns")], [])
case("Cluster-Wide Secret Listing fires",
     [ev("list", "secrets", ns=None, uri="/api/v1/secrets?limit=500")],
     [fire("Cluster-Wide Secret Listing", **{"ka.uri": "/api/v1/secrets?limit=500"})])
case("Cluster-Wide Secret Listing: near miss, listing secrets of one namespace",
     [ev("list", "secrets", ns="shop")], [])
case("Ingress Without TLS Created fires",
     [ev("create", "ingresses", ns="shop", api_group="networking.k8s.io",
         req={"kind": "Ingress", "metadata": {"name": "web"}, "spec": {"rules": [{"host": "shop.example.com"}]}})],
     [fire("Ingress Without TLS Created", **{"ka.target.namespace": "shop"})])
case("Ingress Without TLS Created: near miss, an Ingress with TLS",
     [ev("create", "ingresses", ns="shop", api_group="networking.k8s.io",
         req={"kind": "Ingress", "metadata": {"name": "web"}, "spec": {"tls": [{"hosts": ["shop.example.com"], "secretName": "web-tls"}],
                                                                     "rules": [{"host": "shop.example.com"}]}})], [])
case("DaemonSet Created: by a person fires",
     [ev("create", "daemonsets", ns="monitoring", api_group="apps",
         req={"kind": "DaemonSet", "metadata": {"name": "agent"}, "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "ghcr.io/acme/agent:1.0"}]}}}})],
     [fire("DaemonSet Created", **{"ka.target.namespace": "monitoring"})])
case("DaemonSet Created: by a service account outside the system namespaces fires",
     [ev("create", "daemonsets", ns="shop", api_group="apps", user="system:serviceaccount:shop:deployer")],
     [fire("DaemonSet Created", **{"ka.user.name": "system:serviceaccount:shop:deployer"})])
case("DaemonSet Created: near miss, a kube-system controller in kube-system",
     [ev("create", "daemonsets", ns="kube-system", api_group="apps", user="system:serviceaccount:kube-system:addon-manager")], [])
case("NodePort Service Created fires",
     [ev("create", "services", ns="shop", req={"kind": "Service", "metadata": {"name": "db"},
                                                "spec": {"type": "NodePort", "ports": [{"port": 5432, "nodePort": 30432}]}})],
     [fire("NodePort Service Created", **{"ka.req.service.ports": ['{"port":5432,"nodePort":30432}']})])
case("NodePort Service Created: near miss, a ClusterIP service",
     [ev("create", "services", ns="shop", req={"kind": "Service", "metadata": {"name": "db"}, "spec": {"type": "ClusterIP", "ports": [{"port": 5432}]}})], [])
case("Workload With Host Access In Pod Template: a privileged DaemonSet fires",
     [ev("create", "daemonsets", ns="default", api_group="apps",
         req={"kind": "DaemonSet", "metadata": {"name": "agent"}, "spec": {"template": {"spec": {"containers": [
             {"name": "agent", "image": "ghcr.io/acme/agent:1.0", "securityContext": {"privileged": True}}]}}}})],
     [fire("Workload With Host Access In Pod Template", **{"ka.target.resource": "daemonsets"})])
case("Workload With Host Access In Pod Template: a Deployment on the host network fires",
     [ev("patch", "deployments", ns="default", name="web", api_group="apps",
         req={"spec": {"template": {"spec": {"hostNetwork": True}}}})],
     [fire("Workload With Host Access In Pod Template", **{"ka.verb": "patch"})])
case("Workload With Host Access In Pod Template: near miss, an unprivileged deployment",
     [ev("create", "deployments", ns="default", api_group="apps",
         req={"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
             {"name": "web", "image": "nginx:1.27.0", "securityContext": {"privileged": False}}]}}}})], [])
case("Node Modified Or Deleted By User fires",
     [ev("delete", "nodes", ns=None, name="ip-10-0-12-14")],
     [fire("Node Modified Or Deleted By User", **{"ka.target.name": "ip-10-0-12-14"})])
case("Node Modified Or Deleted By User: near miss, the kubelet updating its node status",
     [ev("patch", "nodes", ns=None, name="ip-10-0-12-14", sub="status", user="system:node:ip-10-0-12-14", groups=["system:nodes"])], [])

# --- windowed rules (rules/k8s_audit_windowed.yaml) -------------------------------------
def secret_create(at, user="ci-bot", name=None):
    return ev("create", "secrets", ns="ci", user=user, at=at,
              req={"kind": "Secret", "metadata": {"name": name or "s-%d" % at}, "type": "Opaque"})

case("Secret Creation Rate: three a minute for almost seven minutes fires after 5m and resolves",
     [secret_create(t) for t in range(0, 401, 20)],
     [window("Secret Creation Rate", "firing", {"ka.user.name": "ci-bot"}, "2024-10-29T12:05:20Z"),
      window("Secret Creation Rate", "resolved", {"ka.user.name": "ci-bot"}, "2024-10-29T12:07:20Z")])
case("Secret Creation Rate: near miss, the same pace for only four minutes",
     [secret_create(t) for t in range(0, 221, 20)], [])

def secret_get(at, name, user="mallory@example.com"):
    return ev("get", "secrets", ns="shop", name=name, user=user, at=at)

case("Secret Enumeration: fifteen different secrets in ten minutes fires",
     [secret_get(i * 40, "secret-%02d" % i) for i in range(15)],
     [window("Secret Enumeration", "firing", {"ka.user.name": "mallory@example.com"}),
      window("Secret Enumeration", "resolved", {"ka.user.name": "mallory@example.com"})])
case("Secret Enumeration: near miss, fourteen secrets read again and again",
     [secret_get(i * 10, "secret-%02d" % (i % 14)) for i in range(60)], [])

def denied(at, resource="pods", user="intruder"):
    return ev("get", resource, ns="default", name="x", user=user, at=at, code=403, decision="forbid",
              reason="")

case("Forbidden Burst: twenty 403s in half a minute fires",
     [denied(i * 1.5) for i in range(20)],
     [window("Forbidden Burst", "firing", {"ka.user.name": "intruder"}),
      window("Forbidden Burst", "resolved", {"ka.user.name": "intruder"})])
case("Forbidden Burst: near miss, nineteen",
     [denied(i * 1.5) for i in range(19)], [])

TYPES = ["pods", "secrets", "configmaps", "services", "deployments", "daemonsets", "nodes", "roles",
         "rolebindings", "serviceaccounts", "ingresses", "jobs", "cronjobs", "persistentvolumeclaims",
         "statefulsets", "replicasets", "endpoints", "events", "limitranges", "resourcequotas", "networkpolicies"]

case("Forbidden On Many Resource Types: ten types in two minutes fires",
     [denied(i * 12, TYPES[i]) for i in range(10)],
     [window("Forbidden On Many Resource Types", "firing", {"ka.user.name": "intruder"}),
      window("Forbidden On Many Resource Types", "resolved", {"ka.user.name": "intruder"})])
case("Forbidden On Many Resource Types: near miss, nine types",
     [denied(i * 12, TYPES[i % 9]) for i in range(18)], [])

def secret_refused(at, name, code=403, user="mallory@example.com"):
    return ev("get", "secrets", ns="shop", name=name, user=user, at=at, code=code,
              decision="forbid" if code == 403 else "allow", reason="")

case("Secret Access Denied Burst: ten refused or missing secrets in five minutes fires",
     [secret_refused(i * 30, "guess-%02d" % i, 403 if i % 2 else 404) for i in range(10)],
     [window("Secret Access Denied Burst", "firing", {"ka.user.name": "mallory@example.com"}),
      window("Secret Access Denied Burst", "resolved", {"ka.user.name": "mallory@example.com"})])
case("Secret Access Denied Burst: near miss, nine",
     [secret_refused(i * 30, "guess-%02d" % i) for i in range(9)], [])

def listed(at, resource, user="recon@example.com"):
    return ev("list", resource, ns="default", user=user, at=at)

case("Multi-Resource Discovery: twenty resource types listed in two minutes fires",
     [listed(i * 6, TYPES[i]) for i in range(20)],
     [window("Multi-Resource Discovery", "firing", {"ka.user.name": "recon@example.com"}),
      window("Multi-Resource Discovery", "resolved", {"ka.user.name": "recon@example.com"})])
case("Multi-Resource Discovery: near miss, a controller listing everything",
     [listed(i * 6, TYPES[i], user="system:kube-controller-manager") for i in range(21)], [])

def pod_delete(at, ns):
    return ev("delete", "pods", ns=ns, name="web-%d" % int(at * 10), user="bob@example.com", at=at)

case("Mass Deletion Of Workloads: twenty pods of one namespace in a minute fires",
     [pod_delete(i * 3, "shop") for i in range(20)],
     [window("Mass Deletion Of Workloads", "firing", {"ka.user.name": "bob@example.com", "ka.target.namespace": "shop"}),
      window("Mass Deletion Of Workloads", "resolved", {"ka.user.name": "bob@example.com", "ka.target.namespace": "shop"})])
case("Mass Deletion Of Workloads: near miss, twenty split over two namespaces",
     [pod_delete(i * 3, "shop" if i % 2 else "cart") for i in range(20)], [])

case("Audit Stream Silent: a ten-minute gap fires, the next event resolves",
     [ev("get", "pods", ns="default", name="p", at=t) for t in [0, 30, 60, 700]],
     [window("Audit Stream Silent", "firing", {}, "2024-10-29T12:11:00Z"),
      window("Audit Stream Silent", "resolved", {}, "2024-10-29T12:11:40Z")])
case("Audit Stream Silent: near miss, the end of a file is not silence",
     [ev("get", "pods", ns="default", name="p", at=t) for t in [0, 300, 599]], [])

# --- input handling ------------------------------------------------------------------
case("Noise: kubectl logs --timestamps prefixes and klog lines around an event",
     ["I1029 12:22:15.861424       1 controller.go:615] quota admission added evaluator",
      "2024-10-29T12:22:15.861424123Z " + json.dumps(
          ev("create", "pods", ns="shop", name="web-7d4b9", sub="exec", stage="ResponseStarted", code=101, uri=exec_uri),
          separators=(",", ":")),
      "not json at all {"],
     [fire("Exec Into Pod")])


# --- access to the audit trail (issue 19); last, so earlier cases keep their ids ---
case("Audit Log Read Through The API: kubectl logs of the API server fires",
     [ev("get", "pods", ns="kube-system", name="kube-apiserver-cp-1", sub="log",
         uri="/api/v1/namespaces/kube-system/pods/kube-apiserver-cp-1/log?container=kube-apiserver&follow=true")],
     [fire("Audit Log Read Through The API", **{"ka.target.name": "kube-apiserver-cp-1", "ka.target.resource": "pods"})])
case("Audit Log Read Through The API: a node's /logs/ through the node proxy fires",
     [ev("get", "nodes", ns=None, name="cp-1", sub="proxy", uri="/api/v1/nodes/cp-1/proxy/logs/kubernetes/audit/audit.log")],
     [fire("Audit Log Read Through The API", **{"ka.target.resource": "nodes", "ka.uri": "/api/v1/nodes/cp-1/proxy/logs/kubernetes/audit/audit.log"})])
case("Audit Log Read Through The API: near miss, the logs of CoreDNS in kube-system",
     [ev("get", "pods", ns="kube-system", name="coredns-5d78c9869d-x2x4k", sub="log")], [])
case("Audit Log Read Through The API: near miss, a pod named kube-apiserver-* outside kube-system",
     [ev("get", "pods", ns="shop", name="kube-apiserver-mock", sub="log")], [])
case("Pod Log Access Granted In Kube-System: a Role granting pods/log there fires",
     [role("Role", [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}], ns="kube-system")],
     [fire("Pod Log Access Granted In Kube-System", **{"ka.req.role.rules.resources": ["pods", "pods/log"]})])
case("Pod Log Access Granted In Kube-System: a RoleBinding to view there fires",
     [binding("view", res="rolebindings", ns="kube-system")],
     [fire("Pod Log Access Granted In Kube-System", **{"ka.req.binding.role": "view", "ka.target.resource": "rolebindings"})])
case("Pod Log Access Granted In Kube-System: near miss, the same Role in another namespace",
     [role("Role", [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}], ns="shop")], [])
case("Pod Log Access Granted In Kube-System: near miss, a RoleBinding to view in another namespace",
     [binding("view", res="rolebindings", ns="shop")], [])

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "rules", "tests", "k8s_audit_test.yaml")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("# Tests of the shipped rules (rules/k8s_audit.yaml): `saker test` runs them.\n")
        f.write("# Generated by scripts/gen_rule_tests.py; edit that script, not this file.\n")
        f.write("# No rule_files: the tests run against the rules embedded in the binary.\n")
        f.write("tests:\n")
        for name, events, expect in CASES:
            f.write("  - name: %s\n" % json.dumps(name))
            f.write("    events:\n")
            for e in events:
                if isinstance(e, str):
                    f.write("      - %s\n" % json.dumps(e))
                else:
                    f.write("      - %s\n" % json.dumps(e, separators=(", ", ": ")))
            if not expect:
                f.write("    expect: []\n")
            else:
                f.write("    expect:\n")
                for x in expect:
                    f.write("      - rule: %s\n" % json.dumps(x["rule"]))
                    for k in ("state", "time", "key", "output_fields"):
                        if k in x:
                            f.write("        %s: %s\n" % (k, json.dumps(x[k])))
    print("wrote %d tests to %s" % (len(CASES), os.path.relpath(out, root)))


if __name__ == "__main__":
    main()
