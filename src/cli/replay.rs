//! The flags `saker run` and `saker report` share: the input, the rules
//! and the window settings, and the [`ReplaySettings`] they are validated
//! into. Both commands flatten [`ReplayArgs`], so the flags, their help and
//! their config keys are one list.

use std::path::PathBuf;

use saker::engine::windows::WindowOptions;
use saker::engine::RuleMatching;
use saker::window::Limits;

use super::durations;
use super::run::{input_settings, HttpArgs, InputSettings, KafkaArgs, Matching};
use super::UsageError;

/// Default lateness, and on the HTTP receiver.
const LATENESS: u64 = 5_000_000_000;
const HTTP_LATENESS: u64 = 40_000_000_000;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Rule file or directory of *.yaml files; repeat to load several, in
    /// order (later files can redefine or append). Default: the embedded rules.
    /// `saker run` reloads them without a restart on SIGHUP, on POST
    /// /-/reload and when a file changes (looked at every second);
    /// unchanged windowed, sequence and first-seen rules keep their state,
    /// and a set that fails to load leaves the running one in place.
    #[arg(long = "rules", short = 'r', value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Where to read events: `-` for stdin, a file path, `kafka` (a
    /// consumer group; see --kafka-brokers), or `http` (the audit webhook
    /// receiver; see --listen).
    #[arg(
        long,
        short = 'i',
        default_value = "-",
        value_name = "-|FILE|kafka|http",
        value_hint = clap::ValueHint::FilePath
    )]
    pub input: String,
    /// Keep reading the file as it grows, across log rotation (the old file
    /// is finished, then the new one read from its start), until stopped.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// `first`: an event alerts for the first matching rule only (Falco's
    /// default); `all`: every matching rule alerts.
    #[arg(long, value_enum, default_value_t = Matching::First)]
    pub rule_matching: Matching,
    /// Lines longer than this many bytes are skipped and counted.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_line_bytes: usize,
    /// Tick of windowed rules: event times are cut into steps of this size;
    /// windows and `for` must be whole multiples of it.
    #[arg(long, default_value = "1s", value_parser = durations::parse_nonzero, value_name = "DURATION")]
    pub resolution: u64,
    /// How long to wait for out-of-order events before evaluating a tick of
    /// a windowed rule; events later than this are counted as late.
    /// Default: 5s; 40s with --input http, whose senders batch events for
    /// up to 30s and several API servers send at once.
    #[arg(long, value_parser = durations::parse_or_zero, value_name = "DURATION")]
    pub lateness: Option<u64>,
    /// Keys kept per windowed rule (least recently used are evicted, and
    /// counted).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_keys: usize,
    /// Distinct values kept per key of a `distinct()` rule.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_distinct_values: usize,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Whether the flag `id` (a clap id) is one of [`ReplayArgs`]' (the
/// settings of a `saker run` config file that `saker report --config`
/// takes).
pub fn is_replay_flag(id: &str) -> bool {
    use clap::Args;
    ReplayArgs::augment_args(clap::Command::new("replay"))
        .get_arguments()
        .any(|a| a.get_id() == id)
}

/// The input, the rules and how they are evaluated, validated.
pub struct ReplaySettings {
    pub rules: Vec<PathBuf>,
    pub load: saker::rules::LoadOptions,
    pub input: InputSettings,
    pub matching: RuleMatching,
    pub max_line_bytes: usize,
    pub windows: WindowOptions,
}

impl ReplayArgs {
    /// Checks the input flags together and builds the settings.
    pub fn settings(&self) -> Result<ReplaySettings, UsageError> {
        let input = self.input_settings()?;
        let lateness = self.lateness.unwrap_or(match input {
            InputSettings::Http(_) => HTTP_LATENESS,
            _ => LATENESS,
        });
        Ok(ReplaySettings {
            rules: self.rules.clone(),
            load: saker::rules::LoadOptions {
                resolution_ns: self.resolution,
            },
            input,
            matching: match self.rule_matching {
                Matching::First => RuleMatching::First,
                Matching::All => RuleMatching::All,
            },
            max_line_bytes: self.max_line_bytes,
            windows: WindowOptions {
                lateness_ns: lateness,
                limits: Limits {
                    max_keys: self.max_keys,
                    max_values_per_key: self.max_distinct_values,
                },
            },
        })
    }

    fn input_settings(&self) -> Result<InputSettings, UsageError> {
        if self.input == "http" {
            if self.follow {
                return Err("--follow needs --input FILE (the receiver is always live)".into());
            }
            return self.http.settings().map(InputSettings::Http);
        }
        input_settings(&self.input, self.follow, self.max_line_bytes, &self.kafka)
    }
}
