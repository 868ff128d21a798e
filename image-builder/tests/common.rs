//! Shared helpers of the image-builder integration tests: fixture images from ci/make-base-image, running the
//! binary, independent tools, hashes and leftovers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The image-builder binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_image-builder")
}

/// A directory shared by all tests of one test binary, removed at exit is not guaranteed: it lives in /tmp.
pub fn shared_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::Builder::new().prefix("ib-fixtures.").tempdir().unwrap())
        .path()
}

/// A base image of `generation` (made once per test binary by ci/make-base-image, 64 MiB root).
pub fn base_image(generation: &str) -> PathBuf {
    static BW: OnceLock<PathBuf> = OnceLock::new();
    static TX: OnceLock<PathBuf> = OnceLock::new();
    let cell = if generation == "bookworm" { &BW } else { &TX };
    cell.get_or_init(|| {
        let out = shared_dir().join(format!("base-{generation}.img"));
        let disk_id = if generation == "bookworm" { "1234abcd" } else { "5678ef01" };
        run_ok(
            Command::new(root().join("ci/make-base-image"))
                .args(["--out"])
                .arg(&out)
                .args(["--generation", generation, "--root-mib", "64", "--disk-id", disk_id]),
        );
        out
    })
    .clone()
}

/// A copy of a base image in `dir` (to damage it).
pub fn copy_base(generation: &str, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    run_ok(Command::new("cp").arg("--sparse=always").arg(base_image(generation)).arg(&p));
    p
}

/// A fake agent: a 64-byte ELF header for `machine` (183 = aarch64, 62 = x86-64).
pub fn fake_agent(dir: &Path, machine: u16) -> PathBuf {
    let p = dir.join(format!("agent-{machine}"));
    std::fs::write(&p, image_builder::elf::fake_elf_header(machine)).unwrap();
    p
}

/// Runs a command, panics with its output when it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `image-builder build` with `args`.
pub fn build(args: &[&str]) -> Output {
    Command::new(bin()).arg("build").args(args).output().unwrap()
}

/// SHA-256 of a file via sha256sum.
pub fn sha256(path: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Names of hidden or temporary files left in `dir`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".tmp"))
        .collect()
}

/// Partitions from `sfdisk --json`: (start, size, type) in table order, and the label.
pub fn sfdisk(path: &Path) -> (String, Vec<(u64, u64, String)>, serde_json::Value) {
    let out = run_ok(Command::new("sfdisk").arg("--json").arg(path));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = &v["partitiontable"];
    let parts = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (t["label"].as_str().unwrap().to_string(), parts, v)
}

/// Extracts `len` bytes at `offset` of `image` into `dest` (sparse).
pub fn extract(image: &Path, offset: u64, len: u64, dest: &Path) {
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", image.display()))
            .arg(format!("of={}", dest.display()))
            .args(["bs=1M", "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none"])
            .arg(format!("skip={offset}"))
            .arg(format!("count={len}")),
    );
}

/// `fsck.fat -n` on the FAT at `offset` of `image`.
pub fn fsck_fat(image: &Path, offset: u64, len: u64) {
    let part = image.with_extension("p1.fat");
    extract(image, offset, len, &part);
    run_ok(Command::new("fsck.fat").arg("-n").arg(&part));
    std::fs::remove_file(part).unwrap();
}

/// `e2fsck -fn` on the ext4 at `offset` of `image`.
pub fn e2fsck(image: &Path, offset: u64) {
    run_ok(Command::new("e2fsck").arg("-fn").arg(format!("{}?offset={offset}", image.display())));
}

/// `mtype` of a file on the FAT at `offset` of `image`.
pub fn mtype(image: &Path, offset: u64, name: &str) -> String {
    run_ok(
        Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{offset}", image.display()))
            .arg(format!("::{name}")),
    )
}

/// `mdir -b` (bare names) of the FAT root at `offset` of `image`.
pub fn mdir(image: &Path, offset: u64) -> Vec<String> {
    run_ok(
        Command::new("mdir")
            .args(["-b", "-i"])
            .arg(format!("{}@@{offset}", image.display()))
            .arg("::/"),
    )
    .lines()
    .map(|l| l.trim_start_matches("::/").to_string())
    .collect()
}

/// `debugfs -R 'cat PATH'` on the ext4 at `offset` of `image`.
pub fn ext4_cat(image: &Path, offset: u64, path: &str) -> String {
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(format!("{}?offset={offset}", image.display())),
    )
}

/// Allocated bytes of a file (sparse files use less than their length).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Data ranges of a file (SEEK_DATA/SEEK_HOLE), via the library.
pub fn ranges(path: &Path) -> Vec<image_builder::io::DataRange> {
    image_builder::io::data_ranges(&std::fs::File::open(path).unwrap()).unwrap()
}

/// A fingerprint of a file's whole content that reads only its data: the length, the data ranges and the
/// SHA-256 of their bytes. Any write (into data or into a hole) changes it.
pub fn fingerprint(path: &Path) -> String {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    h.update(f.metadata().unwrap().len().to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    for r in ranges(path) {
        h.update(r.start.to_le_bytes());
        h.update(r.end.to_le_bytes());
        let mut p = r.start;
        while p < r.end {
            let k = ((r.end - p) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..k], p).unwrap();
            h.update(&buf[..k]);
            p += k as u64;
        }
    }
    hex::encode(h.finalize())
}

/// Byte-for-byte comparison of two (sparse) files: equal lengths, and equal bytes over the union of both files'
/// data ranges (everything else reads as zeros in both).
pub fn assert_same_content(a: &Path, b: &Path) {
    use std::os::unix::fs::FileExt;
    let (fa, fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let len = fa.metadata().unwrap().len();
    assert_eq!(len, fb.metadata().unwrap().len(), "{} and {} differ in length", a.display(), b.display());
    let mut all: Vec<(u64, u64)> = ranges(a).into_iter().chain(ranges(b)).map(|r| (r.start, r.end)).collect();
    all.sort();
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for (start, end) in all {
        let mut p = start;
        while p < end.min(len) {
            let k = ((end.min(len) - p) as usize).min(x.len());
            fa.read_exact_at(&mut x[..k], p).unwrap();
            fb.read_exact_at(&mut y[..k], p).unwrap();
            assert!(x[..k] == y[..k], "{} and {} differ near byte {p}", a.display(), b.display());
            p += k as u64;
        }
    }
}
