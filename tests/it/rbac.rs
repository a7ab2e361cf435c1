//! `saker rbac who-can` on RBAC objects written for these tests
//! (tests/rbac/), each case's expected answer taken from the Kubernetes RBAC
//! documentation's rules for the API server's authorizer.

use super::*;

fn who_can(args: &[&str]) -> Output {
    let mut all = vec!["rbac", "who-can"];
    all.extend_from_slice(args);
    saker()
        .current_dir(root())
        .args(&all)
        .output()
        .expect("run saker")
}

/// `(kind, namespace/name or name)` of each subject, and the JSON.
fn subjects(args: &[&str]) -> (Vec<String>, serde_json::Value) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json"]);
    let o = who_can(&all);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let names = v["subjects"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| match s["namespace"].as_str() {
            Some(ns) => format!(
                "{} {ns}/{}",
                s["kind"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            ),
            None => format!(
                "{} {}",
                s["kind"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            ),
        })
        .collect();
    (names, v)
}

fn via(v: &serde_json::Value, name: &str) -> Vec<serde_json::Value> {
    v["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not among {v}"))["via"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn who_can_read_the_api_servers_logs() {
    let (names, v) = subjects(&["get", "pods/log", "-n", "kube-system", "tests/rbac/cluster"]);
    // What the API server's RBAC authorizer allows; carol (pods/*), dave
    // (pods), erin-and-frank (the apps group, list), devs (bound in
    // default), heidi (nodes/proxy) and mallory (a missing role) may not.
    assert_eq!(
        names,
        [
            "User alice",
            "User bob",
            "User grace",
            "Group ops",
            "Group security",
            "Group system:masters",
            "ServiceAccount kube-system/fluentd",
            "ServiceAccount kube-system/log-shipper",
            "ServiceAccount monitoring/prom",
        ]
    );
    assert_eq!(
        via(&v, "system:masters"),
        [
            serde_json::json!({"binding": "(implicit)", "role": "(superuser)"}),
            serde_json::json!({"binding": "ClusterRoleBinding/cluster-admin", "role": "ClusterRole/cluster-admin"}),
        ]
    );
    assert_eq!(
        via(&v, "bob"),
        [
            serde_json::json!({"binding": "RoleBinding/kube-system/apiserver-logs", "role": "Role/kube-system/apiserver-logs", "resource_names": ["kube-apiserver-cp-1"]})
        ]
    );
    assert_eq!(
        via(&v, "fluentd"),
        [
            serde_json::json!({"binding": "RoleBinding/kube-system/view-ops", "role": "ClusterRole/view", "from": "ClusterRole/aggregate-to-view"})
        ]
    );
    assert_eq!(via(&v, "security")[0]["from"], "ClusterRole/sec-logs");

    let o = who_can(&["get", "pods/log", "-n", "kube-system", "tests/rbac/cluster"]);
    assert_golden(
        &golden("rbac/who-can-get-pods-log-kube-system.txt"),
        &String::from_utf8_lossy(&o.stdout),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("RoleBinding/kube-system/orphan refers to Role/kube-system/gone, which is not in the files"),
        "{err}"
    );
}

#[test]
fn names_namespaces_and_scope_change_the_answer() {
    let dir = "tests/rbac/cluster";
    // Named: bob's resourceNames rule grants in full, or not at all.
    let (names, v) = subjects(&[
        "get",
        "pods/log",
        "-n",
        "kube-system",
        "--name",
        "kube-apiserver-cp-1",
        dir,
    ]);
    assert!(names.contains(&"User bob".to_string()), "{names:?}");
    assert!(via(&v, "bob")[0].get("resource_names").is_none(), "{v}");
    let (names, _) = subjects(&[
        "get",
        "pods/log",
        "-n",
        "kube-system",
        "--name",
        "coredns-1",
        dir,
    ]);
    assert!(!names.contains(&"User bob".to_string()), "{names:?}");
    // In default, devs' RoleBinding counts and kube-system's do not.
    let (names, _) = subjects(&["get", "pods/log", "-n", "default", dir]);
    assert!(names.contains(&"Group devs".to_string()), "{names:?}");
    assert!(!names.contains(&"Group ops".to_string()), "{names:?}");
    // Cluster-wide: only ClusterRoleBindings (pods-only's third rule is a
    // `list` of pods/log, so dave and erin-and-frank may list).
    let (names, _) = subjects(&["list", "pods/log", dir]);
    assert_eq!(
        names,
        [
            "User alice",
            "User dave",
            "User grace",
            "Group erin-and-frank",
            "Group system:masters",
            "ServiceAccount kube-system/log-shipper"
        ]
    );
    // Every namespace: RoleBindings count in their own.
    let (names, v) = subjects(&["get", "pods/log", "-A", dir]);
    assert!(
        names.contains(&"Group devs".to_string()) && names.contains(&"Group ops".to_string()),
        "{names:?}"
    );
    assert_eq!(
        via(&v, "devs")[0]["binding"],
        "RoleBinding/default/view-dev"
    );
    // nodes/proxy: heidi, not security (dev-logs is not aggregated).
    let (names, _) = subjects(&["get", "nodes/proxy", dir]);
    assert_eq!(names, ["User heidi", "Group system:masters"]);
    // Non-resource URLs, and groups given as kubectl does.
    let (names, _) = subjects(&["get", "/logs/kube-apiserver.log", dir]);
    assert_eq!(names, ["User heidi", "Group system:masters"]);
    let (names, _) = subjects(&["get", "deployments.apps", "-n", "kube-system", dir]);
    assert_eq!(names, ["Group system:masters"]);
    let (names, _) = subjects(&["delete", "pods/log", "-n", "kube-system", dir]);
    assert_eq!(names, ["User grace", "Group system:masters"]);
}

#[test]
fn files_one_by_one_answer_as_the_directory_does() {
    let (by_dir, _) = subjects(&["get", "pods/log", "-n", "kube-system", "tests/rbac/cluster"]);
    let (by_file, _) = subjects(&[
        "get",
        "pods/log",
        "-n",
        "kube-system",
        "tests/rbac/cluster/export.yaml",
        "tests/rbac/cluster/more.yaml",
    ]);
    assert_eq!(by_dir, by_file);
}

#[test]
fn malformed_objects_are_placed_with_a_caret() {
    let o = who_can(&[
        "get",
        "pods/log",
        "-n",
        "kube-system",
        "tests/rbac/bad.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert_golden(
        &golden("rbac/bad.stderr.txt"),
        &String::from_utf8_lossy(&o.stderr),
    );
    let o = who_can(&["get", "pods/log", "tests/rbac/no-such-file.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let o = who_can(&["get", "/healthz", "-n", "x", "tests/rbac/cluster"]);
    assert_eq!(o.status.code(), Some(2));
}
