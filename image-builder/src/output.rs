//! The last pass over the finished raw image: one read of its data ranges that feeds the compressor (zeros for
//! holes), the SHA-256 of the output file and the per-range checksums of the bmap.
//!
//! Each byte is hashed once per checksum that covers it: the bmap's range checksums here, the output's SHA-256
//! either over the compressed bytes (a [`HashingWriter`] under the encoder) or, for a raw output, on a thread of
//! its own ([`BackgroundSha256`], started by the caller as soon as the image is final) that reads only the data
//! ranges and hashes holes from a static zero buffer.

use crate::bmap::{self, BlockRange};
use crate::error::{IoContext, Result};
use crate::io::{self, BackgroundSha256, Encoder, HashingWriter, OutputFormat};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// What the output pass produced.
#[derive(Debug)]
pub struct Written {
    /// Hex SHA-256 of the output file's bytes.
    pub sha256: String,
    /// Size of the output file in bytes.
    pub file_size: u64,
    /// The bmap's block ranges with their checksums.
    pub ranges: Vec<BlockRange>,
}

static ZEROS: [u8; 1 << 16] = [0u8; 1 << 16];

enum Sink<'a> {
    /// Raw output: the raw file is the output; nothing to write (its hash runs on another thread).
    Raw,
    /// Compressed output into `dest`.
    Encoded(Box<Encoder<HashingWriter<std::io::BufWriter<&'a mut File>>>>),
}

impl Sink<'_> {
    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Raw => Ok(()),
            Sink::Encoded(e) => e.write_all(data),
        }
    }

    fn zeros(&mut self, mut n: u64) -> std::io::Result<()> {
        if matches!(self, Sink::Raw) {
            return Ok(());
        }
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.put(&ZEROS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

/// Reads `raw` (of `image_size` bytes) once: hashes each mapped block range for the bmap and either hashes the
/// content (raw output: `dest` is `None`, the raw file is the output) or compresses it into `dest`. The bmap maps
/// the file's data ranges plus `used` (filesystem areas that must be written even where they are zeros).
/// For a raw output, `whole` is the output's SHA-256 already running (started on the final file); when `None`
/// it is computed here after the range checksums. `level` is the compression level (`None`: the format's default).
#[allow(clippy::too_many_arguments)]
pub fn write_output(
    raw: &File,
    image_size: u64,
    format: OutputFormat,
    dest: Option<&mut File>,
    used: &[io::DataRange],
    progress: bool,
    whole: Option<BackgroundSha256>,
    level: Option<u32>,
) -> Result<Written> {
    let data = io::data_ranges(raw).ctx(|| "cannot map the image's data ranges")?;
    let data = crate::fsmap::union(&[&data, used]);
    let spans = bmap::block_ranges(&data, image_size);
    let bar = io::progress_bar(image_size, "write", progress);
    let mut sink = match (format, dest) {
        (OutputFormat::Raw, _) | (_, None) => Sink::Raw,
        (f, Some(d)) => Sink::Encoded(Box::new(
            io::encoder(
                HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, d)),
                f,
                level,
            )
            .ctx(|| "cannot start the compressor")?,
        )),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut ranges = Vec::with_capacity(spans.len());
    let werr = || "cannot write the output image";
    for (first, last) in spans {
        let (start, end) = (
            first * bmap::BLOCK,
            ((last + 1) * bmap::BLOCK).min(image_size),
        );
        sink.zeros(start - pos).ctx(werr)?;
        bar.inc(start - pos);
        let mut h = Sha256::new();
        let mut p = start;
        while p < end {
            let want = ((end - p) as usize).min(buf.len());
            raw.read_exact_at(&mut buf[..want], p)
                .ctx(|| "cannot read the raw image")?;
            h.update(&buf[..want]);
            sink.put(&buf[..want]).ctx(werr)?;
            p += want as u64;
            bar.inc(want as u64);
        }
        ranges.push(BlockRange {
            first,
            last,
            sha256: hex::encode(h.finalize()),
        });
        pos = end;
    }
    sink.zeros(image_size - pos).ctx(werr)?;
    bar.finish_and_clear();
    let (sha256, file_size) = match sink {
        Sink::Raw => {
            let sum = match whole {
                Some(w) => w.finish(),
                None => io::file_sha256(raw, image_size),
            }
            .ctx(|| "cannot hash the output image")?;
            (sum, image_size)
        }
        Sink::Encoded(e) => {
            let hw = e.finish().ctx(werr)?;
            let n = hw.written();
            let (mut w, sum) = hw.finish();
            w.flush().ctx(werr)?;
            (sum, n)
        }
    };
    Ok(Written {
        sha256,
        file_size,
        ranges,
    })
}
