//! Flags of `saker report`: the input, rules and window settings of `run`
//! ([`ReplayArgs`], the same flags), where the page goes, and an optional
//! audit policy to simulate on the same input.

use std::path::PathBuf;

use super::policy::AuditLogFlags;
use super::replay::{ReplayArgs, ReplaySettings};
use super::run::InputSettings;
use super::UsageError;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Take the input, the rules and the window settings from this `saker
    /// run` config file (the keys of the flags both commands take; its
    /// outputs, listeners and state settings are not the report's and are
    /// left out). Flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    // The input, the rules and the window settings (shared with `saker run`).
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Where to write the page (one self-contained HTML file).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also show what this audit policy would have kept of the input (as
    /// `saker policy simulate` does), and for how long the retention flags
    /// keep it. Needs --input FILE.
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PathBuf>,
    /// The API server's --audit-log-* rotation flags, for --policy.
    #[command(flatten)]
    pub log: AuditLogFlags,
    /// Do not print the alerts-by-rule and by-identity tables at the end.
    #[arg(long)]
    pub no_summary: bool,
}

/// Everything `saker report` does, validated.
pub struct ReportSettings {
    pub replay: ReplaySettings,
    pub out: PathBuf,
    pub policy: Option<(PathBuf, saker::policy::retention::LogFlags)>,
    pub summary: bool,
}

impl ReportArgs {
    pub fn settings(&self) -> Result<ReportSettings, UsageError> {
        let replay = self.replay.settings()?;
        if self.policy.is_some()
            && !matches!(
                replay.input,
                InputSettings::Lines {
                    input: saker::source::Input::File(_),
                    follow: false
                }
            )
        {
            return Err(
                "--policy needs --input FILE without --follow (the file is read twice)".into(),
            );
        }
        Ok(ReportSettings {
            replay,
            out: self.out.clone(),
            policy: self.policy.clone().map(|p| (p, self.log.settings())),
            summary: !self.no_summary,
        })
    }
}
