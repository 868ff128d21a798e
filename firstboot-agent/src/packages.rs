//! Debian packages carried on the card for an offline first boot.
//!
//! `image-builder build --packages DIR` packs the `.deb` files of DIR into one uncompressed tar file,
//! [`ARCHIVE_NAME`], in the root of the FAT boot partition (one file: fatfs 0.3.6 corrupts FAT32 when it creates a
//! directory) and records in the cluster config where it is (`agent.packages_archive`) and where the agent unpacks
//! it (`agent.packages_dir`). At first boot the agent, once the root filesystem is grown, unpacks the archive into
//! the root filesystem ([`unpack_carried`]), removes it from the boot partition, and installs the packages the
//! system lacks with `dpkg -i` ([`install_debs`]): dpkg unpacks every file of a call and then configures them in
//! dependency order; files other files pre-depend on go in an earlier call ([`stages`]). Packages already installed at the same or a newer version are left out, so a closure fetched for a plain
//! Debian release never downgrades what the image has. New packages are unpacked without an fsync per file and
//! man-db's and initramfs-tools' needless work is turned off for the install; a marker ([`INSTALL_MARKER`]) makes
//! that safe against a power cut.
//!
//! The tar format here is POSIX ustar, plain files only, flat (no directories), written and read by this module
//! for both programs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The archive's file name in the root of the boot partition.
pub const ARCHIVE_NAME: &str = "picluster-debs.tar";
/// Where Raspberry Pi OS mounts the boot partition.
pub const BOOT_MOUNT: &str = "/boot/firmware";
/// Where the agent unpacks the carried packages on the root filesystem.
pub const INSTALL_DIR: &str = "/var/cache/picluster/debs";

const BLOCK: u64 = 512;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The archive is not a tar file this module wrote, or is damaged.
    #[error("{path}: {problem}; rebuild the image with `image-builder build --packages DIR`")]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A `.deb` file could not be read.
    #[error("{path} is not a readable Debian package: {problem}")]
    BadDeb {
        /// The file.
        path: PathBuf,
        /// What dpkg-deb said.
        problem: String,
    },
    /// dpkg failed.
    #[error("installing {count} packages from {dir} failed: {problem}")]
    Dpkg {
        /// The directory.
        dir: PathBuf,
        /// How many packages were to be installed.
        count: usize,
        /// What dpkg said (its last lines).
        problem: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PackagesError {
    let what = what.into();
    move |source| PackagesError::Io { what, source }
}

// ---------------------------------------------------------------------------------------------------------------
// tar (ustar, flat, plain files)

/// One file of an archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TarMember {
    /// File name (no directory part).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// The size of a tar archive holding files of `sizes`: a header block and the data padded to blocks per file,
/// plus the two zero blocks that end it.
pub fn tar_len(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes
        .into_iter()
        .map(|s| BLOCK + s.div_ceil(BLOCK) * BLOCK)
        .sum::<u64>()
        + 2 * BLOCK
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

fn header(name: &str, size: u64, mtime: u64) -> io::Result<[u8; 512]> {
    if name.is_empty() || name.len() > 100 || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file name {name:?} cannot go into the archive (1 to 100 bytes, no `/`)"),
        ));
    }
    if size >= 8 << 30 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is {size} bytes: files of 8 GiB or more cannot go into the archive"),
        ));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// Writes a tar archive of `files` (each stored under its file name) to `out`; returns the bytes written, which
/// equal [`tar_len`] of the files' sizes. `progress` is called with the bytes of each chunk written.
pub fn write_tar(
    out: &mut dyn Write,
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} has no UTF-8 file name", path.display()),
                )
            })?
            .to_string();
        let mut f = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let meta = f.metadata()?;
        let size = meta.len();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        out.write_all(&header(&name, size, mtime)?)?;
        let mut left = size;
        while left > 0 {
            let chunk = left.min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..chunk])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was being read", path.display()),
                ));
            }
            out.write_all(&buf[..n])?;
            left -= n as u64;
            progress(n as u64);
        }
        let pad = (size.div_ceil(BLOCK) * BLOCK - size) as usize;
        out.write_all(&[0u8; 512][..pad])?;
        written += BLOCK + size + pad as u64;
    }
    out.write_all(&[0u8; 1024])?;
    Ok(written + 2 * BLOCK)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Reads a tar archive, calling `each` with every member and a reader of exactly its data (which `each` may leave
/// unread). Returns the members in order. Only flat archives of plain files are accepted.
pub fn read_tar(
    input: &mut dyn Read,
    path: &Path,
    each: &mut dyn FnMut(&TarMember, &mut dyn Read) -> io::Result<()>,
) -> Result<Vec<TarMember>, PackagesError> {
    let bad = |problem: String| PackagesError::BadArchive {
        path: path.to_path_buf(),
        problem,
    };
    let mut members = Vec::new();
    loop {
        let mut h = [0u8; 512];
        match input.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(bad(format!(
                    "the archive ends without its end marker after {} files (truncated?)",
                    members.len()
                )))
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        }
        if h.iter().all(|&b| b == 0) {
            return Ok(members);
        }
        if &h[257..262] != b"ustar" {
            return Err(bad(format!(
                "entry {} has no ustar header: not a packages archive",
                members.len() + 1
            )));
        }
        let stored = parse_octal(&h[148..156]);
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| b as u64).sum();
        if stored != Some(sum) {
            return Err(bad(format!(
                "entry {} has a bad header checksum (damaged archive)",
                members.len() + 1
            )));
        }
        let name: String = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = parse_octal(&h[124..136])
            .ok_or_else(|| bad(format!("entry {name:?} has a bad size field")))?;
        if !(h[156] == b'0' || h[156] == 0)
            || name.contains('/')
            || name.is_empty()
            || name == "."
            || name == ".."
            || h[345] != 0
        {
            return Err(bad(format!(
                "entry {name:?} is not a plain file in the archive's top level"
            )));
        }
        let member = TarMember { name, size };
        let mut data = input.take(size);
        each(&member, &mut data).map_err(io_err(format!(
            "reading {} from {}",
            member.name,
            path.display()
        )))?;
        // Skip what `each` left, then the padding.
        io::copy(&mut data, &mut io::sink())
            .map_err(io_err(format!("reading {}", path.display())))?;
        if data.limit() > 0 {
            return Err(bad(format!(
                "the archive ends inside {} (truncated?)",
                member.name
            )));
        }
        let pad = size.div_ceil(BLOCK) * BLOCK - size;
        let skipped = io::copy(&mut input.take(pad), &mut io::sink())
            .map_err(io_err(format!("reading {}", path.display())))?;
        if skipped != pad {
            return Err(bad(format!(
                "the archive ends inside {} (truncated?)",
                member.name
            )));
        }
        members.push(member);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// unpacking the carried archive

/// Unpacks `archive` (when it exists) into `dir` and removes it; returns the members unpacked, or `None` when
/// there was no archive. Files are written to `dir/.unpack` first and moved into `dir` only when the whole archive
/// was read, so an interrupted run (power cut) leaves the archive in place and is simply repeated.
pub fn unpack_carried(archive: &Path, dir: &Path) -> Result<Option<Vec<TarMember>>, PackagesError> {
    let mut f = match File::open(archive) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("opening {}", archive.display()))(e)),
    };
    let partial = dir.join(".unpack");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(io_err(format!("removing {}", partial.display())))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_err(format!("creating {}", partial.display())))?;
    let members = read_tar(&mut f, archive, &mut |m, data| {
        let mut out = File::create(partial.join(&m.name))?;
        io::copy(data, &mut out)?;
        out.sync_all()
    })?;
    for m in &members {
        std::fs::rename(partial.join(&m.name), dir.join(&m.name)).map_err(io_err(format!(
            "moving {} into {}",
            m.name,
            dir.display()
        )))?;
    }
    std::fs::remove_dir(&partial).map_err(io_err(format!("removing {}", partial.display())))?;
    drop(f);
    std::fs::remove_file(archive).map_err(io_err(format!(
        "removing {} from the boot partition",
        archive.display()
    )))?;
    tracing::info!(
        "unpacked {} packages from {} into {} and removed the archive",
        members.len(),
        archive.display(),
        dir.display()
    );
    Ok(Some(members))
}

/// The `.deb` files in `dir` (not recursive), sorted by name. A missing directory has none.
pub fn debs_in(dir: &Path) -> Vec<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    debs.sort();
    debs
}

// ---------------------------------------------------------------------------------------------------------------
// Debian versions

fn order(c: Option<char>) -> i32 {
    match c {
        None => 0,
        Some('~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix, compared with `~` first, letters before other characters, end between.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = (i < a.len() && !a[i].is_ascii_digit()).then(|| a[i] as char);
            let cb = (j < b.len() && !b[j].is_ascii_digit()).then(|| b[j] as char);
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            if ca.is_some() {
                i += 1;
            }
            if cb.is_some() {
                j += 1;
            }
        }
        let mut na = 0u128;
        while i < a.len() && a[i].is_ascii_digit() {
            na = na * 10 + (a[i] - b'0') as u128;
            i += 1;
        }
        let mut nb = 0u128;
        while j < b.len() && b[j].is_ascii_digit() {
            nb = nb * 10 + (b[j] - b'0') as u128;
            j += 1;
        }
        if na != nb {
            return na.cmp(&nb);
        }
    }
    Ordering::Equal
}

/// Compares two Debian version strings (`[epoch:]upstream[-revision]`) as dpkg does.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a.trim());
    let (eb, ub, rb) = split(b.trim());
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

// ---------------------------------------------------------------------------------------------------------------
// what to install

/// A `.deb` file's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    /// The file.
    pub path: PathBuf,
    /// Package name.
    pub package: String,
    /// Version.
    pub version: String,
    /// Architecture (`arm64`, `all`, ...).
    pub architecture: String,
    /// Package names in its `Depends` (every alternative, without versions or `:any`).
    pub depends: Vec<String>,
    /// Package names in its `Pre-Depends`.
    pub pre_depends: Vec<String>,
    /// Its `postinst` or `triggers` control file names `update-initramfs` (it asks for the initramfs to be
    /// rebuilt when it is configured).
    pub initramfs_update: bool,
}

/// The package names of a relationship field (`a (>= 1) | b, c:any`): every alternative, without version or
/// architecture qualifier.
pub fn relation_names(field: &str) -> Vec<String> {
    field
        .split([',', '|'])
        .filter_map(|alt| alt.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Orders `debs` into `dpkg -i` stages. dpkg unpacks every file of one `dpkg -i` before it configures any, so a
/// package whose `Pre-Depends` names another file of the same set (python3 -> python3-minimal ->
/// python3.11-minimal) must come in a later call than that file and everything that file `Depends` on. Each
/// package gets a rank: at least one more than any package pre-depending on it, at least that of any package
/// depending on it; stages run from the highest rank down. Without such pre-dependencies there is one stage.
pub fn stages(debs: &[Deb]) -> Vec<Vec<Deb>> {
    let index: BTreeMap<&str, usize> = debs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.package.as_str(), i))
        .collect();
    // Edges from -> to with weight: pre-dependency 1, dependency 0.
    let mut edges = Vec::new();
    for (i, d) in debs.iter().enumerate() {
        for (names, w) in [(&d.pre_depends, 1usize), (&d.depends, 0)] {
            for n in names {
                if let Some(&j) = index.get(n.as_str()) {
                    if j != i {
                        edges.push((i, j, w));
                    }
                }
            }
        }
    }
    let mut rank = vec![0usize; debs.len()];
    // Longest paths by relaxation; a cycle through a pre-dependency cannot be ordered, so it stops growing.
    for _ in 0..=debs.len() {
        let mut changed = false;
        for &(from, to, w) in &edges {
            let r = (rank[from] + w).min(debs.len());
            if r > rank[to] {
                rank[to] = r;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut by_rank: BTreeMap<std::cmp::Reverse<usize>, Vec<Deb>> = BTreeMap::new();
    for (d, r) in debs.iter().zip(rank) {
        by_rank
            .entry(std::cmp::Reverse(r))
            .or_default()
            .push(d.clone());
    }
    by_rank.into_values().collect()
}

/// A package as dpkg has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    /// Architecture.
    pub architecture: String,
    /// Version.
    pub version: String,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to give to `dpkg -i`, in name order.
    pub install: Vec<Deb>,
    /// Files left out, each with why (already installed at that or a newer version; an older file of the same
    /// package).
    pub skip: Vec<(Deb, String)>,
}

/// Chooses which `.deb` files to install: the newest file of each package, unless the system already has that
/// package (same architecture, or any for `all`) at the same or a newer version.
pub fn plan(debs: &[Deb], installed: &BTreeMap<String, Vec<InstalledPackage>>) -> Plan {
    plan_with(debs, installed, false)
}

/// [`plan`], and with `reinstall` also the packages installed at the very version carried (after an install
/// that was cut off, see [`INSTALL_MARKER`]; a newer installed version is still left alone).
pub fn plan_with(
    debs: &[Deb],
    installed: &BTreeMap<String, Vec<InstalledPackage>>,
    reinstall: bool,
) -> Plan {
    let mut newest: BTreeMap<&str, &Deb> = BTreeMap::new();
    let mut out = Plan::default();
    for d in debs {
        match newest.get(d.package.as_str()) {
            Some(cur) if compare_versions(&cur.version, &d.version) != Ordering::Less => {
                out.skip.push((
                    d.clone(),
                    format!("{} {} is carried too", cur.package, cur.version),
                ));
            }
            Some(cur) => {
                out.skip.push((
                    (*cur).clone(),
                    format!("{} {} is carried too", d.package, d.version),
                ));
                newest.insert(&d.package, d);
            }
            None => {
                newest.insert(&d.package, d);
            }
        }
    }
    for d in newest.into_values() {
        let have = installed.get(&d.package).and_then(|v| {
            v.iter().find(|i| {
                d.architecture == "all"
                    || i.architecture == "all"
                    || i.architecture == d.architecture
            })
        });
        let keep = |i: &InstalledPackage| match compare_versions(&i.version, &d.version) {
            Ordering::Greater => true,
            Ordering::Equal => !reinstall,
            Ordering::Less => false,
        };
        match have {
            Some(i) if keep(i) => {
                out.skip.push((
                    d.clone(),
                    format!("{} {} is installed", d.package, i.version),
                ));
            }
            _ => out.install.push(d.clone()),
        }
    }
    out.install.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

// ---------------------------------------------------------------------------------------------------------------
// running dpkg

/// The dpkg programs, and an optional other root (tests install into a private directory with `dpkg --root`).
#[derive(Debug, Clone)]
pub struct DpkgTools {
    /// `dpkg`.
    pub dpkg: PathBuf,
    /// `dpkg-deb`.
    pub dpkg_deb: PathBuf,
    /// `dpkg-query`.
    pub dpkg_query: PathBuf,
    /// Install into this root instead of `/` (`dpkg --root`, `dpkg-query --admindir`).
    pub root: Option<PathBuf>,
}

impl Default for DpkgTools {
    fn default() -> Self {
        DpkgTools {
            dpkg: "dpkg".into(),
            dpkg_deb: "dpkg-deb".into(),
            dpkg_query: "dpkg-query".into(),
            root: None,
        }
    }
}

fn output_tail(out: &std::process::Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(6)..].join(" / ")
}

fn installed_of(rows: &[[String; 4]]) -> BTreeMap<String, Vec<InstalledPackage>> {
    let mut map: BTreeMap<String, Vec<InstalledPackage>> = BTreeMap::new();
    for [name, architecture, version, status] in rows {
        if status == "installed" {
            map.entry(name.clone()).or_default().push(InstalledPackage {
                architecture: architecture.clone(),
                version: version.clone(),
            });
        }
    }
    map
}

/// Splits `dpkg-deb -I FILE control postinst triggers` output into the control paragraph (field lines and their
/// continuation lines) and the rest (the scripts, which follow without a separator).
fn split_control(text: &str) -> (&str, &str) {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let continuation = line.starts_with([' ', '\t']) && !line.trim().is_empty();
        let field = line.split_once(':').is_some_and(|(name, _)| {
            !name.is_empty()
                && !name.starts_with(['#', '-'])
                && name.bytes().all(|b| b.is_ascii_graphic())
        });
        if !(continuation || field) {
            break;
        }
        end += line.len();
    }
    text.split_at(end)
}

impl DpkgTools {
    fn dpkg_cmd(&self) -> Command {
        let mut c = Command::new(&self.dpkg);
        if let Some(r) = &self.root {
            c.arg(format!("--root={}", r.display()));
        }
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Reads a `.deb` file's control fields (package name, version, architecture, relations) and whether its
    /// `postinst` or `triggers` asks for an initramfs update: one `dpkg-deb -I FILE control postinst triggers`,
    /// which reads only the small control member of the file, not its data.
    pub fn read_deb(&self, path: &Path) -> Result<Deb, PackagesError> {
        let out = Command::new(&self.dpkg_deb)
            .env("LC_ALL", "C")
            .arg("-I")
            .arg(path)
            .args(["control", "postinst", "triggers"])
            .output()
            .map_err(|e| PackagesError::BadDeb {
                path: path.into(),
                problem: format!("cannot run {}: {e}", self.dpkg_deb.display()),
            })?;
        // dpkg-deb prints the control files the package has and exits 2 when one named is missing (most packages
        // have no `triggers`); any other failure is a damaged file.
        let missing_part_only = out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(|l| l.contains("control component"));
        if !out.status.success() && !missing_part_only {
            return Err(PackagesError::BadDeb {
                path: path.into(),
                problem: output_tail(&out),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (control, scripts) = split_control(&text);
        let field = |k: &str| {
            control
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        let deb = Deb {
            path: path.into(),
            package: field("Package:"),
            version: field("Version:"),
            architecture: field("Architecture:"),
            depends: relation_names(&field("Depends:")),
            pre_depends: relation_names(&field("Pre-Depends:")),
            initramfs_update: scripts.contains("update-initramfs"),
        };
        if deb.package.is_empty() || deb.version.is_empty() {
            return Err(PackagesError::BadDeb {
                path: path.into(),
                problem: "no Package or Version field".into(),
            });
        }
        Ok(deb)
    }

    /// Every package dpkg's database knows: (name, architecture, version, status).
    fn query(&self) -> Result<Vec<[String; 4]>, PackagesError> {
        let mut c = Command::new(&self.dpkg_query);
        if let Some(r) = &self.root {
            c.arg(format!("--admindir={}", r.join("var/lib/dpkg").display()));
        }
        let out = c
            .args([
                "-W",
                "-f",
                "${Package}\t${Architecture}\t${Version}\t${db:Status-Status}\n",
            ])
            .output()
            .map_err(io_err(format!("running {}", self.dpkg_query.display())))?;
        // dpkg-query exits 1 on an empty database with no pattern; its output is still what is installed.
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                (f.len() == 4).then(|| [f[0], f[1], f[2], f[3]].map(str::to_string))
            })
            .collect())
    }

    /// The packages dpkg has installed (status `installed`), by name.
    pub fn installed(&self) -> Result<BTreeMap<String, Vec<InstalledPackage>>, PackagesError> {
        Ok(installed_of(&self.query()?))
    }

    /// The names of the packages dpkg has files of in any state (installed, unpacked, half-installed, ...): all
    /// but `not-installed` and `config-files`.
    fn present(&self) -> Result<BTreeSet<String>, PackagesError> {
        Ok(self
            .query()?
            .into_iter()
            .filter(|[_, _, _, status]| status != "not-installed" && status != "config-files")
            .map(|[name, ..]| name)
            .collect())
    }

    /// `path` (absolute) on the system dpkg installs into: under [`DpkgTools::root`] when that is set.
    fn system_path(&self, path: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    /// Runs `dpkg ARGS FILES` for an install from `dir`: with `dir`'s stand-in `py3compile` first on the `PATH` of
    /// the maintainer scripts (see [`DEFERRED_PY3COMPILE`]).
    fn run_dpkg(&self, args: &[&str], files: &[&Deb], dir: &Path) -> Result<(), String> {
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
        let out = self
            .dpkg_cmd()
            .env("PATH", format!("{}:{path}", dir.join(DEFER_BIN).display()))
            .args(args)
            .args(files.iter().map(|d| &d.path))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.dpkg.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`dpkg {}` failed ({}): {}",
                args.join(" "),
                out.status,
                output_tail(&out)
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Python byte-compilation in one pass

/// The `PATH` the agent assumes when it has none (systemd's default for services).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The directory in the packages directory that holds the stand-in `py3compile` (see [`DEFERRED_PY3COMPILE`]).
pub const DEFER_BIN: &str = ".defer-bin";
/// Python byte-compilation deferred to one pass. Every Python package's `postinst` (dh_python3's) runs
/// `py3compile -p PACKAGE [DIR...]` when `command -v py3compile` finds one; during the install dpkg's `PATH` starts
/// with [`DEFER_BIN`], whose stand-in only appends its arguments to this file in the packages directory. After
/// the dpkg passes, one run of the real `/usr/bin/py3compile` is given the `.py` files of every package named
/// (public modules, or those under the named directories: what each call would have compiled). Under emulation
/// each call took 20-30 s, mostly two interpreter starts (measured 2026-12-02, 12 packages); one pass starts two.
/// Python runs without `.pyc` files (it compiles on import), so a power cut before the pass costs speed only;
/// the file stays until the pass ran, and the next start runs it.
pub const DEFERRED_PY3COMPILE: &str = ".py3compile-deferred";

/// Writes the stand-in `py3compile` into `dir`'s [`DEFER_BIN`].
fn write_py3compile_stand_in(dir: &Path) -> io::Result<()> {
    let list = dir.join(DEFERRED_PY3COMPILE);
    let list = list.to_str().filter(|l| !l.contains('\'')).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "packages directory name unusable in a script",
        )
    })?;
    let bin = dir.join(DEFER_BIN);
    std::fs::create_dir_all(&bin)?;
    write_file_atomically(
        &bin.join("py3compile"),
        format!(
            "#!/bin/sh\n# firstboot-agent: byte-compilation deferred to one pass after the install.\n\
             printf '%s\\n' \"$*\" >> '{list}'\n"
        )
        .as_bytes(),
        0o755,
    )
}

/// What one recorded `py3compile` call asked for: the package (`-p`) and the directories (none: its public
/// modules).
fn parse_py3compile_call(line: &str) -> (Option<String>, Vec<String>) {
    let mut package = None;
    let mut dirs = Vec::new();
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "-p" | "--package" => package = words.next().map(str::to_string),
            "-V" | "-X" | "--exclude" => {
                words.next();
            }
            _ if w.starts_with('-') => {}
            _ => dirs.push(w.trim_end_matches('/').to_string()),
        }
    }
    (package, dirs)
}

/// Whether `path` is a public module of Python 3 (`/usr/lib/python3/dist-packages/...py` or a versioned one).
fn is_public_module(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/usr/lib/python3") else {
        return false;
    };
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    rest.starts_with("/dist-packages/") && path.ends_with(".py")
}

/// The files dpkg lists for `package` (`NAME` or `NAME:ARCH`), read from its `info/*.list` file. The directory
/// (thousands of entries) is listed only when neither `PACKAGE.list` nor `NAME.list` is there (a `Multi-Arch: same`
/// package named without its architecture).
fn package_files(tools: &DpkgTools, package: &str) -> Vec<String> {
    let info = tools.system_path("/var/lib/dpkg/info");
    let name = package.split(':').next().unwrap_or(package);
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let text = read(&info.join(format!("{package}.list")))
        .or_else(|| read(&info.join(format!("{name}.list"))))
        .or_else(|| {
            let prefix = format!("{name}:");
            std::fs::read_dir(&info).ok()?.flatten().find_map(|e| {
                let file = e.file_name();
                let file = file.to_str()?;
                (file.starts_with(&prefix) && file.ends_with(".list"))
                    .then(|| read(&e.path()))
                    .flatten()
            })
        });
    text.map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The `.py` files the recorded calls of `text` (one `py3compile` argument line each) would have compiled.
fn deferred_files(text: &str, files_of: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_py3compile_call(line) {
            (Some(package), dirs) => {
                for f in files_of(&package) {
                    let wanted = if dirs.is_empty() {
                        is_public_module(&f)
                    } else {
                        f.ends_with(".py") && dirs.iter().any(|d| f.starts_with(&format!("{d}/")))
                    };
                    if wanted {
                        out.insert(f);
                    }
                }
            }
            (None, dirs) => out.extend(dirs),
        }
    }
    out.into_iter().collect()
}

/// Runs the deferred byte-compilation (see [`DEFERRED_PY3COMPILE`]) if a list is there: one `py3compile` over
/// every file the recorded calls named that exists. Returns how many files it was given. Never fails the
/// install: a failure is logged and the list removed (Python compiles on import instead).
fn compile_deferred(dir: &Path, tools: &DpkgTools) -> usize {
    let list = dir.join(DEFERRED_PY3COMPILE);
    let Ok(text) = std::fs::read_to_string(&list) else {
        return 0;
    };
    let files: Vec<String> = deferred_files(&text, |p| package_files(tools, p))
        .into_iter()
        .filter(|f| tools.system_path(f).exists())
        .collect();
    let py3compile = tools.system_path("/usr/bin/py3compile");
    if !files.is_empty() && py3compile.exists() {
        let start = std::time::Instant::now();
        let mut c = Command::new(&py3compile);
        c.args(&files);
        match c.output() {
            Ok(out) if out.status.success() => tracing::info!(
                "byte-compiled {} Python files of {} packages in one pass ({:.0} s)",
                files.len(),
                text.lines().filter(|l| !l.trim().is_empty()).count(),
                start.elapsed().as_secs_f64()
            ),
            Ok(out) => tracing::warn!(
                "py3compile of {} files failed ({}); Python compiles them on import: {}",
                files.len(),
                out.status,
                output_tail(&out)
            ),
            Err(e) => tracing::warn!("cannot run {}: {e}", py3compile.display()),
        }
    }
    if let Err(e) = std::fs::remove_file(&list) {
        tracing::warn!("removing {}: {e}", list.display());
    }
    files.len()
}

// ---------------------------------------------------------------------------------------------------------------
// a faster install, and what makes it safe

/// The file in the packages directory that marks an install in progress. It is written (durably) before the
/// first `dpkg -i` and removed only after the install ended, the system files changed for it were restored and
/// everything was flushed to disk (`sync`). It holds those changes ([`Change`]s, JSON). Found at the start of
/// [`install_debs`] it means the last install was cut off (power loss, crash): the changes are undone and every
/// carried package is installed again, also those dpkg records as installed, because `--force-unsafe-io` may
/// have left their files empty.
pub const INSTALL_MARKER: &str = ".install-in-progress";

/// Whether an install of the packages in `dir` was cut off before it ended (see [`INSTALL_MARKER`]): the
/// packages must be installed again even when every program is there.
pub fn install_interrupted(dir: &Path) -> bool {
    dir.join(INSTALL_MARKER).exists()
}

/// The flag file of man-db's debconf setting `man-db/auto-update`: without it man-db's trigger (run after every
/// install that adds manual pages) does not rebuild the manual page index. It is taken away during the install;
/// the daily `man-db` job updates the index later.
const MAN_DB_FLAG: &str = "/var/lib/man-db/auto-update";
/// initramfs-tools' setting: `update_initramfs=no` turns `update-initramfs -u` (what packages ask for) into a
/// no-op; a new kernel's `update-initramfs -c` still runs.
const INITRAMFS_CONF: &str = "/etc/initramfs-tools/update-initramfs.conf";
/// Packages whose initramfs hook adds something only when the root filesystem has the given type: their request
/// for an update changes nothing in the initramfs otherwise. xfsprogs' `/usr/share/initramfs-tools/hooks/xfs`
/// copies `xfs_repair`, `xfs_db` and `xfs_metadump` only when `/etc/fstab` mounts `/` as `xfs`.
const ROOT_FS_HOOKS: &[(&str, &str)] = &[("xfsprogs", "xfs")];

/// A system file changed for the duration of an install, with what restores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// The file (absolute, as the installed system sees it; under [`DpkgTools::root`] when that is set).
    pub path: String,
    /// Its content before the install (`None`: it did not exist).
    pub before: Option<String>,
    /// Its permission bits before the install.
    pub mode: u32,
    /// Its content during the install (`None`: removed).
    pub during: Option<String>,
    /// Why it is changed.
    pub why: String,
}

/// The content [`INSTALL_MARKER`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Journal {
    changes: Vec<Change>,
}

/// The type of the filesystem `/etc/fstab` mounts at `/` (`None`: no such line).
fn root_fs_type(fstab: &str) -> Option<String> {
    fstab
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && !f[0].starts_with('#') && f[1] == "/")
        .map(|f| f[2].to_string())
}

/// `text` of an `update-initramfs.conf` with every `update_initramfs=` setting turned to `no`.
fn initramfs_updates_off(text: &str) -> String {
    let mut out: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("update_initramfs=") {
                "update_initramfs=no"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The system files to change while `install` is installed, each only when that is safe (see [`MAN_DB_FLAG`],
/// [`INITRAMFS_CONF`], [`ROOT_FS_HOOKS`]): nothing of a package being installed itself, the initramfs update only
/// when every package asking for it is known to change nothing in the initramfs of this system.
fn plan_changes(tools: &DpkgTools, install: &[Deb]) -> Vec<Change> {
    let names: BTreeSet<&str> = install.iter().map(|d| d.package.as_str()).collect();
    let mut out = Vec::new();
    let existing = |path: &str| -> Option<(String, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let p = tools.system_path(path);
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if !meta.is_file() {
            return None;
        }
        let text = std::fs::read_to_string(&p).ok()?;
        Some((text, meta.permissions().mode() & 0o7777))
    };
    if !names.contains("man-db") {
        if let Some((text, mode)) = existing(MAN_DB_FLAG) {
            out.push(Change {
                path: MAN_DB_FLAG.into(),
                before: Some(text),
                mode,
                during: None,
                why: "no manual page index rebuild by man-db's trigger".into(),
            });
        }
    }
    let askers: Vec<&str> = install
        .iter()
        .filter(|d| d.initramfs_update)
        .map(|d| d.package.as_str())
        .collect();
    if askers.is_empty() || names.iter().any(|n| n.starts_with("initramfs-tools")) {
        return out;
    }
    let Some((text, mode)) = existing(INITRAMFS_CONF) else {
        return out;
    };
    let root_fs = std::fs::read_to_string(tools.system_path("/etc/fstab"))
        .ok()
        .and_then(|t| root_fs_type(&t));
    let needed: Vec<&str> = askers
        .iter()
        .copied()
        .filter(|a| {
            !ROOT_FS_HOOKS
                .iter()
                .any(|(p, fs)| p == a && root_fs.as_deref().is_some_and(|r| r != *fs))
        })
        .collect();
    if !needed.is_empty() {
        tracing::info!(
            "the initramfs is updated as {} ask (root filesystem {})",
            needed.join(", "),
            root_fs.as_deref().unwrap_or("unknown")
        );
        return out;
    }
    let during = initramfs_updates_off(&text);
    if during != text {
        out.push(Change {
            path: INITRAMFS_CONF.into(),
            before: Some(text),
            mode,
            during: Some(during),
            why: format!(
                "no initramfs update for {}: its hook adds nothing with a {} root filesystem",
                askers.join(", "),
                root_fs.as_deref().unwrap_or("?")
            ),
        });
    }
    out
}

/// Writes `data` to `path` through a temporary file in the same directory (fsynced, then renamed over it).
fn write_file_atomically(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.picluster-tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Sets each file of `changes` to its `during` (`before == false`) or `before` content. Every change is tried;
/// the first error is returned.
fn set_files(tools: &DpkgTools, changes: &[Change], before: bool) -> Result<(), PackagesError> {
    let mut first = None;
    for c in changes {
        let path = tools.system_path(&c.path);
        let want = if before { &c.before } else { &c.during };
        let done = match want {
            Some(text) => write_file_atomically(&path, text.as_bytes(), c.mode),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = done {
            let what = if before { "restoring" } else { "changing" };
            first.get_or_insert(PackagesError::Io {
                what: format!("{what} {} ({})", path.display(), c.why),
                source: e,
            });
        }
    }
    first.map_or(Ok(()), Err)
}

/// Flushes everything written to the disk: `sync`, or `syncfs` of the root when dpkg installs into another root.
fn sync_system(tools: &DpkgTools) -> Result<(), PackagesError> {
    match &tools.root {
        None => {
            nix::unistd::sync();
            Ok(())
        }
        Some(r) => {
            let f = File::open(r).map_err(io_err(format!("opening {}", r.display())))?;
            nix::unistd::syncfs(&f).map_err(|e| PackagesError::Io {
                what: format!("syncfs of {}", r.display()),
                source: e.into(),
            })
        }
    }
}

/// Writes the marker holding `journal` (see [`INSTALL_MARKER`]) durably.
fn write_marker(dir: &Path, journal: &Journal) -> Result<(), PackagesError> {
    let marker = dir.join(INSTALL_MARKER);
    let text = serde_json::to_vec_pretty(journal).expect("a journal serializes");
    write_file_atomically(&marker, &text, 0o644)
        .and_then(|_| sync_dir(dir))
        .map_err(io_err(format!("writing {}", marker.display())))
}

/// Reads the marker of an install that was cut off; `None` when there is none. A marker that cannot be read
/// still counts (its changes are then unknown).
fn read_marker(dir: &Path) -> Option<Journal> {
    let marker = dir.join(INSTALL_MARKER);
    let text = match std::fs::read(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("reading {}: {e}", marker.display());
            return Some(Journal::default());
        }
    };
    Some(serde_json::from_slice(&text).unwrap_or_else(|e| {
        tracing::warn!(
            "{} is not a journal this agent wrote: {e}",
            marker.display()
        );
        Journal::default()
    }))
}

/// Ends an install: restores the changed files, flushes the disk, then removes the marker. The marker stays when
/// anything of that failed, so the next start restores again (and installs everything again).
fn finish_install(dir: &Path, tools: &DpkgTools, journal: &Journal) -> Result<(), PackagesError> {
    set_files(tools, &journal.changes, true)?;
    sync_system(tools)?;
    let marker = dir.join(INSTALL_MARKER);
    std::fs::remove_file(&marker)
        .and_then(|_| sync_dir(dir))
        .map_err(io_err(format!("removing {}", marker.display())))
}

/// What [`install_debs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstallReport {
    /// `package version` of each package installed.
    pub installed: Vec<String>,
    /// `package version (why)` of each file left out.
    pub skipped: Vec<String>,
    /// How many `dpkg -i` passes it took (0: nothing to do).
    pub passes: u32,
    /// How many of the passes ran with `--force-unsafe-io`.
    pub unsafe_io_passes: u32,
    /// Whether an install cut off before (see [`INSTALL_MARKER`]) was found: every carried package was installed
    /// again.
    pub recovered: bool,
    /// The system files changed for the install and restored after it (see [`Change`]).
    pub changed: Vec<String>,
    /// How many Python files the deferred byte-compilation pass was given (see [`DEFERRED_PY3COMPILE`]).
    pub byte_compiled: usize,
}

/// The dpkg options of one `dpkg -i` of `files`: `--force-unsafe-io` (no fsync of every unpacked file; the
/// install is made durable by one `sync` at its end, see [`INSTALL_MARKER`]) when none of the packages is on the
/// system in any state before the install (`present`): a power cut can then only damage packages of this install,
/// which the next start installs again, never a file the system had, which an upgrade would replace.
fn dpkg_install_args(files: &[&Deb], present: &BTreeSet<String>) -> Vec<&'static str> {
    let mut args = vec!["-i", "--force-confdef", "--force-confold"];
    if files.iter().all(|d| !present.contains(&d.package)) {
        args.push("--force-unsafe-io");
    }
    args
}

/// Installs the `.deb` files of `dir` that the system lacks (see [`plan`]): one `dpkg -i` per stage (see
/// [`stages`]; one stage unless files pre-depend on other files), then `dpkg --configure -a` and up to two more
/// passes for anything still missing. An interrupted earlier run is finished first (`dpkg --configure -a`).
///
/// To be fast on a slow SD card, and safe: packages new to the system are unpacked with `--force-unsafe-io` (no
/// fsync per file; only a `dpkg -i` of packages that have no files on the system yet, so a power cut cannot damage
/// a file the system had); man-db's index rebuild and an initramfs update that would change nothing are turned
/// off for the install ([`Change`]). Both are recorded in [`INSTALL_MARKER`] before the first `dpkg -i`, undone
/// at the end, failed or not, followed by `sync`; after a power cut the next call undoes them and installs every
/// carried package again.
pub fn install_debs(dir: &Path, tools: &DpkgTools) -> Result<InstallReport, PackagesError> {
    let paths = debs_in(dir);
    let mut report = InstallReport::default();
    let cut_off = read_marker(dir);
    if cut_off.is_none() {
        // A byte-compilation pass a power cut or crash kept from running.
        report.byte_compiled = compile_deferred(dir, tools);
    }
    if !paths.is_empty() {
        if let Err(e) = write_py3compile_stand_in(dir) {
            tracing::warn!("byte-compiling in every package's own script instead of one pass: {e}");
        }
    }
    if let Some(j) = &cut_off {
        tracing::warn!(
            "an install of the packages in {} was cut off: restoring {} changed files, then installing every \
             carried package again",
            dir.display(),
            j.changes.len()
        );
        set_files(tools, &j.changes, true)?;
        report.recovered = true;
    }
    if paths.is_empty() {
        if let Some(j) = &cut_off {
            finish_install(dir, tools, j)?;
        }
        return Ok(report);
    }
    let debs = paths
        .iter()
        .map(|p| tools.read_deb(p))
        .collect::<Result<Vec<_>, _>>()?;
    // A run cut off by a power loss leaves packages unpacked but not configured. A failure here is only logged:
    // the passes below retry what is still missing and report what stays so.
    if let Err(e) = tools.run_dpkg(&["--configure", "-a"], &[], dir) {
        tracing::warn!("finishing an earlier install: {e}");
    }
    let rows = tools.query()?;
    let first = plan_with(&debs, &installed_of(&rows), cut_off.is_some());
    report.skipped = first
        .skip
        .iter()
        .map(|(d, why)| format!("{} {} ({why})", d.package, d.version))
        .collect();
    if first.install.is_empty() {
        if let Some(j) = &cut_off {
            finish_install(dir, tools, j)?;
        }
        return Ok(report);
    }
    let present = tools.present()?;
    let journal = Journal {
        changes: plan_changes(tools, &first.install),
    };
    write_marker(dir, &journal)?;
    if let Err(e) = set_files(tools, &journal.changes, false) {
        // Only slower: the install goes on, and the files are restored as recorded.
        tracing::warn!("{e}");
    }
    report.changed = journal
        .changes
        .iter()
        .map(|c| format!("{} ({})", c.path, c.why))
        .collect();
    for c in &report.changed {
        tracing::info!("for the install: {c}");
    }
    let installed = run_installs(dir, tools, &first.install, &present, &mut report);
    report.byte_compiled += compile_deferred(dir, tools);
    let finished = finish_install(dir, tools, &journal);
    installed?;
    finished?;
    report.installed = first
        .install
        .iter()
        .map(|d| format!("{} {}", d.package, d.version))
        .collect();
    Ok(report)
}

/// The `dpkg -i` passes of [`install_debs`] for `install`; an error names what is still not installed.
fn run_installs(
    dir: &Path,
    tools: &DpkgTools,
    install: &[Deb],
    present: &BTreeSet<String>,
    report: &mut InstallReport,
) -> Result<(), PackagesError> {
    let dpkg_i = |files: &[&Deb], report: &mut InstallReport| {
        let args = dpkg_install_args(files, present);
        report.passes += 1;
        if args.contains(&"--force-unsafe-io") {
            report.unsafe_io_passes += 1;
        }
        tools.run_dpkg(&args, files, dir)
    };
    let mut last_error = String::new();
    let staged = stages(install);
    let count = staged.len();
    for (i, stage) in staged.iter().enumerate() {
        tracing::info!(
            "dpkg -i of {} packages from {} (stage {} of {count})",
            stage.len(),
            dir.display(),
            i + 1
        );
        let files: Vec<&Deb> = stage.iter().collect();
        if let Err(e) = dpkg_i(&files, report) {
            // An early stage may hold packages that depend on later ones: configured at the end.
            tracing::warn!("{e}");
            last_error = e;
        }
    }
    // Whatever is still missing (a pre-dependency the stages could not see, e.g. through a virtual package):
    // configure what was unpacked, then up to two more passes of what is left.
    let mut todo = plan(install, &tools.installed()?).install;
    for _ in 0..3 {
        if todo.is_empty() {
            last_error.clear();
            break;
        }
        if let Err(e) = tools.run_dpkg(&["--configure", "-a"], &[], dir) {
            last_error = format!("{last_error}; {e}");
        }
        todo = plan(&todo, &tools.installed()?).install;
        if todo.is_empty() || report.passes >= count as u32 + 2 {
            continue;
        }
        tracing::info!(
            "dpkg -i of {} packages from {} (retry)",
            todo.len(),
            dir.display()
        );
        let files: Vec<&Deb> = todo.iter().collect();
        if let Err(e) = dpkg_i(&files, report) {
            tracing::warn!("{e}");
            last_error = e;
        }
        todo = plan(&todo, &tools.installed()?).install;
    }
    let still = plan(install, &tools.installed()?).install;
    if still.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = still
        .iter()
        .map(|d| format!("{} {}", d.package, d.version))
        .collect();
    Err(PackagesError::Dpkg {
        dir: dir.into(),
        count: install.len(),
        problem: format!("not installed: {}; {last_error}", names.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_dpkg_does() {
        use Ordering::*;
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+deb12u1", Less),
            ("2.36-9+deb12u14", "2.36-9+deb12u9", Greater),
            ("1:0.1", "2.0", Greater),
            ("1.0-1", "1.0", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("20.10.24+dfsg1-1+deb12u1", "20.10.24+dfsg1-1+b3", Greater),
            ("10.3-5", "10.3-5+rpt1", Less),
            ("1.47.0-2+b2", "1.47.0-2", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    fn deb(name: &str, version: &str, arch: &str) -> Deb {
        Deb {
            path: format!("/d/{name}_{version}_{arch}.deb").into(),
            package: name.into(),
            version: version.into(),
            architecture: arch.into(),
            depends: Vec::new(),
            pre_depends: Vec::new(),
            initramfs_update: false,
        }
    }

    #[test]
    fn relation_fields_give_package_names() {
        assert_eq!(
            relation_names(
                "python3.11-minimal (>= 3.11.2-1~), libc6 (>= 2.34) | libc6.1, python3:any"
            ),
            ["python3.11-minimal", "libc6", "libc6.1", "python3"]
        );
        assert!(relation_names("").is_empty());
    }

    #[test]
    fn pre_dependencies_and_what_they_need_go_in_earlier_stages() {
        let d = |n: &str, dep: &[&str], pre: &[&str]| {
            let mut x = deb(n, "1", "all");
            x.depends = dep.iter().map(|s| s.to_string()).collect();
            x.pre_depends = pre.iter().map(|s| s.to_string()).collect();
            x
        };
        // The Debian python3 chain as it is in bookworm, plus a user of it and an unrelated package.
        let debs = vec![
            d("glusterfs-common", &["python3", "libgfapi0"], &[]),
            d("libgfapi0", &[], &[]),
            d("libpython3.11-minimal", &["libc6"], &[]),
            d(
                "python3",
                &["python3.11", "libpython3-stdlib"],
                &["python3-minimal"],
            ),
            d("python3-minimal", &[], &["python3.11-minimal"]),
            d(
                "python3.11-minimal",
                &["libpython3.11-minimal", "libexpat1"],
                &[],
            ),
            d("libexpat1", &[], &[]),
            d("tini", &[], &[]),
        ];
        let st = stages(&debs);
        let names: Vec<Vec<&str>> = st
            .iter()
            .map(|s| s.iter().map(|x| x.package.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["libpython3.11-minimal", "python3.11-minimal", "libexpat1"],
                vec!["python3-minimal"],
                vec!["glusterfs-common", "libgfapi0", "python3", "tini"],
            ]
        );
        // No pre-dependency inside the set: one stage, every file.
        let flat = vec![d("a", &["b"], &[]), d("b", &[], &["libc6"])];
        assert_eq!(stages(&flat).len(), 1);
        // A cycle through a pre-dependency still ends, and keeps every file.
        let cyc = vec![d("x", &["y"], &[]), d("y", &[], &["x"])];
        assert_eq!(stages(&cyc).iter().map(Vec::len).sum::<usize>(), 2);
    }

    #[test]
    fn plan_skips_installed_same_or_newer_and_older_duplicates() {
        let debs = vec![
            deb("libc6", "2.36-9+deb12u9", "arm64"),
            deb("libssl3", "3.0.15-1", "arm64"),
            deb("glusterfs-server", "10.3-5", "arm64"),
            deb("tini", "0.19.0-1", "arm64"),
            deb("tini", "0.19.0-1+b3", "arm64"),
            deb("python3-six", "1.16.0-4", "all"),
        ];
        let mut installed = BTreeMap::new();
        // Newer on the image: never downgraded.
        installed.insert(
            "libc6".to_string(),
            vec![InstalledPackage {
                architecture: "arm64".into(),
                version: "2.36-9+rpt2+deb12u13".into(),
            }],
        );
        // Older on the image: upgraded.
        installed.insert(
            "libssl3".to_string(),
            vec![InstalledPackage {
                architecture: "arm64".into(),
                version: "3.0.11-1~deb12u2".into(),
            }],
        );
        // Same version, arch all.
        installed.insert(
            "python3-six".to_string(),
            vec![InstalledPackage {
                architecture: "all".into(),
                version: "1.16.0-4".into(),
            }],
        );
        // Installed only for another architecture: does not count.
        installed.insert(
            "glusterfs-server".to_string(),
            vec![InstalledPackage {
                architecture: "armhf".into(),
                version: "10.3-5".into(),
            }],
        );
        let p = plan(&debs, &installed);
        let names: Vec<String> = p
            .install
            .iter()
            .map(|d| format!("{} {}", d.package, d.version))
            .collect();
        assert_eq!(
            names,
            [
                "glusterfs-server 10.3-5",
                "libssl3 3.0.15-1",
                "tini 0.19.0-1+b3"
            ]
        );
        let skipped: Vec<&str> = p.skip.iter().map(|(d, _)| d.package.as_str()).collect();
        assert_eq!(skipped.len(), 3, "{:?}", p.skip);
        assert!(skipped.contains(&"libc6") && skipped.contains(&"python3-six"));
        assert!(p
            .skip
            .iter()
            .any(|(d, why)| d.version == "0.19.0-1" && why.contains("0.19.0-1+b3")));
    }

    #[test]
    fn tar_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (name, len) in [("a_1.0_arm64.deb", 0usize), ("b.deb", 511), ("c.deb", 1300)] {
            let p = dir.path().join(name);
            std::fs::write(&p, (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
            files.push(p);
        }
        let mut buf = Vec::new();
        let n = write_tar(&mut buf, &files, &mut |_| {}).unwrap();
        assert_eq!(n, buf.len() as u64);
        assert_eq!(n, tar_len([0, 511, 1300]));
        // GNU tar reads it.
        let tar_path = dir.path().join("x.tar");
        std::fs::write(&tar_path, &buf).unwrap();
        let listing = Command::new("tar")
            .arg("-tvf")
            .arg(&tar_path)
            .output()
            .unwrap();
        assert!(listing.status.success(), "{listing:?}");
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(text.contains(" 1300 ") && text.contains("c.deb"), "{text}");
        // Unpacked byte-identical, archive removed.
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let got = unpack_carried(&tar_path, &into).unwrap().unwrap();
        assert_eq!(got.len(), 3);
        for f in &files {
            let back = std::fs::read(into.join(f.file_name().unwrap())).unwrap();
            assert_eq!(back, std::fs::read(f).unwrap());
        }
        assert!(!tar_path.exists());
        assert!(!into.join(".unpack").exists());
        assert!(unpack_carried(&tar_path, &into).unwrap().is_none());
        // Truncated: named, and nothing moved.
        std::fs::write(&tar_path, &buf[..buf.len() - 1500]).unwrap();
        let into2 = dir.path().join("into2");
        std::fs::create_dir(&into2).unwrap();
        let err = unpack_carried(&tar_path, &into2).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(tar_path.exists());
        assert!(debs_in(&into2).is_empty());
        // A flipped header byte: checksum.
        let mut bad = buf.clone();
        bad[3] ^= 1;
        let err = read_tar(&mut &bad[..], Path::new("x"), &mut |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_cut_off_install_reinstalls_the_carried_version_but_never_downgrades() {
        let debs = vec![
            deb("glusterfs-server", "10.3-5", "arm64"),
            deb("libc6", "2.36-9+deb12u9", "arm64"),
            deb("tini", "0.19.0-1+b3", "arm64"),
        ];
        let mut installed = BTreeMap::new();
        for (name, version) in [
            ("glusterfs-server", "10.3-5"),
            ("libc6", "2.36-9+rpt2+deb12u13"),
        ] {
            installed.insert(
                name.to_string(),
                vec![InstalledPackage {
                    architecture: "arm64".into(),
                    version: version.into(),
                }],
            );
        }
        let names =
            |p: &Plan| -> Vec<String> { p.install.iter().map(|d| d.package.clone()).collect() };
        assert_eq!(names(&plan(&debs, &installed)), ["tini"]);
        assert_eq!(
            names(&plan_with(&debs, &installed, true)),
            ["glusterfs-server", "tini"]
        );
    }

    #[test]
    fn unsafe_io_only_for_packages_new_to_the_system() {
        let present: BTreeSet<String> = ["libc6".to_string()].into();
        let (a, b) = (deb("tini", "1", "arm64"), deb("libc6", "2", "arm64"));
        assert!(dpkg_install_args(&[&a], &present).contains(&"--force-unsafe-io"));
        let mixed = dpkg_install_args(&[&a, &b], &present);
        assert!(!mixed.contains(&"--force-unsafe-io"), "{mixed:?}");
        assert_eq!(mixed, ["-i", "--force-confdef", "--force-confold"]);
    }

    #[test]
    fn control_text_fstab_and_initramfs_setting_are_read() {
        let text = "Package: xfsprogs\nVersion: 6.1.0-1\nDepends: libc6 (>= 2.34),\n libuuid1\nDescription: x\n y\n \
                    .\n#!/bin/sh\nset -e\nupdate-initramfs -u\n";
        let (control, scripts) = split_control(text);
        assert!(
            control.ends_with(" .\n") && control.contains(" libuuid1\n"),
            "{control}"
        );
        assert!(scripts.starts_with("#!/bin/sh") && scripts.contains("update-initramfs"));
        let (control, scripts) =
            split_control("Package: a\nVersion: 1\nactivate-noawait ldconfig\n");
        assert_eq!(
            (control, scripts),
            ("Package: a\nVersion: 1\n", "activate-noawait ldconfig\n")
        );
        let fstab =
            "proc /proc proc defaults 0 0\n# / xfs\nPARTUUID=1-02  /  ext4  defaults,noatime 0 1\n";
        assert_eq!(root_fs_type(fstab).as_deref(), Some("ext4"));
        assert_eq!(root_fs_type("proc /proc proc defaults 0 0\n"), None);
        assert_eq!(
            initramfs_updates_off("# c\nupdate_initramfs=yes\nbackup_initramfs=no\n"),
            "# c\nupdate_initramfs=no\nbackup_initramfs=no\n"
        );
    }

    /// A private root with man-db's flag, initramfs-tools' setting and an fstab mounting `/` as `root_fs`.
    fn system_root(dir: &Path, root_fs: &str) -> PathBuf {
        let root = dir.join("root");
        for d in ["etc/initramfs-tools", "var/lib/man-db"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join(&INITRAMFS_CONF[1..]), INITRAMFS_CONF_TEXT).unwrap();
        std::fs::write(root.join(&MAN_DB_FLAG[1..]), "").unwrap();
        std::fs::write(
            root.join("etc/fstab"),
            format!("PARTUUID=36a31ccb-02  /  {root_fs}  defaults,noatime  0  1\n"),
        )
        .unwrap();
        root
    }

    const INITRAMFS_CONF_TEXT: &str =
        "# Configuration file for update-initramfs(8)\nupdate_initramfs=yes\nbackup_initramfs=no\n";

    #[test]
    fn only_changes_that_alter_nothing_the_system_needs_are_planned() {
        let d = tempfile::tempdir().unwrap();
        let tools = DpkgTools {
            root: Some(system_root(d.path(), "ext4")),
            ..Default::default()
        };
        let mut xfs = deb("xfsprogs", "6.1.0-1", "arm64");
        xfs.initramfs_update = true;
        let tini = deb("tini", "1", "arm64");
        let paths = |c: Vec<Change>| -> Vec<String> { c.into_iter().map(|c| c.path).collect() };
        assert_eq!(
            paths(plan_changes(&tools, &[xfs.clone(), tini.clone()])),
            [MAN_DB_FLAG, INITRAMFS_CONF]
        );
        // Nothing asks for an initramfs update: its setting stays.
        assert_eq!(
            paths(plan_changes(&tools, std::slice::from_ref(&tini))),
            [MAN_DB_FLAG]
        );
        // Another package asks: it may change the initramfs, which is then updated.
        let mut crypt = deb("cryptsetup-initramfs", "2", "all");
        crypt.initramfs_update = true;
        assert_eq!(
            paths(plan_changes(&tools, &[xfs.clone(), crypt])),
            [MAN_DB_FLAG]
        );
        // man-db or initramfs-tools themselves installed: their files are theirs.
        let planned = plan_changes(&tools, &[xfs.clone(), deb("man-db", "2", "arm64")]);
        assert_eq!(paths(planned), [INITRAMFS_CONF]);
        let planned = plan_changes(&tools, &[xfs.clone(), deb("initramfs-tools", "2", "all")]);
        assert_eq!(paths(planned), [MAN_DB_FLAG]);
        // An XFS root needs xfsprogs' hook.
        let d2 = tempfile::tempdir().unwrap();
        let tools = DpkgTools {
            root: Some(system_root(d2.path(), "xfs")),
            ..Default::default()
        };
        assert_eq!(paths(plan_changes(&tools, &[xfs.clone()])), [MAN_DB_FLAG]);
        // A system without man-db or initramfs-tools: nothing.
        let tools = DpkgTools {
            root: Some(d2.path().join("empty")),
            ..Default::default()
        };
        assert!(plan_changes(&tools, &[xfs]).is_empty());
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// Fake dpkg tools over `root` in `dir`: dpkg-deb reads the fields from the file name (xfsprogs' postinst
    /// asks for an initramfs update); dpkg logs each call with what the changed files and the marker look like
    /// then, "installs" into `dir/status` (fails when `dir/fail` exists); dpkg-query reads `dir/status`.
    fn fake_tools(dir: &Path, root: &Path, debs: &Path) -> DpkgTools {
        let w = dir.display();
        let dpkg_deb = script(
            dir,
            "dpkg-deb",
            "n=$(basename \"$2\" .deb); echo \"Package: ${n%%_*}\"; v=${n#*_}; echo \"Version: ${v%_*}\"; \
             echo \"Architecture: ${n##*_}\"; case $n in xfsprogs_*) printf '#!/bin/sh\\nupdate-initramfs -u\\n'; \
             exit 0;; esac; echo \"dpkg-deb: '$2' contains no control component 'postinst'\" >&2; \
             echo \"dpkg-deb: error: 2 requested control components are missing\" >&2; exit 2",
        );
        let dpkg = script(
            dir,
            "dpkg",
            &format!(
                "r=${{1#--root=}}; shift; {{ echo \"$*\"; grep -h update_initramfs= $r{INITRAMFS_CONF}; \
                 [ -e $r{MAN_DB_FLAG} ] && echo man-db-flag; [ -e {0}/{INSTALL_MARKER} ] && echo marker; }} \
                 >> {w}/dpkg.log; [ \"$1\" = -i ] || exit 0; [ -e {w}/fail ] && exit 1; \
                 for f in \"$@\"; do case \"$f\" in *.deb) n=$(basename \"$f\" .deb); v=${{n#*_}}; \
                 printf '%s\\t%s\\t%s\\tinstalled\\n' \"${{n%%_*}}\" \"${{n##*_}}\" \"${{v%_*}}\" >> {w}/status; \
                 case $n in python3-*) if command -v py3compile >/dev/null; then py3compile -p ${{n%%_*}}; fi;; esac;; \
                 esac; done",
                debs.display()
            ),
        );
        let dpkg_query = script(
            dir,
            "dpkg-query",
            &format!("cat {w}/status 2>/dev/null; exit 0"),
        );
        DpkgTools {
            dpkg,
            dpkg_deb,
            dpkg_query,
            root: Some(root.to_path_buf()),
        }
    }

    fn carried(dir: &Path) -> PathBuf {
        let debs = dir.join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        for n in ["xfsprogs_6.1.0-1_arm64.deb", "tini_0.19.0-1+b3_arm64.deb"] {
            std::fs::write(debs.join(n), n).unwrap();
        }
        debs
    }

    fn assert_restored(root: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let conf = root.join(&INITRAMFS_CONF[1..]);
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), INITRAMFS_CONF_TEXT);
        let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert!(root.join(&MAN_DB_FLAG[1..]).is_file());
    }

    #[test]
    fn recorded_py3compile_calls_name_what_each_would_have_compiled() {
        // The calls are those of the postinst scripts of Debian 12's arm64 python3-certifi, glusterfs-common and
        // python3-minimal (`dpkg-deb -e`), as dh_python3 writes them (trailing space included).
        let calls = "-p python3-certifi \n\
                     -p glusterfs-common:arm64 /usr/lib/aarch64-linux-gnu/glusterfs/python/syncdaemon\n\
                     -p python3-minimal /usr/share/python3/\n";
        let files_of = |p: &str| -> Vec<String> {
            let list: &[&str] = match p {
                "python3-certifi" => &[
                    "/usr/lib/python3/dist-packages/certifi/__init__.py",
                    "/usr/lib/python3/dist-packages/certifi/cacert.pem",
                    "/usr/share/doc/python3-certifi/copyright",
                ],
                "glusterfs-common:arm64" => &[
                    "/usr/lib/aarch64-linux-gnu/glusterfs/python/syncdaemon/gsyncd.py",
                    "/usr/lib/aarch64-linux-gnu/glusterfs/glusterfind/main.py",
                    "/usr/lib/python3/dist-packages/gluster/__init__.py",
                ],
                "python3-minimal" => &[
                    "/usr/share/python3/debpython/files.py",
                    "/usr/lib/python3.11/dist-packages/x.py",
                ],
                _ => &[],
            };
            list.iter().map(|s| s.to_string()).collect()
        };
        assert_eq!(
            deferred_files(calls, files_of),
            [
                "/usr/lib/aarch64-linux-gnu/glusterfs/python/syncdaemon/gsyncd.py",
                "/usr/lib/python3/dist-packages/certifi/__init__.py",
                "/usr/share/python3/debpython/files.py",
            ]
        );
        assert!(is_public_module("/usr/lib/python3.11/dist-packages/a/b.py"));
        assert!(!is_public_module("/usr/lib/python3.11/a.py"));
        assert!(!is_public_module("/usr/lib/python3/dist-packages/a.pyc"));
    }

    #[test]
    fn package_files_are_found_by_name_or_with_the_architecture() {
        let d = tempfile::tempdir().unwrap();
        let info = d.path().join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(info.join("python3-six.list"), "/a.py\n").unwrap();
        std::fs::write(info.join("glusterfs-common.list"), "/b.py\n").unwrap();
        std::fs::write(info.join("libpython3.11-stdlib:arm64.list"), "/c.py\n").unwrap();
        let tools = DpkgTools {
            root: Some(d.path().to_path_buf()),
            ..DpkgTools::default()
        };
        assert_eq!(package_files(&tools, "python3-six"), ["/a.py"]);
        assert_eq!(package_files(&tools, "glusterfs-common:arm64"), ["/b.py"]);
        assert_eq!(package_files(&tools, "libpython3.11-stdlib"), ["/c.py"]);
        assert!(package_files(&tools, "absent").is_empty());
    }

    #[test]
    fn python_byte_compilation_runs_once_after_the_install_and_after_a_cut_off_pass() {
        let d = tempfile::tempdir().unwrap();
        let root = system_root(d.path(), "ext4");
        let debs = carried(d.path());
        for n in ["python3-six_1.16.0-4_all.deb", "python3-idna_3.3-1_all.deb"] {
            std::fs::write(debs.join(n), n).unwrap();
        }
        let info = root.join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        let lists = [
            (
                "python3-six",
                &["/usr/lib/python3/dist-packages/six.py"][..],
            ),
            (
                "python3-idna",
                &[
                    "/usr/lib/python3/dist-packages/idna/__init__.py",
                    "/usr/lib/python3/dist-packages/idna/core.py",
                ][..],
            ),
        ];
        for (name, files) in lists {
            let mut text = "/.\n/usr\n".to_string();
            for f in files {
                text.push_str(&format!("{f}\n"));
                let p = root.join(&f[1..]);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, "").unwrap();
            }
            std::fs::write(info.join(format!("{name}.list")), text).unwrap();
        }
        let usr_bin = root.join("usr/bin");
        std::fs::create_dir_all(&usr_bin).unwrap();
        let log = d.path().join("py3compile.log");
        script(
            &usr_bin,
            "py3compile",
            &format!("echo \"$*\" >> {}", log.display()),
        );
        let tools = fake_tools(d.path(), &root, &debs);
        let report = install_debs(&debs, &tools).unwrap();
        assert_eq!(report.installed.len(), 4, "{report:?}");
        assert_eq!(report.byte_compiled, 3, "{report:?}");
        // Both packages' scripts ran the stand-in; the real py3compile ran once, after dpkg, with every file.
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "/usr/lib/python3/dist-packages/idna/__init__.py /usr/lib/python3/dist-packages/idna/core.py \
             /usr/lib/python3/dist-packages/six.py\n"
        );
        assert!(!debs.join(DEFERRED_PY3COMPILE).exists());
        // A pass cut off after dpkg: the next start runs it, even with nothing to install.
        std::fs::write(debs.join(DEFERRED_PY3COMPILE), "-p python3-six \n").unwrap();
        let again = install_debs(&debs, &tools).unwrap();
        assert_eq!((again.passes, again.byte_compiled), (0, 1), "{again:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.lines().last(),
            Some("/usr/lib/python3/dist-packages/six.py")
        );
        assert!(!debs.join(DEFERRED_PY3COMPILE).exists());
    }

    #[test]
    fn the_install_runs_with_unsafe_io_and_its_changes_then_restores_them() {
        let d = tempfile::tempdir().unwrap();
        let root = system_root(d.path(), "ext4");
        let debs = carried(d.path());
        let tools = fake_tools(d.path(), &root, &debs);
        let report = install_debs(&debs, &tools).unwrap();
        assert_eq!(report.installed.len(), 2, "{report:?}");
        assert_eq!(
            (report.passes, report.unsafe_io_passes),
            (1, 1),
            "{report:?}"
        );
        assert_eq!(report.changed.len(), 2, "{report:?}");
        assert!(!report.recovered);
        let log = std::fs::read_to_string(d.path().join("dpkg.log")).unwrap();
        let i = log
            .find("-i --force-confdef --force-confold --force-unsafe-io ")
            .expect(&log);
        // During the dpkg -i: no initramfs update, no man-db flag, the marker written.
        assert_eq!(
            log[i..].lines().skip(1).take(2).collect::<Vec<_>>(),
            ["update_initramfs=no", "marker"],
            "{log}"
        );
        // Before it (`--configure -a` of an earlier install): the system as it was, no marker.
        assert!(
            log.starts_with("--configure -a\nupdate_initramfs=yes\nman-db-flag\n-i "),
            "{log}"
        );
        assert_restored(&root);
        assert!(!install_interrupted(&debs));
        // Everything there: nothing changed, no marker.
        let again = install_debs(&debs, &tools).unwrap();
        assert_eq!((again.passes, again.changed.len()), (0, 0), "{again:?}");
        assert!(!install_interrupted(&debs));
    }

    #[test]
    fn a_failed_install_restores_the_changes_too() {
        let d = tempfile::tempdir().unwrap();
        let root = system_root(d.path(), "ext4");
        let debs = carried(d.path());
        let tools = fake_tools(d.path(), &root, &debs);
        std::fs::write(d.path().join("fail"), "").unwrap();
        let err = install_debs(&debs, &tools).unwrap_err().to_string();
        assert!(
            err.contains("not installed: tini 0.19.0-1+b3, xfsprogs 6.1.0-1"),
            "{err}"
        );
        let log = std::fs::read_to_string(d.path().join("dpkg.log")).unwrap();
        assert!(log.contains("update_initramfs=no\nmarker"), "{log}");
        assert_restored(&root);
        // Everything was flushed to disk: not a cut-off install.
        assert!(!install_interrupted(&debs));
    }

    #[test]
    fn a_cut_off_install_is_undone_then_done_again_in_full() {
        let d = tempfile::tempdir().unwrap();
        let root = system_root(d.path(), "ext4");
        let debs = carried(d.path());
        let tools = fake_tools(d.path(), &root, &debs);
        // The power went off during the install: the changes were made, the marker says so, and dpkg had
        // recorded both packages as installed (their files may be empty).
        let mut xfs = deb("xfsprogs", "6.1.0-1", "arm64");
        xfs.initramfs_update = true;
        let journal = Journal {
            changes: plan_changes(&tools, &[xfs]),
        };
        assert_eq!(journal.changes.len(), 2);
        write_marker(&debs, &journal).unwrap();
        set_files(&tools, &journal.changes, false).unwrap();
        assert!(!root.join(&MAN_DB_FLAG[1..]).exists());
        std::fs::write(
            d.path().join("status"),
            "xfsprogs\tarm64\t6.1.0-1\tinstalled\ntini\tarm64\t0.19.0-1+b3\tinstalled\n",
        )
        .unwrap();
        assert!(install_interrupted(&debs));
        let report = install_debs(&debs, &tools).unwrap();
        assert!(report.recovered, "{report:?}");
        assert_eq!(
            report.installed,
            ["tini 0.19.0-1+b3", "xfsprogs 6.1.0-1"],
            "every carried package again: {report:?}"
        );
        // Installed already: no unsafe io for them this time.
        assert_eq!(
            (report.passes, report.unsafe_io_passes),
            (1, 0),
            "{report:?}"
        );
        let log = std::fs::read_to_string(d.path().join("dpkg.log")).unwrap();
        // Restored before dpkg ran at all.
        assert!(
            log.starts_with("--configure -a\nupdate_initramfs=yes\nman-db-flag\nmarker\n"),
            "{log}"
        );
        assert!(
            log.contains("-i --force-confdef --force-confold /"),
            "{log}"
        );
        assert_restored(&root);
        assert!(!install_interrupted(&debs));
    }

    #[test]
    fn an_unreadable_marker_still_means_a_cut_off_install() {
        let d = tempfile::tempdir().unwrap();
        let root = system_root(d.path(), "ext4");
        let debs = carried(d.path());
        let tools = fake_tools(d.path(), &root, &debs);
        std::fs::write(
            d.path().join("status"),
            "xfsprogs\tarm64\t6.1.0-1\tinstalled\ntini\tarm64\t0.19.0-1+b3\tinstalled\n",
        )
        .unwrap();
        std::fs::write(debs.join(INSTALL_MARKER), "{\"chan").unwrap();
        let report = install_debs(&debs, &tools).unwrap();
        assert!(
            report.recovered && report.installed.len() == 2,
            "{report:?}"
        );
        assert!(!install_interrupted(&debs));
    }
}
