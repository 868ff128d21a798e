//! The documents the API serves: the public cluster status and the authenticated per-node summary.
//!
//! Neither type holds a secret: the cluster key and the Swarm join tokens never appear in them.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Version of the `/api/status` schema; raised on any incompatible change.
pub const STATUS_SCHEMA: u32 = 1;

/// Cluster health in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Formation is still going on.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
