//! Block maps (bmap format 2.0, as Debian's `bmaptool copy` reads them): which 4 KiB blocks of the raw image hold
//! data, with a SHA-256 per range, and the file's own checksum.

use crate::error::{invalid, Result};
use crate::io::DataRange;
use sha2::{Digest, Sha256};

/// Block size of the maps this builder writes.
pub const BLOCK: u64 = 4096;

/// A run of mapped blocks, inclusive, with the SHA-256 of its bytes (cut at the image's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRange {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// Hex SHA-256 of the range's bytes.
    pub sha256: String,
}

impl BlockRange {
    /// Byte range `[start, end)` of this block range in an image of `image_size` bytes.
    pub fn bytes(&self, block: u64, image_size: u64) -> (u64, u64) {
        (
            self.first * block,
            ((self.last + 1) * block).min(image_size),
        )
    }
}

/// Turns data ranges into merged block ranges `(first, last)` of `BLOCK`-sized blocks.
pub fn block_ranges(ranges: &[DataRange], image_size: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in ranges {
        let end = r.end.min(image_size);
        if end <= r.start {
            continue;
        }
        let first = r.start / BLOCK;
        let last = (end - 1) / BLOCK;
        match out.last_mut() {
            Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

/// The bmap XML for an image of `image_size` bytes with `ranges` mapped.
pub fn render(image_size: u64, ranges: &[BlockRange]) -> String {
    let blocks = image_size.div_ceil(BLOCK);
    let mapped: u64 = ranges.iter().map(|r| r.last - r.first + 1).sum();
    let zeros = "0".repeat(64);
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" ?>\n");
    xml.push_str("<!-- Block map written by image-builder: blocks not listed read as zeros and need not be written. -->\n");
    xml.push_str("<bmap version=\"2.0\">\n");
    xml.push_str(&format!("    <ImageSize> {image_size} </ImageSize>\n"));
    xml.push_str(&format!("    <BlockSize> {BLOCK} </BlockSize>\n"));
    xml.push_str(&format!("    <BlocksCount> {blocks} </BlocksCount>\n"));
    xml.push_str(&format!(
        "    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n"
    ));
    xml.push_str("    <ChecksumType> sha256 </ChecksumType>\n");
    xml.push_str(&format!(
        "    <BmapFileChecksum> {zeros} </BmapFileChecksum>\n"
    ));
    xml.push_str("    <BlockMap>\n");
    for r in ranges {
        let span = if r.first == r.last {
            format!("{}", r.first)
        } else {
            format!("{}-{}", r.first, r.last)
        };
        xml.push_str(&format!(
            "        <Range chksum=\"{}\"> {span} </Range>\n",
            r.sha256
        ));
    }
    xml.push_str("    </BlockMap>\n</bmap>\n");
    // The file checksum is the SHA-256 of the file with the checksum field all zeros.
    let sum = hex::encode(Sha256::digest(xml.as_bytes()));
    xml.replacen(
        &format!("<BmapFileChecksum> {zeros} </BmapFileChecksum>"),
        &format!("<BmapFileChecksum> {sum} </BmapFileChecksum>"),
        1,
    )
}

/// A parsed block map.
#[derive(Debug, Clone)]
pub struct Bmap {
    /// Size of the raw image in bytes.
    pub image_size: u64,
    /// Block size in bytes.
    pub block_size: u64,
    /// Mapped ranges; `sha256` is empty where the file gives none.
    pub ranges: Vec<BlockRange>,
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = xml.find(&open)? + open.len();
    let b = xml[a..].find(&close)? + a;
    Some(xml[a..b].trim())
}

/// Parses a bmap file of version 2.x with SHA-256 checksums (what this builder and bmaptool 3.x write).
pub fn parse(xml: &str, what: &str) -> Result<Bmap> {
    let bad = |why: &str| invalid(format!("{what} is not a usable bmap file: {why}"));
    let unterminated = || {
        crate::error::Error::Invalid(format!(
            "{what} is not a usable bmap file: unterminated Range"
        ))
    };
    if !xml.contains("<bmap version=\"2.") {
        return bad(
            "only bmap format 2.x is supported (make one with bmaptool 3 or image-builder)",
        );
    }
    let num = |name: &str| -> Option<u64> { tag(xml, name)?.parse().ok() };
    let (Some(image_size), Some(block_size)) = (num("ImageSize"), num("BlockSize")) else {
        return bad("ImageSize or BlockSize missing");
    };
    if block_size == 0 {
        return bad("BlockSize is 0");
    }
    if tag(xml, "ChecksumType").is_some_and(|t| t != "sha256") {
        return bad("only sha256 checksums are supported");
    }
    let mut ranges = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<Range") {
        rest = &rest[i + 6..];
        let gt = rest.find('>').ok_or_else(unterminated)?;
        let attrs = &rest[..gt];
        let end = rest.find("</Range>").ok_or_else(unterminated)?;
        let span = rest[gt + 1..end].trim();
        let sha256 = attrs
            .split("chksum=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        let (a, b) = match span.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (span, span),
        };
        let (Ok(first), Ok(last)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            return bad(&format!("bad range {span:?}"));
        };
        if first > last || first * block_size >= image_size {
            return bad(&format!("range {span:?} is outside the image"));
        }
        ranges.push(BlockRange {
            first,
            last,
            sha256,
        });
        rest = &rest[end..];
    }
    Ok(Bmap {
        image_size,
        block_size,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_round_trip() {
        let r = block_ranges(
            &[
                DataRange {
                    start: 0,
                    end: 4096,
                },
                DataRange {
                    start: 4096,
                    end: 10000,
                },
                DataRange {
                    start: 65536,
                    end: 70000,
                },
            ],
            69000,
        );
        assert_eq!(r, vec![(0, 2), (16, 16)]);
        let ranges: Vec<BlockRange> = r
            .iter()
            .map(|&(first, last)| BlockRange {
                first,
                last,
                sha256: "ab".repeat(32),
            })
            .collect();
        let xml = render(69000, &ranges);
        let back = parse(&xml, "t").unwrap();
        assert_eq!(back.ranges, ranges);
        assert_eq!(back.image_size, 69000);
        // The checksum matches the file with the field zeroed.
        let sum = tag(&xml, "BmapFileChecksum").unwrap();
        let zeroed = xml.replace(sum, &"0".repeat(64));
        assert_eq!(hex::encode(Sha256::digest(zeroed.as_bytes())), sum);
    }
}
