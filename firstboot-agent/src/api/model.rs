//! The documents the API serves: the public cluster status and the authenticated per-node summary.
//!
//! Neither type holds a secret: the cluster key and the Swarm join tokens never appear in them.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Version of the `/api/status` schema; raised on any incompatible change.
pub const STATUS_SCHEMA: u32 = 1;

/// Cluster health in words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Formation is still going on.
    #[default]
    Forming,
    /// Every expected node is present, every brick online, the mount and the Swarm are complete.
    Healthy,
    /// Formed, but a node, brick or mount is missing.
    Degraded,
    /// The agent hit an error it cannot get past by itself.
    Failed,
}

/// One member of this node's Gluster pool view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMember {
    /// glusterd UUID.
    pub uuid: String,
    /// The name the peer is known by (`localhost` for this node).
    pub hostname: String,
    /// Whether glusterd is connected to it.
    pub connected: bool,
    /// Whether glusterd has it in state `Peer in Cluster` (false while the probe handshake is unfinished, e.g.
    /// when the peer lost power in the middle of it). Absent in older summaries: true.
    #[serde(default = "yes")]
    pub in_cluster: bool,
}

fn yes() -> bool {
    true
}

/// The shared volume as this node's glusterd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeBrief {
    /// Volume name.
    pub name: String,
    /// Volume UUID.
    pub id: String,
    /// Replica count.
    pub replica: u32,
    /// Bricks as `host:/path`.
    pub bricks: Vec<String>,
    /// Whether the volume is started.
    pub started: bool,
    /// Options set on the volume (`volume set`), by key.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

/// This node's Swarm membership as its dockerd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmBrief {
    /// The swarm's cluster id (only known on managers; empty on workers).
    pub cluster_id: String,
    /// This node's Swarm node id.
    pub node_id: String,
    /// Whether this node is a manager.
    pub is_manager: bool,
    /// Whether this node is the Raft leader.
    pub is_leader: bool,
    /// Manager addresses this node knows of (`ip:2377`).
    pub remote_managers: Vec<String>,
}

/// This node's own reading of the real state, as served (authenticated) by `GET /api/v1/summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// Stable node id.
    pub node_id: String,
    /// Host name.
    pub hostname: String,
    /// LAN address.
    pub addr: Option<Ipv4Addr>,
    /// Agent version.
    pub version: String,
    /// Formation phase (text of [`crate::agent::Phase`]).
    pub phase: String,
    /// Unix time of this reading.
    pub read_at: i64,
    /// The brick directory exists on a mounted brick filesystem.
    pub brick_ready: bool,
    /// glusterd answers.
    pub glusterd_ok: bool,
    /// dockerd answers.
    pub dockerd_ok: bool,
    /// This node's glusterd UUID.
    pub gluster_uuid: Option<String>,
    /// The pool as this node sees it (itself included).
    pub pool: Vec<PoolMember>,
    /// The shared volume, if this node's glusterd knows it.
    pub volume: Option<VolumeBrief>,
    /// Swarm membership, if any.
    pub swarm: Option<SwarmBrief>,
    /// dockerd's swarm part is in state `error` (a join that failed half-way); absent from older agents.
    #[serde(default)]
    pub swarm_error: bool,
    /// The shared volume is mounted and answers at the mount point.
    pub mounted: bool,
}

impl NodeSummary {
    /// Whether this node already belongs to a formed cluster (a pool with other members, the volume, or a swarm).
    pub fn belongs_to_cluster(&self) -> bool {
        self.pool.len() > 1 || self.volume.is_some() || self.swarm.is_some()
    }
}

/// One node as `/api/status` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Host name.
    pub name: String,
    /// Node id.
    pub node_id: String,
    /// LAN address.
    pub address: Option<Ipv4Addr>,
    /// The node's formation phase.
    pub agent_state: String,
    /// Unix time the node was last heard from.
    pub last_seen: i64,
    /// Whether the node answers (heard from recently).
    pub up: bool,
    /// Gluster peer state as seen from the reporting node (`connected`, `disconnected`, `not in pool`).
    pub gluster_peer: String,
    /// Swarm role (`manager`, `worker`, `none`).
    pub swarm_role: String,
    /// Whether the node has the shared volume mounted.
    pub mount_ok: bool,
    /// Status page addition (issue 5): Swarm availability as the managers see it (`active`, `pause`, `drain`;
    /// empty when unknown, e.g. before the node joined the swarm).
    #[serde(default)]
    pub swarm_availability: String,
    /// Status page addition (issue 5): Swarm node state as the managers see it (`ready`, `down`, ...; empty when
    /// unknown).
    #[serde(default)]
    pub swarm_state: String,
}

/// One recorded phase transition (for the formation benchmark).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase entered.
    pub phase: String,
    /// Unix time in milliseconds it was entered.
    pub at_ms: i64,
    /// Why (what the agent waits for or did).
    pub detail: String,
}

/// The public cluster status served by `GET /api/status` (no secret in it).
///
/// The README's "Status page and API" section documents every field for users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// [`STATUS_SCHEMA`].
    pub schema: u32,
    /// Cluster name.
    pub cluster_name: String,
    /// Cluster id.
    pub cluster_id: String,
    /// Health in words.
    pub health: Health,
    /// This node's formation phase.
    pub phase: String,
    /// What this node waits for or last did.
    pub detail: String,
    /// The node serving this document.
    pub this_node: String,
    /// How many nodes the cluster was built for.
    pub expected_nodes: u32,
    /// How many nodes are present (this one included).
    pub present_nodes: u32,
    /// Every known node.
    pub nodes: Vec<NodeStatus>,
    /// The shared volume as this node sees it.
    pub volume: Option<VolumeBrief>,
    /// This node's Swarm membership.
    pub swarm: Option<SwarmBrief>,
    /// This node's phase transitions since the agent started.
    pub phases: Vec<PhaseRecord>,

    // ---- Status page additions (issue 5). Filled by `agent::observe_status` when the document is served;
    // ---- every one has a default so documents without them still parse.
    /// Unix time this document was served.
    #[serde(default)]
    pub generated_at: i64,
    /// The volume in detail: type, status, capacity, every brick, heal backlog (`None` before it exists).
    #[serde(default)]
    pub volume_detail: Option<VolumeReport>,
    /// The whole swarm: id, managers, leader, every node (`None` before it exists or while no manager answers).
    #[serde(default)]
    pub swarm_detail: Option<SwarmReport>,
    /// Formation progress of this node.
    #[serde(default)]
    pub formation: FormationProgress,
    /// The last events this agent saw (oldest first, at most [`MAX_EVENTS`]).
    #[serde(default)]
    pub events: Vec<StatusEvent>,
    /// Cluster state changes this agent saw since it started, by kind (event kinds, plus `health` and `phase`).
    #[serde(default)]
    pub state_changes: std::collections::BTreeMap<String, u64>,
}

// ------------------------------------------------------------------------------------------------------------------
// Status page additions (issue 5): the detail types of `ClusterStatus`. Additive to schema 1.

/// How many events a status document carries.
pub const MAX_EVENTS: usize = 30;

/// One brick as the status page lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickReport {
    /// Host the brick is on (as the volume names it).
    pub node: String,
    /// Brick directory on that host.
    pub path: String,
    /// Whether the brick process runs and its host answers.
    pub online: bool,
    /// Size of the brick's file system in bytes (`None` when unknown, e.g. offline).
    pub size_bytes: Option<u64>,
    /// Free bytes on the brick's file system (`None` when unknown).
    pub free_bytes: Option<u64>,
}

/// The shared volume in detail (from `gluster volume info`, `volume status detail` and `volume heal info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeReport {
    /// Volume name.
    pub name: String,
    /// glusterd's words for the type (`Replicate`, `Distributed-Replicate`, ...).
    #[serde(rename = "type")]
    pub vol_type: String,
    /// `created`, `started` or `stopped`.
    pub status: String,
    /// Copies of each file.
    pub replica: u32,
    /// Bytes a user can store (the smallest brick of each replica set, summed); `None` while unknown.
    pub usable_bytes: Option<u64>,
    /// Bytes used, counted the same way; `None` while unknown.
    pub used_bytes: Option<u64>,
    /// Every brick, in volume order.
    pub bricks: Vec<BrickReport>,
    /// How many bricks are online.
    pub bricks_online: u32,
    /// Entries waiting to be healed, summed over the reachable bricks (`None` until first read).
    pub heal_pending: Option<u64>,
    /// Unix time of the brick reading.
    pub read_at: i64,
}

/// One swarm node as the managers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmNodeReport {
    /// Host name the node's dockerd reported.
    pub hostname: String,
    /// Address the node's dockerd reported (how `nodes[]` entries are matched to swarm nodes).
    #[serde(default)]
    pub address: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    /// Whether it is the Raft leader.
    pub leader: bool,
}

/// The whole swarm, read from a manager's dockerd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmReport {
    /// Swarm cluster id.
    pub id: String,
    /// Host names of the managers.
    pub managers: Vec<String>,
    /// Host name of the leader (`None` when there is none, e.g. after losing quorum).
    pub leader: Option<String>,
    /// Every node.
    pub nodes: Vec<SwarmNodeReport>,
    /// The node whose dockerd was read (this one, or a manager peer when this node is a worker).
    pub source: String,
    /// Unix time of the reading.
    pub read_at: i64,
}

/// Formation progress of the node serving the document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationProgress {
    /// Current phase.
    pub phase: String,
    /// 1-based position of the phase in the formation chain (0 when failed).
    pub step: u32,
    /// Length of the formation chain.
    pub steps: u32,
    /// What the phase waits for or did last.
    pub waiting_for: String,
    /// Unix time (ms) the agent started.
    pub started_at_ms: i64,
    /// Milliseconds from the agent's start to its first `steady` (`None` until then).
    pub duration_ms: Option<i64>,
}

/// One thing that happened to the cluster, as this agent saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// Unix time.
    pub at: i64,
    /// `node-lost`, `node-back`, `brick-offline`, `brick-online`, `heal-started`, `heal-finished`, `health`.
    pub kind: String,
    /// The event in words.
    pub message: String,
}

/// Body of `POST /api/v1/swarm/join-token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRequest {
    /// `worker` or `manager`.
    pub role: String,
}

/// Answer of `POST /api/v1/swarm/join-token`: the only way a join token travels.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    /// The token for the asked role.
    pub token: String,
    /// Manager addresses to join through (`ip:2377`).
    pub remote_addrs: Vec<String>,
}

impl std::fmt::Debug for JoinTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTokenResponse")
            .field("token", &"<redacted>")
            .field("remote_addrs", &self.remote_addrs)
            .finish()
    }
}
