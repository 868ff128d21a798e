//! Helpers for the root tests that run real daemons (glusterd, dockerd) in private namespaces.
//!
//! A test re-runs its own binary under `unshare --mount --net --pid --fork --mount-proc --kill-child`, so the
//! daemons it starts live in a network, mount and PID namespace of their own: nothing they do reaches the
//! machine's network or mount table, and when the inner test ends (or is killed) the kernel kills every process
//! of the PID namespace and drops its mounts (loop devices mounted with `-o loop` detach themselves).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Environment variable that marks the inner run.
pub const INNER: &str = "FIRSTBOOT_TEST_IN_NAMESPACES";

/// Address of this namespace's veth (not loopback: glusterd refuses loopback bricks).
pub const NODE_ADDR: &str = "10.77.0.1";

/// Why the outer test cannot run here, if it cannot.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (namespaces, mounts, daemons)".into());
    }
    for tool in tools.iter().chain(["unshare", "ip"].iter()) {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Whether this process is the inner run (inside the namespaces).
pub fn is_inner() -> bool {
    std::env::var_os(INNER).is_some()
}

/// Runs the ignored test `inner` of this test binary inside fresh namespaces and fails when it fails or does
/// not finish within `limit`.
pub fn run_inner(inner: &str, limit: Duration) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child=SIGKILL",
            "--",
        ])
        .arg(exe)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1")
        .spawn()
        .expect("running unshare");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "the test inside the namespaces failed: {status}"
            );
            return;
        }
        if Instant::now() > deadline {
            // Killing unshare makes it kill the namespace's first process, which takes every other one along.
            let _ = child.kill();
            let _ = child.wait();
            panic!("the test inside the namespaces did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command, panics with its output when it fails, returns its stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespace basics: a private tmpfs on /run (daemons put their sockets there), loopback up, and a veth pair
/// with [`NODE_ADDR`] on `v0`.
pub fn setup_namespace() {
    assert!(
        is_inner(),
        "setup_namespace outside the namespaces would change the machine"
    );
    sh("mount", &["-t", "tmpfs", "tmpfs", "/run"]);
    sh("ip", &["link", "set", "lo", "up"]);
    sh(
        "ip",
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    );
    sh(
        "ip",
        &["addr", "add", &format!("{NODE_ADDR}/24"), "dev", "v0"],
    );
    sh("ip", &["link", "set", "v0", "up"]);
    sh("ip", &["link", "set", "v1", "up"]);
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes a sparse file of `size` (e.g. `1G`) formatted XFS (`-i size=512`, as for a brick) and loop-mounts it
/// on `mountpoint`.
pub fn xfs_loop_mount(image: &Path, size: &str, mountpoint: &Path) {
    std::fs::create_dir_all(mountpoint).unwrap();
    sh("truncate", &["-s", size, image.to_str().unwrap()]);
    sh(
        "mkfs.xfs",
        &["-q", "-i", "size=512", image.to_str().unwrap()],
    );
    sh(
        "mount",
        &[
            "-o",
            "loop",
            image.to_str().unwrap(),
            mountpoint.to_str().unwrap(),
        ],
    );
}
