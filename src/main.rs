//! The `saker` command line: flags are read and validated in `cli`, and
//! each command in `cmd` wires the library together. Exit codes: 0 ok, 1
//! rule or test failure, 2 usage or configuration error.

mod cli;
mod cmd;

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use cli::{Command, LogFormat};

/// mimalloc instead of the system allocator: with `--threads`, the main
/// thread frees what workers allocated (captured alerts, keys, hits), and
/// glibc's malloc serialises those frees on the workers' arena locks
/// (BENCHMARKS.md, "Several cores"). It is also cheaper per call on one
/// thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let cli = match cli::parse(&argv) {
        Ok(cli) => cli,
        Err(e) => return e.report(),
    };
    // Rule tests feed deliberately noisy input; their skip warnings are noise.
    let level = match cli.command {
        Command::Test { .. } if cli.log_level == "warn" => "error",
        _ => cli.log_level.as_str(),
    };
    init_logging(cli.log_format, level);
    match cli.command {
        Command::Run(args) => match (args.print_config, args.settings()) {
            (true, Ok(settings)) => {
                cmd::emit(&settings.effective.to_string());
                ExitCode::SUCCESS
            }
            (false, Ok(settings)) => cmd::run(settings),
            (_, Err(e)) => {
                eprintln!("saker: {e}");
                ExitCode::from(2)
            }
        },
        Command::Report(args) => match args.settings() {
            Ok(settings) => cmd::report(settings),
            Err(e) => {
                eprintln!("saker: {e}");
                ExitCode::from(2)
            }
        },
        Command::Check { rules, explain } => match explain {
            Some(code) => cmd::explain(&code),
            None => cmd::check(&rules),
        },
        Command::Test { tests } => cmd::test(&tests),
        Command::Produce(args) => cmd::produce(&args),
        Command::Policy(command) => cmd::policy(command),
        Command::Rbac(cli::rbac::RbacCommand::WhoCan(args)) => cmd::who_can(&args.settings()),
        Command::Decode(args) => match args.settings() {
            Ok(settings) => cmd::decode(settings),
            Err(e) => {
                eprintln!("saker: {e}");
                ExitCode::from(2)
            }
        },
        Command::Fields { json } => cmd::fields(json),
    }
}

/// Logs on stderr: colour only on a terminal and without `NO_COLOR`
/// (journald and `kubectl logs` show escapes raw); JSON one object a line.
fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(io::stderr().is_terminal() && !no_color)
            .with_target(false)
            .init(),
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}
