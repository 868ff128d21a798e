//! `prepare-disk` on real loop devices holding Raspberry-Pi-OS-shaped images (`ci/make-base-image`), copied into
//! sparse files sized like real cards, as a flashed card is: the image's own table ends early.
//!
//! Needs root, `losetup`, `sfdisk`, e2fsprogs and xfsprogs. Every loop device and mount is undone by a guard, even
//! when a test fails.

use firstboot_agent::config::ClusterConfig;
use firstboot_agent::disk::blockdev::mounts;
use firstboot_agent::disk::{prepare_disk, DiskError, PrepareOptions, PrepareReport, StopPoint};
use firstboot_agent::layout::{self, BrickLayout, TableKind, SECTOR};
use firstboot_agent::state::StateStore;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const GIB: u64 = 1 << 30;
const GPT_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
const GPT_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// Runs a command; panics with its output unless it succeeds; returns stdout.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_stdin(program: &str, args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process may grow a mounted ext4 (CAP_SYS_RESOURCE, bit 24 of CapEff).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    eff & (1 << 24) != 0
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests attach loop devices and need root"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gen {
    /// 4 MiB alignment.
    Bookworm,
    /// 8 MiB alignment.
    Trixie,
}

/// The base image of a generation, made once and kept in the target dir (remade when the script changes).
fn base(gen: Gen) -> PathBuf {
    static BW: OnceLock<PathBuf> = OnceLock::new();
    static TX: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name) = match gen {
        Gen::Bookworm => (&BW, "bookworm"),
        Gen::Trixie => (&TX, "trixie"),
    };
    cell.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/make-base-image");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("disk-base-{name}.img"));
        let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        if fresh(&out).is_none() || fresh(&out) < fresh(&script) {
            sh(
                script.to_str().unwrap(),
                &["--out", out.to_str().unwrap(), "--generation", name],
            );
        }
        out
    })
    .clone()
}

/// A card: a sparse file holding a copy of the base image, attached to a loop device. Dropping it unmounts
/// everything under its directory and detaches the loop device.
struct Card {
    dev: String,
    dir: tempfile::TempDir,
    total_sectors: u64,
}

impl Card {
    /// A card of `gib` GiB made from the generation's image, converted to GPT when `gpt`.
    fn new(gen: Gen, gib: u64, gpt: bool) -> Card {
        Self::with_table(gen, gib, gpt, |_| {})
    }

    /// Like `new`, but `edit` may rewrite the image file's table before the card is cut to size.
    fn with_table(gen: Gen, gib: u64, gpt: bool, edit: impl FnOnce(&Path)) -> Card {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("disk-test-")
            .tempdir()
            .unwrap();
        let img = dir.path().join("card.img");
        sh(
            "cp",
            &[
                "--sparse=always",
                base(gen).to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        if gpt {
            to_gpt(&img);
        }
        edit(&img);
        sh(
            "truncate",
            &["-s", &format!("{}", gib * GIB), img.to_str().unwrap()],
        );
        let dev = sh("losetup", &["-f", "--show", "-P", img.to_str().unwrap()])
            .trim()
            .to_string();
        std::fs::write(
            dir.path().join("fstab"),
            "proc /proc proc defaults 0 0\nPARTUUID=01234567-02 / ext4 defaults,noatime 0 1\n",
        )
        .unwrap();
        Card {
            dev,
            dir,
            total_sectors: gib * GIB / SECTOR,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self) -> ClusterConfig {
        let mut c = ClusterConfig::generate("disk-test", 4);
        c.storage.brick_mount = self.path("brick");
        c.agent.state_dir = self.path("state");
        c
    }

    fn store(&self) -> StateStore {
        StateStore::open(&self.path("state")).unwrap()
    }

    fn opts(&self, stop_after: Option<StopPoint>) -> PrepareOptions {
        PrepareOptions {
            device: Some(PathBuf::from(&self.dev)),
            dry_run: false,
            fstab: self.path("fstab"),
            stop_after,
        }
    }

    fn prepare(&self) -> PrepareReport {
        prepare_disk(&self.config(), &self.store(), &self.opts(None))
            .unwrap_or_else(|e| panic!("prepare-disk on {}: {e}", self.dev))
    }

    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }

    /// The table as `sfdisk --json` sees it.
    fn sfdisk(&self) -> Value {
        serde_json::from_str(&sh("sfdisk", &["--json", &self.dev])).unwrap()
    }

    /// (start, end) of partition `n` per sfdisk.
    fn extent(&self, n: usize) -> (u64, u64) {
        let t = self.sfdisk();
        let p = &t["partitiontable"]["partitions"][n - 1];
        let start = p["start"].as_u64().unwrap();
        (start, start + p["size"].as_u64().unwrap() - 1)
    }

    /// The layout the project's arithmetic gives for this card.
    fn expected(&self, kind: TableKind) -> BrickLayout {
        let (p1, _) = self.extent(1);
        let (p2, _) = self.extent(2);
        let align = layout::detect_alignment(&[p1, p2]);
        layout::brick_layout(
            self.total_sectors,
            kind,
            align,
            p2,
            50,
            layout::MIN_ROOT_SECTORS,
        )
        .unwrap()
    }

    /// Tells the kernel the partitions with util-linux (test set-up, independent of the code under test) and
    /// makes missing device nodes.
    fn tell_kernel(&self) {
        let _ = Command::new("partx")
            .args(["-d", &self.dev])
            .stderr(std::process::Stdio::null())
            .status();
        sh("partx", &["-a", &self.dev]);
        let n = self.sfdisk()["partitiontable"]["partitions"]
            .as_array()
            .unwrap()
            .len();
        for i in 1..=n as u32 {
            let name = format!("{}p{i}", self.dev.trim_start_matches("/dev/"));
            firstboot_agent::disk::blockdev::ensure_node(&name, Path::new(&self.part(i))).unwrap();
        }
    }

    fn mount_points_under_dir(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = mounts()
            .unwrap()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(self.dir.path()))
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v
    }

    fn unmount_all(&self) {
        for mp in self.mount_points_under_dir() {
            let _ = Command::new("umount").arg(&mp).status();
        }
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.unmount_all();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// Rewrites an image's MBR as a GPT with the same partitions (in a copy a little larger than the image, so the
/// GPT's backup header sits at the image's end, not the card's).
fn to_gpt(img: &Path) {
    let t: Value = serde_json::from_str(&sh("sfdisk", &["--json", img.to_str().unwrap()])).unwrap();
    let parts = t["partitiontable"]["partitions"].as_array().unwrap();
    let len = std::fs::metadata(img).unwrap().len();
    sh(
        "truncate",
        &["-s", &format!("{}", len + (1 << 20)), img.to_str().unwrap()],
    );
    let mut script = String::from("label: gpt\nunit: sectors\n");
    for (i, p) in parts.iter().enumerate() {
        script.push_str(&format!(
            "start={}, size={}, type={}\n",
            p["start"],
            p["size"],
            if i == 0 { GPT_DATA } else { GPT_LINUX }
        ));
    }
    sh_stdin(
        "sfdisk",
        &[
            "--quiet",
            "--wipe",
            "always",
            "--wipe-partitions",
            "never",
            img.to_str().unwrap(),
        ],
        &script,
    );
}

/// Checks a prepared card: exact p3 and p2 from the layout, ext4 grown and clean, XFS with 512-byte inodes mounted
/// with its fstab entry and brick directory; then a second run changes nothing.
fn check_prepared(card: &Card, kind: TableKind, report: &PrepareReport) {
    let want = card.expected(kind);
    let t = card.sfdisk();
    let label = t["partitiontable"]["label"].as_str().unwrap();
    assert_eq!(label, if kind == TableKind::Gpt { "gpt" } else { "dos" });
    if kind == TableKind::Gpt {
        assert_eq!(
            t["partitiontable"]["lastlba"].as_u64(),
            Some(card.total_sectors - 34),
            "GPT headers describe the real card"
        );
        sh("sfdisk", &["--verify", &card.dev]);
    }
    assert_eq!(card.extent(3), (want.brick_start, want.brick_end), "p3");
    assert_eq!(card.extent(2), (want.root_start, want.root_end), "p2");
    assert_eq!((report.brick.start, report.brick.end), card.extent(3));
    assert_eq!(report.table, kind);

    // The XFS: 512-byte inodes, mounted at the brick mount, recorded in state and fstab by UUID.
    let mount = card.path("brick");
    let info = sh("xfs_info", &[mount.to_str().unwrap()]);
    assert!(info.contains("isize=512"), "{info}");
    let devno = std::fs::metadata(card.part(3)).unwrap();
    let m = mounts().unwrap();
    let here = m
        .iter()
        .find(|m| m.mount_point == mount)
        .expect("brick mounted");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        firstboot_agent::disk::blockdev::split_dev(devno.rdev()),
        here.dev
    );
    assert!(mount.join("brick").is_dir());
    let uuid = sh("blkid", &["-p", "-s", "UUID", "-o", "value", &card.part(3)])
        .trim()
        .to_string();
    assert_eq!(report.brick_fs_uuid.as_deref(), Some(uuid.as_str()));
    let state = card.store().load().unwrap();
    assert_eq!(state.disk.brick_fs_uuid.as_deref(), Some(uuid.as_str()));
    assert!(state.disk.completed_at.is_some());
    let fstab = std::fs::read_to_string(card.path("fstab")).unwrap();
    assert!(fstab.starts_with("proc /proc proc defaults 0 0\nPARTUUID=01234567-02 /"));
    let ours: Vec<&str> = fstab
        .lines()
        .filter(|l| l.contains(mount.to_str().unwrap()))
        .collect();
    assert_eq!(ours.len(), 1, "{fstab}");
    assert!(ours[0].starts_with(&format!("UUID={uuid}")) && ours[0].contains("nofail"));

    // Second run: nothing to do, nothing changes.
    let before = card.sfdisk();
    let again = card.prepare();
    assert!(!again.changed, "second run changed: {:?}", again.actions);
    assert!(again.actions.is_empty());
    assert_eq!(card.sfdisk(), before);
    assert_eq!(std::fs::read_to_string(card.path("fstab")).unwrap(), fstab);

    // The root ext4 fills partition 2 (within one block group's metadata) and is clean.
    card.unmount_all();
    let p2_bytes = (want.root_end - want.root_start + 1) * SECTOR;
    let h = sh("dumpe2fs", &["-h", &card.part(2)]);
    let field = |name: &str| -> u64 {
        h.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse().unwrap())
            .unwrap()
    };
    let fs_bytes = field("Block count:") * field("Block size:");
    assert!(
        fs_bytes <= p2_bytes && fs_bytes + (8 << 20) > p2_bytes,
        "ext4 {fs_bytes} bytes in a {p2_bytes}-byte partition"
    );
    sh("e2fsck", &["-fn", &card.part(2)]);
}

#[test]
fn disk_mbr_bookworm_8g() {
    let card = Card::new(Gen::Bookworm, 8, false);
    let before = card.sfdisk();

    // A dry run reports the plan and changes nothing.
    let mut opts = card.opts(None);
    opts.dry_run = true;
    let dry = prepare_disk(&card.config(), &card.store(), &opts).unwrap();
    assert!(dry.dry_run && dry.changed);
    assert!(dry.actions.iter().any(|a| a.step == "format"));
    assert_eq!(card.sfdisk(), before);
    assert!(!card.store().path().exists());
    assert!(!card.path("brick").exists());

    let report = card.prepare();
    assert!(report.changed && report.made_brick_fs);
    assert_eq!(report.align_sectors, 8192);
    // An 8 GiB MBR card with 4 MiB alignment: exactly half each side of 4 GiB.
    assert_eq!((report.brick.start, report.brick.end), (8388608, 16777215));
    check_prepared(&card, TableKind::Mbr, &report);
}

#[test]
fn disk_mbr_trixie_64g_via_cli() {
    let card = Card::new(Gen::Trixie, 64, false);
    let config = card.path("cluster.toml");
    std::fs::write(&config, card.config().to_toml()).unwrap();
    let run = |stop: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_firstboot-agent"));
        cmd.args([
            "--config",
            config.to_str().unwrap(),
            "prepare-disk",
            "--json",
        ])
        .args([
            "--device",
            &card.dev,
            "--fstab",
            card.path("fstab").to_str().unwrap(),
        ]);
        if let Some(s) = stop {
            cmd.env("FIRSTBOOT_AGENT_STOP_AFTER", s);
        }
        cmd.output().unwrap()
    };
    // A crash injected through the environment stops the program with an error...
    let out = run(Some("kernel"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopped after step"), "{err}");
    // ...and the next run finishes the job and prints JSON.
    let out = run(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: PrepareReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.align_sectors, 16384);
    assert!(report.actions.iter().any(|a| a.step == "root"));
    assert!(!report.actions.iter().any(|a| a.step == "table"));
    check_prepared(&card, TableKind::Mbr, &report);
}

#[test]
fn disk_gpt_bookworm_64g() {
    let card = Card::new(Gen::Bookworm, 64, true);
    let report = card.prepare();
    assert!(report
        .actions
        .iter()
        .any(|a| a.step == "table" && a.detail.contains("backup header")));
    check_prepared(&card, TableKind::Gpt, &report);
}

#[test]
fn disk_gpt_trixie_8g_root_mounted_grows_online() {
    let card = Card::new(Gen::Trixie, 8, true);
    // The root partition is mounted, as on a booted Pi: the kernel must learn the new size of a busy partition
    // and resize2fs must grow the filesystem online.
    card.tell_kernel();
    let root = card.path("root");
    std::fs::create_dir_all(&root).unwrap();
    sh("mount", &[&card.part(2), root.to_str().unwrap()]);
    if !has_cap_sys_resource() {
        // This machine drops CAP_SYS_RESOURCE, which the kernel wants for an online ext4 resize: the run must say
        // so clearly, and a run with the root unmounted must finish the job.
        eprintln!("note: no CAP_SYS_RESOURCE here: checking the clear error and the offline recovery instead");
        let err = prepare_disk(&card.config(), &card.store(), &card.opts(None)).unwrap_err();
        assert!(err.to_string().contains("CAP_SYS_RESOURCE"), "{err}");
        // The table and the kernel's view of the busy root partition were already updated.
        let want = card.expected(TableKind::Gpt);
        assert_eq!(card.extent(2), (want.root_start, want.root_end));
        let sys = format!(
            "/sys/class/block/{}p2/size",
            card.dev.trim_start_matches("/dev/")
        );
        let ksize: u64 = std::fs::read_to_string(sys)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(ksize, want.root_end - want.root_start + 1);
        sh("umount", &[root.to_str().unwrap()]);
        let report = card.prepare();
        let grow = report.actions.iter().find(|a| a.step == "root").unwrap();
        assert!(grow.detail.contains("offline"), "{}", grow.detail);
        check_prepared(&card, TableKind::Gpt, &report);
        return;
    }
    let report = card.prepare();
    let grow = report.actions.iter().find(|a| a.step == "root").unwrap();
    assert!(grow.detail.contains("online"), "{}", grow.detail);
    let df = nix::sys::statvfs::statvfs(&root).unwrap();
    let seen = df.blocks() * df.fragment_size();
    assert!(seen > 3 * GIB, "mounted root sees {seen} bytes");
    check_prepared(&card, TableKind::Gpt, &report);
}

#[test]
fn disk_existing_xfs_on_p3_is_kept_with_its_data() {
    let card = Card::new(Gen::Bookworm, 8, false);
    let want = card.expected(TableKind::Mbr);
    // Someone (an earlier flash) left a brick: lay out p3, make an XFS, write a file.
    sh_stdin(
        "sfdisk",
        &["--quiet", "--no-reread", "-N", "3", &card.dev],
        &format!(
            "start={}, size={}, type=83\n",
            want.brick_start,
            want.brick_end - want.brick_start + 1
        ),
    );
    card.tell_kernel();
    sh("mkfs.xfs", &["-q", "-i", "size=512", &card.part(3)]);
    let old_uuid = sh("blkid", &["-p", "-s", "UUID", "-o", "value", &card.part(3)])
        .trim()
        .to_string();
    let tmp = card.path("old");
    std::fs::create_dir_all(&tmp).unwrap();
    sh("mount", &[&card.part(3), tmp.to_str().unwrap()]);
    std::fs::write(tmp.join("precious.txt"), "written before the run\n").unwrap();
    sh("umount", &[tmp.to_str().unwrap()]);

    let report = card.prepare();
    assert!(!report.made_brick_fs, "adopted, not made");
    assert_eq!(report.brick_fs_uuid.as_deref(), Some(old_uuid.as_str()));
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("already holds an XFS")));
    assert!(!report.actions.iter().any(|a| a.detail.contains("mkfs")));
    assert_eq!(
        std::fs::read_to_string(card.path("brick/precious.txt")).unwrap(),
        "written before the run\n"
    );
    check_prepared(&card, TableKind::Mbr, &report);
}

#[test]
fn disk_foreign_filesystem_on_p3_is_refused() {
    let card = Card::new(Gen::Trixie, 8, false);
    let want = card.expected(TableKind::Mbr);
    sh_stdin(
        "sfdisk",
        &["--quiet", "--no-reread", "-N", "3", &card.dev],
        &format!(
            "start={}, size={}, type=83\n",
            want.brick_start,
            want.brick_end - want.brick_start + 1
        ),
    );
    card.tell_kernel();
    sh("mkfs.ext4", &["-q", "-L", "somedata", &card.part(3)]);
    let err = prepare_disk(&card.config(), &card.store(), &card.opts(None)).unwrap_err();
    assert!(
        matches!(err, DiskError::ForeignFilesystem { ref fstype, .. } if fstype == "ext4"),
        "{err}"
    );
    assert!(err.to_string().contains("wipefs"), "{err}");
    let label = sh(
        "blkid",
        &["-p", "-s", "LABEL", "-o", "value", &card.part(3)],
    );
    assert_eq!(label.trim(), "somedata", "the ext4 is untouched");
    assert!(!card.path("brick").join("brick").exists());
}

#[test]
fn disk_table_for_16g_card_on_8g_card_is_fixed() {
    for gpt in [false, true] {
        let kind = if gpt { TableKind::Gpt } else { TableKind::Mbr };
        // The builder laid the table out for 16 GiB (p3 to the end of 16 GiB); the card has 8.
        let card = Card::with_table(Gen::Bookworm, 8, gpt, |img| {
            sh(
                "truncate",
                &["-s", &format!("{}", 16 * GIB), img.to_str().unwrap()],
            );
            if gpt {
                sh(
                    "sfdisk",
                    &[
                        "--quiet",
                        "--relocate",
                        "gpt-bak-std",
                        img.to_str().unwrap(),
                    ],
                );
            }
            let l16 = layout::brick_layout(
                16 * GIB / SECTOR,
                kind,
                8192,
                1056768,
                50,
                layout::MIN_ROOT_SECTORS,
            )
            .unwrap();
            sh_stdin(
                "sfdisk",
                &["--quiet", "--no-reread", "-N", "2", img.to_str().unwrap()],
                &format!("start=1056768, size={}\n", l16.root_end - 1056768 + 1),
            );
            sh_stdin(
                "sfdisk",
                &["--quiet", "--no-reread", "-N", "3", img.to_str().unwrap()],
                &format!(
                    "start={}, size={}\n",
                    l16.brick_start,
                    l16.brick_end - l16.brick_start + 1
                ),
            );
        });
        if gpt {
            // The GPT claims sectors past the end: util-linux does not even accept it as a GPT.
            let label = card.sfdisk()["partitiontable"]["label"].clone();
            assert_eq!(
                label, "dos",
                "sfdisk sees only the protective MBR before the run"
            );
        } else {
            assert!(
                card.extent(3).1 >= card.total_sectors,
                "p3 runs past the end before the run"
            );
        }
        let report = card.prepare();
        assert!(report.actions.iter().any(|a| a.step == "table"));
        check_prepared(&card, kind, &report);
    }
}

#[test]
fn disk_crash_after_any_step_recovers() {
    let card = Card::new(Gen::Trixie, 8, false);
    let config = card.config();
    let store = card.store();
    // Each run stops after one more step; the next run must finish what the previous one left.
    let steps = [
        (StopPoint::Table, "table"),
        (StopPoint::Kernel, "kernel"),
        (StopPoint::Root, "root"),
        (StopPoint::FormatStarted, "format-started"),
        (StopPoint::Format, "format"),
        (StopPoint::Fstab, "fstab"),
        (StopPoint::Mount, "mount"),
    ];
    for (stop, name) in steps {
        let err = prepare_disk(&config, &store, &card.opts(Some(stop))).unwrap_err();
        assert!(
            matches!(err, DiskError::Stopped(s) if s == stop),
            "{name}: {err}"
        );
    }
    // The interrupted format was finished (the partition was this flash's to format), and the card is complete.
    let report = card.prepare();
    assert!(report.made_brick_fs);
    assert!(report
        .actions
        .iter()
        .any(|a| a.detail.contains("brick directory")));
    let state = store.load().unwrap();
    assert!(state.disk.brick_formatted_at.is_some());
    check_prepared(&card, TableKind::Mbr, &report);
}

#[test]
fn disk_existing_xfs_elsewhere_is_not_moved() {
    let card = Card::new(Gen::Trixie, 8, false);
    // An XFS in a partition 3 that is not where the layout would put it (5 GiB..7 GiB): it must stay where it is,
    // with its data, and root grows up to it.
    let (start, sectors) = (5 * GIB / SECTOR, 2 * GIB / SECTOR);
    sh_stdin(
        "sfdisk",
        &["--quiet", "--no-reread", "-N", "3", &card.dev],
        &format!("start={start}, size={sectors}, type=83\n"),
    );
    card.tell_kernel();
    sh("mkfs.xfs", &["-q", "-i", "size=512", &card.part(3)]);
    let tmp = card.path("old");
    std::fs::create_dir_all(&tmp).unwrap();
    sh("mount", &[&card.part(3), tmp.to_str().unwrap()]);
    std::fs::write(tmp.join("precious.txt"), "kept\n").unwrap();
    sh("umount", &[tmp.to_str().unwrap()]);

    let report = card.prepare();
    assert_eq!(card.extent(3), (start, start + sectors - 1));
    assert_eq!(card.extent(2).1, start - 1);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("kept where it is")),
        "{:?}",
        report.warnings
    );
    assert!(!report.made_brick_fs);
    assert_eq!(
        std::fs::read_to_string(card.path("brick/precious.txt")).unwrap(),
        "kept\n"
    );
    let again = card.prepare();
    assert!(!again.changed, "{:?}", again.actions);
    card.unmount_all();
    sh("e2fsck", &["-fn", &card.part(2)]);
}
