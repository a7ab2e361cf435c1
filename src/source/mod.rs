//! Sources of audit data: standard input and files, read as lines; live
//! ones (stdin, `--follow`) through a reading thread (`live`).

pub mod lines;
pub mod live;

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// Where events are read from.
#[derive(Debug, Clone)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn parse(s: &str) -> Input {
        if s == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(s))
        }
    }

    /// Opens the input; returns the reader and, for files, the size.
    pub fn open(&self) -> io::Result<(Box<dyn Read>, Option<u64>)> {
        match self {
            Input::Stdin => Ok((Box::new(io::stdin().lock()), None)),
            Input::File(p) => {
                let f = File::open(p)?;
                let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                Ok((Box::new(f), len))
            }
        }
    }

    /// Opens the input for a reading thread: stdin, or a file followed
    /// across rotation when `follow` is set.
    pub fn open_live(&self, follow: bool) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Input::Stdin => Ok(Box::new(io::stdin())),
            Input::File(p) if follow => Ok(Box::new(live::Follower::open(
                p,
                std::time::Duration::from_millis(200),
            )?)),
            Input::File(p) => Ok(Box::new(File::open(p)?)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}
