//! Filesystems on the card: probing (`blkid -p`), the root ext4 (superblock size, `e2fsck`, `resize2fs`), the
//! brick XFS (`mkfs.xfs -i size=512`), the fstab entry and the mount.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors from filesystem tools.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A tool could not be started.
    #[error("cannot run {tool}: {source} (install it: {package})")]
    Missing {
        /// The program.
        tool: String,
        /// The Debian package holding it.
        package: &'static str,
        /// The spawn error.
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its error output.
        stderr: String,
    },
    /// The kernel refused to grow a mounted ext4 (the process lacks CAP_SYS_RESOURCE).
    #[error(
        "the kernel refused to grow the mounted filesystem on {part} ({stderr}): online resizing needs the \
         CAP_SYS_RESOURCE capability; run the agent as root with full capabilities (as its systemd unit does), or \
         grow it while unmounted"
    )]
    OnlineResizeDenied {
        /// The partition.
        part: PathBuf,
        /// What resize2fs said.
        stderr: String,
    },
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FsError {
    let what = what.into();
    move |source| FsError::Io { what, source }
}

/// Output of a command that ran.
struct Ran {
    code: Option<i32>,
    stdout: String,
}

/// Runs `tool args`, returning its exit code and output; `ok` lists the exit codes that are not failures.
fn run(tool: &str, args: &[&str], ok: &[i32], package: &'static str) -> Result<Ran, FsError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| FsError::Missing {
            tool: tool.to_string(),
            package,
            source,
        })?;
    let code = out.status.code();
    if code.is_some_and(|c| ok.contains(&c)) {
        return Ok(Ran {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        });
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.trim().lines().rev().take(6).collect();
    Err(FsError::Failed {
        command: format!("{tool} {}", args.join(" ")),
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}

/// What `blkid -p` found in a region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// Filesystem type (`xfs`, `ext4`, ...).
    pub fstype: String,
    /// Filesystem UUID, if it has one.
    pub uuid: Option<String>,
}

/// Probes `dev` (optionally only `len` bytes from `offset`) for a filesystem, without blkid's cache.
/// `Ok(None)` means nothing recognisable is there. Something blkid finds but cannot name (ambivalent results)
/// is reported as type `unknown`, so it is never formatted.
pub fn probe(dev: &Path, region: Option<(u64, u64)>) -> Result<Option<Probe>, FsError> {
    let d = dev.to_string_lossy();
    let (off, len);
    let mut args = vec!["-p", "-o", "export"];
    if let Some((o, l)) = region {
        off = o.to_string();
        len = l.to_string();
        args.extend(["--offset", &off, "--size", &len]);
    }
    args.push(&d);
    let ran = run("blkid", &args, &[0, 2, 8], "util-linux")?;
    match ran.code {
        Some(2) => Ok(None),
        Some(8) => Ok(Some(Probe {
            fstype: "unknown".into(),
            uuid: None,
        })),
        _ => {
            let mut fstype = None;
            let mut uuid = None;
            for line in ran.stdout.lines() {
                match line.split_once('=') {
                    Some(("TYPE", v)) => fstype = Some(v.to_string()),
                    Some(("UUID", v)) => uuid = Some(v.to_string()),
                    _ => {}
                }
            }
            Ok(fstype.map(|fstype| Probe { fstype, uuid }))
        }
    }
}

/// Size in bytes of the ext2/3/4 filesystem starting at `offset` of `dev`, or `None` if there is none.
pub fn ext4_size(dev: &Path, offset: u64) -> Result<Option<u64>, FsError> {
    let mut f = std::fs::File::open(dev).map_err(io(format!("open {}", dev.display())))?;
    let mut sb = [0u8; 1024];
    f.seek(SeekFrom::Start(offset + 1024))
        .and_then(|_| f.read_exact(&mut sb))
        .map_err(io(format!("read the ext4 superblock on {}", dev.display())))?;
    Ok(ext4_size_from_superblock(&sb))
}

/// Size in bytes from an ext2/3/4 superblock (1024 bytes), or `None` if the magic is wrong.
pub fn ext4_size_from_superblock(sb: &[u8; 1024]) -> Option<u64> {
    let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
    let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
    if magic != 0xef53 {
        return None;
    }
    let log_block = u32_at(0x18);
    if log_block > 6 {
        return None;
    }
    let block_size = 1024u64 << log_block;
    let incompat = u32_at(0x60);
    let mut blocks = u64::from(u32_at(0x4));
    if incompat & 0x80 != 0 {
        blocks |= u64::from(u32_at(0x150)) << 32;
    }
    Some(blocks * block_size)
}

/// Grows the ext4 on `part` to fill it: online when mounted, else `e2fsck -fp` first as resize2fs requires.
pub fn grow_ext4(part: &Path, mounted: bool) -> Result<(), FsError> {
    let p = part.to_string_lossy();
    if !mounted {
        // 0: clean, 1: errors fixed. Anything else needs a person.
        run("e2fsck", &["-f", "-p", &p], &[0, 1], "e2fsprogs")?;
    }
    match run("resize2fs", &[&p], &[0], "e2fsprogs") {
        Err(FsError::Failed { stderr, .. }) if mounted && stderr.contains("Permission denied") => {
            Err(FsError::OnlineResizeDenied {
                part: part.to_path_buf(),
                stderr,
            })
        }
        r => r.map(|_| ()),
    }
}

/// Makes the brick XFS (`mkfs.xfs -i size=512 -L brick`). `force` (`-f`) is passed only when this flash had
/// started the format itself and was interrupted; otherwise mkfs.xfs's own check refuses an existing filesystem.
pub fn mkfs_xfs(part: &Path, force: bool) -> Result<(), FsError> {
    let p = part.to_string_lossy();
    let mut args = vec!["-q", "-i", "size=512", "-L", "brick"];
    if force {
        args.push("-f");
    }
    args.push(&p);
    run("mkfs.xfs", &args, &[0], "xfsprogs")?;
    Ok(())
}

/// The fstab line for the brick.
pub fn fstab_line(uuid: &str, mount_point: &Path) -> String {
    format!(
        "UUID={uuid}\t{}\txfs\tdefaults,noatime,nofail\t0\t0",
        escape_fstab(&mount_point.to_string_lossy())
    )
}

fn escape_fstab(s: &str) -> String {
    s.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

/// Makes `fstab` hold exactly one entry for `mount_point`: the brick's, by UUID with `nofail`. Other lines are kept
/// byte for byte; a different entry for the same mount point is replaced. Written atomically. Returns whether the
/// file changed.
pub fn ensure_fstab(
    fstab: &Path,
    uuid: &str,
    mount_point: &Path,
    dry_run: bool,
) -> Result<bool, FsError> {
    let text = match std::fs::read_to_string(fstab) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(format!("read {}", fstab.display()))(e)),
    };
    let want = fstab_line(uuid, mount_point);
    let mp = escape_fstab(&mount_point.to_string_lossy());
    let mut out = Vec::new();
    let mut placed = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_ours = !line.trim_start().starts_with('#') && fields.get(1) == Some(&mp.as_str());
        if is_ours {
            if !placed {
                out.push(want.clone());
                placed = true;
            }
        } else {
            out.push(line.to_string());
        }
    }
    if !placed {
        out.push(want);
    }
    let mut new_text = out.join("\n");
    new_text.push('\n');
    if new_text == text {
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    let dir = match fstab.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(".fstab.firstboot-agent.tmp");
    std::fs::write(&tmp, &new_text).map_err(io(format!("write {}", tmp.display())))?;
    if let Ok(meta) = std::fs::metadata(fstab) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("sync {}", tmp.display())))?;
    std::fs::rename(&tmp, fstab).map_err(io(format!("replace {}", fstab.display())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("sync {}", dir.display())))?;
    Ok(true)
}

/// Mounts the XFS on `part` at `target` (made if missing).
pub fn mount_xfs(part: &Path, target: &Path) -> Result<(), FsError> {
    std::fs::create_dir_all(target).map_err(io(format!("create {}", target.display())))?;
    nix::mount::mount(
        Some(part),
        target,
        Some("xfs"),
        nix::mount::MsFlags::MS_NOATIME,
        None::<&str>,
    )
    .map_err(|e| FsError::Io {
        what: format!("mount {} on {}", part.display(), target.display()),
        source: e.into(),
    })
}

/// Path of the brick directory under the mount.
pub fn brick_dir(mount: &Path, dir: &str) -> PathBuf {
    mount.join(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_sizes() {
        let mut sb = [0u8; 1024];
        assert_eq!(ext4_size_from_superblock(&sb), None);
        sb[0x38] = 0x53;
        sb[0x39] = 0xef;
        sb[0x18] = 2; // 4096-byte blocks
        sb[0x4..0x8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(ext4_size_from_superblock(&sb), Some(4096 * 1000));
        sb[0x60] = 0x80; // 64bit
        sb[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            ext4_size_from_superblock(&sb),
            Some(4096 * ((1u64 << 32) + 1000))
        );
    }

    #[test]
    fn fstab_is_idempotent_and_keeps_other_lines() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fstab");
        let orig = "proc /proc proc defaults 0 0\n# comment /srv/gluster/brick1\nPARTUUID=ab-02 / ext4 defaults 0 1\n";
        std::fs::write(&f, orig).unwrap();
        let mp = Path::new("/srv/gluster/brick1");
        assert!(ensure_fstab(&f, "u-1", mp, false).unwrap());
        let t1 = std::fs::read_to_string(&f).unwrap();
        assert!(t1.starts_with(orig), "{t1}");
        assert!(t1.contains("UUID=u-1\t/srv/gluster/brick1\txfs\tdefaults,noatime,nofail"));
        assert!(!ensure_fstab(&f, "u-1", mp, false).unwrap());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), t1);
        // A dry run reports the change and writes nothing.
        assert!(ensure_fstab(&f, "u-2", mp, true).unwrap());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), t1);
        // A new brick UUID replaces the line instead of adding a second one.
        assert!(ensure_fstab(&f, "u-2", mp, false).unwrap());
        let t2 = std::fs::read_to_string(&f).unwrap();
        assert_eq!(t2.matches("/srv/gluster/brick1\txfs").count(), 1);
        assert!(t2.contains("UUID=u-2"));
        // A missing fstab is created.
        let g = d.path().join("new-fstab");
        assert!(ensure_fstab(&g, "u", Path::new("/a b"), false).unwrap());
        assert!(std::fs::read_to_string(&g).unwrap().contains("/a\\040b"));
    }
}
