//! A seeded generator of realistic audit events for benchmarks: about 70%
//! Metadata events (~1 KB) and 30% RequestResponse events (3–5 KB, with pod
//! bodies and managedFields), Go-style escaping (`\u0026`), API-server key order
//! and RFC 3339 times with six fractional digits.

pub struct Gen {
    state: u64,
    n: u64,
    /// Share of RequestResponse events, in percent (30 by default).
    pub rr_percent: u64,
    /// Pods in each RequestResponse body: 1 is a pod, more a pod list (as
    /// a `list` answer logged at RequestResponse carries).
    pub list_items: usize,
}

const USERS: &[(&str, &str)] = &[
    ("alice@example.com", r#"["devs","system:authenticated"]"#),
    ("bob@example.com", r#"["sre","system:authenticated"]"#),
    (
        "system:kube-controller-manager",
        r#"["system:authenticated"]"#,
    ),
    (
        "system:serviceaccount:kube-system:replicaset-controller",
        r#"["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]"#,
    ),
    (
        "system:node:ip-10-0-12-14.eu-west-1.compute.internal",
        r#"["system:nodes","system:authenticated"]"#,
    ),
    (
        "system:serviceaccount:monitoring:prometheus-k8s",
        r#"["system:serviceaccounts","system:serviceaccounts:monitoring","system:authenticated"]"#,
    ),
    ("system:kube-scheduler", r#"["system:authenticated"]"#),
    ("ci-bot", r#"["ci","system:authenticated"]"#),
];
const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "frontend",
    "backend",
    "ci",
    "argocd",
];
const RESOURCES: &[(&str, &str, &[&str])] = &[
    (
        "pods",
        "",
        &["get", "list", "watch", "create", "delete", "patch"],
    ),
    ("secrets", "", &["get", "list", "watch", "create"]),
    ("configmaps", "", &["get", "list", "watch", "update"]),
    ("leases", "coordination.k8s.io", &["get", "update"]),
    ("deployments", "apps", &["get", "list", "patch", "update"]),
    (
        "endpointslices",
        "discovery.k8s.io",
        &["list", "watch", "update"],
    ),
    ("nodes", "", &["get", "list", "patch"]),
    ("events", "", &["create", "patch", "list"]),
    ("serviceaccounts", "", &["get", "create"]),
    (
        "clusterroles",
        "rbac.authorization.k8s.io",
        &["get", "list", "create"],
    ),
];
const UAS: &[&str] = &[
    "kubectl/v1.30.2 (linux/amd64) kubernetes/39683505",
    "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/leader-election",
    "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
    "Prometheus/2.53.0",
];

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen {
            state: seed | 1,
            n: 0,
            rr_percent: 30,
            list_items: 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[(self.next() % 16) as usize]))
            .collect()
    }

    /// One event as a JSON line (without the newline).
    pub fn event(&mut self) -> String {
        self.n += 1;
        let rr = self.next() % 100 < self.rr_percent;
        let (user, groups) = *self.pick(USERS);
        let ns = *self.pick(NAMESPACES);
        let (resource, group, verbs) = *self.pick(RESOURCES);
        let verb = *self.pick(verbs);
        let ua = *self.pick(UAS);
        let name = format!(
            "{}-{}-{}",
            &resource[..resource.len() - 1],
            self.hex(10),
            self.hex(5)
        );
        let api = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/v1")
        };
        let named = !matches!(verb, "list" | "watch" | "create");
        let mut uri = format!("{api}/namespaces/{ns}/{resource}");
        if named {
            uri.push('/');
            uri.push_str(&name);
        }
        if verb == "list" || verb == "watch" {
            uri.push_str("?limit=500\\u0026resourceVersion=0");
        }
        let secs = 1_717_200_000 + self.n / 50;
        let micros = (self.n * 7919) % 1_000_000;
        let ts = format_ts(secs, micros);
        let code = if verb == "create" {
            201
        } else if self.next() % 50 == 0 {
            403
        } else {
            200
        };
        let decision = if code == 403 { "forbid" } else { "allow" };
        let mut out = String::with_capacity(if rr { 4500 } else { 1100 });
        out.push_str(&format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"{}","auditID":"{}-{}-4{}-8{}-{}","stage":"ResponseComplete","requestURI":"{uri}","verb":"{verb}","user":{{"username":"{user}","uid":"{}","groups":{groups}}},"sourceIPs":["10.0.{}.{}"],"userAgent":"{ua}","objectRef":{{"resource":"{resource}","namespace":"{ns}","#,
            if rr { "RequestResponse" } else { "Metadata" },
            self.hex(8), self.hex(4), self.hex(3), self.hex(3), self.hex(12), self.hex(16),
            self.next() % 255, self.next() % 255,
        ));
        if named {
            out.push_str(&format!(r#""name":"{name}","#));
        }
        if !group.is_empty() {
            out.push_str(&format!(r#""apiGroup":"{group}","#));
        }
        out.push_str(&format!(
            r#""apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"#
        ));
        if rr {
            let mut body = self.pod_body(&name, ns);
            if self.list_items > 1 {
                let items: Vec<String> = (0..self.list_items)
                    .map(|_| self.pod_body(&name, ns))
                    .collect();
                body = format!(
                    r#"{{"kind":"PodList","apiVersion":"v1","items":[{}]}}"#,
                    items.join(",")
                );
            }
            out.push_str(&format!(
                r#""requestObject":{body},"responseObject":{body},"#
            ));
        }
        out.push_str(&format!(
            r#""requestReceivedTimestamp":"{ts}","stageTimestamp":"{ts}","annotations":{{"authorization.k8s.io/decision":"{decision}","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:{}\" of ClusterRole \"edit\" to Group \"devs\""}}}}"#,
            self.hex(6)
        ));
        out
    }

    fn pod_body(&mut self, name: &str, ns: &str) -> String {
        let image = *self.pick(&[
            "nginx:1.27.0",
            "ghcr.io/acme/payments:v2.14.1",
            "redis:7.2-alpine",
            "registry.k8s.io/pause:3.9",
        ]);
        format!(
            r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"{ns}","uid":"{}","resourceVersion":"{}","labels":{{"app":"web","pod-template-hash":"{}"}},"annotations":{{"kubectl.kubernetes.io/restartedAt":"2024-06-01T10:00:00Z"}},"managedFields":[{{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2024-06-01T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{{"f:metadata":{{"f:labels":{{".":{{}},"f:app":{{}},"f:pod-template-hash":{{}}}},"f:ownerReferences":{{".":{{}},"k:{{\"uid\":\"{}\"}}":{{}}}}}},"f:spec":{{"f:containers":{{"k:{{\"name\":\"app\"}}":{{".":{{}},"f:image":{{}},"f:imagePullPolicy":{{}},"f:name":{{}},"f:ports":{{".":{{}},"k:{{\"containerPort\":8080,\"protocol\":\"TCP\"}}":{{".":{{}},"f:containerPort":{{}},"f:protocol":{{}}}}}},"f:resources":{{".":{{}},"f:limits":{{".":{{}},"f:cpu":{{}},"f:memory":{{}}}}}}}}}},"f:dnsPolicy":{{}},"f:restartPolicy":{{}},"f:schedulerName":{{}},"f:securityContext":{{}},"f:terminationGracePeriodSeconds":{{}}}}}}}},{{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2024-06-01T10:00:03Z","fieldsType":"FieldsV1","fieldsV1":{{"f:status":{{"f:conditions":{{}},"f:containerStatuses":{{}},"f:hostIP":{{}},"f:phase":{{}},"f:podIP":{{}},"f:startTime":{{}}}}}},"subresource":"status"}}]}},"spec":{{"volumes":[{{"name":"kube-api-access-{}","projected":{{"sources":[{{"serviceAccountToken":{{"expirationSeconds":3607,"path":"token"}}}},{{"configMap":{{"name":"kube-root-ca.crt","items":[{{"key":"ca.crt","path":"ca.crt"}}]}}}}]}}}}],"containers":[{{"name":"app","image":"{image}","ports":[{{"containerPort":8080,"protocol":"TCP"}}],"resources":{{"limits":{{"cpu":"500m","memory":"256Mi"}},"requests":{{"cpu":"100m","memory":"128Mi"}}}},"env":[{{"name":"LOG_LEVEL","value":"info"}},{{"name":"DB_HOST","value":"postgres.{ns}.svc.cluster.local"}}],"securityContext":{{"runAsNonRoot":true,"allowPrivilegeEscalation":false,"capabilities":{{"drop":["ALL"]}}}},"imagePullPolicy":"IfNotPresent"}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","securityContext":{{"runAsUser":1000,"fsGroup":2000}},"schedulerName":"default-scheduler","tolerations":[{{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}}]}},"status":{{"phase":"Pending","qosClass":"Burstable"}}}}"#,
            self.hex(32),
            self.next() % 10_000_000,
            self.hex(10),
            self.hex(32),
            self.hex(5)
        )
    }
}

fn format_ts(secs: u64, micros: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // 1717200000 is 2024-06-01T00:00:00Z; the benchmark stays within June.
    let day = days - 19_875 + 1;
    format!(
        "2024-06-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
