//! Whether this node's brick processes run, read from `/proc` (no glusterd transaction, so it costs nothing and
//! never contends for the volume lock).
//!
//! glusterd starts one `glusterfsd` per local brick, with `--volfile-id VOLUME.HOST.PATH-WITH-DASHES` and
//! `--brick-name PATH` on its command line. glusterd itself never restarts a brick process that died (a crash, the
//! OOM killer) and, after every node lost power at once, a brick whose start raced the return of server quorum
//! has been seen to stay down while the volume says started (fault suite case 4): the agent notices here and asks
//! glusterd to start what is missing (`volume start VOLUME force`).

use std::path::Path;

/// Whether the command line `args` (`/proc/PID/cmdline` split at NULs) is the brick process of `volume`'s brick
/// `path` on this node.
pub fn is_brick_process(args: &[&str], volume: &str, path: &str) -> bool {
    let exe = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str());
    if exe != Some("glusterfsd") {
        return false;
    }
    let value = |flag: &str| {
        args.windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1])
            .unwrap_or("")
    };
    value("--brick-name") == path
        && value("--volfile-id")
            .strip_prefix(volume)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The bricks among `paths` of `volume` that have no brick process under `proc_root` (`/proc` on a node).
pub fn missing_brick_processes(proc_root: &Path, volume: &str, paths: &[String]) -> Vec<String> {
    let mut running = vec![false; paths.len()];
    if let Ok(entries) = std::fs::read_dir(proc_root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let text = String::from_utf8_lossy(&raw);
            let args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
            for (i, path) in paths.iter().enumerate() {
                running[i] |= is_brick_process(&args, volume, path);
            }
        }
    }
    paths
        .iter()
        .zip(running)
        .filter(|(_, up)| !up)
        .map(|(p, _)| p.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real brick process's command line (fixture README: captured from glusterfs 10.3).
    fn captured() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/gluster/glusterfsd-cmdline.txt"),
        )
        .unwrap()
    }

    fn fake_proc(processes: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (i, cmdline) in processes.iter().enumerate() {
            let dir = root.path().join((100 + i).to_string());
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("cmdline"), cmdline.replace('\n', "\0")).unwrap();
        }
        std::fs::create_dir(root.path().join("self")).unwrap();
        root
    }

    #[test]
    fn the_captured_brick_process_is_recognised_by_volume_and_path() {
        let text = captured();
        let args: Vec<&str> = text.lines().collect();
        assert!(is_brick_process(&args, "shared", "/tmp/gd3/brick/b"));
        assert!(!is_brick_process(&args, "shared", "/tmp/gd3/brick"));
        assert!(!is_brick_process(&args, "share", "/tmp/gd3/brick/b"));
        assert!(!is_brick_process(&args, "other", "/tmp/gd3/brick/b"));
        let mut client = args.clone();
        client[0] = "/usr/sbin/glusterfs";
        assert!(!is_brick_process(&client, "shared", "/tmp/gd3/brick/b"));
    }

    #[test]
    fn a_brick_without_a_process_is_missing() {
        let proc_root = fake_proc(&[&captured(), "/usr/sbin/glusterd\n-p\n/run/glusterd.pid\n"]);
        let paths = vec![
            "/tmp/gd3/brick/b".to_string(),
            "/srv/gluster/standin/brick".to_string(),
        ];
        assert_eq!(
            missing_brick_processes(proc_root.path(), "shared", &paths),
            vec!["/srv/gluster/standin/brick".to_string()]
        );
        let none = fake_proc(&["/usr/sbin/glusterd\n"]);
        assert_eq!(
            missing_brick_processes(none.path(), "shared", &paths),
            paths
        );
    }
}
