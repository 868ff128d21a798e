//! The multi-node lab from Rust: every call runs `ci/lab` (one source of truth for how a node is made), and a
//! [`Lab`] takes its nodes down when dropped, also when a test panics.
//!
//! ```no_run
//! use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
//! use std::time::Duration;
//! if !require_root("example") { return; }
//! let lab = Lab::up(LabOptions::new(3).no_agent()).unwrap();
//! let out = lab.exec_ok("node1", &["gluster", "--xml", "pool", "list"]).unwrap();
//! assert!(out.contains("<opRet>0</opRet>"));
//! wait_until(Duration::from_secs(10), "node2's glusterd to answer", || {
//!     Ok(lab.exec("node2", &["gluster", "pool", "list"])?.status.success())
//! }).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What can go wrong while driving the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// `ci/lab` could not be run at all.
    #[error(
        "cannot run {script} ({what}): {source}; is the repository complete and are you root?"
    )]
    Spawn {
        /// The script.
        script: PathBuf,
        /// The command, e.g. `up --nodes 3`.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `ci/lab` command or a command inside a node exited with failure.
    #[error("`{what}` failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}")]
    Failed {
        /// What ran.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard output (lossy UTF-8).
        stdout: String,
        /// Its standard error (lossy UTF-8).
        stderr: String,
    },
    /// A condition polled by [`wait_until`] did not come true in time.
    #[error("timed out after {waited:?} waiting for {what}{}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The last error the condition returned, if any.
        last_error: Option<String>,
    },
    /// `ci/lab status --json` printed something that is not the expected JSON.
    #[error("cannot read `ci/lab status --json`: {0}")]
    Status(String),
}

/// Result type of the lab harness.
pub type Result<T> = std::result::Result<T, LabError>;

/// How to bring a lab up (`ci/lab up` flags).
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Number of nodes (`node1` … `nodeN`).
    pub nodes: u32,
    /// The lab's id (`LAB_ID`); `None` picks a fresh one, unique per process and call.
    pub lab_id: Option<String>,
    /// The card image (`--image`); `None` lets `ci/lab` build one.
    pub image: Option<PathBuf>,
    /// The agent binary (`--agent`); `None` uses `FIRSTBOOT_AGENT_BIN` or builds it.
    pub agent: Option<PathBuf>,
    /// Start no agent (`--no-agent`): glusterd, dockerd and avahi only.
    pub no_agent: bool,
    /// Card size (`--card-size`, e.g. `8G`).
    pub card_size: Option<String>,
    /// Every node starts with the host name `raspberrypi`, as fresh cards do (`--pi-hostnames`).
    pub pi_hostnames: bool,
    /// `[agent]` config values set on every node (`--agent-set KEY=VALUE`), e.g. a short grace period.
    pub agent_set: Vec<(String, String)>,
    /// Boot the nodes but start no agent until [`Lab::start_agents`] (`--agents-later`).
    pub agents_later: bool,
}

impl LabOptions {
    /// Options for `nodes` nodes with every default (agent on, built image, fresh lab id).
    pub fn new(nodes: u32) -> LabOptions {
        LabOptions {
            nodes,
            lab_id: None,
            image: None,
            agent: None,
            no_agent: false,
            card_size: None,
            pi_hostnames: false,
            agent_set: Vec::new(),
            agents_later: false,
        }
    }

    /// Boots the nodes but starts no agent until [`Lab::start_agents`] (`--agents-later`): a fault can be set up
    /// before formation begins.
    pub fn agents_later(mut self) -> LabOptions {
        self.agents_later = true;
        self
    }

    /// With `key = value` in every node's `[agent]` config section (a number or true/false).
    pub fn agent_set(mut self, key: &str, value: impl ToString) -> LabOptions {
        self.agent_set.push((key.to_string(), value.to_string()));
        self
    }

    /// Without the agent.
    pub fn no_agent(mut self) -> LabOptions {
        self.no_agent = true;
        self
    }

    /// With this lab id.
    pub fn lab_id(mut self, id: &str) -> LabOptions {
        self.lab_id = Some(id.to_string());
        self
    }

    /// With this card image.
    pub fn image(mut self, image: &Path) -> LabOptions {
        self.image = Some(image.to_path_buf());
        self
    }

    /// With this agent binary.
    pub fn agent(mut self, agent: &Path) -> LabOptions {
        self.agent = Some(agent.to_path_buf());
        self
    }

    /// With cards of this size (`8G`, `16G`, ...).
    pub fn card_size(mut self, size: &str) -> LabOptions {
        self.card_size = Some(size.to_string());
        self
    }

    /// Every node starts as `raspberrypi`, as fresh cards do.
    pub fn pi_hostnames(mut self) -> LabOptions {
        self.pi_hostnames = true;
        self
    }
}

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A lab id not used by any other call in this process nor, very likely, by another process: `t<pid>x<n>`.
pub fn unique_lab_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when running as root. Otherwise prints why `test` is skipped (the lab needs namespaces, loop devices and
/// a bridge) and returns false: call it first and return early when it says no.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED {test}: needs root (network namespaces, loop devices, glusterd, dockerd); run as root");
    }
    root
}

/// Polls `check` every 200 ms until it returns `Ok(true)`, for at most `timeout`. An `Err` from `check` counts as
/// "not yet" and is reported if the deadline passes. The error names `what` was waited for.
pub fn wait_until<F>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> anyhow::Result<bool>,
{
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Timeout {
                what: what.to_string(),
                waited: start.elapsed(),
                last_error,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running lab. Dropping it runs `ci/lab down` (errors go to stderr); [`Lab::down`] reports them instead.
#[derive(Debug)]
pub struct Lab {
    id: String,
    nodes: u32,
    script: PathBuf,
    up: bool,
    up_time: Duration,
}

impl Lab {
    /// Brings a lab up with `ci/lab up` and waits until its glusterd, dockerd and avahi answer on every node
    /// (`ci/lab up` does that wait). A failed `up` leaves nothing behind.
    pub fn up(opts: LabOptions) -> Result<Lab> {
        let id = opts.lab_id.clone().unwrap_or_else(unique_lab_id);
        let mut args = vec!["up".to_string(), "--nodes".into(), opts.nodes.to_string()];
        if let Some(image) = &opts.image {
            args.extend(["--image".into(), image.display().to_string()]);
        }
        if let Some(agent) = &opts.agent {
            args.extend(["--agent".into(), agent.display().to_string()]);
        }
        if opts.no_agent {
            args.push("--no-agent".into());
        }
        if let Some(size) = &opts.card_size {
            args.extend(["--card-size".into(), size.clone()]);
        }
        if opts.pi_hostnames {
            args.push("--pi-hostnames".into());
        }
        for (k, v) in &opts.agent_set {
            args.extend(["--agent-set".into(), format!("{k}={v}")]);
        }
        if opts.agents_later {
            args.push("--agents-later".into());
        }
        let mut lab = Lab {
            id,
            nodes: opts.nodes,
            script: repo_root().join("ci/lab"),
            up: false,
            up_time: Duration::ZERO,
        };
        let start = Instant::now();
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = lab.run_ok(&arg_refs);
        lab.up_time = start.elapsed();
        // `ci/lab up` tears down after its own failures; also covers a crash of the script itself.
        lab.up = true;
        result?;
        Ok(lab)
    }

    /// The lab id (`LAB_ID`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many nodes the lab has.
    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    /// `node1` … `nodeN`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node{i}")).collect()
    }

    /// How long `ci/lab up` took.
    pub fn up_time(&self) -> Duration {
        self.up_time
    }

    /// Where the lab keeps its state (cards, per-node directories, logs).
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from("/var/tmp/pilab").join(&self.id)
    }

    /// The log of `what` (`glusterd`, `dockerd`, `avahi`, `agent`, `setup`, `init`) of `node`, for failure messages.
    pub fn log_path(&self, node: &str, what: &str) -> PathBuf {
        self.state_dir()
            .join(node)
            .join("log")
            .join(format!("{what}.log"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.script);
        cmd.env("LAB_ID", &self.id).args(args).stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        self.command(args)
            .output()
            .map_err(|source| LabError::Spawn {
                script: self.script.clone(),
                what: args.join(" "),
                source,
            })
    }

    fn run_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        check(format!("LAB_ID={} ci/lab {}", self.id, args.join(" ")), out)
    }

    /// Runs `cmd` inside `node` (as `ci/lab exec NODE -- CMD...`) and returns its output, whatever its exit status.
    pub fn exec(&self, node: &str, cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["exec", node, "--"];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// Runs `cmd` inside `node`; fails unless it exits 0; returns its standard output.
    pub fn exec_ok(&self, node: &str, cmd: &[&str]) -> Result<String> {
        let out = self.exec(node, cmd)?;
        check(format!("{node}: {}", cmd.join(" ")), out)
    }

    /// Runs `gluster ARGS...` inside `node` and returns its output; while glusterd answers with a cluster-lock
    /// conflict ("Locking failed", "Another transaction is in progress": every agent reads `volume status` every few
    /// seconds, and that command takes the volume's lock on all peers) it asks again, for at most 60 s.
    pub fn gluster_ok(&self, node: &str, args: &[&str]) -> Result<String> {
        let mut cmd = vec!["gluster"];
        cmd.extend_from_slice(args);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.exec(node, &cmd)?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let conflict = ["Locking failed", "Another transaction is in progress"]
                .iter()
                .any(|m| text.contains(m));
            if !conflict || Instant::now() >= deadline {
                if conflict {
                    return Err(LabError::Timeout {
                        what: format!("{node}: gluster {} without a lock conflict", args.join(" ")),
                        waited: Duration::from_secs(60),
                        last_error: Some(text),
                    });
                }
                return check(format!("{node}: gluster {}", args.join(" ")), out);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs a bash script inside `node`; fails unless it exits 0; returns its standard output.
    pub fn sh(&self, node: &str, script: &str) -> Result<String> {
        self.exec_ok(node, &["bash", "-c", script])
    }

    /// Power cut: every process of `node` gets SIGKILL, its link vanishes; card and state stay.
    pub fn kill(&self, node: &str) -> Result<()> {
        self.run_ok(&["kill", node]).map(drop)
    }

    /// Starts the agent on every running node that has none (after [`LabOptions::agents_later`]).
    pub fn start_agents(&self) -> Result<()> {
        self.run_ok(&["agents"]).map(drop)
    }

    /// Boots `node` again after [`Lab::kill`] and waits until its daemons answer.
    pub fn start(&self, node: &str) -> Result<()> {
        self.run_ok(&["start", node]).map(drop)
    }

    /// A fresh card in powered-off `node`: it boots as a new Pi (new identity and address, same cluster config)
    /// and its agent starts; returns when its daemons answer.
    pub fn replace(&self, node: &str) -> Result<()> {
        self.run_ok(&["replace", node]).map(drop)
    }

    /// Powered-off `node`'s own card flashed again (`ci/lab replace --reflash`): the image over the card's start,
    /// the old brick filesystem beyond it kept with its data and marks; it boots as a new Pi, as with
    /// [`Lab::replace`].
    pub fn reflash(&self, node: &str) -> Result<()> {
        self.run_ok(&["replace", "--reflash", node]).map(drop)
    }

    /// Pulls `node`'s network cable.
    pub fn cut(&self, node: &str) -> Result<()> {
        self.run_ok(&["cut", node]).map(drop)
    }

    /// Plugs `node`'s network cable back in.
    pub fn heal(&self, node: &str) -> Result<()> {
        self.run_ok(&["heal", node]).map(drop)
    }

    /// Splits the lab's network into `groups` (`ci/lab partition`): nodes of one group reach each other, frames
    /// between groups are dropped on the bridge. Nodes named in no group keep reaching everyone. Replaces any
    /// earlier partition. Example: `lab.partition(&[&["node1", "node2"], &["node3", "node4"]])` is 2|2.
    pub fn partition(&self, groups: &[&[&str]]) -> Result<()> {
        let args: Vec<String> = groups.iter().map(|g| g.join(",")).collect();
        let mut cmd = vec!["partition"];
        cmd.extend(args.iter().map(String::as_str));
        self.run_ok(&cmd).map(drop)
    }

    /// Ends a [`Lab::partition`]: every node reaches every node again (`ci/lab join`).
    pub fn join(&self) -> Result<()> {
        self.run_ok(&["join"]).map(drop)
    }

    /// Whether `from` can open a TCP connection to `to`'s glusterd (port 24007) within 2 s.
    pub fn reaches(&self, from: &str, to: &str) -> Result<bool> {
        let ip = self.ip(to)?;
        let probe = format!("</dev/tcp/{ip}/24007");
        Ok(self
            .exec(from, &["timeout", "2", "bash", "-c", &probe])?
            .status
            .success())
    }

    /// `node`'s IPv4 address.
    pub fn ip(&self, node: &str) -> Result<String> {
        Ok(self.run_ok(&["ip", node])?.trim().to_string())
    }

    /// For runs without the agent: partition 3 on `node`'s card, XFS, mounted at `/srv/gluster/brick1` (brick
    /// directory `/srv/gluster/brick1/brick`). Idempotent: after a restart it only mounts it again.
    pub fn brick(&self, node: &str) -> Result<()> {
        self.run_ok(&["brick", node]).map(drop)
    }

    /// `GET http://127.0.0.1:{port}{path}` from inside `node` (the agent's API, default port 7780), as JSON.
    pub fn api_get(&self, node: &str, port: u16, path: &str) -> Result<serde_json::Value> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let body = self.exec_ok(node, &["curl", "-sS", "-f", "-m", "5", &url])?;
        serde_json::from_str(&body)
            .map_err(|e| LabError::Status(format!("{url} on {node}: {e}: {body}")))
    }

    /// When the lab started `node`'s agent (seconds since the Unix epoch), if it did.
    pub fn agent_started(&self, node: &str) -> Option<f64> {
        std::fs::read_to_string(self.state_dir().join(node).join("agent.started"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `ci/lab status --json`: lab, bridge, subnet and per node address, state, pids, card device.
    pub fn status(&self) -> Result<serde_json::Value> {
        let text = self.run_ok(&["status", "--json"])?;
        serde_json::from_str(&text).map_err(|e| LabError::Status(format!("{e}: {text}")))
    }

    /// Takes the lab down now and reports failure (dropping a `Lab` does the same but can only print errors).
    pub fn down(mut self) -> Result<()> {
        self.up = false;
        self.run_ok(&["down"]).map(drop)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        match self.run(&["down"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "LAB_ID={} ci/lab down failed ({}): {}",
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("LAB_ID={} ci/lab down: {e}", self.id),
        }
    }
}

fn check(what: String, out: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(LabError::Failed {
            what,
            status: out.status,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
