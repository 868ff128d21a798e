//! Reading and rewriting the card's partition table (MBR with `mbrman`, GPT with `gptman`).
//!
//! Only partitions 2 and 3 are ever changed: partition 2 (root) grows to meet partition 3 (the brick), which takes
//! the last `brick share` of the card. The disk signature / disk GUID, partition 1 and every partition's unique id
//! stay, so the PARTUUIDs in `cmdline.txt` and `/etc/fstab` keep working. Everything here works on any
//! `Read + Write + Seek` (a block device or, in unit tests, a file), so the decisions are testable without a kernel.

use crate::layout::{self, BrickLayout, LayoutError, TableKind, SECTOR};
use std::io::{Read, Seek, SeekFrom, Write};

/// MBR partition type of a GPT protective MBR entry.
const MBR_TYPE_GPT_PROTECTIVE: u8 = 0xee;
/// MBR partition type "Linux".
const MBR_TYPE_LINUX: u8 = 0x83;
/// GPT partition type "Linux filesystem data" (0FC63DAF-8483-4772-8E79-3D69D8477DE4), in on-disk byte order.
const GPT_TYPE_LINUX_FS: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// Name given to a GPT brick partition.
pub const GPT_BRICK_NAME: &str = "brick";

/// Errors reading, planning or writing the table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// I/O on the device failed.
    #[error("I/O error on the partition table: {0}")]
    Io(#[from] std::io::Error),
    /// The MBR could not be read or written.
    #[error("MBR partition table: {0}")]
    Mbr(#[from] mbrman::Error),
    /// The GPT could not be read or written.
    #[error("GPT partition table: {0}")]
    Gpt(#[from] gptman::Error),
    /// The table does not look like a Raspberry Pi OS card.
    #[error("unexpected partition table: {0}")]
    Unexpected(String),
    /// The layout cannot be made on this card.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Partition 3 holds a filesystem but lies partly past the end of the card.
    #[error(
        "partition 3 ({start}..={end}) holds a {fstype} filesystem but ends past the last usable sector {last} of \
         this card: refusing to move or cut a partition that holds a filesystem (if its data is not needed, wipe it \
         with `wipefs -a` on the partition and run again)"
    )]
    FilesystemPastEnd {
        /// Partition 3's first sector.
        start: u64,
        /// Partition 3's last sector.
        end: u64,
        /// The type blkid reported.
        fstype: String,
        /// Last usable sector of the card.
        last: u64,
    },
    /// Partition 2 would have to shrink below the size of its filesystem.
    #[error(
        "partition 2 would end at sector {new_end}, but its filesystem needs {fs_bytes} bytes (the partition would \
         hold only {new_bytes}): refusing to cut the root filesystem (was the root grown to the whole card already?)"
    )]
    RootWouldShrink {
        /// Planned last sector of partition 2.
        new_end: u64,
        /// Size of the root filesystem in bytes.
        fs_bytes: u64,
        /// Bytes partition 2 would hold.
        new_bytes: u64,
    },
}

/// One used partition, in 512-byte sectors, end inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// Partition number (1-based, as in `/dev/mmcblk0p3`).
    pub number: u32,
    /// First sector.
    pub start: u64,
    /// Last sector (inclusive).
    pub end: u64,
}

impl Part {
    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// What is on the card now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    /// MBR or GPT.
    pub kind: TableKind,
    /// Size of the device in sectors.
    pub total_sectors: u64,
    /// The used partitions, by number.
    pub parts: Vec<Part>,
    /// GPT only: the headers describe this device's real size and a matching backup header and entry array are
    /// present in the last sectors. Always true for MBR.
    pub gpt_geometry_ok: bool,
}

impl TableInfo {
    /// Partition `n`, if used.
    pub fn part(&self, n: u32) -> Option<Part> {
        self.parts.iter().copied().find(|p| p.number == n)
    }
}

/// Most partition entries a GPT may declare here (the UEFI default is 128).
pub const GPT_MAX_ENTRIES: u32 = 1024;

/// Checks the fields of both GPT headers (sector 1 and the last sector) that say where the partition entries are,
/// and that no used entry starts at sector 0, before `gptman` reads them: it multiplies and allocates from those
/// fields unchecked and searches an alignment that does not exist for a partition at 0, so crafted tables made it
/// overflow, ask for gigabytes or panic (found by `ci/fuzz`, target partition_table). A header without the
/// `EFI PART` signature is skipped (`gptman` rejects it). The error names the header and the field.
pub fn check_gpt_headers<R: Read + Seek + ?Sized>(dev: &mut R, sector: u64) -> Result<(), String> {
    let len = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let mut places = vec![("primary", sector)];
    if len >= 2 * sector {
        places.push(("backup", (len / sector - 1) * sector));
    }
    for (which, at) in places {
        let mut h = [0u8; 92];
        dev.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        if dev.read_exact(&mut h).is_err() || &h[..8] != b"EFI PART" {
            continue;
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let entries_lba = u64::from_le_bytes(h[72..80].try_into().expect("8 bytes"));
        let (count, size) = (u32_at(80), u32_at(84));
        let bad = |what: String| {
            Err(format!(
                "the {which} GPT header (byte {at}) is implausible: {what}; the partition table is corrupt"
            ))
        };
        if count > GPT_MAX_ENTRIES {
            return bad(format!(
                "{count} partition entries (at most {GPT_MAX_ENTRIES})"
            ));
        }
        if !(128..=4096).contains(&size) || size % 128 != 0 {
            return bad(format!(
                "partition entries of {size} bytes (128 to 4096, a multiple of 128)"
            ));
        }
        let end = entries_lba
            .checked_mul(sector)
            .and_then(|start| start.checked_add(u64::from(count) * u64::from(size)));
        match end {
            Some(end) if end <= len => {}
            _ => {
                return bad(format!(
                    "its {count} entries at sector {entries_lba} end past the {len}-byte disk"
                ))
            }
        }
        // A used entry starting at sector 0 (over the MBR) makes gptman's alignment search panic (ci/fuzz).
        let mut entry = vec![0u8; size as usize];
        for i in 0..u64::from(count) {
            dev.seek(SeekFrom::Start(entries_lba * sector + i * u64::from(size)))
                .map_err(|e| e.to_string())?;
            dev.read_exact(&mut entry).map_err(|e| e.to_string())?;
            let used = entry[..16].iter().any(|b| *b != 0);
            if used && u64::from_le_bytes(entry[32..40].try_into().expect("8 bytes")) == 0 {
                return bad(format!(
                    "partition entry {} starts at sector 0, over the partition table itself",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

/// Reads the table of a device (or image).
pub fn read_table<F: Read + Seek>(dev: &mut F) -> Result<TableInfo, TableError> {
    let total_bytes = dev.seek(SeekFrom::End(0))?;
    if total_bytes % SECTOR != 0 {
        return Err(TableError::Unexpected(format!(
            "device size {total_bytes} bytes is not a multiple of {SECTOR}-byte sectors"
        )));
    }
    let total_sectors = total_bytes / SECTOR;
    // mbrman 0.6.1 panics (unwrap in its alignment guess) on a used entry starting at sector 0: refuse that
    // first (such an entry would overlap the MBR itself). Found by the `partition_table` fuzz target.
    let mut sector0 = [0u8; SECTOR as usize];
    dev.seek(SeekFrom::Start(0))?;
    dev.read_exact(&mut sector0)?;
    for i in 0..4 {
        let e = &sector0[446 + 16 * i..446 + 16 * (i + 1)];
        if e[4] != 0 && e[8..12] == [0, 0, 0, 0] {
            return Err(TableError::Unexpected(format!(
                "MBR partition {} has a type but starts at sector 0, over the table itself: the table is corrupt",
                i + 1
            )));
        }
    }
    dev.seek(SeekFrom::Start(0))?;
    let mbr = mbrman::MBR::read_from(dev, SECTOR as u32)?;
    let protective = mbr
        .iter()
        .any(|(_, p)| p.is_used() && p.sys == MBR_TYPE_GPT_PROTECTIVE);
    if protective {
        check_gpt_headers(dev, SECTOR).map_err(TableError::Unexpected)?;
        dev.seek(SeekFrom::Start(0))?;
        let gpt = gptman::GPT::read_from(dev, SECTOR)?;
        if gpt.sector_size != SECTOR {
            return Err(TableError::Unexpected(
                "GPT with 4096-byte sectors is not supported".into(),
            ));
        }
        if let Some((n, p)) = gpt
            .iter()
            .find(|(_, p)| p.is_used() && p.ending_lba < p.starting_lba)
        {
            return Err(TableError::Unexpected(format!(
                "GPT partition {n} ends (sector {}) before it starts (sector {})",
                p.ending_lba, p.starting_lba
            )));
        }
        let parts = gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(n, p)| Part {
                number: n,
                start: p.starting_lba,
                end: p.ending_lba,
            })
            .collect();
        let h = &gpt.header;
        let gpt_geometry_ok = h.primary_lba == 1
            && h.backup_lba == total_sectors - 1
            && h.last_usable_lba == layout::last_usable_sector(total_sectors, TableKind::Gpt)
            && backup_gpt_matches(dev, h, total_sectors);
        Ok(TableInfo {
            kind: TableKind::Gpt,
            total_sectors,
            parts,
            gpt_geometry_ok,
        })
    } else {
        if let Some((n, _)) = mbr.iter().find(|(_, p)| p.is_used() && p.sectors == 0) {
            return Err(TableError::Unexpected(format!(
                "MBR partition {n} has a type but 0 sectors: the table is corrupt"
            )));
        }
        if mbr.iter().any(|(_, p)| p.is_used() && p.is_extended()) {
            return Err(TableError::Unexpected(
                "the MBR has an extended partition; a Raspberry Pi OS card has only primary partitions".into(),
            ));
        }
        let parts = mbr
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(n, p)| Part {
                number: n as u32,
                start: u64::from(p.starting_lba),
                end: u64::from(p.starting_lba) + u64::from(p.sectors) - 1,
            })
            .collect();
        Ok(TableInfo {
            kind: TableKind::Mbr,
            total_sectors,
            parts,
            gpt_geometry_ok: true,
        })
    }
}

/// True when the card's last sector holds a valid backup GPT header (and entry array) that belongs to the
/// primary header `primary`: same disk GUID and same partition entries. A compressed image built for a card
/// size (`--card-size`) ends before the brick, so the card's last sector holds zeros or an older image's backup
/// header; both count as missing and make the plan rewrite the backup.
fn backup_gpt_matches<F: Read + Seek>(
    dev: &mut F,
    primary: &gptman::GPTHeader,
    total_sectors: u64,
) -> bool {
    let last = total_sectors - 1;
    let check = |dev: &mut F| -> Result<bool, gptman::Error> {
        dev.seek(SeekFrom::Start(last * SECTOR))?;
        let b = gptman::GPTHeader::read_from(dev)?;
        if b.primary_lba != last
            || b.backup_lba != 1
            || b.disk_guid != primary.disk_guid
            || b.partition_entry_array_crc32 != primary.partition_entry_array_crc32
            || b.partition_entry_lba >= last
        {
            return Ok(false);
        }
        b.read_partitions(dev, SECTOR)?;
        Ok(true)
    };
    check(dev).unwrap_or(false)
}

/// Facts about the filesystems that the plan must respect.
#[derive(Debug, Clone, Default)]
pub struct PlanInputs {
    /// Percent of the card for the brick.
    pub share: u8,
    /// Size in bytes of the filesystem in partition 2, if known.
    pub root_fs_bytes: Option<u64>,
    /// Filesystem type found at partition 3's current place, if partition 3 exists and holds one.
    pub p3_fstype: Option<String>,
}

/// What the table should become.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TablePlan {
    /// The layout computed from the card size (what a fresh card gets).
    pub layout: BrickLayout,
    /// Alignment found in the image, in sectors.
    pub align: u64,
    /// Partition 2 as it should be.
    pub root: Part,
    /// Partition 3 as it should be.
    pub brick: Part,
    /// Whether the table on the card differs from the plan.
    pub needs_write: bool,
    /// Human descriptions of each change (empty when none).
    pub changes: Vec<String>,
    /// Things the user should know (for example, an existing filesystem kept at its place).
    pub warnings: Vec<String>,
}

/// Decides the table: partition 3 as the last `share` of the card, partition 2 up to it.
pub fn plan(info: &TableInfo, inputs: &PlanInputs) -> Result<TablePlan, TableError> {
    let p1 = info
        .part(1)
        .ok_or_else(|| TableError::Unexpected("partition 1 (boot) is missing".into()))?;
    let p2 = info
        .part(2)
        .ok_or_else(|| TableError::Unexpected("partition 2 (root) is missing".into()))?;
    if let Some(extra) = info.parts.iter().find(|p| p.number > 3) {
        return Err(TableError::Unexpected(format!(
            "partition {} exists; this card was changed by someone else, refusing to touch it",
            extra.number
        )));
    }
    if p1.start > p2.start {
        return Err(TableError::Unexpected(
            "partition 1 starts after partition 2".into(),
        ));
    }
    let align = layout::detect_alignment(&[p1.start, p2.start]);
    let last = layout::last_usable_sector(info.total_sectors, info.kind);
    let lay = layout::brick_layout(
        info.total_sectors,
        info.kind,
        align,
        p2.start,
        inputs.share,
        layout::MIN_ROOT_SECTORS,
    )?;
    let mut warnings = Vec::new();
    let mut brick = Part {
        number: 3,
        start: lay.brick_start,
        end: lay.brick_end,
    };
    let old_p3 = info.part(3);
    if let (Some(p3), Some(fstype)) = (old_p3, inputs.p3_fstype.as_ref()) {
        if (p3.start, p3.end) != (brick.start, brick.end) {
            if p3.end > last {
                return Err(TableError::FilesystemPastEnd {
                    start: p3.start,
                    end: p3.end,
                    fstype: fstype.clone(),
                    last,
                });
            }
            warnings.push(format!(
                "partition 3 ({}..={}) already holds a {fstype} filesystem: it is kept where it is instead of \
                 {}..={}",
                p3.start, p3.end, brick.start, brick.end
            ));
            brick = p3;
        }
    }
    if brick.start <= p2.start {
        return Err(TableError::Unexpected(format!(
            "partition 3 starts at {} before partition 2 ({})",
            brick.start, p2.start
        )));
    }
    let root = Part {
        number: 2,
        start: p2.start,
        end: brick.start - 1,
    };
    if root.end < p2.end {
        let new_bytes = root.sectors() * SECTOR;
        match inputs.root_fs_bytes {
            Some(fs_bytes) if fs_bytes <= new_bytes => {}
            Some(fs_bytes) => {
                return Err(TableError::RootWouldShrink {
                    new_end: root.end,
                    fs_bytes,
                    new_bytes,
                })
            }
            None => {
                return Err(TableError::Unexpected(format!(
                    "partition 2 would shrink from end {} to {} and the size of its filesystem is unknown",
                    p2.end, root.end
                )))
            }
        }
    }
    let mut changes = Vec::new();
    if root.end != p2.end {
        changes.push(format!(
            "partition 2: end {} -> {} ({} -> {} MiB)",
            p2.end,
            root.end,
            (p2.sectors() * SECTOR) >> 20,
            (root.sectors() * SECTOR) >> 20
        ));
    }
    match old_p3 {
        None => changes.push(format!(
            "partition 3: new, {}..={} ({} MiB)",
            brick.start,
            brick.end,
            (brick.sectors() * SECTOR) >> 20
        )),
        Some(p3) if p3 != brick => changes.push(format!(
            "partition 3: {}..={} -> {}..={} ({} MiB)",
            p3.start,
            p3.end,
            brick.start,
            brick.end,
            (brick.sectors() * SECTOR) >> 20
        )),
        Some(_) => {}
    }
    if !info.gpt_geometry_ok {
        changes.push(format!(
            "GPT: backup header written at the card's last sector {}",
            info.total_sectors - 1
        ));
    }
    Ok(TablePlan {
        layout: lay,
        align,
        root,
        brick,
        needs_write: !changes.is_empty(),
        changes,
        warnings,
    })
}

/// A CHS address for `lba` in the usual 255-head, 63-sector geometry, clamped at the largest address.
fn chs(lba: u64) -> mbrman::CHS {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return mbrman::CHS::new(1023, 254, 63);
    }
    let rest = lba % (HEADS * SECTORS);
    mbrman::CHS::new(
        cylinder as u16,
        (rest / SECTORS) as u8,
        (rest % SECTORS + 1) as u8,
    )
}

/// Writes the planned partitions 2 and 3 (and, for GPT, headers for the device's real size). Keeps everything else.
pub fn write_table<F: Read + Write + Seek>(
    dev: &mut F,
    kind: TableKind,
    plan: &TablePlan,
) -> Result<(), TableError> {
    match kind {
        TableKind::Mbr => {
            dev.seek(SeekFrom::Start(0))?;
            let mut mbr = mbrman::MBR::read_from(dev, SECTOR as u32)?;
            let sectors = |p: &Part| {
                u32::try_from(p.sectors()).map_err(|_| {
                    TableError::Unexpected(format!("partition {} is too large for MBR", p.number))
                })
            };
            let p2 = &mut mbr.header.partition_2;
            p2.sectors = sectors(&plan.root)?;
            p2.last_chs = chs(plan.root.end);
            let p3 = &mut mbr.header.partition_3;
            if p3.is_unused() {
                p3.sys = MBR_TYPE_LINUX;
                p3.boot = 0;
            }
            p3.starting_lba = u32::try_from(plan.brick.start)
                .map_err(|_| TableError::Unexpected("partition 3 starts past 2 TiB".into()))?;
            p3.sectors = sectors(&plan.brick)?;
            p3.first_chs = chs(plan.brick.start);
            p3.last_chs = chs(plan.brick.end);
            dev.seek(SeekFrom::Start(0))?;
            mbr.write_into(dev)?;
        }
        TableKind::Gpt => {
            check_gpt_headers(dev, SECTOR).map_err(TableError::Unexpected)?;
            dev.seek(SeekFrom::Start(0))?;
            let mut gpt = gptman::GPT::read_from(dev, SECTOR)?;
            gpt.header.update_from(dev, SECTOR)?;
            gpt[2].ending_lba = plan.root.end;
            if gpt[3].is_unused() {
                gpt[3].partition_type_guid = guid_bytes(GPT_TYPE_LINUX_FS);
                gpt[3].unique_partition_guid = uuid::Uuid::new_v4().to_bytes_le();
                gpt[3].partition_name = GPT_BRICK_NAME.into();
                gpt[3].attribute_bits = 0;
            }
            gpt[3].starting_lba = plan.brick.start;
            gpt[3].ending_lba = plan.brick.end;
            gpt.write_into(dev)?;
            // Keep the protective MBR's size in step with the device (only when it is a plain protective MBR).
            dev.seek(SeekFrom::Start(0))?;
            let mbr = mbrman::MBR::read_from(dev, SECTOR as u32)?;
            let used: Vec<_> = mbr.iter().filter(|(_, p)| p.is_used()).collect();
            if used.len() == 1 && used[0].1.sys == MBR_TYPE_GPT_PROTECTIVE {
                gptman::GPT::write_protective_mbr_into(dev, SECTOR)?;
            }
        }
    }
    dev.flush()?;
    Ok(())
}

/// A GUID text as GPT stores it (mixed-endian).
fn guid_bytes(text: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(text)
        .expect("constant GUID parses")
        .to_bytes_le()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 2048;
    const GIB: u64 = 1024 * MIB;

    /// A 1 MiB disk whose primary GPT header says `count` entries of `size` bytes at sector `lba`.
    fn disk_with_gpt_header(lba: u64, count: u32, size: u32) -> std::io::Cursor<Vec<u8>> {
        let mut d = vec![0u8; 1 << 20];
        let h = &mut d[512..604];
        h[..8].copy_from_slice(b"EFI PART");
        h[72..80].copy_from_slice(&lba.to_le_bytes());
        h[80..84].copy_from_slice(&count.to_le_bytes());
        h[84..88].copy_from_slice(&size.to_le_bytes());
        std::io::Cursor::new(d)
    }

    #[test]
    fn implausible_gpt_headers_are_refused_before_gptman_reads_them() {
        assert_eq!(
            check_gpt_headers(&mut disk_with_gpt_header(2, 128, 128), SECTOR),
            Ok(())
        );
        // ci/fuzz's partition_table crash: an entry array sector that overflows when multiplied by 512.
        let e = check_gpt_headers(&mut disk_with_gpt_header(u64::MAX / 4, 128, 128), SECTOR)
            .unwrap_err();
        assert!(
            e.contains("primary GPT header") && e.contains("end past"),
            "{e}"
        );
        let e = check_gpt_headers(&mut disk_with_gpt_header(2, u32::MAX, 128), SECTOR).unwrap_err();
        assert!(e.contains("partition entries (at most 1024)"), "{e}");
        let e = check_gpt_headers(&mut disk_with_gpt_header(2, 128, 7), SECTOR).unwrap_err();
        assert!(e.contains("entries of 7 bytes"), "{e}");
        let e = check_gpt_headers(&mut disk_with_gpt_header(2040, 128, 128), SECTOR).unwrap_err();
        assert!(e.contains("end past the 1048576-byte disk"), "{e}");
        // A used entry (type GUID set) starting at sector 0: the second ci/fuzz crash (gptman's alignment search).
        let mut d = disk_with_gpt_header(2, 128, 128);
        d.get_mut()[1024] = 0xaf;
        let e = check_gpt_headers(&mut d, SECTOR).unwrap_err();
        assert!(e.contains("entry 1 starts at sector 0"), "{e}");
        // No signature: left to gptman, which refuses it.
        let mut blank = std::io::Cursor::new(vec![0u8; 4096]);
        assert_eq!(check_gpt_headers(&mut blank, SECTOR), Ok(()));
    }

    /// A sparse file standing for a card.
    fn card(total_sectors: u64) -> std::fs::File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(total_sectors * SECTOR).unwrap();
        f
    }

    fn make_mbr(f: &mut std::fs::File, parts: &[(u64, u64)]) {
        let mut mbr = mbrman::MBR::new_from(f, 512, [0xde, 0xad, 0xbe, 0xef]).unwrap();
        for (i, (start, sectors)) in parts.iter().enumerate() {
            mbr[i + 1] = mbrman::MBRPartitionEntry {
                boot: 0,
                first_chs: mbrman::CHS::empty(),
                sys: if i == 0 { 0x0c } else { 0x83 },
                last_chs: mbrman::CHS::empty(),
                starting_lba: *start as u32,
                sectors: *sectors as u32,
            };
        }
        mbr.write_into(f).unwrap();
    }

    fn make_gpt(f: &mut std::fs::File, image_sectors: u64, parts: &[(u64, u64)]) {
        // Made for a smaller image, like a GPT image written to a bigger card.
        let mut small = card(image_sectors);
        let mut gpt = gptman::GPT::new_from(&mut small, 512, [7; 16]).unwrap();
        for (i, (start, sectors)) in parts.iter().enumerate() {
            gpt[(i + 1) as u32] = gptman::GPTPartitionEntry {
                partition_type_guid: guid_bytes(GPT_TYPE_LINUX_FS),
                unique_partition_guid: [i as u8 + 1; 16],
                starting_lba: *start,
                ending_lba: start + sectors - 1,
                attribute_bits: 0,
                partition_name: "p".into(),
            };
        }
        gpt.write_into(&mut small).unwrap();
        gptman::GPT::write_protective_mbr_into(&mut small, 512).unwrap();
        let mut head = vec![0u8; (64 * SECTOR) as usize];
        small.seek(SeekFrom::Start(0)).unwrap();
        small.read_exact(&mut head).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&head).unwrap();
    }

    #[test]
    fn mbr_fresh_card_gets_brick() {
        let total = 8 * GIB;
        let mut f = card(total);
        make_mbr(&mut f, &[(8192, 1048576), (1056768, 1200 * MIB)]);
        let info = read_table(&mut f).unwrap();
        assert_eq!(info.kind, TableKind::Mbr);
        let inputs = PlanInputs {
            share: 50,
            root_fs_bytes: Some(1200 * MIB * SECTOR),
            p3_fstype: None,
        };
        let p = plan(&info, &inputs).unwrap();
        assert!(p.needs_write);
        assert_eq!(p.brick.start, 4 * GIB);
        assert_eq!(p.brick.end, total - 1);
        assert_eq!(p.root.end, 4 * GIB - 1);
        write_table(&mut f, TableKind::Mbr, &p).unwrap();
        let after = read_table(&mut f).unwrap();
        assert_eq!(after.part(2).unwrap().end, 4 * GIB - 1);
        assert_eq!(after.part(3).unwrap().start, 4 * GIB);
        assert_eq!(after.part(1).unwrap().start, 8192);
        // Second plan: nothing to do; the disk signature is kept.
        assert!(!plan(&after, &inputs).unwrap().needs_write);
        f.seek(SeekFrom::Start(440)).unwrap();
        let mut sig = [0u8; 4];
        f.read_exact(&mut sig).unwrap();
        assert_eq!(sig, [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn gpt_smaller_image_gets_backup_moved() {
        let total = 8 * GIB;
        let mut f = card(total);
        make_gpt(
            &mut f,
            1064960 + 1200 * MIB + 2048,
            &[(16384, 1048576), (1064960, 1200 * MIB)],
        );
        let info = read_table(&mut f).unwrap();
        assert_eq!(info.kind, TableKind::Gpt);
        assert!(!info.gpt_geometry_ok);
        let inputs = PlanInputs {
            share: 50,
            root_fs_bytes: Some(1),
            p3_fstype: None,
        };
        let p = plan(&info, &inputs).unwrap();
        assert_eq!(p.align, 16384);
        assert_eq!(p.brick.end, total - 34);
        write_table(&mut f, TableKind::Gpt, &p).unwrap();
        let after = read_table(&mut f).unwrap();
        assert!(after.gpt_geometry_ok);
        assert_eq!(after.part(3).unwrap().start, p.brick.start);
        assert!(!plan(&after, &inputs).unwrap().needs_write);
    }

    /// A GPT image laid out for exactly this card (`--card-size`) whose compressed form stops before the brick:
    /// the headers name the right size but the backup is missing (zeros, or an older image's backup). The plan
    /// writes it; afterwards it is present, matches, and nothing is left to do.
    #[test]
    fn gpt_fixed_layout_missing_backup_is_written() {
        let total = 8 * GIB;
        let parts = [(16384u64, 1048576u64), (1064960, 3 * GIB)];
        // The full card-sized table, as the builder wrote it into the raw image.
        let full_gpt = |guid: u8| {
            let mut whole = card(total);
            let mut gpt = gptman::GPT::new_from(&mut whole, 512, [guid; 16]).unwrap();
            for (i, (start, sectors)) in parts.iter().enumerate() {
                gpt[(i + 1) as u32] = gptman::GPTPartitionEntry {
                    partition_type_guid: guid_bytes(GPT_TYPE_LINUX_FS),
                    unique_partition_guid: [guid + i as u8; 16],
                    starting_lba: *start,
                    ending_lba: start + sectors - 1,
                    attribute_bits: 0,
                    partition_name: "p".into(),
                };
            }
            gpt.write_into(&mut whole).unwrap();
            gptman::GPT::write_protective_mbr_into(&mut whole, 512).unwrap();
            whole
        };
        let mut whole = full_gpt(9);
        let complete = read_table(&mut whole).unwrap();
        assert!(complete.gpt_geometry_ok, "a complete table is fine");
        // Flash only the head (what a compressed --card-size image holds): the backup is missing.
        let mut f = card(total);
        let mut head = vec![0u8; (64 * SECTOR) as usize];
        whole.seek(SeekFrom::Start(0)).unwrap();
        whole.read_exact(&mut head).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&head).unwrap();
        let info = read_table(&mut f).unwrap();
        assert!(!info.gpt_geometry_ok, "missing backup must be noticed");
        let inputs = PlanInputs {
            share: 50,
            root_fs_bytes: Some(1),
            p3_fstype: None,
        };
        let p = plan(&info, &inputs).unwrap();
        assert!(p.needs_write);
        assert!(
            p.changes.iter().any(|c| c.contains("backup")),
            "{:?}",
            p.changes
        );
        write_table(&mut f, TableKind::Gpt, &p).unwrap();
        let after = read_table(&mut f).unwrap();
        assert!(after.gpt_geometry_ok);
        assert!(!plan(&after, &inputs).unwrap().needs_write);
        // sfdisk, which the project did not write, finds no problem with the backup.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut copy = tmp.reopen().unwrap();
        copy.set_len(total * SECTOR).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        std::io::copy(&mut (&mut f).take(64 * SECTOR), &mut copy).unwrap();
        f.seek(SeekFrom::Start((total - 33) * SECTOR)).unwrap();
        copy.seek(SeekFrom::Start((total - 33) * SECTOR)).unwrap();
        std::io::copy(&mut (&mut f).take(33 * SECTOR), &mut copy).unwrap();
        copy.sync_all().unwrap();
        if let Ok(out) = std::process::Command::new("sfdisk")
            .args(["--verify"])
            .arg(tmp.path())
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "sfdisk --verify: {text}");
            assert!(
                !text.to_lowercase().contains("backup"),
                "sfdisk --verify: {text}"
            );
        }

        // An older image's backup (another disk GUID) in the last sector counts as missing too.
        let mut stale = card(total);
        stale.seek(SeekFrom::Start(0)).unwrap();
        stale.write_all(&head).unwrap();
        let mut full = full_gpt(100);
        let mut tail = vec![0u8; (33 * SECTOR) as usize];
        full.seek(SeekFrom::Start((total - 33) * SECTOR)).unwrap();
        full.read_exact(&mut tail).unwrap();
        stale.seek(SeekFrom::Start((total - 33) * SECTOR)).unwrap();
        stale.write_all(&tail).unwrap();
        assert!(!read_table(&mut stale).unwrap().gpt_geometry_ok);
    }

    /// A typed MBR entry of 0 sectors at sector 0 is an error, not a panic inside mbrman 0.6.1 (its alignment
    /// guess unwraps on a partition at sector 0) nor an arithmetic underflow; GPT entries ending before they
    /// start are refused the same way. Found with the `partition_table` fuzz target's input shape.
    #[test]
    fn corrupt_entries_are_errors() {
        let mut f = card(64 * MIB);
        let mut sector0 = [0u8; 512];
        sector0[510] = 0x55;
        sector0[511] = 0xaa;
        sector0[446 + 4] = 0x83; // typed entry 1, start 0, 0 sectors
        f.write_all(&sector0).unwrap();
        assert!(matches!(read_table(&mut f), Err(TableError::Unexpected(_))));
    }

    #[test]
    fn table_for_bigger_card_is_fixed() {
        // Laid out for 16 GiB, flashed on 8 GiB: p3 runs past the end.
        let total = 8 * GIB;
        let mut f = card(total);
        make_mbr(
            &mut f,
            &[
                (8192, 1048576),
                (1056768, 8 * GIB - 1056768),
                (8 * GIB, 8 * GIB),
            ],
        );
        let info = read_table(&mut f).unwrap();
        let inputs = PlanInputs {
            share: 50,
            root_fs_bytes: Some(1200 * MIB * SECTOR),
            p3_fstype: None,
        };
        let p = plan(&info, &inputs).unwrap();
        assert_eq!((p.brick.start, p.brick.end), (4 * GIB, total - 1));
        assert_eq!(p.root.end, 4 * GIB - 1);

        // The same with a filesystem on p3: refused, never cut.
        let err = plan(
            &info,
            &PlanInputs {
                p3_fstype: Some("xfs".into()),
                ..inputs.clone()
            },
        )
        .unwrap_err();
        assert!(matches!(err, TableError::FilesystemPastEnd { .. }), "{err}");

        // A root filesystem already grown over the whole old p2: refused.
        let err = plan(
            &info,
            &PlanInputs {
                root_fs_bytes: Some((8 * GIB - 1056768) * SECTOR),
                ..inputs
            },
        )
        .unwrap_err();
        assert!(matches!(err, TableError::RootWouldShrink { .. }), "{err}");
    }

    #[test]
    fn placeholder_p3_is_moved_and_type_kept() {
        // A 1 MiB placeholder right after root (an image made without knowing the card).
        let total = 8 * GIB + 12345; // an odd size
        let mut f = card(total);
        make_mbr(
            &mut f,
            &[
                (8192, 1048576),
                (1056768, 1200 * MIB),
                (1056768 + 1200 * MIB, MIB),
            ],
        );
        let info = read_table(&mut f).unwrap();
        let inputs = PlanInputs {
            share: 50,
            root_fs_bytes: Some(1200 * MIB * SECTOR),
            p3_fstype: None,
        };
        let p = plan(&info, &inputs).unwrap();
        assert_eq!(p.brick.end, total - 1);
        assert_eq!(p.brick.start % 8192, 0);
        assert!(p.changes.iter().any(|c| c.starts_with("partition 3: ")));
        write_table(&mut f, TableKind::Mbr, &p).unwrap();
        let after = read_table(&mut f).unwrap();
        assert_eq!(after.part(3).unwrap(), p.brick);
        assert!(!plan(&after, &inputs).unwrap().needs_write);
    }

    #[test]
    fn existing_filesystem_on_p3_is_kept_in_place() {
        let total = 8 * GIB;
        let mut f = card(total);
        make_mbr(
            &mut f,
            &[(8192, 1048576), (1056768, 1200 * MIB), (5 * GIB, 2 * GIB)],
        );
        let info = read_table(&mut f).unwrap();
        let p = plan(
            &info,
            &PlanInputs {
                share: 50,
                root_fs_bytes: Some(1),
                p3_fstype: Some("xfs".into()),
            },
        )
        .unwrap();
        assert_eq!((p.brick.start, p.brick.end), (5 * GIB, 7 * GIB - 1));
        assert_eq!(p.root.end, 5 * GIB - 1);
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn unexpected_tables_refused() {
        let mut f = card(8 * GIB);
        make_mbr(&mut f, &[(8192, 1048576)]);
        let info = read_table(&mut f).unwrap();
        let err = plan(
            &info,
            &PlanInputs {
                share: 50,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("partition 2"), "{err}");

        let mut f = card(8 * GIB);
        make_mbr(
            &mut f,
            &[
                (8192, 1048576),
                (1056768, 1000),
                (2 * GIB, 1000),
                (3 * GIB, 1000),
            ],
        );
        let info = read_table(&mut f).unwrap();
        let err = plan(
            &info,
            &PlanInputs {
                share: 50,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("partition 4"), "{err}");
    }

    #[test]
    fn chs_clamps() {
        let c = chs(100 * GIB);
        assert_eq!((c.cylinder, c.head, c.sector), (1023, 254, 63));
        let c = chs(0);
        assert_eq!((c.cylinder, c.head, c.sector), (0, 0, 1));
    }
}
