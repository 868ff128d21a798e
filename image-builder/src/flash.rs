//! `flash`: writes an image's mapped blocks (from its bmap) to a card and verifies them by reading them back.

use crate::blockdev::{self, BlockDevice};
use crate::bmap::{self, Bmap};
use crate::build::bmap_path;
use crate::cmdline::FlashArgs;
use crate::error::{invalid, Error, IoContext, Result};
use crate::io::{self, sparse::read_full};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What `flash` did.
#[derive(Debug, Serialize)]
pub struct FlashSummary {
    /// The image written.
    pub image: PathBuf,
    /// The device written.
    pub device: PathBuf,
    /// The bmap used.
    pub bmap: PathBuf,
    /// Bytes written (mapped blocks only).
    pub written_bytes: u64,
    /// Size of the image.
    pub image_size: u64,
    /// Whether every range read back matched its checksum.
    pub verified: bool,
    /// Seconds taken.
    pub seconds: f64,
}

/// The bmap of `image`: `given`, or `x.img.bmap` beside `x.img[.xz|.gz|.zst]`.
pub fn find_bmap(image: &Path, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let candidates = [
        bmap_path(image),
        PathBuf::from(format!("{}.bmap", image.display())),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::Invalid(format!(
            "no bmap file beside {} (looked for {}): give it with --bmap, or make one with `bmaptool create`",
            image.display(),
            candidates[0].display()
        ))
    })
}

/// Skips `n` bytes of a stream.
fn skip<R: Read + ?Sized>(r: &mut R, mut n: u64, buf: &mut [u8]) -> std::io::Result<()> {
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        let got = read_full(r, &mut buf[..k])?;
        if got < k {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "image ends before its bmap says",
            ));
        }
        n -= k as u64;
    }
    Ok(())
}

/// Writes `image` to `device` following `map`; then reads every range back and checks its SHA-256.
pub fn flash(
    image: &Path,
    device: &BlockDevice,
    map: &Bmap,
    bmap_file: &Path,
    progress: bool,
) -> Result<FlashSummary> {
    let started = std::time::Instant::now();
    let what = image.display().to_string();
    if map.image_size > device.size {
        return invalid(format!(
            "{} ({} bytes) is smaller than the image ({} bytes): use a larger card",
            device.path.display(),
            device.size,
            map.image_size
        ));
    }
    let mut f = std::fs::File::open(image).ctx(|| format!("cannot open {what}"))?;
    let format = io::sniff(&mut f).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    let mut stream = io::decoder(f, format).ctx(|| format!("cannot read {what}"))?;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(&device.path)
        .ctx(|| {
            format!(
                "cannot open {} exclusively (is it in use?)",
                device.path.display()
            )
        })?;
    let total: u64 = map
        .ranges
        .iter()
        .map(|r| {
            let (a, b) = r.bytes(map.block_size, map.image_size);
            b - a
        })
        .sum();
    let bar = io::progress_bar(total, "flash", progress);
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for r in &map.ranges {
        let (start, end) = r.bytes(map.block_size, map.image_size);
        if start < pos {
            return invalid(format!(
                "{}: ranges overlap or are not in order",
                bmap_file.display()
            ));
        }
        skip(&mut stream, start - pos, &mut buf)
            .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        let mut h = Sha256::new();
        let mut p = start;
        while p < end {
            let k = ((end - p) as usize).min(buf.len());
            let got = read_full(&mut stream, &mut buf[..k])
                .map_err(|e| Error::Invalid(format!("{what} does not decode: {e}")))?;
            if got < k {
                return invalid(format!(
                    "{what} ends at byte {} but its bmap maps blocks up to byte {end}",
                    p + got as u64
                ));
            }
            h.update(&buf[..k]);
            dev.write_all_at(&buf[..k], p)
                .ctx(|| format!("cannot write {}", device.path.display()))?;
            p += k as u64;
            bar.inc(k as u64);
        }
        if !r.sha256.is_empty() && hex::encode(h.finalize()) != r.sha256 {
            return invalid(format!(
                "{what} does not match its bmap {} (blocks {}-{}): the image or the bmap is damaged; the card is \
                 only partly written",
                bmap_file.display(), r.first, r.last
            ));
        }
        pos = end;
    }
    dev.sync_all()
        .ctx(|| format!("cannot sync {}", device.path.display()))?;
    bar.finish_and_clear();
    // Verify: drop cached pages, read every range back from the device.
    blockdev::flush_buffers(&dev)?;
    let vbar = io::progress_bar(total, "verify", progress);
    for r in &map.ranges {
        let (start, end) = r.bytes(map.block_size, map.image_size);
        let mut h = Sha256::new();
        let mut p = start;
        while p < end {
            let k = ((end - p) as usize).min(buf.len());
            dev.read_exact_at(&mut buf[..k], p)
                .ctx(|| format!("cannot read back {}", device.path.display()))?;
            h.update(&buf[..k]);
            p += k as u64;
            vbar.inc(k as u64);
        }
        if !r.sha256.is_empty() && hex::encode(h.finalize()) != r.sha256 {
            return invalid(format!(
                "verification failed: blocks {}-{} read back from {} differ from the image: the card may be faulty",
                r.first, r.last, device.path.display()
            ));
        }
    }
    vbar.finish_and_clear();
    Ok(FlashSummary {
        image: image.to_path_buf(),
        device: device.path.clone(),
        bmap: bmap_file.to_path_buf(),
        written_bytes: total,
        image_size: map.image_size,
        verified: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `image-builder flash IMAGE DEVICE [--yes]`.
pub fn run(args: &FlashArgs) -> anyhow::Result<()> {
    let bmap_file = find_bmap(&args.image, args.bmap.as_deref())?;
    let text = std::fs::read_to_string(&bmap_file)
        .ctx(|| format!("cannot read {}", bmap_file.display()))?;
    let map = bmap::parse(&text, &bmap_file.display().to_string())?;
    let device = BlockDevice::open(&args.device)?;
    device.check_unused()?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "flash overwrites {}: pass --yes to confirm (no terminal to ask on)",
                device.describe()
            );
        }
        eprint!(
            "Overwrite {} with {}? Everything on it is lost. Type yes: ",
            device.describe(),
            args.image.display()
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            anyhow::bail!("not confirmed: nothing written");
        }
    }
    let s = flash(&args.image, &device, &map, &bmap_file, !args.json)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "wrote {} of {} to {} and verified it in {:.1} s",
            crate::size::human(s.written_bytes),
            s.image.display(),
            s.device.display(),
            s.seconds
        );
    }
    Ok(())
}
