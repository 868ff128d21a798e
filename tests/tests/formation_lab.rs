//! Cluster formation in the lab, with real glusterd, dockerd and avahi on every node and the agent doing
//! everything (issue 4):
//! - 4 nodes from nothing form one pool of 4, one replica-4 volume with 4 bricks on 4 nodes all online, mounted on
//!   all 4 (and in fstab); a file written on node1 reads back byte-identical on node4; a 4-node swarm with 3
//!   managers and the mount label on every node;
//! - a restart of one node, then a power cut of all four, keep the same pool, volume id and swarm id, data intact;
//! - every card flashed again forms a new cluster, each old brick directory (kept with the card's brick
//!   filesystem) set aside whole with its files;
//! - a late fifth node with the same key joins the pool, the swarm as a worker and mounts the volume, while two
//!   nodes holding the same cluster id but another key, on the same bridge, form their own cluster and never mix.
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.
//! The agent binary: `FIRSTBOOT_AGENT_BIN`, else `ci/lab` builds it.

use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use firstboot_agent::config::ClusterConfig;
use serde_json::Value;
use std::time::Duration;

const FORM_TIMEOUT: Duration = Duration::from_secs(180);

fn status(lab: &Lab, node: &str) -> anyhow::Result<Value> {
    let out = lab.exec_ok(
        node,
        &["curl", "-sf", "-m", "3", "http://127.0.0.1:7780/api/status"],
    )?;
    Ok(serde_json::from_str(&out)?)
}

/// Waits until every listed node says `steady` and `healthy`.
fn wait_healthy(lab: &Lab, nodes: &[&str], timeout: Duration) {
    wait_until(timeout, &format!("{nodes:?} to be healthy"), || {
        for n in nodes {
            let s = status(lab, n)?;
            if s["phase"] != "steady" || s["health"] != "healthy" {
                anyhow::bail!("{n}: {} / {}: {}", s["phase"], s["health"], s["detail"]);
            }
        }
        Ok(true)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_logs(lab, nodes)));
}

fn agent_logs(lab: &Lab, nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| {
            // The lab's own agent logs to log/agent.log; agents this test starts log inside the node.
            let inside = lab
                .state_dir()
                .join(n)
                .join("fs/var-log.upper/firstboot-agent.log");
            let text = std::fs::read_to_string(lab.log_path(n, "agent"))
                .or_else(|_| std::fs::read_to_string(inside))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!(
                "--- {n} agent log (last lines)\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn volume_id(lab: &Lab, node: &str) -> String {
    let xml = lab
        .exec_ok(node, &["gluster", "--xml", "volume", "info", "shared"])
        .unwrap();
    between(&xml, "<id>", "</id>").to_string()
}

/// The swarm's cluster id as a manager names it. A manager shows none while the managers elect a leader (after
/// a restart, say): wait for one, with a deadline.
fn swarm_id(lab: &Lab, node: &str) -> String {
    let mut id = String::new();
    wait_until(
        Duration::from_secs(90),
        &format!("{node} to name its swarm's id"),
        || {
            id = lab
                .exec_ok(
                    node,
                    &["docker", "info", "--format", "{{.Swarm.Cluster.ID}}"],
                )?
                .trim()
                .to_string();
            Ok(!id.is_empty())
        },
    )
    .unwrap();
    id
}

fn pool_uuids(lab: &Lab, node: &str) -> Vec<String> {
    let xml = lab
        .exec_ok(node, &["gluster", "--xml", "pool", "list"])
        .unwrap();
    let mut v: Vec<String> = xml
        .split("<uuid>")
        .skip(1)
        .map(|s| s.split("</uuid>").next().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    let start = s.find(a).map(|i| i + a.len()).unwrap_or(0);
    let end = s[start..].find(b).map(|i| start + i).unwrap_or(s.len());
    &s[start..end]
}

fn sha256(lab: &Lab, node: &str, path: &str) -> String {
    lab.exec_ok(node, &["sha256sum", path])
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Waits until the swarm seen from `manager` has exactly `nodes` as ready members, 3 of them managers, every one
/// labelled mounted; panics with the node list and the agents' logs at the deadline.
fn wait_swarm(lab: &Lab, manager: &str, nodes: &[&str], timeout: Duration) {
    wait_until(
        timeout,
        &format!(
            "{} swarm nodes, 3 managers, all labelled mounted",
            nodes.len()
        ),
        || {
            let sw = swarm_nodes(lab, manager);
            Ok(sw.len() == nodes.len()
                && sw.iter().filter(|n| n.1 == "manager").count() == 3
                && sw.iter().all(|n| n.2 == "ready" && n.3 == "mounted"))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{:?}\n{}",
            swarm_nodes(lab, manager),
            agent_logs(lab, nodes)
        )
    });
}

/// A manager node's `docker node ls`: (hostname, role, state, label) per node.
fn swarm_nodes(lab: &Lab, manager: &str) -> Vec<(String, String, String, String)> {
    let out = lab
        .exec_ok(
            manager,
            &[
                "sh",
                "-c",
                "docker node inspect $(docker node ls -q) --format '{{.Description.Hostname}} {{.Spec.Role}} {{.Status.State}} {{index .Spec.Labels \"picluster.shared-volume\"}}'",
            ],
        )
        .unwrap();
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f.get(3).copied().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn manager_node(lab: &Lab, nodes: &[&str]) -> String {
    nodes
        .iter()
        .find(|n| status(lab, n).is_ok_and(|s| s["nodes"][0]["swarm_role"] == "manager"))
        .expect("some node is a manager")
        .to_string()
}

#[test]
fn four_nodes_form_one_cluster_and_survive_restarts() {
    if !require_root("four_nodes_form_one_cluster_and_survive_restarts") {
        return;
    }
    let lab = Lab::up(LabOptions::new(4)).expect("lab up");
    let nodes = ["node1", "node2", "node3", "node4"];
    wait_healthy(&lab, &nodes, FORM_TIMEOUT);

    // One pool of 4, every peer connected, seen the same from every node.
    let uuids = pool_uuids(&lab, "node1");
    assert_eq!(uuids.len(), 4, "pool of 4");
    for n in &nodes {
        assert_eq!(pool_uuids(&lab, n), uuids, "{n} sees the same pool");
        let xml = lab
            .exec_ok(n, &["gluster", "--xml", "pool", "list"])
            .unwrap();
        assert_eq!(
            xml.matches("<connected>1</connected>").count(),
            4,
            "{n}: {xml}"
        );
    }
    // One replica-4 volume, 4 bricks on 4 distinct hosts, all online.
    let info = lab
        .exec_ok("node1", &["gluster", "--xml", "volume", "info", "shared"])
        .unwrap();
    assert_eq!(between(&info, "<replicaCount>", "</replicaCount>"), "4");
    assert_eq!(between(&info, "<brickCount>", "</brickCount>"), "4");
    let hosts: std::collections::BTreeSet<&str> = info
        .split("<name>")
        .skip(1)
        .filter_map(|s| s.split("</name>").next())
        .filter(|s| s.contains(":/"))
        .map(|s| s.split(':').next().unwrap())
        .collect();
    assert_eq!(hosts.len(), 4, "bricks on 4 hosts: {hosts:?}");
    for (k, v) in [
        ("cluster.quorum-type", "auto"),
        ("cluster.server-quorum-type", "server"),
        ("network.ping-timeout", "5"),
        ("client.tcp-user-timeout", "3"),
    ] {
        let out = lab
            .exec_ok("node2", &["gluster", "volume", "get", "shared", k])
            .unwrap();
        assert!(
            out.lines()
                .any(|l| l.starts_with(k) && l.split_whitespace().nth(1) == Some(v)),
            "{k}: {out}"
        );
    }
    let vstatus = lab
        .gluster_ok("node3", &["--xml", "volume", "status", "shared"])
        .unwrap();
    assert_eq!(
        vstatus.matches("<status>1</status>").count()
            - vstatus.matches("<hostname>Self-heal Daemon").count(),
        4,
        "4 bricks online: {vstatus}"
    );
    // Mounted on all 4, and mounted again at boot.
    for n in &nodes {
        let fstype = lab
            .exec_ok(n, &["findmnt", "-n", "-o", "FSTYPE", "/mnt/shared"])
            .unwrap();
        assert_eq!(fstype.trim(), "fuse.glusterfs", "{n}");
        let fstab = lab.exec_ok(n, &["cat", "/etc/fstab"]).unwrap();
        assert!(
            fstab.lines().any(|l| l.contains(":/shared")
                && l.contains("/mnt/shared")
                && l.contains("backup-volfile-servers=")),
            "{n} fstab: {fstab}"
        );
    }
    // A file written on node1 reads back byte-identical on node4.
    lab.sh(
        "node1",
        "head -c 3000000 /dev/urandom > /mnt/shared/probe.bin && sync",
    )
    .unwrap();
    let digest = sha256(&lab, "node1", "/mnt/shared/probe.bin");
    assert_eq!(sha256(&lab, "node4", "/mnt/shared/probe.bin"), digest);
    // A 4-node swarm, 3 managers, every node labelled mounted.
    let manager = manager_node(&lab, &nodes);
    wait_swarm(&lab, &manager, &nodes, Duration::from_secs(30));

    let vol = volume_id(&lab, "node1");
    let swarm = swarm_id(&lab, &manager);
    assert!(!vol.is_empty() && !swarm.is_empty());

    // One node power-cut and back.
    lab.kill("node2").unwrap();
    wait_until(Duration::from_secs(20), "node1 to see node2 down", || {
        Ok(status(&lab, "node1")?["health"] == "degraded")
    })
    .unwrap();
    lab.start("node2").unwrap();
    wait_healthy(&lab, &nodes, FORM_TIMEOUT);
    assert_eq!(volume_id(&lab, "node2"), vol);
    assert_eq!(pool_uuids(&lab, "node2"), uuids);
    assert_eq!(sha256(&lab, "node2", "/mnt/shared/probe.bin"), digest);

    // Every node power-cut, then all back.
    for n in &nodes {
        lab.kill(n).unwrap();
    }
    for n in &nodes {
        lab.start(n).unwrap();
    }
    wait_healthy(&lab, &nodes, FORM_TIMEOUT);
    for n in &nodes {
        assert_eq!(volume_id(&lab, n), vol, "{n}: same volume");
        assert_eq!(pool_uuids(&lab, n), uuids, "{n}: same pool");
    }
    let manager = manager_node(&lab, &nodes);
    assert_eq!(swarm_id(&lab, &manager), swarm, "same swarm");
    assert_eq!(swarm_nodes(&lab, &manager).len(), 4);
    assert_eq!(sha256(&lab, "node3", "/mnt/shared/probe.bin"), digest);

    // Every card flashed again (to start over): the image covers only each card's start, so every old brick
    // filesystem stays, its brick directory marked for the old volume and holding its files, and the agents keep
    // those filesystems. No node knows a volume any more: each agent sets its old brick directory aside whole once
    // that has lasted 200 s (STALE_MARK_AFTER), and a new cluster forms with a new volume.
    for n in &nodes {
        lab.kill(n).unwrap();
    }
    for n in &nodes {
        lab.reflash(n).unwrap();
    }
    wait_healthy(&lab, &nodes, FORM_TIMEOUT + Duration::from_secs(200));
    let new_vol = volume_id(&lab, "node1");
    assert!(
        !new_vol.is_empty() && new_vol != vol,
        "a new volume: {new_vol}"
    );
    for n in &nodes {
        let aside = lab
            .sh(
                n,
                "sha256sum /srv/gluster/brick1/previous-brick-*/probe.bin",
            )
            .unwrap();
        assert!(
            aside.starts_with(&digest),
            "{n}: the old brick set aside with its files: {aside}"
        );
    }
    lab.sh("node2", "echo afresh > /mnt/shared/afresh.txt && sync")
        .unwrap();
    assert_eq!(
        lab.exec_ok("node4", &["cat", "/mnt/shared/afresh.txt"])
            .unwrap()
            .trim(),
        "afresh"
    );
    lab.down().unwrap();
}

/// The agent binary: `FIRSTBOOT_AGENT_BIN`, else the workspace's debug build (built by `cargo build -p
/// firstboot-agent`; `ci/test` does that before the lab tests).
fn agent_bin() -> String {
    if let Ok(bin) = std::env::var("FIRSTBOOT_AGENT_BIN") {
        return bin;
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| cluster_tests::lab::repo_root().join("target"));
    let bin = target.join("debug/firstboot-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p firstboot-agent` or set FIRSTBOOT_AGENT_BIN",
        bin.display()
    );
    bin.display().to_string()
}

/// Installs `config` on `node` and starts the agent there in the background, as the image's first run would.
fn start_agent(lab: &Lab, node: &str, config: &ClusterConfig) {
    let dev = std::fs::read_to_string(lab.state_dir().join(node).join("card.dev")).unwrap();
    let agent = agent_bin();
    // Lab nodes share the host's /usr: the agent must not divert the host's gsyncd.
    let mut config = config.clone();
    config.agent.gsyncd_version_shortcut = false;
    let script = format!(
        "mkdir -p /etc/firstboot-agent && cat > /etc/firstboot-agent/cluster.toml <<'EOF'\n{}EOF\n\
         chmod 600 /etc/firstboot-agent/cluster.toml\n\
         RUST_LOG=info setsid {agent} run --device {} </dev/null >>/var/log/firstboot-agent.log 2>&1 &",
        config.to_toml(),
        dev.trim()
    );
    lab.sh(node, &script).unwrap();
}

#[test]
fn late_fifth_node_joins_and_a_foreign_key_stays_apart() {
    if !require_root("late_fifth_node_joins_and_a_foreign_key_stays_apart") {
        return;
    }
    // 7 nodes without the lab's agent: this test starts agents itself, with configs of its own.
    let lab = Lab::up(LabOptions::new(7).no_agent()).expect("lab up");
    let a = ClusterConfig::generate("alpha", 4);
    // Same cluster id, another key: only the key keeps them apart.
    let mut b = ClusterConfig::generate("beta", 2);
    b.cluster.id = a.cluster.id.clone();
    for n in ["node1", "node2", "node3", "node4"] {
        start_agent(&lab, n, &a);
    }
    for n in ["node6", "node7"] {
        start_agent(&lab, n, &b);
    }
    let alpha = ["node1", "node2", "node3", "node4"];
    wait_healthy(&lab, &alpha, FORM_TIMEOUT);
    wait_healthy(&lab, &["node6", "node7"], FORM_TIMEOUT);
    let alpha_pool = pool_uuids(&lab, "node1");
    let beta_pool = pool_uuids(&lab, "node6");
    assert_eq!(alpha_pool.len(), 4);
    assert_eq!(beta_pool.len(), 2);
    assert!(
        alpha_pool.iter().all(|u| !beta_pool.contains(u)),
        "pools never mix"
    );
    let vol = volume_id(&lab, "node1");
    assert_ne!(vol, volume_id(&lab, "node6"));
    let manager = manager_node(&lab, &alpha);
    let swarm = swarm_id(&lab, &manager);

    // The late fifth node of alpha.
    start_agent(&lab, "node5", &a);
    let all = ["node1", "node2", "node3", "node4", "node5"];
    wait_until(FORM_TIMEOUT, "node5 to be steady", || {
        Ok(status(&lab, "node5")?["phase"] == "steady")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_logs(&lab, &["node5"])));
    assert_eq!(pool_uuids(&lab, "node5").len(), 5);
    assert_eq!(volume_id(&lab, "node5"), vol, "same volume");
    let fstype = lab
        .exec_ok("node5", &["findmnt", "-n", "-o", "FSTYPE", "/mnt/shared"])
        .unwrap();
    assert_eq!(fstype.trim(), "fuse.glusterfs");
    lab.sh("node1", "echo hello-from-node1 > /mnt/shared/late.txt")
        .unwrap();
    assert_eq!(
        lab.exec_ok("node5", &["cat", "/mnt/shared/late.txt"])
            .unwrap(),
        "hello-from-node1\n"
    );
    let manager = manager_node(&lab, &all);
    assert_eq!(swarm_id(&lab, &manager), swarm);
    // The Swarm leader labels node5 and keeps 3 managers (it promotes one at a time).
    wait_swarm(&lab, &manager, &all, Duration::from_secs(60));
    let sw = swarm_nodes(&lab, &manager);
    assert!(
        sw.iter().any(|n| n.0 == "node5" && n.1 == "worker"),
        "{sw:?}"
    );
    // Beta never saw alpha and vice versa.
    assert_eq!(pool_uuids(&lab, "node6"), beta_pool);
    let beta_status = status(&lab, "node6").unwrap();
    assert_eq!(
        beta_status["nodes"].as_array().unwrap().len(),
        2,
        "{beta_status}"
    );
    let alpha_status = status(&lab, "node1").unwrap();
    assert_eq!(
        alpha_status["nodes"].as_array().unwrap().len(),
        5,
        "{alpha_status}"
    );
    lab.down().unwrap();
}
