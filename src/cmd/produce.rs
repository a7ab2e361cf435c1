//! `saker produce`: a recorded log written to a Kafka topic.

use std::process::ExitCode;
use std::time::Instant;

use saker::source::Input;

use crate::cli::produce::ProduceArgs;

pub fn produce(args: &ProduceArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("saker: {e}");
            return ExitCode::from(2);
        }
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
    match saker::source::kafka::produce::produce(&settings, reader) {
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
