//! Typed results of `gluster --xml` commands and their parsers.
//!
//! The parsers are pure functions over the CLI's output so they can be tested on captured output from a real
//! glusterd (see `tests/fixtures/gluster/`).

use std::collections::BTreeMap;

use serde::Serialize;

/// One member of the trusted storage pool, as `gluster pool list` shows it (the local node included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolPeer {
    /// The peer's glusterd UUID (empty for a half-probed peer glusterd never heard back from).
    pub uuid: String,
    /// The name the peer was probed by (`localhost` for this node).
    pub hostname: String,
    /// Whether glusterd has a live connection to the peer.
    pub connected: bool,
    /// Whether this entry is the local node.
    pub is_self: bool,
    /// glusterd's words for the peer state (e.g. `Peer in Cluster`), empty when the output carries none.
    pub state: String,
}

/// Whether a volume is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// Created, never started.
    Created,
    /// Started: bricks are served.
    Started,
    /// Stopped after having been started.
    Stopped,
}

/// One brick of a volume: a directory on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Brick {
    /// The host name the brick was given with.
    pub host: String,
    /// The directory on that host.
    pub path: String,
}

impl Brick {
    /// The brick as the CLI spells it: `host:/path`.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.host, self.path)
    }
}

/// What `gluster volume info NAME` says about a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// Volume name.
    pub name: String,
    /// Volume UUID (stays the same for the life of the volume).
    pub id: String,
    /// glusterd's words for the type (`Replicate`, `Distribute`, `Distributed-Replicate`, ...).
    pub vol_type: String,
    /// Created, started or stopped.
    pub status: VolumeState,
    /// Copies of each file (1 for a plain distributed volume).
    pub replica_count: u32,
    /// The bricks, in volume order.
    pub bricks: Vec<Brick>,
    /// Options set on the volume (`volume set`), by key.
    pub options: BTreeMap<String, String>,
}

/// One brick's process as `gluster volume status NAME detail` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrickStatus {
    /// Host of the brick.
    pub host: String,
    /// Directory of the brick.
    pub path: String,
    /// UUID of the peer holding the brick.
    pub peer_uuid: String,
    /// Whether the brick process runs.
    pub online: bool,
    /// Process id of the brick process, when online.
    pub pid: Option<u32>,
    /// TCP port of the brick process, when online.
    pub port: Option<u16>,
    /// Size of the brick's file system in bytes, when known.
    pub size_total: Option<u64>,
    /// Free bytes on the brick's file system, when known.
    pub size_free: Option<u64>,
}

/// What `gluster volume status NAME detail` says about a started volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeStatus {
    /// Volume name.
    pub name: String,
    /// Every brick, in volume order.
    pub bricks: Vec<BrickStatus>,
}

/// Healing state of one brick, from `gluster volume heal NAME info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrickHeal {
    /// Host of the brick.
    pub host: String,
    /// Directory of the brick.
    pub path: String,
    /// Whether the self-heal daemon reached the brick.
    pub connected: bool,
    /// Entries waiting to be healed on this brick (`None` when the brick was not reachable).
    pub entries: Option<u64>,
}

/// Healing state of a replicated volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealInfo {
    /// Per brick.
    pub bricks: Vec<BrickHeal>,
    /// Sum of the entries waiting on the reachable bricks.
    pub total: u64,
}

/// A parse failure, turned into [`super::GlusterError::Parse`] by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

/// The `opRet`/`opErrno`/`opErrstr` head every `gluster --xml` answer carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpResult {
    /// 0 on success.
    pub op_ret: i32,
    /// glusterd's errno for the failure.
    pub op_errno: i32,
    /// glusterd's message for the failure (empty on success).
    pub op_errstr: String,
}

/// Reads the `opRet`, `opErrno` and `opErrstr` of any `gluster --xml` answer.
pub fn parse_op_result(xml: &str) -> Result<OpResult, XmlError> {
    let _ = xml;
    todo!()
}

/// Parses `gluster --xml pool list`.
pub fn parse_pool_list(xml: &str) -> Result<Vec<PoolPeer>, XmlError> {
    let _ = xml;
    todo!()
}

/// Parses `gluster --xml volume info [NAME]` (all volumes in the answer).
pub fn parse_volume_info(xml: &str) -> Result<Vec<VolumeInfo>, XmlError> {
    let _ = xml;
    todo!()
}

/// Parses `gluster --xml volume status NAME detail`.
pub fn parse_volume_status(xml: &str) -> Result<VolumeStatus, XmlError> {
    let _ = xml;
    todo!()
}

/// Parses `gluster --xml volume heal NAME info`.
pub fn parse_heal_info(xml: &str) -> Result<HealInfo, XmlError> {
    let _ = xml;
    todo!()
}

/// Parses `gluster --xml volume heal NAME info split-brain` into the number of entries in split-brain.
pub fn parse_split_brain_count(xml: &str) -> Result<u64, XmlError> {
    let _ = xml;
    todo!()
}
