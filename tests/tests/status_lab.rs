//! The status page in the lab (issue 5), 4 nodes with agents:
//! - after formation every node's `/api/status` shows 4 healthy nodes, 4 online bricks and a 4-node swarm, its
//!   `/metrics` says the same, and `firstboot-agent status` prints it;
//! - after a power cut of node4 every surviving node shows the cluster degraded and node4 down within 15 s;
//! - after node4 boots again every node shows the cluster healthy again, with the events in between;
//! - no response of any endpoint on any node holds the cluster key or a Swarm join token.
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.

mod status_util;

use cluster_tests::lab::{require_root, wait_until};
use firstboot_agent::api::model::Health;
use status_util::*;
use std::time::{Duration, Instant};

#[test]
fn status_shows_the_cluster_a_lost_node_and_its_return_with_no_secret() {
    if !require_root("status_lab") {
        return;
    }
    let lab = four_node_lab("st");
    let all = ["node1", "node2", "node3", "node4"];
    let start = Instant::now();
    wait_formed(&lab, &all, FORM_TIMEOUT);
    eprintln!("formed and seen by every node in {:?}", start.elapsed());

    // The detail on every node: capacity known, heal backlog read, one leader among 3 managers.
    for n in all {
        let s = status(&lab, n).unwrap();
        let v = s.volume_detail.as_ref().unwrap();
        assert_eq!(v.replica, 4, "{n}");
        assert!(v.usable_bytes.is_some_and(|b| b > 0), "{n}: {v:?}");
        assert!(
            v.bricks.iter().all(|b| b.size_bytes.is_some()),
            "{n}: {v:?}"
        );
        let w = s.swarm_detail.as_ref().unwrap();
        assert_eq!(w.managers.len(), 3, "{n}: {w:?}");
        assert!(w.leader.is_some(), "{n}: {w:?}");
        assert!(
            s.nodes.iter().all(|x| x.swarm_availability == "active"),
            "{n}: {:?}",
            s.nodes
        );
        assert_eq!(s.formation.step, s.formation.steps, "{n}");
    }
    wait_until(
        std::time::Duration::from_secs(30),
        "node1's heal backlog to be read",
        || {
            Ok(status(&lab, "node1")?
                .volume_detail
                .and_then(|v| v.heal_pending)
                .is_some())
        },
    )
    .unwrap();

    // Metrics say the same.
    let m = get(&lab, "node2", "/metrics").unwrap();
    assert_eq!(
        m.lines()
            .filter(|l| l.starts_with("picluster_node_up{") && l.ends_with(" 1"))
            .count(),
        4,
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("picluster_bricks_online{") && l.ends_with(" 4")),
        "{m}"
    );
    assert!(m.contains("picluster_health{state=\"healthy\"} 1"), "{m}");
    assert!(m.contains("picluster_formation_duration_seconds "), "{m}");

    // The terminal view, on this node and about another.
    let agent = lab.state_dir().join("firstboot-agent");
    let agent = agent.to_str().unwrap();
    let table = lab.exec_ok("node3", &[agent, "status"]).unwrap();
    assert!(table.contains("HEALTHY, 4 of 4 nodes present"), "{table}");
    assert!(table.contains("4 of 4 bricks online"), "{table}");
    let ip1 = lab.ip("node1").unwrap();
    let json = lab
        .exec_ok("node3", &[agent, "status", "--json", "--node", &ip1])
        .unwrap();
    let doc: firstboot_agent::api::model::ClusterStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(doc.this_node, agent_name(&lab, "node1", "node1").unwrap());

    // No secret anywhere.
    let secrets = secrets(&lab);
    for n in all {
        for path in ["/", "/api/status", "/metrics", "/healthz"] {
            let body = get(&lab, n, path).unwrap();
            for (i, s) in secrets.iter().enumerate() {
                assert!(
                    !body.contains(s.as_str()),
                    "{n}{path} holds secret #{i} (0,1 key; 2,3 join tokens)"
                );
            }
            assert!(!body.contains("SWMTKN"), "{n}{path} holds a join token");
        }
    }

    // Power cut of node4: every survivor shows it down and the cluster degraded within 15 s.
    let lost = agent_name(&lab, "node1", "node4").unwrap();
    let survivors = ["node1", "node2", "node3"];
    lab.kill("node4").unwrap();
    let killed_at = Instant::now();
    wait_until(
        DOWN_WITHIN,
        "every survivor to show node4 down and the cluster degraded",
        || {
            for n in survivors {
                let s = status(&lab, n)?;
                let down = s.nodes.iter().any(|x| x.name == lost && !x.up);
                if s.health != Health::Degraded || !down {
                    anyhow::bail!("{n}: health {:?}, node4 down: {down}", s.health);
                }
            }
            Ok(true)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_logs(&lab, &survivors)));
    eprintln!(
        "node4 shown down and the cluster degraded on all survivors after {:?}",
        killed_at.elapsed()
    );
    // The event log and the present count are derived in the background (every 0.5 s): wait for them too.
    wait_until(
        Duration::from_secs(10),
        "node1 to count 3 present nodes and log a node-lost event",
        || {
            let s = status(&lab, "node1")?;
            let lost_logged = s.events.iter().any(|e| e.kind == "node-lost");
            if s.present_nodes != 3 || !lost_logged {
                anyhow::bail!("present {}, events {:?}", s.present_nodes, s.events);
            }
            Ok(true)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let table = lab.exec_ok("node2", &[agent, "status"]).unwrap();
    assert!(table.contains("DEGRADED, 3 of 4 nodes present"), "{table}");

    // It boots again: healthy again everywhere.
    lab.start("node4").unwrap();
    let started_at = Instant::now();
    wait_formed(&lab, &all, FORM_TIMEOUT);
    eprintln!(
        "healthy again on every node {:?} after node4 started",
        started_at.elapsed()
    );
    let s = status(&lab, "node1").unwrap();
    let events: Vec<&str> = s.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(events.contains(&"node-back"), "{:?}", s.events);
    lab.down().unwrap();
}
