//! The reconcile planner: from this node's fresh reading of the real state and its peers' authenticated
//! summaries, the phase this node is in and the next actions to take. Pure (no I/O), so every rule is unit-tested;
//! [`super::run`] executes the actions and reads the state again on the next tick.
//!
//! Roles, all re-derived on every tick from real state (never from memory, so a crash or reboot at any point is
//! harmless):
//! - **Pool leader**: among this node and the peers in its Gluster pool that answer, the smallest node id; before any
//!   pool exists, the coordinator of [`super::election::decide`]. It probes nodes into the pool (at formation and
//!   late nodes), creates and starts the volume once enough members are connected, keeps the volume options and
//!   `auth.allow` right (exactly the pool members' addresses) and gives a late node the slot of a stand-in brick
//!   (see [`super::election`]) or a brick when the layout rule says so. It also replaces dead members (see
//!   *Replacement* below). Only the pool leader and only when no node answers as being in a swarm initialises
//!   the Swarm.
//! - **Swarm leader** (dockerd's Raft leader): promotes workers until the wanted manager count, one at a time
//!   (the next only once the last promoted one is a reachable Raft member), and keeps the
//!   `picluster.shared-volume` node label in step with each node's mount.
//! - **Everyone**: mounts the started volume, joins the swarm as a worker through a manager peer (the token comes
//!   from the manager's authenticated API).

//!
//! # Replacement
//! A member is *dead* once it has been unreachable for `agent.replace_grace_secs` (the agent measures how long;
//! an agent restart starts the clock again, which only delays a replacement). A member down for less than that
//! is never touched: it heals when it returns. With a dead member:
//! - Gluster (pool leader): when a connected, ready member holds no brick (a fresh card, admitted like any late
//!   node), a stand-in brick's slot, else the dead member's brick, is moved onto it (`replace-brick … commit
//!   force`, self-heal fills it); this comes before raising the replica count for a late node. A dead member
//!   that holds no brick any more is detached, but only once as many members answer as the cluster is built
//!   for, so a node that died during formation (and never got a brick) keeps its place until a replacement is in.
//! - Swarm (Swarm leader): once as many Swarm nodes are ready as the cluster is built for (the replacement has
//!   joined), every Swarm node down for the grace period is removed: a worker at once (`node rm --force`), a
//!   manager after a ready worker is promoted in its place and it is demoted (never fewer than the wanted
//!   managers reachable).

use super::election::{
    decide, desired_managers, late_brick_replica, plan_volume, Candidate, Decision,
};
use super::Phase;
use crate::api::model::{NodeSummary, PoolMember};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};

/// How long a pool member may stay half-way through the probe handshake before the leader detaches it to probe it
/// afresh. A handshake takes well under a second natively; emulated Pis take seconds.
pub const HANDSHAKE_STUCK_SECS: u64 = 60;

/// How long a brick of this node may have no process, while its volume is started and the pool has server quorum,
/// before the agent asks glusterd to start it (`volume start VOLUME force`). glusterd starts bricks by itself a
/// few seconds after quorum returns; this leaves it that time first.
pub const BRICK_RESTART_SECS: u64 = 15;

/// The Swarm node label that says whether the shared volume is mounted on a node.
pub const MOUNT_LABEL: &str = "picluster.shared-volume";

/// Volume options set on purpose, with the reason for each.
pub const VOLUME_OPTIONS: &[(&str, &str)] = &[
    // Client quorum: a replica set accepts writes only while more than half of its bricks are up (exactly half
    // counts when it includes the first brick). A node cut off alone gets EROFS instead of writing a diverging
    // copy: no split-brain.
    ("cluster.quorum-type", "auto"),
    // Server quorum: glusterd stops the bricks of a node that sees less than a majority of the pool, so a
    // partitioned minority cannot serve stale data to its own clients.
    ("cluster.server-quorum-type", "server"),
    // How a client notices that a brick's host died: its kernel stops acknowledging what the client sends, and
    // TCP_USER_TIMEOUT closes the connection once data has waited 3 s for an acknowledgement (Gluster's default:
    // 42 s). The client then carries on with the other bricks: the write stall after a Pi dies is about 3 s. Only
    // a dead host or a network cut of 3 s trips it: a busy or frozen brick process still has its kernel's ACKs.
    ("client.tcp-user-timeout", "3"),
    // Time a client waits for a brick that answers TCP but not Gluster's pings (a frozen brick process) before
    // carrying on without it. Gluster's default is 42 s. The ping timer counts any traffic *sent* as activity
    // and re-arms for a whole period, so on its own it stalls writes between one and two periods after a host
    // dies (7.6 s measured with 4 s): the TCP timeout above is what keeps the stall short. 5 s bounds the stall
    // behind a frozen brick; a brick host that sends nothing at all for 5 s is dropped and needs a heal after
    // (fault suite case 0 loads every node and counts disconnects).
    ("network.ping-timeout", "5"),
    // Heal in the background as soon as a brick returns (the default, set explicitly so it is never lost).
    ("cluster.self-heal-daemon", "on"),
    // How often the self-heal daemon crawls each brick's index of pending heals when nobody asks it to. Gluster's
    // default is 600 s: entries missed by the crawl that starts when a brick comes back (written while the brick
    // was still connecting, or whose heal failed once) waited up to 10 minutes. A crawl of an empty index is one
    // readdir of an empty directory, so 10 s costs nothing measurable. Measured in the fault suite (issue 6).
    ("cluster.heal-timeout", "10"),
    // Files healed in parallel by each self-heal daemon (default 1). Heal after a return is many small files,
    // each a few network round trips: 4 (a Pi 4 has 4 cores) heals them about that much sooner.
    ("cluster.shd-max-threads", "4"),
];

/// Pool-wide options (`gluster volume set all KEY VALUE`), with the reason for each. `volume info` lists them
/// among every volume's options, which is where the planner reads them back.
pub const GLOBAL_OPTIONS: &[(&str, &str)] = &[
    // Server quorum holds while at least half of the pool answers (Gluster's default is *more* than half). With 4
    // nodes a 2|2 partition then keeps every brick running, and client quorum (`cluster.quorum-type auto`) lets
    // only the half holding the volume's first brick write: one half writes, the other refuses (EROFS), never both,
    // so no split-brain. With the default both halves stop their bricks and nobody can read or write. A single
    // node cut off (1 of 4) is below half: its glusterd stops its brick, as before.
    ("cluster.server-quorum-ratio", "50"),
];

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `gluster peer probe HOST` to bring a node into the pool.
    Probe(String),
    /// `gluster peer probe HOST` of a node already in the pool but known only by address, so glusterd also knows
    /// it by the name that survives an address change.
    ProbeBack(String),
    /// Create the volume.
    CreateVolume {
        /// Replica count.
        replica: u32,
        /// Bricks `host:/path`, in order.
        bricks: Vec<String>,
    },
    /// Set these volume options (key, value) in one transaction.
    SetOptions(Vec<(String, String)>),
    /// Set a pool-wide option (`gluster volume set all KEY VALUE`).
    SetGlobalOption(String, String),
    /// Start the volume.
    StartVolume,
    /// Start the brick processes that are missing (`gluster volume start VOLUME force`: glusterd starts only the
    /// bricks that do not run; the running ones and the clients are not touched).
    StartMissingBricks,
    /// Add a brick, raising the replica count.
    AddBrick {
        /// New replica count.
        replica: u32,
        /// The brick `host:/path`.
        brick: String,
    },
    /// Mount the volume from these servers (first one, the rest as backup volfile servers) and record it in fstab.
    Mount(Vec<String>),
    /// `docker swarm init` on this node.
    SwarmInit,
    /// Join the swarm as a worker through the manager with this node id (the Swarm leader promotes workers).
    SwarmJoin {
        /// The manager's node id.
        via: String,
    },
    /// Put the new brick in the place of the dead member's brick (`volume replace-brick VOL OLD NEW commit force`).
    ReplaceBrick {
        /// The dead member's brick `host:/path`.
        old: String,
        /// The brick `host:/path` on the member that takes its place.
        new: String,
    },
    /// `gluster peer detach HOST` (with `force` when the plain detach is refused) of a dead member with no brick.
    Detach(String),
    /// Promote a Swarm node (by Swarm node id) to manager.
    Promote(String),
    /// Demote a Swarm manager (by Swarm node id): a dead one so it can be removed, or one more than wanted.
    Demote(String),
    /// Remove a dead Swarm node (by Swarm node id) from the swarm (`node rm --force`).
    RemoveNode(String),
    /// Set the mount label of a Swarm node (id, value).
    Label(String, String),
}

/// A Swarm node as the Swarm leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmNodeView {
    /// Swarm node id.
    pub id: String,
    /// Host name it reported.
    pub hostname: String,
    /// Whether it is a manager.
    pub is_manager: bool,
    /// Whether it is up (`ready`).
    pub ready: bool,
    /// For a manager: whether it is a reachable Raft member (a promoted node is a manager before it is one).
    pub reachable: bool,
    /// Current value of [`MOUNT_LABEL`], if set.
    pub mount_label: Option<String>,
}

/// Everything the planner reads.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// This node's fresh reading.
    pub me: &'a NodeSummary,
    /// The answering peers' summaries (authenticated).
    pub peers: &'a [NodeSummary],
    /// `cluster.nodes`.
    pub expected: u32,
    /// Whether `agent.majority_wait_secs` has passed since discovery began.
    pub majority_timeout: bool,
    /// Brick directory path (the same on every node).
    pub brick_path: &'a str,
    /// Stand-in brick directory path (the same on every node; see [`super::election`]).
    pub stand_in_path: &'a str,
    /// Swarm nodes, when this node is the Swarm leader.
    pub swarm_nodes: Option<&'a [SwarmNodeView]>,
    /// Host names already probed back.
    pub probed_back: &'a HashSet<String>,
    /// `agent.replace_grace_secs`: how long a member must be unreachable before it counts as dead.
    pub grace_secs: u64,
    /// For each Gluster pool member (by UUID) that is disconnected now: for how many seconds it has been.
    pub pool_down_secs: &'a BTreeMap<String, u64>,
    /// For each Gluster pool member (by UUID) whose probe handshake is unfinished now: for how many seconds it has
    /// been.
    pub pool_unjoined_secs: &'a BTreeMap<String, u64>,
    /// For each Swarm node (by Swarm node id) that is not ready now: for how many seconds it has been.
    pub swarm_down_secs: &'a BTreeMap<String, u64>,
    /// Last announced address of every node heard of, by host name (dead members included).
    pub known_addrs: &'a BTreeMap<String, Ipv4Addr>,
    /// For how many seconds one of this node's bricks in the started volume has had no brick process (`None`
    /// while all run).
    pub bricks_missing_secs: Option<u64>,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The phase this node is in.
    pub phase: Phase,
    /// What it waits for or does.
    pub detail: String,
    /// What to do now, in order.
    pub actions: Vec<Action>,
    /// Whether this node is the pool leader.
    pub pool_leader: bool,
    /// Swarm actions, run beside the volume actions (they do not depend on each other).
    pub swarm_actions: Vec<Action>,
}

/// Whether a node is in a Gluster pool with others or knows a volume.
pub fn gluster_member(s: &NodeSummary) -> bool {
    s.pool.len() > 1 || s.volume.is_some()
}

/// Whether `s`'s own pool view has `other` connected and fully joined (a node always sees itself).
fn sees(s: &NodeSummary, other: &NodeSummary) -> bool {
    other.node_id == s.node_id
        || s.pool.iter().any(|m| {
            Some(m.uuid.as_str()) == other.gluster_uuid.as_deref() && m.connected && m.in_cluster
        })
}

fn enough(count: usize, expected: u32, majority_timeout: bool) -> bool {
    count as u32 >= expected || (majority_timeout && count as u32 * 2 > expected)
}

/// Plans this tick (see the module docs).
pub fn plan(ctx: &Ctx) -> Plan {
    let me = ctx.me;
    let mut actions = Vec::new();
    let ready = |s: &NodeSummary| s.glusterd_ok && s.brick_ready;

    if !gluster_member(me) {
        let all: Vec<&NodeSummary> = std::iter::once(me).chain(ctx.peers).collect();
        let candidates: Vec<Candidate> = all
            .iter()
            .map(|s| Candidate {
                node_id: s.node_id.clone(),
                belongs: gluster_member(s) || s.swarm.is_some(),
                ready: ready(s),
            })
            .collect();
        let (phase, detail) =
            match decide(&me.node_id, &candidates, ctx.expected, ctx.majority_timeout) {
                Decision::Wait { present, expected } => (
                    Phase::Discovering,
                    format!("{present} of {expected} nodes present"),
                ),
                Decision::Follow { coordinator } => (
                    Phase::Electing,
                    format!("coordinator is {coordinator}; waiting to be probed"),
                ),
                Decision::JoinExisting => (
                    Phase::FormingPool,
                    "a cluster exists; waiting to be admitted into its pool".to_string(),
                ),
                Decision::Initiate { members } => {
                    for p in ctx.peers.iter().filter(|p| members.contains(&p.node_id)) {
                        actions.push(Action::Probe(p.hostname.clone()));
                    }
                    (
                        Phase::FormingPool,
                        format!("coordinating: probing {} nodes", members.len() - 1),
                    )
                }
            };
        return Plan {
            phase,
            detail,
            actions,
            pool_leader: false,
            swarm_actions: Vec::new(),
        };
    }

    // In a pool. Which peers are in my pool (by glusterd UUID), and which are connected.
    // A member still half-way through the probe handshake counts as neither (glusterd refuses bricks on it).
    let connected: HashSet<&str> = me
        .pool
        .iter()
        .filter(|m| m.connected && m.in_cluster)
        .map(|m| m.uuid.as_str())
        .collect();
    let in_pool: HashSet<&str> = me
        .pool
        .iter()
        .filter(|m| m.in_cluster)
        .map(|m| m.uuid.as_str())
        .collect();
    let is_in_pool = |s: &NodeSummary| {
        s.gluster_uuid
            .as_deref()
            .is_some_and(|u| in_pool.contains(u))
    };
    let mut members: Vec<&NodeSummary> = std::iter::once(me)
        .chain(ctx.peers.iter().filter(|p| is_in_pool(p)))
        .collect();
    members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let leader = members[0].node_id.clone();
    let i_lead = leader == me.node_id;
    let (swarm_done, swarm_detail, swarm_actions) = swarm_track(ctx, i_lead, &members);

    // Names: probe back nodes glusterd knows only by address.
    for m in &me.pool {
        if m.hostname.parse::<IpAddr>().is_ok() {
            if let Some(p) = ctx
                .peers
                .iter()
                .find(|p| p.gluster_uuid.as_deref() == Some(m.uuid.as_str()))
            {
                if !ctx.probed_back.contains(&p.hostname) {
                    actions.push(Action::ProbeBack(p.hostname.clone()));
                }
            }
        }
    }

    // Admission: the leader probes every ready peer that is in no pool yet.
    let outsiders: Vec<&NodeSummary> = ctx
        .peers
        .iter()
        .filter(|p| ready(p) && !is_in_pool(p) && !gluster_member(p))
        .collect();
    if i_lead {
        for p in &outsiders {
            actions.push(Action::Probe(p.hostname.clone()));
        }
    }

    // A member stuck half-way through the probe handshake (it lost power in the middle of it: the prober keeps it
    // in `Probe Sent to Peer`, the restarted peer never answers) would stay unusable for ever. Once it has been so
    // for HANDSHAKE_STUCK_SECS the leader detaches it; it is an outsider again and the next probe starts afresh.
    if i_lead {
        for m in me.pool.iter().filter(|m| !m.in_cluster) {
            let stuck = ctx
                .pool_unjoined_secs
                .get(&m.uuid)
                .is_some_and(|secs| *secs >= HANDSHAKE_STUCK_SECS);
            let holds_brick = me.volume.as_ref().is_some_and(|v| {
                v.bricks
                    .iter()
                    .any(|b| b.split_once(':').is_some_and(|(h, _)| known_as(ctx, m, h)))
            });
            if stuck && !holds_brick {
                actions.push(Action::Detach(m.hostname.clone()));
            }
        }
    }

    let usable: Vec<&NodeSummary> = members
        .iter()
        .copied()
        .filter(|s| {
            s.node_id == me.node_id
                || s.gluster_uuid
                    .as_deref()
                    .is_some_and(|u| connected.contains(u))
        })
        .filter(|s| ready(s))
        .collect();

    let done = |phase: Phase, detail: String, actions: Vec<Action>| Plan {
        phase,
        detail,
        actions,
        pool_leader: i_lead,
        swarm_actions: swarm_actions.clone(),
    };

    let Some(vol) = &me.volume else {
        if !i_lead {
            return done(
                Phase::CreatingVolume,
                format!("waiting for {leader} to create the volume"),
                actions,
            );
        }
        if !outsiders.is_empty() || !enough(usable.len(), ctx.expected, ctx.majority_timeout) {
            return done(
                Phase::FormingPool,
                format!(
                    "{} of {} nodes connected in the pool",
                    usable.len(),
                    ctx.expected
                ),
                actions,
            );
        }
        // Every member that gets a brick must itself see the others in the pool: glusterd stages the create on
        // every peer, a peer that does not yet see one of the others fails it ("Host ... not connected"), and by
        // then the bricks staged before are marked for a volume that never comes to be, which every later create
        // refuses ("already part of a volume"; seen in fault_recovery's formation, 2026-12-03).
        let layout = plan_volume(usable.len(), ctx.expected);
        let chosen = &usable[..layout.bricks];
        if let Some(lagging) = chosen.iter().find(|s| !chosen.iter().all(|o| sees(s, o))) {
            return done(
                Phase::FormingPool,
                format!(
                    "waiting for {} to see every member of the pool",
                    lagging.hostname
                ),
                actions,
            );
        }
        // The volume is laid out for the nodes the cluster was built for; extra nodes present at formation are
        // treated as late nodes (spares).
        let bricks = chosen
            .iter()
            .map(|s| format!("{}:{}", s.hostname, ctx.brick_path))
            .chain(
                layout
                    .stand_ins
                    .iter()
                    .map(|i| format!("{}:{}", usable[*i].hostname, ctx.stand_in_path)),
            )
            .collect();
        actions.push(Action::CreateVolume {
            replica: layout.replica,
            bricks,
        });
        return done(
            Phase::CreatingVolume,
            format!("creating replica {} volume", layout.replica),
            actions,
        );
    };

    if i_lead {
        let mut set: Vec<(String, String)> = VOLUME_OPTIONS
            .iter()
            .filter(|(k, v)| vol.options.get(*k).map(String::as_str) != Some(*v))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let current: BTreeSet<String> = vol
            .options
            .get("auth.allow")
            .map(|a| {
                a.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let allow = allowed_addresses(ctx, &members, &current);
        if allow != current {
            set.push((
                "auth.allow".into(),
                allow.into_iter().collect::<Vec<_>>().join(","),
            ));
        }
        if !set.is_empty() {
            actions.push(Action::SetOptions(set));
        }
        for (k, v) in GLOBAL_OPTIONS {
            if vol.options.get(*k).map(String::as_str) != Some(*v) {
                actions.push(Action::SetGlobalOption(k.to_string(), v.to_string()));
            }
        }
    }
    if !vol.started {
        if i_lead {
            actions.push(Action::StartVolume);
        }
        return done(Phase::CreatingVolume, "starting the volume".into(), actions);
    }
    // A brick of mine without a process (it crashed, or its start after a power cut lost a race with the return
    // of server quorum): glusterd never restarts it by itself. Only with server quorum (at least half of the pool
    // connected, `cluster.server-quorum-ratio` 50): without it glusterd stops bricks on purpose.
    if me.brick_ready
        && me.glusterd_ok
        && connected.len() * 2 >= me.pool.len()
        && ctx
            .bricks_missing_secs
            .is_some_and(|secs| secs >= BRICK_RESTART_SECS)
    {
        actions.push(Action::StartMissingBricks);
    }
    if i_lead {
        let brick_hosts: HashSet<&str> = vol
            .bricks
            .iter()
            .filter_map(|b| b.split_once(':').map(|(h, _)| h))
            .collect();
        let dead = |m: &&PoolMember| {
            !m.connected
                && ctx
                    .pool_down_secs
                    .get(&m.uuid)
                    .is_some_and(|secs| *secs >= ctx.grace_secs)
        };
        let dead_members: Vec<&PoolMember> = me.pool.iter().filter(dead).collect();
        let dead_brick = vol.bricks.iter().find(|b| {
            b.split_once(':')
                .is_some_and(|(h, _)| dead_members.iter().any(|m| known_as(ctx, m, h)))
        });
        // A stand-in holds a missing node's slot: the first node without a brick takes it, before any dead
        // member's slot (the stand-in's host is alive, so nothing waits for a grace period).
        let stand_in = stand_in_bricks(&vol.bricks, ctx.stand_in_path)
            .next()
            .map(|(brick, _)| brick);
        let vacant = stand_in.or(dead_brick.map(String::as_str));
        // A brick operation is staged on every peer: the new node must be seen by every usable member first (else
        // the staging fails half-way and leaves its brick marked; see the volume creation above).
        let spare = usable.iter().find(|s| {
            !brick_hosts.contains(s.hostname.as_str()) && usable.iter().all(|o| sees(o, s))
        });
        if let (Some(old), Some(new)) = (vacant, spare) {
            actions.push(Action::ReplaceBrick {
                old: old.to_string(),
                new: format!("{}:{}", new.hostname, ctx.brick_path),
            });
        } else if let Some(new) = spare.filter(|_| vacant.is_none()) {
            if let Some(replica) = late_brick_replica(vol.replica, vol.bricks.len()) {
                actions.push(Action::AddBrick {
                    replica,
                    brick: format!("{}:{}", new.hostname, ctx.brick_path),
                });
            }
        }
        // A dead member without a brick leaves the pool once the cluster is complete without it.
        if usable.len() as u32 >= ctx.expected {
            for m in &dead_members {
                if !brick_hosts.iter().any(|h| known_as(ctx, m, h)) {
                    actions.push(Action::Detach(m.hostname.clone()));
                }
            }
        }
    }

    if !me.mounted {
        let mut servers: Vec<String> = Vec::new();
        let mine = vol
            .bricks
            .iter()
            .any(|b| b.split_once(':').map(|(h, _)| h) == Some(me.hostname.as_str()));
        if mine {
            servers.push(me.hostname.clone());
        }
        for b in &vol.bricks {
            if let Some((h, _)) = b.split_once(':') {
                if !servers.iter().any(|s| s == h) {
                    servers.push(h.to_string());
                }
            }
        }
        actions.push(Action::Mount(servers));
        done(Phase::Mounting, "mounting the volume".into(), actions)
    } else if !swarm_done {
        done(Phase::FormingSwarm, swarm_detail, actions)
    } else {
        done(Phase::Steady, "formed".into(), actions)
    }
}

/// The stand-in bricks among `bricks` (`host:/path`, see [`super::election`]), each as (brick, host).
pub(crate) fn stand_in_bricks<'a>(
    bricks: &'a [String],
    stand_in_path: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    bricks.iter().filter_map(move |b| {
        b.split_once(':')
            .filter(|(_, path)| *path == stand_in_path)
            .map(|(host, _)| (b.as_str(), host))
    })
}

/// Whether pool member `m` is the host `name` (as a brick names it): glusterd may list a member by its address
/// while the volume names it by host name; the announcements tie the two.
fn known_as(ctx: &Ctx, m: &PoolMember, name: &str) -> bool {
    member_is(&m.hostname, name, ctx.known_addrs)
}

/// Whether a pool member listed by glusterd as `member` (a host name or an address) is the host `name`, by name
/// or through the address `known_addrs` (the announcements) gives `name`.
pub(crate) fn member_is(
    member: &str,
    name: &str,
    known_addrs: &BTreeMap<String, Ipv4Addr>,
) -> bool {
    member == name
        || member
            .parse::<Ipv4Addr>()
            .is_ok_and(|a| known_addrs.get(name) == Some(&a))
}

/// The addresses `auth.allow` should hold: exactly those of the pool's members (this node, the answering members
/// from their summaries, the others from their last announcement), so a node that leaves the pool loses access.
/// When a member's address is unknown (e.g. the agent restarted while it is down) nothing is removed from
/// `current`: a member is never locked out by the agent's own ignorance.
fn allowed_addresses(
    ctx: &Ctx,
    members: &[&NodeSummary],
    current: &BTreeSet<String>,
) -> BTreeSet<String> {
    let me = ctx.me;
    let mut allow = BTreeSet::new();
    let mut unknown = false;
    for m in &me.pool {
        let summary = members
            .iter()
            .find(|s| s.gluster_uuid.as_deref() == Some(m.uuid.as_str()));
        let addr = summary
            .and_then(|s| s.addr)
            .or_else(|| ctx.known_addrs.get(&m.hostname).copied())
            .or_else(|| m.hostname.parse().ok())
            .or_else(|| {
                (me.gluster_uuid.as_deref() == Some(m.uuid.as_str()))
                    .then_some(me.addr)
                    .flatten()
            });
        match addr {
            Some(a) => {
                allow.insert(a.to_string());
            }
            None => unknown = true,
        }
    }
    if let Some(a) = me.addr {
        allow.insert(a.to_string());
    }
    if unknown {
        allow.extend(current.iter().filter(|s| *s != "*").cloned());
    }
    allow
}

/// The Swarm track, run beside the volume work once this node is in the pool: (joined, detail, actions).
///
/// Every node joins as a worker; the Swarm leader promotes workers to the wanted manager count, one at a time.
/// A manager join adds a Raft member within the join call, and on a slow node (emulated Pis, 2026-12-03) the
/// leader's check of the new member timed out half-way: the node ended in state `error` and its node id stayed
/// in the swarm as a manager that never answers, costing the swarm its quorum. A promoted worker that fails the
/// same way keeps its node id, and dockerd starts it again by itself.
fn swarm_track(ctx: &Ctx, i_lead: bool, members: &[&NodeSummary]) -> (bool, String, Vec<Action>) {
    let me = ctx.me;
    let mut actions = Vec::new();
    let Some(sw) = &me.swarm else {
        let managers = ctx
            .peers
            .iter()
            .filter(|p| p.swarm.as_ref().is_some_and(|s| s.is_manager));
        if let Some(m) = managers.min_by(|a, b| a.node_id.cmp(&b.node_id)) {
            actions.push(Action::SwarmJoin {
                via: m.node_id.clone(),
            });
            // A join or promotion that failed half-way: dockerd retries a node that was once a member by itself
            // (the join action leaves and joins again only a join of this agent's that never became active).
            let detail = if me.swarm_error {
                format!(
                    "dockerd's swarm part is in state error after a join that failed half-way: waiting for dockerd \
                     to retry it, else joining again through {}",
                    m.hostname
                )
            } else {
                format!("joining the swarm through {}", m.hostname)
            };
            return (false, detail, actions);
        }
        // Only with more than half of the pool answering: a member restarting alone (its peers not yet heard
        // again) is its own "leader" for a moment and must not start a second swarm (seen in fault case 1b).
        let pool_heard = 2 * members.len() > me.pool.len();
        if i_lead && pool_heard && ctx.peers.iter().all(|p| p.swarm.is_none()) {
            actions.push(Action::SwarmInit);
            return (false, "initialising the swarm".into(), actions);
        }
        return (false, "waiting for a swarm manager".into(), actions);
    };
    if sw.is_leader {
        if let Some(nodes) = ctx.swarm_nodes {
            // Dead Swarm nodes are removed once the replacement has joined (as many ready as the cluster's size).
            let ready = nodes.iter().filter(|n| n.ready).count();
            let removing: Vec<&SwarmNodeView> = if ready as u32 >= ctx.expected {
                nodes
                    .iter()
                    .filter(|n| {
                        !n.ready
                            && ctx
                                .swarm_down_secs
                                .get(&n.id)
                                .is_some_and(|secs| *secs >= ctx.grace_secs)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let staying = nodes.len() - removing.len();
            let want = desired_managers(staying);
            let have = nodes
                .iter()
                .filter(|n| n.is_manager && !removing.iter().any(|r| r.id == n.id))
                .count();
            // A promotion under way: a manager not yet a reachable Raft member that is up, or down for less than
            // the grace period (a promoted node whose Raft join failed restarts its swarm part).
            let promoting = nodes.iter().any(|n| {
                n.is_manager
                    && !n.reachable
                    && (n.ready
                        || ctx
                            .swarm_down_secs
                            .get(&n.id)
                            .is_none_or(|secs| *secs < ctx.grace_secs))
            });
            let next_worker = nodes
                .iter()
                .filter(|n| !n.is_manager && n.ready)
                .min_by(|a, b| a.hostname.cmp(&b.hostname));
            if have < want && !promoting {
                if let Some(w) = next_worker {
                    actions.push(Action::Promote(w.id.clone()));
                }
            }
            for r in &removing {
                if !r.is_manager {
                    actions.push(Action::RemoveNode(r.id.clone()));
                } else if have >= want && !promoting {
                    actions.push(Action::Demote(r.id.clone()));
                }
            }
            // More managers than wanted (two nodes joined as managers at the same moment, each counting the
            // managers before the other): with every node ready, the surplus is demoted, never this leader. An
            // even manager count tolerates no more failures than the odd one below it and costs Raft traffic.
            if removing.is_empty() && ready == nodes.len() && have > want {
                let mut surplus: Vec<&SwarmNodeView> = nodes
                    .iter()
                    .filter(|n| n.is_manager && n.id != sw.node_id)
                    .collect();
                surplus.sort_by(|a, b| b.hostname.cmp(&a.hostname));
                for n in surplus.iter().take(have - want) {
                    actions.push(Action::Demote(n.id.clone()));
                }
            }
            for n in nodes {
                let summary = std::iter::once(me)
                    .chain(ctx.peers)
                    .find(|s| s.swarm.as_ref().is_some_and(|x| x.node_id == n.id));
                if let Some(s) = summary {
                    let value = if s.mounted { "mounted" } else { "unmounted" };
                    if n.mount_label.as_deref() != Some(value) {
                        actions.push(Action::Label(n.id.clone(), value.into()));
                    }
                }
            }
        }
    }
    (true, "in the swarm".into(), actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{SwarmBrief, VolumeBrief};
    use std::net::Ipv4Addr;

    const BRICK: &str = "/srv/gluster/brick1/brick";
    const STAND_IN: &str = "/srv/gluster/brick1/stand-in";

    fn node(i: u8) -> NodeSummary {
        NodeSummary {
            node_id: format!("n{i}"),
            hostname: format!("pc-{i}"),
            addr: Some(Ipv4Addr::new(10, 0, 0, i)),
            glusterd_ok: true,
            dockerd_ok: true,
            brick_ready: true,
            gluster_uuid: Some(format!("u{i}")),
            pool: vec![PoolMember {
                uuid: format!("u{i}"),
                hostname: "localhost".into(),
                connected: true,
                in_cluster: true,
            }],
            ..Default::default()
        }
    }

    fn pool(nodes: &mut [NodeSummary], names: &[u8]) {
        for n in nodes.iter_mut() {
            n.pool = names
                .iter()
                .map(|i| PoolMember {
                    uuid: format!("u{i}"),
                    hostname: if Some(format!("u{i}")) == n.gluster_uuid {
                        "localhost".into()
                    } else {
                        format!("pc-{i}")
                    },
                    connected: true,
                    in_cluster: true,
                })
                .collect();
        }
    }

    fn run(me: &NodeSummary, peers: &[NodeSummary]) -> Plan {
        run_seeing_swarm(me, peers, None, &BTreeMap::new())
    }

    const GRACE: u64 = 600;

    fn volume(bricks: &[u8], started: bool) -> VolumeBrief {
        VolumeBrief {
            name: "shared".into(),
            id: "vol-1".into(),
            replica: bricks.len() as u32,
            bricks: bricks.iter().map(|i| format!("pc-{i}:{BRICK}")).collect(),
            started,
            options: VOLUME_OPTIONS
                .iter()
                .chain(GLOBAL_OPTIONS)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([(
                    "auth.allow".to_string(),
                    bricks
                        .iter()
                        .map(|i| format!("10.0.0.{i}"))
                        .collect::<Vec<_>>()
                        .join(","),
                )])
                .collect(),
        }
    }

    #[test]
    fn fresh_nodes_wait_then_coordinator_probes_everyone() {
        let nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        let p = run(&nodes[0], &nodes[1..3]);
        assert_eq!(p.phase, Phase::Discovering);
        assert!(p.actions.is_empty());
        let p = run(&nodes[0], &nodes[1..]);
        assert_eq!(p.phase, Phase::FormingPool);
        assert_eq!(
            p.actions,
            vec![
                Action::Probe("pc-2".into()),
                Action::Probe("pc-3".into()),
                Action::Probe("pc-4".into())
            ]
        );
        let others = [nodes[0].clone(), nodes[2].clone(), nodes[3].clone()];
        let p = run(&nodes[1], &others);
        assert_eq!(p.phase, Phase::Electing);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn leader_creates_replica_4_once_all_connected() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        let p = run(&nodes[0], &nodes[1..]);
        assert_eq!(p.phase, Phase::CreatingVolume);
        assert_eq!(
            p.actions,
            vec![Action::CreateVolume {
                replica: 4,
                bricks: (1..=4).map(|i| format!("pc-{i}:{BRICK}")).collect()
            }]
        );
        // A non-leader never creates.
        let others = [nodes[0].clone(), nodes[2].clone(), nodes[3].clone()];
        let p = run(&nodes[1], &others);
        assert!(p.actions.is_empty());
        assert!(!p.pool_leader);
    }

    #[test]
    fn leader_creates_only_once_every_member_sees_the_whole_pool() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        // node 2 does not see node 4 yet (the leader does): glusterd on node 2 would fail the create's staging.
        nodes[1].pool[3].connected = false;
        let p = run(&nodes[0], &nodes[1..]);
        assert!(
            !has(&p, |a| matches!(a, Action::CreateVolume { .. })),
            "{p:?}"
        );
        assert_eq!(p.detail, "waiting for pc-2 to see every member of the pool");
        // Nor while node 3 has node 1 only half-way through the handshake.
        nodes[1].pool[3].connected = true;
        nodes[2].pool[0].in_cluster = false;
        let p = run(&nodes[0], &nodes[1..]);
        assert!(
            !has(&p, |a| matches!(a, Action::CreateVolume { .. })),
            "{p:?}"
        );
        nodes[2].pool[0].in_cluster = true;
        let p = run(&nodes[0], &nodes[1..]);
        assert!(
            has(&p, |a| matches!(a, Action::CreateVolume { .. })),
            "{p:?}"
        );
    }

    #[test]
    fn swarm_is_initialised_beside_the_volume_once_pooled() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        let p = run(&nodes[0], &nodes[1..]);
        assert!(matches!(p.actions[..], [Action::CreateVolume { .. }]));
        assert_eq!(p.swarm_actions, vec![Action::SwarmInit]);
        // Never while another node answers as being in a swarm.
        nodes[3].swarm = Some(SwarmBrief {
            cluster_id: String::new(),
            node_id: "s4".into(),
            is_manager: false,
            is_leader: false,
            remote_managers: vec![],
        });
        let p = run(&nodes[0], &nodes[1..]);
        assert!(p.swarm_actions.is_empty());
    }

    #[test]
    fn leader_waits_while_a_member_is_disconnected() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        nodes[0].pool[3].connected = false;
        let p = run(&nodes[0], &nodes[1..]);
        assert_eq!(p.phase, Phase::FormingPool);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn existing_cluster_is_joined_never_initialised() {
        // A late fifth node with the smallest id: others already form a pool.
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        let mut late = node(0);
        late.node_id = "n0".into();
        let p = run(&late, &nodes);
        assert_eq!(p.phase, Phase::FormingPool);
        assert!(p.actions.is_empty());
        // The pool leader (n1) admits it.
        let mut peers = nodes[1..].to_vec();
        peers.push(late.clone());
        let p = run(&nodes[0], &peers);
        assert!(p.actions.contains(&Action::Probe("pc-0".into())));
    }

    #[test]
    fn started_volume_is_mounted_then_swarm_initialised_by_leader_only() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for n in nodes.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
        }
        let p = run(
            &nodes[2],
            &[nodes[0].clone(), nodes[1].clone(), nodes[3].clone()],
        );
        assert_eq!(p.phase, Phase::Mounting);
        assert_eq!(
            p.actions,
            vec![Action::Mount(vec![
                "pc-3".into(),
                "pc-1".into(),
                "pc-2".into(),
                "pc-4".into()
            ])]
        );
        for n in nodes.iter_mut() {
            n.mounted = true;
        }
        let p = run(&nodes[0], &nodes[1..]);
        assert_eq!(p.swarm_actions, vec![Action::SwarmInit]);
        assert_eq!(p.phase, Phase::FormingSwarm);
        let p = run(
            &nodes[1],
            &[nodes[0].clone(), nodes[2].clone(), nodes[3].clone()],
        );
        assert!(p.actions.is_empty() && p.swarm_actions.is_empty());
        assert_eq!(p.phase, Phase::FormingSwarm);
        // Once node 1 is a manager, the others join through it.
        nodes[0].swarm = Some(SwarmBrief {
            cluster_id: "sw".into(),
            node_id: "s1".into(),
            is_manager: true,
            is_leader: true,
            remote_managers: vec![],
        });
        // Every node joins as a worker, whatever its rank (the Swarm leader promotes).
        for (i, others) in [(1, [0, 2, 3]), (3, [0, 1, 2])] {
            let peers: Vec<NodeSummary> = others.iter().map(|&o| nodes[o].clone()).collect();
            let p = run(&nodes[i], &peers);
            assert_eq!(
                p.swarm_actions,
                vec![Action::SwarmJoin { via: "n1".into() }]
            );
            assert!(
                p.detail.contains("joining the swarm through"),
                "{}",
                p.detail
            );
        }
        // A node whose swarm part is in state error says that dockerd may be retrying it.
        let mut failed = nodes[1].clone();
        failed.swarm_error = true;
        let p = run(
            &failed,
            &[nodes[0].clone(), nodes[2].clone(), nodes[3].clone()],
        );
        assert!(p.detail.contains("state error"), "{}", p.detail);
        for i in [1, 2] {
            nodes[i].swarm = nodes[0].swarm.clone();
        }
        let p = run(
            &nodes[1],
            &[nodes[0].clone(), nodes[2].clone(), nodes[3].clone()],
        );
        assert!(p.swarm_actions.is_empty(), "already in");
        let mut late = node(0);
        late.node_id = "n0".into();
        late.volume = nodes[0].volume.clone();
        late.mounted = true;
        for n in nodes.iter_mut() {
            n.pool.push(PoolMember {
                uuid: "u0".into(),
                hostname: "pc-0".into(),
                connected: true,
                in_cluster: true,
            });
        }
        late.pool = nodes[0].pool.clone();
        let p = run(&late, &nodes);
        assert_eq!(
            p.swarm_actions,
            vec![Action::SwarmJoin { via: "n1".into() }]
        );
    }

    #[test]
    fn a_member_restarting_alone_never_starts_a_second_swarm() {
        // node 4 of a formed pool of 4 is back; its peers have not answered yet and its dockerd knows no swarm.
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        let mut me = nodes[3].clone();
        me.node_id = "n0".into(); // smallest id: the pool leader among the members it hears (itself)
        me.volume = Some(volume(&[1, 2, 3, 4], true));
        me.mounted = true;
        for m in me.pool.iter_mut() {
            m.connected = m.hostname == "localhost";
        }
        let p = run(&me, &[]);
        assert!(
            !p.swarm_actions.contains(&Action::SwarmInit),
            "{:?}",
            p.swarm_actions
        );
        // With the pool answering (and no swarm anywhere yet), the leader does start one.
        let p = run(&me, &nodes[..3]);
        assert!(p.swarm_actions.contains(&Action::SwarmInit), "{p:?}");
    }

    #[test]
    fn swarm_leader_promotes_to_three_and_labels() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for (i, n) in nodes.iter_mut().enumerate() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
            n.mounted = true;
            n.swarm = Some(SwarmBrief {
                cluster_id: "sw".into(),
                node_id: format!("s{}", i + 1),
                is_manager: i == 0,
                is_leader: i == 0,
                remote_managers: vec![],
            });
        }
        let views: Vec<SwarmNodeView> = (1..=4)
            .map(|i| SwarmNodeView {
                id: format!("s{i}"),
                hostname: format!("pc-{i}"),
                is_manager: i == 1,
                ready: true,
                reachable: i == 1,
                mount_label: (i != 4).then(|| "mounted".to_string()),
            })
            .collect();
        let ctx = |views: &[SwarmNodeView]| {
            run_seeing_swarm(&nodes[0], &nodes[1..], Some(views), &BTreeMap::new())
        };
        let p = ctx(&views);
        assert_eq!(p.phase, Phase::Steady);
        // One promotion at a time.
        assert_eq!(
            p.swarm_actions,
            vec![
                Action::Promote("s2".into()),
                Action::Label("s4".into(), "mounted".into())
            ]
        );
        // s2 promoted, not yet a reachable Raft member: nothing more is promoted.
        let mut views = views;
        views[1].is_manager = true;
        let p = ctx(&views);
        assert!(
            !p.swarm_actions
                .iter()
                .any(|a| matches!(a, Action::Promote(_))),
            "{:?}",
            p.swarm_actions
        );
        // Once it is, the next one.
        views[1].reachable = true;
        let p = ctx(&views);
        assert_eq!(p.swarm_actions[0], Action::Promote("s3".into()));
    }

    #[test]
    fn late_node_raises_replica_below_four_only() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for n in nodes.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3], true));
        }
        let p = run(&nodes[0], &nodes[1..]);
        assert!(p.actions.contains(&Action::AddBrick {
            replica: 4,
            brick: format!("pc-4:{BRICK}")
        }));
        for n in nodes.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
        }
        let mut five: Vec<NodeSummary> = (1..=5).map(node).collect();
        pool(&mut five, &[1, 2, 3, 4, 5]);
        for n in five.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
        }
        let p = run(&five[0], &five[1..]);
        assert!(!p
            .actions
            .iter()
            .any(|a| matches!(a, Action::AddBrick { .. })));
        // But the fifth node's address is allowed.
        assert!(p.actions.iter().any(
            |a| matches!(a, Action::SetOptions(o) if o.iter().any(|(k, v)| k == "auth.allow" && v.contains("10.0.0.5")))
        ));
    }

    /// Pool [1..=4] plus a fresh node 5, volume on [1..=4], node 4 disconnected for `down` seconds.
    fn with_dead_node4(
        down: Option<u64>,
        fresh: bool,
    ) -> (Vec<NodeSummary>, BTreeMap<String, u64>) {
        let names: Vec<u8> = if fresh {
            vec![1, 2, 3, 4, 5]
        } else {
            vec![1, 2, 3, 4]
        };
        let mut nodes: Vec<NodeSummary> = names.iter().map(|i| node(*i)).collect();
        pool(&mut nodes, &names);
        for n in nodes.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
            n.mounted = true;
            n.pool[3].connected = false;
        }
        nodes.remove(3);
        let down = down
            .map(|d| BTreeMap::from([("u4".to_string(), d)]))
            .unwrap_or_default();
        (nodes, down)
    }

    fn run_with(
        me: &NodeSummary,
        peers: &[NodeSummary],
        pool_down: &BTreeMap<String, u64>,
        known: &BTreeMap<String, Ipv4Addr>,
    ) -> Plan {
        run_unjoined(me, peers, pool_down, &BTreeMap::new(), known)
    }

    /// As [`run_with`], with members half-way through the probe handshake for `unjoined` seconds (by UUID).
    fn run_unjoined(
        me: &NodeSummary,
        peers: &[NodeSummary],
        pool_down: &BTreeMap<String, u64>,
        unjoined: &BTreeMap<String, u64>,
        known: &BTreeMap<String, Ipv4Addr>,
    ) -> Plan {
        run_all(me, peers, pool_down, unjoined, known, None)
    }

    /// As [`run_unjoined`], with this node's bricks missing their processes for `bricks_missing` seconds.
    fn run_all(
        me: &NodeSummary,
        peers: &[NodeSummary],
        pool_down: &BTreeMap<String, u64>,
        unjoined: &BTreeMap<String, u64>,
        known: &BTreeMap<String, Ipv4Addr>,
        bricks_missing: Option<u64>,
    ) -> Plan {
        plan(&Ctx {
            me,
            peers,
            expected: 4,
            majority_timeout: true,
            brick_path: BRICK,
            stand_in_path: STAND_IN,
            swarm_nodes: None,
            probed_back: &HashSet::new(),
            grace_secs: GRACE,
            pool_down_secs: pool_down,
            pool_unjoined_secs: unjoined,
            swarm_down_secs: &BTreeMap::new(),
            known_addrs: known,
            bricks_missing_secs: bricks_missing,
        })
    }

    /// The plan of `me` (majority wait not over) seeing these Swarm nodes (as the Swarm leader does), some down for
    /// the given seconds (by Swarm node id).
    fn run_seeing_swarm(
        me: &NodeSummary,
        peers: &[NodeSummary],
        views: Option<&[SwarmNodeView]>,
        swarm_down: &BTreeMap<String, u64>,
    ) -> Plan {
        plan(&Ctx {
            me,
            peers,
            expected: 4,
            majority_timeout: false,
            brick_path: BRICK,
            stand_in_path: STAND_IN,
            swarm_nodes: views,
            probed_back: &HashSet::new(),
            grace_secs: GRACE,
            pool_down_secs: &BTreeMap::new(),
            pool_unjoined_secs: &BTreeMap::new(),
            swarm_down_secs: swarm_down,
            known_addrs: &BTreeMap::new(),
            bricks_missing_secs: None,
        })
    }

    /// Four nodes in one pool; nodes 1-3 have the volume formed without node 4: replica 4, node 4's slot a
    /// stand-in on node 3.
    fn formed_with_a_stand_in() -> Vec<NodeSummary> {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        let mut vol = volume(&[1, 2, 3], true);
        vol.replica = 4;
        vol.bricks.push(format!("pc-3:{STAND_IN}"));
        for n in nodes.iter_mut().take(3) {
            n.volume = Some(vol.clone());
        }
        nodes
    }

    /// Four formed nodes (volume started, mounted); node 1's plan with its brick process missing for `missing`
    /// seconds and the members in `down` disconnected.
    fn run_brick_missing(missing: Option<u64>, down: &[usize]) -> Plan {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for n in nodes.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
            n.mounted = true;
        }
        for i in down {
            nodes[0].pool[*i].connected = false;
        }
        let none = BTreeMap::new();
        run_all(
            &nodes[0],
            &nodes[1..],
            &none,
            &none,
            &BTreeMap::new(),
            missing,
        )
    }

    #[test]
    fn a_brick_without_a_process_is_started_after_a_while_only_with_server_quorum() {
        let start = |p: &Plan| has(p, |a| *a == Action::StartMissingBricks);
        assert!(!start(&run_brick_missing(None, &[])));
        // glusterd gets its own few seconds to start it (it does after quorum returns).
        assert!(!start(&run_brick_missing(
            Some(BRICK_RESTART_SECS - 1),
            &[]
        )));
        let p = run_brick_missing(Some(BRICK_RESTART_SECS), &[]);
        assert!(start(&p), "{p:?}");
        // Half of the pool connected is quorum (ratio 50): a 2|2 split still starts it.
        assert!(start(&run_brick_missing(Some(BRICK_RESTART_SECS), &[2, 3])));
        // Cut off alone (1 connected of 4, below half): glusterd stopped the brick on purpose; left alone.
        assert!(!start(&run_brick_missing(
            Some(BRICK_RESTART_SECS * 10),
            &[1, 2, 3]
        )));
    }

    fn has(p: &Plan, f: impl Fn(&Action) -> bool) -> bool {
        p.actions.iter().any(f)
    }

    #[test]
    fn a_node_down_shorter_than_the_grace_period_is_never_replaced() {
        let (nodes, down) = with_dead_node4(Some(GRACE - 1), true);
        let p = run_with(&nodes[0], &nodes[1..], &down, &BTreeMap::new());
        assert!(
            !has(&p, |a| matches!(
                a,
                Action::ReplaceBrick { .. } | Action::Detach(_)
            )),
            "{p:?}"
        );
        // Nor is the fresh node given a brick by raising the replica (4 is the most).
        assert!(!has(&p, |a| matches!(a, Action::AddBrick { .. })), "{p:?}");
        // Unknown down time (e.g. just restarted) counts as not dead.
        let p = run_with(&nodes[0], &nodes[1..], &BTreeMap::new(), &BTreeMap::new());
        assert!(
            !has(&p, |a| matches!(a, Action::ReplaceBrick { .. })),
            "{p:?}"
        );
    }

    #[test]
    fn a_dead_node_is_replaced_by_a_fresh_one_then_detached() {
        let (nodes, down) = with_dead_node4(Some(GRACE), true);
        let p = run_with(&nodes[0], &nodes[1..], &down, &BTreeMap::new());
        assert!(p.pool_leader);
        // glusterd may list the dead member by its address: the announcements name it.
        let mut by_addr = nodes.clone();
        by_addr[0].pool[3].hostname = "10.0.0.4".into();
        let known = BTreeMap::from([("pc-4".to_string(), Ipv4Addr::new(10, 0, 0, 4))]);
        let q = run_with(&by_addr[0], &by_addr[1..], &down, &known);
        assert!(
            q.actions.contains(&Action::ReplaceBrick {
                old: format!("pc-4:{BRICK}"),
                new: format!("pc-5:{BRICK}"),
            }),
            "{q:?}"
        );
        assert!(
            p.actions.contains(&Action::ReplaceBrick {
                old: format!("pc-4:{BRICK}"),
                new: format!("pc-5:{BRICK}"),
            }),
            "{p:?}"
        );
        // It still holds a brick: not detached yet. Only the leader acts.
        assert!(!has(&p, |a| matches!(a, Action::Detach(_))));
        let p = run_with(
            &nodes[1],
            &[nodes[0].clone(), nodes[2].clone(), nodes[3].clone()],
            &down,
            &BTreeMap::new(),
        );
        assert!(p.actions.is_empty(), "{p:?}");
        // After the replace-brick: the dead node holds no brick and is detached.
        let mut after = nodes.clone();
        for n in after.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 5], true));
        }
        let p = run_with(&after[0], &after[1..], &down, &BTreeMap::new());
        assert!(p.actions.contains(&Action::Detach("pc-4".into())), "{p:?}");
        let mut by_addr = after.clone();
        by_addr[0].pool[3].hostname = "10.0.0.4".into();
        let q = run_with(&by_addr[0], &by_addr[1..], &down, &known);
        assert!(
            q.actions.contains(&Action::Detach("10.0.0.4".into())),
            "{q:?}"
        );
        assert!(!has(&p, |a| matches!(a, Action::ReplaceBrick { .. })));
    }

    #[test]
    fn a_dead_node_without_a_replacement_is_left_in_place() {
        let (nodes, down) = with_dead_node4(Some(GRACE * 10), false);
        let p = run_with(&nodes[0], &nodes[1..], &down, &BTreeMap::new());
        assert!(
            !has(&p, |a| matches!(
                a,
                Action::ReplaceBrick { .. } | Action::Detach(_)
            )),
            "{p:?}"
        );
        // A node that died during formation (in the pool, no brick) keeps its place while the cluster is short.
        let mut three = nodes.clone();
        for n in three.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3], true));
        }
        let p = run_with(&three[0], &three[1..], &down, &BTreeMap::new());
        assert!(!has(&p, |a| matches!(a, Action::Detach(_))), "{p:?}");
    }

    #[test]
    fn a_majority_forms_the_full_volume_with_a_stand_in_after_the_wait() {
        // Node 4 was probed into the pool, then died before the volume existed.
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for n in nodes.iter_mut() {
            n.pool[3].connected = false;
        }
        let p = run(&nodes[0], &nodes[1..3]);
        assert_eq!(
            p.phase,
            Phase::FormingPool,
            "waits before the majority wait is over"
        );
        let p = run_with(&nodes[0], &nodes[1..3], &BTreeMap::new(), &BTreeMap::new());
        // Replica 4 all the same: node 4's slot is a stand-in on node 3 (not on node 1, the first brick).
        assert_eq!(
            p.actions,
            vec![Action::CreateVolume {
                replica: 4,
                bricks: vec![
                    format!("pc-1:{BRICK}"),
                    format!("pc-2:{BRICK}"),
                    format!("pc-3:{BRICK}"),
                    format!("pc-3:{STAND_IN}"),
                ]
            }]
        );
    }

    #[test]
    fn a_late_node_takes_the_stand_in_slot_at_once_never_a_raised_replica() {
        let mut nodes = formed_with_a_stand_in();
        nodes[3].volume = nodes[0].volume.clone();
        // Node 4 is back (connected, ready, no brick): no grace period, the stand-in's host is alive.
        let p = run(&nodes[0], &nodes[1..]);
        assert!(has(&p, |a| *a
            == Action::ReplaceBrick {
                old: format!("pc-3:{STAND_IN}"),
                new: format!("pc-4:{BRICK}"),
            }));
        assert!(!has(&p, |a| matches!(a, Action::AddBrick { .. })));
        // Not while a member with a brick does not see node 4 yet (the staging would fail there half-way).
        let mut lagging = nodes.clone();
        lagging[1].pool[3].connected = false;
        let p = run(&lagging[0], &lagging[1..]);
        assert!(
            !has(&p, |a| matches!(a, Action::ReplaceBrick { .. })),
            "{p:?}"
        );
        // Only the pool leader acts.
        assert!(!has(
            &run(
                &nodes[1],
                &[nodes[0].clone(), nodes[2].clone(), nodes[3].clone()]
            ),
            |a| { matches!(a, Action::ReplaceBrick { .. }) }
        ));
        // Without a node to take it, the stand-in stays.
        let p = run(&nodes[0], &nodes[1..3]);
        assert!(!has(&p, |a| matches!(
            a,
            Action::ReplaceBrick { .. } | Action::AddBrick { .. }
        )));
    }

    #[test]
    fn a_member_stuck_in_the_probe_handshake_gets_no_brick_and_is_detached_after_a_while() {
        // The case-1b lab run of 2026-12-02: node 4 lost power between the leader's probe and its own reply; back
        // up, the leader still lists it as `Probe Sent to Peer` (connected) and glusterd refuses bricks on it.
        let mut nodes = formed_with_a_stand_in();
        for n in nodes.iter_mut().take(3) {
            n.pool[3].in_cluster = false;
        }
        // Node 4 itself knows nobody.
        nodes[3].pool = node(4).pool;
        let (none, no_addrs) = (BTreeMap::new(), BTreeMap::new());
        let stuck_for = |secs: u64| {
            let unjoined = BTreeMap::from([("u4".to_string(), secs)]);
            run_unjoined(&nodes[0], &nodes[1..], &none, &unjoined, &no_addrs)
        };
        let early = stuck_for(HANDSHAKE_STUCK_SECS - 1);
        assert!(
            !has(&early, |a| matches!(
                a,
                Action::ReplaceBrick { .. } | Action::AddBrick { .. } | Action::Detach(_)
            )),
            "no brick on a half-joined member, no detach while the handshake may still finish: {early:?}"
        );
        let late = stuck_for(HANDSHAKE_STUCK_SECS);
        assert!(
            has(&late, |a| *a == Action::Detach("pc-4".into())),
            "{late:?}"
        );
        assert!(!has(&late, |a| matches!(a, Action::ReplaceBrick { .. })));
        // Only the leader detaches.
        let mut follower = nodes[1].clone();
        follower.node_id = "n9".into();
        let p = run_unjoined(
            &follower,
            &[nodes[0].clone(), nodes[2].clone(), nodes[3].clone()],
            &none,
            &BTreeMap::from([("u4".to_string(), HANDSHAKE_STUCK_SECS)]),
            &no_addrs,
        );
        assert!(!has(&p, |a| matches!(a, Action::Detach(_))), "{p:?}");
        // Detached, node 4 is an outsider again: the leader probes it, then gives it the stand-in's slot.
        for n in nodes.iter_mut().take(3) {
            n.pool.truncate(3);
        }
        let p = run(&nodes[0], &nodes[1..]);
        assert!(has(&p, |a| *a == Action::Probe("pc-4".into())), "{p:?}");
    }

    #[test]
    fn auth_allow_is_exactly_the_pool_members() {
        // Node 4 dead but still in the pool: its last announced address stays allowed.
        let (nodes, down) = with_dead_node4(Some(GRACE), true);
        let known = BTreeMap::from([("pc-4".to_string(), Ipv4Addr::new(10, 0, 0, 4))]);
        let allow = |p: &Plan| {
            p.actions.iter().find_map(|a| match a {
                Action::SetOptions(o) => o
                    .iter()
                    .find(|(k, _)| k == "auth.allow")
                    .map(|(_, v)| v.clone()),
                _ => None,
            })
        };
        let p = run_with(&nodes[0], &nodes[1..], &down, &known);
        assert_eq!(
            allow(&p).as_deref(),
            Some("10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5")
        );
        // Its address unknown (agent restarted): nothing is taken away, the new node is added.
        let p = run_with(&nodes[0], &nodes[1..], &down, &BTreeMap::new());
        assert_eq!(
            allow(&p).as_deref(),
            Some("10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5")
        );
        // Detached: its address goes.
        let mut after = nodes.clone();
        for n in after.iter_mut() {
            n.pool.retain(|m| m.uuid != "u4");
            n.volume = Some(volume(&[1, 2, 3, 5], true));
            n.volume.as_mut().unwrap().options.insert(
                "auth.allow".into(),
                "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5".into(),
            );
        }
        let p = run_with(&after[0], &after[1..], &BTreeMap::new(), &known);
        assert_eq!(
            allow(&p).as_deref(),
            Some("10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.5")
        );
        // Once right, nothing more is set.
        for n in after.iter_mut() {
            n.volume.as_mut().unwrap().options.insert(
                "auth.allow".into(),
                "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.5".into(),
            );
        }
        let p = run_with(&after[0], &after[1..], &BTreeMap::new(), &known);
        assert_eq!(allow(&p), None);
    }

    #[test]
    fn swarm_leader_removes_a_dead_manager_only_after_its_replacement_is_in() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for (i, n) in nodes.iter_mut().enumerate() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
            n.mounted = true;
            n.swarm = Some(SwarmBrief {
                cluster_id: "sw".into(),
                node_id: format!("s{}", i + 1),
                is_manager: i < 3,
                is_leader: i == 0,
                remote_managers: vec![],
            });
        }
        // s2 (a manager) is dead; s5 is the fresh node, joined as a worker.
        let view = |i: u8, manager: bool, ready: bool| SwarmNodeView {
            id: format!("s{i}"),
            hostname: format!("pc-{i}"),
            is_manager: manager,
            ready,
            reachable: manager && ready,
            mount_label: Some("mounted".into()),
        };
        let swarm_plan = |views: &[SwarmNodeView], down: u64| {
            let down = BTreeMap::from([("s2".to_string(), down)]);
            run_seeing_swarm(&nodes[0], &nodes[1..], Some(views), &down).swarm_actions
        };
        let before = [
            view(1, true, true),
            view(2, true, false),
            view(3, true, true),
            view(4, false, true),
        ];
        // No replacement yet (3 ready of 4): nothing, however long it is down; no extra manager either.
        assert!(swarm_plan(&before, GRACE * 10).is_empty());
        let joined = [
            view(1, true, true),
            view(2, true, false),
            view(3, true, true),
            view(4, false, true),
            view(5, false, true),
        ];
        // Down shorter than the grace period: left alone.
        assert!(swarm_plan(&joined, GRACE - 1).is_empty());
        // Dead and replaced: first a worker is promoted in its place (never fewer than 3 reachable managers)...
        assert_eq!(
            swarm_plan(&joined, GRACE),
            vec![Action::Promote("s4".into())]
        );
        // ... then the dead manager is demoted ...
        let promoted = [
            view(1, true, true),
            view(2, true, false),
            view(3, true, true),
            view(4, true, true),
            view(5, false, true),
        ];
        // (not while the promoted one is not yet a reachable Raft member)
        let mut joining = promoted.clone();
        joining[3].reachable = false;
        assert!(swarm_plan(&joining, GRACE).is_empty());
        assert_eq!(
            swarm_plan(&promoted, GRACE),
            vec![Action::Demote("s2".into())]
        );
        // ... and removed.
        let demoted = [
            view(1, true, true),
            view(2, false, false),
            view(3, true, true),
            view(4, true, true),
            view(5, false, true),
        ];
        assert_eq!(
            swarm_plan(&demoted, GRACE),
            vec![Action::RemoveNode("s2".into())]
        );
        // Four managers, all ready (two joined as managers at once): the surplus is demoted, never the leader.
        let four = [
            view(1, true, true),
            view(2, true, true),
            view(3, true, true),
            view(4, true, true),
        ];
        assert_eq!(swarm_plan(&four, 0), vec![Action::Demote("s4".into())]);
        // Not while a node is down: no change of managers in the middle of an outage.
        let four_one_down = [
            view(1, true, true),
            view(2, true, true),
            view(3, true, true),
            view(4, true, false),
        ];
        assert!(swarm_plan(&four_one_down, 0).is_empty());
    }

    #[test]
    fn survivor_of_a_lost_peer_stays_steady_and_keeps_its_mount() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for n in nodes.iter_mut() {
            n.volume = Some(volume(&[1, 2, 3, 4], true));
            n.mounted = true;
            n.swarm = Some(SwarmBrief {
                cluster_id: "sw".into(),
                node_id: format!("s-{}", n.node_id),
                is_manager: false,
                is_leader: false,
                remote_managers: vec![],
            });
        }
        // node 4 is power-cut: glusterd on node 2 sees it disconnected, its summary is gone.
        let mut me = nodes[1].clone();
        me.pool[3].connected = false;
        let p = run(&me, &[nodes[0].clone(), nodes[2].clone()]);
        assert_eq!(p.phase, Phase::Steady, "{}", p.detail);
        assert!(
            !p.actions.iter().any(|a| matches!(a, Action::Mount(_))),
            "a working mount is never mounted again: {:?}",
            p.actions
        );
    }

    #[test]
    fn existing_volume_gets_new_options_and_the_pool_wide_quorum_ratio() {
        let mut nodes: Vec<NodeSummary> = (1..=4).map(node).collect();
        pool(&mut nodes, &[1, 2, 3, 4]);
        for n in nodes.iter_mut() {
            let mut v = volume(&[1, 2, 3, 4], true);
            // A volume made by an older agent: Gluster's defaults for heal, no pool-wide ratio.
            v.options.remove("cluster.heal-timeout");
            v.options.remove("cluster.shd-max-threads");
            v.options.remove("cluster.server-quorum-ratio");
            n.volume = Some(v);
            n.mounted = true;
        }
        let p = run(&nodes[0], &nodes[1..]);
        assert!(p.actions.contains(&Action::SetOptions(vec![
            ("cluster.heal-timeout".into(), "10".into()),
            ("cluster.shd-max-threads".into(), "4".into()),
        ])));
        assert!(p.actions.contains(&Action::SetGlobalOption(
            "cluster.server-quorum-ratio".into(),
            "50".into()
        )));
        // Only the pool leader reconciles.
        let others = [nodes[0].clone(), nodes[2].clone(), nodes[3].clone()];
        assert!(run(&nodes[1], &others).actions.is_empty());
    }
}
