//! Flags of `saker run`, and the [`RunSettings`] they are validated into.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use saker::engine::windows::WindowOptions;
use saker::engine::RuleMatching;
use saker::fields::FieldDef;
use saker::sink::alertmanager::Settings as AmSettings;
use saker::sink::http_output::Settings as HttpOutputSettings;
use saker::sink::stdout::Format;
use saker::source::Input;

use super::durations;
use super::replay::ReplayArgs;
use super::UsageError;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Read settings from this YAML file: its keys are the long names of
    /// these flags (`input: kafka`, `rules: [PATH, ...]`, `follow: true`),
    /// and flags given here override it (a repeatable flag given here
    /// replaces the file's list). Relative paths in the file resolve against
    /// its directory. Read again on a reload (SIGHUP, POST /-/reload, or a
    /// change to it or to a rules file): the rules and rule-matching apply,
    /// other changed settings are logged as needing a restart.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the settings in effect (the config file, these flags and the
    /// defaults, merged) as a config file, and exit without running.
    #[arg(long)]
    pub print_config: bool,
    // The input, the rules and the window settings (shared with `saker report`).
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Alert format on stdout: Falco's JSON lines, or Falco's text line.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
    /// Worker threads that decode and match events, for every input (a
    /// file, stdin, --follow, Kafka, the HTTP receiver); windows,
    /// sequences and the order of alerts are those of one thread. A plain
    /// file (without --follow or --state-dir) is read by the workers, up
    /// to its length when it was opened. Rules that Kafka repartitions
    /// keep the run on one thread. 0 = one per core.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
    /// Progress bar on stderr while reading a file: auto shows it when
    /// stderr is a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Do not print the summary on stderr at the end of the input.
    #[arg(long)]
    pub no_summary: bool,
    /// Send alerts to this Alertmanager (API v2); repeat for an HA pair:
    /// every URL gets every alert.
    #[arg(long = "alertmanager", value_name = "URL")]
    pub alertmanager: Vec<String>,
    /// How often firing windowed alerts are re-sent to Alertmanager.
    #[arg(long, default_value = "1m", value_parser = durations::parse_nonzero, value_name = "DURATION")]
    pub alertmanager_resend: u64,
    /// How long a per-event alert stays active in Alertmanager (its endsAt).
    #[arg(long, default_value = "5m", value_parser = durations::parse_nonzero, value_name = "DURATION")]
    pub alertmanager_expiry: u64,
    /// Alerts queued per Alertmanager; when full, the oldest per-event alerts
    /// are dropped first (and counted).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub alertmanager_queue: usize,
    /// PEM file of the CA that signs the TLS certificate of an https
    /// Alertmanager (or of the proxy in front of it). Default: public roots.
    #[arg(long, value_name = "FILE")]
    pub alertmanager_ca_file: Option<PathBuf>,
    /// File holding a bearer token sent to Alertmanager.
    #[arg(long, value_name = "FILE")]
    pub alertmanager_bearer_token_file: Option<PathBuf>,
    /// Timeout of one request to Alertmanager.
    #[arg(long, default_value = "5s", value_parser = durations::parse_nonzero, value_name = "DURATION")]
    pub alertmanager_timeout: u64,
    /// At the end of the input, how long to wait for queued alerts to reach
    /// Alertmanager.
    #[arg(long, default_value = "10s", value_parser = durations::std_or_zero, value_name = "DURATION")]
    pub alertmanager_drain: Duration,
    /// Hold a windowed alert's resolve until Alertmanager accepted its firing
    /// alert this long ago, so the firing is notified first (a replay resolves
    /// alerts moments after they fire). Keep it longer than the route's
    /// group_wait (30s by default). Alerts that fired longer ago resolve at once.
    #[arg(long, default_value = "35s", value_parser = durations::std_or_zero, value_name = "DURATION")]
    pub alertmanager_resolve_delay: Duration,
    /// POST every alert as one Falco JSON body to this URL, as Falco's
    /// http_output does (falcosidekick: http://HOST:2801/); repeatable.
    /// HTTP(S)_PROXY and NO_PROXY are honoured.
    #[arg(long = "http-output", value_name = "URL")]
    pub http_output: Vec<String>,
    /// Alerts queued per --http-output URL; when full, the oldest per-event
    /// alerts are dropped first (and counted).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub http_output_queue: usize,
    /// PEM file of the CA that signs an https --http-output's certificate.
    /// Default: public roots.
    #[arg(long, value_name = "FILE")]
    pub http_output_ca_file: Option<PathBuf>,
    /// Timeout of one request to an --http-output URL.
    #[arg(long, default_value = "5s", value_parser = durations::parse_nonzero, value_name = "DURATION")]
    pub http_output_timeout: u64,
    /// At the end of the input, how long to wait for queued alerts to reach
    /// the --http-output URLs.
    #[arg(long, default_value = "10s", value_parser = durations::std_or_zero, value_name = "DURATION")]
    pub http_output_drain: Duration,
    /// Serve Prometheus metrics, /healthz and /readyz on this address, and
    /// take POST /-/reload (answered once applied: 200, or 500 with the
    /// errors). A bare port (9464) listens on loopback only. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Labels of `kube_audit_event_count`: name=field pairs.
    #[arg(
        long,
        default_value = "verb=ka.verb,resource=ka.target.resource,user=ka.user.name",
        value_name = "LABELS"
    )]
    pub metrics_labels: String,
    /// Label sets kept for `kube_audit_event_count`; events beyond are counted
    /// in saker_kube_audit_label_sets_overflow_total.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub metrics_max_label_sets: usize,
    /// Keep the event-time state (windows, sequences, first-seen keys) and,
    /// for a file, the position reached in this directory, so that a
    /// restart loses nothing and repeats little. Created if missing; one
    /// directory per saker instance. With it, the end of the input is a
    /// pause: the next run goes on with the stream.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How often the state is saved to --state-dir (also when the run
    /// stops). A file's flushed position is saved every second.
    #[arg(long, default_value = "30s", value_parser = durations::std_nonzero, value_name = "DURATION")]
    pub state_interval: Duration,
    /// Every setting in effect, by config key; filled in by [`super::parse`].
    #[arg(skip)]
    pub effective: super::config::Effective,
}

/// The audit webhook receiver (`--input http`).
#[derive(clap::Args)]
#[command(next_help_heading = "HTTP receiver (--input http)")]
pub struct HttpArgs {
    /// Address to listen on. A bare port listens on loopback only; beyond
    /// loopback, TLS and an authentication method (--tls-client-ca,
    /// --http-token-file or --http-access-key-file) are required.
    #[arg(long, default_value = "127.0.0.1:9765", value_name = "ADDR")]
    pub listen: String,
    /// Server certificate (PEM, with its chain), re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM), re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates the audit paths (/k8s-audit,
    /// /audit) require: the one that signs the webhook kubeconfig's
    /// client-certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// File of tokens, one per line, re-read when it changes. The audit
    /// paths require one as a bearer token (the webhook kubeconfig's user
    /// token); /pubsub as `?token=TOKEN` in the push endpoint URL.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// File of access keys, one per line, re-read when it changes: /firehose
    /// requires one in the X-Amz-Firehose-Access-Key header (the access key
    /// of the Firehose stream's HTTP endpoint destination). Without it,
    /// /firehose is closed once another credential is configured.
    #[arg(long, value_name = "FILE")]
    pub http_access_key_file: Option<PathBuf>,
    /// Bodies longer than this, as sent or inflated (Content-Encoding:
    /// gzip), are refused with 413. Keep a Firehose stream's buffer size
    /// below it.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_body_bytes: u64,
    /// Bytes that requests waiting for, or under, evaluation may hold in
    /// all; beyond, senders get 429 and retry. Bounds the receiver's memory.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub http_queue_bytes: u64,
}

/// The Kafka source (`--input kafka`).
#[derive(clap::Args)]
#[command(next_help_heading = "Kafka (--input kafka)")]
pub struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, value_name = "HOSTS")]
    pub kafka_brokers: Option<String>,
    /// Topic to consume; repeat for several. Keyed any way: windowed,
    /// sequence and first-seen rules not grouped by --kafka-partition-key
    /// are repartitioned through the group's topic GROUP-saker-repartition.
    #[arg(long, value_name = "TOPIC")]
    pub kafka_topic: Vec<String>,
    /// Consumer group. Instances in one group share the partitions; offsets
    /// are committed only after alerts are written, and a restarted instance
    /// rebuilds its windows by replaying (without alerts) the messages
    /// before its committed offsets.
    #[arg(long, default_value = "saker", value_name = "GROUP")]
    pub kafka_group: String,
    /// librdkafka property, key=value (TLS, SASL, session.timeout.ms, ...);
    /// repeatable. Saker always commits offsets itself.
    #[arg(short = 'X', long = "kafka-option", value_name = "KEY=VALUE", value_parser = saker::source::kafka::parse_option)]
    pub kafka_option: Vec<(String, String)>,
    /// How often processed offsets are committed.
    #[arg(long, default_value = "1s", value_parser = durations::std_nonzero, value_name = "DURATION")]
    pub kafka_commit_interval: Duration,
    /// How long a warm-up replay waits for the broker before giving up.
    #[arg(long, default_value = "30s", value_parser = durations::std_nonzero, value_name = "DURATION")]
    pub kafka_warmup_timeout: Duration,
    /// The field the topic's messages are keyed by, if any (e.g.
    /// ka.user.name). Windowed and first-seen rules grouped by it (and
    /// sequences whose every step is) are evaluated in the partition that reads them; the
    /// others are repartitioned through the group's topic
    /// GROUP-saker-repartition.
    #[arg(long, value_name = "FIELD", value_parser = partition_key)]
    pub kafka_partition_key: Option<String>,
    /// Partitions of the repartition topic when Saker creates it (an
    /// existing one keeps its own).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024), value_name = "N")]
    pub kafka_repartition_partitions: i32,
    /// How long an input partition may bring nothing new before the
    /// repartitioned windows stop waiting for it. Keep it above the
    /// group's session timeout, so that a crashed instance's partitions
    /// are waited for until they move to another member.
    #[arg(long, default_value = "60s", value_parser = durations::std_nonzero, value_name = "DURATION")]
    pub kafka_idle_timeout: Duration,
}

/// A `--kafka-partition-key` field: one that can key a message.
fn partition_key(name: &str) -> Result<String, String> {
    saker::source::kafka::produce::key_field(name).map(|_| name.to_string())
}

/// Alert format on stdout.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

/// Falco's `rule_matching`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Matching {
    First,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

/// Where `run` reads from.
#[derive(Debug, Clone)]
pub enum InputSettings {
    /// stdin, or a file (`follow`: kept open across rotation).
    Lines {
        input: Input,
        follow: bool,
    },
    Kafka(saker::source::kafka::Settings),
    Http(saker::source::http::Settings),
}

/// The metrics endpoint.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: String,
    pub labels: Vec<(String, &'static FieldDef)>,
    pub max_label_sets: usize,
}

/// The state directory (`--state-dir`).
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub dir: PathBuf,
    pub interval: Duration,
}

/// Everything `saker run` does, validated.
pub struct RunSettings {
    /// The config files read (`--config`), for a reload to watch and re-read.
    pub config_files: Vec<PathBuf>,
    /// Every setting in effect, by config key (`--print-config`).
    pub effective: super::config::Effective,
    pub rules: Vec<PathBuf>,
    pub load: saker::rules::LoadOptions,
    pub input: InputSettings,
    pub format: Format,
    pub matching: RuleMatching,
    pub max_line_bytes: usize,
    /// Worker threads (resolved: at least 1).
    pub threads: usize,
    pub progress: ProgressMode,
    pub summary: bool,
    pub windows: WindowOptions,
    pub alertmanager: Option<AmSettings>,
    pub alertmanager_drain: Duration,
    pub http_output: Option<HttpOutputSettings>,
    pub http_output_drain: Duration,
    pub metrics: Option<MetricsSettings>,
    pub state: Option<StateSettings>,
}

impl RunArgs {
    /// Checks the flags together and builds the settings.
    pub fn settings(self) -> Result<RunSettings, UsageError> {
        let replay = self.replay.settings()?;
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if self.state_dir.is_some() && matches!(replay.input, InputSettings::Kafka(_)) {
            return Err("--state-dir does not apply to --input kafka: a restarted consumer rebuilds its state by replaying its partitions".into());
        }
        let metrics = match &self.metrics_listen {
            None => None,
            Some(listen) => Some(MetricsSettings {
                listen: listen.clone(),
                labels: saker::engine::metric_labels(&self.metrics_labels)
                    .map_err(|e| UsageError(format!("--metrics-labels: {e}")))?,
                max_label_sets: self.metrics_max_label_sets,
            }),
        };
        Ok(RunSettings {
            alertmanager: self.alertmanager_settings()?,
            http_output: self.http_output_settings(),
            http_output_drain: self.http_output_drain,
            rules: replay.rules,
            config_files: self.config.into_iter().collect(),
            effective: self.effective,
            load: replay.load,
            input: replay.input,
            format: match self.output {
                OutputFormat::Json => Format::Json,
                OutputFormat::Text => Format::Text,
            },
            matching: replay.matching,
            max_line_bytes: replay.max_line_bytes,
            threads,
            progress: self.progress,
            summary: !self.no_summary,
            windows: replay.windows,
            alertmanager_drain: self.alertmanager_drain,
            metrics,
            state: self.state_dir.clone().map(|dir| StateSettings {
                dir,
                interval: self.state_interval,
            }),
        })
    }

    fn alertmanager_settings(&self) -> Result<Option<AmSettings>, UsageError> {
        if self.alertmanager.is_empty() {
            return Ok(None);
        }
        let bearer_token = match &self.alertmanager_bearer_token_file {
            None => None,
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        UsageError(format!("--alertmanager: cannot read {}: {e}", p.display()))
                    })?
                    .trim()
                    .to_string(),
            ),
        };
        Ok(Some(AmSettings {
            urls: self.alertmanager.clone(),
            resend: Duration::from_nanos(self.alertmanager_resend),
            expiry: Duration::from_nanos(self.alertmanager_expiry),
            queue_cap: self.alertmanager_queue,
            bearer_token,
            timeout: Duration::from_nanos(self.alertmanager_timeout),
            ca_file: self.alertmanager_ca_file.clone(),
            resolve_delay: self.alertmanager_resolve_delay,
        }))
    }

    fn http_output_settings(&self) -> Option<HttpOutputSettings> {
        (!self.http_output.is_empty()).then(|| HttpOutputSettings {
            urls: self.http_output.clone(),
            queue_cap: self.http_output_queue,
            client: saker::sink::http::ClientSettings {
                timeout: Duration::from_nanos(self.http_output_timeout),
                ca_file: self.http_output_ca_file.clone(),
                bearer_token: None,
            },
        })
    }
}

impl HttpArgs {
    /// The receiver's settings: beyond loopback, only with TLS and an
    /// authentication method.
    pub(super) fn settings(&self) -> Result<saker::source::http::Settings, UsageError> {
        let listen = saker::sink::metrics::listen_address(&self.listen)
            .map_err(|e| UsageError(format!("--listen {}: {e}", self.listen)))?;
        let tls = self.tls_cert.clone().zip(self.tls_key.clone());
        let secrets = |flag: &str, path: &Option<PathBuf>| match path {
            None => Ok(None),
            Some(p) => saker::source::http::secrets::SecretFile::open(p)
                .map(|f| Some(std::sync::Arc::new(f)))
                .map_err(|e| UsageError(format!("{flag}: {e}"))),
        };
        let tokens = secrets("--http-token-file", &self.http_token_file)?;
        let access_keys = secrets("--http-access-key-file", &self.http_access_key_file)?;
        if self.tls_client_ca.is_some() && tls.is_none() {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
        }
        if !listen.ip().is_loopback() {
            let mut missing = Vec::new();
            if tls.is_none() {
                missing.push("TLS (--tls-cert and --tls-key)");
            }
            if self.tls_client_ca.is_none() && tokens.is_none() && access_keys.is_none() {
                missing.push(
                    "an authentication method (--tls-client-ca, --http-token-file or --http-access-key-file)",
                );
            }
            if !missing.is_empty() {
                return Err(UsageError(format!(
                    "--listen {listen} is beyond loopback: audit events would be accepted from the network without {}; add {}",
                    missing.join(" or "),
                    missing.join(" and ")
                )));
            }
        }
        if self.max_body_bytes == 0 || self.http_queue_bytes < self.max_body_bytes {
            return Err(UsageError(format!(
                "--http-queue-bytes ({}) must hold at least one body of --max-body-bytes ({})",
                self.http_queue_bytes, self.max_body_bytes
            )));
        }
        Ok(saker::source::http::Settings {
            listen,
            tls,
            client_ca: self.tls_client_ca.clone(),
            tokens,
            access_keys,
            max_body_bytes: self.max_body_bytes,
            queue_bytes: self.http_queue_bytes,
        })
    }
}

/// The input; an error when Kafka flags are given without `--input
/// kafka`, or it lacks what it needs.
pub fn input_settings(
    input: &str,
    follow: bool,
    max_line_bytes: usize,
    k: &KafkaArgs,
) -> Result<InputSettings, UsageError> {
    if input != "kafka" {
        if k.kafka_brokers.is_some() || !k.kafka_topic.is_empty() || !k.kafka_option.is_empty() {
            return Err("--kafka-brokers, --kafka-topic and -X need --input kafka".into());
        }
        let input = Input::parse(input);
        if follow && matches!(input, Input::Stdin) {
            return Err("--follow needs --input FILE (stdin and Kafka are always followed)".into());
        }
        return Ok(InputSettings::Lines { input, follow });
    }
    if follow {
        return Err("--follow needs --input FILE (stdin and Kafka are always followed)".into());
    }
    let brokers = k
        .kafka_brokers
        .clone()
        .ok_or("--input kafka needs --kafka-brokers HOST:PORT")?;
    if k.kafka_topic.is_empty() {
        return Err("--input kafka needs --kafka-topic TOPIC".into());
    }
    Ok(InputSettings::Kafka(saker::source::kafka::Settings {
        brokers,
        topics: k.kafka_topic.clone(),
        group: k.kafka_group.clone(),
        options: k.kafka_option.clone(),
        commit_interval: k.kafka_commit_interval,
        max_document_bytes: max_line_bytes,
        warmup_timeout: k.kafka_warmup_timeout,
        partition_key: k.kafka_partition_key.clone(),
        repartition_partitions: k.kafka_repartition_partitions,
        idle_timeout: k.kafka_idle_timeout,
    }))
}
