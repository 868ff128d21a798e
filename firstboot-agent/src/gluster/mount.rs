//! Mounting the Gluster volume through FUSE (`mount -t glusterfs`), checking that it answers, and the fstab line
//! that mounts it again at boot.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time `mount` may take.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a `statfs` on the mount point may take before the mount counts as hung.
pub const STATFS_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong mounting or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `mount`/`umount` could not be started.
    #[error("could not run `{command}`: {source}; is the glusterfs-client package installed?")]
    Spawn {
        /// The command line.
        command: String,
        /// The error from the operating system.
        #[source]
        source: std::io::Error,
    },
    /// It did not finish in time.
    #[error("`{command}` did not finish within {timeout:?}; are the volfile servers reachable?")]
    Timeout {
        /// The command line.
        command: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// It exited with an error.
    #[error("`{command}` failed ({status}): {stderr}; see /var/log/glusterfs/ for the client log")]
    Failed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// What it printed.
        stderr: String,
    },
    /// Something else is mounted on the mount point.
    #[error("{mountpoint} already holds a {fstype} mount of {what}, not the Gluster volume {volume}; unmount it first")]
    Occupied {
        /// The mount point.
        mountpoint: PathBuf,
        /// The volume that was to be mounted.
        volume: String,
        /// What is mounted there.
        what: String,
        /// Its file system type.
        fstype: String,
    },
    /// The mount point could not be made or the mount table not read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The mount command succeeded but the mount does not answer.
    #[error("{mountpoint} was mounted but does not answer within {timeout:?}")]
    NotAnswering {
        /// The mount point.
        mountpoint: PathBuf,
        /// The time it was given.
        timeout: Duration,
    },
}

/// What [`mount_volume`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// The volume was already mounted there (and answers).
    AlreadyMounted,
    /// It is mounted now.
    Mounted,
}

/// One line of `/proc/self/mountinfo`, the parts this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// File system type (`fuse.glusterfs` for a Gluster FUSE mount).
    pub fstype: String,
    /// What is mounted (`host:/volume` for Gluster; some kernels show `host:volume`).
    pub source: String,
}

/// State of a mount point, with the size when it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountHealth {
    /// Nothing is mounted there.
    NotMounted,
    /// Mounted and `statfs` answered in time.
    Answering {
        /// The mount table entry.
        entry: MountEntry,
        /// Total bytes.
        total: u64,
        /// Bytes available.
        available: u64,
    },
    /// Mounted but `statfs` did not answer in time (or failed, e.g. "Transport endpoint is not connected").
    NotAnswering {
        /// The mount table entry.
        entry: MountEntry,
        /// Why it counts as not answering.
        reason: String,
    },
}

/// Parses `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let _ = text;
    todo!()
}

/// The mount table entry on `mountpoint` (the last, topmost one), if any.
pub fn mount_entry(mountpoint: &Path) -> Result<Option<MountEntry>, MountError> {
    let _ = mountpoint;
    todo!()
}

/// Mounts Gluster volume `volume` on `mountpoint` from the first of `servers`, the others given as
/// `backup-volfile-servers`. Creates the mount point. Does nothing when the volume is already mounted there
/// and answers; remounts when it is mounted but hung.
pub async fn mount_volume(
    servers: &[String],
    volume: &str,
    mountpoint: &Path,
) -> Result<MountOutcome, MountError> {
    let _ = (servers, volume, mountpoint);
    todo!()
}

/// Whether something is mounted on `mountpoint` and answers a `statfs` within [`STATFS_TIMEOUT`].
pub async fn is_mounted(mountpoint: &Path) -> bool {
    matches!(
        mount_health(mountpoint, STATFS_TIMEOUT).await,
        MountHealth::Answering { .. }
    )
}

/// Mount state of `mountpoint`, `statfs` given `timeout` to answer.
pub async fn mount_health(mountpoint: &Path, timeout: Duration) -> MountHealth {
    let _ = (mountpoint, timeout);
    todo!()
}

/// Unmounts `mountpoint` (`lazy`: detach now even when busy or hung). Succeeds when nothing is mounted there.
pub async fn unmount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    let _ = (mountpoint, lazy);
    todo!()
}

/// The `/etc/fstab` line that mounts the volume at boot:
/// `SERVER1:/VOLUME MOUNTPOINT glusterfs defaults,_netdev,nofail,backup-volfile-servers=S2:S3 0 0`.
pub fn fstab_entry(servers: &[String], volume: &str, mountpoint: &Path) -> String {
    let _ = (servers, volume, mountpoint);
    todo!()
}

/// Puts `entry` (from [`fstab_entry`]) into the fstab file at `fstab`, replacing any line for the same mount
/// point, keeping every other line. Returns whether the file changed. Writes through a temporary file + rename.
pub fn ensure_fstab_entry(fstab: &Path, entry: &str) -> Result<bool, MountError> {
    let _ = (fstab, entry);
    todo!()
}
