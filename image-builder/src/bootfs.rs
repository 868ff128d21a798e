//! The FAT boot partition, read and written in place inside the image file with fatfs.
//!
//! fatfs 0.3.6 corrupts FAT32 when it creates a directory (upstream issue #117), so this module never creates
//! one: every payload file goes into the root directory, and existing files are only overwritten.

use crate::error::{invalid, Error, IoContext, Result};
use crate::image::Partition;
use fscommon::{BufStream, StreamSlice};
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Write};

type Disk = BufStream<StreamSlice<File>>;

/// An entry of the boot partition's root directory.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// Long file name.
    pub name: String,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// True for a directory.
    pub dir: bool,
}

/// The FAT filesystem of partition 1, open on the image file.
pub struct BootFs {
    fs: fatfs::FileSystem<Disk>,
}

impl BootFs {
    /// Opens the FAT filesystem in `part` of `image`.
    pub fn open(image: &File, part: &Partition, what: &str) -> Result<BootFs> {
        let file = image.try_clone().ctx(|| format!("cannot reopen {what}"))?;
        let slice = StreamSlice::new(file, part.offset(), part.offset() + part.len())
            .ctx(|| format!("cannot read partition 1 of {what}"))?;
        let fs = fatfs::FileSystem::new(BufStream::new(slice), fatfs::FsOptions::new()).map_err(
            |e| {
                Error::Invalid(format!(
                "{what} is not a Raspberry Pi OS image: partition 1 holds no FAT filesystem ({e})"
            ))
            },
        )?;
        Ok(BootFs { fs })
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        self.fs.cluster_size() as u64
    }

    /// Free bytes (free clusters times cluster size).
    pub fn free_bytes(&self) -> Result<u64> {
        let stats = self
            .fs
            .stats()
            .ctx(|| "cannot read the boot partition's free space")?;
        Ok(stats.free_clusters() as u64 * stats.cluster_size() as u64)
    }

    /// The root directory's entries (without `.`/`..` and the volume label).
    pub fn list_root(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in self.fs.root_dir().iter() {
            let e = e.ctx(|| "cannot list the boot partition")?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            out.push(Entry {
                name,
                size: if e.is_dir() { 0 } else { e.len() },
                dir: e.is_dir(),
            });
        }
        Ok(out)
    }

    /// The size of root file `name`, if it exists (names compare case-insensitively, as FAT does).
    pub fn file_size(&self, name: &str) -> Result<Option<u64>> {
        Ok(self
            .list_root()?
            .into_iter()
            .find(|e| !e.dir && e.name.eq_ignore_ascii_case(name))
            .map(|e| e.size))
    }

    /// Reads root file `name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if self.file_size(name)?.is_none() {
            return Ok(None);
        }
        let mut f = self
            .fs
            .root_dir()
            .open_file(name)
            .ctx(|| format!("cannot open {name} on the boot partition"))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .ctx(|| format!("cannot read {name} on the boot partition"))?;
        Ok(Some(data))
    }

    /// Writes root file `name` (created or overwritten).
    pub fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        let mut f = self
            .fs
            .root_dir()
            .create_file(name)
            .ctx(|| format!("cannot create {name} on the boot partition"))?;
        f.truncate()
            .ctx(|| format!("cannot truncate {name} on the boot partition"))?;
        f.write_all(data)
            .and_then(|_| f.flush())
            .ctx(|| format!("cannot write {name} on the boot partition"))?;
        Ok(())
    }

    /// Writes root file `name` (created or overwritten) from what `fill` writes into it; returns what `fill`
    /// returned.
    pub fn write_with<T>(
        &self,
        name: &str,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<T>,
    ) -> Result<T> {
        let mut f = self
            .fs
            .root_dir()
            .create_file(name)
            .ctx(|| format!("cannot create {name} on the boot partition"))?;
        f.truncate()
            .ctx(|| format!("cannot truncate {name} on the boot partition"))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        let out = fill(&mut w)
            .and_then(|t| w.flush().map(|_| t))
            .ctx(|| format!("cannot write {name} on the boot partition"))?;
        drop(w);
        f.flush()
            .ctx(|| format!("cannot write {name} on the boot partition"))?;
        Ok(out)
    }

    /// Reads root file `name` through `read` (streaming), or `None` when it does not exist.
    pub fn read_with<T>(
        &self,
        name: &str,
        read: impl FnOnce(&mut dyn Read) -> T,
    ) -> Result<Option<T>> {
        if self.file_size(name)?.is_none() {
            return Ok(None);
        }
        let f = self
            .fs
            .root_dir()
            .open_file(name)
            .ctx(|| format!("cannot open {name} on the boot partition"))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        Ok(Some(read(&mut r)))
    }

    /// The room the files `payload` (name, size) need: `(needed, available)` in bytes, where needed counts the
    /// clusters of every file plus one cluster for directory entries, and available the free clusters plus those
    /// of the files they replace.
    pub fn room(&self, payload: &[(&str, u64)]) -> Result<(u64, u64)> {
        let cs = self.cluster_size();
        let clusters = |n: u64| n.div_ceil(cs);
        let mut need = 1u64; // the root directory may need one more cluster for the new entries
        let mut freed = 0u64;
        for (name, size) in payload {
            need += clusters(*size);
            if let Some(old) = self.file_size(name)? {
                freed += clusters(old);
            }
        }
        let free = self.free_bytes()? / cs;
        Ok((need * cs, (free + freed) * cs))
    }

    /// Checks that the files `payload` (name, size) fit: the clusters they need, less those of the files they
    /// replace, plus one cluster for directory entries, must be free.
    pub fn check_room(&self, payload: &[(&str, u64)]) -> Result<()> {
        let cs = self.cluster_size();
        let clusters = |n: u64| n.div_ceil(cs);
        let mut need = 1u64; // the root directory may need one more cluster for the new entries
        let mut freed = 0u64;
        for (name, size) in payload {
            need += clusters(*size);
            if let Some(old) = self.file_size(name)? {
                freed += clusters(old);
            }
        }
        let free = self.free_bytes()? / cs;
        if need > free + freed {
            let missing = (need - free - freed) * cs;
            return invalid(format!(
                "the boot partition is too full for the payload: it needs {} more bytes ({} free, payload of {} \
                 bytes in {} files); free room on partition 1 (remove files you do not need from the base \
                 image) or use a smaller agent binary (a release build, stripped)",
                missing,
                free * cs,
                payload.iter().map(|(_, s)| s).sum::<u64>(),
                payload.len()
            ));
        }
        Ok(())
    }

    /// Flushes everything and closes the filesystem.
    pub fn close(self) -> Result<()> {
        self.fs
            .unmount()
            .ctx(|| "cannot write back the boot partition")
    }
}
