//! `saker report`: the page's data against `saker run` on the bundled
//! sample, and the page opened in a real headless Chromium (from a file,
//! with every host name unresolvable): its lanes, counts and charts are in
//! the DOM, and its network log shows no request the page made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{root, saker};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saker-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample() -> PathBuf {
    root().join("examples/audit-sample.jsonl")
}

/// `saker report` on the sample; the page.
fn report(out: &Path, extra: &[&str]) -> String {
    let o = saker()
        .args(["report", "--input"])
        .arg(sample())
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out).unwrap()
}

/// The JSON the page carries.
fn data(page: &str) -> serde_json::Value {
    let open = "<script type=\"application/json\" id=\"saker-report-data\">";
    let start = page.find(open).expect("data script") + open.len();
    let end = start + page[start..].find("</script>").unwrap();
    serde_json::from_str(&page[start..end]).unwrap()
}

/// Alerts per rule that `saker run` prints on the sample.
fn run_counts() -> BTreeMap<String, u64> {
    let o = saker()
        .args(["run", "--input"])
        .arg(sample())
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut counts = BTreeMap::new();
    for a in super::alerts(&o) {
        *counts
            .entry(a["rule"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn report_data_matches_what_run_alerts_on_the_sample() {
    let dir = temp_dir("golden");
    let page = report(
        &dir.join("r.html"),
        &["--policy", "examples/audit-policy.yaml"],
    );
    let d = data(&page);
    let run = run_counts();
    assert_eq!(run.values().sum::<u64>(), 45, "the sample's alerts changed");
    let by_rule: BTreeMap<String, u64> =
        serde_json::from_value(d["alerts_by_rule"].clone()).unwrap();
    assert_eq!(by_rule, run);
    assert_eq!(d["alerts_total"], 45);
    assert_eq!(d["health"]["events"], 426);
    let kinds: Vec<&str> = d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"windowed") && kinds.contains(&"sequence"),
        "{kinds:?}"
    );
    // Windowed rules carry their values at firing and resolve against the threshold.
    let burst = d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Forbidden Burst")
        .unwrap();
    let points = burst["keys"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{burst}");
    assert!(d["policy"]["table"].as_str().unwrap().contains("rule"));
    // Every identity alerts in the sum.
    let ids: u64 = d["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["alerts"].as_u64().unwrap())
        .sum();
    assert_eq!(ids, 45);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Chromium, or `None` outside CI when it is not installed.
fn chromium() -> Option<PathBuf> {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return Some(PathBuf::from(c));
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "chromium is not installed (scripts/test installs Debian's chromium)"
    );
    eprintln!("skipping: chromium is not installed");
    None
}

/// Opens `page` headless: its DOM, and the URLs of the requests the page
/// itself started (initiator "null" is a file:// page's opaque origin;
/// Chromium's own background requests have none).
fn open(chromium: &Path, page: &Path, dir: &Path, extra: &[&str]) -> (String, Vec<String>) {
    let netlog = dir.join("net.json");
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).unwrap()).unwrap();
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["params"]["initiator"] == "null")
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .filter(|u| !u.starts_with("file:"))
        .collect();
    urls.dedup();
    (String::from_utf8_lossy(&o.stdout).into_owned(), urls)
}

#[test]
fn the_page_opens_in_chromium_with_its_lanes_and_charts_and_no_network() {
    let Some(chromium) = chromium() else { return };
    let dir = temp_dir("browser");
    let page_path = dir.join("report.html");
    let page = report(&page_path, &[]);
    for remote in ["src=\"http", "href=\"http", "url(", "@import"] {
        assert!(!page.contains(remote), "the page refers to {remote}");
    }
    let counts = run_counts();
    let (dom, requests) = open(&chromium, &page_path, &dir, &["--dump-dom"]);
    assert!(requests.is_empty(), "the page made requests: {requests:?}");
    // A lane per rule, with run's count.
    let lanes: Vec<(String, u64)> = dom
        .split("<details class=\"lane\"")
        .skip(1)
        .map(|l| {
            let attr = |name: &str| {
                let s = l.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                l[s..s + l[s..].find('"').unwrap()].to_string()
            };
            (
                attr("data-rule").replace("&amp;", "&"),
                attr("data-count").parse().unwrap(),
            )
        })
        .collect();
    let mut by_rule: Vec<(String, u64)> = counts.into_iter().collect();
    let mut seen = lanes.clone();
    by_rule.sort();
    seen.sort();
    assert_eq!(seen, by_rule);
    assert!(dom.contains("<strong id=\"alerts-total\">45</strong>"));
    // The charts: the timeline's marks have hover text and link to a lane.
    let timeline = &dom[dom.find("id=\"timeline-chart\"").unwrap()..];
    let timeline = &timeline[..timeline.find("</figure>").unwrap()];
    assert!(timeline.contains("<svg"));
    assert!(timeline.matches("<title>").count() >= lanes.len());
    assert!(timeline.contains("<a href=\"#rule-0\">"));
    assert!(dom.contains("class=\"chart windowed\" data-rule=\"Forbidden Burst\""));
    assert!(dom.contains("class=\"chart sequence\""));
    for id in ["identities", "health", "sequences", "windowed"] {
        assert!(dom.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    // The screenshot is taken (and is a PNG).
    let shot = dir.join("shot.png");
    open(
        &chromium,
        &page_path,
        &dir,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_network_check_sees_a_page_that_loads_from_elsewhere() {
    let Some(chromium) = chromium() else { return };
    let dir = temp_dir("control");
    let page = dir.join("remote.html");
    std::fs::write(
        &page,
        "<html><body><img src=\"http://example.test/x.png\"></body></html>",
    )
    .unwrap();
    let (_, requests) = open(&chromium, &page, &dir, &["--dump-dom"]);
    assert_eq!(requests, vec!["http://example.test/x.png".to_string()]);
    std::fs::remove_dir_all(&dir).unwrap();
}
