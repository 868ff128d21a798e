//! The [`Gluster`] handle: one method per `gluster` CLI command the agent uses.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use super::xml::{self, BrickStatus, HealInfo, PoolPeer, VolumeInfo, VolumeStatus};
use super::GlusterError;

/// Default time a `gluster` command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Time [`Gluster::is_responding`] gives glusterd at most.
pub const RESPONDING_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the `gluster` CLI against the local glusterd.
#[derive(Debug, Clone)]
pub struct Gluster {
    /// Path (or name on `PATH`) of the `gluster` binary.
    pub binary: PathBuf,
    /// Time each command may take.
    pub timeout: Duration,
    /// glusterd's socket, when not the default `/var/run/glusterd.socket` (`--glusterd-sock`).
    pub socket: Option<PathBuf>,
}

impl Default for Gluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Gluster {
    /// A handle that runs `gluster` from `PATH` with [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Gluster {
            binary: PathBuf::from("gluster"),
            timeout: DEFAULT_TIMEOUT,
            socket: None,
        }
    }

    /// The same handle with another per-command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same handle talking to the glusterd listening on `socket` (e.g. a lab node's own glusterd).
    pub fn with_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.socket = Some(socket.into());
        self
    }

    /// The same handle running another `gluster` binary.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    /// Runs `gluster --xml --mode=script ARGS` and returns its XML when glusterd reports success.
    async fn run(&self, args: &[&str]) -> Result<String, GlusterError> {
        self.run_with(args, self.timeout, false).await
    }

    /// Like [`Self::run`] for the few commands that print text even with `--xml` (e.g. `volume heal NAME`):
    /// success is the exit status.
    async fn run_text(&self, args: &[&str]) -> Result<String, GlusterError> {
        self.run_with(args, self.timeout, true).await
    }

    async fn run_with(
        &self,
        args: &[&str],
        timeout: Duration,
        text_ok: bool,
    ) -> Result<String, GlusterError> {
        let secs = timeout.as_secs().max(1).to_string();
        let timeout_arg = format!("--timeout={secs}");
        let socket_arg = self
            .socket
            .as_ref()
            .map(|s| format!("--glusterd-sock={}", s.display()));
        let mut full: Vec<&str> = vec!["--xml", "--mode=script", &timeout_arg];
        if let Some(s) = &socket_arg {
            full.push(s);
        }
        full.extend_from_slice(args);
        let command = format!("{} {}", self.binary.display(), full.join(" "));
        tracing::debug!(%command, "running");
        // In a process group of its own: `volume heal NAME info` runs glfsheal as a child of the CLI, and killing
        // only the CLI on timeout left glfsheal running. Under load those orphans piled up (150 in one lab, each a
        // full Gluster client locking heal entries) and starved the self-heal daemon.
        let mut cmd = Command::new(&self.binary);
        cmd.args(&full)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => return Err(GlusterError::Spawn { command, source }),
        };
        let group = child.id();
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Err(_) => {
                if let Some(pgid) = group {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pgid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return Err(GlusterError::Timeout { command, timeout });
            }
            Ok(Err(source)) => return Err(GlusterError::Spawn { command, source }),
            Ok(Ok(out)) => out,
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        interpret(command, out.status, stdout, stderr, text_ok)
    }

    /// Every member of the trusted pool, this node included (`gluster pool list`).
    pub async fn pool_list(&self) -> Result<Vec<PoolPeer>, GlusterError> {
        let cmd = ["pool", "list"];
        let out = self.run(&cmd).await?;
        xml::parse_pool_list(&out).map_err(|e| parse_error(&cmd, e))
    }

    /// Adds `host` to the pool (`gluster peer probe HOST`). Probing a host already in the pool, or this node
    /// itself, succeeds.
    pub async fn peer_probe(&self, host: &str) -> Result<(), GlusterError> {
        self.run(&["peer", "probe", host]).await.map(drop)
    }

    /// Removes `host` from the pool (`gluster peer detach HOST [force]`).
    pub async fn peer_detach(&self, host: &str, force: bool) -> Result<(), GlusterError> {
        let mut args = vec!["peer", "detach", host];
        if force {
            args.push("force");
        }
        self.run(&args).await.map(drop)
    }

    /// Describes the volume `name`, or `None` when it does not exist.
    pub async fn volume_info(&self, name: &str) -> Result<Option<VolumeInfo>, GlusterError> {
        let cmd = ["volume", "info", name];
        match self.run(&cmd).await {
            Ok(out) => {
                let vols = xml::parse_volume_info(&out).map_err(|e| parse_error(&cmd, e))?;
                Ok(vols.into_iter().find(|v| v.name == name))
            }
            Err(e) if e.is_no_such_volume() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Describes every volume of the pool.
    pub async fn volume_info_all(&self) -> Result<Vec<VolumeInfo>, GlusterError> {
        let cmd = ["volume", "info"];
        let out = self.run(&cmd).await?;
        xml::parse_volume_info(&out).map_err(|e| parse_error(&cmd, e))
    }

    /// Creates a replicated volume from `bricks` (each `host:/path`), `replica` copies of each file.
    /// `force` is needed when bricks sit on a root file system or several on one host.
    /// Fails (with [`GlusterError::is_already`] true) when the volume exists.
    pub async fn volume_create_replica(
        &self,
        name: &str,
        replica: u32,
        bricks: &[String],
        force: bool,
    ) -> Result<(), GlusterError> {
        let replica = replica.to_string();
        let mut args = vec!["volume", "create", name, "replica", &replica];
        args.extend(bricks.iter().map(String::as_str));
        if force {
            args.push("force");
        }
        self.run(&args).await.map(drop)
    }

    /// Sets a volume option (`gluster volume set NAME KEY VALUE`).
    pub async fn volume_set(&self, name: &str, key: &str, value: &str) -> Result<(), GlusterError> {
        self.run(&["volume", "set", name, key, value])
            .await
            .map(drop)
    }

    /// Starts the volume. Starting a started volume succeeds. `force` also restarts brick processes that died.
    pub async fn volume_start(&self, name: &str, force: bool) -> Result<(), GlusterError> {
        let mut args = vec!["volume", "start", name];
        if force {
            args.push("force");
        }
        match self.run(&args).await {
            Err(e)
                if e.op_message()
                    .is_some_and(|m| m.contains("already started")) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Stops the volume (no prompt). Stopping a stopped volume succeeds.
    pub async fn volume_stop(&self, name: &str, force: bool) -> Result<(), GlusterError> {
        let mut args = vec!["volume", "stop", name];
        if force {
            args.push("force");
        }
        match self.run(&args).await {
            Err(e)
                if e.op_message().is_some_and(|m| {
                    m.contains("not in the started state") || m.contains("already stopped")
                }) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Deletes a stopped volume (no prompt). The bricks' data stays on disk.
    pub async fn volume_delete(&self, name: &str) -> Result<(), GlusterError> {
        self.run(&["volume", "delete", name]).await.map(drop)
    }

    /// Brick processes, ports and sizes of a started volume (`volume status NAME detail`), every brick of the
    /// volume in volume order: bricks on peers that are down (which glusterd leaves out) are listed offline.
    /// Fails with an error for which [`GlusterError::is_not_started`] holds when the volume is not started.
    pub async fn volume_status(&self, name: &str) -> Result<VolumeStatus, GlusterError> {
        let cmd = ["volume", "status", name, "detail"];
        let out = self.run(&cmd).await?;
        let status = xml::parse_volume_status(&out).map_err(|e| parse_error(&cmd, e))?;
        let Some(info) = self.volume_info(name).await? else {
            return Ok(status);
        };
        Ok(complete_status(status, &info))
    }

    /// Entries waiting to be healed, per brick (`volume heal NAME info`).
    pub async fn heal_info(&self, name: &str) -> Result<HealInfo, GlusterError> {
        let cmd = ["volume", "heal", name, "info"];
        let out = self.run(&cmd).await?;
        xml::parse_heal_info(&out).map_err(|e| parse_error(&cmd, e))
    }

    /// Entries waiting to be healed, summed over the bricks, from each brick's own index count
    /// (`volume heal NAME statistics heal-count`). Unlike [`Gluster::heal_info`] it starts no `glfsheal` client:
    /// that client locks every entry it inspects, and when the CLI times out it is left running (seen hung by
    /// the dozen in the loaded lab, holding locks self-heal needed). `None` for a brick that did not answer.
    pub async fn heal_count(&self, name: &str) -> Result<Option<u64>, GlusterError> {
        let out = self
            .run_text(&["volume", "heal", name, "statistics", "heal-count"])
            .await?;
        Ok(parse_heal_count(&out))
    }

    /// Number of entries in split-brain (`volume heal NAME info split-brain`).
    pub async fn heal_split_brain(&self, name: &str) -> Result<u64, GlusterError> {
        let cmd = ["volume", "heal", name, "info", "split-brain"];
        let out = self.run(&cmd).await?;
        xml::parse_split_brain_count(&out).map_err(|e| parse_error(&cmd, e))
    }

    /// Asks the self-heal daemon to heal now (`volume heal NAME [full]`). glusterd refuses while the self-heal
    /// daemon is not connected to every brick (e.g. just after a brick restarted): retry later.
    pub async fn heal_start(&self, name: &str, full: bool) -> Result<(), GlusterError> {
        let mut args = vec!["volume", "heal", name];
        if full {
            args.push("full");
        }
        self.run_text(&args).await.map(drop)
    }

    /// Adds one brick, raising the replica count to `replica` (`volume add-brick NAME replica N BRICK`).
    pub async fn add_brick(
        &self,
        name: &str,
        replica: u32,
        brick: &str,
        force: bool,
    ) -> Result<(), GlusterError> {
        let replica = replica.to_string();
        let mut args = vec!["volume", "add-brick", name, "replica", &replica, brick];
        if force {
            args.push("force");
        }
        self.run(&args).await.map(drop)
    }

    /// Removes one brick, lowering the replica count to `replica`
    /// (`volume remove-brick NAME replica N BRICK force`: with replicas a brick holds no unique data, and
    /// glusterd only accepts lowering the replica count with `force`). `force` = false asks glusterd for a plain
    /// `start` instead, which it refuses for replica changes; it exists for distributed volumes.
    pub async fn remove_brick(
        &self,
        name: &str,
        replica: u32,
        brick: &str,
        force: bool,
    ) -> Result<(), GlusterError> {
        let replica = replica.to_string();
        let mode = if force { "force" } else { "start" };
        self.run(&[
            "volume",
            "remove-brick",
            name,
            "replica",
            &replica,
            brick,
            mode,
        ])
        .await
        .map(drop)
    }

    /// Puts brick `new` in the place of `old` (`volume replace-brick NAME OLD NEW commit force`);
    /// self-heal then fills the new brick.
    pub async fn replace_brick(
        &self,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<(), GlusterError> {
        self.run(&["volume", "replace-brick", name, old, new, "commit", "force"])
            .await
            .map(drop)
    }

    /// Lets only `hosts` mount the volume (`auth.allow`, comma-separated).
    pub async fn volume_auth_allow(
        &self,
        name: &str,
        hosts: &[String],
    ) -> Result<(), GlusterError> {
        self.volume_set(name, "auth.allow", &hosts.join(",")).await
    }

    /// Whether the local glusterd answers a `pool list` within the timeout (at most [`RESPONDING_TIMEOUT`]).
    pub async fn is_responding(&self) -> bool {
        self.run_with(
            &["pool", "list"],
            self.timeout.min(RESPONDING_TIMEOUT),
            false,
        )
        .await
        .is_ok()
    }
}

/// Sums the `Number of entries: N` lines of `statistics heal-count` output; `None` when a brick printed none
/// (it is down) or a count is unreadable.
pub fn parse_heal_count(out: &str) -> Option<u64> {
    let bricks = out
        .lines()
        .filter(|l| l.trim_start().starts_with("Brick "))
        .count();
    let counts: Vec<u64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Number of entries:"))
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    (bricks > 0 && counts.len() == bricks).then(|| counts.iter().sum())
}

fn parse_error(args: &[&str], e: xml::XmlError) -> GlusterError {
    GlusterError::Parse {
        command: format!("gluster --xml {}", args.join(" ")),
        reason: e.0,
    }
}

/// Turns what the CLI printed into the XML answer or the matching error.
fn interpret(
    command: String,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    text_ok: bool,
) -> Result<String, GlusterError> {
    if stdout.contains("<cliOutput") {
        let (op, output) = xml::parse_op_result(&stdout).map_err(|e| GlusterError::Parse {
            command: command.clone(),
            reason: e.0,
        })?;
        if op.op_ret == 0 {
            return Ok(stdout);
        }
        let message = [Some(op.op_errstr.clone()), output, Some(stderr.clone())]
            .into_iter()
            .flatten()
            .find(|m| !m.is_empty())
            .unwrap_or_else(|| "no message".to_string());
        return Err(GlusterError::Failed {
            command,
            op_ret: op.op_ret,
            op_errno: op.op_errno,
            message,
            stderr,
        });
    }
    let text = if stderr.is_empty() {
        stdout.trim().to_string()
    } else {
        stderr
    };
    if text.contains("Connection failed") || text.contains("gluster daemon is operational") {
        return Err(GlusterError::NotRunning {
            command,
            stderr: text,
        });
    }
    if text_ok && status.success() {
        return Ok(stdout);
    }
    if !status.success() {
        // Usage errors (e.g. a loopback brick address) come as text with the usage appended: drop the usage.
        let message: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("Usage:"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        return Err(GlusterError::Exit {
            command,
            status: status.to_string(),
            stderr: message.join(" "),
        });
    }
    Err(GlusterError::Parse {
        command,
        reason: format!("no XML answer, got: {text}"),
    })
}

/// Adds the bricks of `info` that glusterd left out of `status` (their peer is down) as offline, in volume order.
fn complete_status(status: VolumeStatus, info: &VolumeInfo) -> VolumeStatus {
    let mut bricks = Vec::with_capacity(info.bricks.len());
    for b in &info.bricks {
        match status
            .bricks
            .iter()
            .find(|s| s.host == b.host && s.path == b.path)
        {
            Some(s) => bricks.push(s.clone()),
            None => bricks.push(BrickStatus {
                host: b.host.clone(),
                path: b.path.clone(),
                peer_uuid: String::new(),
                online: false,
                pid: None,
                port: None,
                size_total: None,
                size_free: None,
            }),
        }
    }
    // Keep anything glusterd listed that the info did not (should not happen, but never hide a brick).
    for s in status.bricks {
        if !bricks.iter().any(|b| b.host == s.host && b.path == s.path) {
            bricks.push(s);
        }
    }
    VolumeStatus {
        name: status.name,
        bricks,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn heal_count_sums_bricks_and_notices_a_silent_one() {
        let ok =
            "Gathering count of entries to be healed on volume shared has been successful \n\n\
                  Brick a:/b\nNumber of entries: 3\n\nBrick c:/b\nNumber of entries: 0\n";
        assert_eq!(super::parse_heal_count(ok), Some(3));
        let down = "Brick a:/b\nNumber of entries: 3\n\nBrick c:/b\nStatus: Transport endpoint is not connected\n";
        assert_eq!(super::parse_heal_count(down), None);
    }

    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;

    use crate::gluster::test_fixture as fixture;

    fn interp(
        command: String,
        status: std::process::ExitStatus,
        stdout: String,
        stderr: String,
    ) -> Result<String, GlusterError> {
        interpret(command, status, stdout, stderr, false)
    }

    fn ok() -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(0)
    }

    fn failed() -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(1 << 8)
    }

    #[test]
    fn a_refused_probe_is_an_error_with_glusters_reason() {
        let e = interp(
            "gluster peer probe x".into(),
            ok(),
            fixture("peer-probe-unreachable.xml"),
            String::new(),
        )
        .unwrap_err();
        assert!(
            matches!(e, GlusterError::Failed { op_errno: 107, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("Transport endpoint is not connected"),
            "{e}"
        );
        assert!(e.to_string().contains("gluster peer probe x"), "{e}");
    }

    #[test]
    fn already_done_answers_are_recognised() {
        for f in ["volume-create-exists.xml", "volume-start-already.xml"] {
            let e = interp("c".into(), ok(), fixture(f), String::new()).unwrap_err();
            assert!(e.is_already(), "{f}: {e}");
        }
        let e = interp(
            "c".into(),
            ok(),
            fixture("volume-status-not-started.xml"),
            String::new(),
        )
        .unwrap_err();
        assert!(e.is_not_started() && !e.is_already(), "{e}");
        // A marked brick directory is a refusal, not the volume already made.
        let e = interp(
            "c".into(),
            ok(),
            fixture("volume-create-brick-in-use.xml"),
            String::new(),
        )
        .unwrap_err();
        assert!(e.is_brick_in_use() && !e.is_already(), "{e}");
        let e = interp(
            "c".into(),
            ok(),
            fixture("volume-info-missing.xml"),
            String::new(),
        )
        .unwrap_err();
        assert!(e.is_no_such_volume(), "{e}");
        // A second probe of a known peer is a success answer.
        assert!(interp(
            "c".into(),
            ok(),
            fixture("peer-probe-again.xml"),
            String::new()
        )
        .is_ok());
        assert!(interp(
            "c".into(),
            ok(),
            fixture("peer-probe-self.xml"),
            String::new()
        )
        .is_ok());
    }

    #[test]
    fn glusterd_down_and_usage_errors() {
        let text = fixture("not-running.txt");
        let e = interp("gluster pool list".into(), failed(), text, String::new()).unwrap_err();
        assert!(matches!(e, GlusterError::NotRunning { .. }), "{e:?}");
        let usage = fixture("volume-create-loopback.txt");
        let e = interp(
            "gluster volume create".into(),
            failed(),
            String::new(),
            usage,
        )
        .unwrap_err();
        match e {
            GlusterError::Exit { stderr, .. } => {
                assert!(
                    stderr.starts_with("Please provide a valid hostname"),
                    "{stderr}"
                );
                assert!(!stderr.contains("Usage"), "{stderr}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_lists_bricks_of_down_peers_as_offline() {
        let status =
            xml::parse_volume_status(&fixture("volume-status-detail-peer-down.xml")).unwrap();
        let info = xml::parse_volume_info(&fixture("volume-info-two.xml"))
            .unwrap()
            .remove(0);
        let full = complete_status(status, &info);
        assert_eq!(full.bricks.len(), 2);
        assert!(full.bricks[0].online);
        assert_eq!(full.bricks[1].host, "10.77.0.2");
        assert!(!full.bricks[1].online);
        assert_eq!(full.bricks[1].size_free, None);
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_spawn_error_naming_the_package() {
        let g = Gluster::new().with_binary("/nonexistent/gluster");
        let e = g.pool_list().await.unwrap_err();
        assert!(matches!(e, GlusterError::Spawn { .. }), "{e:?}");
        assert!(e.to_string().contains("glusterfs-server"), "{e}");
        assert!(!g.is_responding().await);
    }

    #[tokio::test]
    async fn a_timed_out_command_takes_its_children_along() {
        // A stand-in for `gluster volume heal NAME info`, which runs glfsheal as its child.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let bin = dir.path().join("gluster");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\nsleep 60 &\necho $! > {}\nwait\n",
                pidfile.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let g = Gluster::new()
            .with_binary(&bin)
            .with_timeout(Duration::from_secs(2));
        let e = g.heal_info("shared").await.unwrap_err();
        assert!(matches!(e, GlusterError::Timeout { .. }), "{e:?}");
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie waiting for a parent that is gone too.
        while std::fs::read_to_string(format!("/proc/{child}/stat"))
            .is_ok_and(|st| !st.contains(") Z "))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the command's child {child} outlived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_socket_without_glusterd_is_not_running() {
        if !Path::new("/usr/sbin/gluster").exists() {
            eprintln!("SKIPPED: the gluster CLI is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let g = Gluster::new()
            .with_binary("/usr/sbin/gluster")
            .with_socket(dir.path().join("glusterd.socket"))
            .with_timeout(Duration::from_secs(20));
        let e = g.pool_list().await.unwrap_err();
        assert!(matches!(e, GlusterError::NotRunning { .. }), "{e:?}");
        assert!(e.to_string().contains("--glusterd-sock="), "{e}");
        assert!(!g.is_responding().await);
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("gluster");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&fake).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let g = Gluster::new()
            .with_binary(&fake)
            .with_timeout(Duration::from_millis(300));
        let start = std::time::Instant::now();
        let e = g.volume_info("shared").await.unwrap_err();
        assert!(matches!(e, GlusterError::Timeout { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
