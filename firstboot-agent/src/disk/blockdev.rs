//! The block device side: which disk holds `/`, partition device names, the kernel's view of the partitions
//! (sysfs), telling the kernel about a changed table (BLKPG ioctls), device nodes, and mounts.

use super::table::{Part, TableInfo};
use crate::layout::SECTOR;
use std::ffi::c_void;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Errors about block devices.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The root filesystem is not on a partition of a block device.
    #[error(
        "cannot find the disk holding /: {0} (give the card with --device, e.g. --device /dev/mmcblk0)"
    )]
    RootDisk(String),
    /// A path is not a whole-disk block device.
    #[error("{path} is not a whole-disk block device: {why}")]
    NotADisk {
        /// The path given.
        path: PathBuf,
        /// Why not.
        why: String,
    },
    /// The kernel refused a partition change.
    #[error("the kernel refused to {action} partition {number} of {disk}: {source}{hint}")]
    Kernel {
        /// What was asked (`add`, `delete`, `resize`).
        action: &'static str,
        /// Partition number.
        number: u32,
        /// The disk.
        disk: PathBuf,
        /// The errno.
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlockError {
    let what = what.into();
    move |source| BlockError::Io { what, source }
}

/// A whole-disk block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Its device node, e.g. `/dev/mmcblk0`.
    pub path: PathBuf,
    /// Its kernel name, e.g. `mmcblk0` (the directory under `/sys/class/block`).
    pub name: String,
}

impl Disk {
    /// Opens a whole-disk device by path, checking it is one.
    pub fn from_path(path: &Path) -> Result<Disk, BlockError> {
        let not = |why: String| BlockError::NotADisk {
            path: path.to_path_buf(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| not(e.to_string()))?;
        if !meta.file_type().is_block_device() {
            return Err(not("not a block device".into()));
        }
        let (major, minor) = split_dev(meta.rdev());
        let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        let real =
            std::fs::canonicalize(&sys).map_err(|e| not(format!("{}: {e}", sys.display())))?;
        if real.join("partition").exists() {
            return Err(not(
                "it is a partition; give the whole disk (e.g. /dev/mmcblk0, not /dev/mmcblk0p2)"
                    .into(),
            ));
        }
        let name = real
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| not("no kernel name".into()))?
            .to_string();
        let lbs = read_sys(&real.join("queue/logical_block_size")).unwrap_or_default();
        if !lbs.is_empty() && lbs != "512" {
            return Err(not(format!(
                "its logical sector size is {lbs} bytes; only 512-byte sectors are supported"
            )));
        }
        Ok(Disk {
            path: path.to_path_buf(),
            name,
        })
    }

    /// The disk holding the root filesystem, found through `/proc/self/mountinfo` and sysfs.
    pub fn of_root() -> Result<Disk, BlockError> {
        let mounts = mounts().map_err(|e| BlockError::RootDisk(e.to_string()))?;
        let root = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == Path::new("/"))
            .ok_or_else(|| BlockError::RootDisk("/ is not in /proc/self/mountinfo".into()))?;
        let (major, minor) = root.dev;
        let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        let real = std::fs::canonicalize(&sys).map_err(|_| {
            BlockError::RootDisk(format!(
                "/ is {} ({major}:{minor}), not on a block device",
                root.fstype
            ))
        })?;
        if !real.join("partition").exists() {
            return Err(BlockError::RootDisk(format!(
                "/ is on {}, which is not a partition",
                real.display()
            )));
        }
        let disk_dir = real
            .parent()
            .ok_or_else(|| BlockError::RootDisk("no parent disk in sysfs".into()))?;
        let name = disk_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BlockError::RootDisk("bad sysfs name".into()))?;
        Disk::from_path(&PathBuf::from("/dev").join(name))
    }

    /// Kernel name of partition `n` (`mmcblk0p3`, `sda3`, `nvme0n1p3`, `loop0p3`).
    pub fn part_name(&self, n: u32) -> String {
        part_name(&self.name, n)
    }

    /// Device node of partition `n`, next to the disk's node.
    pub fn part_path(&self, n: u32) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("/dev"));
        dir.join(self.part_name(n))
    }

    /// The partitions the kernel knows now (from sysfs), in sectors.
    pub fn kernel_parts(&self) -> Result<Vec<Part>, BlockError> {
        let dir = PathBuf::from("/sys/class/block").join(&self.name);
        let mut parts = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(format!("read {}", dir.display())))? {
            let entry = entry.map_err(io(format!("read {}", dir.display())))?;
            let p = entry.path();
            let Some(num) = read_sys(&p.join("partition")) else {
                continue;
            };
            let num: u32 = num.parse().unwrap_or(0);
            let start: u64 = read_sys(&p.join("start"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let size: u64 = read_sys(&p.join("size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if num > 0 && size > 0 {
                parts.push(Part {
                    number: num,
                    start,
                    end: start + size - 1,
                });
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Brings the kernel's view of the partitions in line with `table` (BLKPG delete / add / resize) and makes
    /// sure each partition has its device node. Returns what was changed.
    pub fn sync_kernel(&self, table: &TableInfo) -> Result<Vec<String>, BlockError> {
        let kernel = self.kernel_parts()?;
        let file = File::open(&self.path).map_err(io(format!("open {}", self.path.display())))?;
        let mut changed = Vec::new();
        for k in &kernel {
            match table.part(k.number) {
                Some(t) if t.start == k.start => {}
                _ => {
                    self.blkpg(&file, BLKPG_DEL_PARTITION, k.number, 0, 0)?;
                    changed.push(format!("remove partition {} from the kernel", k.number));
                }
            }
        }
        for t in &table.parts {
            let known = kernel
                .iter()
                .find(|k| k.number == t.number && k.start == t.start);
            match known {
                Some(k) if k.end == t.end => {}
                Some(_) => {
                    self.blkpg(
                        &file,
                        BLKPG_RESIZE_PARTITION,
                        t.number,
                        t.start,
                        t.sectors(),
                    )?;
                    changed.push(format!(
                        "resize partition {} in the kernel to {} sectors",
                        t.number,
                        t.sectors()
                    ));
                }
                None => {
                    self.blkpg(&file, BLKPG_ADD_PARTITION, t.number, t.start, t.sectors())?;
                    changed.push(format!("add partition {} to the kernel", t.number));
                }
            }
        }
        for t in &table.parts {
            if ensure_node(&self.part_name(t.number), &self.part_path(t.number))? {
                changed.push(format!(
                    "make device node {}",
                    self.part_path(t.number).display()
                ));
            }
        }
        Ok(changed)
    }

    fn blkpg(
        &self,
        file: &File,
        op: libc::c_int,
        number: u32,
        start: u64,
        sectors: u64,
    ) -> Result<(), BlockError> {
        let mut part = BlkpgPartition {
            start: (start * SECTOR) as i64,
            length: (sectors * SECTOR) as i64,
            pno: number as libc::c_int,
            devname: [0; 64],
            volname: [0; 64],
        };
        let arg = BlkpgIoctlArg {
            op,
            flags: 0,
            datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
            data: (&mut part as *mut BlkpgPartition).cast::<c_void>(),
        };
        // SAFETY: BLKPG takes a pointer to a blkpg_ioctl_arg whose data points at a blkpg_partition; both are
        // #[repr(C)] copies of the kernel's structs and outlive the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKPG as _, &arg) };
        if rc == 0 {
            return Ok(());
        }
        let source = std::io::Error::last_os_error();
        let action = match op {
            BLKPG_ADD_PARTITION => "add",
            BLKPG_DEL_PARTITION => "delete",
            _ => "resize",
        };
        let hint = match source.raw_os_error() {
            Some(libc::EBUSY) => {
                " (the partition is in use: unmount it, or reboot to load the new table)"
                    .to_string()
            }
            Some(libc::EINVAL) if self.name.starts_with("loop") => {
                " (a loop device must be attached with partition scanning: losetup -P)".to_string()
            }
            _ => String::new(),
        };
        Err(BlockError::Kernel {
            action,
            number,
            disk: self.path.clone(),
            source,
            hint,
        })
    }

    /// Drops the kernel's cached blocks of the whole disk, so reads through it see what was written through a
    /// partition node.
    pub fn flush_buffers(&self) -> Result<(), BlockError> {
        let file = File::open(&self.path).map_err(io(format!("open {}", self.path.display())))?;
        // SAFETY: BLKFLSBUF takes no argument.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF as _, 0) };
        if rc != 0 {
            return Err(io(format!("flush buffers of {}", self.path.display()))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The major:minor of partition `n` as the kernel has it, if it knows the partition.
    pub fn part_devno(&self, n: u32) -> Option<(u32, u32)> {
        let text = read_sys(
            &PathBuf::from("/sys/class/block")
                .join(self.part_name(n))
                .join("dev"),
        )?;
        let (a, b) = text.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
}

/// Kernel name of partition `n` of disk `disk`: names ending in a digit take a `p` (`mmcblk0p3`).
pub fn part_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKFLSBUF: libc::c_ulong = 0x1261;
const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

/// `struct blkpg_partition` from `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg` from `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut c_void,
}

fn read_sys(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Splits a `dev_t` into major and minor (glibc's encoding).
pub fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Makes `/dev/<name>` (at `node`) a block node with the numbers sysfs gives, when it is missing or wrong (no
/// udev in the lab; on a Pi udev makes it first and this does nothing). Returns whether a node was made.
pub fn ensure_node(name: &str, node: &Path) -> Result<bool, BlockError> {
    let sys = PathBuf::from("/sys/class/block").join(name).join("dev");
    let text = read_sys(&sys).ok_or_else(|| BlockError::Io {
        what: format!("read {}", sys.display()),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let (major, minor) = text
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| BlockError::Io {
            what: format!("parse {} ({text})", sys.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?;
    let want = nix::sys::stat::makedev(major, minor);
    let is_right = || {
        std::fs::symlink_metadata(node)
            .is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == want)
    };
    // devtmpfs (or udev) may make the node at any moment, so poll briefly before making it ourselves, and accept
    // a node that appears while we make it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while !is_right()
        && std::time::Instant::now() < deadline
        && Path::new("/dev").join(name) == node
    {
        if std::fs::symlink_metadata(node).is_ok() {
            break; // a wrong node: replace it below
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if is_right() {
        return Ok(false);
    }
    if std::fs::symlink_metadata(node).is_ok() {
        std::fs::remove_file(node).map_err(io(format!("remove stale {}", node.display())))?;
    }
    match nix::sys::stat::mknod(
        node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        want,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) if is_right() => return Ok(false),
        Err(e) => {
            return Err(BlockError::Io {
                what: format!("mknod {}", node.display()),
                source: e.into(),
            })
        }
    }
    Ok(true)
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// major:minor of the mounted device (0:N for virtual filesystems).
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source (device path, or a name).
    pub source: String,
}

/// Parses `/proc/self/mountinfo`.
pub fn mounts() -> std::io::Result<Vec<Mount>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Parses mountinfo text (see proc(5)); octal escapes in paths (`\040`) are decoded.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (a, b) = f.get(2)?.split_once(':')?;
            Some(Mount {
                dev: (a.parse().ok()?, b.parse().ok()?),
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fstype: r.first()?.to_string(),
                source: unescape(r.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(part_name("mmcblk0", 3), "mmcblk0p3");
        assert_eq!(part_name("nvme0n1", 2), "nvme0n1p2");
        assert_eq!(part_name("sda", 3), "sda3");
        assert_eq!(part_name("loop12", 3), "loop12p3");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw\n\
                    30 22 179:3 / /srv/gluster/my\\040brick rw shared:5 - xfs /dev/mmcblk0p3 rw,attr2\n\
                    31 22 0:5 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].dev, (179, 2));
        assert_eq!(m[0].mount_point, Path::new("/"));
        assert_eq!(m[1].mount_point, Path::new("/srv/gluster/my brick"));
        assert_eq!(m[1].fstype, "xfs");
        assert_eq!(m[1].source, "/dev/mmcblk0p3");
    }

    #[test]
    fn dev_numbers() {
        assert_eq!(split_dev(nix::sys::stat::makedev(259, 70000)), (259, 70000));
        assert_eq!(split_dev(nix::sys::stat::makedev(7, 3)), (7, 3));
    }
}
