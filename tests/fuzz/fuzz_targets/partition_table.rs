//! Partition tables of untrusted images: the builder's reader (`image::read_table`, then the Raspberry Pi OS
//! check) and the agent's (`disk::table::read_table`, then the brick plan) on arbitrary bytes. With the first
//! byte odd, the GPT header's and entry array's CRC32s are fixed up first, so the parsers get past the checksums.
#![no_main]

use firstboot_agent::disk::table;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

const SECTOR: usize = 512;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(d[i..i + 4].try_into().unwrap())
}

/// Makes the GPT header at LBA 1 (if any) carry correct CRC32s.
fn fix_gpt_crcs(d: &mut [u8]) {
    let h = SECTOR;
    if d.len() < h + 92 || &d[h..h + 8] != b"EFI PART" {
        return;
    }
    let entry_lba = u64::from_le_bytes(d[h + 72..h + 80].try_into().unwrap()) as usize;
    let count = u32_at(d, h + 80) as usize;
    let size = u32_at(d, h + 84) as usize;
    let start = entry_lba.saturating_mul(SECTOR);
    let len = count.saturating_mul(size);
    if let Some(end) = start.checked_add(len) {
        if end <= d.len() {
            let c = crc32(&d[start..end]);
            d[h + 88..h + 92].copy_from_slice(&c.to_le_bytes());
        }
    }
    d[h + 16..h + 20].fill(0);
    let c = crc32(&d[h..h + 92]);
    d[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut d = rest.to_vec();
    if flags & 1 == 1 {
        fix_gpt_crcs(&mut d);
    }
    // The builder.
    if let Ok(t) = image_builder::image::read_table(&mut Cursor::new(&d), "fuzz input") {
        for p in &t.partitions {
            assert!(
                p.start <= p.end,
                "partition {} ends before it starts",
                p.number
            );
        }
        let _ = image_builder::image::check_raspios_table(&t, d.len() as u64, "fuzz input");
    }
    // The agent (it wants whole sectors: pad like a card).
    d.resize(d.len().div_ceil(SECTOR).max(1) * SECTOR, 0);
    if let Ok(info) = table::read_table(&mut Cursor::new(&d)) {
        let share = (flags >> 1) % 100;
        let inputs = table::PlanInputs {
            share: share.max(1),
            root_fs_bytes: Some(u64::from(flags) << 20),
            p3_fstype: (flags & 0x80 != 0).then(|| "xfs".to_string()),
        };
        if let Ok(plan) = table::plan(&info, &inputs) {
            if plan.needs_write {
                let mut dev = Cursor::new(d.clone());
                let _ = table::write_table(&mut dev, info.kind, &plan);
            }
        }
    }
});
