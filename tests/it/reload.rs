//! Reloading rules while running: the real binary follows a file with
//! `--follow` and a metrics listener on loopback, and the tests edit its
//! rules (in place, as a ConfigMap's symlink swap, through the config file),
//! send SIGHUP with kill(1), and POST /-/reload with curl.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::net::*;
use super::*;

/// Six denials of one user within a minute fire it.
const BURST: &str = r#"- rule: Burst
  desc: denials
  condition: ka.response.code = 403
  aggregate: count >= 6 over 1m by ka.user.name
  output: "%ka.user.name denied %agg.value times"
  priority: WARNING
  source: k8s_audit
"#;

const EXEC: &str = r#"- rule: Exec
  desc: exec
  condition: ka.target.subresource = exec
  output: "exec into %ka.target.name"
  priority: NOTICE
  source: k8s_audit
"#;

/// A denied list by `user`, stamped now (so a quiet stream's wall-clock
/// watermark never makes it late).
fn denied(user: &str, n: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{user}-{n}","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{{"username":"{user}"}},"objectRef":{{"resource":"secrets","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"{}"}}"#,
        now_rfc3339()
    )
}

/// An exec into `pod`, stamped now.
fn exec(pod: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"exec-{pod}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/shop/pods/{pod}/exec","verb":"create","user":{{"username":"alice"}},"objectRef":{{"resource":"pods","namespace":"shop","name":"{pod}","subresource":"exec"}},"responseStatus":{{"code":101}},"stageTimestamp":"{}"}}"#,
        now_rfc3339()
    )
}

/// A scratch directory for one test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saker-it-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `saker run --follow DIR/audit.log` with a metrics listener; its alerts
/// collected, its log in DIR/saker.log.
struct Saker {
    child: Killed,
    alerts: mpsc::Receiver<serde_json::Value>,
    port: u16,
    dir: PathBuf,
}

impl Saker {
    fn start(dir: &Path, args: &[&str]) -> Saker {
        let port = free_port();
        let log = std::fs::File::create(dir.join("saker.log")).unwrap();
        std::fs::File::create(dir.join("audit.log")).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let mut child = saker()
            .args(["run", "--input"])
            .arg(dir.join("audit.log"))
            .args(["--follow", "--lateness", "1s", "--metrics-listen", &listen])
            .args(["--log-level", "info", "--no-summary"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let (tx, alerts) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let alert = serde_json::from_str(&line).expect("an alert line");
                if tx.send(alert).is_err() {
                    break;
                }
            }
        });
        let saker = Saker {
            child: Killed(child),
            alerts,
            port,
            dir: dir.to_path_buf(),
        };
        let up = wait_until(Duration::from_secs(10), || http_ok(port, "/healthz"));
        assert!(up.is_some(), "saker did not come up:\n{}", saker.log());
        saker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("saker.log")).unwrap_or_default()
    }

    fn append(&self, lines: &[String]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("audit.log"))
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f.flush().unwrap();
    }

    /// Waits until /metrics has the line `want`.
    fn wait_metric(&self, want: &str) {
        let found = wait_until(Duration::from_secs(15), || {
            http_ok(self.port, "/metrics").filter(|m| m.lines().any(|l| l == want))
        });
        if found.is_none() {
            let metrics = http_ok(self.port, "/metrics").unwrap_or_default();
            let reload: Vec<&str> = metrics.lines().filter(|l| l.contains("reload")).collect();
            panic!("no `{want}` in /metrics: {reload:#?}\nlog:\n{}", self.log());
        }
    }

    /// The alerts that come within `limit`, at most `n`.
    fn alerts(&self, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        let start = Instant::now();
        let mut got = Vec::new();
        while got.len() < n && start.elapsed() < limit {
            if let Ok(a) = self.alerts.recv_timeout(Duration::from_millis(100)) {
                got.push(a);
            }
        }
        got
    }

    fn pid(&self) -> String {
        self.child.0.id().to_string()
    }
}

fn rules_of(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| format!("{}: {}", a["rule"].as_str().unwrap(), a["output_fields"]))
        .collect()
}

/// POST /-/reload with curl: (status, body).
fn post_reload(port: u16) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/-/reload"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("curl printed the status");
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_reload_adds_a_rule_while_a_windowed_rule_keeps_counting() {
    let dir = scratch("adds");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, BURST).unwrap();
    let saker = Saker::start(&dir, &["--rules", rules.to_str().unwrap()]);
    // Half the window's denials, and an exec that no rule looks at yet.
    saker.append(&(0..3).map(|n| denied("mallory", n)).collect::<Vec<_>>());
    saker.append(&[exec("before")]);
    saker.wait_metric(r#"saker_rule_matches_total{rule="Burst"} 3"#);
    std::fs::write(&rules, format!("{BURST}{EXEC}")).unwrap();
    saker.wait_metric("saker_reloads_total 1");
    let log = saker.log();
    assert!(
        log.contains("rules reloaded") && log.contains(r#"added=["Exec"]"#),
        "{log}"
    );
    assert!(log.contains(r#"kept_state=["Burst"]"#), "{log}");
    // The other half, and an exec the new rule sees.
    saker.append(&(3..6).map(|n| denied("mallory", n)).collect::<Vec<_>>());
    saker.append(&[exec("after")]);
    let alerts = saker.alerts(2, Duration::from_secs(15));
    let got = rules_of(&alerts);
    assert_eq!(got.len(), 2, "{got:?}\n{}", saker.log());
    assert!(
        got.contains(&r#"Exec: {"ka.target.name":"after"}"#.to_string()),
        "{got:?}"
    );
    let burst = alerts
        .iter()
        .find(|a| a["rule"] == "Burst")
        .expect("Burst fired");
    let output = burst["output"].as_str().unwrap();
    assert!(
        output.ends_with(": Warning mallory denied 6 times"),
        "{output}"
    );
    assert_eq!(burst["aggregate"]["state"], "firing");
    // Nothing else: no alert for the exec before the reload, no second Burst.
    assert!(saker.alerts(1, Duration::from_secs(3)).is_empty());
    saker.wait_metric(r#"saker_rule_matches_total{rule="Burst"} 6"#);
    saker.wait_metric(r#"saker_rule_matches_total{rule="Exec"} 1"#);
    drop(saker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_and_post_reload_each_reload() {
    let dir = scratch("triggers");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, BURST).unwrap();
    let saker = Saker::start(&dir, &["--rules", rules.to_str().unwrap()]);
    let status = Command::new("kill")
        .args(["-HUP", &saker.pid()])
        .status()
        .unwrap();
    assert!(status.success());
    saker.wait_metric("saker_reloads_total 1");
    assert!(saker.log().contains(r#"cause="sighup""#), "{}", saker.log());
    // A change reloaded by the request, before the file poll sees it: the
    // answer comes once the new rules run, and the poll finds nothing new.
    std::fs::write(&rules, format!("{BURST}{EXEC}")).unwrap();
    let (code, body) = post_reload(saker.port);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#"added ["Exec"]"#), "{body}");
    saker.wait_metric("saker_reloads_total 2");
    saker.append(&[exec("web")]);
    let got = rules_of(&saker.alerts(1, Duration::from_secs(10)));
    assert_eq!(
        got,
        [r#"Exec: {"ka.target.name":"web"}"#],
        "{}",
        saker.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    saker.wait_metric("saker_reloads_total 2");
    let (code, _) = {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{}/-/reload", saker.port))
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).to_string(), ())
    };
    assert_eq!(code, "405", "GET does not reload");
    drop(saker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_rules_file_keeps_the_running_rules_until_it_is_fixed() {
    let dir = scratch("broken");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, EXEC).unwrap();
    let saker = Saker::start(&dir, &["--rules", rules.to_str().unwrap()]);
    // A misspelt field on line 3, column 14.
    let broken = EXEC.replace("ka.target.subresource", "ka.target.subresourc");
    std::fs::write(&rules, &broken).unwrap();
    saker.wait_metric("saker_reload_failures_total 1");
    saker.wait_metric("saker_reload_last_success 0");
    saker.wait_metric("saker_reloads_total 0");
    let at = format!("{}:3:14", rules.display());
    let log = saker.log();
    assert!(
        log.contains("reload failed: the running rules stay"),
        "{log}"
    );
    assert!(
        log.contains(&format!("{at}: error[unknown-field]")),
        "{log}"
    );
    assert!(
        log.contains("did you mean `ka.target.subresource`?"),
        "{log}"
    );
    let (status, body) = http_get(saker.port, "/readyz").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "ready: the old rules run");
    assert!(body.contains("last reload failed at "), "{body}");
    assert!(body.contains(&at), "{body}");
    // The old rules still alert.
    saker.append(&[exec("web")]);
    let got = rules_of(&saker.alerts(1, Duration::from_secs(10)));
    assert_eq!(got, [r#"Exec: {"ka.target.name":"web"}"#]);
    // POST says why, with the position, as a 500.
    let (code, body) = post_reload(saker.port);
    assert_eq!(code, 500, "{body}");
    assert!(body.contains(&at), "{body}");
    saker.wait_metric("saker_reload_failures_total 2");
    // Fixed: reloaded, and ready says nothing more.
    std::fs::write(&rules, format!("{EXEC}{BURST}")).unwrap();
    saker.wait_metric("saker_reloads_total 1");
    saker.wait_metric("saker_reload_last_success 1");
    assert_eq!(http_ok(saker.port, "/readyz").unwrap(), "ready\n");
    drop(saker);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `files` as the kubelet updates a ConfigMap volume: into a new
/// timestamped directory, then `..data` swapped to it by a rename.
fn configmap_update(dir: &Path, version: u32, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let name = format!("..2024_10_29_12_00_0{version}.{version}");
    std::fs::create_dir(dir.join(&name)).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(&name).join(file), text).unwrap();
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(&name, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn a_configmap_symlink_swap_reloads() {
    let dir = scratch("configmap");
    let mount = dir.join("rules.d");
    std::fs::create_dir(&mount).unwrap();
    configmap_update(&mount, 1, &[("rules.yaml", BURST)]);
    let saker = Saker::start(&dir, &["--rules", mount.to_str().unwrap()]);
    saker.append(&[exec("before")]);
    configmap_update(&mount, 2, &[("rules.yaml", &format!("{BURST}{EXEC}"))]);
    saker.wait_metric("saker_reloads_total 1");
    saker.append(&[exec("after")]);
    let got = rules_of(&saker.alerts(2, Duration::from_secs(5)));
    assert_eq!(
        got,
        [r#"Exec: {"ka.target.name":"after"}"#],
        "{}",
        saker.log()
    );
    drop(saker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_rule_whose_condition_changed_starts_fresh() {
    let dir = scratch("changed");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, BURST).unwrap();
    let saker = Saker::start(&dir, &["--rules", rules.to_str().unwrap()]);
    saker.append(&(0..4).map(|n| denied("mallory", n)).collect::<Vec<_>>());
    saker.wait_metric(r#"saker_rule_matches_total{rule="Burst"} 4"#);
    let changed = BURST.replace("= 403", "in (401, 403)");
    std::fs::write(&rules, changed).unwrap();
    saker.wait_metric("saker_reloads_total 1");
    assert!(
        saker.log().contains(r#"changed=["Burst"]"#),
        "{}",
        saker.log()
    );
    // Four before and four after would be eight; the new rule has four.
    saker.append(&(4..8).map(|n| denied("mallory", n)).collect::<Vec<_>>());
    saker.wait_metric(r#"saker_rule_matches_total{rule="Burst"} 8"#);
    let got = saker.alerts(1, Duration::from_secs(4));
    assert!(got.is_empty(), "{:?}", rules_of(&got));
    // Two more make six since the reload.
    saker.append(&(8..10).map(|n| denied("mallory", n)).collect::<Vec<_>>());
    let got = saker.alerts(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", saker.log());
    assert!(got[0]["output"]
        .as_str()
        .unwrap()
        .ends_with("mallory denied 6 times"));
    drop(saker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_file_change_reloads_and_names_what_needs_a_restart() {
    let dir = scratch("config");
    std::fs::write(dir.join("burst.yaml"), BURST).unwrap();
    std::fs::write(dir.join("exec.yaml"), EXEC).unwrap();
    let config = dir.join("saker.yaml");
    std::fs::write(&config, "rules: [burst.yaml]\nmax-keys: 1000\n").unwrap();
    let saker = Saker::start(&dir, &["--config", config.to_str().unwrap()]);
    std::fs::write(
        &config,
        "rules: [burst.yaml, exec.yaml]\nmax-keys: 2000\nrule-matching: all\n",
    )
    .unwrap();
    saker.wait_metric("saker_reloads_total 1");
    let log = saker.log();
    assert!(log.contains(r#"settings=["max-keys"]"#), "{log}");
    assert!(log.contains("need a restart"), "{log}");
    saker.append(&[exec("web")]);
    let got = rules_of(&saker.alerts(1, Duration::from_secs(10)));
    assert_eq!(got, [r#"Exec: {"ka.target.name":"web"}"#]);
    // The newly listed file is watched too.
    std::fs::write(dir.join("exec.yaml"), EXEC.replace("exec into", "exec in")).unwrap();
    saker.wait_metric("saker_reloads_total 2");
    drop(saker);
    std::fs::remove_dir_all(&dir).unwrap();
}
