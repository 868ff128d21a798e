//! Debian packages carried on the card for an offline first boot.
//!
//! `image-builder build --packages DIR` packs the `.deb` files of DIR into one uncompressed tar file,
//! [`ARCHIVE_NAME`], in the root of the FAT boot partition (one file: fatfs 0.3.6 corrupts FAT32 when it creates a
//! directory) and records in the cluster config where it is (`agent.packages_archive`) and where the agent unpacks
//! it (`agent.packages_dir`). At first boot the agent, once the root filesystem is grown, unpacks the archive into
//! the root filesystem ([`unpack_carried`]), removes it from the boot partition, and installs the packages the
//! system lacks with one `dpkg -i` ([`install_debs`]): dpkg unpacks them all and then configures them in dependency
//! order. Packages already installed at the same or a newer version are left out, so a closure fetched for a plain
//! Debian release never downgrades what the image has.
//!
//! The tar format here is POSIX ustar, plain files only, flat (no directories), written and read by this module
//! for both programs.

use std::cmp::Ordering;
use std::collections::BTreeMap;
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
        let rest = io::copy(&mut data, &mut io::sink())
            .map_err(io_err(format!("reading {}", path.display())))?;
        if data.limit() > 0 {
            let _ = rest;
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
        match have {
            Some(i) if compare_versions(&i.version, &d.version) != Ordering::Less => {
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

impl DpkgTools {
    fn dpkg_cmd(&self) -> Command {
        let mut c = Command::new(&self.dpkg);
        if let Some(r) = &self.root {
            c.arg(format!("--root={}", r.display()));
        }
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Reads a `.deb` file's package name, version and architecture (`dpkg-deb -f`).
    pub fn read_deb(&self, path: &Path) -> Result<Deb, PackagesError> {
        let out = Command::new(&self.dpkg_deb)
            .arg("-f")
            .arg(path)
            .args(["Package", "Version", "Architecture"])
            .output()
            .map_err(|e| PackagesError::BadDeb {
                path: path.into(),
                problem: format!("cannot run {}: {e}", self.dpkg_deb.display()),
            })?;
        if !out.status.success() {
            return Err(PackagesError::BadDeb {
                path: path.into(),
                problem: output_tail(&out),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        let deb = Deb {
            path: path.into(),
            package: field("Package:"),
            version: field("Version:"),
            architecture: field("Architecture:"),
        };
        if deb.package.is_empty() || deb.version.is_empty() {
            return Err(PackagesError::BadDeb {
                path: path.into(),
                problem: "no Package or Version field".into(),
            });
        }
        Ok(deb)
    }

    /// The packages dpkg has installed (status `installed`), by name.
    pub fn installed(&self) -> Result<BTreeMap<String, Vec<InstalledPackage>>, PackagesError> {
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
        let mut map: BTreeMap<String, Vec<InstalledPackage>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() == 4 && f[3] == "installed" {
                map.entry(f[0].to_string())
                    .or_default()
                    .push(InstalledPackage {
                        architecture: f[1].to_string(),
                        version: f[2].to_string(),
                    });
            }
        }
        Ok(map)
    }

    fn run_dpkg(&self, args: &[&str], files: &[&Deb]) -> Result<(), String> {
        let out = self
            .dpkg_cmd()
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

/// What [`install_debs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstallReport {
    /// `package version` of each package installed.
    pub installed: Vec<String>,
    /// `package version (why)` of each file left out.
    pub skipped: Vec<String>,
    /// How many `dpkg -i` passes it took (0: nothing to do).
    pub passes: u32,
}

/// Installs the `.deb` files of `dir` that the system lacks (see [`plan`]): one `dpkg -i` of all of them (dpkg
/// unpacks every package, then configures them in dependency order). A package dpkg could not take in that pass
/// (e.g. a pre-dependency only configured later in the pass) is retried in a second pass after
/// `dpkg --configure -a`. An interrupted earlier run is finished first (`dpkg --configure -a`).
pub fn install_debs(dir: &Path, tools: &DpkgTools) -> Result<InstallReport, PackagesError> {
    let paths = debs_in(dir);
    let mut report = InstallReport::default();
    if paths.is_empty() {
        return Ok(report);
    }
    let debs = paths
        .iter()
        .map(|p| tools.read_deb(p))
        .collect::<Result<Vec<_>, _>>()?;
    let fail = |count: usize, problem: String| PackagesError::Dpkg {
        dir: dir.into(),
        count,
        problem,
    };
    // A run cut off by a power loss leaves packages unpacked but not configured.
    tools
        .run_dpkg(&["--configure", "-a"], &[])
        .map_err(|e| fail(debs.len(), e))?;
    let first = plan(&debs, &tools.installed()?);
    report.skipped = first
        .skip
        .iter()
        .map(|(d, why)| format!("{} {} ({why})", d.package, d.version))
        .collect();
    if first.install.is_empty() {
        return Ok(report);
    }
    let mut todo = first.install.clone();
    let mut last_error = String::new();
    for pass in 1..=2 {
        report.passes = pass;
        tracing::info!(
            "dpkg -i of {} packages from {} (pass {pass})",
            todo.len(),
            dir.display()
        );
        let files: Vec<&Deb> = todo.iter().collect();
        match tools.run_dpkg(&["-i", "--force-confdef", "--force-confold"], &files) {
            Ok(()) => {
                last_error.clear();
                break;
            }
            Err(e) => {
                tracing::warn!("{e}");
                last_error = e;
                // Configure what the pass unpacked, then retry only what is still missing.
                if let Err(e) = tools.run_dpkg(&["--configure", "-a"], &[]) {
                    last_error = format!("{last_error}; {e}");
                }
                todo = plan(&todo, &tools.installed()?).install;
                if todo.is_empty() {
                    last_error.clear();
                    break;
                }
            }
        }
    }
    let after = tools.installed()?;
    let still = plan(&first.install, &after).install;
    if !still.is_empty() {
        let names: Vec<String> = still
            .iter()
            .map(|d| format!("{} {}", d.package, d.version))
            .collect();
        return Err(fail(
            first.install.len(),
            format!("not installed: {}; {last_error}", names.join(", ")),
        ));
    }
    report.installed = first
        .install
        .iter()
        .map(|d| format!("{} {}", d.package, d.version))
        .collect();
    Ok(report)
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
        }
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
}
