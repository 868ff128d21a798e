//! Mounting the Gluster volume through FUSE (`mount -t glusterfs`), checking that it answers, and the fstab line
//! that mounts it again at boot.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// Default time `mount` may take. A FUSE mount starts a `glusterfs` client that loads its translators and connects
/// to every brick: well under a second on a Pi, more than 60 s on a loaded emulated one.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// The request itself is wrong (e.g. no server given).
    #[error("cannot mount: {0}")]
    Invalid(String),
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

/// Undoes the octal escapes (`\040` for a space, ...) of `/proc/self/mountinfo` and `/etc/fstab` fields.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = &field[i + 1..(i + 4).min(field.len())];
            if oct.len() == 3 && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a path for an `/etc/fstab` field (space, tab, newline and backslash as octal).
fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// Parses `/proc/self/mountinfo` text (malformed lines are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            Some(MountEntry {
                mountpoint: PathBuf::from(unescape(fields[4])),
                fstype: fields[sep + 1].to_string(),
                source: unescape(fields[sep + 2]),
            })
        })
        .collect()
}

/// `path` without `.`, `..` or trailing slashes, made absolute against `/`; never touches the file system
/// (a hung FUSE mount would block a `canonicalize`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The mount table entry on `mountpoint` (the last, topmost one), if any.
pub fn mount_entry(mountpoint: &Path) -> Result<Option<MountEntry>, MountError> {
    let table = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(table).map_err(|source| MountError::Io {
        what: "reading",
        path: table.into(),
        source,
    })?;
    let want = lexical(mountpoint);
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|e| e.mountpoint == want))
}

/// Whether a mount table entry is a Gluster FUSE mount of `volume`.
fn is_gluster_mount_of(entry: &MountEntry, volume: &str) -> bool {
    entry.fstype == "fuse.glusterfs"
        && (entry.source.ends_with(&format!(":/{volume}"))
            || entry.source.ends_with(&format!(":{volume}")))
}

async fn run(program: &str, args: &[&str], timeout: Duration) -> Result<(), MountError> {
    let command = format!("{program} {}", args.join(" "));
    tracing::debug!(%command, "running");
    let child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(timeout, child).await {
        Err(_) => return Err(MountError::Timeout { command, timeout }),
        Ok(Err(source)) => return Err(MountError::Spawn { command, source }),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(MountError::Failed {
        command,
        status: out.status.to_string(),
        stderr: text,
    })
}

/// The `-o` options of a Gluster mount from `servers[1..]`.
fn backup_option(servers: &[String]) -> Option<String> {
    let rest: Vec<&str> = servers.iter().skip(1).map(String::as_str).collect();
    (!rest.is_empty()).then(|| format!("backup-volfile-servers={}", rest.join(":")))
}

/// What is mounted on `mountpoint` when it is Gluster volume `volume`; [`MountError::Occupied`] when it is
/// something else.
fn own_mount_entry(mountpoint: &Path, volume: &str) -> Result<Option<MountEntry>, MountError> {
    match mount_entry(mountpoint)? {
        Some(entry) if !is_gluster_mount_of(&entry, volume) => Err(MountError::Occupied {
            mountpoint: mountpoint.to_path_buf(),
            volume: volume.to_string(),
            what: entry.source,
            fstype: entry.fstype,
        }),
        found => Ok(found),
    }
}

/// Creates `mountpoint` and runs `mount -t glusterfs [-o OPTIONS] SERVER:/VOLUME MOUNTPOINT`.
async fn mount_glusterfs(
    server: &str,
    volume: &str,
    mountpoint: &Path,
    options: Option<&str>,
) -> Result<(), MountError> {
    std::fs::create_dir_all(mountpoint).map_err(|source| MountError::Io {
        what: "creating the mount point",
        path: mountpoint.to_path_buf(),
        source,
    })?;
    let source = format!("{server}:/{volume}");
    let target = mountpoint.to_string_lossy().into_owned();
    let mut args = vec!["-t", "glusterfs"];
    if let Some(o) = options {
        args.extend(["-o", o]);
    }
    args.extend([source.as_str(), target.as_str()]);
    run("mount", &args, MOUNT_TIMEOUT).await
}

/// Mounts Gluster volume `volume` on `mountpoint` from the first of `servers`, the others given as
/// `backup-volfile-servers`. Creates the mount point. Does nothing when the volume is already mounted there
/// and answers, or does not answer while its FUSE client runs (see [`mount_counts`]); unmounts (lazily) and
/// mounts again when its client is gone. Refuses when something else is
/// mounted there. After mounting, checks that the mount answers within [`STATFS_TIMEOUT`].
pub async fn mount_volume(
    servers: &[String],
    volume: &str,
    mountpoint: &Path,
) -> Result<MountOutcome, MountError> {
    let Some(first) = servers.first() else {
        return Err(MountError::Invalid(format!(
            "no server given to mount volume {volume} from"
        )));
    };
    if own_mount_entry(mountpoint, volume)?.is_some() {
        match mount_health(mountpoint, STATFS_TIMEOUT).await {
            MountHealth::Answering { .. } => return Ok(MountOutcome::AlreadyMounted),
            MountHealth::NotMounted => {}
            MountHealth::NotAnswering { reason, .. } if fuse_client_running(mountpoint) => {
                tracing::info!(mountpoint = %mountpoint.display(), %reason, "mount not answering but its client runs: kept");
                return Ok(MountOutcome::AlreadyMounted);
            }
            MountHealth::NotAnswering { reason, .. } => {
                tracing::warn!(mountpoint = %mountpoint.display(), %reason, "mount not answering: mounting again");
                unmount(mountpoint, true).await?;
            }
        }
    }
    mount_glusterfs(first, volume, mountpoint, backup_option(servers).as_deref()).await?;
    match mount_health(mountpoint, STATFS_TIMEOUT).await {
        MountHealth::Answering { .. } => Ok(MountOutcome::Mounted),
        _ => Err(MountError::NotAnswering {
            mountpoint: mountpoint.to_path_buf(),
            timeout: STATFS_TIMEOUT,
        }),
    }
}

/// Whether something is mounted on `mountpoint` and answers a `statfs` within [`STATFS_TIMEOUT`].
pub async fn is_mounted(mountpoint: &Path) -> bool {
    matches!(
        mount_health(mountpoint, STATFS_TIMEOUT).await,
        MountHealth::Answering { .. }
    )
}

/// Mount state of `mountpoint`, `statfs` given `timeout` to answer. A `statfs` that hangs (a FUSE mount whose
/// servers are gone) keeps one blocking thread busy until the kernel gives up; the caller is not held.
pub async fn mount_health(mountpoint: &Path, timeout: Duration) -> MountHealth {
    let entry = match mount_entry(mountpoint) {
        Ok(Some(e)) => e,
        Ok(None) => return MountHealth::NotMounted,
        Err(e) => {
            return MountHealth::NotAnswering {
                entry: MountEntry {
                    mountpoint: mountpoint.to_path_buf(),
                    fstype: String::new(),
                    source: String::new(),
                },
                reason: e.to_string(),
            }
        }
    };
    let path = entry.mountpoint.clone();
    let probe = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&path));
    match tokio::time::timeout(timeout, probe).await {
        Err(_) => MountHealth::NotAnswering {
            entry,
            reason: format!("statfs did not answer within {timeout:?}"),
        },
        Ok(Err(join)) => MountHealth::NotAnswering {
            entry,
            reason: format!("statfs task failed: {join}"),
        },
        Ok(Ok(Err(errno))) => MountHealth::NotAnswering {
            entry,
            reason: format!("statfs failed: {errno}"),
        },
        Ok(Ok(Ok(st))) => {
            #[allow(clippy::unnecessary_cast)] // the statvfs field types differ between targets
            let (frag, blocks, avail) = (
                st.fragment_size() as u64,
                st.blocks() as u64,
                st.blocks_available() as u64,
            );
            MountHealth::Answering {
                entry,
                total: blocks * frag,
                available: avail * frag,
            }
        }
    }
}

/// Whether a process command line (`/proc/PID/cmdline`, NUL-separated) is the Gluster FUSE client serving
/// `mountpoint`: the program is `glusterfs` and its last argument is the mount point.
pub fn is_fuse_client_of(cmdline: &[u8], mountpoint: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let (Some(prog), Some(last)) = (args.first(), args.last()) else {
        return false;
    };
    let prog = Path::new(std::ffi::OsStr::from_bytes(prog));
    prog.file_name().is_some_and(|n| n == "glusterfs")
        && args.len() > 1
        && lexical(Path::new(std::ffi::OsStr::from_bytes(last))) == lexical(mountpoint)
}

/// Whether the Gluster FUSE client process serving `mountpoint` still runs (looked up in `/proc`). A mount whose
/// client runs but does not answer is waiting for a brick (`network.ping-timeout`) or for quorum and reconnects
/// by itself; one whose client is gone answers "Transport endpoint is not connected" until it is mounted again.
pub fn fuse_client_running(mountpoint: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| is_fuse_client_of(&c, mountpoint))
}

/// Whether a mount in state `health` counts as a working mount of the volume, `client_running` being
/// [`fuse_client_running`] for it. A mount that answers works. A mount that does not answer while its FUSE client
/// runs still counts: right after a peer is lost every call waits out `network.ping-timeout`, and on a node that
/// lost quorum calls fail until the partition ends; the client recovers by itself in both cases, and mounting
/// again would only stack a second mount on a working one. Only a mount whose client is gone (or no mount) needs
/// mounting.
pub fn mount_counts(health: &MountHealth, client_running: bool) -> bool {
    match health {
        MountHealth::Answering { .. } => true,
        MountHealth::NotMounted => false,
        MountHealth::NotAnswering { entry, .. } => {
            entry.fstype.contains("glusterfs") && client_running
        }
    }
}

/// Unmounts `mountpoint` (`lazy`: detach now even when busy or hung). Succeeds when nothing is mounted there.
pub async fn unmount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    if mount_entry(mountpoint)?.is_none() {
        return Ok(());
    }
    let target = mountpoint.to_string_lossy().into_owned();
    let mut args = Vec::new();
    if lazy {
        args.push("-l");
    }
    args.push(target.as_str());
    run("umount", &args, MOUNT_TIMEOUT).await
}

/// The `/etc/fstab` line that mounts the volume at boot:
/// `SERVER1:/VOLUME MOUNTPOINT glusterfs defaults,_netdev,nofail,x-systemd.requires=glusterd.service,backup-volfile-servers=S2:S3 0 0`.
///
/// `_netdev` orders it after the network is up; `nofail` keeps the boot going when no server answers yet (the
/// agent mounts it later); `x-systemd.requires=glusterd.service` starts the local glusterd first (every node of
/// this cluster runs one, and a node's own glusterd is the first volfile server to ask when it is listed first).
pub fn fstab_entry(servers: &[String], volume: &str, mountpoint: &Path) -> String {
    let first = servers.first().map(String::as_str).unwrap_or("localhost");
    let mut opts = String::from("defaults,_netdev,nofail,x-systemd.requires=glusterd.service");
    if let Some(b) = backup_option(servers) {
        opts.push(',');
        opts.push_str(&b);
    }
    format!(
        "{first}:/{volume} {} glusterfs {opts} 0 0",
        escape(&lexical(mountpoint).to_string_lossy())
    )
}

/// Puts `entry` (from [`fstab_entry`]) into the fstab file at `fstab`, replacing any line for the same mount
/// point, keeping every other line. Returns whether the file changed. Writes through a temporary file + rename.
pub fn ensure_fstab_entry(fstab: &Path, entry: &str) -> Result<bool, MountError> {
    let io = |what: &'static str, source| MountError::Io {
        what,
        path: fstab.to_path_buf(),
        source,
    };
    let target = entry
        .split_whitespace()
        .nth(1)
        .map(unescape)
        .ok_or_else(|| MountError::Invalid(format!("fstab line `{entry}` has no mount point")))?;
    let old = match std::fs::read_to_string(fstab) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io("reading", e)),
    };
    let same_target = |line: &str| {
        let t = line.trim_start();
        !t.starts_with('#')
            && t.split_whitespace().nth(1).map(unescape).as_deref() == Some(target.as_str())
    };
    let existing: Vec<&str> = old.lines().filter(|l| same_target(l)).collect();
    if existing.len() == 1 && existing[0].trim() == entry.trim() {
        return Ok(false);
    }
    let mut new: String = old
        .lines()
        .filter(|l| !same_target(l))
        .map(|l| format!("{l}\n"))
        .collect();
    new.push_str(entry.trim());
    new.push('\n');
    let tmp = fstab.with_extension("firstboot-agent.tmp");
    std::fs::write(&tmp, &new).map_err(|e| io("writing", e))?;
    if let Ok(meta) = std::fs::metadata(fstab) {
        std::fs::set_permissions(&tmp, meta.permissions())
            .map_err(|e| io("setting the mode of", e))?;
    }
    std::fs::rename(&tmp, fstab).map_err(|e| io("replacing", e))?;
    Ok(true)
}

/// What a [`lookup_crawl`] looked at.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrawlStats {
    /// Names looked up (files, directories, links).
    pub entries: u64,
    /// Names that could not be looked up or directories that could not be listed (they are skipped).
    pub errors: u64,
    /// Whether the crawl stopped at its entry limit before the end of the tree.
    pub truncated: bool,
}

/// Looks up every name under `root`, depth first, without following symbolic links: Gluster's own way to make
/// the replicate translator examine each name (`find MOUNT | xargs stat`). A lookup through the mount heals a
/// name that exists on some bricks and is missing on others, even with no pending mark on its directory: after
/// a raised replica count, a file created by a client still on the old brick list can be missing on the new
/// brick, and neither index nor full heals create it. On a long-lived mount most names never reach Gluster
/// (the kernel answers from the attributes `readdirplus` brought): crawl a fresh mount made by
/// [`lookup_crawl_volume`]. Stops after `limit` names. Blocking: run it on a blocking thread.
pub fn lookup_crawl(root: &Path, limit: u64) -> CrawlStats {
    let mut stats = CrawlStats::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else {
            stats.errors += 1;
            continue;
        };
        for entry in listing {
            if stats.entries >= limit {
                stats.truncated = true;
                return stats;
            }
            let Ok(entry) = entry else {
                stats.errors += 1;
                continue;
            };
            let path = entry.path();
            stats.entries += 1;
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => dirs.push(path),
                Ok(_) => {}
                Err(_) => stats.errors += 1,
            }
        }
    }
    stats
}

/// Options of the private mount a lookup crawl runs on: directory listings without attributes and no kernel
/// caching of names or attributes, so that every `lstat` of the crawl is a lookup through the replicate
/// translator (a `readdirplus` listing would hand the kernel the attributes and no lookup would follow).
pub const CRAWL_MOUNT_OPTIONS: &str =
    "use-readdirp=no,entry-timeout=0,attribute-timeout=0,negative-timeout=0";

/// Mounts `volume` from `server` on `at` (a private, empty directory: created, refused when something is
/// mounted there), looks up every name in it with [`lookup_crawl`] and unmounts it again, also when the crawl
/// fails. A fresh mount has nothing cached, so each name is looked up once through Gluster and healed where a
/// brick misses it.
pub async fn lookup_crawl_volume(
    server: &str,
    volume: &str,
    at: &Path,
    limit: u64,
) -> Result<CrawlStats, MountError> {
    if own_mount_entry(at, volume)?.is_some() {
        // A crawl mount left by an agent that died during its crawl.
        unmount(at, true).await?;
    }
    mount_glusterfs(server, volume, at, Some(CRAWL_MOUNT_OPTIONS)).await?;
    let root = at.to_path_buf();
    let crawl = tokio::task::spawn_blocking(move || lookup_crawl(&root, limit)).await;
    let unmounted = unmount(at, true).await;
    let stats = crawl.map_err(|e| MountError::Invalid(format!("the lookup crawl stopped: {e}")))?;
    unmounted?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_crawl_visits_every_name_without_following_links_and_stops_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("top"), b"x").unwrap();
        std::fs::write(root.join("a/one"), b"x").unwrap();
        std::fs::write(root.join("a/b/two"), b"x").unwrap();
        // A link back to the root: followed, it would never end.
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        let all = lookup_crawl(root, 1000);
        assert_eq!(
            all,
            CrawlStats {
                entries: 6,
                errors: 0,
                truncated: false
            }
        );
        let cut = lookup_crawl(root, 3);
        assert_eq!(cut.entries, 3);
        assert!(cut.truncated);
        let missing = lookup_crawl(&root.join("absent"), 10);
        assert_eq!(missing.errors, 1);
    }

    #[test]
    fn fuse_client_is_recognised_by_program_and_mount_point() {
        let cmd = b"/usr/sbin/glusterfs\0--process-name\0fuse\0--volfile-server=pc-1\0--volfile-id=/shared\0/mnt/shared\0";
        assert!(is_fuse_client_of(cmd, Path::new("/mnt/shared")));
        assert!(is_fuse_client_of(cmd, Path::new("/mnt/shared/")));
        assert!(!is_fuse_client_of(cmd, Path::new("/mnt/other")));
        // glusterfsd (a brick) and the self-heal daemon are not the mount's client.
        let brick = b"/usr/sbin/glusterfsd\0-s\0pc-1\0/mnt/shared\0";
        assert!(!is_fuse_client_of(brick, Path::new("/mnt/shared")));
        assert!(!is_fuse_client_of(b"", Path::new("/mnt/shared")));
        assert!(!is_fuse_client_of(
            b"/usr/sbin/glusterfs\0",
            Path::new("/mnt/shared")
        ));
    }

    #[test]
    fn a_hung_mount_counts_while_its_client_runs() {
        let entry = MountEntry {
            mountpoint: "/mnt/shared".into(),
            fstype: "fuse.glusterfs".into(),
            source: "pc-1:/shared".into(),
        };
        let hung = MountHealth::NotAnswering {
            entry: entry.clone(),
            reason: "statfs did not answer within 5s".into(),
        };
        assert!(
            mount_counts(&hung, true),
            "waiting out ping-timeout: keep it"
        );
        assert!(!mount_counts(&hung, false), "client gone: mount again");
        assert!(!mount_counts(&MountHealth::NotMounted, true));
        let ok = MountHealth::Answering {
            entry,
            total: 1,
            available: 1,
        };
        assert!(mount_counts(&ok, false));
    }

    #[test]
    fn mountinfo_of_a_gluster_fuse_mount() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gluster/mountinfo.txt"
        ))
        .unwrap();
        let entries = parse_mountinfo(&text);
        let m = entries
            .iter()
            .find(|e| e.mountpoint == Path::new("/mnt/shared"))
            .unwrap();
        assert_eq!(m.fstype, "fuse.glusterfs");
        assert_eq!(m.source, "10.77.0.1:/shared");
        assert!(is_gluster_mount_of(m, "shared"));
        assert!(!is_gluster_mount_of(m, "other"));
    }

    #[test]
    fn mountinfo_escapes_and_optional_fields() {
        let line = "36 35 98:0 /mnt1 /mnt/my\\040share rw,noatime master:1 shared:7 - fuse.glusterfs n1:/v rw\n";
        let e = parse_mountinfo(line);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].mountpoint, Path::new("/mnt/my share"));
        assert_eq!(e[0].source, "n1:/v");
        assert!(parse_mountinfo("garbage line\n").is_empty());
    }

    #[test]
    fn fstab_line_has_backups_and_boot_options() {
        let servers = vec![
            "node1.local".to_string(),
            "node2.local".into(),
            "node3.local".into(),
        ];
        let line = fstab_entry(&servers, "shared", Path::new("/mnt/shared/"));
        assert_eq!(
            line,
            "node1.local:/shared /mnt/shared glusterfs defaults,_netdev,nofail,x-systemd.requires=glusterd.service,\
             backup-volfile-servers=node2.local:node3.local 0 0"
        );
        let one = fstab_entry(&servers[..1], "v", Path::new("/mnt/a b"));
        assert!(
            one.starts_with("node1.local:/v /mnt/a\\040b glusterfs "),
            "{one}"
        );
        assert!(!one.contains("backup-volfile-servers"), "{one}");
    }

    #[test]
    fn fstab_update_replaces_only_the_same_mount_point_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let fstab = dir.path().join("fstab");
        let before = "PARTUUID=1234-02 / ext4 defaults,noatime 0 1\n# /mnt/shared old comment\nold:/shared /mnt/shared glusterfs defaults 0 0\n";
        std::fs::write(&fstab, before).unwrap();
        let entry = fstab_entry(
            &["n1".to_string(), "n2".into()],
            "shared",
            Path::new("/mnt/shared"),
        );
        assert!(ensure_fstab_entry(&fstab, &entry).unwrap());
        let after = std::fs::read_to_string(&fstab).unwrap();
        assert_eq!(
            after,
            format!("PARTUUID=1234-02 / ext4 defaults,noatime 0 1\n# /mnt/shared old comment\n{entry}\n")
        );
        assert!(!ensure_fstab_entry(&fstab, &entry).unwrap());
        assert_eq!(std::fs::read_to_string(&fstab).unwrap(), after);
        // A missing file is created.
        let fresh = dir.path().join("new-fstab");
        assert!(ensure_fstab_entry(&fresh, &entry).unwrap());
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap(),
            format!("{entry}\n")
        );
    }

    #[tokio::test]
    async fn health_of_a_plain_directory_and_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            mount_health(dir.path(), STATFS_TIMEOUT).await,
            MountHealth::NotMounted
        );
        assert!(!is_mounted(dir.path()).await);
        match mount_health(Path::new("/"), STATFS_TIMEOUT).await {
            MountHealth::Answering { total, .. } => assert!(total > 0),
            other => panic!("{other:?}"),
        }
        // Unmounting where nothing is mounted is a no-op success.
        unmount(dir.path(), false).await.unwrap();
    }

    #[tokio::test]
    async fn mounting_over_something_else_is_refused() {
        let e = mount_volume(&["n1".to_string()], "shared", Path::new("/"))
            .await
            .unwrap_err();
        assert!(matches!(e, MountError::Occupied { .. }), "{e:?}");
        let e = mount_volume(&[], "shared", Path::new("/tmp/x"))
            .await
            .unwrap_err();
        assert!(matches!(e, MountError::Invalid(_)), "{e:?}");
    }

    #[test]
    fn lexical_paths() {
        assert_eq!(lexical(Path::new("/mnt/shared/")), Path::new("/mnt/shared"));
        assert_eq!(
            lexical(Path::new("/mnt/./x/../shared")),
            Path::new("/mnt/shared")
        );
    }
}
