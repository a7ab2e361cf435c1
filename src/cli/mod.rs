//! The command line, in two steps as ripgrep does: clap reads the flags
//! into the `*Args` structs here, and each is validated once into typed
//! settings ([`run::RunSettings`], …) that the commands in `cmd/` take. No
//! library type knows about clap. A validation failure is a [`UsageError`]:
//! exit code 2. `run --config FILE` (and the replay's part of it, for
//! `report --config FILE`) is merged in by [`parse`].

pub mod config;
pub mod decode;
pub mod durations;
pub mod policy;
pub mod produce;
pub mod rbac;
pub mod replay;
pub mod report;
pub mod run;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log level on stderr (error, warn, info, debug, trace). RUST_LOG overrides it.
    #[arg(long, default_value = "warn", global = true)]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Evaluate rules on audit events and print alerts on stdout.
    Run(Box<run::RunArgs>),
    /// Validate rule files; every problem with file:line:col and a caret.
    Check {
        /// Rule files or directories (default: the embedded rules).
        rules: Vec<PathBuf>,
        /// Explain a diagnostic code (as printed in brackets, e.g.
        /// `unknown-field`) instead of checking rules; `--explain list`
        /// lists every code.
        #[arg(long, value_name = "CODE")]
        explain: Option<String>,
    },
    /// Run rule tests (YAML files: rules, input events, expected alerts).
    /// With no files, runs the tests of the embedded default rules.
    Test {
        /// Test files.
        tests: Vec<PathBuf>,
    },
    /// Replay an input through the rules (as `run` does) and write one
    /// self-contained HTML page: the alerts' timeline by rule, windowed
    /// rules against their thresholds, sequences, identities, input health.
    Report(Box<report::ReportArgs>),
    /// Write audit events (one per line, from a file or stdin) to a Kafka
    /// topic, keyed by a field and stamped with the event time: for
    /// replaying recorded audit logs into a test topic.
    Produce(Box<produce::ProduceArgs>),
    /// Audit policy tooling: lint a policy, check it against the rules, and
    /// simulate it on recorded events.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// RBAC tooling on exported Roles, ClusterRoles and bindings.
    #[command(subcommand)]
    Rbac(rbac::RbacCommand),
    /// Print the audit events found in an input (EKS, GKE and AKS envelopes
    /// opened), one per line, and what was skipped: what the rules would see.
    Decode(Box<decode::DecodeArgs>),
    /// List every field a condition or output can use.
    Fields {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A flag combination or value that cannot work (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<String> for UsageError {
    fn from(s: String) -> Self {
        UsageError(s)
    }
}

impl From<&str> for UsageError {
    fn from(s: &str) -> Self {
        UsageError(s.to_string())
    }
}

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// clap's own errors, and `--help` and `--version`.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The config file's settings and the flags do not go together.
    #[error("{error}")]
    Merged { error: clap::Error, config: PathBuf },
}

impl CliError {
    /// Prints the error (help and version on stdout); the exit code.
    pub fn report(&self) -> ExitCode {
        match self {
            CliError::Clap(e) => {
                let _ = e.print();
                ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
            }
            CliError::Config(e @ config::ConfigError::Invalid { diagnostics, .. }) => {
                for d in diagnostics {
                    eprint!("{d}");
                }
                eprintln!("saker: {e}");
                ExitCode::from(2)
            }
            CliError::Config(e) => {
                eprintln!("saker: {e}");
                ExitCode::from(2)
            }
            CliError::Merged { error, config } => {
                let _ = error.print();
                eprintln!(
                    "note: the settings of {} were given as flags after the command line's",
                    config.display()
                );
                ExitCode::from(2)
            }
        }
    }
}

/// Reads the command line (`argv`, program name first). For `run --config
/// FILE`, the file is read and checked ([`config::read`]), and each of its
/// settings that the command line does not give is appended to `argv` as
/// flags (for `report --config FILE`, those of the flags the two commands
/// share, [`replay::ReplayArgs`]); clap then reads the whole again, so the file's settings are
/// validated exactly as flags are. A repeatable flag on the command line
/// replaces the file's list. Calling this again with the same `argv`
/// re-reads the file (a reload).
pub fn parse(argv: &[OsString]) -> Result<Cli, CliError> {
    let root = Cli::command();
    let mut matches = root.clone().try_get_matches_from(argv)?;
    if let Some((name @ ("run" | "report"), sub)) = matches.subcommand() {
        if let Some(path) = sub.get_one::<PathBuf>("config") {
            let file = config::read(path, &root)?;
            let global = |id: &str| {
                root.get_arguments()
                    .any(|a| a.is_global_set() && a.get_id() == id)
            };
            // `report` takes what shapes the replay: the input, the rules,
            // the window settings (and the log flags).
            let applies = |id: &str| name == "run" || replay::is_replay_flag(id) || global(id);
            let mut merged = argv.to_vec();
            for setting in &file.settings {
                if applies(&setting.id)
                    && sub.value_source(&setting.id) != Some(ValueSource::CommandLine)
                {
                    merged.extend(setting.tokens.iter().cloned());
                }
            }
            matches =
                root.clone()
                    .try_get_matches_from(merged)
                    .map_err(|error| CliError::Merged {
                        error,
                        config: file.path.clone(),
                    })?;
        }
    }
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Command::Run(args), Some(run)) = (&mut cli.command, matches.subcommand_matches("run")) {
        args.effective = config::Effective::of(&root, run);
    }
    Ok(cli)
}
