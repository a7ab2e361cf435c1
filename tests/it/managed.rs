//! Managed clusters' envelopes: golden conversions of every shape through
//! `saker decode` (tests/golden/managed/NAME.input → NAME.expected: the
//! events, then chosen fields of each, then the summary), and the outside
//! corpus's GKE and AKS records (tests/corpus/managed/, see its README)
//! read field by field.

use serde_json::{json, Value};

use saker::event::{decode_document, Skip};
use saker::fields::extract::{extract, Val};
use saker::fields::{lookup, Arg};

use super::*;

/// The fields the goldens print for each event.
const FIELDS: &str = "ka.cluster,ka.auditid,ka.stage,ka.verb,ka.uri,ka.user.name,ka.user.groups,\
ka.sourceips,ka.useragent,ka.target.resource,ka.target.subresource,ka.target.namespace,\
ka.target.name,ka.response.code,ka.response.reason,ka.auth.decision,ka.req.container.privileged,evt.datetime";

fn decode_output(input: &str) -> String {
    let run = |extra: &[&str]| {
        let mut args = vec!["decode", "--input", input];
        args.extend_from_slice(extra);
        let out = saker()
            .args(&args)
            .current_dir(root())
            .output()
            .expect("run saker decode");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let events = run(&[]);
    let fields = run(&["--fields", FIELDS]);
    format!(
        "{}--- fields\n{}--- stderr\n{}",
        String::from_utf8_lossy(&events.stdout),
        String::from_utf8_lossy(&fields.stdout),
        String::from_utf8_lossy(&events.stderr)
    )
}

fn golden_case(name: &str) {
    let input = format!("tests/golden/managed/{name}.input");
    assert_golden(
        &golden(&format!("managed/{name}.expected")),
        &decode_output(&input),
    );
}

#[test]
fn golden_eks_cloudwatch_payloads() {
    golden_case("eks-cloudwatch");
}

#[test]
fn golden_eks_firehose_kinesis_and_lambda_deliveries() {
    golden_case("eks-firehose");
}

#[test]
fn golden_gke_log_entries() {
    golden_case("gke-logentry");
}

#[test]
fn golden_aks_diagnostic_records() {
    golden_case("aks-diagnostic");
}

#[test]
fn every_golden_input_has_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(golden("managed"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".input").map(str::to_string)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "aks-diagnostic",
            "eks-cloudwatch",
            "eks-firehose",
            "gke-logentry"
        ]
    );
}

/// The values of `fields` of every event `doc` holds, and its skips.
type Values = Vec<Option<String>>;

fn values(doc: &[u8], fields: &[&str]) -> (Vec<Values>, Vec<Skip>) {
    let defs: Vec<_> = fields.iter().map(|f| lookup(f).expect("field")).collect();
    let (mut events, mut skips) = (Vec::new(), Vec::new());
    decode_document(
        doc,
        |ev| {
            events.push(
                defs.iter()
                    .map(|d| extract(&ev, d, &Arg::None).map(|v| render(&v)))
                    .collect(),
            )
        },
        |s| skips.push(s),
    );
    (events, skips)
}

fn render(v: &Val) -> String {
    match v {
        Val::List(items) => items.join(","),
        other => other.render().into_owned(),
    }
}

fn corpus(name: &str) -> Vec<Value> {
    let path = root().join("tests/corpus/managed").join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Panther's `2024-02-13 12:45:06.073905000` as RFC 3339; the corpus
/// README's fixed time for none.
fn rfc3339(t: Option<&Value>) -> String {
    let fixed = "2022-11-29T00:09:04.38Z".to_string();
    let Some(t) = t.and_then(Value::as_str) else {
        return fixed;
    };
    let t = t.trim_end_matches('Z').replacen(' ', "T", 1);
    if saker::event::time::parse_rfc3339(&format!("{t}Z")).is_some() {
        format!("{t}Z")
    } else {
        fixed
    }
}

/// Every field of the catalog without an argument, `ka.cluster` aside.
fn ka_fields() -> Vec<&'static str> {
    saker::fields::catalog()
        .iter()
        .filter(|f| f.name.starts_with("ka.") && f.arg == saker::fields::ArgSpec::None)
        .filter(|f| f.name != "ka.cluster")
        .map(|f| f.name)
        .collect()
}

#[test]
fn corpus_aks_records_give_the_ka_values_of_the_event_inside() {
    let fields = ka_fields();
    let records = corpus("aks.jsonl");
    assert_eq!(records.len(), 34);
    for (i, case) in records.iter().enumerate() {
        let mut record = case["event"].clone();
        // The README's repair, inside properties.log.
        let log = record["properties"]["log"].as_str().unwrap();
        let mut inner: Value = serde_json::from_str(log).unwrap();
        let code = inner["responseStatus"]["code"].as_u64();
        let fill = |inner: &mut Value, k: &str, v: Value| {
            if inner.get(k).is_none() {
                inner[k] = v;
            }
        };
        fill(&mut inner, "kind", json!("Event"));
        fill(&mut inner, "apiVersion", json!("audit.k8s.io/v1"));
        let stage = if code == Some(101) {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        fill(&mut inner, "stage", json!(stage));
        fill(&mut inner, "auditID", json!(format!("corpus-aks-{i}")));
        if inner.get("stageTimestamp").is_none() && inner.get("requestReceivedTimestamp").is_none()
        {
            inner["stageTimestamp"] = json!(rfc3339(None));
        }
        record["properties"]["log"] = json!(inner.to_string());
        let (from_record, skips) = values(record.to_string().as_bytes(), &fields);
        let (plain, _) = values(inner.to_string().as_bytes(), &fields);
        assert_eq!(skips, [], "{}", case["case"]);
        assert_eq!(from_record.len(), 1, "{}", case["case"]);
        assert_eq!(from_record, plain, "{}", case["case"]);
        let (cluster, _) = values(record.to_string().as_bytes(), &["ka.cluster"]);
        let want = record["resourceId"]
            .as_str()
            .map(|id| id.rsplit('/').next().unwrap().to_string());
        assert_eq!(cluster[0][0], want, "{}", case["case"]);
    }
}

/// The corpus's GKE records that hold no Kubernetes request: Deployment
/// Manager and Compute Engine calls, and entries with an empty
/// `protoPayload`.
const GKE_WITHOUT_REQUEST: &[(&str, &str)] = &[
    ("gcp_k8s_cron_job_created_or_modified.yml", "create"),
    ("gcp_k8s_cron_job_created_or_modified.yml", "update"),
    ("gcp_k8s_cron_job_created_or_modified.yml", "fail"),
    ("gcp_k8s_ioc_activity.yml", "triggers"),
    ("gcp_k8s_ioc_activity.yml", "ignore"),
    ("gcp_k8s_new_daemonset_deployed.yml", "privilege-escalation"),
    ("gcp_k8s_new_daemonset_deployed.yml", "fail"),
    ("k8s_ioc_activity.yml", "Non-K8s GCP Activity (Excluded)"),
];

/// What a GKE entry says, read the plain way: verb, resource, subresource,
/// namespace, name, user, groups, response code.
fn gke_expected(entry: &Value) -> Values {
    let p = &entry["protoPayload"];
    let s = |v: &Value| v.as_str().map(str::to_string);
    let method = p["methodName"].as_str().unwrap_or_default();
    let verb = method.rsplit('.').next().map(str::to_string);
    let name = p["resourceName"]
        .as_str()
        .or(p["authorizationInfo"][0]["resource"].as_str());
    let mut path: Vec<&str> = name.map_or(vec![], |n| n.split('/').skip(2).collect());
    let mut namespace = None;
    if path.first() == Some(&"namespaces") && path.len() > 1 {
        namespace = Some(path[1].to_string());
        if path.len() > 2 {
            path.drain(..2);
        }
    }
    // Without a resource name, methodName names the resource.
    let resource = path
        .first()
        .map(|r| r.to_string())
        .or_else(|| method.split('.').nth(4).map(str::to_string));
    let status = &p["response"];
    let denied = p["authorizationInfo"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["granted"] == json!(false)));
    let code = if status["kind"] == json!("Status") {
        status["code"].as_u64()
    } else {
        match p["status"]["code"].as_u64() {
            Some(7) => Some(403),
            Some(10) | Some(6) => Some(409),
            Some(5) => Some(404),
            Some(16) => Some(401),
            None | Some(0) if denied => Some(403),
            None | Some(0) if p["status"].is_object() => Some(200),
            _ => None,
        }
    };
    vec![
        verb.filter(|v| {
            ["get", "list", "create", "update", "patch", "delete"].contains(&v.as_str())
        }),
        resource,
        path.get(2).map(|s| s.to_string()),
        namespace,
        path.get(1).map(|s| s.to_string()),
        s(&p["authenticationInfo"]["principalEmail"]),
        p["authenticationInfo"]["groups"].as_array().map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        }),
        code.map(|c| c.to_string()),
    ]
}

#[test]
fn corpus_gke_entries_give_the_ka_values_the_entry_states() {
    let fields = [
        "ka.verb",
        "ka.target.resource",
        "ka.target.subresource",
        "ka.target.namespace",
        "ka.target.name",
        "ka.user.name",
        "ka.user.groups",
        "ka.response.code",
    ];
    let entries = corpus("gke.jsonl");
    assert_eq!(entries.len(), 60);
    let mut without_request = Vec::new();
    let mut read = 0;
    for (i, case) in entries.iter().enumerate() {
        let mut entry = case["event"].clone();
        // The README's repair: the entry's time, an id.
        entry["timestamp"] = json!(rfc3339(entry.get("timestamp")));
        if entry.get("insertId").is_none() {
            entry["insertId"] = json!(format!("corpus-gke-{i}"));
        }
        let (events, skips) = values(entry.to_string().as_bytes(), &fields);
        let rule = case["source"].as_str().unwrap().rsplit('/').next().unwrap();
        let title = case["case"].as_str().unwrap();
        if skips == [Skip::NotAuditEvent] {
            without_request.push((rule.to_string(), title.to_string()));
            continue;
        }
        assert_eq!((events.len(), &skips), (1, &vec![]), "{rule} {title}");
        assert_eq!(events[0], gke_expected(&entry), "{rule} {title}");
        read += 1;
        let (cluster, _) = values(entry.to_string().as_bytes(), &["ka.cluster", "ka.auditid"]);
        let want = entry["resource"]["labels"]["cluster_name"]
            .as_str()
            .map(str::to_string);
        assert_eq!(
            cluster[0],
            [want, entry["insertId"].as_str().map(str::to_string)]
        );
    }
    let expected: Vec<(String, String)> = GKE_WITHOUT_REQUEST
        .iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect();
    assert_eq!(without_request, expected);
    assert_eq!(read, 52);
}

#[test]
fn the_envelope_check_leaves_plain_events_alone() {
    // An audit event is never taken for an envelope, whatever it holds.
    let ev = exec_event("p", 1);
    let (plain, skips) = values(ev.as_bytes(), &["ka.target.name", "ka.cluster"]);
    assert_eq!((plain, skips), (vec![vec![Some("p".into()), None]], vec![]));
}
