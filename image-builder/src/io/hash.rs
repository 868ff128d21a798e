//! SHA-256 of everything that passes through a reader or writer.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// A writer that hashes every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Returns the inner writer and the hex SHA-256 of what was written.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The hex SHA-256 of what was read.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hex SHA-256 of a byte slice.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Zeros fed to the hash for holes (read-only, shared).
static ZEROS: [u8; 1 << 20] = [0u8; 1 << 20];

/// Feeds `n` zero bytes to `hasher` without reading anything.
pub fn hash_zeros(hasher: &mut Sha256, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Hex SHA-256 of the first `len` bytes of `file` (zeros beyond its end). Only the file's data ranges are read;
/// holes are hashed from a static zero buffer, so a sparse file costs one read of its data.
pub fn file_sha256(file: &std::fs::File, len: u64) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for r in super::data_ranges(file)? {
        let (start, end) = (r.start.min(len), r.end.min(len));
        if end <= start {
            continue;
        }
        hash_zeros(&mut hasher, start - pos);
        let mut p = start;
        while p < end {
            let want = ((end - p) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..want], p)?;
            hasher.update(&buf[..want]);
            p += want as u64;
        }
        pos = end;
    }
    hash_zeros(&mut hasher, len - pos);
    Ok(hex::encode(hasher.finalize()))
}

/// A [`file_sha256`] running on its own thread (on a duplicate of the file's descriptor), so that hashing a raw
/// output overlaps the rest of the output pass.
pub struct BackgroundSha256(std::thread::JoinHandle<io::Result<String>>);

impl BackgroundSha256 {
    /// Starts hashing the first `len` bytes of `file`. The file must not change any more.
    pub fn start(file: &std::fs::File, len: u64) -> io::Result<Self> {
        let f = file.try_clone()?;
        let handle = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || file_sha256(&f, len))?;
        Ok(BackgroundSha256(handle))
    }

    /// Waits for the hex SHA-256.
    pub fn finish(self) -> io::Result<String> {
        self.0
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// The sparse-aware hash equals `sha256sum` of the file, holes, trailing zeros past the end and all.
    #[test]
    fn file_sha256_matches_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse.img");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .unwrap();
        f.set_len(9 << 20).unwrap();
        f.write_all_at(&[7u8; 5000], 4096 * 3 + 17).unwrap();
        f.write_all_at(&[0u8; 8192], 1 << 20).unwrap();
        f.write_all_at(b"end", (9 << 20) - 3).unwrap();
        let out = std::process::Command::new("sha256sum")
            .arg(&p)
            .output()
            .unwrap();
        let want = String::from_utf8(out.stdout).unwrap()[..64].to_string();
        assert_eq!(file_sha256(&f, 9 << 20).unwrap(), want);
        assert_eq!(
            BackgroundSha256::start(&f, 9 << 20)
                .unwrap()
                .finish()
                .unwrap(),
            want
        );
        // Shorter than the file: only the prefix.
        let all = std::fs::read(&p).unwrap();
        assert_eq!(
            file_sha256(&f, 4096 * 4).unwrap(),
            sha256_hex(&all[..4096 * 4])
        );
    }
}
