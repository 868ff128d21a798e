//! Fault cases 1, 6 and 7 of issue 6 (the others are in fault_suite.rs): recovery without a manual step, proven
//! in 4-node labs with the agent, real glusterd and dockerd. Every case writes checksummed files continuously
//! through the shared mount on the nodes that stay up and proves at the end, on every node: 0 lost acknowledged
//! bytes, 0 split-brain entries, 0 files differing between bricks after heal. Each test prints a summary table.
//!
//! - `recovery_after_formation_faults`: 1a: node4 killed as the agents start, before any pool exists: node1..3
//!   form alone after `agent.majority_wait_secs` (a replica 4 volume whose fourth slot is a stand-in brick on one
//!   of them, a 3-manager swarm); node4 returns and takes the stand-in's slot (replace-brick): one pool of 4, one
//!   volume id, one swarm, 4 bricks on 4 hosts, the stand-in's directory removed.
//! - `daemons_crash_and_a_dead_manager_is_replaced` (one lab formed by all four, one case after another):
//!   - 7: glusterd and dockerd killed with -9 on node2: the agent starts them again (`agent.service_starter`, the
//!     lab's stand-in for systemd); then the agent itself killed with -9 on node3: the lab's supervisor (as
//!     systemd's `Restart=always` on a Pi) starts it again and the cluster stays healthy. Times recorded.
//!   - 6: a manager power-cut, dead for longer than `agent.replace_grace_secs` (20 s here), then a fresh card in
//!     its place (`ci/lab replace`: new identity, new address, same cluster key): its brick takes the dead one's
//!     place (replace-brick), the dead peer is detached, the dead Swarm node removed, 3 managers again, heal
//!     completes, `auth.allow` holds exactly the four current addresses.
//!   - 6b: a worker power-cut past the grace period, then its own card flashed again (`ci/lab replace --reflash`:
//!     the old brick filesystem, beyond the image, stays with its files and marks): the new node takes the dead
//!     one's slot with that stale brick of the same volume, and heal brings it up to date.
//! - `formation_with_a_node_killed_in_the_pool`: 1b: a node killed half-way through the coordinator's probe (its
//!   own lab, the agents started after a rule that holds the victim's handshake there; the victim is the node with
//!   the highest id, so never the coordinator): the rest form with a stand-in in its slot; the coordinator keeps
//!   it as `Probe Sent to Peer`, detaches it after `HANDSHAKE_STUCK_SECS` and probes it afresh when it returns; it
//!   takes the stand-in's slot; one pool, one volume id, one swarm. (The racy version, killed when its first peer
//!   file appeared, found that glusterd refuses bricks on such a half-probed peer for good (CI, 2026-12-02); earlier
//!   that an add-brick refused by the other nodes still marks the new brick: the agent clears such marks,
//!   firstboot-agent `gluster::brick`.)
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.
//! Run: `cargo test -p cluster-tests --test fault_recovery -- --nocapture` (three labs, one after another:
//! cases 7, 6 and 6b about 16 min, each case-1 lab 3-8 min).
//!
//! Case 1 first grew the volume from replica 3 to 4 (`add-brick`) when node4 came back. Under live writes that
//! lost files for the new brick: a client still on the old brick list creates and writes files with no pending
//! mark for a brick it does not know, so no heal fills them (263 files in the last such run). The agent now forms
//! the full replica count from the start with a stand-in brick in the missing node's slot, and a returning node
//! takes the slot with `replace-brick`, as a fresh card does in case 6.

use anyhow::Context;
use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use cluster_tests::summary::{render, CaseRow};
use cluster_tests::workload::{self, write_stall, Attempt, Workload};
use firstboot_agent::gluster::xml::{parse_pool_list, parse_volume_info, VolumeInfo};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VOL: &str = "shared";
const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];
/// The stand-in brick's directory (firstboot-agent `Config::stand_in_path` with the lab's brick mount).
const STAND_IN: &str = "/srv/gluster/brick1/stand-in";
/// `agent.replace_grace_secs` in these labs.
const GRACE_SECS: u64 = 20;
/// `agent.majority_wait_secs` in these labs.
const MAJORITY_WAIT_SECS: u64 = 30;
const FORM_TIMEOUT: Duration = Duration::from_secs(300);
/// Heal deadline. Case 6 heals the ~1,100 files written during a 3-minute outage onto an empty brick: 2-4 min on
/// this 2-core machine, and still progressing steadily (100-150 files a minute per self-heal daemon) but past 5 min
/// when it is loaded further (load 15-27: beside another lab or four emulated VMs).
const HEAL_TIMEOUT: Duration = Duration::from_secs(600);
const INTERVAL_MS: u64 = 500;
const FILE_SIZE: usize = 4096;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The options of every case's lab: four nodes, short majority wait and grace period.
fn lab_options() -> LabOptions {
    LabOptions::new(4)
        .agent_set("majority_wait_secs", MAJORITY_WAIT_SECS)
        .agent_set("replace_grace_secs", GRACE_SECS)
}

fn status(lab: &Lab, node: &str) -> anyhow::Result<Value> {
    let out = lab.exec_ok(
        node,
        &["curl", "-sf", "-m", "3", "http://127.0.0.1:7780/api/status"],
    )?;
    Ok(serde_json::from_str(&out)?)
}

/// Waits until every node of `nodes` says `steady` (and `healthy` when `healthy`).
fn wait_steady(lab: &Lab, nodes: &[&str], healthy: bool, timeout: Duration) -> anyhow::Result<()> {
    wait_until(timeout, &format!("{nodes:?} to be steady"), || {
        for n in nodes {
            let s = status(lab, n)?;
            if s["phase"] != "steady" || (healthy && s["health"] != "healthy") {
                anyhow::bail!("{n}: {} / {}: {}", s["phase"], s["health"], s["detail"]);
            }
        }
        Ok(true)
    })?;
    Ok(())
}

fn volume(lab: &Lab, node: &str) -> anyhow::Result<Option<VolumeInfo>> {
    let out = lab.exec(node, &["gluster", "--xml", "volume", "info", VOL])?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(parse_volume_info(&text)
        .ok()
        .and_then(|v| v.into_iter().find(|v| v.name == VOL)))
}

fn volume_ok(lab: &Lab, node: &str) -> anyhow::Result<VolumeInfo> {
    volume(lab, node)?.ok_or_else(|| anyhow::anyhow!("{node}: no volume {VOL}"))
}

fn brick_hosts(v: &VolumeInfo) -> Vec<String> {
    v.bricks.iter().map(|b| b.host.clone()).collect()
}

/// (uuid, hostname, connected) of every pool member as `node` sees it.
fn pool(lab: &Lab, node: &str) -> anyhow::Result<Vec<(String, String, bool)>> {
    let out = lab.exec_ok(node, &["gluster", "--xml", "pool", "list"])?;
    Ok(parse_pool_list(&out)
        .map_err(|e| anyhow::anyhow!("{node}: gluster pool list: {e:?}"))?
        .into_iter()
        .map(|p| (p.uuid, p.hostname, p.connected || p.is_self))
        .collect())
}

fn docker_info(lab: &Lab, node: &str, format: &str) -> anyhow::Result<String> {
    Ok(lab
        .exec_ok(node, &["docker", "info", "--format", format])?
        .trim()
        .to_string())
}

/// A node of `nodes` that is a Swarm manager.
fn manager_among(lab: &Lab, nodes: &[&str]) -> anyhow::Result<String> {
    nodes
        .iter()
        .find(|n| docker_info(lab, n, "{{.Swarm.ControlAvailable}}").is_ok_and(|s| s == "true"))
        .map(|n| n.to_string())
        .ok_or_else(|| anyhow::anyhow!("no manager among {nodes:?}"))
}

/// Swarm nodes as a manager lists them: (id, ready, manager, leader).
fn swarm_nodes(lab: &Lab, manager: &str) -> anyhow::Result<Vec<(String, bool, bool, bool)>> {
    let out = lab.exec_ok(
        manager,
        &[
            "docker",
            "node",
            "ls",
            "--format",
            "{{.ID}} {{.Status}} {{.ManagerStatus}}",
        ],
    )?;
    Ok(out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ms = f.get(2).copied().unwrap_or("");
            (
                f[0].to_string(),
                f.get(1) == Some(&"Ready"),
                !ms.is_empty(),
                ms == "Leader",
            )
        })
        .collect())
}

/// One pool of 4 connected members on every node, one volume id (replica 4, 4 bricks) on every node, one swarm
/// of 4 ready nodes (3 managers) holding every node. Returns the volume id.
fn assert_one_cluster(lab: &Lab) -> anyhow::Result<String> {
    let mut uuids: Option<BTreeSet<String>> = None;
    let mut vol_id: Option<String> = None;
    for n in NODES {
        let p = pool(lab, n)?;
        anyhow::ensure!(
            p.len() == 4 && p.iter().all(|m| m.2),
            "{n}: pool is not 4 connected members: {p:?}"
        );
        let set: BTreeSet<String> = p.iter().map(|m| m.0.clone()).collect();
        match &uuids {
            None => uuids = Some(set),
            Some(u) => anyhow::ensure!(*u == set, "{n} is in another pool: {set:?} vs {u:?}"),
        }
        let v = volume_ok(lab, n)?;
        let hosts: BTreeSet<String> = brick_hosts(&v).into_iter().collect();
        anyhow::ensure!(
            v.replica_count == 4 && v.bricks.len() == 4 && hosts.len() == 4,
            "{n}: volume is replica {} with bricks {:?} (wanted 4 on 4 hosts)",
            v.replica_count,
            brick_hosts(&v)
        );
        anyhow::ensure!(
            v.bricks.iter().all(|b| b.path != STAND_IN),
            "{n}: a stand-in brick is still in the volume: {:?}",
            v.bricks
        );
        match &vol_id {
            None => vol_id = Some(v.id.clone()),
            Some(id) => anyhow::ensure!(*id == v.id, "{n}: another volume id {} (not {id})", v.id),
        }
    }
    let m = manager_among(lab, &NODES)?;
    let nodes = swarm_nodes(lab, &m)?;
    anyhow::ensure!(
        nodes.len() == 4 && nodes.iter().all(|n| n.1),
        "swarm is not 4 ready nodes: {nodes:?}"
    );
    anyhow::ensure!(
        nodes.iter().filter(|n| n.2).count() == 3,
        "swarm has not 3 managers: {nodes:?}"
    );
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
    for n in NODES {
        let id = docker_info(lab, n, "{{.Swarm.NodeID}}")?;
        anyhow::ensure!(
            ids.contains(id.as_str()),
            "{n} ({id}) is not in the swarm of {m}"
        );
    }
    Ok(vol_id.unwrap_or_default())
}

fn wait_acks(lab: &Lab, wl: &Workload, after: f64, n: usize) -> anyhow::Result<()> {
    wait_until(
        Duration::from_secs(120),
        &format!("{n} acknowledged writes after {after:.0}"),
        || {
            Ok(wl
                .attempts(lab)?
                .iter()
                .filter(|a| a.ok && a.end > after)
                .count()
                >= n)
        },
    )?;
    Ok(())
}

/// Entries waiting for heal on every brick, from the bricks' own index counts
/// (`gluster volume heal VOL statistics heal-count`). `heal info` is not used here: its glfsheal client crawls and
/// locks every entry and, in the loaded lab, hung for minutes while self-heal ran.
/// Entries pending heal, summed over the bricks. `heal info` (as the fault suite reads it), not `statistics
/// heal-count`: the latter takes the volume's lock on every peer and failed with "Locking failed" for minutes
/// while the agents read the volume.
fn heal_count(lab: &Lab, node: &str) -> anyhow::Result<u64> {
    workload::heal_pending(lab, node, VOL)
}

fn wait_heal(lab: &Lab, node: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    wait_until(HEAL_TIMEOUT, "heal pending 0", || {
        Ok(heal_count(lab, node)? == 0)
    })?;
    Ok(t.elapsed().as_secs_f64())
}

/// Every acknowledged write verified on all four nodes, split-brain entries, brick differences into `row`.
fn check_data(lab: &Lab, acked: &[Attempt], row: &mut CaseRow) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let acked_count = acked.iter().filter(|a| a.ok).count();
    anyhow::ensure!(acked_count > 0, "no acknowledged writes at all");
    for n in NODES {
        let v = workload::verify(lab, n, acked)?;
        row.lost_bytes += v.lost_bytes;
        if !v.lost.is_empty() {
            problems.push(format!(
                "{n}: {} of {} acknowledged files lost, e.g. {:?}",
                v.lost.len(),
                v.checked,
                &v.lost[..v.lost.len().min(3)]
            ));
        }
    }
    row.split_brain = workload::split_brain(lab, "node1", VOL)?;
    if row.split_brain > 0 {
        problems.push(format!("{} split-brain entries", row.split_brain));
    }
    // heal-count reaching 0 does not end the full crawl that fills a new brick: give it time to converge.
    let mut diffs = Vec::new();
    let converged = wait_until(HEAL_TIMEOUT, "the bricks to hold the same files", || {
        diffs = workload::brick_differences(lab, &NODES)?;
        Ok(diffs.is_empty())
    });
    if converged.is_err() {
        diffs = workload::brick_differences(lab, &NODES)?;
    }
    row.brick_diffs = diffs.len();
    if !diffs.is_empty() {
        problems.push(format!("bricks differ: {:?}", &diffs[..diffs.len().min(5)]));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(problems.join("; "))
    }
}

fn finish(row: &mut CaseRow, r: anyhow::Result<()>, t: Instant, notes: &[String]) {
    let secs = t.elapsed().as_secs();
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" [{}]", notes.join("; "))
    };
    row.result = match r {
        Ok(()) => format!("PASS ({secs} s){notes}"),
        Err(e) => format!("FAIL ({secs} s){notes}: {e:#}"),
    };
    eprintln!("fault_recovery: case {}: {}", row.case, row.result);
}

/// Writers stop (idempotent), heal reaches 0, every acknowledged write checked on all nodes.
fn settle_and_check(lab: &Lab, wl: &Workload, row: &mut CaseRow) -> anyhow::Result<()> {
    wl.stop(lab)?;
    wait_heal(lab, "node1")?;
    check_data(lab, &wl.attempts(lab)?, row)
}

/// Case 1 after the killed node (`victim`) came back: the others formed without it (replica 4, its slot a stand-in
/// brick on another node); it returns, joins, and takes the stand-in's slot (replace-brick); the stand-in's
/// directory is removed.
fn victim_returns(
    lab: &Lab,
    victim: &str,
    wl: &Workload,
    row: &mut CaseRow,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let others = others(victim);
    let witness = others[0];
    let v = volume_ok(lab, witness)?;
    let stand_in = v.bricks.iter().find(|b| b.path == STAND_IN).cloned();
    notes.push(format!(
        "formed without {victim}: replica {} on {:?}",
        v.replica_count,
        brick_hosts(&v)
    ));
    anyhow::ensure!(
        v.replica_count == 4 && stand_in.is_some(),
        "formed without {victim}, but not as replica 4 with a stand-in brick: replica {}, bricks {:?}",
        v.replica_count,
        v.bricks
    );
    let stand_in_node = others
        .iter()
        .copied()
        .find(|n| {
            status(lab, n).is_ok_and(|s| {
                stand_in
                    .as_ref()
                    .is_some_and(|b| s["this_node"].as_str() == Some(b.host.as_str()))
            })
        })
        .ok_or_else(|| anyhow::anyhow!("no node is the stand-in's host {stand_in:?}"))?;
    // The page says why the cluster is degraded.
    let s = status(lab, witness)?;
    anyhow::ensure!(
        s["health"] == "degraded" && s["detail"].as_str().is_some_and(|d| d.contains("stand-in")),
        "{witness}'s status does not report the stand-in: health {}, detail {}",
        s["health"],
        s["detail"]
    );
    wait_acks(lab, wl, 0.0, 10)?;
    lab.start(victim)?;
    let back = Instant::now();
    // FORM_TIMEOUT and then some: when a brick operation failed half-way, the victim's agent clears the marks it
    // left only after 200 s (firstboot-agent `STALE_MARK_AFTER`, longer than any glusterd transaction).
    wait_until(
        FORM_TIMEOUT + Duration::from_secs(120),
        &format!("{victim}'s brick in the stand-in's slot"),
        || {
            let v = volume_ok(lab, witness)?;
            Ok(v.bricks.len() == 4 && v.bricks.iter().all(|b| b.path != STAND_IN))
        },
    )?;
    notes.push(format!(
        "{victim} has a brick {:.0} s after its start",
        back.elapsed().as_secs_f64()
    ));
    wait_steady(lab, &NODES, true, FORM_TIMEOUT)?;
    row.heal_s = Some(back.elapsed().as_secs_f64());
    settle_and_check(lab, wl, row)?;
    let id = assert_one_cluster(lab)?;
    wait_until(
        Duration::from_secs(120),
        "the vacated stand-in directory removed",
        || {
            Ok(lab
                .exec(stand_in_node, &["test", "-e", STAND_IN])?
                .status
                .code()
                == Some(1))
        },
    )?;
    notes.push(format!("{stand_in_node}'s stand-in directory removed"));
    notes.push(format!(
        "one pool, volume {}, one swarm",
        &id[..8.min(id.len())]
    ));
    Ok(())
}

/// The lab's nodes but `victim`.
fn others(victim: &str) -> Vec<&'static str> {
    NODES.iter().copied().filter(|n| *n != victim).collect()
}

/// Case 1, both variants: `kill_victim` kills `victim` at its moment (adding notes) and returns when it did; the
/// other three must form, take writes, and grow the volume when the victim returns.
fn case_1(
    lab: &Lab,
    rows: &mut Vec<CaseRow>,
    case: &str,
    tag: &str,
    victim: &str,
    kill_victim: impl FnOnce(&mut Vec<String>) -> anyhow::Result<Instant>,
) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: case.into(),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let others = others(victim);
    let wl = Workload {
        tag: tag.into(),
        nodes: others.iter().map(|n| n.to_string()).collect(),
    };
    let r = (|| -> anyhow::Result<()> {
        let killed = kill_victim(&mut notes)?;
        wait_steady(lab, &others, false, FORM_TIMEOUT)?;
        notes.push(format!(
            "3 formed {:.0} s after the kill",
            killed.elapsed().as_secs_f64()
        ));
        Workload::start(lab, &wl.tag, &others, INTERVAL_MS, FILE_SIZE)?;
        victim_returns(lab, victim, &wl, &mut row, &mut notes)
    })();
    let _ = wl.stop(lab);
    finish(&mut row, r, t, &notes);
    rows.push(row);
}

/// Case 1a: node4 killed before any pool exists.
fn case_1a(lab: &Lab, rows: &mut Vec<CaseRow>) {
    case_1(
        lab,
        rows,
        "1a node4 killed before the pool",
        "c1a",
        "node4",
        |_| {
            lab.kill("node4")?;
            let peers = lab.state_dir().join("node4/fs/glusterd/peers");
            let known = std::fs::read_dir(&peers).map(|d| d.count()).unwrap_or(0);
            anyhow::ensure!(
            known == 0,
            "node4 was already in a pool when it was killed ({known} peers): the case did not happen"
        );
            Ok(Instant::now())
        },
    );
}

/// Case 1b (its own lab, agents not started yet): a node killed half-way through the coordinator's probe. The
/// coordinator is the node with the lowest id, so the victim is the one with the highest. Before the agents start,
/// the victim's glusterd is kept from opening connections to other nodes' glusterd (port 24007), so the handshake
/// stops half-way: the coordinator's probe reaches it and it records the coordinator as a peer, its reply cannot
/// leave. It loses power at that moment (the rule goes with its network namespace). This is the window the racy
/// version of the case hit in CI on 2026-12-02 (the coordinator kept it as `Probe Sent to Peer`, glusterd refused
/// its brick and the stand-in stayed for ever).
fn case_1b(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let victim = match highest_id_node(lab) {
        Ok(v) => v,
        Err(e) => {
            rows.push(CaseRow {
                case: "1b killed mid-probe".into(),
                result: format!("FAIL: {e:#}"),
                ..Default::default()
            });
            return;
        }
    };
    let case = format!("1b {victim} killed mid-probe");
    case_1(lab, rows, &case, "c1b", victim, |notes| {
        lab.sh(
            victim,
            "iptables -A OUTPUT ! -o lo -p tcp --dport 24007 --syn -j DROP",
        )?;
        lab.start_agents()?;
        let peers = lab.state_dir().join(victim).join("fs/glusterd/peers");
        let deadline = Instant::now() + FORM_TIMEOUT;
        while std::fs::read_dir(&peers).map(|d| d.count()).unwrap_or(0) == 0 {
            anyhow::ensure!(Instant::now() < deadline, "{victim} was never probed");
            std::thread::sleep(Duration::from_millis(10));
        }
        lab.kill(victim)?;
        let killed = Instant::now();
        let witness = others(victim)[0];
        let pool = parse_pool_list(&lab.exec_ok(witness, &["gluster", "--xml", "pool", "list"])?)
            .map_err(|e| anyhow::anyhow!("{witness}: gluster pool list: {e:?}"))?;
        notes.push(format!(
            "{witness} at the kill: {}",
            pool.iter()
                .filter(|p| !p.is_self)
                .map(|p| format!("{} {}", p.hostname, p.state))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(killed)
    });
}

/// The node whose agent has the highest node id (never the coordinator), from `firstboot-agent identity` inside
/// each node.
fn highest_id_node(lab: &Lab) -> anyhow::Result<&'static str> {
    let agent = lab.state_dir().join("firstboot-agent");
    let agent = agent.to_str().context("agent path")?;
    let mut ids = Vec::new();
    for n in NODES {
        let out = lab.exec_ok(n, &[agent, "identity"])?;
        let id = out
            .split_whitespace()
            .next()
            .with_context(|| format!("{n}: no id in {out:?}"))?
            .to_string();
        ids.push((id, n));
    }
    ids.sort();
    Ok(ids.last().expect("four nodes").1)
}

/// Case 7: kill -9 of glusterd and dockerd on node2, then of the agent on node3.
fn case_7(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "7 kill -9 daemons, then agent".into(),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let wl = Workload {
        tag: "c7".into(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
    };
    let r = (|| -> anyhow::Result<()> {
        Workload::start(lab, &wl.tag, &NODES, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 20)?;
        let killed_at = now();
        // Inside the node's PID namespace `pidof` sees only the node's own daemons.
        lab.sh("node2", "kill -9 $(pidof glusterd) $(pidof dockerd)")?;
        let t0 = Instant::now();
        let (mut gluster_s, mut docker_s) = (None, None);
        wait_until(
            Duration::from_secs(120),
            "glusterd and dockerd back on node2",
            || {
                if gluster_s.is_none()
                    && lab
                        .exec("node2", &["gluster", "--xml", "pool", "list"])?
                        .status
                        .success()
                {
                    gluster_s = Some(t0.elapsed().as_secs_f64());
                }
                if docker_s.is_none()
                    && docker_info(lab, "node2", "{{.Swarm.LocalNodeState}}")
                        .is_ok_and(|s| s == "active")
                {
                    docker_s = Some(t0.elapsed().as_secs_f64());
                }
                Ok(gluster_s.is_some() && docker_s.is_some())
            },
        )?;
        notes.push(format!(
            "glusterd back in {:.1} s, dockerd in swarm in {:.1} s",
            gluster_s.unwrap_or_default(),
            docker_s.unwrap_or_default()
        ));
        wait_steady(lab, &NODES, true, FORM_TIMEOUT)?;
        notes.push(format!(
            "healthy {:.1} s after the kill",
            t0.elapsed().as_secs_f64()
        ));

        let before = lab.status()?["nodes"][2]["pids"]["agent"].as_u64();
        lab.sh("node3", "kill -9 $(pidof firstboot-agent)")?;
        let t1 = Instant::now();
        let mut answer_s = None;
        wait_until(
            Duration::from_secs(120),
            "node3's agent back and steady",
            || {
                let s = status(lab, "node3")?;
                answer_s.get_or_insert(t1.elapsed().as_secs_f64());
                Ok(s["phase"] == "steady")
            },
        )?;
        let after = lab.status()?["nodes"][2]["pids"]["agent"].as_u64();
        anyhow::ensure!(
            before.is_some() && after.is_some() && before != after,
            "node3's agent pid did not change ({before:?} -> {after:?})"
        );
        notes.push(format!(
            "agent answers {:.1} s after kill -9, steady in {:.1} s",
            answer_s.unwrap_or_default(),
            t1.elapsed().as_secs_f64()
        ));
        wait_steady(lab, &NODES, true, FORM_TIMEOUT)?;
        wait_acks(lab, &wl, now(), 10)?;
        let acks = wl.attempts(lab)?;
        row.stall_s = Some(write_stall(&acks, killed_at, now()));
        row.heal_s = Some(t0.elapsed().as_secs_f64());
        settle_and_check(lab, &wl, &mut row)
    })();
    let _ = wl.stop(lab);
    finish(&mut row, r, t, &notes);
    rows.push(row);
}

/// The host name `node`'s agent reports for itself.
fn this_node(lab: &Lab, node: &str) -> anyhow::Result<String> {
    Ok(status(lab, node)?["this_node"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Starts writers on `survivors` into `wl` (tag `tag`), cuts `victim`'s power once they write, and waits until the
/// grace period has passed with the survivors seeing 3 nodes present. Returns the time of the cut.
fn power_cut_past_grace(
    lab: &Lab,
    wl: &mut Workload,
    tag: &str,
    victim: &str,
    survivors: &[&str],
) -> anyhow::Result<f64> {
    *wl = Workload::start(lab, tag, survivors, INTERVAL_MS, FILE_SIZE)?;
    wait_acks(lab, wl, 0.0, 10)?;
    let cut_at = now();
    lab.kill(victim)?;
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(GRACE_SECS + 60),
        "the grace period to pass with the victim seen down",
        || {
            let s = status(lab, survivors[0])?;
            Ok(killed.elapsed() > Duration::from_secs(GRACE_SECS + 5) && s["present_nodes"] == 3)
        },
    )?;
    Ok(cut_at)
}

/// Waits until the new card in `victim` reports a host name other than `old_host`, and returns it.
fn wait_new_name(lab: &Lab, victim: &str, old_host: &str) -> anyhow::Result<String> {
    let mut new_host = String::new();
    wait_until(FORM_TIMEOUT, "the new card to report its name", || {
        new_host = this_node(lab, victim)?;
        Ok(!new_host.is_empty() && new_host != old_host)
    })?;
    Ok(new_host)
}

/// The end of a replacement case: every node steady and healthy, the writers' stall since `cut_at` recorded, the
/// writers stopped, heal done (its time counted from `card_in`), the data checked and one cluster.
fn after_replacement(
    lab: &Lab,
    wl: &Workload,
    row: &mut CaseRow,
    cut_at: f64,
    card_in: Instant,
) -> anyhow::Result<()> {
    wait_steady(lab, &NODES, true, FORM_TIMEOUT)?;
    let acks = wl.attempts(lab)?;
    row.stall_s = Some(write_stall(&acks, cut_at, now()));
    wl.stop(lab)?;
    wait_heal(lab, "node1")?;
    row.heal_s = Some(card_in.elapsed().as_secs_f64());
    check_data(lab, &wl.attempts(lab)?, row)?;
    assert_one_cluster(lab)?;
    Ok(())
}

/// Case 6: a manager dead for longer than the grace period, then a fresh card in its place.
fn case_6(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "6 dead manager replaced".into(),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let mut wl = Workload {
        tag: "c6".into(),
        nodes: Vec::new(),
    };
    let r = (|| -> anyhow::Result<()> {
        // The victim: a manager that is not the Swarm leader (the leader's removal works too, but its re-election
        // adds time without testing anything of ours).
        let m = manager_among(lab, &NODES)?;
        let leader_id = swarm_nodes(lab, &m)?
            .into_iter()
            .find(|n| n.3)
            .map(|n| n.0)
            .unwrap_or_default();
        let mut victim = None;
        for n in NODES {
            if docker_info(lab, n, "{{.Swarm.ControlAvailable}}")? == "true"
                && docker_info(lab, n, "{{.Swarm.NodeID}}")? != leader_id
            {
                victim = Some(n);
                break;
            }
        }
        let victim = victim.ok_or_else(|| anyhow::anyhow!("no non-leader manager"))?;
        let survivors: Vec<&str> = NODES.iter().copied().filter(|n| *n != victim).collect();
        let old_host = this_node(lab, victim)?;
        let old_addr = lab.ip(victim)?;
        let old_swarm_id = docker_info(lab, victim, "{{.Swarm.NodeID}}")?;
        notes.push(format!("victim {victim} ({old_host}, {old_addr})"));
        // Dead for longer than the grace period, with no fresh card: nothing is replaced or removed.
        let cut_at = power_cut_past_grace(lab, &mut wl, "c6", victim, &survivors)?;
        let v = volume_ok(lab, survivors[0])?;
        anyhow::ensure!(
            brick_hosts(&v).contains(&old_host),
            "the dead node's brick was moved with no fresh card present: {:?}",
            brick_hosts(&v)
        );
        lab.replace(victim)?;
        let replaced = Instant::now();
        let new_addr = lab.ip(victim)?;
        anyhow::ensure!(new_addr != old_addr, "the fresh card kept the old address");
        let new_host = wait_new_name(lab, victim, &old_host)?;
        wait_until(
            FORM_TIMEOUT,
            "the new brick in the dead one's place",
            || {
                let hosts = brick_hosts(&volume_ok(lab, survivors[0])?);
                Ok(hosts.contains(&new_host) && !hosts.contains(&old_host))
            },
        )?;
        notes.push(format!(
            "replace-brick {:.0} s after the new card",
            replaced.elapsed().as_secs_f64()
        ));
        wait_until(FORM_TIMEOUT, "the dead peer detached", || {
            Ok(pool(lab, survivors[0])?
                .iter()
                .all(|(_, h, _)| h != &old_host && h != &old_addr))
        })?;
        notes.push(format!(
            "detached {:.0} s after",
            replaced.elapsed().as_secs_f64()
        ));
        let m = manager_among(lab, &survivors)?;
        wait_until(
            FORM_TIMEOUT,
            "the dead Swarm node removed, 3 managers",
            || {
                let nodes = swarm_nodes(lab, &m)?;
                Ok(nodes.iter().all(|n| n.0 != old_swarm_id)
                    && nodes.len() == 4
                    && nodes.iter().all(|n| n.1)
                    && nodes.iter().filter(|n| n.2).count() == 3)
            },
        )?;
        notes.push(format!(
            "swarm node removed {:.0} s after",
            replaced.elapsed().as_secs_f64()
        ));
        // auth.allow: exactly the four current addresses.
        let mut want: BTreeSet<String> = BTreeSet::new();
        for n in NODES {
            want.insert(lab.ip(n)?);
        }
        wait_until(FORM_TIMEOUT, "auth.allow = the 4 current addresses", || {
            let v = volume_ok(lab, survivors[0])?;
            let have: BTreeSet<String> = v
                .options
                .get("auth.allow")
                .map(|a| a.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default();
            if have != want {
                anyhow::bail!("auth.allow is {have:?}, want {want:?}");
            }
            Ok(true)
        })?;
        notes.push(format!(
            "auth.allow {}",
            want.iter().cloned().collect::<Vec<_>>().join(",")
        ));
        after_replacement(lab, &wl, &mut row, cut_at, replaced)
    })();
    let _ = wl.stop(lab);
    finish(&mut row, r, t, &notes);
    rows.push(row);
}

/// Case 6b: a worker dead for longer than the grace period, then its own card flashed again and put back. The
/// image covers only the card's start, so the old brick filesystem stays, its brick directory holding files and
/// marked for the volume; the agent keeps that filesystem (it never formats an existing one). The new node must
/// still take the dead one's slot, and heal must make its brick equal to the others (the stale copy's files
/// brought up to date): checked by the data checks, 0 files differing between bricks.
fn case_6b(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "6b dead node's card reflashed".into(),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let mut wl = Workload {
        tag: "c6b".into(),
        nodes: Vec::new(),
    };
    let r = (|| -> anyhow::Result<()> {
        let mut victim = None;
        for n in NODES {
            if docker_info(lab, n, "{{.Swarm.ControlAvailable}}")? != "true" {
                victim = Some(n);
                break;
            }
        }
        let victim = victim.ok_or_else(|| anyhow::anyhow!("no worker"))?;
        let survivors: Vec<&str> = NODES.iter().copied().filter(|n| *n != victim).collect();
        let old_host = this_node(lab, victim)?;
        let old_files = lab.sh(victim, "ls /srv/gluster/brick1/brick | wc -l")?;
        let old_files: usize = old_files.trim().parse().unwrap_or(0);
        anyhow::ensure!(old_files > 0, "the victim's brick holds no files");
        notes.push(format!(
            "victim {victim} ({old_host}), {old_files} names on its brick"
        ));
        let cut_at = power_cut_past_grace(lab, &mut wl, "c6b", victim, &survivors)?;
        lab.reflash(victim)?;
        let reflashed = Instant::now();
        let new_host = wait_new_name(lab, victim, &old_host)?;
        wait_until(
            FORM_TIMEOUT + Duration::from_secs(200),
            "the reflashed node's brick in the dead one's place",
            || {
                let hosts = brick_hosts(&volume_ok(lab, survivors[0])?);
                Ok(hosts.contains(&new_host) && !hosts.contains(&old_host))
            },
        )?;
        notes.push(format!(
            "replace-brick {:.0} s after the reflash",
            reflashed.elapsed().as_secs_f64()
        ));
        // The old brick filesystem was kept (not formatted). Its brick directory is marked for this very volume,
        // and glusterd's replace-brick takes such a directory as it is (a stale copy, healed like a brick back
        // from an outage); one marked for another volume is set aside by the agent (formation_lab covers that).
        let aside = lab.sh(
            victim,
            "ls -d /srv/gluster/brick1/previous-brick-* 2>/dev/null | wc -l",
        )?;
        notes.push(if aside.trim() == "0" {
            "old brick of this volume taken back as it was".into()
        } else {
            format!("old brick set aside ({})", aside.trim())
        });
        after_replacement(lab, &wl, &mut row, cut_at, reflashed)
    })();
    let _ = wl.stop(lab);
    finish(&mut row, r, t, &notes);
    rows.push(row);
}

/// Keeps the lab's logs (agent, glusterd, ...) for a failed run: `ci/lab down` deletes the state directory.
fn keep_logs(lab: &Lab, rows: &[CaseRow]) {
    if rows.iter().all(|r| r.result.starts_with("PASS")) {
        return;
    }
    let to = std::env::temp_dir().join(format!("fault-recovery-{}", lab.id()));
    for n in NODES {
        let dest = to.join(n);
        let _ = std::fs::create_dir_all(&dest);
        let node = lab.state_dir().join(n);
        for (from, name) in [
            (node.join("log"), "log"),
            (node.join("fs/var-log.upper/glusterfs"), "glusterfs"),
        ] {
            let _ = std::process::Command::new("cp")
                .args(["-a", "--"])
                .arg(&from)
                .arg(dest.join(name))
                .status();
        }
    }
    eprintln!(
        "fault_recovery: logs of the failed run kept in {}",
        to.display()
    );
}

fn report(name: &str, t: Instant, rows: &[CaseRow]) {
    let table = render(rows);
    println!("\n{name} ({} s in all)\n{table}", t.elapsed().as_secs());
    let failed: Vec<&CaseRow> = rows
        .iter()
        .filter(|r| !r.result.starts_with("PASS"))
        .collect();
    assert!(failed.is_empty(), "failed cases:\n{table}");
}

/// One lab at a time: two 4-node labs at once on a 2-core machine slow heals past the cases' deadlines (case 6
/// missed its 300 s heal deadline beside case 1b's lab at load 27).
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One test's life: skipped unless root, a lab of its own (after the previous test's lab is gone), `cases` adding
/// their rows, the logs kept when a case failed, the lab removed, the table printed under `title` and every case
/// required to pass.
fn in_own_lab(
    test: &str,
    title: &str,
    opts: LabOptions,
    cases: impl FnOnce(&Lab, &mut Vec<CaseRow>),
) {
    if !require_root(test) {
        return;
    }
    // A test that failed while holding it poisons it; the next one still runs.
    let _slot = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let t = Instant::now();
    let lab = Lab::up(opts).expect("lab up");
    let mut rows = Vec::new();
    cases(&lab, &mut rows);
    keep_logs(&lab, &rows);
    lab.down().expect("lab down");
    report(title, t, &rows);
}

#[test]
fn daemons_crash_and_a_dead_manager_is_replaced() {
    in_own_lab(
        "daemons_crash_and_a_dead_manager_is_replaced",
        "fault recovery: cases 7, 6, 6b",
        lab_options(),
        |lab, rows| match wait_steady(lab, &NODES, true, FORM_TIMEOUT) {
            Err(e) => rows.push(CaseRow {
                case: "formation of 4".into(),
                result: format!("FAIL: {e:#}"),
                ..Default::default()
            }),
            Ok(()) => {
                case_7(lab, rows);
                case_6(lab, rows);
                case_6b(lab, rows);
            }
        },
    );
}

#[test]
fn recovery_after_formation_faults() {
    in_own_lab(
        "recovery_after_formation_faults",
        "fault recovery: case 1a",
        lab_options(),
        case_1a,
    );
}

#[test]
fn formation_with_a_node_killed_in_the_pool() {
    in_own_lab(
        "formation_with_a_node_killed_in_the_pool",
        "fault recovery: case 1b",
        lab_options().agents_later(),
        case_1b,
    );
}
