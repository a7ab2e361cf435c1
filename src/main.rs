//! The `saker` command line: flags are read here, turned into settings, and
//! handed to the library. Exit codes: 0 ok, 1 rule or test failure, 2 usage
//! or configuration error.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use saker::engine::windows::WindowOptions;
use saker::engine::{Engine, RuleMatching};
use saker::rules::{self, Loaded, RuleSource};
use saker::sink::alertmanager::{AlertmanagerSink, Fanout, Settings as AmSettings};
use saker::sink::stdout::{Format, StdoutSink};
use saker::sink::AlertSink;
use saker::source::lines::LineReader;
use saker::source::live::ChannelReader;
use saker::source::Input;
use saker::window::Limits;

#[derive(Parser)]
#[command(
    name = "saker",
    version,
    about = "Streaming detection engine for Kubernetes API audit events",
    long_about = "Saker reads Kubernetes audit events (audit.k8s.io Event JSON, one per line, \
or EventList/arrays), evaluates Falco-compatible rules on them and prints alerts in Falco's \
JSON format.\n\nExample:\n  kubectl logs -f -n kube-system kube-apiserver-node1 | saker run\n  \
saker run --input /var/log/kubernetes/audit/audit.log --rules my_rules.yaml"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level on stderr (error, warn, info, debug, trace). RUST_LOG overrides it.
    #[arg(long, default_value = "warn", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate rules on audit events and print alerts on stdout.
    Run(Box<RunArgs>),
    /// Validate rule files; every problem with file:line:col and a caret.
    Check {
        /// Rule files or directories (default: the embedded rules).
        rules: Vec<PathBuf>,
    },
    /// Run rule tests (YAML files: rules, input events, expected alerts).
    /// With no files, runs the tests of the embedded default rules.
    Test {
        /// Test files.
        tests: Vec<PathBuf>,
    },
    /// Write audit events (one per line, from a file or stdin) to a Kafka
    /// topic, keyed by a field and stamped with the event time: for
    /// replaying recorded audit logs into a test topic.
    Produce(Box<ProduceArgs>),
    /// Audit policy tooling: lint a policy, check it against the rules, and
    /// simulate it on recorded events.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// RBAC tooling on exported Roles, ClusterRoles and bindings.
    #[command(subcommand)]
    Rbac(RbacCommand),
    /// List every field a condition or output can use.
    Fields {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Report problems in an audit policy (audit.k8s.io/v1 Policy): rules
    /// shadowed by earlier ones, secrets logged with their values, no
    /// catch-all, RequestReceived not omitted, reads logged with response
    /// bodies, noisy traffic not reduced, `pods` meant to cover `pods/exec`,
    /// groups with versions, resources in the wrong group, and shapes the API
    /// server refuses. Exit 1 on errors, 0 with warnings only.
    Lint {
        /// The policy file.
        policy: PathBuf,
        #[arg(long, value_enum, default_value_t = PolicyFormat::Text)]
        format: PolicyFormat,
    },
    /// For each rule, whether the policy logs the requests it looks for at
    /// the level its fields need, with the policy line that decides it.
    /// Exit 1 when some rule can never fire.
    Check {
        /// The policy file.
        policy: PathBuf,
        /// Rule files or directories (default: the embedded rules).
        #[arg(long = "rules", short = 'r', value_name = "PATH")]
        rules: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = PolicyFormat::Text)]
        format: PolicyFormat,
    },
    /// Put recorded audit events to the policy: the level each would get
    /// and the volume the policy would keep, by policy rule; and how many
    /// days of logs the API server's --audit-log-maxage, --audit-log-maxbackup
    /// and --audit-log-maxsize really keep at that volume (scaled to a day
    /// from the events' time span), which of them limits, and the values
    /// that would keep maxage days.
    Simulate {
        /// The policy file.
        policy: PathBuf,
        /// Recorded events: `-` for stdin, or a file (JSON lines).
        #[arg(long, short = 'i', default_value = "-", value_name = "-|FILE")]
        input: String,
        /// Also print each event's verdict (JSON lines on stdout).
        #[arg(long)]
        events: bool,
        #[arg(long, value_enum, default_value_t = PolicyFormat::Text)]
        format: PolicyFormat,
        #[command(flatten)]
        log: AuditLogFlags,
    },
}

/// The API server's log rotation flags, spelled as kube-apiserver spells
/// them; `simulate` says how long they keep logs at the simulated volume.
#[derive(clap::Args)]
struct AuditLogFlags {
    /// Days a rotated audit log is kept (0: no age limit).
    #[arg(long = "audit-log-maxage", default_value_t = 0, value_name = "DAYS")]
    maxage: u64,
    /// Rotated audit logs kept (0: all of them).
    #[arg(long = "audit-log-maxbackup", default_value_t = 0, value_name = "N")]
    maxbackup: u64,
    /// Size in MiB at which the audit log is rotated (0: lumberjack's 100).
    #[arg(long = "audit-log-maxsize", default_value_t = 0, value_name = "MB")]
    maxsize: u64,
    /// Rotated audit logs are gzip'd (saves disk, keeps no more days).
    #[arg(long = "audit-log-compress", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_name = "BOOL")]
    compress: bool,
}

#[derive(Subcommand)]
enum RbacCommand {
    /// List the subjects (users, groups, service accounts) that RBAC objects
    /// let make a request, each with the binding and role that grant it, as
    /// the API server's RBAC authorizer decides (system:masters is always
    /// allowed). Reads RBAC exports (`kubectl get
    /// roles,rolebindings,clusterroles,clusterrolebindings -A -o yaml`),
    /// multi-document YAML, JSON or directories of manifests. Who can read the API server's logs:
    /// `saker rbac who-can get pods/log -n kube-system rbac.yaml`.
    WhoCan(WhoCanArgs),
}

#[derive(clap::Args)]
struct WhoCanArgs {
    /// The verb: get, list, watch, create, update, patch, delete, ...
    verb: String,
    /// RESOURCE[.GROUP][/SUBRESOURCE] as kubectl spells it (pods/log,
    /// deployments.apps, deployments.apps/scale), or a non-resource URL
    /// (/logs/).
    resource: String,
    /// RBAC export files or directories.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The request's namespace; without it, the request is cluster-wide
    /// (only ClusterRoleBindings grant it).
    #[arg(long, short = 'n', value_name = "NAMESPACE", default_value = "")]
    namespace: String,
    /// Count RoleBindings of every namespace, each in its own.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    all_namespaces: bool,
    /// The object's name, for rules limited by resourceNames; without it,
    /// such rules are listed as granting only the names they list.
    #[arg(long, value_name = "NAME", default_value = "")]
    name: String,
    #[arg(long, value_enum, default_value_t = PolicyFormat::Text)]
    format: PolicyFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Rule file or directory of *.yaml files; repeat to load several, in
    /// order (later files can redefine or append). Default: the embedded rules.
    #[arg(long = "rules", short = 'r', value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Where to read events: `-` for stdin, a file path, or `kafka` (a
    /// consumer group; see --kafka-brokers).
    #[arg(long, short = 'i', default_value = "-", value_name = "-|FILE|kafka")]
    input: String,
    /// Keep reading the file as it grows, across log rotation (the old file
    /// is finished, then the new one read from its start), until stopped.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Alert format on stdout: Falco's JSON lines, or Falco's text line.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
    output: Format,
    /// `first`: an event alerts for the first matching rule only (Falco's
    /// default); `all`: every matching rule alerts.
    #[arg(long, value_enum, default_value_t = RuleMatching::First)]
    rule_matching: RuleMatching,
    /// Lines longer than this many bytes are skipped and counted.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_line_bytes: usize,
    /// Worker threads for a file (not --follow): events are decoded and
    /// matched in parallel, alerts come out in the same order as on one
    /// thread. 0 = one per core.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// Progress bar on stderr while reading a file: auto shows it when
    /// stderr is a terminal.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Do not print the summary on stderr at the end of the input.
    #[arg(long)]
    no_summary: bool,
    /// Tick of windowed rules: event times are cut into steps of this size;
    /// windows and `for` must be whole multiples of it.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg, value_name = "DURATION")]
    resolution: u64,
    /// How long to wait for out-of-order events before evaluating a tick of
    /// a windowed rule; events later than this are counted as late.
    #[arg(long, default_value = "5s", value_parser = parse_lateness_arg, value_name = "DURATION")]
    lateness: u64,
    /// Keys kept per windowed rule (least recently used are evicted, and
    /// counted).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    max_keys: usize,
    /// Distinct values kept per key of a `distinct()` rule.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_distinct_values: usize,
    /// Send alerts to this Alertmanager (API v2); repeat for an HA pair:
    /// every URL gets every alert.
    #[arg(long = "alertmanager", value_name = "URL")]
    alertmanager: Vec<String>,
    /// How often firing windowed alerts are re-sent to Alertmanager.
    #[arg(long, default_value = "1m", value_parser = parse_duration_arg, value_name = "DURATION")]
    alertmanager_resend: u64,
    /// How long a per-event alert stays active in Alertmanager (its endsAt).
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg, value_name = "DURATION")]
    alertmanager_expiry: u64,
    /// Alerts queued per Alertmanager; when full, the oldest per-event alerts
    /// are dropped first (and counted).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    alertmanager_queue: usize,
    /// PEM file of the CA that signs the TLS certificate of an https
    /// Alertmanager (or of the proxy in front of it). Default: public roots.
    #[arg(long, value_name = "FILE")]
    alertmanager_ca_file: Option<PathBuf>,
    /// File holding a bearer token sent to Alertmanager.
    #[arg(long, value_name = "FILE")]
    alertmanager_bearer_token_file: Option<PathBuf>,
    /// Timeout of one request to Alertmanager.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg, value_name = "DURATION")]
    alertmanager_timeout: u64,
    /// At the end of the input, how long to wait for queued alerts to reach
    /// Alertmanager.
    #[arg(long, default_value = "10s", value_parser = parse_std_duration, value_name = "DURATION")]
    alertmanager_drain: Duration,
    /// Serve Prometheus metrics, /healthz and /readyz on this address. A bare
    /// port (9464) listens on loopback only. Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Labels of `kube_audit_event_count`: name=field pairs.
    #[arg(
        long,
        default_value = "verb=ka.verb,resource=ka.target.resource,user=ka.user.name",
        value_name = "LABELS"
    )]
    metrics_labels: String,
    /// Label sets kept for `kube_audit_event_count`; events beyond are counted
    /// in saker_kube_audit_label_sets_overflow_total.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    metrics_max_label_sets: usize,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// The Kafka source (`--input kafka`).
#[derive(clap::Args)]
#[command(next_help_heading = "Kafka (--input kafka)")]
struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, value_name = "HOSTS")]
    kafka_brokers: Option<String>,
    /// Topic to consume; repeat for several. Windowed state is kept per
    /// partition, so the topic must be keyed by the field the windowed rules
    /// group by (the user for the shipped rules): events of one key must
    /// land in one partition to be counted together.
    #[arg(long, value_name = "TOPIC")]
    kafka_topic: Vec<String>,
    /// Consumer group. Instances in one group share the partitions; offsets
    /// are committed only after alerts are written, and a restarted instance
    /// rebuilds its windows by replaying (without alerts) the messages
    /// before its committed offsets.
    #[arg(long, default_value = "saker", value_name = "GROUP")]
    kafka_group: String,
    /// librdkafka property, key=value (TLS, SASL, session.timeout.ms, ...);
    /// repeatable. Saker always commits offsets itself.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = saker::kafka::parse_option)]
    kafka_option: Vec<(String, String)>,
    /// How often processed offsets are committed.
    #[arg(long, default_value = "1s", value_parser = parse_std_duration_nonzero, value_name = "DURATION")]
    kafka_commit_interval: Duration,
    /// How long a warm-up replay waits for the broker before giving up.
    #[arg(long, default_value = "30s", value_parser = parse_std_duration_nonzero, value_name = "DURATION")]
    kafka_warmup_timeout: Duration,
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, value_name = "HOSTS")]
    kafka_brokers: String,
    /// Topic to write to.
    #[arg(long, value_name = "TOPIC")]
    kafka_topic: String,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// Field whose value keys each message (`none` for no key). Key by what
    /// the windowed rules group by.
    #[arg(long, default_value = "ka.user.name", value_name = "FIELD")]
    key: String,
    /// librdkafka property, key=value; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = saker::kafka::parse_option)]
    kafka_option: Vec<(String, String)>,
    /// Events to send: `-` for stdin, or a file; one message per line.
    #[arg(long, short = 'i', default_value = "-", value_name = "-|FILE")]
    input: String,
    /// Lines longer than this many bytes are not sent.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_line_bytes: usize,
}

fn parse_std_duration_nonzero(s: &str) -> Result<Duration, String> {
    parse_duration_arg(s).map(Duration::from_nanos)
}

fn parse_std_duration(s: &str) -> Result<Duration, String> {
    parse_lateness_arg(s).map(Duration::from_nanos)
}

fn alertmanager_sink(args: &RunArgs) -> Result<Option<AlertmanagerSink>, String> {
    if args.alertmanager.is_empty() {
        return Ok(None);
    }
    let bearer_token = match &args.alertmanager_bearer_token_file {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .trim()
                .to_string(),
        ),
    };
    AlertmanagerSink::start(AmSettings {
        urls: args.alertmanager.clone(),
        resend: Duration::from_nanos(args.alertmanager_resend),
        expiry: Duration::from_nanos(args.alertmanager_expiry),
        queue_cap: args.alertmanager_queue,
        bearer_token,
        timeout: Duration::from_nanos(args.alertmanager_timeout),
        ca_file: args.alertmanager_ca_file.clone(),
    })
    .map(Some)
}

fn parse_lateness_arg(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    saker::window::spec::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 0s, 5s, 1m)"))
}

fn parse_duration_arg(s: &str) -> Result<u64, String> {
    match saker::window::spec::parse_duration(s) {
        Some(0) => Err("must be longer than zero".into()),
        Some(ns) => Ok(ns),
        None => Err(format!("`{s}` is not a duration (e.g. 1s, 500ms, 5m)")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Always,
    Never,
}

/// How long a live read waits before the engine checks the wall clock.
const LIVE_POLL: Duration = Duration::from_millis(250);
/// How long a live stream must be quiet before its watermark follows the
/// wall clock.
const LIVE_IDLE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Rule tests feed deliberately noisy input; their skip warnings are noise.
    let level = match cli.command {
        Command::Test { .. } if cli.log_level == "warn" => "error",
        _ => cli.log_level.as_str(),
    };
    init_logging(cli.log_format, level);
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Check { rules } => check(&rules),
        Command::Test { tests } => test(&tests),
        Command::Produce(args) => produce(&args),
        Command::Policy(cmd) => policy_command(cmd),
        Command::Rbac(RbacCommand::WhoCan(args)) => who_can(args),
        Command::Fields { json } => fields(json),
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn sources(paths: &[PathBuf]) -> Result<Vec<RuleSource>, ExitCode> {
    if paths.is_empty() {
        return Ok(rules::default_sources());
    }
    rules::expand_paths(paths).map_err(|e| {
        eprintln!("saker: cannot read rules: {e}");
        ExitCode::from(2)
    })
}

fn print_diagnostics(loaded: &Loaded, out: &mut dyn Write) {
    for note in &loaded.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for d in &loaded.diagnostics {
        let _ = write!(out, "{d}");
    }
}

fn load_rules(paths: &[PathBuf], options: &rules::LoadOptions) -> Result<rules::RuleSet, ExitCode> {
    let loaded = rules::load_with(&sources(paths)?, options);
    print_diagnostics(&loaded, &mut io::stderr());
    match loaded.rules {
        Some(set) => Ok(set),
        None => {
            let n = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!("saker: rules failed to load ({n} error(s))");
            Err(ExitCode::from(1))
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let options = rules::LoadOptions {
        resolution_ns: args.resolution,
    };
    let set = match load_rules(&args.rules, &options) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let enabled = set.rules.iter().filter(|r| r.enabled).count();
    tracing::info!(rules = enabled, "rules loaded");
    let kafka = match kafka_settings(&args) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("saker: {e}");
            return ExitCode::from(2);
        }
    };
    let input = Input::parse(&args.input);
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if threads > 1 && (kafka.is_some() || args.follow || !matches!(input, Input::File(_))) {
        eprintln!("saker: --threads applies to --input FILE without --follow");
        return ExitCode::from(2);
    }
    if args.follow && (kafka.is_some() || matches!(input, Input::Stdin)) {
        eprintln!("saker: --follow needs --input FILE (stdin and Kafka are always followed)");
        return ExitCode::from(2);
    }
    let stdout_sink = StdoutSink::new(
        io::BufWriter::with_capacity(64 * 1024, io::stdout()),
        args.output,
    );
    let alertmanager = match alertmanager_sink(&args) {
        Ok(am) => am,
        Err(e) => {
            eprintln!("saker: --alertmanager: {e}");
            return ExitCode::from(2);
        }
    };
    let sink: Box<dyn AlertSink + Send> = match &alertmanager {
        Some(am) => Box::new(Fanout(vec![Box::new(stdout_sink), Box::new(am.clone())])),
        None => Box::new(stdout_sink),
    };
    let window_options = WindowOptions {
        lateness_ns: args.lateness,
        limits: Limits {
            max_keys: args.max_keys,
            max_values_per_key: args.max_distinct_values,
        },
    };
    let mut engine = Engine::with_options(&set, args.rule_matching, window_options);
    let source = match (&kafka, &input) {
        (Some(_), _) => "kafka",
        (None, Input::Stdin) => "stdin",
        (None, Input::File(_)) => "file",
    };
    let counters = Arc::new(saker::kafka::Counters::default());
    if let Some(spec) = &args.metrics_listen {
        let labels = match saker::engine::metric_labels(&args.metrics_labels) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("saker: --metrics-labels: {e}");
                return ExitCode::from(2);
            }
        };
        let (with_metrics, registry) = engine.with_metrics(labels, args.metrics_max_label_sets);
        engine = with_metrics;
        {
            let mut r = registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.alertmanager = alertmanager.clone();
            r.source = source.to_string();
            if kafka.is_some() {
                r.extra.push(counters.clone());
            }
        }
        let served = saker::sink::metrics::listen_address(spec)
            .and_then(|addr| saker::sink::metrics::serve(addr, registry));
        match served {
            Ok(addr) => tracing::info!("metrics on http://{addr}/metrics"),
            Err(e) => {
                eprintln!("saker: cannot serve metrics on {spec}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let start = Instant::now();
    let (described, bytes, result) = match &kafka {
        Some(settings) => {
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                    eprintln!("saker: cannot handle signals: {e}");
                    return ExitCode::from(2);
                }
            }
            let result = saker::kafka::run(settings, &mut engine, sink, counters.clone(), &stop);
            let described = format!("kafka {}", settings.topics.join(","));
            match result {
                Ok(s) => (described, s.bytes, Ok(())),
                Err(e) => (described, 0, Err(e)),
            }
        }
        None if threads > 1 => {
            let (bytes, result) = read_parallel(&args, &input, &mut engine, sink, threads);
            (input.describe(), bytes, result)
        }
        None => {
            let (bytes, result) = read_stream(&args, &input, &mut engine, sink);
            (input.describe(), bytes, result)
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("saker: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(am) = &alertmanager {
        // Deliver what is queued before exiting (a file, a closed stdin).
        if !am.drain(args.alertmanager_drain) {
            let s = am.stats();
            eprintln!(
                "saker: {} alert(s) not delivered to Alertmanager before exiting",
                s.queued
            );
        }
        let s = am.stats();
        if !args.no_summary {
            eprintln!(
                "saker: alertmanager: {} alerts sent in {} requests, {} failed requests, {} rejected, {} dropped",
                s.sent, s.attempts, s.failures, s.rejected, s.dropped
            );
        }
    }
    if !args.no_summary {
        eprint!(
            "{}",
            engine.summary(&described, bytes, start.elapsed().as_secs_f64())
        );
        if kafka.is_some() {
            eprintln!("saker: kafka: {}", counters.describe());
        }
    }
    ExitCode::SUCCESS
}

/// The Kafka settings when `--input kafka` is given; an error when Kafka
/// flags are given without it or it lacks what it needs.
fn kafka_settings(args: &RunArgs) -> Result<Option<saker::kafka::Settings>, String> {
    let k = &args.kafka;
    if args.input != "kafka" {
        if k.kafka_brokers.is_some() || !k.kafka_topic.is_empty() || !k.kafka_option.is_empty() {
            return Err("--kafka-brokers, --kafka-topic and -X need --input kafka".into());
        }
        return Ok(None);
    }
    let brokers = k
        .kafka_brokers
        .clone()
        .ok_or("--input kafka needs --kafka-brokers HOST:PORT")?;
    if k.kafka_topic.is_empty() {
        return Err("--input kafka needs --kafka-topic TOPIC".into());
    }
    Ok(Some(saker::kafka::Settings {
        brokers,
        topics: k.kafka_topic.clone(),
        group: k.kafka_group.clone(),
        options: k.kafka_option.clone(),
        commit_interval: k.kafka_commit_interval,
        max_document_bytes: args.max_line_bytes,
        warmup_timeout: k.kafka_warmup_timeout,
    }))
}

/// Reads a file on `threads` workers; returns the bytes read.
fn read_parallel(
    args: &RunArgs,
    input: &Input,
    engine: &mut Engine,
    mut sink: Box<dyn AlertSink + Send>,
    threads: usize,
) -> (u64, io::Result<()>) {
    let reader = match input {
        Input::File(p) => std::fs::File::open(p),
        Input::Stdin => return (0, Err(io::Error::other("--threads needs a file"))),
    };
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("cannot open input {}: {e}", input.describe());
            return (0, Err(io::Error::new(e.kind(), msg)));
        }
    };
    let result =
        saker::engine::parallel::run(reader, engine, threads, args.max_line_bytes, sink.as_mut());
    match result {
        Ok(bytes) => {
            let end = engine.finish(sink.as_mut()).and_then(|()| sink.flush());
            (bytes, end)
        }
        Err(e) => (0, Err(e)),
    }
}

/// Reads stdin or a file to its end (or, followed, until stopped); returns
/// the bytes read.
fn read_stream(
    args: &RunArgs,
    input: &Input,
    engine: &mut Engine,
    mut sink: Box<dyn AlertSink + Send>,
) -> (u64, io::Result<()>) {
    // Live inputs (stdin, --follow) are read on a thread so that the
    // watermark can move with the wall clock when nothing arrives.
    let live = matches!(input, Input::Stdin) || args.follow;
    let opened = if live {
        input.open_live(args.follow).map(|r| {
            let reader: Box<dyn std::io::Read> = Box::new(ChannelReader::spawn(r, LIVE_POLL));
            (reader, None)
        })
    } else {
        input.open()
    };
    let (reader, size) = match opened {
        Ok(r) => r,
        Err(e) => {
            return (
                0,
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot open input {}: {e}", input.describe()),
                )),
            )
        }
    };
    let show_progress = match args.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => size.is_some() && io::stderr().is_terminal(),
    };
    let mut lines = LineReader::new(reader, args.max_line_bytes);
    let mut progress = ProgressBar::new(size, show_progress);
    let mut last_event = Instant::now();
    let result: io::Result<()> = (|| {
        loop {
            let mut flush_err = Ok(());
            let line = {
                let sink_ref = &mut sink;
                lines.next_line(&mut || {
                    if live {
                        flush_err = sink_ref.flush();
                    }
                })
            };
            flush_err?;
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    // Nothing arrived: after a quiet second, event time moves
                    // on with the wall clock.
                    let quiet = last_event.elapsed();
                    if quiet >= LIVE_IDLE {
                        engine.idle(quiet.as_nanos() as u64, sink.as_mut())?;
                    }
                    sink.flush()?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let before = engine.stats.events;
            engine.process_line(line, sink.as_mut())?;
            if engine.stats.events > before {
                last_event = Instant::now();
            }
            if show_progress && engine.stats.lines % 4096 == 0 {
                progress.update(lines.bytes_read, engine.stats.events);
            }
        }
        engine.finish(sink.as_mut())?;
        sink.flush()
    })();
    progress.finish();
    (lines.bytes_read, result)
}

/// Loads a policy, printing its parse problems; `Err` is the exit code.
fn load_policy(
    path: &std::path::Path,
    format: PolicyFormat,
) -> Result<(saker::policy::Policy, Vec<saker::diag::Diagnostic>), ExitCode> {
    match saker::policy::load(path) {
        Err(e) => {
            eprintln!("saker: {e}");
            Err(ExitCode::from(2))
        }
        Ok((Some(p), diags)) if !diags.iter().any(|d| d.is_error()) => Ok((p, diags)),
        Ok((_, diags)) => {
            print_findings(&path.display().to_string(), &diags, format);
            Err(ExitCode::from(1))
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`| head`).
fn emit(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

fn print_findings(file: &str, diags: &[saker::diag::Diagnostic], format: PolicyFormat) {
    use saker::diag::Severity;
    let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
    let (errors, warnings, infos) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    match format {
        PolicyFormat::Json => {
            let findings: Vec<serde_json::Value> = diags
                .iter()
                .map(|d| {
                    let (line, column) = d.line_col().unwrap_or((0, 0));
                    serde_json::json!({
                        "file": file,
                        "line": line,
                        "column": column,
                        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Info => "info" },
                        "check": d.code,
                        "message": d.message,
                        "help": d.help,
                    })
                })
                .collect();
            let doc = serde_json::json!({"file": file, "errors": errors, "warnings": warnings, "infos": infos, "findings": findings});
            emit(&format!("{doc}\n"));
        }
        PolicyFormat::Text => {
            let mut out = String::new();
            for d in diags {
                out.push_str(&d.to_string());
            }
            out.push_str(&format!(
                "{file}: {errors} error(s), {warnings} warning(s), {infos} note(s)\n"
            ));
            emit(&out);
        }
    }
}

fn policy_command(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Lint { policy, format } => {
            let (p, mut diags) = match load_policy(&policy, format) {
                Ok(x) => x,
                Err(code) => return code,
            };
            diags.extend(saker::policy::lint::lint(&p));
            print_findings(&p.file.name, &diags, format);
            if diags.iter().any(|d| d.is_error()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        PolicyCommand::Check {
            policy,
            rules,
            format,
        } => {
            let (p, _) = match load_policy(&policy, format) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let set = match load_rules(&rules, &rules::LoadOptions::default()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let reports = saker::policy::check::check(&p, &set);
            let never = reports
                .iter()
                .filter(|r| r.verdict == saker::policy::check::Verdict::Never)
                .count();
            match format {
                PolicyFormat::Json => {
                    for r in &reports {
                        let short: Vec<serde_json::Value> = r
                            .short
                            .iter()
                            .map(|(rule, (level, example, n))| {
                                serde_json::json!({
                                    "policy_line": rule.map(|i| p.line_of(p.rules[i].pos)),
                                    "level": level.as_str(),
                                    "probes": n,
                                    "example": example,
                                })
                            })
                            .collect();
                        let v = serde_json::json!({
                            "rule": r.rule,
                            "verdict": r.verdict.as_str(),
                            "needs": r.needs.condition.0.as_str(),
                            "needs_field": r.needs.condition.1,
                            "output_needs": r.needs.output.0.as_str(),
                            "verbs": r.needs.verbs,
                            "resources": r.needs.resources,
                            "subresources": r.needs.subresources,
                            "probes": r.probes,
                            "logged_by_lines": r.deciding.iter().map(|&i| p.line_of(p.rules[i].pos)).collect::<Vec<_>>(),
                            "short": short,
                        });
                        emit(&format!("{v}\n"));
                    }
                }
                PolicyFormat::Text => {
                    let mut out = String::new();
                    for r in &reports {
                        out.push_str(&saker::policy::check::render(&p, r));
                    }
                    let count = |v| reports.iter().filter(|r| r.verdict == v).count();
                    use saker::policy::check::Verdict;
                    out.push_str(&format!(
                        "{}: {} rules: {} ok, {} with incomplete output, {} mostly logged (some of all traffic dropped), {} partly logged, {} never logged\n",
                        p.file.name,
                        reports.len(),
                        count(Verdict::Ok),
                        count(Verdict::OutputIncomplete),
                        count(Verdict::Mostly),
                        count(Verdict::Partly),
                        never
                    ));
                    emit(&out);
                }
            }
            if never > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        PolicyCommand::Simulate {
            policy,
            input,
            events,
            format,
            log,
        } => {
            let (p, _) = match load_policy(&policy, format) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let input = Input::parse(&input);
            let reader = match input.open() {
                Ok((r, _)) => r,
                Err(e) => {
                    eprintln!("saker: cannot open input {}: {e}", input.describe());
                    return ExitCode::from(2);
                }
            };
            let out = io::stdout();
            let result = saker::policy::simulate::simulate(&p, reader, 1 << 20, |v| {
                if events {
                    if let Ok(line) = serde_json::to_string(&v) {
                        let _ = writeln!(out.lock(), "{line}");
                    }
                }
            });
            let sim = match result {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("saker: {e}");
                    return ExitCode::from(2);
                }
            };
            use saker::policy::retention;
            let flags = retention::LogFlags {
                maxage: log.maxage,
                maxbackup: log.maxbackup,
                maxsize: log.maxsize,
                compress: log.compress,
            };
            let kept = retention::estimate(&sim, &flags);
            let text = || saker::policy::simulate::render(&p, &sim) + &retention::render(&kept);
            match format {
                PolicyFormat::Text if events => eprint!("{}", text()),
                PolicyFormat::Text => emit(&text()),
                PolicyFormat::Json => {
                    let tally = |t: &saker::policy::simulate::Tally| {
                        serde_json::json!({
                            "events": t.events, "kept": t.kept,
                            "recorded_bytes": t.recorded_bytes, "kept_bytes": t.kept_bytes,
                            "by_level": {"None": t.by_level[0], "Metadata": t.by_level[1], "Request": t.by_level[2], "RequestResponse": t.by_level[3]},
                        })
                    };
                    let rules: Vec<serde_json::Value> = sim
                        .by_rule
                        .iter()
                        .map(|(r, t)| {
                            let mut v = tally(t);
                            v["policy_line"] =
                                serde_json::json!(r.map(|i| p.line_of(p.rules[i].pos)));
                            v["level"] = serde_json::json!(r.map(|i| p.rules[i].level.as_str()));
                            v
                        })
                        .collect();
                    emit(&format!(
                        "{}\n",
                        serde_json::json!({"total": tally(&sim.total), "by_rule": rules, "skipped_lines": sim.skipped, "underestimated": sim.underestimated, "retention": kept})
                    ));
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn who_can(a: WhoCanArgs) -> ExitCode {
    use saker::rbac::{who_can, ReadError};
    let settings = who_can::Settings {
        verb: a.verb,
        resource: a.resource,
        namespace: a.namespace,
        all_namespaces: a.all_namespaces,
        name: a.name,
        files: a.files,
        json: a.format == PolicyFormat::Json,
    };
    match who_can::run(&settings) {
        Ok((out, warnings)) => {
            warnings
                .iter()
                .for_each(|w| eprintln!("saker: warning: {w}"));
            emit(&out);
            ExitCode::SUCCESS
        }
        Err(who_can::WhoCanError::Read(ReadError::Malformed(diags))) => {
            diags.iter().for_each(|d| eprint!("{d}"));
            eprintln!("saker: {} problem(s) in the RBAC objects", diags.len());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("saker: {e}");
            ExitCode::from(2)
        }
    }
}

fn produce(args: &ProduceArgs) -> ExitCode {
    let key = match args.key.as_str() {
        "none" => None,
        name => match saker::kafka::produce::key_field(name) {
            Ok(def) => Some(def),
            Err(e) => {
                eprintln!("saker: --key: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let settings = saker::kafka::produce::Settings {
        brokers: args.kafka_brokers.clone(),
        topic: args.kafka_topic.clone(),
        options: args.kafka_option.clone(),
        key,
        create_partitions: args.partitions,
        max_line_bytes: args.max_line_bytes,
    };
    let input = Input::parse(&args.input);
    let reader = match input.open() {
        Ok((r, _)) => r,
        Err(e) => {
            eprintln!("saker: cannot open input {}: {e}", input.describe());
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    match saker::kafka::produce::produce(&settings, reader) {
        Ok(p) => {
            eprintln!(
                "saker: produced {} messages ({} bytes) to {} in {:.2}s: {} delivered, {} failed",
                p.messages,
                p.bytes,
                settings.topic,
                start.elapsed().as_secs_f64(),
                p.delivered,
                p.failed
            );
            if p.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("saker: {e}");
            ExitCode::from(1)
        }
    }
}

/// A one-line progress display on stderr, redrawn at most every 200 ms.
struct ProgressBar {
    total: Option<u64>,
    enabled: bool,
    last: Instant,
    start: Instant,
}

impl ProgressBar {
    fn new(total: Option<u64>, enabled: bool) -> Self {
        let now = Instant::now();
        ProgressBar {
            total,
            enabled,
            last: now,
            start: now,
        }
    }

    fn update(&mut self, bytes: u64, events: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = events as f64 / secs;
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = (bytes as f64 / total as f64).min(1.0);
                let filled = (frac * 30.0) as usize;
                let eta = if frac > 0.0 { secs / frac - secs } else { 0.0 };
                format!(
                    "[{}{}] {:5.1}%  {} events  {:.0} ev/s  eta {:.0}s",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0,
                    events,
                    rate,
                    eta
                )
            }
            _ => format!("{events} events  {rate:.0} ev/s"),
        };
        eprint!("\r{line}\x1b[K");
    }

    fn finish(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

fn check(paths: &[PathBuf]) -> ExitCode {
    let srcs = match sources(paths) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let loaded = rules::load(&srcs);
    let mut out = io::stdout().lock();
    print_diagnostics(&loaded, &mut out);
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.iter().filter(|d| !d.is_error()).count();
    let names: Vec<String> = srcs
        .iter()
        .map(|s| match s {
            RuleSource::File(p) => p.display().to_string(),
            RuleSource::Embedded(n, _) => format!("{n} (embedded)"),
        })
        .collect();
    match &loaded.rules {
        Some(set) if errors == 0 => {
            let _ = writeln!(
                out,
                "ok: {} rule(s) loaded from {} ({warnings} warning(s))",
                set.rules.len(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        _ => {
            let _ = writeln!(
                out,
                "failed: {errors} error(s), {warnings} warning(s) in {}",
                names.join(", ")
            );
            ExitCode::from(1)
        }
    }
}

fn test(paths: &[PathBuf]) -> ExitCode {
    let reports = if paths.is_empty() {
        vec![saker::ruletest::run_default()]
    } else {
        paths.iter().map(|p| saker::ruletest::run_path(p)).collect()
    };
    let (mut passed, mut failed, mut setup_failed) = (0, 0, false);
    let mut out = io::stdout().lock();
    for r in reports {
        match r {
            Ok(report) => {
                let _ = write!(out, "{}", report.text);
                passed += report.passed;
                failed += report.failed;
            }
            Err(e) => {
                eprintln!("saker test: {}", e.to_string().trim_end());
                setup_failed = true;
            }
        }
    }
    let _ = writeln!(out, "rule tests: {passed} passed, {failed} failed");
    if setup_failed {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn fields(json: bool) -> ExitCode {
    let mut out = io::stdout().lock();
    for f in saker::fields::catalog() {
        let kind = if f.list { "list" } else { "string" };
        let res = if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"name": f.name, "type": kind, "arg": format!("{:?}", f.arg).to_lowercase(), "desc": f.desc})
            )
        } else {
            writeln!(out, "{:<52} {:<7} {}", f.to_string(), kind, f.desc)
        };
        if res.is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}
