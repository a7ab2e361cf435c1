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
pub struct AuditLogFlags {
    /// Days a rotated audit log is kept (0: no age limit).
    #[arg(long = "audit-log-maxage", default_value_t = 0, value_name = "DAYS")]
    pub maxage: u64,
    /// Rotated audit logs kept (0: all of them).
    #[arg(long = "audit-log-maxbackup", default_value_t = 0, value_name = "N")]
    pub maxbackup: u64,
    /// Size in MiB at which the audit log is rotated (0: lumberjack's 100).
    #[arg(long = "audit-log-maxsize", default_value_t = 0, value_name = "MB")]
    pub maxsize: u64,
    /// Rotated audit logs are gzip'd (saves disk, keeps no more days).
    #[arg(long = "audit-log-compress", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_name = "BOOL")]
    pub compress: bool,
}

impl AuditLogFlags {
    pub fn settings(&self) -> saker::policy::retention::LogFlags {
        saker::policy::retention::LogFlags {
            maxage: self.maxage,
            maxbackup: self.maxbackup,
            maxsize: self.maxsize,
            compress: self.compress,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyFormat {
    Text,
    Json,
}
