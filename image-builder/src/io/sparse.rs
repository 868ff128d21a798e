//! Sparse files: copies that skip all-zero blocks with a seek (so a 64 GiB card costs no disk), and the data ranges
//! of a file found with `SEEK_DATA`/`SEEK_HOLE` (for the bmap and for reading only what holds data).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

/// Granularity of zero detection: a block of this many zero bytes is not written.
pub const ZERO_BLOCK: usize = 4096;
/// Size of the copy buffer.
pub const BUF: usize = 1 << 20;

/// A byte range `[start, end)` of a file that holds data (everything else reads as zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// True when every byte of `block` is zero.
pub fn is_zero(block: &[u8]) -> bool {
    let (pre, mid, post) = unsafe { block.align_to::<u64>() };
    pre.iter().all(|b| *b == 0)
        && post.iter().all(|b| *b == 0)
        && mid.iter().fold(0u64, |acc, w| acc | w) == 0
}

/// Writes `buf` at `offset` of `dst`, leaving out every aligned `ZERO_BLOCK` that is all zeros.
pub fn write_sparse_at(dst: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut i = 0usize;
    while i < buf.len() {
        // Blocks are aligned to absolute file offsets so holes line up with filesystem blocks.
        let abs = offset + i as u64;
        let block_end = ((abs / ZERO_BLOCK as u64 + 1) * ZERO_BLOCK as u64 - offset) as usize;
        let end = block_end.min(buf.len());
        if is_zero(&buf[i..end]) {
            i = end;
            continue;
        }
        // Extend the run over following non-zero blocks and write it at once.
        let mut run_end = end;
        while run_end < buf.len() {
            let next = (run_end + ZERO_BLOCK).min(buf.len());
            if is_zero(&buf[run_end..next]) {
                break;
            }
            run_end = next;
        }
        dst.write_all_at(&buf[i..run_end], offset + i as u64)?;
        i = run_end;
    }
    Ok(())
}

/// Fills `buf` from `src` as far as possible; returns the bytes read (less than `buf.len()` only at the end).
pub fn read_full<R: Read + ?Sized>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(r) => n += r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies the stream `src` into the empty file `dst` from offset 0, leaving holes for zero blocks, and sets
/// `dst`'s length to the bytes copied. Returns that length.
pub fn copy_sparse<R: Read + ?Sized>(src: &mut R, dst: &File) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut pos = 0u64;
    loop {
        let n = read_full(src, &mut buf)?;
        if n == 0 {
            break;
        }
        write_sparse_at(dst, &buf[..n], pos)?;
        pos += n as u64;
    }
    dst.set_len(pos)?;
    Ok(pos)
}

/// Copies a regular file into the empty file `dst`, reading only its data ranges and leaving holes for zero
/// blocks; `progress` is called with the bytes of each chunk handled. Returns the length.
pub fn copy_file_sparse(src: &File, dst: &File, mut progress: impl FnMut(u64)) -> io::Result<u64> {
    let len = src.metadata()?.len();
    let mut buf = vec![0u8; BUF];
    for range in data_ranges(src)? {
        let mut pos = range.start;
        while pos < range.end {
            let want = ((range.end - pos) as usize).min(BUF);
            let n = src.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was read",
                ));
            }
            write_sparse_at(dst, &buf[..n], pos)?;
            pos += n as u64;
            progress(n as u64);
        }
    }
    dst.set_len(len)?;
    Ok(len)
}

/// The data ranges of `file`, from `SEEK_DATA`/`SEEK_HOLE`. Where the filesystem cannot tell, the whole file is
/// one range.
pub fn data_ranges(file: &File) -> io::Result<Vec<DataRange>> {
    let len = file.metadata()?.len();
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        // SAFETY: lseek on a descriptor we own; it only moves the file offset.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENXIO) => break, // no data after pos
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) if ranges.is_empty() => {
                    return Ok(vec![DataRange { start: 0, end: len }])
                }
                _ => return Err(err),
            }
        }
        let data = data as u64;
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let hole = (hole as u64).min(len);
        if hole > data {
            ranges.push(DataRange {
                start: data,
                end: hole,
            });
        }
        pos = hole;
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes() {
        let mut data = vec![0u8; 64 * ZERO_BLOCK];
        data[5 * ZERO_BLOCK + 7] = 1;
        data[40 * ZERO_BLOCK..42 * ZERO_BLOCK].fill(9);
        let dst = tempfile::tempfile().unwrap();
        let n = copy_sparse(&mut &data[..], &dst).unwrap();
        assert_eq!(n, data.len() as u64);
        let ranges = data_ranges(&dst).unwrap();
        let mapped: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert!(mapped <= 3 * ZERO_BLOCK as u64, "{ranges:?}");
        let mut back = vec![0u8; data.len()];
        dst.read_exact_at(&mut back, 0).unwrap();
        assert!(back == data);

        let again = tempfile::tempfile().unwrap();
        copy_file_sparse(&dst, &again, |_| {}).unwrap();
        let mut back2 = vec![0u8; data.len()];
        again.read_exact_at(&mut back2, 0).unwrap();
        assert!(back2 == data);
        assert_eq!(data_ranges(&again).unwrap(), ranges);
    }
}
