//! Reading a disk image: its partition table (MBR or GPT), whether it is Raspberry Pi OS, and which generation.

use crate::error::{invalid, Error, IoContext, Result};
use firstboot_agent::layout::{TableKind, SECTOR};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};

/// Root-growth token of Bookworm's cmdline.txt (raspberrypi-sys-mods' first-boot hook).
pub const BOOKWORM_GROWTH: &str = "init=/usr/lib/raspberrypi-sys-mods/firstboot";
/// Root-growth token of Trixie's cmdline.txt.
pub const TRIXIE_GROWTH: &str = "resize";

/// MBR type codes of FAT partitions.
const FAT_TYPES: [u8; 4] = [0x06, 0x0b, 0x0c, 0x0e];
/// MBR type code of a Linux partition.
const LINUX_TYPE: u8 = 0x83;
/// GPT type GUID of a Linux filesystem.
pub const GPT_LINUX_FS: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// GPT type GUID of Microsoft basic data (FAT).
pub const GPT_BASIC_DATA: &str = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";

/// One partition of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    /// First sector.
    pub start: u64,
    /// Last sector (inclusive, as sfdisk prints `start + size - 1`).
    pub end: u64,
    /// Size in sectors.
    pub sectors: u64,
    /// Type: MBR hex code (`c`, `83`) or GPT type GUID.
    #[serde(rename = "type")]
    pub kind: String,
    /// The PARTUUID Linux gives it (`<disk-id>-0N` on MBR, the partition GUID on GPT).
    pub partuuid: String,
}

impl Partition {
    /// Byte offset of the first sector.
    pub fn offset(&self) -> u64 {
        self.start * SECTOR
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.sectors * SECTOR
    }
    /// True for a zero-length partition.
    pub fn is_empty(&self) -> bool {
        self.sectors == 0
    }
}

/// A partition table as found.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// MBR or GPT.
    pub kind: TableKind,
    /// MBR disk id (8 hex digits) or GPT disk GUID.
    pub disk_id: String,
    /// Used partitions, by number.
    pub partitions: Vec<Partition>,
}

impl Table {
    /// Partition number `n`, if used.
    pub fn get(&self, n: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == n)
    }
}

/// Reads the MBR (and the GPT behind a protective MBR) of an image: a file, or any seekable bytes (the fuzz
/// target `partition_table` feeds it arbitrary ones). Never panics; a table it cannot use is an
/// [`Error::Invalid`] naming `what`.
pub fn read_table<F: Read + Seek>(file: &mut F, what: &str) -> Result<Table> {
    let len = file
        .seek(SeekFrom::End(0))
        .ctx(|| format!("cannot read {what}"))?;
    let mut sector0 = [0u8; 512];
    file.seek(SeekFrom::Start(0))
        .ctx(|| format!("cannot read {what}"))?;
    if len < 512 || file.read_exact(&mut sector0).is_err() {
        return invalid(format!(
            "{what} is not a disk image: it is {len} bytes, shorter than a partition table"
        ));
    }
    if sector0[510..512] != [0x55, 0xaa] {
        return invalid(format!(
            "{what} is not a disk image: it has no partition table (no MBR boot signature); give a Raspberry Pi \
             OS image (.img, .img.xz, .img.gz or .img.zst)"
        ));
    }
    let entry = |i: usize| {
        let e = &sector0[446 + 16 * i..446 + 16 * (i + 1)];
        let sys = e[4];
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64;
        let sectors = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64;
        (sys, start, sectors)
    };
    if entry(0).0 == 0xee {
        firstboot_agent::disk::table::check_gpt_headers(file, SECTOR)
            .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        file.seek(SeekFrom::Start(0))
            .ctx(|| format!("cannot read {what}"))?;
        let gpt = gptman::GPT::read_from(file, SECTOR).map_err(|e| {
            Error::Invalid(format!(
                "{what}: has a protective MBR but no readable GPT: {e}"
            ))
        })?;
        if let Some((n, p)) = gpt
            .iter()
            .find(|(_, p)| p.is_used() && p.ending_lba < p.starting_lba)
        {
            return invalid(format!(
                "{what}: GPT partition {n} ends (sector {}) before it starts (sector {}): the table is corrupt",
                p.ending_lba, p.starting_lba
            ));
        }
        let partitions = gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(n, p)| Partition {
                number: n,
                start: p.starting_lba,
                end: p.ending_lba,
                sectors: (p.ending_lba - p.starting_lba).saturating_add(1),
                kind: uuid::Uuid::from_bytes_le(p.partition_type_guid).to_string(),
                partuuid: uuid::Uuid::from_bytes_le(p.unique_partition_guid).to_string(),
            })
            .collect();
        return Ok(Table {
            kind: TableKind::Gpt,
            disk_id: uuid::Uuid::from_bytes_le(gpt.header.disk_guid).to_string(),
            partitions,
        });
    }
    let disk_id = format!(
        "{:08x}",
        u32::from_le_bytes([sector0[440], sector0[441], sector0[442], sector0[443]])
    );
    let mut partitions = Vec::new();
    for i in 0..4 {
        let (sys, start, sectors) = entry(i);
        if sys == 0 || sectors == 0 {
            continue;
        }
        partitions.push(Partition {
            number: i as u32 + 1,
            start,
            end: start + sectors - 1,
            sectors,
            kind: format!("{sys:x}"),
            partuuid: format!("{disk_id}-{:02x}", i + 1),
        });
    }
    Ok(Table {
        kind: TableKind::Mbr,
        disk_id,
        partitions,
    })
}

/// Checks the table is Raspberry Pi OS's: MBR, partition 1 FAT, partition 2 Linux, nothing else, all inside the
/// image. Returns partitions 1 and 2. (Whether partition 1 holds config.txt and cmdline.txt is checked on the FAT.)
pub fn check_raspios_table(
    table: &Table,
    image_len: u64,
    what: &str,
) -> Result<(Partition, Partition)> {
    let not_raspios = |why: String| {
        Error::Invalid(format!(
            "{what} is not a Raspberry Pi OS image: {why}; give an image of Raspberry Pi OS Lite (arm64) as \
             downloaded"
        ))
    };
    if table.kind == TableKind::Gpt {
        return Err(not_raspios(
            "it has a GPT partition table (Raspberry Pi OS ships MBR; this builder converts to GPT itself with \
             --partition-table gpt)"
                .into(),
        ));
    }
    let p1 = table
        .get(1)
        .ok_or_else(|| not_raspios("it has no partition 1 (the FAT boot partition)".into()))?;
    let p2 = table
        .get(2)
        .ok_or_else(|| not_raspios("it has no partition 2 (the Linux root partition)".into()))?;
    let p1_type = u8::from_str_radix(&p1.kind, 16).unwrap_or(0);
    if !FAT_TYPES.contains(&p1_type) {
        return Err(not_raspios(format!(
            "partition 1 has type 0x{} and not a FAT type",
            p1.kind
        )));
    }
    if u8::from_str_radix(&p2.kind, 16).unwrap_or(0) != LINUX_TYPE {
        return Err(not_raspios(format!(
            "partition 2 has type 0x{} and not Linux (0x83)",
            p2.kind
        )));
    }
    if let Some(p) = table.partitions.iter().find(|p| p.number > 2) {
        return invalid(format!(
            "{what} already has a partition {} (sectors {}..{}): is it already a cluster image? Give the plain \
             Raspberry Pi OS image",
            p.number, p.start, p.end
        ));
    }
    if p1.end >= p2.start {
        return Err(not_raspios("partitions 1 and 2 overlap".into()));
    }
    for p in [p1, p2] {
        if (p.end + 1) * SECTOR > image_len {
            return invalid(format!(
                "{what} is truncated: partition {} ends at byte {} but the image has only {image_len} bytes",
                p.number,
                (p.end + 1) * SECTOR
            ));
        }
    }
    Ok((p1.clone(), p2.clone()))
}

/// The Raspberry Pi OS generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generation {
    /// Debian 12 based; root growth by `init=/usr/lib/raspberrypi-sys-mods/firstboot`.
    Bookworm,
    /// Debian 13 based; root growth by the `resize` token; cloud-init on the boot partition.
    Trixie,
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Generation::Bookworm => "bookworm",
            Generation::Trixie => "trixie",
        })
    }
}

impl Generation {
    /// The cmdline.txt token by which this generation grows the root partition at first boot.
    pub fn growth_token(self) -> &'static str {
        match self {
            Generation::Bookworm => BOOKWORM_GROWTH,
            Generation::Trixie => TRIXIE_GROWTH,
        }
    }
}

/// How the generation was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenerationSource {
    /// From the root-growth token in cmdline.txt.
    CmdlineToken,
    /// From `VERSION_CODENAME` in the root filesystem's os-release.
    OsRelease,
}

/// The generation named by cmdline.txt's root-growth token, if one is there.
pub fn generation_from_cmdline(cmdline: &str) -> Option<Generation> {
    let tokens: Vec<&str> = cmdline.split_whitespace().collect();
    if tokens.contains(&BOOKWORM_GROWTH) {
        Some(Generation::Bookworm)
    } else if tokens.contains(&TRIXIE_GROWTH) {
        Some(Generation::Trixie)
    } else {
        None
    }
}

/// The generation named by an os-release file's `VERSION_CODENAME`; `Err` carries an unknown codename.
pub fn generation_from_os_release(text: &str) -> std::result::Result<Generation, String> {
    let codename = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .next()
        .unwrap_or_default();
    match codename.as_str() {
        "bookworm" => Ok(Generation::Bookworm),
        "trixie" => Ok(Generation::Trixie),
        other => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations() {
        assert_eq!(
            generation_from_cmdline("console=tty1 root=PARTUUID=x-02 rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot"),
            Some(Generation::Bookworm)
        );
        assert_eq!(
            generation_from_cmdline("root=PARTUUID=x-02 quiet resize\n"),
            Some(Generation::Trixie)
        );
        assert_eq!(generation_from_cmdline("root=x resize2"), None);
        assert_eq!(
            generation_from_os_release("ID=debian\nVERSION_CODENAME=trixie\n"),
            Ok(Generation::Trixie)
        );
        assert_eq!(
            generation_from_os_release("VERSION_CODENAME=\"bullseye\"\n"),
            Err("bullseye".into())
        );
    }
}
