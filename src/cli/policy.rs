//! Flags of `saker policy lint|check|simulate`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum PolicyCommand {
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
    /// and the volume the policy would keep, by policy rule.
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
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyFormat {
    Text,
    Json,
}
