//! `saker report`: a replay like `saker run`, whose alerts go to the
//! report's [`Collector`] instead of stdout; the page is written at the end
//! of the input (or on SIGTERM/SIGINT for a followed file, stdin, Kafka and
//! the receiver), and the headline (alerts by rule and by identity) printed
//! as tables on stdout.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use saker::engine::Engine;
use saker::event::Skip;
use saker::report::{Caps, Collector, Health, PolicyData};
use saker::source::clock::SystemClock;
use saker::source::driver::Driver;
use saker::source::http::HttpSource;
use saker::source::kafka::{Counters, KafkaSource};
use saker::source::{stream, Input, Source};

use crate::cli::report::ReportSettings;
use crate::cli::run::InputSettings;

/// Events counted by these fields give each identity's resources and verbs.
const TOUCHED: &str = "user=ka.user.name,verb=ka.verb,resource=ka.target.resource";
/// (user, verb, resource) combinations counted; events beyond are said.
const TOUCHED_CAP: usize = 100_000;

fn fail(what: impl std::fmt::Display) -> ExitCode {
    eprintln!("saker: {what}");
    ExitCode::from(2)
}

pub fn report(settings: ReportSettings) -> ExitCode {
    let s = &settings.replay;
    let set = match super::load_rules(&s.rules, &s.load) {
        Ok(set) => set,
        Err(code) => return code,
    };
    let labels = match saker::engine::metric_labels(TOUCHED) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (mut engine, registry) =
        Engine::with_options(&set, s.matching, s.windows).with_metrics(labels, TOUCHED_CAP);
    let mut collector = Collector::new(Caps::default(), &set);
    engine.observe(collector.observer());
    // Everything but a file read to its end stops on SIGTERM and SIGINT:
    // what was read is evaluated, and the page written.
    let stop = Arc::new(AtomicBool::new(false));
    let ends = matches!(
        s.input,
        InputSettings::Lines {
            input: Input::File(_),
            follow: false
        }
    );
    if !ends {
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                return fail(format_args!("cannot handle signals: {e}"));
            }
        }
    }
    let mut source: Box<dyn Source + Send> = match &s.input {
        InputSettings::Kafka(k) => {
            // Unkeyed topics: the windowed and sequence rules go through the
            // group's repartition topic, as with `saker run`.
            let forwarded = engine.repartition(k.partition_key.clone(), k.idle_timeout);
            match KafkaSource::open(
                k,
                Arc::new(Counters::default()),
                stop,
                !forwarded.is_empty(),
            ) {
                Ok(src) => Box::new(src),
                Err(e) => return fail(e),
            }
        }
        InputSettings::Http(h) => {
            let counters = Arc::new(saker::source::http::metrics::Counters::default());
            match HttpSource::start(h, counters, stop) {
                Ok(src) => Box::new(src),
                Err(e) => return fail(e),
            }
        }
        InputSettings::Lines { input, follow } => {
            match stream::open(input, *follow, s.max_line_bytes) {
                Ok((src, _)) => Box::new(src.with_stop(stop)),
                Err(e) => return fail(e),
            }
        }
    };
    let max_document = match &s.input {
        InputSettings::Http(h) => usize::try_from(h.max_body_bytes).unwrap_or(usize::MAX),
        _ => s.max_line_bytes,
    };
    let result = Driver::new(&mut engine, &mut collector, SystemClock)
        .max_document(max_document)
        .run(source.as_mut());
    if let Err(e) = result {
        return fail(e);
    }
    let (windows, stateful) = engine.state_counts();
    let stats = &engine.stats;
    let health = Health {
        lines: stats.lines,
        events: stats.events,
        skipped: Skip::ALL
            .iter()
            .filter(|r| stats.skipped(**r) > 0)
            .map(|r| (r.describe().to_string(), stats.skipped(*r)))
            .collect(),
        late_events: windows.late_events + stateful.late_events,
        evictions: windows.evictions + stateful.evictions,
    };
    let policy = match &settings.policy {
        None => None,
        Some((path, flags)) => match simulate(path, flags, &s.input, s.max_line_bytes) {
            Ok(p) => Some(p),
            Err(code) => return code,
        },
    };
    let (touched, overflow) = {
        let r = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (sets, overflow) = r.event_counts();
        let touched: saker::report::Touched = sets
            .into_iter()
            .map(|(k, n)| {
                let v = |i: usize| k.get(i).cloned().unwrap_or_default();
                ((v(0), v(1), v(2)), n)
            })
            .collect();
        (touched, overflow)
    };
    let data = collector.finish(source.describe(), health, &touched, overflow, policy);
    let page = match saker::report::html::render(&data) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if let Err(e) = std::fs::write(&settings.out, page.as_bytes()) {
        return fail(format_args!("cannot write {}: {e}", settings.out.display()));
    }
    if settings.summary {
        super::emit(&saker::report::table::render(&data));
    }
    eprintln!(
        "saker: report of {} events and {} alerts written to {} ({} bytes)",
        data.health.events,
        data.alerts_total,
        settings.out.display(),
        page.len()
    );
    ExitCode::SUCCESS
}

/// `saker policy simulate` on the input file, with retention.
fn simulate(
    path: &std::path::Path,
    flags: &saker::policy::retention::LogFlags,
    input: &InputSettings,
    max_line: usize,
) -> Result<PolicyData, ExitCode> {
    use saker::policy::{retention, simulate};
    let policy = match saker::policy::load(path) {
        Err(e) => return Err(fail(e)),
        Ok((Some(p), diags)) if !diags.iter().any(|d| d.is_error()) => p,
        Ok((_, diags)) => {
            for d in &diags {
                eprint!("{d}");
            }
            eprintln!("saker: --policy {} does not load", path.display());
            return Err(ExitCode::from(1));
        }
    };
    let InputSettings::Lines {
        input: file @ Input::File(_),
        ..
    } = input
    else {
        return Err(fail("--policy needs --input FILE"));
    };
    let reader = match file.open() {
        Ok((r, _)) => r,
        Err(e) => return Err(fail(format_args!("cannot open {}: {e}", file.describe()))),
    };
    let sim = simulate::simulate(&policy, reader, max_line, |_| {}).map_err(fail)?;
    let kept = retention::estimate(&sim, flags);
    Ok(PolicyData {
        path: path.display().to_string(),
        events: sim.total.events,
        recorded_bytes: sim.total.recorded_bytes,
        kept_bytes: sim.total.kept_bytes,
        table: simulate::render(&policy, &sim),
        retention: retention::render(&kept),
    })
}
