//! The shared secrets that requests present, read from files
//! (`--http-token-file`, `--http-access-key-file`; one secret a line, so a
//! rotation can list the old and the new) and read again when the file
//! changes, so a Secret update needs no restart. A file that becomes
//! unreadable or empty keeps the secrets it last held. A presented secret is
//! compared with each one without stopping at the first differing byte.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the file is read again, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Why a secrets file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The file cannot be read, e.g. it does not exist.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file holds only blank lines.
    #[error("{} holds no secret", path.display())]
    Empty { path: PathBuf },
}

/// A file of secrets, re-read when it changes.
pub struct SecretFile {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// The file's content when last read, and the secrets it held.
    raw: Vec<u8>,
    secrets: Vec<String>,
    checked: Instant,
    /// The last reload failure, so it is logged once.
    failure: Option<String>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .finish()
    }
}

fn read(path: &Path) -> Result<(Vec<u8>, Vec<String>), SecretsError> {
    let raw = std::fs::read(path).map_err(|source| SecretsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let secrets = parse(&raw);
    if secrets.is_empty() {
        return Err(SecretsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((raw, secrets))
}

/// The secrets of a file's text: its lines, trimmed, blank ones left out.
fn parse(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

impl SecretFile {
    /// Reads the file; an error if it cannot be read or holds no secret.
    pub fn open(path: &Path) -> Result<Self, SecretsError> {
        let (raw, secrets) = read(path)?;
        Ok(SecretFile {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                raw,
                secrets,
                checked: Instant::now(),
                failure: None,
            }),
        })
    }

    /// Whether `given` (trimmed) is one of the secrets the file holds now.
    pub fn accepts(&self, given: &str) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.checked.elapsed() >= CHECK_EVERY {
            s.checked = Instant::now();
            self.reload(&mut s);
        }
        let given = given.trim().as_bytes();
        // Every secret is compared, so the time taken does not say which
        // one came close.
        s.secrets
            .iter()
            .fold(false, |ok, t| constant_time_eq(t.as_bytes(), given) | ok)
    }

    fn reload(&self, s: &mut State) {
        match std::fs::read(&self.path) {
            Ok(raw) if raw == s.raw => s.failure = None,
            Ok(raw) => match parse(&raw) {
                secrets if secrets.is_empty() => self.failed(s, "the file holds no secret".into()),
                secrets => {
                    tracing::info!(file = %self.path.display(), "http input: secrets reloaded");
                    (s.raw, s.secrets, s.failure) = (raw, secrets, None);
                }
            },
            Err(e) => self.failed(s, e.to_string()),
        }
    }

    fn failed(&self, s: &mut State, why: String) {
        if s.failure.as_ref() != Some(&why) {
            tracing::warn!(
                file = %self.path.display(),
                "http input: secrets not reloaded, the previous ones stay: {why}"
            );
            s.failure = Some(why);
        }
    }
}

/// Compares without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_secrets() {
        let dir = std::env::temp_dir().join(format!("saker-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "old-key\n\n  second  \n").unwrap();
        let f = SecretFile::open(&path).unwrap();
        assert!(f.accepts("old-key") && f.accepts("second") && !f.accepts("new-key"));
        assert!(!f.accepts("") && !f.accepts("old"));
        std::fs::write(&path, "new-key\n").unwrap();
        let mut s = f.state.lock().unwrap();
        f.reload(&mut s);
        drop(s);
        assert!(f.accepts("new-key") && !f.accepts("old-key"));
        std::fs::write(&path, "\n").unwrap();
        let mut s = f.state.lock().unwrap();
        f.reload(&mut s);
        assert_eq!(s.failure.as_deref(), Some("the file holds no secret"));
        drop(s);
        std::fs::remove_file(&path).unwrap();
        let mut s = f.state.lock().unwrap();
        f.reload(&mut s);
        drop(s);
        assert!(f.accepts("new-key"), "the last good secrets stay");
        assert!(matches!(
            SecretFile::open(&path),
            Err(SecretsError::Read { .. })
        ));
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            SecretFile::open(&path),
            Err(SecretsError::Empty { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
