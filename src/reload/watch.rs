//! Noticing that a loaded config or rules file changed, by polling. Every
//! poll digests what a load would read: each file's content (through
//! symlinks), and for a rules directory the names of its `*.yaml` and
//! `*.yml` files and their contents. Contents, not modification times: a
//! Kubernetes ConfigMap mounted as a directory is updated by swapping its
//! `..data` symlink to a new directory, which changes no mtime of the
//! paths Saker was given. A change counts once it has been stable for one
//! poll, so a reload never reads a file half written or a directory half
//! copied.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// The watched paths and what they held.
#[derive(Debug)]
pub struct Watch {
    paths: Vec<PathBuf>,
    /// The digest when the last load read them.
    loaded: u64,
    /// A different digest seen at the last poll, waiting to be seen again.
    changed: Option<u64>,
}

impl Watch {
    /// Watches `paths` (files or directories), as they are now.
    pub fn new(paths: Vec<PathBuf>) -> Watch {
        let loaded = digest(&paths);
        Watch {
            paths,
            loaded,
            changed: None,
        }
    }

    /// Whether anything is watched.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The paths are about to be read by a load: what they hold now is
    /// what the running rules come from (once the load succeeds, or until
    /// they change again if it fails).
    pub fn loading(&mut self) {
        self.loaded = digest(&self.paths);
        self.changed = None;
    }

    /// Watches `paths` from now on, as they are now.
    pub fn set_paths(&mut self, paths: Vec<PathBuf>) {
        self.paths = paths;
        self.loading();
    }

    /// Looks at the paths again: true when they differ from what was
    /// loaded and are the same as at the previous poll.
    pub fn poll(&mut self) -> bool {
        if self.paths.is_empty() {
            return false;
        }
        let now = digest(&self.paths);
        if now == self.loaded {
            self.changed = None;
            return false;
        }
        if self.changed == Some(now) {
            return true;
        }
        self.changed = Some(now);
        false
    }
}

/// One digest of everything a load of `paths` would read.
fn digest(paths: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in paths {
        p.hash(&mut h);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(p) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => {
                    e.kind().hash(&mut h);
                    continue;
                }
            };
            files
                .retain(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")));
            files.sort();
            for f in files {
                file(&f, &mut h);
            }
        } else {
            file(p, &mut h);
        }
    }
    h.finish()
}

fn file(path: &Path, h: &mut DefaultHasher) {
    path.hash(h);
    match std::fs::read(path) {
        Ok(bytes) => bytes.hash(h),
        Err(e) => e.kind().hash(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A scratch directory of this test process, emptied first.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("saker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_change_counts_once_stable_for_one_poll() {
        let dir = scratch("watch-file");
        let rules = dir.join("rules.yaml");
        std::fs::write(&rules, "- list: a\n  items: []\n").unwrap();
        let mut w = Watch::new(vec![rules.clone()]);
        assert!(!w.poll(), "nothing changed");
        std::fs::write(&rules, "- list: a\n  items: [x]\n").unwrap();
        assert!(!w.poll(), "changed: wait one poll");
        std::fs::write(&rules, "- list: a\n  items: [x, y]\n").unwrap();
        assert!(!w.poll(), "still changing");
        assert!(w.poll(), "stable for one poll");
        assert!(w.poll(), "until it is loaded");
        w.loading();
        assert!(!w.poll());
        // Written back as it was loaded: nothing to do.
        std::fs::write(&rules, "- list: a\n  items: []\n").unwrap();
        std::fs::write(&rules, "- list: a\n  items: [x, y]\n").unwrap();
        assert!(!w.poll());
        // A file that goes away is a change too.
        std::fs::remove_file(&rules).unwrap();
        assert!(!w.poll());
        assert!(w.poll());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_configmap_symlink_swap_is_seen() {
        // What the kubelet does: files are links into `..data`, itself a
        // link to a timestamped directory swapped by a rename.
        let dir = scratch("watch-configmap");
        let v1 = dir.join("..2024_01_01_00_00_00.1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("rules.yaml"), "- list: a\n  items: []\n").unwrap();
        symlink("..2024_01_01_00_00_00.1", dir.join("..data")).unwrap();
        symlink("..data/rules.yaml", dir.join("rules.yaml")).unwrap();
        let mut w = Watch::new(vec![dir.clone()]);
        assert!(!w.poll());
        let v2 = dir.join("..2024_01_01_00_01_00.2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("rules.yaml"), "- list: a\n  items: [x]\n").unwrap();
        symlink("..2024_01_01_00_01_00.2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(&v1).unwrap();
        assert!(!w.poll());
        assert!(w.poll(), "the swap is a change");
        // A new rules file in the directory is one too; other files are not.
        w.set_paths(vec![dir.clone()]);
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        assert!(!w.poll() && !w.poll());
        std::fs::write(dir.join("more.yml"), "[]").unwrap();
        assert!(!w.poll());
        assert!(w.poll());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_watched_never_changes() {
        let mut w = Watch::new(Vec::new());
        assert!(w.is_empty());
        assert!(!w.poll() && !w.poll());
    }
}
