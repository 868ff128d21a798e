//! Compression formats: the input's is recognised by magic bytes (never by name), the output's is chosen by the
//! output path's extension. xz and zstd run multi-threaded.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes of memory the xz encoder and decoder may use for their threads, as liblzma estimates it (an upper
/// bound: two preset-6 encoder threads with 8 MiB blocks are estimated at 235 MiB and stay well under 256 MiB of
/// real peak RSS).
pub const XZ_MEMLIMIT: u64 = 240 * 1024 * 1024;
/// The xz preset (the same as `xz`'s default, 6).
pub const XZ_PRESET: u32 = 6;
/// The zstd level (zstd's default).
pub const ZSTD_LEVEL: i32 = 3;

/// The format of an input file, recognised from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// No known compression magic: read as a raw disk image.
    Raw,
    /// xz (`FD 37 7A 58 5A 00`).
    Xz,
    /// gzip (`1F 8B`), possibly several members.
    Gzip,
    /// zstd (`28 B5 2F FD`).
    Zstd,
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputFormat::Raw => "raw",
            InputFormat::Xz => "xz",
            InputFormat::Gzip => "gzip",
            InputFormat::Zstd => "zstd",
        })
    }
}

/// Formats recognised only to say clearly that they are not supported.
fn unsupported_magic(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"BZh") {
        Some("bzip2")
    } else if head.starts_with(b"PK\x03\x04") {
        Some("zip")
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Some("lz4")
    } else {
        None
    }
}

/// Reads the first bytes of `file` (then rewinds it) and names its format.
pub fn sniff(file: &mut File) -> io::Result<InputFormat> {
    let mut head = [0u8; 8];
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < head.len() {
        let r = file.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    file.seek(SeekFrom::Start(0))?;
    let head = &head[..n];
    if let Some(name) = unsupported_magic(head) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{name} compression is not supported: decompress it first, or use xz, gzip or zstd"
            ),
        ));
    }
    Ok(if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        InputFormat::Xz
    } else if head.starts_with(&[0x1f, 0x8b]) {
        InputFormat::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        InputFormat::Zstd
    } else {
        InputFormat::Raw
    })
}

/// Threads for the compressors: the machine's parallelism, at most 4.
pub fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
}

/// A reader that yields the decompressed bytes of `input` in `format`.
pub fn decoder<'a, R: Read + Send + 'a>(
    input: R,
    format: InputFormat,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match format {
        InputFormat::Raw => Box::new(input),
        InputFormat::Xz => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads())
                .memlimit_threading(XZ_MEMLIMIT)
                .memlimit_stop(u64::MAX)
                .decoder()
                .map_err(io::Error::other)?;
            Box::new(liblzma::read::XzDecoder::new_stream(
                io::BufReader::with_capacity(1 << 20, input),
                stream,
            ))
        }
        InputFormat::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 20, input),
        )),
        InputFormat::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
    })
}

/// The format of an output file, from the extension of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `.img`: a raw, sparse disk image.
    Raw,
    /// `.img.xz`, multi-threaded.
    Xz,
    /// `.img.gz`.
    Gzip,
    /// `.img.zst`, multi-threaded.
    Zstd,
}

impl OutputFormat {
    /// The format named by `path`'s extension, or `None` when it is not one of `.img`, `.img.xz`, `.img.gz`,
    /// `.img.zst`.
    pub fn from_path(path: &Path) -> Option<OutputFormat> {
        let name = path.file_name()?.to_str()?;
        [
            (".img", OutputFormat::Raw),
            (".img.xz", OutputFormat::Xz),
            (".img.gz", OutputFormat::Gzip),
            (".img.zst", OutputFormat::Zstd),
        ]
        .into_iter()
        .find(|(ext, _)| name.len() > ext.len() && name.ends_with(ext))
        .map(|(_, f)| f)
    }

    /// The compression levels this format accepts (`None` for raw).
    pub fn level_range(self) -> Option<std::ops::RangeInclusive<u32>> {
        match self {
            OutputFormat::Raw => None,
            OutputFormat::Xz => Some(0..=9),
            OutputFormat::Gzip => Some(1..=9),
            OutputFormat::Zstd => Some(1..=19),
        }
    }

    /// The path of the raw image this file decompresses to (the compression suffix removed): `x.img.xz` -> `x.img`.
    pub fn raw_name(path: &Path) -> std::path::PathBuf {
        let s = path.to_string_lossy();
        for ext in [".xz", ".gz", ".zst"] {
            if let Some(stem) = s.strip_suffix(ext) {
                return stem.into();
            }
        }
        path.to_path_buf()
    }
}

/// A compressing writer that must be finished to complete its output.
pub enum Encoder<W: Write> {
    /// No compression.
    Raw(W),
    /// Multi-threaded xz.
    Xz(liblzma::write::XzEncoder<W>),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// Multi-threaded zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A compressing writer for `format` over `out` at `level` (`None`: the format's default; see
/// [`OutputFormat::level_range`]).
pub fn encoder<W: Write>(
    out: W,
    format: OutputFormat,
    level: Option<u32>,
) -> io::Result<Encoder<W>> {
    Ok(match format {
        OutputFormat::Raw => Encoder::Raw(out),
        OutputFormat::Xz => {
            let mut builder = liblzma::stream::MtStreamBuilder::new();
            builder
                .preset(level.unwrap_or(XZ_PRESET))
                .check(liblzma::stream::Check::Crc64);
            // All threads (as `xz -T2` uses) within the memory limit: smaller blocks first (liblzma's default is
            // 3 x the dictionary, 24 MiB at preset 6; the estimate counts two block buffers per thread), fewer
            // threads only when even dictionary-sized blocks do not fit.
            let mut t = threads();
            'fit: loop {
                builder.threads(t);
                for block in [0u64, 16 << 20, 8 << 20] {
                    builder.block_size(block);
                    if builder.memusage() <= XZ_MEMLIMIT {
                        break 'fit;
                    }
                }
                if t == 1 {
                    break;
                }
                t -= 1;
            }
            let stream = builder.encoder().map_err(io::Error::other)?;
            Encoder::Xz(liblzma::write::XzEncoder::new_stream(out, stream))
        }
        OutputFormat::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
            out,
            level.map_or(flate2::Compression::default(), flate2::Compression::new),
        )),
        OutputFormat::Zstd => {
            let mut e =
                zstd::stream::write::Encoder::new(out, level.map_or(ZSTD_LEVEL, |l| l as i32))?;
            e.multithread(threads())?;
            e.include_checksum(true)?;
            Encoder::Zstd(e)
        }
    })
}

impl<W: Write> Encoder<W> {
    /// Flushes the compressor's last block and trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Raw(w) => Ok(w),
            Encoder::Xz(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Raw(w) => w.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Raw(w) => w.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_from_extension() {
        let f = |p: &str| OutputFormat::from_path(Path::new(p));
        assert_eq!(f("a/cluster.img"), Some(OutputFormat::Raw));
        assert_eq!(f("cluster.img.xz"), Some(OutputFormat::Xz));
        assert_eq!(f("cluster.img.gz"), Some(OutputFormat::Gzip));
        assert_eq!(f("cluster.img.zst"), Some(OutputFormat::Zstd));
        assert_eq!(f("cluster.iso"), None);
        assert_eq!(f(".img"), None);
        assert_eq!(
            OutputFormat::raw_name(Path::new("x/c.img.xz")),
            Path::new("x/c.img")
        );
    }

    #[test]
    fn round_trip_every_format() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for (of, inf) in [
            (OutputFormat::Raw, InputFormat::Raw),
            (OutputFormat::Xz, InputFormat::Xz),
            (OutputFormat::Gzip, InputFormat::Gzip),
            (OutputFormat::Zstd, InputFormat::Zstd),
        ] {
            let mut file = tempfile::tempfile().unwrap();
            let mut e = encoder(&mut file, of, None).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap();
            assert_eq!(sniff(&mut file).unwrap(), inf, "{of:?}");
            let mut back = Vec::new();
            decoder(&mut file, inf)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "{of:?}");
        }
    }
}
