//! The agent's persistent state under `/var/lib/firstboot-agent` (config `agent.state_dir`): what was done, when,
//! and the brick's filesystem UUID.
//!
//! The state lives on the root filesystem of this flash, so a freshly flashed card starts with none. It is one JSON
//! file written atomically (temporary file, fsync, rename, fsync of the directory): a crash leaves either the old
//! or the new state, never a torn one. Every step that changes the machine records itself only after it is done,
//! and checks the real state on the next run, so losing the last write is harmless.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Version of the state format written by this program.
pub const STATE_VERSION: u32 = 1;

/// How long [`StateStore::lock`] waits for a lock someone else holds.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Errors reading or writing the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory could not be created or opened.
    #[error("cannot use state directory {path}: {source} (it must be a writable directory; the agent runs as root)")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing the state file failed.
    #[error("cannot {action} state file {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `rename`, `sync`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "{path} is locked by another firstboot-agent process ({source}); wait for it to finish"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The flock error.
        source: std::io::Error,
    },
    /// The state file holds something that is not a state.
    #[error("state file {path} is not valid: {message} (move it away to start over; the agent re-checks the real disk and cluster)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        message: String,
    },
}

/// Seconds since the Unix epoch, as recorded in the state.
pub type Timestamp = u64;

/// Now, in seconds since the Unix epoch.
pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything the agent remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Format version ([`STATE_VERSION`]).
    #[serde(default)]
    pub version: u32,
    /// The disk preparation steps.
    #[serde(default)]
    pub disk: DiskState,
    /// Reserved for the cluster formation state machine (owned by the formation modules).
    #[serde(default)]
    pub formation: serde_json::Value,
}

/// What `prepare-disk` has done on this flash. Timestamps are seconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskState {
    /// The whole-disk device prepared (e.g. `/dev/mmcblk0`).
    pub device: Option<PathBuf>,
    /// The brick partition (e.g. `/dev/mmcblk0p3`).
    pub brick_partition: Option<PathBuf>,
    /// When the partition table was brought to the brick layout (and the kernel told).
    pub table_done_at: Option<Timestamp>,
    /// When the root ext4 was grown to fill partition 2.
    pub root_grown_at: Option<Timestamp>,
    /// When this flash started `mkfs.xfs` on the brick partition (set before running it, so a crash during the
    /// format is known to have hit a partition this flash owns).
    pub brick_format_started_at: Option<Timestamp>,
    /// When this flash finished making the brick's XFS.
    pub brick_formatted_at: Option<Timestamp>,
    /// Whether this flash made the brick filesystem (false when an existing XFS was found and adopted).
    pub made_brick_fs: bool,
    /// UUID of the brick's XFS.
    pub brick_fs_uuid: Option<String>,
    /// When the brick was mounted and recorded in fstab, and the brick directory made.
    pub brick_mounted_at: Option<Timestamp>,
    /// When every step was last seen done.
    pub completed_at: Option<Timestamp>,
}

/// A held lock from [`StateStore::lock`]; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// The state file in its directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating it, mode 0700, when missing) the state directory.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let err = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        fs::read_dir(dir).map_err(err)?;
        Ok(StateStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the state; a missing file is the default (nothing done yet).
    pub fn load(&self) -> Result<AgentState, StateError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AgentState {
                    version: STATE_VERSION,
                    ..AgentState::default()
                })
            }
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Saves the state atomically: temporary file (mode 0600), fsync, rename over the state file, fsync directory.
    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        let path = self.path();
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let io = |action, p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io {
                action,
                path: p,
                source,
            }
        };
        let mut state = state.clone();
        state.version = STATE_VERSION;
        let mut text = serde_json::to_string_pretty(&state).expect("state serialises");
        text.push('\n');
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("write", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))?;
        Ok(())
    }

    /// Takes an exclusive lock named `name` in the state directory (e.g. `disk` while the disk is prepared), so
    /// two agents (the service and a person running a subcommand) never work on the same thing at once. The lock
    /// is held until the returned guard is dropped, and released by the kernel if the process dies.
    ///
    /// A lock held by someone else is waited for up to [`LOCK_WAIT`] before [`StateError::Busy`]: a lock just
    /// dropped can stay held for a moment by a child another thread forked but has not yet exec'd (the child
    /// holds a copy of the descriptor until exec closes it).
    pub fn lock(&self, name: &str) -> Result<StateLock, StateError> {
        self.lock_within(name, LOCK_WAIT)
    }

    /// [`StateStore::lock`] with its own wait.
    pub fn lock_within(&self, name: &str, wait: Duration) -> Result<StateLock, StateError> {
        use std::os::fd::AsRawFd;
        let path = self.dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StateError::Io {
                action: "open",
                path: path.clone(),
                source,
            })?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(StateLock { _file: file });
            }
            let source = std::io::Error::last_os_error();
            if source.kind() != std::io::ErrorKind::WouldBlock || Instant::now() >= deadline {
                return Err(StateError::Busy { path, source });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Loads the state, applies `change`, and saves it.
    pub fn update<F: FnOnce(&mut AgentState)>(&self, change: F) -> Result<AgentState, StateError> {
        let mut s = self.load()?;
        change(&mut s);
        self.save(&s)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_default_and_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(&d.path().join("a/b")).unwrap();
        let s = store.load().unwrap();
        assert_eq!(s.disk, DiskState::default());
        assert!(s.formation.is_null());

        let mut s2 = s.clone();
        s2.disk.brick_fs_uuid = Some("1234".into());
        s2.disk.table_done_at = Some(now());
        s2.formation = serde_json::json!({"phase": "pool"});
        store.save(&s2).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back, s2);
        assert!(!d.path().join("a/b/.state.json.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn older_file_without_fields_loads() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        fs::write(store.path(), r#"{"disk": {"table_done_at": 5}}"#).unwrap();
        let s = store.load().unwrap();
        assert_eq!(s.disk.table_done_at, Some(5));
        assert!(s.formation.is_null());
    }

    #[test]
    fn corrupt_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        fs::write(store.path(), "{not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        let held = store.lock("disk").unwrap();
        let err = store.lock_within("disk", Duration::ZERO).unwrap_err();
        assert!(matches!(err, StateError::Busy { .. }), "{err}");
        assert!(store.lock("other").is_ok());
        drop(held);
        assert!(store.lock("disk").is_ok());
    }

    #[test]
    fn lock_released_within_the_wait_is_taken() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        let held = store.lock("disk").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let store = StateStore::open(d.path()).unwrap();
            std::thread::spawn(move || {
                tx.send(()).unwrap();
                store
                    .lock_within("disk", Duration::from_secs(30))
                    .map(|_| ())
            })
        };
        rx.recv().unwrap();
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn update_applies() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        store.update(|s| s.disk.made_brick_fs = true).unwrap();
        assert!(store.load().unwrap().disk.made_brick_fs);
    }
}
