//! `saker report`: the page's data against `saker run` on the bundled
//! sample (and with run's input and window flags, stdin, a managed
//! cluster's shape and a config file), the events behind its alerts against
//! the input, and the page opened in a real headless Chromium (from a
//! file, with every host name unresolvable): its lanes, counts and charts
//! are in the DOM, an alert opened from its link shows its events, and its
//! network log shows no request the page made.

use std::collections::{BTreeMap, HashMap};
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
    counts(&o)
}

/// Alerts per rule in run's output.
fn counts(o: &std::process::Output) -> BTreeMap<String, u64> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut counts = BTreeMap::new();
    for a in super::alerts(o) {
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

/// The sample's events by audit ID.
fn sample_events() -> HashMap<String, serde_json::Value> {
    std::fs::read_to_string(sample())
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| Some((e["auditID"].as_str()?.to_string(), e)))
        .collect()
}

fn rule<'a>(d: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no lane {name}"))
}

/// Seconds since the epoch of an RFC 3339 time of the sample (UTC, `Z`).
fn seconds(t: &str) -> f64 {
    let (date, clock) = t.trim_end_matches('Z').split_once('T').unwrap();
    assert_eq!(date, "2025-06-01", "the sample is one day's");
    let p: Vec<f64> = clock.split(':').map(|x| x.parse().unwrap()).collect();
    p[0] * 3600.0 + p[1] * 60.0 + p[2]
}

/// An event row of the page is the input's event of its audit ID.
fn is_input_event(row: &serde_json::Value, input: &HashMap<String, serde_json::Value>) {
    let ev = &input[row["auditID"].as_str().unwrap()];
    assert_eq!(row["verb"], ev["verb"], "{row}");
    assert_eq!(row["user"], ev["user"]["username"], "{row}");
    assert_eq!(
        row["code"],
        ev["responseStatus"]["code"].to_string(),
        "{row}"
    );
    let resource = match ev["objectRef"]["subresource"].as_str() {
        Some(sub) => format!("{}/{sub}", ev["objectRef"]["resource"].as_str().unwrap()),
        None => ev["objectRef"]["resource"].as_str().unwrap().to_string(),
    };
    assert_eq!(row["resource"], resource.as_str(), "{row}");
    assert_eq!(row["namespace"], ev["objectRef"]["namespace"], "{row}");
    let stamp = ev["stageTimestamp"].as_str().unwrap();
    assert!((seconds(row["time"].as_str().unwrap()) - seconds(stamp)).abs() < 1e-6);
}

#[test]
fn windowed_keys_have_their_values_per_tick_and_alerts_their_events() {
    let dir = temp_dir("behind");
    let d = data(&report(&dir.join("r.html"), &[]));
    let input = sample_events();
    // Forbidden Burst (count >= 20 over 1m by user): the deployer's key,
    // drawn first as it fired, has a value at every tick it was evaluated
    // at: up by one a denial at a time to its peak, down to zero as the
    // denials leave the window.
    let burst = rule(&d, "Forbidden Burst");
    let key = &burst["keys"][0];
    assert_eq!(key["key"], "system:serviceaccount:ci:deployer");
    let points: Vec<(i64, f64)> = serde_json::from_value(key["points"].clone()).unwrap();
    let peak = key["peak"].as_f64().unwrap();
    assert!(peak >= 20.0, "{key}");
    assert_eq!(points.len() as u64, key["evaluated"].as_u64().unwrap());
    assert!(points.len() as f64 >= 2.0 * peak, "{} points", points.len());
    assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        points.windows(2).all(|w| (w[1].1 - w[0].1).abs() <= 1.0),
        "one denial a tick at most here"
    );
    assert_eq!(points.iter().map(|p| p.1).fold(0.0, f64::max), peak);
    assert_eq!(points.last().unwrap().1, 0.0);
    // Its alerts are on the line, and the firing period spans them.
    let alerts: Vec<(i64, f64, bool)> = serde_json::from_value(key["alerts"].clone()).unwrap();
    assert_eq!(
        alerts.iter().map(|a| a.2).collect::<Vec<_>>(),
        [true, false]
    );
    for a in &alerts {
        assert!(points.contains(&(a.0, a.1)), "{a:?} not on the line");
    }
    let periods: Vec<(i64, Option<i64>)> = serde_json::from_value(key["periods"].clone()).unwrap();
    assert_eq!(periods, [(alerts[0].0, Some(alerts[1].0))]);
    // The firing alert carries the denials in its window: the key's
    // events, 403s, within the minute before it, as many as it counted.
    let firing = &burst["listed"][0];
    assert_eq!(firing["state"], "firing");
    let events = firing["events"].as_array().unwrap();
    assert_eq!(firing["events_total"].as_f64().unwrap(), alerts[0].1);
    assert_eq!(events.len(), 20);
    let at = seconds(firing["time"].as_str().unwrap());
    for e in events {
        is_input_event(e, &input);
        assert_eq!(e["user"], "system:serviceaccount:ci:deployer");
        assert_eq!(e["code"], "403");
        let t = seconds(e["time"].as_str().unwrap());
        assert!(
            t > at - 60.0 && t < at + 1.0,
            "{e} outside the window ending {at}"
        );
    }
    // Per-event rules: the alert's own event.
    let exec = rule(&d, "Exec Into Pod");
    for a in exec["listed"].as_array().unwrap() {
        let events = a["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{a}");
        is_input_event(&events[0], &input);
        assert_eq!(events[0]["time"], a["time"]);
        assert!(events[0]["resource"] == "pods/exec", "{a}");
    }
    // A sequence: its steps' events, in step order.
    let seq = rule(&d, "Exec Then Events Deleted");
    let steps = seq["listed"][0]["events"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|e| e["step"].as_str().unwrap()).collect();
    let declared: Vec<&str> = seq["sequences"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(names, declared);
    for e in steps {
        is_input_event(e, &input);
    }
    // Nothing was capped on the sample.
    assert_eq!(d["caps"], serde_json::json!([]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_takes_runs_input_and_window_flags_and_its_config_file() {
    let dir = temp_dir("flags");
    let out = dir.join("r.html");
    let by_rule = |page: &str| -> BTreeMap<String, u64> {
        serde_json::from_value(data(page)["alerts_by_rule"].clone()).unwrap()
    };
    for flags in [
        &["--rule-matching", "all"][..],
        &["--max-keys", "1"],
        &["--resolution", "5s", "--lateness", "0s"],
        &["--rules", "tests/golden/run/two_rules.yaml"],
    ] {
        let run = saker()
            .current_dir(root())
            .args(["run", "--input"])
            .arg(sample())
            .args(flags)
            .output()
            .unwrap();
        let page = report(&out, flags);
        assert_eq!(by_rule(&page), counts(&run), "{flags:?}");
        if flags[0] == "--max-keys" {
            assert!(data(&page)["health"]["evictions"].as_u64().unwrap() > 0);
        }
    }
    // Standard input, the default.
    let text = std::fs::read(sample()).unwrap();
    let o = super::run_with_stdin(&["report", "--out", out.to_str().unwrap()], &text);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&out).unwrap();
    assert_eq!(by_rule(&page), run_counts());
    assert_eq!(data(&page)["input"], "stdin");
    // A managed cluster's shape (EKS through CloudWatch Logs), opened as run opens it.
    let eks = super::golden("managed/eks-cloudwatch.input");
    let run = saker().args(["run", "--input"]).arg(&eks).output().unwrap();
    let o = saker()
        .args(["report", "--input"])
        .arg(&eks)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(!counts(&run).is_empty());
    assert_eq!(by_rule(&page), counts(&run));
    // run's config file: its input, rules and window settings, not its
    // outputs or listeners (nor no-summary: the report's table is printed);
    // a flag given overrides the file.
    let config = dir.join("saker.yaml");
    std::fs::write(
        &config,
        format!(
            "input: {}
rules: [{}, {}]
rule-matching: all
max-keys: 1000
no-summary: true
alertmanager: [http://127.0.0.1:9]
metrics-listen: 127.0.0.1:0
output: text
",
            sample().display(),
            super::golden("run/two_rules.yaml").display(),
            root().join("rules/k8s_audit.yaml").display()
        ),
    )
    .unwrap();
    let run = saker()
        .args(["run", "--input"])
        .arg(sample())
        .args(["--rule-matching", "all", "--rules"])
        .arg(super::golden("run/two_rules.yaml"))
        .arg("--rules")
        .arg(root().join("rules/k8s_audit.yaml"))
        .output()
        .unwrap();
    for (extra, matching) in [
        (&[][..], "all"),
        (&["--rule-matching", "first"][..], "first"),
    ] {
        let o = saker()
            .arg("report")
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.contains("Any Exec"), "the table is printed: {table}");
        let page = std::fs::read_to_string(&out).unwrap();
        if matching == "all" {
            assert_eq!(by_rule(&page), counts(&run));
        } else {
            assert_ne!(by_rule(&page), counts(&run), "--rule-matching first given");
        }
    }
    // A key that is no flag of run is refused, as run refuses it.
    std::fs::write(
        &config,
        "inputs: x
",
    )
    .unwrap();
    let o = saker()
        .args(["report", "--config"])
        .arg(&config)
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown key `inputs`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The read position of `pid`'s open file `path`, from /proc.
fn read_position(pid: u32, path: &Path) -> Option<u64> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() == Some(path) {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                    .ok()?;
            let pos = info.lines().find_map(|l| l.strip_prefix("pos:"))?;
            return pos.trim().parse().ok();
        }
    }
    None
}

#[test]
fn a_followed_file_is_reported_when_the_report_is_stopped() {
    let dir = temp_dir("follow");
    let input = dir.join("audit.log");
    std::fs::copy(sample(), &input).unwrap();
    let size = std::fs::metadata(&input).unwrap().len();
    let out = dir.join("r.html");
    let child = saker()
        .args(["report", "--follow", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once it has read the whole file (and is waiting for more).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read_position(child.id(), &input) != Some(size) {
        assert!(
            std::time::Instant::now() < deadline,
            "the file was not read"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let d = data(&std::fs::read_to_string(&out).unwrap());
    // What was read is on the page: every alert run raises on the file,
    // but the resolves of windowed alerts still firing (a followed file
    // has no end).
    let events = d["health"]["events"].as_u64().unwrap();
    assert!(events > 0 && events <= 426, "{events}");
    let by_rule: BTreeMap<String, u64> =
        serde_json::from_value(d["alerts_by_rule"].clone()).unwrap();
    let run = run_counts();
    for (rule, n) in &by_rule {
        assert!(*n <= run[rule], "{rule}: {n} > {}", run[rule]);
    }
    if events == 426 {
        for r in d["rules"].as_array().unwrap() {
            if r["kind"] != "windowed" {
                assert_eq!(
                    r["alerts"].as_u64(),
                    run.get(r["name"].as_str().unwrap()).copied()
                );
            }
        }
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("alerts  rule"));
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
    assert!(timeline.contains("<a href=\"#alert-0-0\">"));
    assert!(dom.contains("class=\"chart sequence\""));
    // The windowed chart: each key a line through its evaluated ticks, the
    // firing period shaded (with its hover text), the alerts linking to
    // their events.
    let d = data(&page);
    let burst = rule(&d, "Forbidden Burst");
    let figure = &dom[dom
        .find("class=\"chart windowed\" data-rule=\"Forbidden Burst\"")
        .unwrap()..];
    let figure = &figure[..figure.find("</figure>").unwrap()];
    let lines: Vec<usize> = figure
        .split("<polyline")
        .skip(1)
        .map(|p| {
            let s = p.find("points=\"").unwrap() + 8;
            p[s..s + p[s..].find('"').unwrap()]
                .split_whitespace()
                .count()
        })
        .collect();
    let ticks = burst["keys"][0]["points"].as_array().unwrap().len();
    assert!(
        lines.iter().any(|n| *n >= 2 * ticks - 1),
        "no step line through the {ticks} ticks: {lines:?}"
    );
    let shaded = figure.matches("opacity=\"0.15\"").count();
    assert_eq!(shaded, 1, "one firing period");
    assert!(figure.contains("<title>system:serviceaccount:ci:deployer: firing from"));
    let lane = d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["name"] == "Forbidden Burst")
        .unwrap();
    let anchor = format!("alert-{lane}-0");
    assert!(figure.contains(&format!("<a href=\"#{anchor}\">")));

    for id in ["identities", "health", "sequences", "windowed"] {
        assert!(dom.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    // Following the firing alert's link opens it (and its rule's list)
    // with the table of its events: the input's audit IDs, in the DOM.
    let (dom, requests) = open(
        &chromium,
        &PathBuf::from(format!("{}#{anchor}", page_path.display())),
        &dir,
        &["--dump-dom"],
    );
    assert!(requests.is_empty(), "{requests:?}");
    let opened = &dom[dom.find(&format!("id=\"{anchor}\"")).unwrap()..];
    let tag = &opened[..opened.find('>').unwrap()];
    assert!(tag.contains("open=\"\""), "{tag}");
    let opened = &opened[..opened.find("</details>").unwrap()];
    let events = burst["listed"][0]["events"].as_array().unwrap();
    assert_eq!(opened.matches("<tr class=\"event\">").count(), events.len());
    for e in events {
        assert!(opened.contains(&format!("<td>{}</td>", e["auditID"].as_str().unwrap())));
    }
    let lane_tag = &dom[dom.find(&format!("id=\"rule-{lane}\"")).unwrap()..];
    assert!(lane_tag[..lane_tag.find('>').unwrap()].contains("open=\"\""));
    // Another alert, not opened, has no table yet (written when opened).
    let other = &dom[dom.find(&format!("id=\"alert-{lane}-1\"")).unwrap()..];
    assert!(!other[..other.find("</details>").unwrap()].contains("<table"));
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
