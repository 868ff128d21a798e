//! Every bad input of the issue: a clear error naming the problem, the input byte-identical, no output and no
//! temporary file left.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a build that must fail; checks the message, the input's fingerprint and the output directory.
fn refused(base: &Path, out_dir: &Path, extra: &[&str], expect: &[&str]) -> String {
    let before = fingerprint(base);
    let listing_before = listing(out_dir);
    let out = out_dir.join("cluster.img");
    let mut args: Vec<String> = vec![
        "--base".into(),
        base.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if !extra.contains(&"--agent") {
        let agent = fake_agent(out_dir.parent().unwrap(), 183);
        args.extend(["--agent".into(), agent.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = Command::new(bin())
        .arg("build")
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "build should fail: {args:?}");
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
    }
    assert_eq!(fingerprint(base), before, "the base image changed");
    assert_eq!(
        listing(out_dir),
        listing_before,
        "output or temporary files left: {stderr}"
    );
    stderr
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn dirs() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    (t, out)
}

#[test]
fn truncated_and_corrupt_compressed_input() {
    let (t, out) = dirs();
    // A truncated xz: the first 2 MiB of a compressed image.
    let head = t.path().join("head.img");
    extract(&base_image("bookworm"), 0, 8 << 20, &head);
    let xz = t.path().join("base.img.xz");
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "xz -1 -c {} | head -c 20000 > {}",
        head.display(),
        xz.display()
    )));
    refused(
        &xz,
        &out,
        &[],
        &["corrupt or truncated", "xz", "base.img.xz"],
    );
    // A gzip file with damaged bytes in the middle.
    let gz = t.path().join("base.img.gz");
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "gzip -1 -c {} > {}",
        head.display(),
        gz.display()
    )));
    let mut data = std::fs::read(&gz).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&gz, data).unwrap();
    refused(&gz, &out, &[], &["corrupt or truncated", "gzip"]);
    // A truncated zstd.
    let zst = t.path().join("base.img.zst");
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "zstd -q -1 -c {} | head -c 30000 > {}",
        head.display(),
        zst.display()
    )));
    refused(&zst, &out, &[], &["corrupt or truncated", "zstd"]);
}

#[test]
fn not_a_disk_image() {
    let (t, out) = dirs();
    let junk = t.path().join("notes.img");
    std::fs::write(&junk, "these are my holiday notes\n".repeat(1000)).unwrap();
    refused(&junk, &out, &[], &["not a disk image", "notes.img"]);
    let tiny = t.path().join("tiny.img");
    std::fs::write(&tiny, b"x").unwrap();
    refused(&tiny, &out, &[], &["not a disk image"]);
}

#[test]
fn not_raspberry_pi_os() {
    let (t, out) = dirs();
    // No cmdline.txt on the FAT.
    let img = copy_base("bookworm", t.path(), "nocmdline.img");
    run_ok(
        Command::new("mdel")
            .arg("-i")
            .arg(format!("{}@@{}", img.display(), 8192 * 512))
            .arg("::cmdline.txt"),
    );
    refused(
        &img,
        &out,
        &[],
        &["not a Raspberry Pi OS image", "cmdline.txt"],
    );
    // No config.txt.
    let img = copy_base("bookworm", t.path(), "noconfig.img");
    run_ok(
        Command::new("mdel")
            .arg("-i")
            .arg(format!("{}@@{}", img.display(), 8192 * 512))
            .arg("::config.txt"),
    );
    refused(
        &img,
        &out,
        &[],
        &["not a Raspberry Pi OS image", "config.txt"],
    );
    // Partition 2 is not Linux.
    let img = copy_base("trixie", t.path(), "noroot.img");
    run_ok(
        Command::new("sfdisk")
            .args(["-q", "--part-type"])
            .arg(&img)
            .args(["2", "7"]),
    );
    refused(
        &img,
        &out,
        &[],
        &["not a Raspberry Pi OS image", "partition 2", "not Linux"],
    );
    // Partition 1 is not FAT.
    let img = copy_base("trixie", t.path(), "nofat.img");
    run_ok(
        Command::new("sfdisk")
            .args(["-q", "--part-type"])
            .arg(&img)
            .args(["1", "83"]),
    );
    refused(
        &img,
        &out,
        &[],
        &["not a Raspberry Pi OS image", "partition 1"],
    );
}

#[test]
fn card_smaller_than_image_and_bad_share() {
    let (_t, out) = dirs();
    let base = base_image("bookworm");
    refused(
        &base,
        &out,
        &["--card-size", "100M"],
        &["--card-size", "smaller than the image"],
    );
    // Bigger than the image but too small for a root partition plus a 50% brick.
    refused(&base, &out, &["--card-size", "2G"], &["too small"]);
    refused(
        &base,
        &out,
        &["--brick-share", "0"],
        &["--brick-share 0", "1..99"],
    );
    refused(
        &base,
        &out,
        &["--brick-share", "100"],
        &["--brick-share 100", "1..99"],
    );
}

#[test]
fn boot_partition_too_full() {
    let (t, out) = dirs();
    // An agent bigger than the 512 MiB boot partition (sparse: costs no disk).
    let big = t.path().join("huge-agent");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(600 << 20).unwrap();
    refused(
        &base_image("trixie"),
        &out,
        &["--agent", big.to_str().unwrap(), "--allow-any-agent-arch"],
        &["boot partition is too full", "free"],
    );
}

#[test]
fn output_exists_without_force() {
    let (_t, out) = dirs();
    let existing = out.join("cluster.img");
    std::fs::write(&existing, "precious").unwrap();
    refused(
        &base_image("bookworm"),
        &out,
        &[],
        &["already exists", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "precious");
}

#[test]
fn wrong_architecture_agent() {
    let (t, out) = dirs();
    let x86 = fake_agent(t.path(), 62);
    let e = refused(
        &base_image("bookworm"),
        &out,
        &["--agent", x86.to_str().unwrap()],
        &["x86-64", "aarch64", "agent-62", "--allow-any-agent-arch"],
    );
    assert!(e.contains("ci/build-agent-aarch64"), "{e}");
    let script = t.path().join("agent.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    refused(
        &base_image("bookworm"),
        &out,
        &["--agent", script.to_str().unwrap()],
        &["not an ELF", "agent.sh"],
    );
    let missing = t.path().join("nope");
    refused(
        &base_image("bookworm"),
        &out,
        &["--agent", missing.to_str().unwrap()],
        &["nope"],
    );
}

/// A compression level for a raw output, or outside the format's range: refused before anything is read.
#[test]
fn compression_level_out_of_range() {
    let (_t, out) = dirs();
    let base = base_image("bookworm");
    refused(
        &base,
        &out,
        &["--compression-level", "3"],
        &["--compression-level", "raw image"],
    );
    let o = Command::new(bin())
        .arg("build")
        .arg("--base")
        .arg(&base)
        .arg("--out")
        .arg(out.join("cluster.img.xz"))
        .arg("--agent")
        .arg(fake_agent(out.parent().unwrap(), 183))
        .args(["--compression-level", "10"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("outside 0..=9"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(listing(&out).is_empty());
}

#[test]
fn output_name_must_say_format() {
    let (_t, out) = dirs();
    let o = Command::new(bin())
        .arg("build")
        .arg("--base")
        .arg(base_image("bookworm"))
        .arg("--out")
        .arg(out.join("cluster.iso"))
        .arg("--agent")
        .arg(fake_agent(out.parent().unwrap(), 183))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".img.xz"));
    assert!(listing(&out).is_empty());
}

/// Interrupted (SIGTERM, as Ctrl-C would send SIGINT) in the middle of a build: temporary files are removed and
/// no output appears.
#[test]
fn interrupted_build_leaves_nothing() {
    let (_t, out) = dirs();
    let agent = fake_agent(out.parent().unwrap(), 183);
    let base = base_image("bookworm");
    let before = fingerprint(&base);
    let mut child = Command::new(bin())
        .arg("build")
        .arg("--base")
        .arg(&base)
        .arg("--out")
        .arg(out.join("c.img.xz"))
        .arg("--agent")
        .arg(&agent)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (with a deadline) until the build has created its temporary files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while listing(&out).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary files appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "build ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(10)); // poll interval, not synchronisation
    }
    nix_kill(child.id());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(listing(&out), Vec::<String>::new());
    assert_eq!(fingerprint(&base), before);
}

fn nix_kill(pid: u32) {
    run_ok(Command::new("kill").arg("-TERM").arg(pid.to_string()));
}
