//! Which bytes of the image the filesystems use, whatever their content.
//!
//! The raw working copy is sparse: all-zero blocks become holes. Zeros can be meaningful, though: free entries of
//! the FAT, empty bitmaps and inode tables of ext4. A bmap that left them out would leave a reused card's old bytes
//! there and corrupt the new filesystems. So the bmap maps, besides every block holding data, the FAT's metadata
//! and allocated clusters and every block ext4 marks as used (from `dumpe2fs`); only free space stays unmapped.

use crate::error::{Error, IoContext, Result};
use crate::io::DataRange;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

fn push(out: &mut Vec<DataRange>, start: u64, end: u64) {
    if end <= start {
        return;
    }
    match out.last_mut() {
        Some(last) if last.end >= start => last.end = last.end.max(end),
        _ => out.push(DataRange { start, end }),
    }
}

/// Byte ranges (absolute in the image) of the FAT filesystem at `offset`: reserved sectors, FATs, the FAT12/16
/// root directory, and every allocated cluster.
pub fn fat_used(image: &File, offset: u64, part_len: u64) -> Result<Vec<DataRange>> {
    let mut bs = [0u8; 512];
    image
        .read_exact_at(&mut bs, offset)
        .ctx(|| "cannot read the FAT boot sector")?;
    let u16at = |i: usize| u16::from_le_bytes([bs[i], bs[i + 1]]) as u64;
    let u32at = |i: usize| u32::from_le_bytes([bs[i], bs[i + 1], bs[i + 2], bs[i + 3]]) as u64;
    let bps = u16at(11);
    let spc = bs[13] as u64;
    let rsvd = u16at(14);
    let nfats = bs[16] as u64;
    let root_entries = u16at(17);
    let total = if u16at(19) != 0 { u16at(19) } else { u32at(32) };
    let fatsz = if u16at(22) != 0 { u16at(22) } else { u32at(36) };
    let mut out = Vec::new();
    if bps == 0 || spc == 0 || fatsz == 0 || total == 0 {
        // Not a FAT we understand: keep the whole partition.
        push(&mut out, offset, offset + part_len);
        return Ok(out);
    }
    let root_dir_sectors = (root_entries * 32).div_ceil(bps);
    let first_data = rsvd + nfats * fatsz + root_dir_sectors;
    push(&mut out, offset, offset + first_data * bps);
    let clusters = total.saturating_sub(first_data) / spc;
    let entry_bits = if clusters < 4085 {
        // FAT12: small enough to keep whole.
        push(&mut out, offset, offset + (total * bps).min(part_len));
        return Ok(out);
    } else if clusters < 65525 {
        16
    } else {
        32
    };
    let mut fat = vec![0u8; (fatsz * bps) as usize];
    image
        .read_exact_at(&mut fat, offset + rsvd * bps)
        .ctx(|| "cannot read the FAT")?;
    let cluster_bytes = spc * bps;
    for c in 2..clusters + 2 {
        let v = if entry_bits == 16 {
            let i = (c * 2) as usize;
            if i + 2 > fat.len() {
                break;
            }
            u16::from_le_bytes([fat[i], fat[i + 1]]) as u32
        } else {
            let i = (c * 4) as usize;
            if i + 4 > fat.len() {
                break;
            }
            u32::from_le_bytes([fat[i], fat[i + 1], fat[i + 2], fat[i + 3]]) & 0x0fff_ffff
        };
        if v != 0 {
            let start = offset + first_data * bps + (c - 2) * cluster_bytes;
            push(&mut out, start, start + cluster_bytes);
        }
    }
    Ok(out)
}

fn dumpe2fs() -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(Into::into));
    dirs.into_iter()
        .map(|d| d.join("dumpe2fs"))
        .find(|p| p.is_file())
}

/// Byte ranges (absolute in the image) that the ext4 filesystem at `offset` of `image_path` marks as used.
pub fn ext4_used(image_path: &Path, offset: u64) -> Result<Vec<DataRange>> {
    let tool = dumpe2fs().ok_or_else(|| Error::Tool {
        tool: "dumpe2fs".into(),
        message: "not found: install e2fsprogs".into(),
    })?;
    let out = Command::new(tool)
        .arg(format!("{}?offset={offset}", image_path.display()))
        .output()
        .ctx(|| "cannot run dumpe2fs")?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "dumpe2fs".into(),
            message: format!(
                "cannot read the root filesystem: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let (Some(bsize), Some(count)) = (field("Block size:"), field("Block count:")) else {
        return Err(Error::Tool {
            tool: "dumpe2fs".into(),
            message: "no block size or count in its output".into(),
        });
    };
    let mut free: Vec<(u64, u64)> = Vec::new();
    for line in text.lines() {
        let Some(list) = line.strip_prefix("  Free blocks: ") else {
            continue;
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                free.push((a, b));
            }
        }
    }
    free.sort();
    let mut used = Vec::new();
    let mut next = 0u64;
    for (a, b) in free {
        if a > next {
            push(&mut used, offset + next * bsize, offset + a * bsize);
        }
        next = next.max(b + 1);
    }
    if next < count {
        push(&mut used, offset + next * bsize, offset + count * bsize);
    }
    Ok(used)
}

/// The union of sorted-or-not range lists, sorted and merged.
pub fn union(lists: &[&[DataRange]]) -> Vec<DataRange> {
    let mut all: Vec<DataRange> = lists.iter().flat_map(|l| l.iter().copied()).collect();
    all.sort_by_key(|r| r.start);
    let mut out = Vec::new();
    for r in all {
        push(&mut out, r.start, r.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_merges() {
        let a = [
            DataRange { start: 0, end: 10 },
            DataRange { start: 50, end: 60 },
        ];
        let b = [
            DataRange { start: 5, end: 20 },
            DataRange { start: 60, end: 70 },
        ];
        assert_eq!(
            union(&[&a, &b]),
            vec![
                DataRange { start: 0, end: 20 },
                DataRange { start: 50, end: 70 }
            ]
        );
    }
}
