//! `image-builder build --packages DIR`: the .deb files carried in one archive in the FAT root, checked with tools
//! this project did not write (fsck.fat, mtools, GNU tar, dpkg-deb); the config says where they are; `inspect`
//! shows them; a boot partition too small for them is refused before anything is written.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds a small real Debian package `name_version_all.deb` in `out`.
fn make_deb(out: &Path, name: &str, version: &str, payload_bytes: usize) -> PathBuf {
    let src = tempfile::tempdir().unwrap();
    let d = src.path();
    std::fs::create_dir_all(d.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(d.join("usr/share").join(name)).unwrap();
    // Incompressible content so the package has the size asked for.
    let mut data = vec![0u8; payload_bytes];
    let mut x: u32 = 0x9e37_79b9 ^ payload_bytes as u32;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(d.join("usr/share").join(name).join("data"), data).unwrap();
    std::fs::write(
        d.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: test <test@example.org>\n\
             Description: test package\n"
        ),
    )
    .unwrap();
    let deb = out.join(format!("{name}_{}_all.deb", version.replace(':', "%3a")));
    run_ok(
        Command::new("dpkg-deb")
            .args(["-b", "--root-owner-group", "-Zxz"])
            .arg(d)
            .arg(&deb),
    );
    deb
}

fn p1(image: &Path) -> (u64, u64) {
    let (_, parts, _) = sfdisk(image);
    (parts[0].0 * 512, parts[0].1 * 512)
}

#[test]
fn packages_are_carried_in_one_archive_in_the_fat_root() {
    let dir = tempfile::tempdir().unwrap();
    let debs = dir.path().join("debs");
    std::fs::create_dir_all(debs.join(".apt/archives")).unwrap();
    let files = [
        make_deb(&debs, "tiny-lib", "1:2.0-1+deb12u1", 10_000),
        make_deb(&debs, "tiny-tool", "0.9~rc1-3", 300_000),
        make_deb(
            &debs,
            "a-package-with-a-rather-long-name-like-python3-charset-normalizer",
            "3.0.1-2",
            50_000,
        ),
    ];
    // What ci/fetch-packages leaves beside the files is not carried.
    std::fs::write(debs.join(".apt/archives/lock"), "").unwrap();
    std::fs::write(debs.join("README"), "not a package").unwrap();
    let deb_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();

    let base = base_image("bookworm");
    let base_sum = fingerprint(&base);
    let agent = fake_agent(dir.path(), 183);
    let out = dir.path().join("cluster.img");
    let o = build(&[
        "--base",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--packages",
        debs.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        o.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["packages"]["count"], 3, "{summary:#}");
    assert_eq!(summary["packages"]["bytes"], deb_bytes, "{summary:#}");
    assert_eq!(fingerprint(&base), base_sum, "the base image changed");

    let (off, len) = p1(&out);
    fsck_fat(&out, off, len);
    let root: Vec<String> = mdir(&out, off)
        .into_iter()
        .map(|n| n.to_lowercase())
        .collect();
    assert!(root.contains(&"picluster-debs.tar".to_string()), "{root:?}");
    assert!(
        !root.iter().any(|n| n.ends_with(".deb") || n == "readme"),
        "only the archive goes onto the card: {root:?}"
    );

    // The archive, copied out with mtools, is a tar GNU tar reads, holding the three packages byte-identical.
    let tar = dir.path().join("copy.tar");
    run_ok(
        Command::new("mcopy")
            .arg("-i")
            .arg(format!("{}@@{off}", out.display()))
            .arg("::/picluster-debs.tar")
            .arg(&tar),
    );
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&tar));
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    let mut want: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(names, want);
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&unpacked),
    );
    for f in &files {
        let back = unpacked.join(f.file_name().unwrap());
        assert_eq!(sha256(&back), sha256(f), "{}", f.display());
        let fields = run_ok(Command::new("dpkg-deb").arg("-f").arg(&back).arg("Package"));
        assert!(!fields.trim().is_empty());
    }

    // The config tells the agent where they are and where to unpack them.
    let config = mtype(&out, off, "cluster.toml");
    assert!(
        config.contains("packages_dir = \"/var/cache/picluster/debs\""),
        "{config}"
    );
    assert!(
        config.contains("packages_archive = \"/boot/firmware/picluster-debs.tar\""),
        "{config}"
    );

    // inspect shows them.
    let o = Command::new(bin())
        .args(["inspect", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["packages"]["count"], 3, "{:#}", r["packages"]);
    assert_eq!(r["packages"]["bytes"], deb_bytes);
    assert!(r["warnings"].as_array().unwrap().is_empty(), "{r:#}");
    let text = run_ok(Command::new(bin()).arg("inspect").arg(&out));
    assert!(
        text.contains("packages for an offline first boot: 3 .deb files"),
        "{text}"
    );

    // Without --packages, inspect says there are none and the config names none.
    let plain = dir.path().join("plain.img");
    let o = build(&[
        "--base",
        base.to_str().unwrap(),
        "--out",
        plain.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = run_ok(Command::new(bin()).arg("inspect").arg(&plain));
    assert!(
        text.contains("packages for an offline first boot: none"),
        "{text}"
    );
    assert!(!mtype(&plain, off, "cluster.toml").contains("packages_"));
}

/// A build that must fail: the message, the base image unchanged, nothing left in the output directory.
fn refused(base: &Path, extra: &[&str], expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let before = fingerprint(base);
    let agent = fake_agent(dir.path(), 183);
    let out = out_dir.join("cluster.img.xz");
    let mut args = vec![
        "--base",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = build(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "build should fail: {args:?}");
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
    }
    assert_eq!(fingerprint(base), before, "the base image changed");
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "output or temporary files left: {left:?}");
    stderr
}

#[test]
fn packages_too_big_for_the_boot_partition_are_refused_with_the_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let debs = dir.path().join("debs");
    std::fs::create_dir(&debs).unwrap();
    make_deb(&debs, "small", "1.0", 1000);
    // A 600 MiB "package" (sparse: an ar header, then a hole) on a 512 MiB boot partition.
    let big = debs.join("huge_1.0_arm64.deb");
    let mut f = std::fs::File::create(&big).unwrap();
    std::io::Write::write_all(&mut f, b"!<arch>\n").unwrap();
    f.set_len(600 << 20).unwrap();
    drop(f);
    let e = refused(
        &base_image("bookworm"),
        &["--packages", debs.to_str().unwrap()],
        &[
            "boot partition is too small for the packages",
            "2 .deb files of 600.0 MiB",
            "MiB free",
            "MiB short",
            "--base-status",
            "without --packages",
        ],
    );
    assert!(e.contains(debs.to_str().unwrap()), "{e}");
}

#[test]
fn a_packages_dir_without_packages_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(
        &base_image("bookworm"),
        &["--packages", empty.to_str().unwrap()],
        &["holds no .deb files", "ci/fetch-packages"],
    );
    let fake = dir.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("x_1.0_arm64.deb"), "<html>404 Not Found</html>").unwrap();
    refused(
        &base_image("bookworm"),
        &["--packages", fake.to_str().unwrap()],
        &["x_1.0_arm64.deb is not a Debian package"],
    );
    refused(
        &base_image("bookworm"),
        &["--packages", dir.path().join("missing").to_str().unwrap()],
        &["--packages", "missing"],
    );
}
