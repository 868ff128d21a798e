//! `image-builder flash` on loop devices (needs root): writes only mapped blocks, verifies, refuses a mounted
//! device, a partition, a too-small device, the running system's disk, and asks unless --yes.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop device over a sparse file, detached (and unmounted) on drop, even when the test fails.
struct Loop {
    dev: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Loop {
    fn new(backing: &Path) -> Loop {
        let dev = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(backing));
        Loop {
            dev: PathBuf::from(dev.trim()),
            mounts: Vec::new(),
        }
    }

    /// Partition nodes after `partx -a` (creating missing /dev nodes from sysfs, as this machine needs).
    fn partition(&self, n: u32) -> PathBuf {
        let _ = Command::new("partx").arg("-a").arg(&self.dev).output();
        let name = self.dev.file_name().unwrap().to_string_lossy().into_owned();
        let node = PathBuf::from(format!("/dev/{name}p{n}"));
        if !node.exists() {
            let devnum =
                std::fs::read_to_string(format!("/sys/block/{name}/{name}p{n}/dev")).unwrap();
            let (ma, mi) = devnum.trim().split_once(':').unwrap();
            run_ok(Command::new("mknod").arg(&node).args(["b", ma, mi]));
        }
        node
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        for m in self.mounts.drain(..) {
            let _ = Command::new("umount").arg(&m).output();
        }
        let _ = Command::new("partx").arg("-d").arg(&self.dev).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).output();
    }
}

fn flash(image: &Path, dev: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("flash")
        .arg(image)
        .arg(dev)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn image_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let agent = fake_agent(dir, 183);
    let raw = dir.join("c.img");
    let zst = dir.join("z.img.zst");
    for out in [&raw, &zst] {
        let o = build(&[
            "--base",
            base_image("bookworm").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--agent",
            agent.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    (raw, zst)
}

#[test]
fn flash_writes_mapped_blocks_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, zst) = image_pair(dir.path());
    let backing = dir.path().join("card");
    let f = std::fs::File::create(&backing).unwrap();
    f.set_len(2 << 30).unwrap();
    // Junk where the image has data, which flashing must overwrite.
    f.write_all_at(&vec![0xa5u8; 1 << 20], 8192 * 512).unwrap();
    drop(f);
    let lo = Loop::new(&backing);

    // Without --yes and without a terminal: refused, nothing written.
    let before = fingerprint(&backing);
    let o = flash(&raw, &lo.dev, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    assert_eq!(fingerprint(&backing), before);

    let zst_raw = dir.path().join("z.raw");
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "zstd -q -dc {} | dd of={} bs=1M conv=sparse status=none",
        zst.display(),
        zst_raw.display()
    )));
    for (image, raw) in [(&zst, &zst_raw), (&raw, &raw)] {
        let o = flash(image, &lo.dev, &["--yes", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["verified"], true);
        let image_len = std::fs::metadata(raw).unwrap().len();
        assert!(
            s["written_bytes"].as_u64().unwrap() < image_len / 10,
            "only mapped blocks are written"
        );
        // Every block the bmap maps is on the card, byte for byte.
        let bmap_file = PathBuf::from(format!(
            "{}.bmap",
            image.to_string_lossy().trim_end_matches(".zst")
        ));
        let map = image_builder::bmap::parse(&std::fs::read_to_string(&bmap_file).unwrap(), "bmap")
            .unwrap();
        let rf = std::fs::File::open(raw).unwrap();
        let df = std::fs::File::open(&lo.dev).unwrap();
        for r in &map.ranges {
            let (start, end) = r.bytes(map.block_size, map.image_size);
            let mut a = vec![0u8; (end - start) as usize];
            let mut b = vec![0u8; a.len()];
            rf.read_exact_at(&mut a, start).unwrap();
            df.read_exact_at(&mut b, start).unwrap();
            assert!(a == b, "blocks {}-{} differ on the card", r.first, r.last);
        }
        let (_, parts, _) = sfdisk(&lo.dev);
        assert_eq!(parts[0].0, 8192);
    }
    fsck_fat(&backing, 8192 * 512, 1048576 * 512);
    e2fsck(&backing, 1056768 * 512);
}

#[test]
fn flash_refuses_mounted_partition_small_and_root_devices() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = image_pair(dir.path());
    let backing = dir.path().join("card");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let mut lo = Loop::new(&backing);
    let o = flash(&raw, &lo.dev, &["--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A partition of the card is mounted: refused, naming the mount point.
    let p1 = lo.partition(1);
    let p2 = lo.partition(2);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run_ok(Command::new("mount").args(["-o", "ro"]).arg(&p2).arg(&mnt));
    lo.mounts.push(mnt.clone());
    let before = fingerprint(&backing);
    let o = flash(&raw, &lo.dev, &["--yes"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("is mounted on") && e.contains(mnt.to_str().unwrap()),
        "{e}"
    );
    // A partition instead of the whole device.
    let o = flash(&raw, &p1, &["--yes"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("give the whole device"),
        "{e}"
    );
    assert_eq!(fingerprint(&backing), before);

    // A card smaller than the image.
    let small = dir.path().join("small");
    std::fs::File::create(&small)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let lo2 = Loop::new(&small);
    let o = flash(&raw, &lo2.dev, &["--yes"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("smaller than the image"),
        "{e}"
    );

    // Not a block device.
    let o = flash(&raw, &dir.path().join("card"), &["--yes"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a block device"));

    // The disk the running system lives on (checked through the library: nothing is opened for writing).
    let disks = image_builder::blockdev::root_disks();
    assert!(!disks.is_empty());
    let src = run_ok(Command::new("findmnt").args(["-no", "SOURCE", "/"]));
    let src = src.trim();
    if let Some(name) = src.strip_prefix("/dev/") {
        let sys = std::fs::canonicalize(format!("/sys/class/block/{name}")).unwrap();
        let whole = if sys.join("partition").exists() {
            format!(
                "/dev/{}",
                sys.parent().unwrap().file_name().unwrap().to_string_lossy()
            )
        } else {
            src.to_string()
        };
        let dev = image_builder::blockdev::BlockDevice::open(Path::new(&whole)).unwrap();
        let e = dev.check_unused().unwrap_err().to_string();
        assert!(
            e.contains("running system") || e.contains("is mounted on"),
            "{e}"
        );
    }
}
