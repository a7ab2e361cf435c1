//! `saker rbac who-can`: the subjects RBAC objects let make a request.

use std::process::ExitCode;

use saker::rbac::{who_can, ReadError};

pub fn who_can(settings: &who_can::Settings) -> ExitCode {
    match who_can::run(settings) {
        Ok((out, warnings)) => {
            warnings
                .iter()
                .for_each(|w| eprintln!("saker: warning: {w}"));
            super::emit(&out);
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
