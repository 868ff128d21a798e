//! `build --packages DIR`: the `.deb` files of DIR carried on the card, packed into one tar file in the root of the
//! boot partition (see `firstboot_agent::packages`: one file, because fatfs 0.3.6 corrupts FAT32 when it creates
//! a directory). The agent unpacks it into the root filesystem at first boot, removes it and installs the packages
//! before it forms anything.

use crate::error::{invalid, IoContext, Result};
use firstboot_agent::packages::{self, TarMember};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The packages a build carries.
#[derive(Debug, Clone)]
pub struct Carried {
    /// The directory given.
    pub dir: PathBuf,
    /// Its `.deb` files, sorted by name.
    pub debs: Vec<PathBuf>,
    /// Their total size in bytes.
    pub deb_bytes: u64,
    /// Size of the archive on the boot partition.
    pub archive_bytes: u64,
}

/// What an image carries (for `build --json` and `inspect`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CarriedSummary {
    /// The archive's name in the boot partition's root.
    pub archive: String,
    /// Where the agent finds it on the Pi.
    pub archive_on_pi: PathBuf,
    /// Where the agent unpacks and installs it from.
    pub install_dir: PathBuf,
    /// Number of `.deb` files.
    pub count: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Size of the archive file.
    pub archive_bytes: u64,
}

/// The archive's path on the Pi (boot partition mount point + name).
pub fn archive_on_pi() -> PathBuf {
    Path::new(packages::BOOT_MOUNT).join(packages::ARCHIVE_NAME)
}

/// Reads `--packages DIR`: its `.deb` files (not recursive), each checked to be a Debian package (ar archive).
pub fn collect(dir: &Path) -> Result<Carried> {
    let meta = std::fs::metadata(dir).ctx(|| format!("--packages {}", dir.display()))?;
    if !meta.is_dir() {
        return invalid(format!(
            "--packages {} is not a directory: give the directory of .deb files made by ci/fetch-packages",
            dir.display()
        ));
    }
    let debs = packages::debs_in(dir);
    if debs.is_empty() {
        return invalid(format!(
            "--packages {} holds no .deb files: fill it with ci/fetch-packages --out {}",
            dir.display(),
            dir.display()
        ));
    }
    let mut deb_bytes = 0;
    let mut sizes = Vec::new();
    for p in &debs {
        let mut magic = [0u8; 8];
        let mut f = std::fs::File::open(p).ctx(|| format!("cannot open {}", p.display()))?;
        let len = f
            .metadata()
            .ctx(|| format!("cannot stat {}", p.display()))?
            .len();
        if f.read_exact(&mut magic).is_err() || &magic != b"!<arch>\n" {
            return invalid(format!(
                "--packages: {} is not a Debian package (no ar archive header); remove it or fetch the \
                 directory again with ci/fetch-packages",
                p.display()
            ));
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.len() > 100 {
            return invalid(format!(
                "--packages: the file name of {} is longer than 100 bytes; rename it",
                p.display()
            ));
        }
        deb_bytes += len;
        sizes.push(len);
    }
    Ok(Carried {
        dir: dir.to_path_buf(),
        archive_bytes: packages::tar_len(sizes),
        debs,
        deb_bytes,
    })
}

impl Carried {
    /// The summary of what is carried.
    pub fn summary(&self) -> CarriedSummary {
        CarriedSummary {
            archive: packages::ARCHIVE_NAME.into(),
            archive_on_pi: archive_on_pi(),
            install_dir: packages::INSTALL_DIR.into(),
            count: self.debs.len(),
            bytes: self.deb_bytes,
            archive_bytes: self.archive_bytes,
        }
    }
}

/// The summary of an archive read back from an image: its members.
pub fn summarize(members: &[TarMember], archive_bytes: u64) -> CarriedSummary {
    CarriedSummary {
        archive: packages::ARCHIVE_NAME.into(),
        archive_on_pi: archive_on_pi(),
        install_dir: packages::INSTALL_DIR.into(),
        count: members.iter().filter(|m| m.name.ends_with(".deb")).count(),
        bytes: members.iter().map(|m| m.size).sum(),
        archive_bytes,
    }
}
