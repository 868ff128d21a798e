//! Offline first boot: packages carried on the card are installed by real dpkg (into a private root, never the
//! host's), in an order dpkg accepts, without downgrading what the system has; and an agent without its packages
//! and without a network says on its status page what it waits for, then carries on when they arrive.
//! Needs root (the agent test runs it in private network and mount namespaces), Debian's dpkg, util-linux, curl.

use firstboot_agent::packages::{self, DpkgTools};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Builds `name_version_all.deb` in `out` with `fields` (extra control lines) and one file under /usr/share/name.
fn make_deb(out: &Path, name: &str, version: &str, fields: &str) -> PathBuf {
    let src = tempfile::tempdir().unwrap();
    let d = src.path();
    std::fs::create_dir_all(d.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(d.join("usr/share").join(name)).unwrap();
    std::fs::write(
        d.join("usr/share").join(name).join("version"),
        format!("{name} {version}\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: test <test@example.org>\n\
             Description: test package\n{fields}"
        ),
    )
    .unwrap();
    let deb = out.join(format!("{name}_{version}_all.deb"));
    let o = Command::new("dpkg-deb")
        .args(["-b", "--root-owner-group"])
        .arg(d)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "dpkg-deb: {o:?}");
    deb
}

/// An empty dpkg database under `root`.
fn empty_root(root: &Path) {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
}

fn tools(root: &Path) -> DpkgTools {
    DpkgTools {
        root: Some(root.to_path_buf()),
        ..Default::default()
    }
}

fn installed_version(root: &Path, pkg: &str) -> Option<String> {
    tools(root)
        .installed()
        .unwrap()
        .get(pkg)
        .and_then(|v| v.first().map(|i| i.version.clone()))
}

#[test]
fn carried_debs_install_in_dependency_order_without_downgrades() {
    let w = tempfile::tempdir().unwrap();
    let root = w.path().join("root");
    empty_root(&root);
    let debs = w.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    // Name order is not dependency order: `app` needs `zlib-ish`, which pre-depends on `mid` (dpkg refuses a
    // pre-dependency that is only unpacked in the same `dpkg -i`: it goes in a stage of its own, first); `base-lib`
    // is on the system at a newer version.
    make_deb(
        &debs,
        "app",
        "1.0",
        "Depends: zlib-ish (>= 1.0), base-lib (>= 2.0)\n",
    );
    make_deb(&debs, "zlib-ish", "1.2", "Pre-Depends: mid\n");
    make_deb(&debs, "mid", "3.0-1", "");
    make_deb(&debs, "base-lib", "2.0-1", "");
    // The system already has base-lib 2.0-1+rpt1 (a newer build, as Raspberry Pi OS has).
    let pre = w.path().join("pre");
    std::fs::create_dir_all(&pre).unwrap();
    make_deb(&pre, "base-lib", "2.0-1+rpt1", "");
    let r = packages::install_debs(&pre, &tools(&root)).unwrap();
    assert_eq!(r.installed, ["base-lib 2.0-1+rpt1"]);

    let report = packages::install_debs(&debs, &tools(&root)).unwrap();
    let mut installed = report.installed.clone();
    installed.sort();
    assert_eq!(installed, ["app 1.0", "mid 3.0-1", "zlib-ish 1.2"]);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.starts_with("base-lib 2.0-1 ")),
        "{report:?}"
    );
    assert_eq!(
        report.passes, 2,
        "the pre-dependency goes in a first dpkg -i of its own: {report:?}"
    );
    assert_eq!(
        installed_version(&root, "base-lib").as_deref(),
        Some("2.0-1+rpt1")
    );
    assert_eq!(installed_version(&root, "app").as_deref(), Some("1.0"));
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/app/version")).unwrap(),
        "app 1.0\n"
    );

    // Again: everything is there, nothing runs dpkg -i.
    let again = packages::install_debs(&debs, &tools(&root)).unwrap();
    assert!(again.installed.is_empty() && again.passes == 0, "{again:?}");
}

#[test]
fn an_install_cut_off_by_a_power_loss_is_done_again_by_real_dpkg() {
    let w = tempfile::tempdir().unwrap();
    let root = w.path().join("root");
    empty_root(&root);
    let debs = w.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    make_deb(&debs, "app", "1.0", "Depends: lib\n");
    make_deb(&debs, "lib", "2.0", "");
    let r = packages::install_debs(&debs, &tools(&root)).unwrap();
    assert_eq!(r.installed.len(), 2, "{r:?}");
    assert_eq!(r.unsafe_io_passes, 1, "new packages, unsafe io: {r:?}");
    assert!(!packages::install_interrupted(&debs));
    // As after a power cut during an install with --force-unsafe-io: dpkg says installed, a file is empty, the
    // marker is there.
    let file = root.join("usr/share/app/version");
    std::fs::write(&file, "").unwrap();
    std::fs::write(debs.join(packages::INSTALL_MARKER), "{\"changes\": []}").unwrap();
    assert!(packages::install_interrupted(&debs));
    let r = packages::install_debs(&debs, &tools(&root)).unwrap();
    assert!(r.recovered, "{r:?}");
    let mut installed = r.installed.clone();
    installed.sort();
    assert_eq!(installed, ["app 1.0", "lib 2.0"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "app 1.0\n");
    assert!(!packages::install_interrupted(&debs));
    // Installed and no marker: nothing to do.
    let r = packages::install_debs(&debs, &tools(&root)).unwrap();
    assert!(
        r.installed.is_empty() && r.passes == 0 && !r.recovered,
        "{r:?}"
    );
}

#[test]
fn a_package_asking_for_an_initramfs_update_is_seen_in_its_control_files() {
    let w = tempfile::tempdir().unwrap();
    let plain = make_deb(w.path(), "plain", "1", "");
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("DEBIAN")).unwrap();
    std::fs::write(
        src.path().join("DEBIAN/control"),
        "Package: hooked\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: t\n",
    )
    .unwrap();
    std::fs::write(
        src.path().join("DEBIAN/triggers"),
        "activate-noawait update-initramfs\n",
    )
    .unwrap();
    let hooked = w.path().join("hooked_1_all.deb");
    let o = Command::new("dpkg-deb")
        .args(["-b", "--root-owner-group"])
        .arg(src.path())
        .arg(&hooked)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let t = DpkgTools::default();
    let d = t.read_deb(&plain).unwrap();
    assert_eq!((d.package.as_str(), d.initramfs_update), ("plain", false));
    let d = t.read_deb(&hooked).unwrap();
    assert_eq!(
        (d.package.as_str(), d.version.as_str(), d.initramfs_update),
        ("hooked", "1", true)
    );
    // Not a package: named.
    let junk = w.path().join("junk_1_all.deb");
    std::fs::write(&junk, "junk").unwrap();
    let err = t.read_deb(&junk).unwrap_err().to_string();
    assert!(err.contains("not a readable Debian package"), "{err}");
}

#[test]
fn a_closure_with_a_missing_dependency_names_it() {
    let w = tempfile::tempdir().unwrap();
    let root = w.path().join("root");
    empty_root(&root);
    let debs = w.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    make_deb(&debs, "needy", "1.0", "Depends: not-carried\n");
    make_deb(&debs, "fine", "1.0", "");
    let err = packages::install_debs(&debs, &tools(&root))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not installed: needy 1.0"), "{err}");
    assert!(err.contains("not-carried"), "{err}");
    // What could be installed was.
    assert_eq!(installed_version(&root, "fine").as_deref(), Some("1.0"));
}

/// Kills the agent when the test ends, passing or not.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(pid: u32, port: u16) -> Option<serde_json::Value> {
    let o = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["curl", "-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/api/status"))
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

fn wait_for(
    pid: u32,
    port: u16,
    what: &str,
    deadline: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + deadline;
    let mut last = None;
    while Instant::now() < end {
        if let Some(s) = status(pid, port) {
            if ok(&s) {
                return s;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} not seen within {deadline:?}; last status: {last:#?}");
}

#[test]
fn agent_without_packages_or_network_says_what_it_waits_for() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let w = tempfile::Builder::new()
        .prefix("pkg-offline-")
        .tempdir()
        .unwrap();
    let bin = w.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // apt-get as on a Pi with no route to the mirror.
    let apt = w.path().join("apt-get");
    std::fs::write(
        &apt,
        "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/apt.log\"\n\
         echo \"W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure \
         resolving 'deb.debian.org'\" >&2\necho 'E: Some index files failed to download.' >&2\nexit 100\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = 17700 + (std::process::id() % 200) as u16;
    let mut config = firstboot_agent::config::ClusterConfig::generate("offline", 4);
    config.agent.api_port = port;
    config.agent.state_dir = w.path().join("state");
    // The agent runs on the host's /usr here: it must not divert the host's gsyncd (it did, before this line,
    // whenever the test got as far as the services).
    config.agent.gsyncd_version_shortcut = false;
    std::fs::write(w.path().join("cluster.toml"), config.to_toml()).unwrap();
    std::fs::write(w.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(w.path().join("fstab"), "").unwrap();

    // Private network (loopback only) and mount namespaces with their own /run: nothing leaves, no host daemon
    // is seen. `exec` keeps one pid from unshare to the agent.
    let script = r#"mount --make-rprivate / && mount -t tmpfs tmpfs /run && ip link set lo up &&
        exec "$AGENT" --config "$W/cluster.toml" run --skip-disk --address 127.0.0.1 \
          --hosts-file "$W/hosts" --fstab "$W/fstab" > "$W/agent.log" 2>&1"#;
    let child = Command::new("unshare")
        .args(["--net", "--mount", "sh", "-c", script])
        .env("W", w.path())
        .env("AGENT", env!("CARGO_BIN_EXE_firstboot-agent"))
        .env("FIRSTBOOT_AGENT_BIN_DIRS", &bin)
        .env("FIRSTBOOT_AGENT_APT_GET", &apt)
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let guard = Guard(child);
    let pid = guard.0.id();

    let s = wait_for(
        pid,
        port,
        "the waiting-for-network detail",
        Duration::from_secs(90),
        |s| {
            s["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("waiting for network"))
        },
    );
    assert_eq!(s["phase"], "installing-packages", "{s:#}");
    let detail = s["detail"].as_str().unwrap();
    for want in [
        "apt-get update --error-on=any` failed",
        "Temporary failure resolving 'deb.debian.org'",
        "glusterfs-server",
        "docker.io",
        "--packages",
        "attempt 1, next in 5 s",
    ] {
        assert!(detail.contains(want), "{want:?} missing in {detail}");
    }
    assert_eq!(s["formation"]["waiting_for"], s["detail"], "{s:#}");
    assert_eq!(s["formation"]["step"], 1, "{s:#}");
    assert_eq!(s["health"], "forming", "{s:#}");

    // The packages arrive (as if the network came back and apt installed them): the next attempt sees them and
    // the agent moves on to the disk and the services.
    for p in ["glusterd", "mount.glusterfs", "dockerd", "mkfs.xfs"] {
        std::fs::write(bin.join(p), "#!/bin/sh\n").unwrap();
    }
    let s = wait_for(pid, port, "the next phases", Duration::from_secs(90), |s| {
        s["phase"] == "ensuring-services"
    });
    let phases: Vec<&str> = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        &phases[..3],
        ["installing-packages", "preparing-disk", "ensuring-services"],
        "{s:#}"
    );
    let log = std::fs::read_to_string(w.path().join("apt.log")).unwrap();
    assert!(log.lines().all(|l| l == "update --error-on=any"), "{log}");
    drop(guard);
    // The host's gsyncd is its package's file, never the agent's wrapper.
    for dir in [
        "/usr/lib/x86_64-linux-gnu/glusterfs",
        "/usr/libexec/glusterfs",
    ] {
        let gsyncd = Path::new(dir).join("gsyncd");
        if let Ok(text) = std::fs::read(&gsyncd) {
            assert!(
                !String::from_utf8_lossy(&text).contains("firstboot-agent"),
                "{} was replaced by the agent's wrapper",
                gsyncd.display()
            );
        }
    }
}

#[test]
fn fetch_packages_fetches_what_the_agent_installs() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/fetch-packages");
    let text = std::fs::read_to_string(&script).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("PACKAGES=("))
        .expect("a PACKAGES=(...) line");
    let listed: Vec<&str> = line
        .trim_start_matches("PACKAGES=(")
        .trim_end_matches(')')
        .split_whitespace()
        .collect();
    for p in firstboot_agent::services::PACKAGES {
        assert!(
            listed.contains(p),
            "ci/fetch-packages does not fetch {p}: {line}"
        );
    }
    // Bad arguments are refused before apt runs.
    let o = Command::new(&script)
        .args(["--out", "/nonexistent/x", "--release", "jessie"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--release must be bookworm or trixie"),
        "{err}"
    );
}
