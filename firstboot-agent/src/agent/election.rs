//! Pure decisions of formation: who initialises, how the volume is laid out, what a late node gets.
//!
//! # Coordinator
//! The coordinator is the node with the smallest node id among the authenticated peers present, chosen only when
//! `cluster.nodes` nodes are present, or after `agent.majority_wait_secs` when a strict majority is present.
//! Two strict majorities of the same expected count always share a node, and every node applies the same rule to
//! the same signed announcements, so two coordinators cannot both initialise a pool. Before that rule applies,
//! every node looks at every peer's authenticated summary: if any node (itself included) already belongs to a
//! pool with other members, a volume or a swarm, nobody initialises anything and everyone joins that cluster
//! (a rebooted cluster, or a late node).
//!
//! # Volume layout
//! - Built for up to 4 nodes: one brick per node, `replica N` (every node holds every file; with 4 nodes it
//!   survives any one node lost with writes, and reads survive three). 2 nodes give replica 2, which Gluster warns
//!   is prone to split-brain; the client quorum chosen below (`auto`) makes the first brick the tie-breaker.
//! - Formed by a majority (a node missing after `agent.majority_wait_secs`): the volume still gets the replica
//!   count the cluster is built for. Each missing node's slot holds a *stand-in brick*: a second brick directory
//!   ([`crate::config::ClusterConfig::stand_in_path`]) on a present node other than the first brick's, so that losing
//!   that node still leaves the first brick and half of the set (client quorum holds). When the missing node
//!   (or any fresh card) joins, `replace-brick` moves the stand-in onto it: the replica count never changes after
//!   formation. Raising it instead (`add-brick replica r+1`) was measured to lose files for the new brick: a
//!   client still on the old brick list creates and writes files with no pending mark for a brick it does not
//!   know, so no heal ever fills them (fault case 1). With replace-brick both brick lists name the same slot,
//!   and a write that misses it is marked pending for it.
//! - More than 4 nodes: distributed-replicated with `replica 3` over `3 * floor(N / 3)` nodes (sets of
//!   3 consecutive nodes by node id). Raising the replica with the node count would multiply every write by N on
//!   the Pis' shared LAN for no gain in availability (client quorum needs a majority of a set either way); sets of 3
//!   keep one write = 3 copies and tolerate one lost node per set. The remaining `N mod 3` nodes are spares:
//!   they mount the volume and keep an empty brick, ready to take a dead node's place (replace-brick).
//! - A late node: it takes a stand-in's slot when there is one; in a volume of a single replica set of fewer than
//!   4 bricks without stand-ins (formed by an agent before stand-ins) it gets a brick and the replica count rises
//!   by one (`add-brick replica r+1`); otherwise it is a spare (mounted, brick kept empty).
/// What a node should do now about forming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not enough nodes yet.
    Wait {
        /// Nodes present, this one included.
        present: u32,
        /// Nodes expected.
        expected: u32,
    },
    /// This node initialises the pool, volume and swarm with these members (node ids, sorted, itself included).
    Initiate {
        /// Member node ids.
        members: Vec<String>,
    },
    /// Another node initialises; wait to be probed.
    Follow {
        /// The coordinator's node id.
        coordinator: String,
    },
    /// A cluster already exists (this node or a peer belongs to it): join it, never initialise.
    JoinExisting,
}

/// One node as the election sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub node_id: String,
    /// Whether it already belongs to a pool with other members, a volume or a swarm.
    pub belongs: bool,
    /// Whether it is ready to be a member (glusterd answers and its brick is ready).
    pub ready: bool,
}

/// Decides for node `me` given every present candidate (itself included). `majority_timeout` is true once
/// `agent.majority_wait_secs` have passed since discovery began.
pub fn decide(
    me: &str,
    candidates: &[Candidate],
    expected: u32,
    majority_timeout: bool,
) -> Decision {
    if candidates.iter().any(|c| c.belongs) {
        return Decision::JoinExisting;
    }
    let mut ready: Vec<&Candidate> = candidates.iter().filter(|c| c.ready).collect();
    ready.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    ready.dedup_by(|a, b| a.node_id == b.node_id);
    let present = ready.len() as u32;
    let enough = present >= expected || (majority_timeout && present * 2 > expected);
    if !enough || !ready.iter().any(|c| c.node_id == me) {
        return Decision::Wait { present, expected };
    }
    let coordinator = ready[0].node_id.clone();
    if coordinator == me {
        Decision::Initiate {
            members: ready.iter().map(|c| c.node_id.clone()).collect(),
        }
    } else {
        Decision::Follow { coordinator }
    }
}

/// The volume to create from the member nodes present (ordered by node id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    /// Replica count.
    pub replica: u32,
    /// How many of the members (the first ones) get a brick in the volume.
    pub bricks: usize,
    /// For each missing node's slot, after the members' bricks: the index (among the members) of the member whose
    /// stand-in brick holds it.
    pub stand_ins: Vec<usize>,
}

/// The largest volume in which every node holds every file.
pub const FULL_REPLICA_MAX: u32 = 4;

/// The layout for `present` nodes at formation of a cluster built for `expected` (see the module docs).
pub fn plan_volume(present: usize, expected: u32) -> VolumePlan {
    let n = present.min(expected as usize);
    if expected <= FULL_REPLICA_MAX {
        let missing = expected as usize - n;
        // Never on the first member (the first brick: client quorum's tie-breaker); from the last one backwards.
        let stand_ins = (0..missing)
            .map(|i| if n > 1 { n - 1 - i % (n - 1) } else { 0 })
            .collect();
        VolumePlan {
            replica: expected,
            bricks: n,
            stand_ins,
        }
    } else if n as u32 <= FULL_REPLICA_MAX {
        VolumePlan {
            replica: n as u32,
            bricks: n,
            stand_ins: Vec::new(),
        }
    } else {
        VolumePlan {
            replica: 3,
            bricks: n / 3 * 3,
            stand_ins: Vec::new(),
        }
    }
}

/// For a late node: the new replica count if it should get a brick in a volume with `replica` and `bricks`.
pub fn late_brick_replica(replica: u32, bricks: usize) -> Option<u32> {
    (bricks as u32 == replica && replica < FULL_REPLICA_MAX).then_some(replica + 1)
}

/// Desired number of Swarm managers for `nodes` nodes: 3 when there are 3 or more (survives one lost manager),
/// else 1 (2 managers would tolerate no loss and make a lost one block the other).
pub fn desired_managers(nodes: usize) -> usize {
    if nodes >= 3 {
        3
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, belongs: bool) -> Candidate {
        Candidate {
            node_id: id.into(),
            belongs,
            ready: true,
        }
    }

    #[test]
    fn waits_until_all_expected_are_present() {
        let cs = [c("b", false), c("a", false), c("c", false)];
        assert_eq!(
            decide("a", &cs, 4, false),
            Decision::Wait {
                present: 3,
                expected: 4
            }
        );
    }

    #[test]
    fn smallest_id_coordinates_and_everyone_agrees() {
        let cs = [c("d", false), c("b", false), c("a", false), c("c", false)];
        assert_eq!(
            decide("a", &cs, 4, false),
            Decision::Initiate {
                members: vec!["a".into(), "b".into(), "c".into(), "d".into()]
            }
        );
        for me in ["b", "c", "d"] {
            assert_eq!(
                decide(me, &cs, 4, false),
                Decision::Follow {
                    coordinator: "a".into()
                }
            );
        }
    }

    #[test]
    fn majority_after_timeout_only_strict() {
        let two = [c("a", false), c("b", false)];
        assert!(matches!(decide("a", &two, 4, true), Decision::Wait { .. }));
        let three = [c("a", false), c("b", false), c("c", false)];
        assert!(matches!(
            decide("a", &three, 4, true),
            Decision::Initiate { .. }
        ));
    }

    #[test]
    fn existing_cluster_wins_over_initialising() {
        let cs = [c("a", false), c("b", false), c("c", true), c("d", false)];
        for me in ["a", "b", "c", "d"] {
            assert_eq!(decide(me, &cs, 4, false), Decision::JoinExisting);
        }
    }

    #[test]
    fn unready_nodes_do_not_count() {
        let mut cs = vec![c("a", false), c("b", false), c("c", false), c("d", false)];
        cs[0].ready = false;
        assert!(matches!(decide("b", &cs, 4, false), Decision::Wait { .. }));
    }

    #[test]
    fn volume_layouts() {
        let layout = |replica, bricks, stand_ins: &[usize]| VolumePlan {
            replica,
            bricks,
            stand_ins: stand_ins.to_vec(),
        };
        assert_eq!(plan_volume(4, 4), layout(4, 4, &[]));
        assert_eq!(plan_volume(3, 3), layout(3, 3, &[]));
        assert_eq!(plan_volume(2, 2), layout(2, 2, &[]));
        // A majority of 4: the missing slot is a stand-in on the last member, never on the first.
        assert_eq!(plan_volume(3, 4), layout(4, 3, &[2]));
        assert_eq!(plan_volume(2, 3), layout(3, 2, &[1]));
        assert_eq!(plan_volume(2, 4), layout(4, 2, &[1, 1]));
        assert_eq!(
            plan_volume(3, 2),
            layout(2, 2, &[]),
            "extra nodes are spares"
        );
        // Bigger clusters: sets of 3, no stand-ins.
        assert_eq!(plan_volume(8, 8), layout(3, 6, &[]));
        assert_eq!(plan_volume(9, 9), layout(3, 9, &[]));
        assert_eq!(plan_volume(4, 6), layout(4, 4, &[]));
        assert_eq!(late_brick_replica(3, 3), Some(4));
        assert_eq!(late_brick_replica(4, 4), None);
        assert_eq!(late_brick_replica(3, 6), None);
        assert_eq!(desired_managers(4), 3);
        assert_eq!(desired_managers(2), 1);
    }
}
