//! Partition arithmetic shared by the builder (`--card-size`) and the agent (`prepare-disk` on the real card):
//! where the brick partition (partition 3) starts and ends and where the root partition (partition 2) ends.
//!
//! All figures are in 512-byte sectors. End sectors are inclusive, as `sfdisk` prints them.

/// Bytes per sector everywhere in this project (SD cards and Raspberry Pi OS images use 512).
pub const SECTOR: u64 = 512;
/// MBR sector fields are 32 bits: nothing past this sector count is addressable.
pub const MBR_MAX_SECTORS: u64 = 1 << 32;
/// Sectors the GPT backup header and a 128-entry backup partition array take at the end of the disk.
pub const GPT_BACKUP_SECTORS: u64 = 33;

/// Which kind of partition table the card carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// DOS/MBR, what Raspberry Pi OS ships; every Pi boots it.
    Mbr,
    /// GUID partition table; Pi 4 and 5 only.
    Gpt,
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TableKind::Mbr => "mbr",
            TableKind::Gpt => "gpt",
        })
    }
}

/// Why a layout cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The share is not a percentage the product allows.
    #[error("brick share {0}% is outside 1..=99")]
    BadShare(u8),
    /// The alignment is zero.
    #[error("partition alignment must be at least one sector")]
    BadAlignment,
    /// Root partition plus brick do not fit.
    #[error(
        "the card ({card_bytes} bytes) is too small: the root partition starts at sector {root_start} and needs \
         at least {min_root_sectors} sectors before a brick of {share}% could start (brick would start at {brick_start})"
    )]
    CardTooSmall {
        /// Card size in bytes.
        card_bytes: u64,
        /// First sector of partition 2.
        root_start: u64,
        /// The smallest root partition accepted, in sectors.
        min_root_sectors: u64,
        /// The share asked for.
        share: u8,
        /// Where the brick would have started.
        brick_start: u64,
    },
}

/// The computed layout of partitions 2 and 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrickLayout {
    /// First sector of partition 2 (unchanged from the image).
    pub root_start: u64,
    /// Last sector of partition 2 (inclusive): the sector before the brick.
    pub root_end: u64,
    /// First sector of partition 3, aligned down to the image's alignment.
    pub brick_start: u64,
    /// Last sector of partition 3 (inclusive): the last usable sector of the card.
    pub brick_end: u64,
}

impl BrickLayout {
    /// Number of sectors in partition 2.
    pub fn root_sectors(&self) -> u64 {
        self.root_end - self.root_start + 1
    }
    /// Number of sectors in partition 3.
    pub fn brick_sectors(&self) -> u64 {
        self.brick_end - self.brick_start + 1
    }
}

/// The last sector a partition may use on a disk of `total_sectors` with table `kind`.
///
/// MBR: the last sector of the disk, capped at the 32-bit limit (2 TiB with 512-byte sectors).
/// GPT: the sector before the backup partition array.
pub fn last_usable_sector(total_sectors: u64, kind: TableKind) -> u64 {
    match kind {
        TableKind::Mbr => total_sectors.min(MBR_MAX_SECTORS) - 1,
        TableKind::Gpt => total_sectors - GPT_BACKUP_SECTORS - 1,
    }
}

/// The alignment the image itself uses: the largest power of two (up to 8 MiB, at least 1 MiB) dividing every
/// given partition start. Raspberry Pi OS uses 4 MiB (starts 8192, 1056768) or 8 MiB (16384, 1064960).
pub fn detect_alignment(starts: &[u64]) -> u64 {
    const MAX: u64 = 8 * 1024 * 1024 / SECTOR;
    const MIN: u64 = 1024 * 1024 / SECTOR;
    let mut align = MAX;
    while align > MIN && starts.iter().any(|s| s % align != 0) {
        align /= 2;
    }
    align
}

/// Rounds `sector` down to a multiple of `align`.
pub fn align_down(sector: u64, align: u64) -> u64 {
    sector - sector % align
}

/// Smallest root partition (in sectors) the layout accepts: 1 GiB, enough for Raspberry Pi OS Lite to boot.
pub const MIN_ROOT_SECTORS: u64 = 1024 * 1024 * 1024 / SECTOR;

/// Lays out the brick as the last `share` percent of a card of `total_sectors`.
///
/// The brick's size is `share`% of the usable card (for MBR, of the first 2 TiB); its start is aligned down to
/// `align`, its end is the last usable sector, and partition 2 grows (or shrinks) to end right before it.
/// `min_root_sectors` guards against a card too small for the root filesystem.
pub fn brick_layout(
    total_sectors: u64,
    kind: TableKind,
    align: u64,
    root_start: u64,
    share: u8,
    min_root_sectors: u64,
) -> Result<BrickLayout, LayoutError> {
    if !(1..=99).contains(&share) {
        return Err(LayoutError::BadShare(share));
    }
    if align == 0 {
        return Err(LayoutError::BadAlignment);
    }
    let too_small = |brick_start| LayoutError::CardTooSmall {
        card_bytes: total_sectors * SECTOR,
        root_start,
        min_root_sectors,
        share,
        brick_start,
    };
    if total_sectors <= root_start + GPT_BACKUP_SECTORS + 1 {
        return Err(too_small(0));
    }
    let last = last_usable_sector(total_sectors, kind);
    let usable = last + 1;
    // u128 keeps share * sectors exact for any disk size.
    let brick_size = (usable as u128 * share as u128 / 100) as u64;
    let brick_start = align_down(usable - brick_size, align);
    if brick_start < root_start + min_root_sectors {
        return Err(too_small(brick_start));
    }
    Ok(BrickLayout {
        root_start,
        root_end: brick_start - 1,
        brick_start,
        brick_end: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024 / SECTOR;

    #[test]
    fn alignment_of_raspios_generations() {
        assert_eq!(detect_alignment(&[8192, 1056768]), 8192);
        assert_eq!(detect_alignment(&[16384, 1064960]), 16384);
        assert_eq!(detect_alignment(&[2048, 526336]), 2048);
    }

    #[test]
    fn half_of_8gib_mbr_4mib() {
        let total = 8 * GIB;
        let l = brick_layout(total, TableKind::Mbr, 8192, 1056768, 50, MIN_ROOT_SECTORS).unwrap();
        assert_eq!(l.brick_end, total - 1);
        assert_eq!(l.brick_start, 4 * GIB); // exactly half, already aligned
        assert_eq!(l.root_end, 4 * GIB - 1);
        assert_eq!(l.brick_start % 8192, 0);
    }

    #[test]
    fn gpt_reserves_backup_and_aligns_down() {
        let total = 8 * GIB;
        let l = brick_layout(total, TableKind::Gpt, 16384, 1064960, 50, MIN_ROOT_SECTORS).unwrap();
        assert_eq!(l.brick_end, total - 34);
        // usable = total - 33; half of it is not aligned, so the start moves down: the brick gets a little more.
        assert_eq!(l.brick_start % 16384, 0);
        assert!(l.brick_sectors() >= (total - 33) / 2);
        assert!(l.brick_sectors() < (total - 33) / 2 + 16384);
    }

    #[test]
    fn odd_card_size() {
        // A "16 GB" card that is really 15,931,539,456 bytes (not a multiple of any alignment).
        let total = 15_931_539_456 / SECTOR;
        let l = brick_layout(total, TableKind::Mbr, 8192, 1056768, 50, MIN_ROOT_SECTORS).unwrap();
        assert_eq!(l.brick_end, total - 1);
        assert_eq!(l.brick_start % 8192, 0);
        assert_eq!(l.root_end + 1, l.brick_start);
        assert!(l.brick_sectors() * 100 >= total * 50);
    }

    #[test]
    fn mbr_caps_at_2tib() {
        let total = 4 * 1024 * GIB; // 4 TiB card
        let l = brick_layout(total, TableKind::Mbr, 8192, 1056768, 50, MIN_ROOT_SECTORS).unwrap();
        assert_eq!(l.brick_end, MBR_MAX_SECTORS - 1);
        assert_eq!(l.brick_start, MBR_MAX_SECTORS / 2);
        let g = brick_layout(total, TableKind::Gpt, 8192, 1056768, 50, MIN_ROOT_SECTORS).unwrap();
        assert_eq!(g.brick_end, total - 34);
    }

    #[test]
    fn too_small_and_bad_share() {
        assert!(matches!(
            brick_layout(2 * GIB, TableKind::Mbr, 8192, 1056768, 50, MIN_ROOT_SECTORS),
            Err(LayoutError::CardTooSmall { .. })
        ));
        assert_eq!(
            brick_layout(8 * GIB, TableKind::Mbr, 8192, 1056768, 0, MIN_ROOT_SECTORS),
            Err(LayoutError::BadShare(0))
        );
        assert_eq!(
            brick_layout(
                8 * GIB,
                TableKind::Mbr,
                8192,
                1056768,
                100,
                MIN_ROOT_SECTORS
            ),
            Err(LayoutError::BadShare(100))
        );
    }

    #[test]
    fn shares_1_and_99() {
        let total = 256 * GIB;
        let l1 = brick_layout(total, TableKind::Mbr, 8192, 1056768, 1, MIN_ROOT_SECTORS).unwrap();
        assert!(l1.brick_sectors() >= total / 100);
        let l99 = brick_layout(total, TableKind::Mbr, 8192, 1056768, 99, MIN_ROOT_SECTORS).unwrap();
        assert!(l99.root_sectors() >= MIN_ROOT_SECTORS);
    }
}
