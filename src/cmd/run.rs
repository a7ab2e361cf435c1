//! `saker run`: rules loaded, outputs started, the input opened as a
//! [`Source`] and driven through the engine; a summary at the end.

use std::io::{self, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saker::engine::Engine;
use saker::sink::alertmanager::AlertmanagerSink;
use saker::sink::http_output::HttpOutputSink;
use saker::sink::metrics::MetricSource;
use saker::sink::stdout::StdoutSink;
use saker::sink::{AlertSink, Fanout};
use saker::source::clock::SystemClock;
use saker::source::driver::Driver;
use saker::source::http::HttpSource;
use saker::source::kafka::{Counters, KafkaSource, LEAVE_WITHIN};
use saker::source::ranges::RangeSource;
use saker::source::{stream, Input, Source};

use super::progress::ProgressBar;
use crate::cli::run::{InputSettings, ProgressMode, RunSettings};

/// A failure after the settings were accepted: exit code 2.
fn fail(what: impl std::fmt::Display) -> ExitCode {
    eprintln!("saker: {what}");
    ExitCode::from(2)
}

pub fn run(settings: RunSettings) -> ExitCode {
    for file in &settings.config_files {
        tracing::info!(config = %file.display(), "settings read");
    }
    let set = match super::load_rules(&settings.rules, &settings.load) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let enabled = set.rules.iter().filter(|r| r.enabled).count();
    tracing::info!(rules = enabled, "rules loaded");
    // Owned and shared, so that a reload can hand the engine another set.
    let set = Arc::new(set);
    let reload_status = saker::reload::status::Status::new();
    let watched = super::reload::watched(&settings);
    let reload_thread = saker::reload::start(
        super::reload::loader(&settings),
        watched.clone(),
        reload_status.clone(),
        saker::reload::POLL_INTERVAL,
    );
    let (reload, mut reloads) = match reload_thread {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot start the reload thread: {e}")),
    };
    tracing::info!(
        watched = ?watched,
        "reloads on SIGHUP, POST /-/reload and changes to the watched files"
    );
    let stdout_sink = StdoutSink::new(
        io::BufWriter::with_capacity(64 * 1024, io::stdout()),
        settings.format,
    );
    let alertmanager = match settings.alertmanager.clone().map(AlertmanagerSink::start) {
        None => None,
        Some(Ok(am)) => Some(am),
        Some(Err(e)) => return fail(format_args!("--alertmanager: {e}")),
    };
    let http_output = match settings.http_output.clone().map(HttpOutputSink::start) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => return fail(format_args!("--http-output: {e}")),
    };
    let mut sinks: Vec<Box<dyn AlertSink + Send>> = vec![Box::new(stdout_sink)];
    let mut metric_sources: Vec<Arc<dyn MetricSource>> = Vec::new();
    if let Some(am) = &alertmanager {
        sinks.push(Box::new(am.clone()));
        metric_sources.push(Arc::new(am.clone()));
    }
    if let Some(h) = &http_output {
        sinks.push(Box::new(h.clone()));
        metric_sources.push(Arc::new(h.clone()));
    }
    let mut sink: Box<dyn AlertSink + Send> = Box::new(Fanout(sinks));
    let mut engine = Engine::with_options(set, settings.matching, settings.windows);
    let state_metrics = Arc::new(saker::state::metrics::StateMetrics::default());
    let counters = Arc::new(Counters::default());
    let http_counters = Arc::new(saker::source::http::metrics::Counters::default());
    if let Some(m) = &settings.metrics {
        let (with_metrics, registry) = engine.with_metrics(m.labels.clone(), m.max_label_sets);
        engine = with_metrics;
        {
            let mut r = registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.extra.extend(metric_sources);
            r.source = match &settings.input {
                InputSettings::Kafka(_) => "kafka",
                InputSettings::Http(_) => "http",
                InputSettings::Lines {
                    input: saker::source::Input::Stdin,
                    ..
                } => "stdin",
                InputSettings::Lines { .. } => "file",
            }
            .to_string();
            match settings.input {
                InputSettings::Kafka(_) => r.extra.push(counters.clone()),
                InputSettings::Http(_) => r.extra.push(http_counters.clone()),
                InputSettings::Lines { .. } => {}
            }
            if settings.state.is_some() {
                r.extra.push(state_metrics.clone());
            }
            r.extra.push(reload_status.clone());
        }
        let served = saker::sink::metrics::listen_address(&m.listen)
            .and_then(|addr| saker::sink::metrics::serve(addr, registry, Some(reload.clone())));
        match served {
            Ok(addr) => tracing::info!("metrics on http://{addr}/metrics"),
            Err(e) => return fail(format_args!("cannot serve metrics on {}: {e}", m.listen)),
        }
    }
    // Kafka and the receiver stop on SIGTERM and SIGINT: what was taken in
    // is evaluated and acknowledged first.
    // So do stdin and files with a state directory: the state is saved
    // before exiting.
    let _sighup = match saker::reload::on_sighup(reload) {
        Ok(s) => s,
        Err(e) => return fail(format_args!("cannot handle SIGHUP: {e}")),
    };
    let stop = Arc::new(AtomicBool::new(false));
    if !matches!(settings.input, InputSettings::Lines { .. }) || settings.state.is_some() {
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                return fail(format_args!("cannot handle signals: {e}"));
            }
        }
    }
    let mut prepared = match &settings.state {
        None => None,
        Some(st) => match super::state::prepare(
            st,
            &settings.input,
            settings.max_line_bytes,
            &mut engine,
            sink.as_mut(),
            stop.clone(),
            state_metrics.clone(),
        ) {
            Ok(p) => Some(p),
            Err(e) => return fail(e),
        },
    };
    let resumed = prepared.as_mut().and_then(|p| p.lines.take());
    let (mut source, size): (Box<dyn Source + Send>, Option<u64>) = match &settings.input {
        InputSettings::Lines { .. } if resumed.is_some() => match resumed {
            Some(s) => (Box::new(s), None),
            None => return fail("no input"),
        },
        InputSettings::Kafka(k) => {
            let forwarded = engine.repartition(k.partition_key.clone(), k.idle_timeout);
            if !forwarded.is_empty() {
                tracing::info!(
                    rules = ?forwarded,
                    "kafka: stateful rules not grouped by --kafka-partition-key are repartitioned"
                );
            }
            match KafkaSource::open(k, counters.clone(), stop, !forwarded.is_empty()) {
                Ok(s) => (Box::new(s), None),
                Err(e) => return fail(e),
            }
        }
        InputSettings::Http(h) => match HttpSource::start(h, http_counters.clone(), stop) {
            Ok(s) => (Box::new(s), None),
            Err(e) => return fail(e),
        },
        InputSettings::Lines { input, follow } => match ranged_file(input, *follow, &settings) {
            // Read by the workers themselves, range by range.
            Some(path) => match RangeSource::open(path, settings.max_line_bytes) {
                Ok(s) => {
                    let size = s.size();
                    (Box::new(s), Some(size))
                }
                Err(e) => return fail(e),
            },
            None => match stream::open(input, *follow, settings.max_line_bytes) {
                Ok((s, size)) => (Box::new(s), size),
                Err(e) => return fail(e),
            },
        },
    };
    let show_progress = match settings.progress {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => size.is_some() && io::stderr().is_terminal(),
    };
    let mut progress = ProgressBar::new(size, show_progress);
    let start = Instant::now();
    // A request's body is already bounded by --max-body-bytes: a document
    // of it (an EventList, a Firehose record) is not cut at the line limit.
    let max_document = match &settings.input {
        InputSettings::Http(h) => usize::try_from(h.max_body_bytes).unwrap_or(usize::MAX),
        _ => settings.max_line_bytes,
    };
    let mut driver = Driver::new(&mut engine, sink.as_mut(), SystemClock)
        .max_document(max_document)
        .progress(|bytes, events| progress.update(bytes, events))
        .reloads(&mut reloads);
    if let Some(p) = &mut prepared {
        driver = driver.checkpoint(&mut p.keeper);
    }
    let result = driver.run_threads(source.as_mut(), settings.threads);
    drop(driver);
    progress.finish();
    let (described, bytes) = (source.describe(), source.bytes());
    if matches!(settings.input, InputSettings::Kafka(_)) {
        leave_within(source, LEAVE_WITHIN);
    }
    match result {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => return fail(e),
    }
    let drain_start = Instant::now();
    if let Some(am) = &alertmanager {
        // Deliver what is queued before exiting (a file, a closed stdin).
        if !am.drain(settings.alertmanager_drain) {
            eprintln!(
                "saker: {} alert(s) not delivered to Alertmanager before exiting",
                am.stats().queued as usize + am.held()
            );
        }
        let s = am.stats();
        if settings.summary {
            eprintln!(
                "saker: alertmanager: {} alerts sent in {} requests, {} failed requests, {} rejected, {} dropped",
                s.sent, s.attempts, s.failures, s.rejected, s.dropped
            );
        }
    }
    if let Some(h) = &http_output {
        if !h.drain_until(drain_start + settings.http_output_drain) {
            eprintln!(
                "saker: {} alert(s) not delivered to --http-output before exiting",
                h.stats().queued
            );
        }
        let s = h.stats();
        if settings.summary {
            eprintln!(
                "saker: http-output: {} alerts sent in {} requests, {} failed requests, {} rejected, {} dropped",
                s.sent, s.attempts, s.failures, s.rejected, s.dropped
            );
        }
    }
    if settings.summary {
        let seconds = start.elapsed().as_secs_f64();
        eprint!("{}", engine.summary(&described, bytes, seconds));
        match settings.input {
            InputSettings::Kafka(_) => eprintln!("saker: kafka: {}", counters.describe()),
            InputSettings::Http(_) => {
                let answers: Vec<String> = http_counters
                    .by_status()
                    .iter()
                    .map(|(code, n)| format!("{n} x {code}"))
                    .collect();
                eprintln!("saker: http: answered {}", answers.join(", "));
            }
            InputSettings::Lines { .. } => {}
        }
    }
    ExitCode::SUCCESS
}

/// Lets go of a Kafka source (leaving the group), waiting at most `limit`:
/// with the broker gone, librdkafka's consumer close waits for the group
/// coordinator for up to the session timeout.
fn leave_within(source: Box<dyn Source + Send>, limit: Duration) {
    let (tx, rx) = mpsc::channel();
    let leaving = std::thread::Builder::new()
        .name("kafka-leave".into())
        .spawn(move || {
            drop(source);
            let _ = tx.send(());
        });
    if leaving.is_ok() && rx.recv_timeout(limit).is_err() {
        tracing::warn!(
            "kafka: broker unreachable: leaving the group did not finish within {}s; exiting without it (the group drops this member after its session timeout)",
            limit.as_secs()
        );
    }
}

/// The file the workers read range by range ([`RangeSource`]): a regular
/// file, not followed, without a state directory (whose positions are
/// those of lines read in order), with more than one thread. A file that
/// says it is empty (`/proc`'s, some FUSE ones) is read as a stream.
fn ranged_file<'i>(input: &'i Input, follow: bool, settings: &RunSettings) -> Option<&'i Path> {
    let Input::File(path) = input else {
        return None;
    };
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0);
    (cfg!(unix) && regular && !follow && settings.threads > 1 && settings.state.is_none())
        .then_some(path.as_path())
}
