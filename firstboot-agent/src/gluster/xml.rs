//! Typed results of `gluster --xml` commands and their parsers.
//!
//! The parsers are pure functions over the CLI's output so they can be tested on captured output from a real
//! glusterd (see `tests/fixtures/gluster/`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

impl PoolPeer {
    /// Whether the probe handshake with this peer is complete (`Peer in Cluster`; the local node always is, and
    /// an entry without a state counts as complete). A peer that lost power in the middle of the handshake stays
    /// in e.g. `Probe Sent to Peer` on the prober: glusterd then refuses bricks on it ("is not in 'Peer in
    /// Cluster' state").
    pub fn in_cluster(&self) -> bool {
        self.is_self || self.state.is_empty() || self.state == "Peer in Cluster"
    }
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

// ---- raw shapes of the XML, as glusterfs 10 writes it -----------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawCliOutput {
    #[serde(rename = "opRet")]
    op_ret: Option<String>,
    #[serde(rename = "opErrno")]
    op_errno: Option<String>,
    #[serde(rename = "opErrstr")]
    op_errstr: Option<String>,
    output: Option<String>,
    #[serde(rename = "peerStatus")]
    peer_status: Option<RawPeerStatus>,
    #[serde(rename = "volInfo")]
    vol_info: Option<RawVolInfo>,
    #[serde(rename = "volStatus")]
    vol_status: Option<RawVolStatus>,
    #[serde(rename = "healInfo")]
    heal_info: Option<RawHealInfo>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawPeerStatus {
    peer: Vec<RawPeer>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawPeer {
    uuid: String,
    hostname: String,
    connected: String,
    state: Option<String>,
    #[serde(rename = "stateStr")]
    state_str: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawVolInfo {
    volumes: RawVolumes,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawVolumes {
    volume: Vec<RawVolume>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawVolume {
    name: String,
    id: String,
    #[serde(rename = "statusStr")]
    status_str: String,
    #[serde(rename = "replicaCount")]
    replica_count: String,
    #[serde(rename = "typeStr")]
    type_str: String,
    bricks: RawBricks,
    options: RawOptions,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawBricks {
    brick: Vec<RawBrick>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawBrick {
    name: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawOptions {
    option: Vec<RawOption>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawOption {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawVolStatus {
    volumes: RawStatusVolumes,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawStatusVolumes {
    volume: Vec<RawStatusVolume>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawStatusVolume {
    #[serde(rename = "volName")]
    vol_name: String,
    node: Vec<RawNode>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawNode {
    hostname: String,
    path: String,
    peerid: String,
    status: String,
    port: String,
    pid: String,
    #[serde(rename = "sizeTotal")]
    size_total: Option<String>,
    #[serde(rename = "sizeFree")]
    size_free: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawHealInfo {
    bricks: RawHealBricks,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawHealBricks {
    brick: Vec<RawHealBrick>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawHealBrick {
    name: String,
    status: String,
    #[serde(rename = "numberOfEntries")]
    number_of_entries: Option<String>,
}

fn parse_raw(xml: &str) -> Result<RawCliOutput, XmlError> {
    let start = xml.find("<cliOutput").ok_or_else(|| {
        XmlError(format!(
            "no <cliOutput> element in the output: {}",
            snippet(xml)
        ))
    })?;
    quick_xml::de::from_str(&xml[start..]).map_err(|e| XmlError(format!("malformed XML: {e}")))
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

fn int_or_zero(field: &Option<String>) -> i32 {
    field
        .as_deref()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A number, or `None` for gluster's placeholders (`N/A`, `-`, `-1`, empty).
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// Splits a brick spec `host:/path` (the host may itself contain `:` for IPv6, so split before the path's `/`).
pub fn split_brick(spec: &str) -> Result<Brick, XmlError> {
    match spec.find(":/") {
        Some(i) if i > 0 => Ok(Brick {
            host: spec[..i].to_string(),
            path: spec[i + 1..].to_string(),
        }),
        _ => Err(XmlError(format!(
            "brick `{spec}` is not of the form host:/path"
        ))),
    }
}

fn op_of(raw: &RawCliOutput) -> OpResult {
    OpResult {
        op_ret: int_or_zero(&raw.op_ret),
        op_errno: int_or_zero(&raw.op_errno),
        op_errstr: raw.op_errstr.clone().unwrap_or_default().trim().to_string(),
    }
}

/// Reads the `opRet`, `opErrno` and `opErrstr` of any `gluster --xml` answer, and the free-text `output`
/// some commands add (e.g. `Host ... already in peer list`).
pub fn parse_op_result(xml: &str) -> Result<(OpResult, Option<String>), XmlError> {
    let raw = parse_raw(xml)?;
    if raw.op_ret.is_none() {
        return Err(XmlError("the answer has no <opRet>".into()));
    }
    Ok((op_of(&raw), raw.output.map(|o| o.trim().to_string())))
}

/// Parses `gluster --xml pool list` (or `peer status`, which leaves the local node out).
pub fn parse_pool_list(xml: &str) -> Result<Vec<PoolPeer>, XmlError> {
    let raw = parse_raw(xml)?;
    let status = raw
        .peer_status
        .ok_or_else(|| XmlError("no <peerStatus> in the answer".into()))?;
    Ok(status
        .peer
        .into_iter()
        .map(|p| {
            // The local node is listed as `localhost` and, unlike every peer, without a state.
            let is_self = p.hostname == "localhost" && p.state.is_none();
            PoolPeer {
                uuid: p.uuid.trim().to_string(),
                hostname: p.hostname.trim().to_string(),
                connected: p.connected.trim() == "1",
                is_self,
                state: p.state_str.unwrap_or_default().trim().to_string(),
            }
        })
        .collect())
}

fn volume_state(status_str: &str) -> Result<VolumeState, XmlError> {
    match status_str.trim() {
        "Created" => Ok(VolumeState::Created),
        "Started" => Ok(VolumeState::Started),
        "Stopped" => Ok(VolumeState::Stopped),
        other => Err(XmlError(format!("unknown volume status `{other}`"))),
    }
}

/// Parses `gluster --xml volume info [NAME]` (all volumes in the answer). A missing volume is an error answer
/// (`opRet` -1), not an empty list: check [`parse_op_result`] first.
pub fn parse_volume_info(xml: &str) -> Result<Vec<VolumeInfo>, XmlError> {
    let raw = parse_raw(xml)?;
    let info = raw
        .vol_info
        .ok_or_else(|| XmlError("no <volInfo> in the answer".into()))?;
    info.volumes
        .volume
        .into_iter()
        .map(|v| {
            let bricks = v
                .bricks
                .brick
                .iter()
                .map(|b| split_brick(b.name.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(VolumeInfo {
                status: volume_state(&v.status_str)?,
                replica_count: number(&v.replica_count).unwrap_or(1),
                name: v.name.trim().to_string(),
                id: v.id.trim().to_string(),
                vol_type: v.type_str.trim().to_string(),
                bricks,
                options: v
                    .options
                    .option
                    .into_iter()
                    .map(|o| (o.name.trim().to_string(), o.value.trim().to_string()))
                    .collect(),
            })
        })
        .collect()
}

/// Parses `gluster --xml volume status NAME [detail]`. Only bricks are kept (not the self-heal daemon).
/// Bricks on peers that are down are absent from glusterd's answer; [`super::Gluster::volume_status`] adds them
/// back as offline from the volume info.
pub fn parse_volume_status(xml: &str) -> Result<VolumeStatus, XmlError> {
    let raw = parse_raw(xml)?;
    let status = raw
        .vol_status
        .ok_or_else(|| XmlError("no <volStatus> in the answer".into()))?;
    let volume = status
        .volumes
        .volume
        .into_iter()
        .next()
        .ok_or_else(|| XmlError("no <volume> in <volStatus>".into()))?;
    let bricks = volume
        .node
        .into_iter()
        .filter(|n| n.path.starts_with('/'))
        .map(|n| {
            let online = n.status.trim() == "1";
            BrickStatus {
                host: n.hostname.trim().to_string(),
                path: n.path.trim().to_string(),
                peer_uuid: n.peerid.trim().to_string(),
                online,
                pid: if online { number(&n.pid) } else { None },
                port: if online { number(&n.port) } else { None },
                size_total: n.size_total.as_deref().and_then(number),
                size_free: n.size_free.as_deref().and_then(number),
            }
        })
        .collect();
    Ok(VolumeStatus {
        name: volume.vol_name.trim().to_string(),
        bricks,
    })
}

fn heal_bricks(raw: RawCliOutput) -> Result<Vec<BrickHeal>, XmlError> {
    let heal = raw
        .heal_info
        .ok_or_else(|| XmlError("no <healInfo> in the answer".into()))?;
    heal.bricks
        .brick
        .into_iter()
        .map(|b| {
            let brick = split_brick(b.name.trim())?;
            let connected = b.status.trim() == "Connected";
            Ok(BrickHeal {
                host: brick.host,
                path: brick.path,
                connected,
                entries: if connected {
                    b.number_of_entries.as_deref().and_then(number)
                } else {
                    None
                },
            })
        })
        .collect()
}

/// Parses `gluster --xml volume heal NAME info`.
pub fn parse_heal_info(xml: &str) -> Result<HealInfo, XmlError> {
    let bricks = heal_bricks(parse_raw(xml)?)?;
    let total = bricks.iter().filter_map(|b| b.entries).sum();
    Ok(HealInfo { bricks, total })
}

/// Parses `gluster --xml volume heal NAME info split-brain` into the number of entries in split-brain
/// (summed over the reachable bricks).
pub fn parse_split_brain_count(xml: &str) -> Result<u64, XmlError> {
    Ok(heal_bricks(parse_raw(xml)?)?
        .iter()
        .filter_map(|b| b.entries)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gluster::test_fixture as fixture;

    #[test]
    fn pool_list_of_a_lone_node_is_itself() {
        let peers = parse_pool_list(&fixture("pool-list-single.xml")).unwrap();
        assert_eq!(peers.len(), 1);
        assert!(peers[0].is_self && peers[0].connected);
        assert_eq!(peers[0].uuid, "6fda0263-0243-4684-a02a-12e648793d55");
    }

    #[test]
    fn pool_list_shows_a_disconnected_peer() {
        let peers = parse_pool_list(&fixture("pool-list-two.xml")).unwrap();
        assert_eq!(peers.len(), 2);
        let other = peers.iter().find(|p| !p.is_self).unwrap();
        assert_eq!(other.hostname, "10.77.0.2");
        assert!(other.connected);
        assert_eq!(other.state, "Peer in Cluster");

        let peers = parse_pool_list(&fixture("pool-list-disconnected.xml")).unwrap();
        let other = peers.iter().find(|p| !p.is_self).unwrap();
        assert!(!other.connected, "{other:?}");
        assert_eq!(peers.iter().filter(|p| p.is_self).count(), 1);
    }

    #[test]
    fn a_half_probed_peer_is_connected_but_not_in_the_cluster() {
        let peers = parse_pool_list(&fixture("pool-list-probe-sent.xml")).unwrap();
        let other = peers.iter().find(|p| !p.is_self).unwrap();
        assert!(other.connected, "{other:?}");
        assert_eq!(other.state, "Probe Sent to Peer");
        assert!(!other.in_cluster(), "{other:?}");
        let me = peers.iter().find(|p| p.is_self).unwrap();
        assert!(me.in_cluster(), "{me:?}");

        let peers = parse_pool_list(&fixture("pool-list-two.xml")).unwrap();
        assert!(peers.iter().all(PoolPeer::in_cluster), "{peers:?}");
    }

    #[test]
    fn volume_info_reads_state_bricks_and_options() {
        let vols = parse_volume_info(&fixture("volume-info-started.xml")).unwrap();
        assert_eq!(vols.len(), 1);
        let v = &vols[0];
        assert_eq!(v.name, "shared");
        assert_eq!(v.id, "970c43e0-33b9-4d74-bd2f-b634ad341443");
        assert_eq!(v.status, VolumeState::Started);
        assert_eq!(v.vol_type, "Replicate");
        assert_eq!(v.replica_count, 2);
        assert_eq!(
            v.bricks,
            vec![
                Brick {
                    host: "10.77.0.1".into(),
                    path: "/bricks/b/b1".into()
                },
                Brick {
                    host: "10.77.0.1".into(),
                    path: "/bricks/b/b2".into()
                },
            ]
        );
        assert_eq!(
            v.options.get("network.ping-timeout").map(String::as_str),
            Some("10")
        );
        assert_eq!(
            v.options.get("cluster.quorum-type").map(String::as_str),
            Some("auto")
        );

        let created = parse_volume_info(&fixture("volume-info-created.xml")).unwrap();
        assert_eq!(created[0].status, VolumeState::Created);
        let two = parse_volume_info(&fixture("volume-info-two.xml")).unwrap();
        let hosts: Vec<_> = two[0].bricks.iter().map(|b| b.host.as_str()).collect();
        assert_eq!(hosts, ["10.77.0.1", "10.77.0.2"]);
    }

    #[test]
    fn no_volume_is_an_empty_list_and_a_missing_one_an_error_answer() {
        assert!(parse_volume_info(&fixture("volume-info-none.xml"))
            .unwrap()
            .is_empty());
        let (op, _) = parse_op_result(&fixture("volume-info-missing.xml")).unwrap();
        assert_eq!(op.op_ret, -1);
        assert_eq!(op.op_errstr, "Volume does not exist");
    }

    #[test]
    fn volume_status_detail_has_ports_pids_and_sizes() {
        let st = parse_volume_status(&fixture("volume-status-detail.xml")).unwrap();
        assert_eq!(st.name, "shared");
        assert_eq!(st.bricks.len(), 2);
        let b = &st.bricks[0];
        assert!(b.online);
        assert_eq!(b.path, "/bricks/b/b1");
        assert_eq!(b.pid, Some(283));
        assert_eq!(b.port, Some(57740));
        assert_eq!(b.size_total, Some(1006632960));
        assert_eq!(b.size_free, Some(965382144));
    }

    #[test]
    fn volume_status_shows_a_dead_brick_offline() {
        let st = parse_volume_status(&fixture("volume-status-detail-brick-down.xml")).unwrap();
        assert!(!st.bricks[0].online);
        assert_eq!((st.bricks[0].pid, st.bricks[0].port), (None, None));
        assert!(st.bricks[1].online);
        // A peer that is down: its brick is simply missing from glusterd's answer.
        let st = parse_volume_status(&fixture("volume-status-detail-peer-down.xml")).unwrap();
        assert_eq!(st.bricks.len(), 1);
    }

    #[test]
    fn heal_info_counts_pending_entries_and_unreachable_bricks() {
        let h = parse_heal_info(&fixture("heal-info.xml")).unwrap();
        assert_eq!(h.total, 0);
        assert!(h.bricks.iter().all(|b| b.connected && b.entries == Some(0)));

        let h = parse_heal_info(&fixture("heal-info-pending.xml")).unwrap();
        assert_eq!(h.total, 4);
        assert_eq!(h.bricks[0].entries, Some(4));
        assert!(!h.bricks[1].connected);
        assert_eq!(h.bricks[1].entries, None);
        assert_eq!(h.bricks[1].host, "10.77.0.2");
    }

    #[test]
    fn split_brain_count() {
        assert_eq!(
            parse_split_brain_count(&fixture("heal-info-split-brain.xml")).unwrap(),
            0
        );
        assert_eq!(
            parse_split_brain_count(&fixture("heal-info-split-brain-brick-down.xml")).unwrap(),
            0
        );
    }

    #[test]
    fn error_answers_carry_gluster_message() {
        let (op, _) = parse_op_result(&fixture("peer-probe-unreachable.xml")).unwrap();
        assert_eq!(op.op_ret, -1);
        assert_eq!(op.op_errno, 107);
        assert_eq!(
            op.op_errstr,
            "Probe returned with Transport endpoint is not connected"
        );
        let (op, _) = parse_op_result(&fixture("volume-set-bad-option.xml")).unwrap();
        assert!(
            op.op_errstr
                .starts_with("option : no.such.option does not exist"),
            "{op:?}"
        );
        let (op, out) = parse_op_result(&fixture("peer-probe-again.xml")).unwrap();
        assert_eq!(op.op_ret, 0);
        assert_eq!(
            out.as_deref(),
            Some("Host 10.77.0.2 port 24007 already in peer list")
        );
        let (op, _) = parse_op_result(&fixture("peer-probe-ok.xml")).unwrap();
        assert_eq!(op, OpResult::default());
    }

    #[test]
    fn text_that_is_not_xml_is_an_error() {
        assert!(parse_op_result(&fixture("not-running.txt")).is_err());
        assert!(parse_pool_list("<cliOutput><opRet>0</opRet></cliOutput>").is_err());
    }

    #[test]
    fn brick_specs() {
        assert_eq!(
            split_brick("node1.local:/srv/brick/data").unwrap(),
            Brick {
                host: "node1.local".into(),
                path: "/srv/brick/data".into()
            }
        );
        assert_eq!(split_brick("fe80::1:/b").unwrap().host, "fe80::1");
        assert!(split_brick("/just/a/path").is_err());
        assert!(split_brick("host:relative").is_err());
    }
}
