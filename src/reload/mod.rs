//! Reloading the rules of a running `saker run` (DESIGN 5 "Reload"). A
//! reload is asked for by SIGHUP ([`on_sighup`]), by `POST /-/reload` on the
//! metrics listener, or by a change to a loaded config or rules file, which
//! the reload thread ([`start`]) notices by polling them every
//! [`POLL_INTERVAL`] ([`watch`]). That thread loads and checks the new set
//! completely, with the caller's [`Load`] (the binary reads its command
//! line and config file again), away from the events. A set that fails to
//! load is logged with its positions and counted ([`status`]), and the
//! running rules stay. A set that loads goes to the driver as a
//! [`Pending`], which switches the engine to it between two batches
//! ([`crate::engine::Engine::reload`]) and reports what it did; only then
//! is an HTTP request answered.

pub mod status;
pub mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::engine::reload::ReloadReport;
use crate::engine::RuleMatching;
use crate::rules::RuleSet;
use status::Status;
use watch::Watch;

/// How often the loaded config and rules files are looked at. A change is
/// reloaded once two polls in a row see the same new content: one to two
/// intervals after the last write.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Signal,
    Http,
    Files,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Signal => "sighup",
            Cause::Http => "http",
            Cause::Files => "file change",
        }
    }
}

/// A rule set loaded and checked completely, ready to run.
pub struct Loaded {
    pub rules: RuleSet,
    pub matching: RuleMatching,
    /// Config keys whose value differs from the running one but needs a
    /// restart; the running value stays.
    pub restart: Vec<String>,
    /// The files and directories to watch from now on.
    pub watch: Vec<PathBuf>,
    /// Warnings of the load, one line each (`file:line:col: warning…`).
    pub warnings: Vec<String>,
}

/// Why a reload was refused; the running rules stay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{summary}")]
pub struct Failure {
    /// One line: the first error at its `file:line:col`, and how many more.
    pub summary: String,
    /// Every diagnostic as `saker check` prints it.
    pub rendered: String,
}

impl Failure {
    /// A failure that is one message.
    pub fn message(text: impl Into<String>) -> Failure {
        let summary = text.into();
        Failure {
            rendered: summary.clone(),
            summary,
        }
    }
}

/// Loads the config and rules again; called on the reload thread.
pub type Load = Box<dyn FnMut() -> Result<Loaded, Failure> + Send>;

/// What a reload request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The new rules run: what the reload did.
    Applied(String),
    /// The load failed, for this reason; the running rules stay.
    Failed(String),
    /// The run is ending: nothing will switch to the new rules.
    Ending,
}

struct Request {
    cause: Cause,
    reply: Option<oneshot::Sender<Answer>>,
}

/// Asks for reloads: held by the SIGHUP handler and the metrics listener.
#[derive(Debug, Clone)]
pub struct Trigger {
    tx: mpsc::Sender<Request>,
    status: Arc<Status>,
}

impl Trigger {
    /// Asks for a reload; false if reloads are over (the run is ending).
    pub fn request(&self, cause: Cause) -> bool {
        self.tx.send(Request { cause, reply: None }).is_ok()
    }

    /// Asks for a reload and for its outcome, answered once the new rules
    /// run (or the load failed); `None` if reloads are over.
    pub fn request_answer(&self, cause: Cause) -> Option<oneshot::Receiver<Answer>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Request {
            cause,
            reply: Some(reply),
        });
        sent.is_ok().then_some(rx)
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }
}

/// A new rule set on its way to the driver.
pub struct Pending {
    pub rules: Arc<RuleSet>,
    pub matching: RuleMatching,
    cause: Cause,
    requested: Instant,
    loaded_in: Duration,
    replies: Vec<oneshot::Sender<Answer>>,
    status: Arc<Status>,
}

impl Pending {
    /// A set to switch to, asked for by `cause`, counted in `status`.
    pub fn new(rules: RuleSet, matching: RuleMatching, cause: Cause, status: Arc<Status>) -> Self {
        Pending {
            rules: Arc::new(rules),
            matching,
            cause,
            requested: Instant::now(),
            loaded_in: Duration::ZERO,
            replies: Vec::new(),
            status,
        }
    }

    /// The driver runs the new set: counted, logged, answered. `applying`
    /// is how long the switch took, `window_keys` the keys held after it.
    pub fn applied(self, report: &ReloadReport, applying: Duration, window_keys: usize) {
        self.status.succeeded();
        tracing::info!(
            cause = self.cause.as_str(),
            rules = self.rules.rules.len(),
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            kept_state = ?report.kept,
            unchanged = report.unchanged,
            streams = report.streams,
            window_keys,
            alerts_of_rules_let_go = report.alerts,
            load_seconds = format!("{:.6}", self.loaded_in.as_secs_f64()),
            apply_seconds = format!("{:.6}", applying.as_secs_f64()),
            seconds = format!("{:.6}", self.requested.elapsed().as_secs_f64()),
            "rules reloaded"
        );
        let answer = format!(
            "rules reloaded: {} rules; added {:?}, removed {:?}, changed {:?}, kept with state {:?}\n",
            self.rules.rules.len(),
            report.added,
            report.removed,
            report.changed,
            report.kept
        );
        for reply in self.replies {
            let _ = reply.send(Answer::Applied(answer.clone()));
        }
    }
}

/// Where the driver takes reloads from, between batches. Dropping it ends
/// the reload thread.
pub struct Reloads {
    rx: mpsc::Receiver<Pending>,
    stop: Arc<AtomicBool>,
}

impl Reloads {
    /// A channel to hand sets to the driver by hand (tests), and its end.
    pub fn channel() -> (mpsc::Sender<Pending>, Reloads) {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        (tx, Reloads { rx, stop })
    }

    /// A set waiting to be switched to, if any.
    pub fn take(&mut self) -> Option<Pending> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Reloads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the reload thread: it loads with `load` on every request, and
/// when the files of `watch` change (looked at every `poll`).
pub fn start(
    load: Load,
    watch: Vec<PathBuf>,
    status: Arc<Status>,
    poll: Duration,
) -> std::io::Result<(Trigger, Reloads)> {
    let (req_tx, req_rx) = mpsc::channel();
    let (tx, reloads) = Reloads::channel();
    let worker = Worker {
        load,
        requests: req_rx,
        pending: tx,
        watch: Watch::new(watch),
        status: status.clone(),
        stop: reloads.stop.clone(),
        poll,
    };
    std::thread::Builder::new()
        .name("saker-reload".into())
        .spawn(move || worker.run())?;
    Ok((Trigger { tx: req_tx, status }, reloads))
}

/// The reload thread's state.
struct Worker {
    load: Load,
    requests: mpsc::Receiver<Request>,
    pending: mpsc::Sender<Pending>,
    watch: Watch,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    poll: Duration,
}

/// How often the thread looks whether the driver is gone.
const TICK: Duration = Duration::from_millis(200);

impl Worker {
    fn run(mut self) {
        let mut last_poll = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let wait = self.poll.saturating_sub(last_poll.elapsed()).min(TICK);
            let mut requests = match self.requests.recv_timeout(wait) {
                Ok(r) => vec![r],
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Requests that came meanwhile are answered by the same reload.
            requests.extend(self.requests.try_iter());
            let cause = match requests.first() {
                Some(r) => Some(r.cause),
                None if last_poll.elapsed() >= self.poll => {
                    last_poll = Instant::now();
                    self.watch.poll().then_some(Cause::Files)
                }
                None => None,
            };
            if let Some(cause) = cause {
                let replies = requests.into_iter().filter_map(|r| r.reply).collect();
                self.reload(cause, replies);
            }
        }
    }

    fn reload(&mut self, cause: Cause, replies: Vec<oneshot::Sender<Answer>>) {
        let requested = Instant::now();
        // What the files hold now is what this load reads.
        self.watch.loading();
        match (self.load)() {
            Ok(loaded) => self.loaded(loaded, cause, requested, replies),
            Err(f) => {
                self.status.failed(&f.summary);
                tracing::error!(
                    cause = cause.as_str(),
                    error = %f.summary,
                    diagnostics = %f.rendered,
                    "reload failed: the running rules stay"
                );
                for reply in replies {
                    let why = format!("reload failed: {}\n{}", f.summary, f.rendered);
                    let _ = reply.send(Answer::Failed(why));
                }
            }
        }
    }

    fn loaded(
        &mut self,
        loaded: Loaded,
        cause: Cause,
        requested: Instant,
        replies: Vec<oneshot::Sender<Answer>>,
    ) {
        for w in &loaded.warnings {
            tracing::warn!(cause = cause.as_str(), "reloaded rules: {w}");
        }
        if !loaded.restart.is_empty() {
            tracing::warn!(
                settings = ?loaded.restart,
                "changed settings need a restart: running on with their old values"
            );
        }
        if loaded.watch != self.watch.paths() {
            self.watch.set_paths(loaded.watch);
        }
        let pending = Pending {
            rules: Arc::new(loaded.rules),
            matching: loaded.matching,
            cause,
            requested,
            loaded_in: requested.elapsed(),
            replies,
            status: self.status.clone(),
        };
        if let Err(mpsc::SendError(p)) = self.pending.send(pending) {
            for reply in p.replies {
                let _ = reply.send(Answer::Ending);
            }
        }
    }
}

/// Asks for a reload on every SIGHUP, until dropped.
pub struct Sighup {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Handles SIGHUP from now on: each one asks `trigger` for a reload.
pub fn on_sighup(trigger: Trigger) -> std::io::Result<Sighup> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("saker-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                if !trigger.request(Cause::Signal) {
                    return;
                }
            }
        })?;
    Ok(Sighup {
        handle,
        thread: Some(thread),
    })
}

impl Drop for Sighup {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;
    use std::sync::Mutex;

    const RULES: &str = "- rule: R\n  desc: d\n  condition: ka.verb = get\n  output: o\n  priority: INFO\n  source: k8s_audit\n";

    fn loaded(watch: Vec<PathBuf>) -> Loaded {
        Loaded {
            rules: crate::rules::load(&[RuleSource::Embedded("r.yaml", RULES)])
                .rules
                .expect("rules"),
            matching: RuleMatching::First,
            restart: Vec::new(),
            watch,
            warnings: Vec::new(),
        }
    }

    /// A load that fails while `broken` holds, and counts its calls.
    fn load(broken: Arc<AtomicBool>, calls: Arc<Mutex<u32>>, watch: Vec<PathBuf>) -> Load {
        Box::new(move || {
            *calls.lock().unwrap() += 1;
            match broken.load(Ordering::Relaxed) {
                true => Err(Failure {
                    summary: "r.yaml:1:3: error[yaml]: bad".into(),
                    rendered: "error[yaml]: bad\n  --> r.yaml:1:3\n".into(),
                }),
                false => Ok(loaded(watch.clone())),
            }
        })
    }

    fn wait_for(reloads: &mut Reloads) -> Pending {
        let start = Instant::now();
        loop {
            if let Some(p) = reloads.take() {
                return p;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no reload came");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_request_is_answered_once_the_driver_applied_it_or_the_load_failed() {
        let (broken, calls) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let status = Status::new();
        let (trigger, mut reloads) = start(
            load(broken.clone(), Arc::clone(&calls), Vec::new()),
            Vec::new(),
            status.clone(),
            Duration::from_millis(20),
        )
        .unwrap();
        let mut answer = trigger.request_answer(Cause::Http).unwrap();
        let pending = wait_for(&mut reloads);
        assert_eq!(pending.rules.rules.len(), 1);
        assert!(answer.try_recv().is_err(), "not answered before it runs");
        let report = ReloadReport {
            added: vec!["R".into()],
            ..ReloadReport::default()
        };
        pending.applied(&report, Duration::from_millis(1), 0);
        let Answer::Applied(text) = answer.blocking_recv().unwrap() else {
            panic!("not applied");
        };
        assert!(text.contains("added [\"R\"]"), "{text}");
        assert_eq!(status.counts(), (1, 0));
        broken.store(true, Ordering::Relaxed);
        let answer = trigger.request_answer(Cause::Http).unwrap();
        let Answer::Failed(text) = answer.blocking_recv().unwrap() else {
            panic!("not failed");
        };
        assert!(text.contains("r.yaml:1:3: error[yaml]: bad"), "{text}");
        assert_eq!(status.counts(), (1, 1));
        assert!(status.readiness().contains("r.yaml:1:3"));
        assert!(reloads.take().is_none(), "a failed load reaches no driver");
        assert_eq!(*calls.lock().unwrap(), 2);
        // Once the driver is gone, requests are refused or not applied.
        drop(reloads);
        broken.store(false, Ordering::Relaxed);
        if let Some(rx) = trigger.request_answer(Cause::Http) {
            assert!(!matches!(rx.blocking_recv(), Ok(Answer::Applied(_))));
        }
    }

    #[test]
    fn a_changed_file_reloads_once_it_is_stable() {
        let dir = std::env::temp_dir().join(format!("saker-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.yaml");
        std::fs::write(&file, RULES).unwrap();
        let calls: Arc<Mutex<u32>> = Arc::default();
        let (_trigger, mut reloads) = start(
            load(Arc::default(), calls.clone(), vec![file.clone()]),
            vec![file.clone()],
            Status::new(),
            Duration::from_millis(20),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(reloads.take().is_none(), "nothing changed");
        std::fs::write(&file, format!("{RULES}# edited\n")).unwrap();
        let pending = wait_for(&mut reloads);
        assert_eq!(pending.cause, Cause::Files);
        // Loaded once; the files are what was loaded now.
        std::thread::sleep(Duration::from_millis(100));
        assert!(reloads.take().is_none());
        assert_eq!(*calls.lock().unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
