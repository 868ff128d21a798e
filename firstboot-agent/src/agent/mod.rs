//! The agent: one documented state machine ([`phase`]) driven by a reconcile loop.
//!
//! [`run`] serves the API from the start (so `/api/status` answers while the disk is prepared), prepares the disk,
//! makes sure glusterd and dockerd run, announces and browses over mDNS, and then ticks: every tick
//! 1. reads this node's real state (gluster `--xml`, the Docker API, the mount table) into a
//!    [`NodeSummary`] served to peers,
//! 2. fetches every announced peer's summary over the authenticated API,
//! 3. keeps the `/etc/hosts` block of peer names current,
//! 4. asks the pure planner ([`plan::plan`]) for the phase and the next actions and runs them,
//! 5. publishes the status document.
//!
//! Nothing is remembered that the real state can tell: after a crash, a reboot or a power cut of every node the
//! first tick finds the pool, volume and swarm as they are and continues from there, never initialising twice.
//! A failed action is logged, shown as the phase's detail and retried on a later tick; when glusterd or dockerd
//! stop answering the agent asks the service layer to start them again.

pub mod election;
pub mod observe_status;
pub mod phase;
pub mod plan;

pub use phase::{Phase, PhaseLog};

use crate::api::client::PeerClient;
use crate::api::model::{
    ClusterStatus, Health, NodeStatus, NodeSummary, PoolMember, SwarmBrief, VolumeBrief,
    STATUS_SCHEMA,
};
use crate::api::{JoinTokens, Shared};
use crate::config::ClusterConfig;
use crate::docker::{Docker, LocalNodeState, NodeRole, NodeState};
use crate::gluster::{brick, mount, Gluster, VolumeState};
use crate::identity::NodeIdentity;
use crate::mdns::{lan_address, Mdns};
use crate::peers::{Announcement, PeerTable};
use crate::trust::{unix_now, ClusterKey, Verifier};
use anyhow::Context;
use plan::{Action, Ctx, SwarmNodeView, MOUNT_LABEL};
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Agent version announced to peers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// A peer whose summary was last fetched longer ago than this is shown as down.
pub const PEER_DOWN_SECS: i64 = 8;
/// Swarm listen address (all interfaces, the standard port).
pub const SWARM_LISTEN: &str = "0.0.0.0:2377";
/// How long `swarm init` may take: it starts Raft and the first manager's services, which on a loaded node took
/// longer than the Docker API's usual time limit (the agent then asked again while dockerd was still at it).
pub const SWARM_INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How `run` behaves beyond the cluster config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Skip disk preparation (tests without a card): the brick directory is used as it is.
    pub skip_disk: bool,
    /// The whole-disk device holding the card (default: the device of the root file system).
    pub device: Option<PathBuf>,
    /// This node's LAN address (default: the first IPv4 address of an allowed interface).
    pub address: Option<Ipv4Addr>,
    /// The hosts file whose managed block names the peers.
    pub hosts_file: PathBuf,
    /// The fstab that gets the volume's mount line.
    pub fstab: PathBuf,
    /// Create bricks with `force` (needed when the brick is on the root file system, e.g. with `skip_disk`).
    pub force_bricks: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            skip_disk: false,
            device: None,
            address: None,
            hosts_file: "/etc/hosts".into(),
            fstab: "/etc/fstab".into(),
            force_bricks: false,
        }
    }
}

/// dockerd's socket: `DOCKER_HOST` when it names a unix socket, else the default.
fn docker_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::docker::DEFAULT_SOCKET))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Agent {
    config: ClusterConfig,
    identity: NodeIdentity,
    options: RunOptions,
    addr: Ipv4Addr,
    shared: Arc<Shared>,
    peers: Arc<PeerTable>,
    client: PeerClient,
    gluster: Gluster,
    docker: Option<Docker>,
    log: Arc<RwLock<PhaseLog>>,
    started: Instant,
    probed_back: HashSet<String>,
    last_service_kick: Option<Instant>,
    peer_summaries: Vec<NodeSummary>,
    summaries: SummaryCache,
    backoff: Backoff,
    swarm_task: Option<tokio::task::JoinHandle<()>>,
    announcement: Arc<RwLock<Announcement>>,
    heal_kicker: HealKicker,
    /// Full heals still owed after this node changed the volume's bricks.
    follow_up_heals: FollowUpHeals,
    /// Since when this node's brick directory has carried the volume's mark while the volume does not list it.
    stale_mark_since: Option<Instant>,
    /// Since when this node's stand-in brick directory has been out of the volume.
    stand_in_vacated_since: Option<Instant>,
    /// What this agent's own Swarm actions left behind (a half-way join or init).
    swarm_memory: Arc<SwarmMemory>,
    /// Since when each disconnected pool member (by Gluster UUID) has been seen disconnected, without a break.
    pool_down_since: BTreeMap<String, Instant>,
    /// Since when each pool member (by UUID) has been half-way through the probe handshake.
    pool_unjoined_since: BTreeMap<String, Instant>,
    /// Since when one of this node's bricks in the started volume has had no brick process (reset when the agent
    /// asks glusterd to start it, so a start that does not take is asked again only after a while).
    bricks_missing_since: Option<Instant>,
    /// Starts of missing bricks asked for since they last all ran (each waits twice as long as the one before).
    brick_start_attempts: u32,
    /// Since when each Swarm node that is not ready (by Swarm node id) has been seen so (Swarm leader only).
    swarm_down_since: BTreeMap<String, Instant>,
    /// The last reading of this node's Swarm membership and when it was taken (see [`SWARM_READ_EVERY`]); dropped
    /// when a Swarm action starts, so no reading from before an action is reused.
    swarm_reading: Option<(Instant, SwarmReading)>,
}

/// This node's Swarm membership, the Swarm leader's node list and a manager's join tokens, as dockerd reported them.
#[derive(Clone, Default)]
struct SwarmReading {
    /// This node's membership (active or pending).
    brief: Option<SwarmBrief>,
    /// Every Swarm node, read only on the Swarm leader.
    nodes: Option<Vec<SwarmNodeView>>,
    /// The join tokens, read only on managers.
    tokens: Option<JoinTokens>,
    /// dockerd's swarm part is in state `error` (a join that failed half-way; dockerd may be retrying it).
    in_error: bool,
}

/// The reconcile loop reads dockerd's Swarm state at most this often, and afresh after starting a Swarm action.
/// dockerd answers `/info` (the only call that gives a node's Swarm state whatever its role) by running
/// `runc --version` and `docker-init --version`: read every tick, on an emulated Pi that made dockerd the busiest
/// process of an idle node (49 s of CPU in 5 min, 13 new processes a second with the `gluster` readings).
pub const SWARM_READ_EVERY: Duration = Duration::from_secs(5);

/// Runs the agent until the process is stopped.
pub async fn run(
    config: ClusterConfig,
    identity: NodeIdentity,
    options: RunOptions,
) -> anyhow::Result<()> {
    let key = ClusterKey::new(&config.key_bytes());
    let log = Arc::new(RwLock::new(PhaseLog::new(
        Phase::InstallingPackages,
        now_ms(),
    )));
    let shared = Arc::new(Shared {
        status: RwLock::new(initial_status(&config, &identity)),
        // Name and id from the start: the page shows who this is while packages install, before the first reading.
        summary: RwLock::new(NodeSummary {
            node_id: identity.node_id.clone(),
            hostname: identity.hostname.clone(),
            version: VERSION.into(),
            ..NodeSummary::default()
        }),
        tokens: RwLock::new(None),
        verifier: Verifier::new(key.clone()),
        observed: Default::default(), // status page (issue 5)
    });
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.agent.api_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on port {} (agent.api_port); is another agent running?",
                config.agent.api_port
            )
        })?;
    tokio::spawn(crate::api::serve(listener, shared.clone()));
    // Status page (issue 5): volume, heal, swarm and event detail, gathered in the background.
    observe_status::spawn(
        shared.clone(),
        config.storage.volume_name.clone(),
        config.agent.api_port,
    );
    tracing::info!(
        node = %identity.node_id,
        host = %identity.hostname,
        port = config.agent.api_port,
        "agent started"
    );
    // systemd (Type=notify): the service is up once the status page serves; formation goes on in the background,
    // so boot does not wait for packages or peers.
    if let Err(e) = crate::notify::ready() {
        tracing::warn!("cannot tell systemd the agent is ready: {e}");
    }

    let addr = loop {
        if let Some(a) = options.address.or_else(lan_address) {
            break a;
        }
        log.write()
            .expect("log lock")
            .set_detail("waiting for a LAN address");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    let mut agent = Agent {
        client: PeerClient::new(key.clone()),
        gluster: Gluster::new(),
        docker: None,
        peers: Arc::new(PeerTable::new()),
        log,
        started: Instant::now(),
        probed_back: HashSet::new(),
        last_service_kick: None,
        peer_summaries: Vec::new(),
        summaries: Arc::new(RwLock::new(BTreeMap::new())),
        backoff: Backoff::default(),
        swarm_task: None,
        heal_kicker: HealKicker::default(),
        follow_up_heals: FollowUpHeals::default(),
        stale_mark_since: None,
        stand_in_vacated_since: None,
        swarm_memory: Default::default(),
        pool_down_since: BTreeMap::new(),
        pool_unjoined_since: BTreeMap::new(),
        bricks_missing_since: None,
        brick_start_attempts: 0,
        swarm_down_since: BTreeMap::new(),
        swarm_reading: None,
        announcement: Arc::new(RwLock::new(Announcement {
            cluster_id: config.cluster.id.clone(),
            node_id: identity.node_id.clone(),
            hostname: identity.hostname.clone(),
            version: VERSION.into(),
            phase: String::new(),
            api_port: config.agent.api_port,
            addr,
            ts: 0,
        })),
        config,
        identity,
        options,
        addr,
        shared,
    };
    agent.prepare().await;

    // Discovery runs for the agent's whole life: late nodes and changed addresses keep arriving.
    let mdns = Mdns::start(key, &agent.identity.hostname).context("starting mDNS")?;
    mdns.browse(
        agent.peers.clone(),
        agent.config.cluster.id.clone(),
        agent.identity.node_id.clone(),
    )?;
    spawn_peer_poller(
        agent.client.clone(),
        agent.peers.clone(),
        agent.summaries.clone(),
    );
    spawn_announcer(mdns, agent.log.clone(), agent.announcement.clone());

    loop {
        let started = Instant::now();
        let busy = agent.tick().await;
        tokio::time::sleep(tick_pause(busy, started.elapsed())).await;
    }
}

/// The pause after a reconcile tick that took `took`: 0.3 s after one that acted, else 1 s, but never shorter than
/// the tick itself (three times that when it did not act), at most 15 s. A tick is mostly
/// `gluster` and Docker readings; on slow or loaded hardware (an emulated Pi took seconds per tick) back-to-back
/// ticks kept a core busy and starved the glusterd and dockerd they read, whose own timeouts then fired.
pub fn tick_pause(busy: bool, took: Duration) -> Duration {
    let (base, factor) = if busy {
        (Duration::from_millis(300), 1)
    } else {
        (Duration::from_secs(1), 3)
    };
    (took * factor).clamp(base, Duration::from_secs(15))
}

/// Announces this node on start, on every phase or address change and every 10 s (a fresh signed timestamp).
fn spawn_announcer(mdns: Mdns, log: Arc<RwLock<PhaseLog>>, base: Arc<RwLock<Announcement>>) {
    tokio::spawn(async move {
        let mut last: Option<(Phase, Ipv4Addr, Instant)> = None;
        loop {
            let phase = log.read().expect("log lock").current();
            let mut a = base.read().expect("announcement lock").clone();
            let due = match last {
                None => true,
                Some((p, addr, at)) => {
                    p != phase || addr != a.addr || at.elapsed() >= Duration::from_secs(10)
                }
            };
            if due {
                a.phase = phase.as_str().into();
                a.ts = unix_now();
                match mdns.announce(&a) {
                    Ok(()) => last = Some((phase, a.addr, Instant::now())),
                    Err(e) => tracing::warn!("mDNS announce failed: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

fn initial_status(config: &ClusterConfig, identity: &NodeIdentity) -> ClusterStatus {
    ClusterStatus {
        schema: STATUS_SCHEMA,
        cluster_name: config.cluster.name.clone(),
        cluster_id: config.cluster.id.clone(),
        health: Health::Forming,
        phase: Phase::InstallingPackages.as_str().into(),
        detail: String::new(),
        this_node: identity.hostname.clone(),
        expected_nodes: config.cluster.nodes,
        present_nodes: 1,
        nodes: Vec::new(),
        volume: None,
        swarm: None,
        phases: Vec::new(),
        ..Default::default() // status page additions (issue 5)
    }
}

impl Agent {
    fn phase(&self) -> Phase {
        self.log.read().expect("log lock").current()
    }

    /// Moves to `to` through every intermediate phase (each recorded), or straight back for a repair.
    fn walk(&self, to: Phase, detail: &str) {
        let mut log = self.log.write().expect("log lock");
        let at = now_ms();
        while log.current() != to {
            let cur = log.current();
            let step = if to > cur && cur != Phase::Failed {
                cur.next().unwrap_or(to)
            } else {
                to
            };
            let d = if step == to { detail } else { "already done" };
            if let Err(e) = log.go(step, at, d) {
                tracing::error!("{e}");
                return;
            }
        }
        log.set_detail(detail);
        let _ = crate::notify::status(&format!("{}: {detail}", to.as_str()));
    }

    fn set_detail(&self, detail: String) {
        self.log.write().expect("log lock").set_detail(detail);
        self.publish_status();
    }

    /// The packages the cluster needs, before anything else: carried on the card (`agent.packages_archive`,
    /// unpacked into `agent.packages_dir`), else with apt. While they cannot be installed (no network yet) the
    /// detail says what it waits for and the attempt is repeated with a back-off (5 s doubling to 2 min).
    /// The root filesystem is grown first (the disk steps up to root growth): Raspberry Pi OS's root partition
    /// has only a few hundred MB free, the packages take about 100 MB unpacked plus 360 MB installed.
    async fn install_packages(&mut self) {
        let mut attempt = 0u32;
        let mut root_grown = self.options.skip_disk;
        loop {
            let opts = crate::services::ServiceOptions::for_config(&self.config);
            let missing = crate::services::missing_packages(&opts.bin_dirs);
            let interrupted = crate::services::carried_install_interrupted(&opts);
            if missing.is_empty() && !interrupted {
                break;
            }
            if !root_grown {
                self.set_detail("growing the root filesystem to make room for the packages".into());
                let config = self.config.clone();
                let opts = crate::disk::PrepareOptions {
                    device: self.options.device.clone(),
                    fstab: self.options.fstab.clone(),
                    stop_after: Some(crate::disk::StopPoint::Root),
                    ..Default::default()
                };
                let grown = tokio::task::spawn_blocking(move || {
                    let store = crate::state::StateStore::open(&config.agent.state_dir)?;
                    match crate::disk::prepare_disk(&config, &store, &opts) {
                        Ok(_) | Err(crate::disk::DiskError::Stopped(_)) => Ok(()),
                        Err(e) => Err(anyhow::Error::from(e)),
                    }
                })
                .await;
                match grown {
                    Ok(Ok(())) => root_grown = true,
                    // Not fatal here: the packages may still fit; the disk phase reports it again.
                    Ok(Err(e)) => {
                        tracing::warn!("growing the root filesystem before installing: {e:#}")
                    }
                    Err(e) => tracing::warn!("growing the root filesystem before installing: {e}"),
                }
            }
            let source = match (&opts.packages_archive, &opts.packages_dir) {
                (Some(a), _) if a.exists() => format!("the card ({})", a.display()),
                (_, Some(d)) if !crate::packages::debs_in(d).is_empty() => {
                    format!("the card ({})", d.display())
                }
                _ => "the network (apt-get)".to_string(),
            };
            if missing.is_empty() {
                self.set_detail(format!(
                    "installing the packages from {source} again: the last install was cut off"
                ));
            } else {
                self.set_detail(format!("installing {} from {source}", missing.join(", ")));
            }
            let result =
                tokio::task::spawn_blocking(move || crate::services::ensure_packages(&opts)).await;
            let error = match result {
                Ok(Ok(installed)) => {
                    tracing::info!("installed {installed:?}");
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("install task: {e}"),
            };
            let delay = package_retry_delay(attempt);
            attempt += 1;
            tracing::warn!("installing packages: {error}");
            self.set_detail(format!(
                "{error}; attempt {attempt}, next in {} s",
                delay.as_secs()
            ));
            tokio::time::sleep(delay).await;
        }
        self.walk(Phase::PreparingDisk, "preparing the disk");
        self.publish_status();
    }

    /// Packages, disk and services: before discovery, retried until they succeed.
    async fn prepare(&mut self) {
        self.install_packages().await;
        loop {
            if self.options.skip_disk {
                break;
            }
            let config = self.config.clone();
            let opts = crate::disk::PrepareOptions {
                device: self.options.device.clone(),
                fstab: self.options.fstab.clone(),
                ..Default::default()
            };
            let result = tokio::task::spawn_blocking(move || {
                let store = crate::state::StateStore::open(&config.agent.state_dir)?;
                crate::disk::prepare_disk(&config, &store, &opts).map_err(anyhow::Error::from)
            })
            .await;
            match result {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    self.walk(Phase::Failed, &format!("preparing the disk: {e}"));
                    self.publish_status();
                }
                Err(e) => self.walk(Phase::Failed, &format!("disk task: {e}")),
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            self.walk(Phase::PreparingDisk, "retrying");
        }
        self.walk(Phase::EnsuringServices, "starting glusterd and dockerd");
        self.publish_status();
        let retries = std::path::Path::new(crate::services::TCP_RETRIES2);
        if let Err(e) =
            crate::services::limit_tcp_retries(retries, crate::services::CLUSTER_TCP_RETRIES2)
        {
            tracing::warn!("cannot limit TCP retransmissions to dead peers: {e}");
        }
        if self.config.agent.gsyncd_version_shortcut {
            let r = tokio::task::spawn_blocking(|| {
                crate::gluster::gsyncd::install_version_shortcut(Path::new("/"))
            })
            .await;
            match r {
                Ok(Ok(crate::gluster::gsyncd::Shortcut::Installed { path, version })) => {
                    tracing::info!(
                        "{}: answers --version ({version}) without Python now",
                        path.display()
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("gsyncd --version shortcut: {e}"),
                Err(e) => tracing::warn!("gsyncd --version shortcut: {e}"),
            }
        }
        loop {
            self.kick_services().await;
            let gluster_ok = self.gluster.is_responding().await;
            let docker_ok = self.docker().await.is_some();
            if gluster_ok && docker_ok {
                break;
            }
            self.set_detail(format!(
                "waiting for services: glusterd {}, dockerd {}",
                if gluster_ok { "up" } else { "down" },
                if docker_ok { "up" } else { "down" }
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.walk(Phase::Discovering, "looking for peers");
        self.publish_status();
    }

    /// Asks the service layer to (re)start glusterd and dockerd, at most every 10 s.
    async fn kick_services(&mut self) {
        if self
            .last_service_kick
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        self.last_service_kick = Some(Instant::now());
        let mut opts = crate::services::ServiceOptions::for_config(&self.config);
        opts.start_timeout = Duration::from_secs(15);
        let result =
            tokio::task::spawn_blocking(move || crate::services::ensure_services(&opts)).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("ensuring services: {e}"),
            Err(e) => tracing::warn!("ensuring services: {e}"),
        }
    }

    /// A Docker connection, reconnecting when dockerd went away.
    async fn docker(&mut self) -> Option<Docker> {
        if let Some(d) = &self.docker {
            if d.ping().await.is_ok() {
                return Some(d.clone());
            }
            self.docker = None;
        }
        match Docker::connect_at(&docker_socket()).await {
            Ok(d) => {
                self.docker = Some(d.clone());
                Some(d)
            }
            Err(e) => {
                tracing::debug!("dockerd: {e}");
                None
            }
        }
    }

    fn brick_ready(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let mount = &self.config.storage.brick_mount;
        let Ok(m) = std::fs::metadata(mount) else {
            return false;
        };
        let on_own_fs = mount
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|p| p.dev() != m.dev());
        if !(on_own_fs || self.options.skip_disk) {
            return false;
        }
        std::fs::create_dir_all(self.config.brick_path()).is_ok()
    }

    /// Reads this node's real state and fetches the peers' summaries, all at once. Also returns the Swarm nodes
    /// when this node is the Swarm leader.
    async fn observe(&mut self) -> (NodeSummary, Option<Vec<SwarmNodeView>>, Vec<NodeSummary>) {
        let mut s = NodeSummary {
            node_id: self.identity.node_id.clone(),
            hostname: self.identity.hostname.clone(),
            addr: Some(self.addr),
            version: VERSION.into(),
            phase: self.phase().as_str().into(),
            read_at: unix_now(),
            brick_ready: self.brick_ready(),
            ..Default::default()
        };
        let docker = self.docker().await;
        s.dockerd_ok = docker.is_some();
        let vol = self.config.storage.volume_name.clone();
        let mp = self.config.storage.mount_point.clone();
        // The last Swarm reading while it is young (it is dropped when a Swarm action starts).
        let recent_swarm = self
            .swarm_reading
            .as_ref()
            .filter(|(at, _)| docker.is_some() && at.elapsed() < SWARM_READ_EVERY)
            .map(|(_, r)| r.clone());
        let addr = self.addr;
        let memory = &self.swarm_memory;
        let ((glusterd_ok, uuid, pool, volume), mounted, (reading, fresh)) =
            tokio::join!(read_gluster(&self.gluster, &vol), read_mount(&mp), async {
                match recent_swarm {
                    Some(r) => (r, false),
                    None => (read_swarm(docker.as_ref(), addr, memory).await, true),
                }
            },);
        if fresh {
            self.swarm_reading = Some((Instant::now(), reading.clone()));
        }
        let SwarmReading {
            brief: swarm,
            nodes: views,
            tokens,
            in_error,
        } = reading;
        let peers = fresh_summaries(&self.summaries);
        s.swarm_error = in_error;
        s.glusterd_ok = glusterd_ok;
        s.gluster_uuid = uuid;
        s.pool = pool;
        s.volume = volume;
        s.mounted = mounted;
        s.swarm = swarm;
        if s.dockerd_ok {
            *self.shared.tokens.write().expect("tokens lock") = tokens;
        }
        (s, views, peers)
    }

    fn update_hosts(&self) {
        let mut entries = vec![(self.identity.hostname.clone(), self.addr)];
        for p in self.peers.all() {
            entries.push((p.announcement.hostname, p.announcement.addr));
        }
        if let Err(e) = crate::hosts::update(&self.options.hosts_file, &entries) {
            tracing::warn!("{e}");
        }
    }

    /// One reconcile round; returns whether it did something (then the next comes sooner).
    async fn tick(&mut self) -> bool {
        self.refresh_address();
        let (me, swarm_nodes, peers) = self.observe().await;
        *self.shared.summary.write().expect("summary lock") = me.clone();
        if !me.glusterd_ok || !me.dockerd_ok {
            self.kick_services().await;
        }
        self.peer_summaries = peers.clone();
        self.update_hosts();
        let majority_timeout =
            self.started.elapsed() >= Duration::from_secs(self.config.agent.majority_wait_secs);
        let brick_path = self.config.brick_path().display().to_string();
        let stand_in_path = self.config.stand_in_path().display().to_string();
        let pool_down_secs = down_secs(
            &mut self.pool_down_since,
            me.pool
                .iter()
                .filter(|m| !m.connected)
                .map(|m| m.uuid.clone()),
        );
        let pool_unjoined_secs = down_secs(
            &mut self.pool_unjoined_since,
            me.pool
                .iter()
                .filter(|m| !m.in_cluster)
                .map(|m| m.uuid.clone()),
        );
        let swarm_down_secs = down_secs(
            &mut self.swarm_down_since,
            swarm_nodes
                .iter()
                .flatten()
                .filter(|n| !n.ready)
                .map(|n| n.id.clone()),
        );
        let known_addrs: BTreeMap<String, Ipv4Addr> = self
            .peers
            .all()
            .into_iter()
            .map(|p| (p.announcement.hostname, p.announcement.addr))
            .collect();
        self.clear_stale_brick_marks(&me, &peers, &brick_path, &known_addrs);
        self.remove_vacated_stand_in(&me, &stand_in_path, &known_addrs);
        let bricks_missing_secs = self.bricks_missing_secs(&me);
        let p = plan::plan(&Ctx {
            me: &me,
            peers: &peers,
            expected: self.config.cluster.nodes,
            majority_timeout,
            brick_path: &brick_path,
            stand_in_path: &stand_in_path,
            swarm_nodes: swarm_nodes.as_deref(),
            probed_back: &self.probed_back,
            grace_secs: self.config.agent.replace_grace_secs,
            pool_down_secs: &pool_down_secs,
            pool_unjoined_secs: &pool_unjoined_secs,
            swarm_down_secs: &swarm_down_secs,
            known_addrs: &known_addrs,
            bricks_missing_secs,
        });
        let before = self.phase();
        self.walk(p.phase, &p.detail);
        // Peers read the phase from the summary: give them the one just decided, not the one before this tick.
        self.shared.summary.write().expect("summary lock").phase = self.phase().as_str().into();
        if p.phase != before {
            self.record_formation(&me);
        }
        // Busy when this tick changed something (the next reading should come soon); waiting for peers is not.
        let mut busy = false;
        if let Some(vol) = me.volume.as_ref().filter(|v| v.started) {
            let connected: HashSet<String> = me
                .pool
                .iter()
                .filter(|m| m.connected)
                .map(|m| m.uuid.clone())
                .collect();
            if self
                .heal_kicker
                .due(&connected, p.pool_leader, Instant::now())
            {
                let (gluster, name) = (self.gluster.clone(), vol.name.clone());
                tokio::spawn(async move {
                    match gluster.heal_start(&name, false).await {
                        Ok(()) => tracing::info!("asked the self-heal daemons to heal {name} now"),
                        Err(e) => tracing::debug!("heal {name}: {e} (retried)"),
                    }
                });
            }
        }
        if let Some(vol) = me.volume.as_ref().filter(|v| v.started) {
            if self.follow_up_heals.take_due(Instant::now()) {
                let (gluster, name) = (self.gluster.clone(), vol.name.clone());
                tokio::spawn(async move {
                    match full_heal_with_retries(&gluster, &name).await {
                        Ok(()) => tracing::info!("follow-up full heal of {name} started"),
                        Err(e) => tracing::warn!("follow-up full heal of {name} not started: {e}"),
                    }
                    // A full heal does not create a name missing on the new brick without a pending mark on
                    // its directory; a lookup through a fresh mount does.
                    let crawl = mount::lookup_crawl_volume(
                        "localhost",
                        &name,
                        Path::new(FollowUpHeals::CRAWL_MOUNT),
                        FollowUpHeals::CRAWL_LIMIT,
                    )
                    .await;
                    match crawl {
                        Ok(stats) => tracing::info!(
                            entries = stats.entries,
                            errors = stats.errors,
                            truncated = stats.truncated,
                            "follow-up lookup crawl of {name} done"
                        ),
                        Err(e) => tracing::warn!("follow-up lookup crawl of {name} failed: {e}"),
                    }
                });
            }
        }
        busy |= self.spawn_swarm_actions(p.swarm_actions).await;
        for action in p.actions {
            if !self.backoff.due(&action) {
                continue;
            }
            busy = true;
            tracing::info!(?action, "doing");
            let result = self.execute(&action).await;
            self.backoff.record(&action, result.is_ok());
            if let Err(e) = result {
                tracing::warn!(?action, "failed: {e:#}");
                self.log
                    .write()
                    .expect("log lock")
                    .set_detail(format!("{}: {e:#}", p.detail));
                break;
            }
        }
        self.forget_departed(&me);
        self.publish_status();
        busy
    }

    /// For how many seconds one of this node's bricks in the started volume has had no brick process (`None` while
    /// all run, or without a started volume).
    fn bricks_missing_secs(&mut self, me: &NodeSummary) -> Option<u64> {
        let Some(vol) = me.volume.as_ref().filter(|v| v.started) else {
            self.bricks_missing_since = None;
            return None;
        };
        let mine: Vec<String> = vol
            .bricks
            .iter()
            .filter_map(|b| b.split_once(':'))
            .filter(|(host, _)| *host == me.hostname)
            .map(|(_, path)| path.to_string())
            .collect();
        let missing = crate::gluster::brick_process::missing_brick_processes(
            Path::new("/proc"),
            &vol.name,
            &mine,
        );
        if missing.is_empty() {
            self.bricks_missing_since = None;
            self.brick_start_attempts = 0;
            return None;
        }
        let since = *self.bricks_missing_since.get_or_insert_with(Instant::now);
        tracing::debug!(?missing, "bricks of this node without a process");
        Some(since.elapsed().as_secs())
    }

    /// Forgets peers that have been silent for the grace period and are not in this node's pool (replaced and
    /// detached, or never admitted), so the status page stops counting them; a node that returns announces
    /// itself again and is back in the table.
    fn forget_departed(&self, me: &NodeSummary) {
        if !me.glusterd_ok || !plan::gluster_member(me) {
            return;
        }
        let now = unix_now();
        let grace = self.config.agent.replace_grace_secs as i64;
        let in_pool: HashSet<&str> = me.pool.iter().map(|m| m.uuid.as_str()).collect();
        for p in self.peers.all() {
            if now - p.last_seen <= grace.max(PEER_DOWN_SECS) {
                continue;
            }
            let id = &p.announcement.node_id;
            let uuid = self
                .summaries
                .read()
                .expect("summary cache lock")
                .get(id)
                .and_then(|(s, _)| s.gluster_uuid.clone());
            if uuid.is_none_or(|u| !in_pool.contains(u.as_str())) {
                tracing::info!(node = %id, host = %p.announcement.hostname, "forgetting a departed peer");
                self.peers.remove(id);
                self.summaries
                    .write()
                    .expect("summary cache lock")
                    .remove(id);
            }
        }
    }

    /// Follows a changed LAN address (DHCP): peers learn it from the next signed announcement and rewrite their
    /// hosts block, so Gluster, which knows the node by name, follows too.
    fn refresh_address(&mut self) {
        if self.options.address.is_some() {
            return;
        }
        if let Some(a) = lan_address() {
            if a != self.addr {
                tracing::warn!(old = %self.addr, new = %a, "the LAN address changed");
                self.addr = a;
                self.announcement.write().expect("announcement lock").addr = a;
            }
        }
    }

    /// Records the formation in the agent's state file (`formation`): the phase, the volume and swarm ids and
    /// every transition with its time. For people and the benchmark only: decisions never read it back.
    fn record_formation(&self, me: &NodeSummary) {
        let (phase, records) = {
            let log = self.log.read().expect("log lock");
            (log.current(), log.records().to_vec())
        };
        let value = serde_json::json!({
            "phase": phase.as_str(),
            "volume_id": me.volume.as_ref().map(|v| v.id.clone()),
            "swarm_id": me.swarm.as_ref().map(|s| s.cluster_id.clone()),
            "gluster_uuid": me.gluster_uuid,
            "updated_at_ms": now_ms(),
            "transitions": records,
        });
        let result = crate::state::StateStore::open(&self.config.agent.state_dir)
            .and_then(|store| store.update(|s| s.formation = value));
        if let Err(e) = result {
            tracing::warn!("recording the formation state: {e}");
        }
    }

    /// Runs Swarm actions in the background (one batch at a time), beside the volume work, unless a batch still
    /// runs; returns whether it started them.
    async fn spawn_swarm_actions(&mut self, actions: Vec<Action>) -> bool {
        if actions.is_empty() || self.swarm_task.as_ref().is_some_and(|t| !t.is_finished()) {
            return false;
        }
        let Some(docker) = self.docker().await else {
            return false;
        };
        self.swarm_reading = None;
        let client = self.client.clone();
        let peers = self.peers.clone();
        let addr = self.addr;
        let backoff = self.backoff.clone();
        let memory = self.swarm_memory.clone();
        self.swarm_task = Some(tokio::spawn(async move {
            for action in actions {
                if !backoff.due(&action) {
                    continue;
                }
                tracing::info!(?action, "doing");
                let result = swarm_action(&action, &docker, &client, &peers, addr, &memory).await;
                backoff.record(&action, result.is_ok());
                if let Err(e) = result {
                    tracing::warn!(?action, "failed: {e:#}");
                    break;
                }
            }
        }));
        true
    }

    /// Asks for a full heal after a brick was added or replaced. glusterd refuses while the self-heal daemons
    /// reconnect to the new brick or another transaction holds the volume: a few tries, 2 s apart.
    async fn full_heal(&self, vol: &str) {
        if let Err(e) = full_heal_with_retries(&self.gluster, vol).await {
            tracing::warn!("full heal of {vol} not started: {e}");
        }
    }

    /// Frees this node's brick directory when it is marked for a volume (see [`brick`]) that does not list it:
    /// the volume this node knows does not list its brick, or no node of the cluster knows any volume; and that
    /// has lasted [`STALE_MARK_AFTER`] (a transaction under way marks the brick before the volume lists it).
    /// - Marks of this volume on a brick holding no data (an add-brick or replace-brick that failed after marking
    ///   it) are cleared.
    /// - Any other marked brick (an earlier life's brick, with data or of another volume: a card flashed again
    ///   keeps its brick filesystem; or this node's old brick after a fresh card took its slot) is set aside whole
    ///   ([`brick::set_aside`]): nothing is deleted, and the node can take a slot with an empty brick.
    fn clear_stale_brick_marks(
        &mut self,
        me: &NodeSummary,
        peers: &[NodeSummary],
        brick_path: &str,
        known_addrs: &BTreeMap<String, Ipv4Addr>,
    ) {
        let dir = self.config.brick_path();
        let not_listed = match &me.volume {
            Some(vol) => !may_list_my_brick(me, vol, brick_path, self.addr, known_addrs),
            // This node's glusterd is in a pool with others and knows no volume, and no peer reports one:
            // glusterd hands every volume to a member when it joins, so no volume of this cluster lists the brick.
            None => {
                me.glusterd_ok
                    && me.pool.iter().filter(|m| m.connected).count() >= 2
                    && peers.iter().all(|p| p.volume.is_none())
            }
        };
        // The brick's mark is read only then (an xattr read each tick otherwise).
        let unlisted = (me.brick_ready && not_listed)
            .then(|| brick::volume_mark(&dir).ok().flatten())
            .flatten();
        if !held_for(
            &mut self.stale_mark_since,
            unlisted.is_some(),
            STALE_MARK_AFTER,
        ) {
            return;
        }
        let Some(mark) = unlisted else { return };
        let this_volume = me
            .volume
            .as_ref()
            .filter(|v| v.id.eq_ignore_ascii_case(&mark));
        if let Some(vol) = this_volume {
            match brick::clear_stale_marks(&dir, &vol.id) {
                Ok(true) => {
                    tracing::warn!(
                        "cleared the marks of volume {} from {} (an add-brick or replace-brick failed after \
                         marking it; the volume does not list it and it holds no data): it can be added again",
                        vol.id,
                        dir.display()
                    );
                    return;
                }
                Ok(false) => return,
                Err(brick::BrickMarkError::HoldsData { .. }) => {}
                Err(e) => {
                    tracing::warn!("{e}");
                    return;
                }
            }
        }
        match brick::set_aside(&dir, unix_now()) {
            Ok(Some(to)) => tracing::warn!(
                "the brick directory {} was marked for volume {mark}, which {}: set it aside whole as {} \
                 (nothing deleted; remove it to free its space once its files are not needed) and start an \
                 empty brick",
                dir.display(),
                if this_volume.is_some() {
                    "no longer lists this node's brick (a copy from before it was replaced)"
                } else {
                    "is not this cluster's volume (a card flashed again keeps its brick filesystem)"
                },
                to.display()
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Removes this node's stand-in brick directory once the volume no longer lists it (a node took its slot with
    /// `replace-brick`) and that has lasted [`VACATED_STAND_IN_AFTER`]: it holds only copies the other bricks have, and
    /// left in place it would keep their space on this node's card. Nothing is removed while the volume cannot be
    /// read.
    fn remove_vacated_stand_in(
        &mut self,
        me: &NodeSummary,
        stand_in_path: &str,
        known_addrs: &BTreeMap<String, Ipv4Addr>,
    ) {
        let dir = self.config.stand_in_path();
        let vacated = me.volume.as_ref().is_some_and(|vol| {
            me.glusterd_ok
                && !may_list_my_brick(me, vol, stand_in_path, self.addr, known_addrs)
                && dir.exists()
        });
        if !held_for(
            &mut self.stand_in_vacated_since,
            vacated,
            VACATED_STAND_IN_AFTER,
        ) {
            return;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(
                "removed the stand-in brick {}: a node took its slot in the volume",
                dir.display()
            ),
            Err(e) => tracing::warn!("removing the stand-in brick {}: {e}", dir.display()),
        }
    }

    async fn execute(&mut self, action: &Action) -> anyhow::Result<()> {
        let vol = self.config.storage.volume_name.clone();
        match action {
            Action::Probe(host) => self.gluster.peer_probe(host).await?,
            Action::ProbeBack(host) => {
                self.gluster.peer_probe(host).await?;
                self.probed_back.insert(host.clone());
            }
            Action::CreateVolume { replica, bricks } => {
                // Two bricks on one host (a stand-in beside its host's brick) need `force`.
                let hosts: HashSet<&str> = bricks
                    .iter()
                    .filter_map(|b| b.split_once(':').map(|(h, _)| h))
                    .collect();
                let force = self.options.force_bricks || hosts.len() < bricks.len();
                match self
                    .gluster
                    .volume_create_replica(&vol, *replica, bricks, force)
                    .await
                {
                    Err(e) if e.is_already() => {}
                    Err(e) if e.is_brick_in_use() => Err(e).with_context(|| {
                        format!(
                            "a brick directory is marked for an earlier volume (a card flashed again keeps its \
                             brick filesystem): its node sets it aside once no volume of this cluster has listed it \
                             for {} s",
                            STALE_MARK_AFTER.as_secs()
                        )
                    })?,
                    r => r?,
                }
            }
            Action::SetOptions(options) => match options.as_slice() {
                [(k, v)] => self.gluster.volume_set(&vol, k, v).await?,
                _ => {
                    // Several options in one glusterd transaction (each `volume set` costs about a second):
                    // an option group file, applied with `volume set VOL group NAME`.
                    let text: String = options.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                    std::fs::write(GROUP_FILE, text)
                        .with_context(|| format!("writing the option group {GROUP_FILE}"))?;
                    self.gluster.volume_set(&vol, "group", GROUP_NAME).await?
                }
            },
            Action::SetGlobalOption(k, v) => self.gluster.volume_set("all", k, v).await?,
            Action::StartVolume => match self.gluster.volume_start(&vol, false).await {
                Err(e) if e.is_already() => {}
                r => r?,
            },
            Action::StartMissingBricks => {
                // The next try comes BRICK_RESTART_SECS later, then twice as long each time (at most 10 min):
                // a brick that cannot start (its directory damaged) does not keep glusterd busy.
                self.brick_start_attempts += 1;
                let extra = (plan::BRICK_RESTART_SECS << (self.brick_start_attempts - 1).min(6))
                    .saturating_sub(plan::BRICK_RESTART_SECS)
                    .min(600);
                self.bricks_missing_since = Some(Instant::now() + Duration::from_secs(extra));
                self.gluster.volume_start(&vol, true).await?;
            }
            Action::ReplaceBrick { old, new } => {
                self.gluster.replace_brick(&vol, old, new).await?;
                // Self-heal fills the new brick; a full heal makes sure it starts at once.
                self.full_heal(&vol).await;
                self.follow_up_heals.brick_change(Instant::now());
            }
            Action::Detach(host) => {
                if let Err(e) = self.gluster.peer_detach(host, false).await {
                    tracing::info!("plain detach of {host} refused ({e}); detaching with force");
                    self.gluster.peer_detach(host, true).await?;
                }
            }
            Action::AddBrick { replica, brick } => {
                self.gluster
                    .add_brick(&vol, *replica, brick, self.options.force_bricks)
                    .await?;
                // A raised replica count marks nothing pending for the new brick: only a full crawl fills it.
                self.full_heal(&vol).await;
                // Files being written while the clients switch to the new brick list can end up shorter (often
                // empty) on the new brick with no pending mark, so no index heal ever looks at them. A full crawl
                // compares sizes and heals from the largest copy: run it again once every client has switched.
                self.follow_up_heals.brick_change(Instant::now());
            }
            Action::Mount(servers) => {
                let mp = self.config.storage.mount_point.clone();
                mount::mount_volume(servers, &vol, &mp).await?;
                mount::ensure_fstab_entry(
                    &self.options.fstab,
                    &mount::fstab_entry(servers, &vol, &mp),
                )?;
            }
            other => {
                let d = self.docker().await.context("dockerd does not answer")?;
                swarm_action(
                    other,
                    &d,
                    &self.client,
                    &self.peers,
                    self.addr,
                    &self.swarm_memory,
                )
                .await?;
            }
        }
        Ok(())
    }

    fn publish_status(&self) {
        let me = self.shared.summary.read().expect("summary lock").clone();
        let now = unix_now();
        let (phase, mut detail, records) = {
            let log = self.log.read().expect("log lock");
            (
                log.current(),
                log.detail().to_string(),
                log.records().to_vec(),
            )
        };
        let pool_state = |uuid: Option<&str>| -> String {
            match uuid.and_then(|u| me.pool.iter().find(|m| m.uuid == u)) {
                Some(m) if m.connected => "connected".into(),
                Some(_) => "disconnected".into(),
                None => "not in pool".into(),
            }
        };
        let role = |s: &NodeSummary| match &s.swarm {
            Some(sw) if sw.is_manager => "manager".to_string(),
            Some(_) => "worker".to_string(),
            None => "none".to_string(),
        };
        let mut nodes = vec![NodeStatus {
            name: me.hostname.clone(),
            node_id: me.node_id.clone(),
            address: me.addr,
            agent_state: phase.as_str().into(),
            last_seen: now,
            up: true,
            gluster_peer: if me.glusterd_ok {
                "self".into()
            } else {
                "glusterd down".into()
            },
            swarm_role: role(&me),
            mount_ok: me.mounted,
            ..Default::default() // status page additions (issue 5)
        }];
        let by_id: BTreeMap<&str, &NodeSummary> = self
            .peer_summaries
            .iter()
            .map(|s| (s.node_id.as_str(), s))
            .collect();
        for p in self.peers.all() {
            let a = &p.announcement;
            let up = now - p.last_seen <= PEER_DOWN_SECS;
            let s = by_id.get(a.node_id.as_str()).filter(|_| up);
            nodes.push(NodeStatus {
                name: a.hostname.clone(),
                node_id: a.node_id.clone(),
                address: Some(a.addr),
                agent_state: s.map(|s| s.phase.clone()).unwrap_or_else(|| {
                    if up {
                        a.phase.clone()
                    } else {
                        "down".into()
                    }
                }),
                last_seen: p.last_seen,
                up,
                gluster_peer: pool_state(s.and_then(|s| s.gluster_uuid.as_deref())),
                swarm_role: s.map(|s| role(s)).unwrap_or_else(|| "unknown".into()),
                mount_ok: s.is_some_and(|s| s.mounted),
                ..Default::default() // status page additions (issue 5)
            });
        }
        let present = nodes.iter().filter(|n| n.up).count() as u32;
        let health = match phase {
            Phase::Failed => Health::Failed,
            Phase::Steady => {
                let stand_in_path = self.config.stand_in_path().display().to_string();
                let stand_in_hosts: Vec<&str> = me
                    .volume
                    .iter()
                    .flat_map(|v| plan::stand_in_bricks(&v.bricks, &stand_in_path))
                    .map(|(_, host)| host)
                    .collect();
                let (health, why) = steady_health(
                    &nodes,
                    self.config.cluster.nodes,
                    me.pool.iter().all(|m| m.connected),
                    &stand_in_hosts,
                    self.follow_up_heals.settling(Instant::now()),
                );
                if let Some(why) = why {
                    detail = why;
                }
                health
            }
            _ => Health::Forming,
        };
        let status = ClusterStatus {
            schema: STATUS_SCHEMA,
            cluster_name: self.config.cluster.name.clone(),
            cluster_id: self.config.cluster.id.clone(),
            health,
            phase: phase.as_str().into(),
            detail,
            this_node: self.identity.hostname.clone(),
            expected_nodes: self.config.cluster.nodes,
            present_nodes: present,
            nodes,
            volume: me.volume.clone(),
            swarm: me.swarm.clone(),
            phases: records,
            ..Default::default() // status page additions (issue 5)
        };
        *self.shared.status.write().expect("status lock") = status;
    }
}

/// The health of a node in phase `steady`, from the node table it publishes: healthy only when every expected node
/// is up with the volume mounted and in the swarm, the pool is connected, no brick is a stand-in, the swarm has its
/// wanted managers and no new brick is being filled. Returns a detail replacing the phase's when it has one.
fn steady_health(
    nodes: &[NodeStatus],
    expected: u32,
    pool_connected: bool,
    stand_in_hosts: &[&str],
    settling: Option<Duration>,
) -> (Health, Option<String>) {
    let present = nodes.iter().filter(|n| n.up).count() as u32;
    let all_good = nodes
        .iter()
        .all(|n| n.up && n.mount_ok && n.swarm_role != "none")
        && present >= expected
        && pool_connected;
    let managers = nodes.iter().filter(|n| n.swarm_role == "manager").count();
    let want_managers = election::desired_managers(nodes.len());
    if !stand_in_hosts.is_empty() {
        let why = format!(
            "{} of the volume's bricks are stand-ins (on {}) for missing nodes: a second copy on that card until a \
             node joins and takes the slot",
            stand_in_hosts.len(),
            stand_in_hosts.join(", ")
        );
        (Health::Degraded, Some(why))
    } else if !all_good {
        (Health::Degraded, None)
    } else if managers < want_managers {
        // One Swarm manager of four survives no loss: not healthy until the leader has promoted the wanted count
        // (one at a time, each once the last is a reachable Raft member).
        let why = format!(
            "the swarm has {managers} of {want_managers} managers: the leader promotes workers one at a time"
        );
        (Health::Degraded, Some(why))
    } else if let Some(left) = settling {
        let why = format!(
            "filling the new brick: heals and lookups of every name for {} s more",
            left.as_secs().max(1)
        );
        (Health::Degraded, Some(why))
    } else {
        (Health::Healthy, None)
    }
}

/// What dockerd answers when asked to demote a manager that Raft no longer lists (seen in fault case 6: the dead
/// manager stayed in `docker node ls` as a manager and every demote failed with it).
const NOT_IN_RAFT: &str = "can't find manager in raft memberlist";

/// Name of the option group file the agent writes (see [`Action::SetOptions`]).
pub const GROUP_NAME: &str = "picluster-agent";
/// Where glusterd reads option groups from.
pub const GROUP_FILE: &str = "/var/lib/glusterd/groups/picluster-agent";

async fn read_gluster(
    gluster: &Gluster,
    volume: &str,
) -> (bool, Option<String>, Vec<PoolMember>, Option<VolumeBrief>) {
    let pool = match gluster.pool_list().await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("gluster pool list: {e}");
            return (false, None, Vec::new(), None);
        }
    };
    let uuid = pool.iter().find(|p| p.is_self).map(|p| p.uuid.clone());
    let members = pool
        .into_iter()
        .map(|p| PoolMember {
            in_cluster: p.in_cluster(),
            connected: p.connected || p.is_self,
            uuid: p.uuid,
            hostname: p.hostname,
        })
        .collect();
    let vol = match gluster.volume_info(volume).await {
        Ok(Some(v)) => Some(VolumeBrief {
            name: v.name,
            id: v.id,
            replica: v.replica_count,
            bricks: v.bricks.iter().map(|b| b.spec()).collect(),
            started: v.status == VolumeState::Started,
            options: v.options,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!("gluster volume info: {e}");
            None
        }
    };
    (true, uuid, members, vol)
}

/// Whether the volume is mounted and working here (see [`mount::mount_counts`]): a Gluster mount that answers, or
/// one that waits for a lost brick or for quorum while its FUSE client runs. Never judged by the pool being
/// complete: a survivor of a lost peer keeps its mount and stays steady.
async fn read_mount(mount_point: &std::path::Path) -> bool {
    let health = mount::mount_health(mount_point, mount::STATFS_TIMEOUT).await;
    let gluster = match &health {
        mount::MountHealth::Answering { entry, .. }
        | mount::MountHealth::NotAnswering { entry, .. } => entry.fstype.contains("glusterfs"),
        mount::MountHealth::NotMounted => false,
    };
    let client = matches!(health, mount::MountHealth::NotAnswering { .. })
        && mount::fuse_client_running(mount_point);
    gluster && mount::mount_counts(&health, client)
}

async fn read_swarm(docker: Option<&Docker>, addr: Ipv4Addr, memory: &SwarmMemory) -> SwarmReading {
    let Some(d) = docker else {
        return SwarmReading::default();
    };
    let st = match d.swarm_state().await {
        Ok(st) => st,
        Err(e) => {
            tracing::debug!("swarm state: {e}");
            return SwarmReading::default();
        }
    };
    if !matches!(
        st.local_state,
        LocalNodeState::Active | LocalNodeState::Pending
    ) {
        return SwarmReading {
            in_error: st.local_state == LocalNodeState::Error,
            ..Default::default()
        };
    }
    if st.local_state == LocalNodeState::Active {
        memory
            .seen_active
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mut brief = SwarmBrief {
        cluster_id: st.swarm_id.clone().unwrap_or_default(),
        node_id: st.node_id.clone().unwrap_or_default(),
        is_manager: st.is_manager,
        is_leader: false,
        remote_managers: st.remote_managers.clone(),
    };
    if !st.is_manager {
        return SwarmReading {
            brief: Some(brief),
            ..Default::default()
        };
    }
    let (nodes, tokens) = tokio::join!(d.nodes(), d.join_tokens());
    let mut views = None;
    if let Ok(nodes) = nodes {
        brief.is_leader = nodes.iter().any(|n| n.leader && n.id == brief.node_id);
        if brief.is_leader {
            views = Some(
                nodes
                    .iter()
                    .map(|n| SwarmNodeView {
                        id: n.id.clone(),
                        hostname: n.hostname.clone(),
                        is_manager: n.role == NodeRole::Manager,
                        ready: n.state == NodeState::Ready,
                        reachable: n.reachability.as_deref() == Some("reachable"),
                        mount_label: n.labels.get(MOUNT_LABEL).cloned(),
                    })
                    .collect(),
            );
        }
    }
    let tokens = tokens.ok().map(|t| JoinTokens {
        worker: t.worker,
        manager: t.manager,
        remote_addrs: vec![format!("{addr}:2377")],
    });
    SwarmReading {
        brief: Some(brief),
        nodes: views,
        tokens,
        in_error: false,
    }
}

/// When a pool member comes back (disconnected, then connected again), the pool leader asks the self-heal
/// daemons to heal at once (`gluster volume heal VOL`) instead of waiting for their next index crawl, and asks
/// again every [`HealKicker::EVERY`] for [`HealKicker::WINDOW`]: the returning node's brick starts some seconds
/// after its glusterd reconnects, and glusterd refuses a heal until every self-heal daemon reaches every brick.
#[derive(Debug, Default)]
struct HealKicker {
    /// Pool members connected at the previous tick (`None` before the first).
    last: Option<HashSet<String>>,
    /// Until when to keep asking, and when it last asked.
    window: Option<(Instant, Option<Instant>)>,
}

impl HealKicker {
    const WINDOW: Duration = Duration::from_secs(60);
    const EVERY: Duration = Duration::from_secs(5);

    /// Feeds this tick's connected pool members; returns whether to ask for a heal now.
    fn due(&mut self, connected: &HashSet<String>, leader: bool, now: Instant) -> bool {
        let returned = self
            .last
            .as_ref()
            .is_some_and(|before| connected.iter().any(|u| !before.contains(u)));
        self.last = Some(connected.clone());
        if returned {
            self.window = Some((now + Self::WINDOW, None));
        }
        let Some((until, asked)) = self.window else {
            return false;
        };
        if now > until {
            self.window = None;
            return false;
        }
        if !leader || asked.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            return false;
        }
        self.window = Some((until, Some(now)));
        true
    }
}

/// Starts a full heal (`gluster volume heal VOL full`), asking again every 2 s up to 8 times: glusterd refuses
/// while a self-heal daemon cannot reach every brick yet.
async fn full_heal_with_retries(
    gluster: &Gluster,
    vol: &str,
) -> Result<(), crate::gluster::GlusterError> {
    let mut attempt = 1;
    loop {
        match gluster.heal_start(vol, true).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt == 8 => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
        attempt += 1;
    }
}

/// Whether a condition, `holds` now, has held without a break for `after`, `since` keeping when it began (reset
/// when it breaks, and once it answers true, so an action taken on it waits another `after` before it is repeated).
fn held_for(since: &mut Option<Instant>, holds: bool, after: Duration) -> bool {
    if !holds {
        *since = None;
        return false;
    }
    let began = *since.get_or_insert_with(Instant::now);
    if began.elapsed() < after {
        return false;
    }
    *since = None;
    true
}

/// How long this node's brick must stay marked for the volume without being listed by it before the marks are
/// cleared ([`Agent::clear_stale_brick_marks`]). A `replace-brick` or `add-brick` marks the brick when it is
/// staged and lists it only when it commits: the marks must outlast any transaction, and glusterd releases a
/// transaction's lock after 180 s at most. 20 s was too short on slow hardware: on four emulated Pis (ci/e2e,
/// 2026-12-03) a replace-brick onto a fresh node took longer, its agent cleared the marks half-way, the brick was
/// listed without its `.glusterfs` directory, and its process could never start ("Failed to find parent dir").
const STALE_MARK_AFTER: Duration = Duration::from_secs(200);

/// How long this node's stand-in brick directory must be out of the volume before it is removed
/// ([`Agent::remove_vacated_stand_in`]; the volume stops listing it only once the replace-brick has committed).
const VACATED_STAND_IN_AFTER: Duration = Duration::from_secs(20);

/// Whether `vol` may list this node's brick (`brick_path` on this node). Bricks sit at the same path on every
/// node, so a brick at that path counts as this node's unless its host is, by name or by address, another member
/// of the pool: a host name this node cannot place is taken as possibly its own, so a live brick is never taken
/// for a stale one.
fn may_list_my_brick(
    me: &NodeSummary,
    vol: &VolumeBrief,
    brick_path: &str,
    my_addr: Ipv4Addr,
    known_addrs: &BTreeMap<String, Ipv4Addr>,
) -> bool {
    let my_addr = my_addr.to_string();
    let is_me = |host: &str| host == me.hostname || host == my_addr;
    let others: Vec<&str> = me
        .pool
        .iter()
        .filter(|m| m.hostname != "localhost" && Some(&m.uuid) != me.gluster_uuid.as_ref())
        .map(|m| m.hostname.as_str())
        .filter(|h| !is_me(h))
        .collect();
    // Either side may be the address: glusterd lists a member as it was probed, the volume names a brick host.
    let another_members = |host: &str| {
        !is_me(host)
            && others.iter().any(|o| {
                plan::member_is(o, host, known_addrs) || plan::member_is(host, o, known_addrs)
            })
    };
    vol.bricks.iter().any(|b| {
        b.split_once(':')
            .is_some_and(|(host, path)| path == brick_path && !another_members(host))
    })
}

/// Full heals owed after a brick change (add-brick, replace-brick) done by this node, at
/// [`FollowUpHeals::AFTER`] past the change. Found by the fault suite (case 1): a file open for writing while the
/// clients switch to the new brick list stays short on the new brick, with no pending mark for index heals; a full
/// crawl sees the size mismatch and heals it from the largest copy. It does not create a name missing on the new
/// brick without an entry-pending mark on its directory (fault case 1a): a lookup crawl of a fresh mount, run
/// after each follow-up heal, does. Until [`FollowUpHeals::SETTLED_AFTER`] past the change the node reports the
/// cluster degraded: a read may meet a short copy on the new brick until the follow-ups have run.
#[derive(Debug, Default)]
struct FollowUpHeals {
    /// When each owed heal is due, earliest first.
    due: Vec<Instant>,
    /// When the last brick change was done by this node.
    changed_at: Option<Instant>,
}

impl FollowUpHeals {
    /// Delays after a brick change: one soon after the clients switch, one when every client has switched, one
    /// later for slow clients.
    const AFTER: [Duration; 3] = [
        Duration::from_secs(10),
        Duration::from_secs(45),
        Duration::from_secs(240),
    ];
    /// How long after a brick change the node says the cluster is still settling (degraded): the second
    /// follow-up and time for its heal and lookup crawl.
    const SETTLED_AFTER: Duration = Duration::from_secs(75);
    /// Most names one lookup crawl of the mount looks at (a card's volume of small files stays well below).
    const CRAWL_LIMIT: u64 = 2_000_000;
    /// Where the lookup crawl mounts the volume (private to the agent, in the run-time directory).
    const CRAWL_MOUNT: &'static str = "/run/picluster/crawl";

    /// Records a brick change at `now`; heals owed for an earlier change are replaced.
    fn brick_change(&mut self, now: Instant) {
        self.due = Self::AFTER.iter().map(|d| now + *d).collect();
        self.changed_at = Some(now);
    }

    /// How long the last brick change still settles at `now` (`None`: settled, or no change).
    fn settling(&self, now: Instant) -> Option<Duration> {
        let until = self.changed_at? + Self::SETTLED_AFTER;
        (now < until).then(|| until - now)
    }

    /// Whether a heal is due at `now`; consumes every owed heal that is due (several due at once make one heal).
    fn take_due(&mut self, now: Instant) -> bool {
        let before = self.due.len();
        self.due.retain(|t| *t > now);
        self.due.len() != before
    }
}

/// Exponential back-off per failing action (250 ms doubling up to 15 s), so a step that keeps failing (an
/// unreachable peer, a busy glusterd) is retried without hammering; success clears it.
#[derive(Clone, Default)]
struct Backoff(Arc<std::sync::Mutex<BTreeMap<String, (u32, Instant)>>>);

impl Backoff {
    fn due(&self, action: &Action) -> bool {
        let map = self.0.lock().expect("backoff lock");
        map.get(&format!("{action:?}"))
            .is_none_or(|(_, next)| Instant::now() >= *next)
    }

    fn record(&self, action: &Action, ok: bool) {
        let mut map = self.0.lock().expect("backoff lock");
        let key = format!("{action:?}");
        if ok {
            map.remove(&key);
        } else {
            let count = map.get(&key).map_or(0, |(c, _)| *c) + 1;
            let delay = Duration::from_millis(250u64 << count.min(6)).min(Duration::from_secs(15));
            map.insert(key, (count, Instant::now() + delay));
        }
    }
}

/// How long to wait before installing packages again after failed attempt `attempt` (0-based): 5 s, doubling,
/// at most 2 minutes.
pub fn package_retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(5u64 << attempt.min(5)).min(Duration::from_secs(120))
}

/// Keeps `since` to the ids in `down` (first time seen down, kept while it stays down) and returns for how many
/// whole seconds each has been down.
fn down_secs(
    since: &mut BTreeMap<String, Instant>,
    down: impl Iterator<Item = String>,
) -> BTreeMap<String, u64> {
    let now = Instant::now();
    let down: HashSet<String> = down.collect();
    since.retain(|k, _| down.contains(k));
    for k in down {
        since.entry(k).or_insert(now);
    }
    since
        .iter()
        .map(|(k, t)| (k.clone(), now.duration_since(*t).as_secs()))
        .collect()
}

/// Peer summaries fetched by the poller, with when they were fetched.
type SummaryCache = Arc<RwLock<BTreeMap<String, (NodeSummary, Instant)>>>;

/// A summary older than this is not used for decisions (the peer counts as absent).
pub const SUMMARY_FRESH: Duration = Duration::from_secs(4);

fn fresh_summaries(cache: &SummaryCache) -> Vec<NodeSummary> {
    cache
        .read()
        .expect("summary cache lock")
        .values()
        .filter(|(_, at)| at.elapsed() <= SUMMARY_FRESH)
        .map(|(s, _)| s.clone())
        .collect()
}

/// Fetches every known peer's summary in the background, each peer on its own (a dead peer's timeouts never
/// hold up the others or the reconcile loop), about once a second ([`SUMMARY_FRESH`] allows a few misses).
fn spawn_peer_poller(client: PeerClient, peers: Arc<PeerTable>, cache: SummaryCache) {
    tokio::spawn(async move {
        let mut inflight: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
        loop {
            inflight.retain(|_, h| !h.is_finished());
            for p in peers.all() {
                let a = p.announcement;
                if inflight.contains_key(&a.node_id) {
                    continue;
                }
                let (client, peers, cache) = (client.clone(), peers.clone(), cache.clone());
                let id = a.node_id.clone();
                inflight.insert(
                    id.clone(),
                    tokio::spawn(async move {
                        match client
                            .summary(SocketAddr::new(a.addr.into(), a.api_port))
                            .await
                        {
                            Ok(s) if s.node_id == id => {
                                peers.touch(&id, unix_now());
                                cache
                                    .write()
                                    .expect("summary cache lock")
                                    .insert(id, (s, Instant::now()));
                            }
                            Ok(_) => {
                                tracing::warn!(node = %id, "peer answered with another node id")
                            }
                            Err(e) => tracing::debug!(node = %id, "summary: {e}"),
                        }
                    }),
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// What this agent's own Swarm actions left behind, for the next ones.
#[derive(Debug, Default)]
pub struct SwarmMemory {
    /// Set once this agent asked dockerd to join a swarm.
    pub joined_here: std::sync::atomic::AtomicBool,
    /// Set once this agent read the node as an active swarm member.
    pub seen_active: std::sync::atomic::AtomicBool,
    /// Set once this agent asked dockerd to initialise a swarm.
    pub initialised_here: std::sync::atomic::AtomicBool,
}

async fn swarm_action(
    action: &Action,
    d: &Docker,
    client: &PeerClient,
    peers: &PeerTable,
    addr: Ipv4Addr,
    memory: &SwarmMemory,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    match action {
        Action::SwarmInit => {
            if memory.initialised_here.load(Ordering::Relaxed)
                && d.swarm_state().await?.local_state == LocalNodeState::Error
            {
                // An init of this agent's that failed half-way (Raft not ready in time on a loaded node) leaves
                // state `error`, and every init then answers "already part of a swarm": leave that half-made swarm
                // (no node could join it) and initialise again. Never a swarm found in state `error` at start:
                // after a power cut that is a manager of the cluster's swarm waiting for its peers.
                tracing::warn!(
                    "this node's swarm init failed half-way: leaving, initialising again"
                );
                d.leave(true).await?;
            }
            memory.initialised_here.store(true, Ordering::Relaxed);
            d.clone()
                .with_timeout(SWARM_INIT_TIMEOUT)
                .swarm_init(&addr.to_string(), SWARM_LISTEN)
                .await?;
        }
        Action::SwarmJoin { via } => {
            if d.swarm_state().await?.local_state == LocalNodeState::Error {
                // A join of this agent's that never became active and ended in state `error` answers every
                // further join with "already part of a swarm": leave it and join again. Never a node that was an
                // active member: a promoted node whose Raft join failed is in state `error` while dockerd starts
                // it again, and leaving would strand its node id in the swarm as a manager that never answers.
                anyhow::ensure!(
                    memory.joined_here.load(Ordering::Relaxed)
                        && !memory.seen_active.load(Ordering::Relaxed),
                    "dockerd reports this node's swarm in state error, not from a join of this agent's that \
                     never became active: dockerd retries it (not leaving)"
                );
                tracing::warn!("this node's swarm join failed half-way: leaving, joining again");
                d.leave(true).await?;
            }
            let peer = peers.get(via).context("the manager left the peer table")?;
            let a = peer.announcement;
            let t = client
                .join_token(SocketAddr::new(a.addr.into(), a.api_port), "worker")
                .await?;
            memory.joined_here.store(true, Ordering::Relaxed);
            d.swarm_join(&addr.to_string(), SWARM_LISTEN, &t.remote_addrs, &t.token)
                .await?;
        }
        Action::Promote(id) => d.set_node_role(id, NodeRole::Manager).await?,
        Action::Demote(id) => match d.set_node_role(id, NodeRole::Worker).await {
            // A dead manager already dropped from Raft cannot be demoted, and nothing else takes it out of the
            // node list: remove it as the planner would once demoted.
            Err(e) if e.to_string().contains(NOT_IN_RAFT) => {
                tracing::info!("{id} is no longer in the Raft member list: removing it");
                d.remove_node(id, true).await?
            }
            r => r?,
        },
        Action::RemoveNode(id) => d.remove_node(id, true).await?,
        Action::Label(id, value) => d.set_node_label(id, MOUNT_LABEL, value).await?,
        other => anyhow::bail!("{other:?} is not a Swarm action"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn steady_is_healthy_only_with_every_node_and_the_wanted_managers() {
        let node = |name: &str, role: &str| NodeStatus {
            name: name.into(),
            up: true,
            mount_ok: true,
            swarm_role: role.into(),
            ..Default::default()
        };
        let mut nodes = vec![
            node("n1", "manager"),
            node("n2", "manager"),
            node("n3", "manager"),
            node("n4", "worker"),
        ];
        assert_eq!(
            steady_health(&nodes, 4, true, &[], None),
            (Health::Healthy, None)
        );
        // Right after formation the leader has promoted one worker of two (the CI red of stop 14: the status
        // page said healthy with 1 manager).
        nodes[2].swarm_role = "worker".into();
        let (h, why) = steady_health(&nodes, 4, true, &[], None);
        assert_eq!(h, Health::Degraded);
        assert!(why.unwrap().contains("2 of 3 managers"));
        nodes[2].swarm_role = "manager".into();
        // A node down, a pool member disconnected, a stand-in brick, a new brick being filled.
        nodes[3].up = false;
        assert_eq!(
            steady_health(&nodes, 4, true, &[], None).0,
            Health::Degraded
        );
        nodes[3].up = true;
        assert_eq!(
            steady_health(&nodes, 4, false, &[], None).0,
            Health::Degraded
        );
        let (h, why) = steady_health(&nodes, 4, true, &["n1"], None);
        assert_eq!(h, Health::Degraded);
        assert!(why.unwrap().contains("stand-ins (on n1)"));
        let (h, why) = steady_health(&nodes, 4, true, &[], Some(Duration::from_secs(7)));
        assert_eq!(h, Health::Degraded);
        assert!(why.unwrap().contains("7 s more"));
        // Fewer nodes than expected.
        assert_eq!(
            steady_health(&nodes[..3], 4, true, &[], None).0,
            Health::Degraded
        );
    }

    #[test]
    fn tick_pause_leaves_slow_hardware_time_for_the_daemons() {
        let ms = Duration::from_millis;
        // Fast hardware: the fixed cadence.
        assert_eq!(tick_pause(true, ms(40)), ms(300));
        assert_eq!(tick_pause(false, ms(40)), ms(1000));
        // A slow tick is followed by at least as long a pause (three times as long when it did nothing), capped.
        assert_eq!(tick_pause(true, ms(4000)), ms(4000));
        assert_eq!(tick_pause(false, ms(4000)), ms(12_000));
        assert_eq!(tick_pause(false, ms(60_000)), ms(15_000));
    }

    #[test]
    fn held_for_answers_once_a_condition_lasted_and_restarts_on_a_break() {
        let mut since = None;
        assert!(!held_for(&mut since, false, Duration::ZERO));
        assert!(since.is_none());
        assert!(!held_for(&mut since, true, Duration::from_secs(60)));
        assert!(since.is_some(), "the clock started");
        assert!(!held_for(&mut since, false, Duration::from_secs(60)));
        assert!(since.is_none(), "a break resets it");
        assert!(held_for(&mut since, true, Duration::ZERO));
        assert!(since.is_none(), "answered: the next answer waits again");
    }

    #[test]
    fn a_brick_is_taken_for_someone_elses_only_when_its_host_is_another_member() {
        const B: &str = "/srv/gluster/brick1/brick";
        let member = |uuid: &str, host: &str| PoolMember {
            uuid: uuid.into(),
            hostname: host.into(),
            connected: true,
            in_cluster: true,
        };
        let me = NodeSummary {
            hostname: "picluster-0d03aa".into(),
            gluster_uuid: Some("u4".into()),
            pool: vec![
                member("u4", "localhost"),
                member("u1", "picluster-1159a9"),
                member("u2", "10.0.0.12"),
                member("u3", "picluster-dbdac9"),
            ],
            ..Default::default()
        };
        let vol = |bricks: &[&str]| VolumeBrief {
            name: "shared".into(),
            id: "v".into(),
            replica: bricks.len() as u32,
            bricks: bricks.iter().map(|h| format!("{h}:{B}")).collect(),
            started: true,
            options: Default::default(),
        };
        let addr: Ipv4Addr = "10.0.0.14".parse().unwrap();
        let known: BTreeMap<String, Ipv4Addr> =
            [("picluster-559e28".to_string(), "10.0.0.12".parse().unwrap())].into();
        let lists = |bricks: &[&str]| may_list_my_brick(&me, &vol(bricks), B, addr, &known);
        // Node 4 left out of a replica 3 volume (fault case 1b): its brick is not listed.
        assert!(!lists(&[
            "picluster-1159a9",
            "picluster-559e28",
            "picluster-dbdac9"
        ]));
        // Listed by name or by address.
        assert!(lists(&[
            "picluster-1159a9",
            "picluster-559e28",
            "picluster-0d03aa"
        ]));
        assert!(lists(&[
            "picluster-1159a9",
            "picluster-559e28",
            "10.0.0.14"
        ]));
        // A host this node cannot place could be itself.
        assert!(lists(&[
            "picluster-1159a9",
            "picluster-559e28",
            "somewhere-else"
        ]));
        // Another path on a host is not this brick.
        let mut v = vol(&["picluster-0d03aa"]);
        v.bricks = vec![format!("picluster-0d03aa:/data/other")];
        assert!(!may_list_my_brick(&me, &v, B, addr, &known));
    }

    #[test]
    fn heal_is_asked_for_when_a_member_returns_then_every_5_s_for_a_minute() {
        let mut k = HealKicker::default();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        assert!(
            !k.due(&set(&["a", "b", "c", "d"]), true, s(0)),
            "first reading"
        );
        assert!(
            !k.due(&set(&["a", "b", "c"]), true, s(1)),
            "a loss asks nothing"
        );
        assert!(k.due(&set(&["a", "b", "c", "d"]), true, s(2)), "d is back");
        assert!(!k.due(&set(&["a", "b", "c", "d"]), true, s(3)));
        assert!(k.due(&set(&["a", "b", "c", "d"]), true, s(8)));
        assert!(
            !k.due(&set(&["a", "b", "c", "d"]), true, s(70)),
            "window over"
        );
        assert!(!k.due(&set(&["a", "b", "c", "d"]), true, s(80)));
        // Not the pool leader: never asks.
        let mut k = HealKicker::default();
        k.due(&set(&["a"]), false, s(0));
        assert!(!k.due(&set(&["a", "b"]), false, s(1)));
    }

    #[test]
    fn a_brick_change_owes_three_full_heals_each_taken_once() {
        let mut h = FollowUpHeals::default();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        assert!(!h.take_due(s(0)), "nothing owed before a change");
        assert_eq!(h.settling(s(0)), None, "no change, nothing settles");
        h.brick_change(s(0));
        assert_eq!(h.settling(s(5)), Some(Duration::from_secs(70)));
        assert!(!h.take_due(s(9)));
        assert!(h.take_due(s(11)), "first heal after 10 s");
        assert!(!h.take_due(s(12)));
        assert!(h.take_due(s(46)), "second heal after 45 s");
        assert!(h.settling(s(74)).is_some());
        assert_eq!(h.settling(s(75)), None, "settled after 75 s");
        assert!(!h.take_due(s(47)), "taken once");
        assert!(h.take_due(s(241)), "third heal after 240 s");
        assert!(!h.take_due(s(1000)));
        // Two due at once make one heal; a new change replaces what was owed.
        h.brick_change(s(0));
        assert!(h.take_due(s(500)));
        assert!(!h.take_due(s(501)));
        h.brick_change(s(0));
        h.brick_change(s(100));
        assert!(
            !h.take_due(s(105)),
            "the first change's heals were replaced"
        );
        assert!(h.take_due(s(111)));
    }
}
