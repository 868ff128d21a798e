//! Block devices, all in one place: what a path is, its size, its partitions, whether it or one of its partitions
//! is mounted (or used as swap), and whether the running system lives on it.

use crate::error::{invalid, IoContext, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A device number `major:minor`.
pub type DevNum = (u32, u32);

fn split_dev(rdev: u64) -> DevNum {
    (
        libc::major(rdev as libc::dev_t),
        libc::minor(rdev as libc::dev_t),
    )
}

/// A whole block device.
#[derive(Debug, Clone)]
pub struct BlockDevice {
    /// The path given.
    pub path: PathBuf,
    /// Kernel name (`sdb`, `loop3`, `mmcblk0`).
    pub name: String,
    /// Device number.
    pub dev: DevNum,
    /// Size in bytes.
    pub size: u64,
}

/// Reads a sysfs attribute of the device `dev`.
fn sys_attr(dev: DevNum, attr: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/dev/block/{}:{}/{attr}", dev.0, dev.1))
        .ok()
        .map(|s| s.trim().to_string())
}

fn parse_dev(text: &str) -> Option<DevNum> {
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl BlockDevice {
    /// Opens the facts about `path`, which must be a whole block device (not a partition).
    pub fn open(path: &Path) -> Result<BlockDevice> {
        let meta =
            std::fs::metadata(path).ctx(|| format!("cannot open device {}", path.display()))?;
        if !meta.file_type().is_block_device() {
            return invalid(format!(
                "{} is not a block device: give the card's whole device, e.g. /dev/sdb or /dev/mmcblk0 (see lsblk)",
                path.display()
            ));
        }
        let dev = split_dev(meta.rdev());
        let link = std::fs::canonicalize(format!("/sys/dev/block/{}:{}", dev.0, dev.1))
            .ctx(|| format!("cannot find {} in /sys", path.display()))?;
        let name = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if sys_attr(dev, "partition").is_some() {
            let parent = link
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return invalid(format!(
                "{} is partition {name} of /dev/{parent}: give the whole device /dev/{parent}",
                path.display()
            ));
        }
        let sectors: u64 = sys_attr(dev, "size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(BlockDevice {
            path: path.to_path_buf(),
            name,
            dev,
            size: sectors * 512,
        })
    }

    /// Device numbers of this device and its partitions.
    pub fn self_and_partitions(&self) -> Vec<DevNum> {
        let mut out = vec![self.dev];
        if let Ok(rd) = std::fs::read_dir(format!("/sys/class/block/{}", self.name)) {
            for e in rd.flatten() {
                let p = e.path();
                if p.join("partition").exists() {
                    if let Some(d) = std::fs::read_to_string(p.join("dev"))
                        .ok()
                        .as_deref()
                        .and_then(parse_dev)
                    {
                        out.push(d);
                    }
                }
            }
        }
        out
    }

    /// Refuses a device that is (or has partitions) mounted, used as swap, or that holds the running system.
    pub fn check_unused(&self) -> Result<()> {
        let ours = self.self_and_partitions();
        let mounts = mounted()?;
        for d in &ours {
            if let Some(points) = mounts.get(d) {
                return invalid(format!(
                    "{} is in use: {}:{} is mounted on {}; unmount it first (umount), then try again",
                    self.path.display(),
                    d.0,
                    d.1,
                    points.join(", ")
                ));
            }
        }
        for d in root_disks() {
            if ours.contains(&d) || d == self.dev {
                return invalid(format!(
                    "{} holds the running system's root filesystem: refusing to overwrite it",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }

    /// A short description for the confirmation prompt: size and model when sysfs has one.
    pub fn describe(&self) -> String {
        let model = sys_attr(self.dev, "device/model").unwrap_or_default();
        format!(
            "{} ({}{}{})",
            self.path.display(),
            crate::size::human(self.size),
            if model.is_empty() { "" } else { ", " },
            model
        )
    }
}

/// Mounted (and swap) devices: device number -> mount points, from /proc/self/mountinfo and /proc/swaps.
pub fn mounted() -> Result<BTreeMap<DevNum, Vec<String>>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "cannot read /proc/self/mountinfo")?;
    let mut map: BTreeMap<DevNum, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        if let Some(d) = parse_dev(f[2]) {
            map.entry(d).or_default().push(f[4].replace("\\040", " "));
        }
        // The mount source (after " - fstype "), for filesystems whose st_dev is anonymous (btrfs).
        if let Some(i) = f.iter().position(|x| *x == "-") {
            if let Some(src) = f.get(i + 2) {
                if let Ok(m) = std::fs::metadata(src) {
                    if m.file_type().is_block_device() {
                        map.entry(split_dev(m.rdev()))
                            .or_default()
                            .push(f[4].to_string());
                    }
                }
            }
        }
    }
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        for line in swaps.lines().skip(1) {
            if let Some(src) = line.split_whitespace().next() {
                if let Ok(m) = std::fs::metadata(src) {
                    if m.file_type().is_block_device() {
                        map.entry(split_dev(m.rdev()))
                            .or_default()
                            .push("[swap]".into());
                    }
                }
            }
        }
    }
    Ok(map)
}

/// The whole disks (and their partitions' parents, and devices under device-mapper) the root filesystem lives on.
pub fn root_disks() -> Vec<DevNum> {
    let mut out = Vec::new();
    let Ok(meta) = std::fs::metadata("/") else {
        return out;
    };
    let mut todo = vec![split_dev(meta.dev())];
    while let Some(d) = todo.pop() {
        if out.contains(&d) {
            continue;
        }
        out.push(d);
        let Ok(link) = std::fs::canonicalize(format!("/sys/dev/block/{}:{}", d.0, d.1)) else {
            continue;
        };
        if link.join("partition").exists() {
            if let Some(parent) = link.parent() {
                if let Some(pd) = std::fs::read_to_string(parent.join("dev"))
                    .ok()
                    .as_deref()
                    .and_then(parse_dev)
                {
                    todo.push(pd);
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(link.join("slaves")) {
            for e in rd.flatten() {
                if let Some(sd) = std::fs::read_to_string(e.path().join("dev"))
                    .ok()
                    .as_deref()
                    .and_then(parse_dev)
                {
                    todo.push(sd);
                }
            }
        }
    }
    out
}

/// Drops the kernel's cached pages of an open block device (BLKFLSBUF), so a read-back reads the device.
pub fn flush_buffers(file: &std::fs::File) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is an open block device.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF as _, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "cannot flush the device's buffers");
    }
    Ok(())
}
