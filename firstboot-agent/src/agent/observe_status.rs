//! Background gathering for the status page (issue 5): the volume's bricks, capacity and heal backlog, the whole
//! swarm, formation progress and the last events.
//!
//! The reconcile loop ([`super`]) publishes the core of the status document; this module adds the detail the
//! status page shows. Each source is read by its own background task on its own cadence with its own timeout
//! (`gluster volume status detail` every 2 s, `gluster volume heal info` every 5 s, the swarm's nodes every 2 s,
//! events every 0.5 s) and stored in [`Observed`]; a request only copies what is stored
//! ([`crate::api::served_status`]), so it never waits on a CLI call or a peer, and a dead peer cannot hang it.
//!
//! On a Swarm worker, whose dockerd cannot list the swarm, the swarm is taken from a manager peer's public
//! `/api/status` (short timeouts; it holds no secret).

use crate::api::model::{
    BrickReport, ClusterStatus, FormationProgress, Health, PhaseRecord, StatusEvent,
    SwarmNodeReport, SwarmReport, VolumeReport, MAX_EVENTS,
};
use crate::api::Shared;
use crate::docker::{Docker, NodeRole, SwarmNode};
use crate::gluster::{Gluster, VolumeInfo, VolumeState, VolumeStatus};
use crate::trust::unix_now;
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Phase;

/// What the background tasks gathered, merged into the served document by [`Observed::apply`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The volume in detail (without the heal backlog, which [`Observed::heal_pending`] holds).
    pub volume: Option<VolumeReport>,
    /// Entries waiting to be healed (last successful reading).
    pub heal_pending: Option<u64>,
    /// The whole swarm.
    pub swarm: Option<SwarmReport>,
    /// The last events, oldest first.
    pub events: VecDeque<StatusEvent>,
    /// State changes seen since the agent started, by kind.
    pub changes: BTreeMap<String, u64>,
    /// Liveness of the other nodes' agents, by address, from this module's own short-timeout probes.
    pub liveness: BTreeMap<Ipv4Addr, Liveness>,
}

/// What the liveness probes know of one peer (Unix times in milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When probing this address started.
    pub since_ms: i64,
    /// The last answer (`None`: never answered).
    pub last_ok_ms: Option<i64>,
}

impl Liveness {
    /// Whether the peer has been silent for longer than [`DOWN_AFTER`] (and probed that long).
    pub fn is_down(&self, now_ms: i64) -> bool {
        let limit = DOWN_AFTER.as_millis() as i64;
        now_ms - self.since_ms > limit && now_ms - self.last_ok_ms.unwrap_or(self.since_ms) > limit
    }
}

impl Observed {
    /// Fills the status page additions of `status` (served at Unix time `now_ms`, milliseconds) from what was
    /// gathered, and makes liveness prompt: a peer this module's probes have not heard for [`DOWN_AFTER`] is shown
    /// down (and a healthy cluster degraded) even before the reconcile loop's next round says so; a node that
    /// formed once and is repairing (a phase before `steady` again) shows `degraded`, not `forming`.
    pub fn apply(&self, status: &mut ClusterStatus, now_ms: i64) {
        status.generated_at = now_ms.div_euclid(1000);
        status.volume_detail = self.volume.clone().map(|mut v| {
            v.heal_pending = self.heal_pending;
            v
        });
        status.swarm_detail = self.swarm.clone();
        if let Some(swarm) = &self.swarm {
            for n in &mut status.nodes {
                let addr = n.address.map(|a| a.to_string());
                let by_addr = swarm
                    .nodes
                    .iter()
                    .find(|s| !s.address.is_empty() && Some(&s.address) == addr.as_ref());
                let found = by_addr.or_else(|| swarm.nodes.iter().find(|s| s.hostname == n.name));
                if let Some(s) = found {
                    n.swarm_availability = s.availability.clone();
                    n.swarm_state = s.state.clone();
                }
            }
        }
        status.formation = formation_progress(&status.phase, &status.detail, &status.phases);
        let this = status.this_node.clone();
        for n in status.nodes.iter_mut() {
            let heard = if n.name == this {
                Some(now_ms)
            } else {
                n.address
                    .and_then(|a| self.liveness.get(&a))
                    .and_then(|l| l.last_ok_ms)
            };
            if let Some(ms) = heard {
                n.last_seen = n.last_seen.max(ms.div_euclid(1000));
            }
        }
        let mut lost = false;
        for n in status.nodes.iter_mut().filter(|n| n.up && n.name != this) {
            let silent = n
                .address
                .and_then(|a| self.liveness.get(&a))
                .is_some_and(|l| l.is_down(now_ms));
            if silent {
                n.up = false;
                n.agent_state = "down".into();
                lost = true;
            }
        }
        if lost {
            status.present_nodes = status.nodes.iter().filter(|n| n.up).count() as u32;
            if status.health == Health::Healthy {
                status.health = Health::Degraded;
            }
        }
        // A brick on a node shown down is offline at once, not after the next `volume status`: with a peer just
        // lost that reading waits for its timeout (30 s) and the next one comes a minute later (`pause_after`).
        let down: Vec<String> = status
            .nodes
            .iter()
            .filter(|n| !n.up)
            .map(|n| n.name.clone())
            .collect();
        if !down.is_empty() {
            status.volume_detail = status
                .volume_detail
                .take()
                .map(|v| mark_down_bricks(v, &down));
        }
        // A brick without its process (glusterd's own reading) leaves a copy missing: not healthy, whatever the
        // nodes say. The agent on that brick's node starts it again (see `plan::BRICK_RESTART_SECS`).
        if status.health == Health::Healthy {
            let offline: Vec<String> = status
                .volume_detail
                .iter()
                .flat_map(|v| &v.bricks)
                .filter(|b| !b.online)
                .map(|b| format!("{}:{}", b.node, b.path))
                .collect();
            if !offline.is_empty() {
                status.health = Health::Degraded;
                status.detail = format!("brick offline: {}", offline.join(", "));
            }
        }
        if status.health == Health::Forming && status.formation.duration_ms.is_some() {
            status.health = Health::Degraded;
        }
        status.events = self.events.iter().cloned().collect();
        status.state_changes = self.changes.clone();
    }

    fn record(&mut self, events: Vec<StatusEvent>, changes: Vec<String>) {
        for kind in changes {
            *self.changes.entry(kind).or_default() += 1;
        }
        for e in events {
            tracing::info!(kind = %e.kind, "event: {}", e.message);
            *self.changes.entry(e.kind.clone()).or_default() += 1;
            self.events.push_back(e);
            while self.events.len() > MAX_EVENTS {
                self.events.pop_front();
            }
        }
    }
}

/// Formation progress from the phase, its detail and the phase records (the first record is the agent's start).
pub fn formation_progress(phase: &str, detail: &str, records: &[PhaseRecord]) -> FormationProgress {
    let steps = Phase::CHAIN.len() as u32;
    let step = Phase::CHAIN
        .iter()
        .position(|p| p.as_str() == phase)
        .map(|i| i as u32 + 1)
        .unwrap_or(0);
    let started_at_ms = records.first().map(|r| r.at_ms).unwrap_or(0);
    let duration_ms = records
        .iter()
        .find(|r| r.phase == Phase::Steady.as_str())
        .map(|r| r.at_ms - started_at_ms);
    FormationProgress {
        phase: phase.to_string(),
        step,
        steps,
        waiting_for: detail.to_string(),
        started_at_ms,
        duration_ms,
    }
}

/// The volume report from `volume info` and, for a started volume, `volume status detail` (bricks the status
/// does not list are shown offline). Capacity: for each replica set, the smallest online brick's size and the
/// largest online brick's use, summed over the sets; `None` when a set has no online brick with known sizes.
pub fn volume_report(info: &VolumeInfo, status: Option<&VolumeStatus>, now: i64) -> VolumeReport {
    let bricks: Vec<BrickReport> = info
        .bricks
        .iter()
        .map(|b| {
            let s = status.and_then(|s| {
                s.bricks
                    .iter()
                    .find(|s| s.host == b.host && s.path == b.path)
            });
            BrickReport {
                node: b.host.clone(),
                path: b.path.clone(),
                online: s.is_some_and(|s| s.online),
                size_bytes: s.and_then(|s| s.size_total),
                free_bytes: s.and_then(|s| s.size_free),
            }
        })
        .collect();
    let replica = info.replica_count.max(1) as usize;
    let mut usable = Some(0u64);
    let mut used = Some(0u64);
    for set in bricks.chunks(replica) {
        let known: Vec<(u64, u64)> = set
            .iter()
            .filter(|b| b.online)
            .filter_map(|b| Some((b.size_bytes?, b.free_bytes?)))
            .collect();
        let size = known.iter().map(|(s, _)| *s).min();
        let use_ = known.iter().map(|(s, f)| s.saturating_sub(*f)).max();
        usable = usable.zip(size).map(|(a, b)| a + b);
        used = used.zip(use_).map(|(a, b)| a + b);
    }
    if bricks.is_empty() {
        usable = None;
        used = None;
    }
    VolumeReport {
        name: info.name.clone(),
        vol_type: info.vol_type.clone(),
        status: match info.status {
            VolumeState::Created => "created",
            VolumeState::Started => "started",
            VolumeState::Stopped => "stopped",
        }
        .to_string(),
        replica: info.replica_count,
        usable_bytes: usable,
        used_bytes: used,
        bricks_online: bricks.iter().filter(|b| b.online).count() as u32,
        bricks,
        heal_pending: None,
        read_at: now,
    }
}

/// `report` with the bricks on `down` hosts offline (sizes unknown) and the online count redone.
pub fn mark_down_bricks(mut report: VolumeReport, down: &[String]) -> VolumeReport {
    for b in report.bricks.iter_mut().filter(|b| down.contains(&b.node)) {
        b.online = false;
        b.size_bytes = None;
        b.free_bytes = None;
    }
    report.bricks_online = report.bricks.iter().filter(|b| b.online).count() as u32;
    report
}

fn lower<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The swarm report from a manager's node list.
pub fn swarm_report(id: &str, nodes: &[SwarmNode], source: &str, now: i64) -> SwarmReport {
    let mut list: Vec<SwarmNodeReport> = nodes
        .iter()
        .map(|n| SwarmNodeReport {
            hostname: n.hostname.clone(),
            address: n.addr.clone(),
            role: lower(&n.role),
            availability: lower(&n.availability),
            state: lower(&n.state),
            leader: n.leader,
        })
        .collect();
    list.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    SwarmReport {
        id: id.to_string(),
        managers: nodes
            .iter()
            .filter(|n| n.role == NodeRole::Manager)
            .map(|n| n.hostname.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        leader: nodes.iter().find(|n| n.leader).map(|n| n.hostname.clone()),
        nodes: list,
        source: source.to_string(),
        read_at: now,
    }
}

/// What the event tracker remembers of the previous view.
#[derive(Debug, Clone, Default, PartialEq)]
struct View {
    health: String,
    phase: String,
    /// Node name -> (up, address).
    nodes: BTreeMap<String, bool>,
    /// `host:path` -> online.
    bricks: BTreeMap<String, bool>,
    heal_pending: Option<u64>,
}

impl View {
    fn of(s: &ClusterStatus) -> View {
        View {
            health: lower(&s.health),
            phase: s.phase.clone(),
            nodes: s
                .nodes
                .iter()
                .filter(|n| !n.name.is_empty())
                .map(|n| (n.name.clone(), n.up))
                .collect(),
            bricks: s
                .volume_detail
                .iter()
                .flat_map(|v| &v.bricks)
                .map(|b| (format!("{}:{}", b.node, b.path), b.online))
                .collect(),
            heal_pending: s.volume_detail.as_ref().and_then(|v| v.heal_pending),
        }
    }
}

/// Turns successive status documents into events (node lost / back, brick offline / online, heal started /
/// finished, health changes) and counts phase changes.
#[derive(Debug, Default)]
pub struct EventTracker {
    last: Option<View>,
}

impl EventTracker {
    /// Compares `status` with the previous one; returns the events and the other state changes (kinds only).
    pub fn observe(&mut self, status: &ClusterStatus, now: i64) -> (Vec<StatusEvent>, Vec<String>) {
        let view = View::of(status);
        let Some(last) = self.last.replace(view.clone()) else {
            return (Vec::new(), Vec::new());
        };
        let mut events = Vec::new();
        let mut ev = |kind: &str, message: String| {
            events.push(StatusEvent {
                at: now,
                kind: kind.to_string(),
                message,
            })
        };
        for (name, up) in &view.nodes {
            match (last.nodes.get(name), up) {
                (Some(true), false) => ev("node-lost", format!("{name} stopped answering")),
                (Some(false), true) => ev("node-back", format!("{name} is back")),
                (None, true) if !last.nodes.is_empty() => {
                    ev("node-joined", format!("{name} appeared"))
                }
                _ => {}
            }
        }
        for (name, up) in &last.nodes {
            if *up && !view.nodes.contains_key(name) {
                ev("node-lost", format!("{name} left the peer list"));
            }
        }
        for (brick, online) in &view.bricks {
            match (last.bricks.get(brick), online) {
                (Some(true), false) => ev("brick-offline", format!("brick {brick} went offline")),
                (Some(false), true) => ev("brick-online", format!("brick {brick} is online")),
                _ => {}
            }
        }
        match (last.heal_pending, view.heal_pending) {
            (Some(0) | None, Some(n)) if n > 0 && last.heal_pending.is_some() => ev(
                "heal-started",
                format!("{n} entries are waiting to be healed"),
            ),
            (Some(n), Some(0)) if n > 0 => ev(
                "heal-finished",
                format!("healing finished ({n} entries were pending)"),
            ),
            _ => {}
        }
        if last.health != view.health {
            ev(
                "health",
                format!("cluster is {} (was {})", view.health, last.health),
            );
        }
        let mut changes = Vec::new();
        if last.phase != view.phase {
            changes.push("phase".to_string());
        }
        (events, changes)
    }
}

/// dockerd's socket: `DOCKER_HOST` when it names a unix socket, else the default.
fn docker_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::docker::DEFAULT_SOCKET))
}

/// How often the volume and the swarm are read.
pub const DETAIL_PERIOD: Duration = Duration::from_secs(2);
/// How often the volume is read (`volume status` takes the volume's lock on every peer, and every agent reads it:
/// more often would keep the volume locked a good part of the time and fail users' `gluster` commands).
pub const VOLUME_PERIOD: Duration = Duration::from_secs(5);
/// How often the heal backlog is read (it walks every brick's index and takes the volume's lock, so less often).
pub const HEAL_PERIOD: Duration = Duration::from_secs(10);
/// How often events are derived.
pub const EVENT_PERIOD: Duration = Duration::from_secs(1);
/// How often every peer's agent is probed (`GET /healthz`), at most (a round waits for its slowest answer).
pub const LIVENESS_PERIOD: Duration = Duration::from_secs(2);
/// A probe's time limit. Generous: an agent on a loaded node answered in more than 0.8 s now and then (emulated Pis
/// flapped between up and down with 0.8 s); a dead node is still shown down [`DOWN_AFTER`] after its last answer.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer silent for this long is shown down.
pub const DOWN_AFTER: Duration = Duration::from_secs(5);

/// Starts the background tasks that fill `shared.observed` for the volume `volume`; peers' APIs listen on
/// `api_port`. Call once, inside the tokio runtime.
pub fn spawn(shared: Arc<Shared>, volume: String, api_port: u16) {
    tokio::spawn(volume_loop(shared.clone(), volume.clone()));
    tokio::spawn(heal_loop(shared.clone(), volume));
    tokio::spawn(swarm_loop(shared.clone(), api_port));
    tokio::spawn(liveness_loop(shared.clone(), api_port));
    tokio::spawn(event_loop(shared));
}

async fn volume_loop(shared: Arc<Shared>, volume: String) {
    // Generous: `volume status` asks every brick's node; on an emulated Pi it took more than 5 s, and the page then
    // never showed the bricks. The pause after a slow reading grows with it (`pause_after`).
    let gluster = Gluster::new().with_timeout(Duration::from_secs(30));
    loop {
        let now = unix_now();
        let reading_started = std::time::Instant::now();
        let report = match gluster.volume_info(&volume).await {
            Ok(Some(info)) => {
                let status = if info.status == VolumeState::Started {
                    gluster.volume_status(&volume).await.ok()
                } else {
                    None
                };
                let prev = shared
                    .observed
                    .read()
                    .expect("observed lock")
                    .volume
                    .clone();
                match (status, prev) {
                    (Some(st), _) => Some(volume_report(&info, Some(&st), now)),
                    // A failed reading (e.g. another glusterd transaction in progress, or a peer that just died)
                    // keeps the last one, except that bricks on nodes now shown down are offline.
                    (None, Some(p))
                        if info.status == VolumeState::Started && p.name == info.name =>
                    {
                        let down: Vec<String> = crate::api::served_status(&shared)
                            .nodes
                            .into_iter()
                            .filter(|n| !n.up)
                            .map(|n| n.name)
                            .collect();
                        Some(mark_down_bricks(p, &down))
                    }
                    (None, _) => Some(volume_report(&info, None, now)),
                }
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("status page: volume info: {e}");
                None
            }
        };
        shared.observed.write().expect("observed lock").volume = report;
        tokio::time::sleep(pause_after(reading_started.elapsed(), VOLUME_PERIOD)).await;
    }
}

/// The pause before the next reading: `period`, or four times what the last reading took when that is longer
/// (capped at a minute). `volume status` takes a lock on every peer, so on slow or loaded hardware the agents'
/// readings would otherwise keep the volume locked and make a user's `gluster` commands fail with "Locking failed".
pub fn pause_after(reading: Duration, period: Duration) -> Duration {
    (reading * 4).clamp(period, Duration::from_secs(60).max(period))
}

async fn heal_loop(shared: Arc<Shared>, volume: String) {
    let gluster = Gluster::new().with_timeout(Duration::from_secs(20));
    loop {
        let replicated = shared
            .observed
            .read()
            .expect("observed lock")
            .volume
            .as_ref()
            .is_some_and(|v| v.status == "started" && v.replica > 1);
        let mut pause = HEAL_PERIOD;
        let pending = if replicated {
            // heal-count, not heal info: no glfsheal client to hang and hold locks (see Gluster::heal_count).
            match gluster.heal_count(&volume).await {
                Ok(Some(n)) => Some(n),
                Ok(None) => shared.observed.read().expect("observed lock").heal_pending,
                Err(e) => {
                    tracing::debug!("status page: heal count: {e}");
                    // The bricks did not answer in time (healing, loaded): ask less often.
                    pause = HEAL_PERIOD * 6;
                    shared.observed.read().expect("observed lock").heal_pending
                }
            }
        } else {
            None
        };
        shared.observed.write().expect("observed lock").heal_pending = pending;
        tokio::time::sleep(pause).await;
    }
}

async fn swarm_loop(shared: Arc<Shared>, api_port: u16) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(800))
        .timeout(Duration::from_millis(1500))
        .build()
        .expect("HTTP client builds");
    let mut docker: Option<Docker> = None;
    loop {
        let reading_started = std::time::Instant::now();
        if docker.is_none() {
            docker = Docker::connect_at(&docker_socket())
                .await
                .ok()
                .map(|d| d.with_timeout(Duration::from_secs(15)));
        }
        let report = match &docker {
            Some(d) => match read_swarm(d, &shared, &http, api_port).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("status page: swarm: {e}");
                    docker = None;
                    None
                }
            },
            None => None,
        };
        shared.observed.write().expect("observed lock").swarm = report;
        // A loaded node reads less often.
        tokio::time::sleep(pause_after(reading_started.elapsed(), DETAIL_PERIOD)).await;
    }
}

async fn read_swarm(
    d: &Docker,
    shared: &Shared,
    http: &reqwest::Client,
    api_port: u16,
) -> Result<Option<SwarmReport>, crate::docker::DockerError> {
    // This node's membership as the reconcile loop last read it: no second `/info` (see
    // `agent::SWARM_READ_EVERY`).
    let Some(st) = shared.summary.read().expect("summary lock").swarm.clone() else {
        return Ok(None);
    };
    let this = shared.status.read().expect("status lock").this_node.clone();
    if st.is_manager {
        let nodes = d.nodes().await?;
        return Ok(Some(swarm_report(
            &st.cluster_id,
            &nodes,
            &this,
            unix_now(),
        )));
    }
    // A worker: ask a manager peer that answers.
    let managers: Vec<(String, std::net::Ipv4Addr)> = {
        let status = shared.status.read().expect("status lock");
        status
            .nodes
            .iter()
            .filter(|n| n.up && n.swarm_role == "manager" && n.name != this)
            .filter_map(|n| Some((n.name.clone(), n.address?)))
            .collect()
    };
    for (_name, addr) in managers {
        let url = format!("http://{addr}:{api_port}/api/status");
        let Ok(resp) = http.get(&url).send().await else {
            continue;
        };
        if let Ok(doc) = resp.json::<ClusterStatus>().await {
            if let Some(s) = doc.swarm_detail.filter(|s| s.source == doc.this_node) {
                return Ok(Some(s));
            }
        }
    }
    Ok(None)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Probes every other node's agent (`GET /healthz`) every [`LIVENESS_PERIOD`], all at once, each bounded by
/// [`LIVENESS_TIMEOUT`], and records who answered.
async fn liveness_loop(shared: Arc<Shared>, api_port: u16) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(LIVENESS_TIMEOUT)
        .timeout(LIVENESS_TIMEOUT)
        .build()
        .expect("HTTP client builds");
    loop {
        let peers: Vec<Ipv4Addr> = {
            let st = shared.status.read().expect("status lock");
            st.nodes
                .iter()
                .filter(|n| n.name != st.this_node)
                .filter_map(|n| n.address)
                .collect()
        };
        let mut set = tokio::task::JoinSet::new();
        for addr in peers.clone() {
            let http = http.clone();
            set.spawn(async move {
                let url = format!("http://{addr}:{api_port}/healthz");
                let ok = matches!(http.get(&url).send().await, Ok(r) if r.status().is_success());
                (addr, ok)
            });
        }
        let mut answers = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(a) = r {
                answers.push(a);
            }
        }
        record_liveness(&shared, &peers, answers, now_ms());
        tokio::time::sleep(LIVENESS_PERIOD).await;
    }
}

fn record_liveness(shared: &Shared, peers: &[Ipv4Addr], answers: Vec<(Ipv4Addr, bool)>, now: i64) {
    let mut o = shared.observed.write().expect("observed lock");
    o.liveness.retain(|a, _| peers.contains(a));
    for (addr, ok) in answers {
        let l = o.liveness.entry(addr).or_insert(Liveness {
            since_ms: now,
            last_ok_ms: None,
        });
        if ok {
            l.last_ok_ms = Some(now);
        }
    }
}

async fn event_loop(shared: Arc<Shared>) {
    let mut tracker = EventTracker::default();
    loop {
        let status = crate::api::served_status(&shared);
        let (events, changes) = tracker.observe(&status, status.generated_at);
        if !events.is_empty() || !changes.is_empty() {
            shared
                .observed
                .write()
                .expect("observed lock")
                .record(events, changes);
        }
        tokio::time::sleep(EVENT_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{Health, NodeStatus};
    use crate::gluster::{Brick, BrickStatus};

    fn info(replica: u32, hosts: &[&str]) -> VolumeInfo {
        VolumeInfo {
            name: "shared".into(),
            id: "v-1".into(),
            vol_type: "Replicate".into(),
            status: VolumeState::Started,
            replica_count: replica,
            bricks: hosts
                .iter()
                .map(|h| Brick {
                    host: h.to_string(),
                    path: "/srv/gluster/brick1/brick".into(),
                })
                .collect(),
            options: BTreeMap::new(),
        }
    }

    fn brick(host: &str, online: bool, total: u64, free: u64) -> BrickStatus {
        BrickStatus {
            host: host.into(),
            path: "/srv/gluster/brick1/brick".into(),
            peer_uuid: String::new(),
            online,
            pid: None,
            port: None,
            size_total: online.then_some(total),
            size_free: online.then_some(free),
        }
    }

    #[test]
    fn replica_volume_capacity_is_the_smallest_brick_and_offline_bricks_show() {
        let i = info(4, &["a", "b", "c", "d"]);
        let st = VolumeStatus {
            name: "shared".into(),
            bricks: vec![
                brick("a", true, 1000, 900),
                brick("b", true, 800, 750),
                brick("c", true, 1000, 850),
            ],
        };
        let r = volume_report(&i, Some(&st), 5);
        assert_eq!(r.bricks.len(), 4);
        assert_eq!(r.bricks_online, 3);
        assert!(!r.bricks[3].online, "d is missing from the status: offline");
        assert_eq!(r.usable_bytes, Some(800));
        assert_eq!(r.used_bytes, Some(150));
        assert_eq!(r.vol_type, "Replicate");
        assert_eq!(r.status, "started");
    }

    #[test]
    fn a_kept_reading_shows_bricks_of_down_nodes_offline() {
        let st = VolumeStatus {
            name: "shared".into(),
            bricks: ["a", "b"].iter().map(|h| brick(h, true, 100, 40)).collect(),
        };
        let r = volume_report(&info(2, &["a", "b"]), Some(&st), 5);
        let r = mark_down_bricks(r, &["b".to_string()]);
        assert_eq!(r.bricks_online, 1);
        assert!(r.bricks[0].online && !r.bricks[1].online);
        assert_eq!(r.bricks[1].size_bytes, None);
    }

    #[test]
    fn distributed_replicate_capacity_sums_the_sets() {
        let i = info(2, &["a", "b", "c", "d"]);
        let st = VolumeStatus {
            name: "shared".into(),
            bricks: ["a", "b", "c", "d"]
                .iter()
                .map(|h| brick(h, true, 100, 40))
                .collect(),
        };
        let r = volume_report(&i, Some(&st), 5);
        assert_eq!(r.usable_bytes, Some(200));
        assert_eq!(r.used_bytes, Some(120));
        let none = volume_report(&i, None, 5);
        assert_eq!(none.usable_bytes, None, "unknown sizes are not shown as 0");
        assert_eq!(none.bricks_online, 0);
    }

    #[test]
    fn formation_progress_counts_steps_and_time_to_steady() {
        let rec = |p: &str, at| PhaseRecord {
            phase: p.into(),
            at_ms: at,
            detail: String::new(),
        };
        let f = formation_progress(
            "forming-pool",
            "probing node2",
            &[rec("preparing-disk", 1000), rec("forming-pool", 3000)],
        );
        assert_eq!((f.step, f.steps), (6, 10));
        assert_eq!(f.duration_ms, None);
        assert_eq!(f.waiting_for, "probing node2");
        let f = formation_progress(
            "steady",
            "",
            &[rec("preparing-disk", 1000), rec("steady", 13500)],
        );
        assert_eq!((f.step, f.duration_ms), (10, Some(12_500)));
        assert_eq!(formation_progress("failed", "", &[]).step, 0);
    }

    fn status(health: Health, up: &[(&str, bool)], heal: Option<u64>) -> ClusterStatus {
        ClusterStatus {
            health,
            phase: "steady".into(),
            nodes: up
                .iter()
                .map(|(n, u)| NodeStatus {
                    name: n.to_string(),
                    up: *u,
                    ..Default::default()
                })
                .collect(),
            volume_detail: Some(VolumeReport {
                bricks: up
                    .iter()
                    .map(|(n, u)| BrickReport {
                        node: n.to_string(),
                        path: "/b".into(),
                        online: *u,
                        ..Default::default()
                    })
                    .collect(),
                heal_pending: heal,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_for_a_lost_node_its_return_and_the_heal() {
        let mut t = EventTracker::default();
        let all = [("n1", true), ("n2", true)];
        let (e, _) = t.observe(&status(Health::Healthy, &all, Some(0)), 1);
        assert!(e.is_empty(), "the first view is the baseline");
        let lost = [("n1", true), ("n2", false)];
        let (e, _) = t.observe(&status(Health::Degraded, &lost, Some(3)), 2);
        let kinds: Vec<&str> = e.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["node-lost", "brick-offline", "heal-started", "health"]
        );
        assert!(e[0].message.contains("n2"));
        assert_eq!(e[3].message, "cluster is degraded (was healthy)");
        let (e, _) = t.observe(&status(Health::Healthy, &all, Some(3)), 3);
        let kinds: Vec<&str> = e.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["node-back", "brick-online", "health"]);
        let (e, _) = t.observe(&status(Health::Healthy, &all, Some(0)), 4);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, "heal-finished");
        let (e, c) = t.observe(&status(Health::Healthy, &all, Some(0)), 5);
        assert!(e.is_empty() && c.is_empty(), "no change, no event");
    }

    #[test]
    fn a_silent_peer_shows_down_and_the_cluster_degraded_before_the_reconcile_loop_says_so() {
        let node = |name: &str, ip: &str| NodeStatus {
            name: name.into(),
            address: Some(ip.parse().unwrap()),
            up: true,
            agent_state: "steady".into(),
            ..Default::default()
        };
        let base = ClusterStatus {
            health: Health::Healthy,
            phase: "steady".into(),
            this_node: "n1".into(),
            present_nodes: 2,
            nodes: vec![node("n1", "10.0.0.1"), node("n2", "10.0.0.2")],
            ..Default::default()
        };
        let mut o = Observed {
            volume: status(Health::Healthy, &[("n1", true), ("n2", true)], Some(0)).volume_detail,
            ..Default::default()
        };
        o.liveness.insert(
            "10.0.0.2".parse().unwrap(),
            Liveness {
                since_ms: 0,
                last_ok_ms: Some(10_000),
            },
        );
        let mut s = base.clone();
        o.apply(&mut s, 14_000);
        assert_eq!(s.health, Health::Healthy, "4 s of silence is not down yet");
        assert!(s.nodes[1].up);
        assert!(s.volume_detail.as_ref().unwrap().bricks[1].online);
        let mut s = base.clone();
        o.apply(&mut s, 15_500);
        assert_eq!(s.health, Health::Degraded);
        assert!(!s.nodes[1].up);
        // Its brick is offline on the page at once, before glusterd's next reading.
        let v = s.volume_detail.as_ref().unwrap();
        assert!(v.bricks[0].online && !v.bricks[1].online, "{v:?}");
        assert_eq!(v.bricks_online, 1);
        assert_eq!(s.nodes[1].agent_state, "down");
        assert_eq!(s.present_nodes, 1);
        assert!(s.nodes[0].up, "this node is never probed");
        // A node that formed once and is repairing is degraded, not forming.
        let mut s = ClusterStatus {
            health: Health::Forming,
            phase: "mounting".into(),
            phases: vec![
                PhaseRecord {
                    phase: "preparing-disk".into(),
                    at_ms: 0,
                    detail: String::new(),
                },
                PhaseRecord {
                    phase: "steady".into(),
                    at_ms: 9_000,
                    detail: String::new(),
                },
            ],
            ..Default::default()
        };
        Observed::default().apply(&mut s, 20_000);
        assert_eq!(s.health, Health::Degraded);
        let mut s = ClusterStatus {
            health: Health::Forming,
            phase: "mounting".into(),
            ..Default::default()
        };
        Observed::default().apply(&mut s, 20_000);
        assert_eq!(s.health, Health::Forming, "never formed: still forming");
    }

    #[test]
    fn a_brick_without_its_process_makes_a_healthy_cluster_degraded() {
        let all = [("n1", true), ("n2", true)];
        let o = Observed {
            volume: status(Health::Healthy, &all, Some(0)).volume_detail,
            ..Default::default()
        };
        let mut s = status(Health::Healthy, &all, None);
        o.apply(&mut s, 1_000);
        assert_eq!(s.health, Health::Healthy);
        let o = Observed {
            volume: status(Health::Healthy, &[("n1", true), ("n2", false)], Some(0)).volume_detail,
            ..Default::default()
        };
        let mut s = status(Health::Healthy, &all, None);
        o.apply(&mut s, 1_000);
        assert_eq!(s.health, Health::Degraded);
        assert_eq!(s.detail, "brick offline: n2:/b");
    }

    #[test]
    fn observed_keeps_the_last_events_and_counts_them() {
        let mut o = Observed::default();
        for i in 0..(MAX_EVENTS as i64 + 5) {
            o.record(
                vec![StatusEvent {
                    at: i,
                    kind: "node-lost".into(),
                    message: format!("{i}"),
                }],
                vec!["phase".into()],
            );
        }
        assert_eq!(o.events.len(), MAX_EVENTS);
        assert_eq!(o.events.front().map(|e| e.at), Some(5));
        assert_eq!(o.changes["node-lost"], MAX_EVENTS as u64 + 5);
        assert_eq!(o.changes["phase"], MAX_EVENTS as u64 + 5);
        let mut s = ClusterStatus {
            nodes: vec![NodeStatus {
                name: "n1".into(),
                ..Default::default()
            }],
            phase: "steady".into(),
            ..Default::default()
        };
        o.swarm = Some(SwarmReport {
            nodes: vec![SwarmNodeReport {
                hostname: "n1".into(),
                availability: "drain".into(),
                state: "ready".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        o.heal_pending = Some(7);
        o.volume = Some(VolumeReport::default());
        s.nodes.push(NodeStatus {
            name: "picluster-2".into(),
            address: Some("10.0.0.2".parse().unwrap()),
            ..Default::default()
        });
        o.swarm.as_mut().unwrap().nodes.push(SwarmNodeReport {
            hostname: "raspberrypi".into(),
            address: "10.0.0.2".into(),
            availability: "pause".into(),
            ..Default::default()
        });
        o.apply(&mut s, 99_000);
        assert_eq!(s.generated_at, 99);
        assert_eq!(s.nodes[0].swarm_availability, "drain");
        assert_eq!(
            s.nodes[1].swarm_availability, "pause",
            "matched by address when dockerd knows another host name"
        );
        assert_eq!(s.volume_detail.unwrap().heal_pending, Some(7));
        assert_eq!(s.formation.step, 10);
        assert_eq!(s.events.len(), MAX_EVENTS);
    }

    #[test]
    fn slow_readings_space_the_next_ones_out() {
        let ms = Duration::from_millis;
        assert_eq!(pause_after(ms(100), ms(2000)), ms(2000), "fast: the period");
        assert_eq!(
            pause_after(ms(1500), ms(2000)),
            ms(6000),
            "slow: four times the reading"
        );
        assert_eq!(
            pause_after(ms(40_000), ms(2000)),
            ms(60_000),
            "capped at a minute"
        );
    }
}
