//! The fault suite (issue 6): one 4-node lab with the agent, faults applied one after another, each case writing
//! checksummed files continuously through the shared mount and proving, on every node: 0 lost acknowledged bytes,
//! 0 split-brain entries, 0 files differing between bricks after heal. A summary table is printed at the end.
//!
//! Cases (numbers of issue 6): 0 load without a fault (writers on every node beside CPU hogs: no client or brick
//! log may report a brick that stopped answering, i.e. `network.ping-timeout` 5 s and `client.tcp-user-timeout` 3 s cause no false disconnect);
//! 2 power cut of one node after formation (writes on the survivors continue, the Swarm keeps its replicas, the
//! status says degraded, the survivors stay steady); 3 the node returns (heal pending reaches 0, the page says
//! healthy); 5 network partitions made with `ci/lab partition`, 1|3 and 2|2, with writers on every node; 4 every
//! node power-cut and started (the cluster returns on its own, same volume id, same swarm id); 8 (not in issue 6)
//! a brick process killed while its glusterd stays up (glusterd never restarts it: the agent must).
//!
//! What case 5 asserts is what the volume's quorum settings define (firstboot-agent `plan::VOLUME_OPTIONS` and
//! `plan::GLOBAL_OPTIONS`): client quorum `auto` on replica 4 lets a side write when it reaches more than half of
//! the bricks, or exactly half including the first brick; server quorum with ratio 50 stops the bricks of a node
//! that sees fewer than half of the pool. So in 1|3 the three write and the lone node refuses every write; in 2|2
//! the half holding the first brick writes and the other half refuses every write. Never both sides: 0 split-brain,
//! and after `ci/lab join` everything heals with 0 lost acknowledged bytes and identical bricks.
//! (Cases 1, 6 and 7 live in their own test file.)
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.
//! Run: `cargo test -p cluster-tests --test fault_suite -- --nocapture` (prints the summary table).

use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use cluster_tests::summary::{render, CaseRow};
use cluster_tests::workload::{self, write_stall, Attempt, Workload};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VOL: &str = "shared";
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
const HEAL_TIMEOUT: Duration = Duration::from_secs(360);
const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];
/// Writer period and file size for the suite's workload.
const INTERVAL_MS: u64 = 1000;
const FILE_SIZE: usize = 4096;
const SERVICE: &str = "fault-sleep";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn status(lab: &Lab, node: &str) -> anyhow::Result<Value> {
    let out = lab.exec_ok(
        node,
        &["curl", "-sf", "-m", "3", "http://127.0.0.1:7780/api/status"],
    )?;
    Ok(serde_json::from_str(&out)?)
}

fn wait_healthy(lab: &Lab, nodes: &[&str], timeout: Duration) -> anyhow::Result<()> {
    wait_until(timeout, &format!("{nodes:?} to be healthy"), || {
        for n in nodes {
            let s = status(lab, n)?;
            if s["phase"] != "steady" || s["health"] != "healthy" {
                anyhow::bail!("{n}: {} / {}: {}", s["phase"], s["health"], s["detail"]);
            }
        }
        Ok(true)
    })?;
    Ok(())
}

fn volume_id(lab: &Lab, node: &str) -> anyhow::Result<String> {
    let xml = lab.exec_ok(node, &["gluster", "--xml", "volume", "info", VOL])?;
    let s = xml.split("<id>").nth(1).unwrap_or("");
    Ok(s.split("</id>").next().unwrap_or("").to_string())
}

fn swarm_id(lab: &Lab, node: &str) -> anyhow::Result<String> {
    Ok(lab
        .exec_ok(
            node,
            &["docker", "info", "--format", "{{.Swarm.Cluster.ID}}"],
        )?
        .trim()
        .to_string())
}

fn is_manager(lab: &Lab, node: &str) -> bool {
    lab.exec_ok(
        node,
        &["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"],
    )
    .is_ok_and(|s| s.trim() == "true")
}

fn manager_among(lab: &Lab, nodes: &[&str]) -> anyhow::Result<String> {
    nodes
        .iter()
        .find(|n| is_manager(lab, n))
        .map(|n| n.to_string())
        .ok_or_else(|| anyhow::anyhow!("no manager among {nodes:?}"))
}

/// Running tasks of the test service, as node host names.
fn running_tasks(lab: &Lab, manager: &str) -> anyhow::Result<Vec<String>> {
    let out = lab.exec_ok(
        manager,
        &[
            "docker",
            "service",
            "ps",
            SERVICE,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ],
    )?;
    Ok(out
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Running"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect())
}

/// A tiny local image with no registry: `/usr/bin/sleep` and the libraries it needs, imported on every node.
fn make_service(lab: &Lab) -> anyhow::Result<()> {
    for n in NODES {
        lab.sh(
            n,
            "set -e; r=/var/log/fault-rootfs; rm -rf $r; mkdir -p $r/usr/bin; cp /usr/bin/sleep $r/usr/bin/; \
             for l in $(ldd /usr/bin/sleep | grep -o '/[^ ]*'); do mkdir -p $r$(dirname $l); cp -L $l $r$l; done; \
             tar -C $r -c . | docker import - fault/sleep:1 >/dev/null; rm -rf $r",
        )?;
    }
    let m = manager_among(lab, &NODES)?;
    lab.exec_ok(
        &m,
        &[
            "docker",
            "service",
            "create",
            "--detach",
            "--name",
            SERVICE,
            "--replicas",
            "3",
            "fault/sleep:1",
            "/usr/bin/sleep",
            "100000000",
        ],
    )?;
    wait_until(Duration::from_secs(90), "3 running replicas", || {
        Ok(running_tasks(lab, &m)?.len() == 3)
    })?;
    Ok(())
}

/// Waits until the writers acknowledged `n` writes that ended after `after`.
fn wait_acks(
    lab: &Lab,
    wl: &Workload,
    after: f64,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until(
        timeout,
        &format!("{n} acknowledged writes after the fault"),
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

/// Waits until heal pending is 0 on `node`; returns how long it took.
fn wait_heal(lab: &Lab, node: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    wait_until(HEAL_TIMEOUT, "heal pending 0", || {
        Ok(workload::heal_pending(lab, node, VOL)? == 0)
    })?;
    Ok(t.elapsed().as_secs_f64())
}

/// Verifies every acknowledged write on every node in `on`, then split-brain and bricks (after heal) into `row`.
fn check_data(lab: &Lab, acked: &[Attempt], on: &[&str], row: &mut CaseRow) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    // Every node reads at the same time (each read goes through its own FUSE client).
    let results: Vec<anyhow::Result<workload::Verification>> = std::thread::scope(|s| {
        let handles: Vec<_> = on
            .iter()
            .map(|n| s.spawn(move || workload::verify(lab, n, acked)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("verify thread"))
            .collect()
    });
    for (n, v) in on.iter().zip(results) {
        let v = v?;
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
    row.split_brain = workload::split_brain(lab, on[0], VOL)?;
    if on.len() == NODES.len() {
        let diffs = workload::brick_differences(lab, &NODES)?;
        row.brick_diffs = diffs.len();
        if !diffs.is_empty() {
            problems.push(format!("bricks differ: {:?}", &diffs[..diffs.len().min(5)]));
        }
    }
    if row.split_brain > 0 {
        problems.push(format!("{} split-brain entries", row.split_brain));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(problems.join("; "))
    }
}

fn finish(row: &mut CaseRow, r: anyhow::Result<()>, t: Instant) {
    let secs = t.elapsed().as_secs();
    row.result = match r {
        Ok(()) => format!("PASS ({secs} s)"),
        Err(e) => format!("FAIL ({secs} s): {e:#}"),
    };
    eprintln!("fault_suite: case {}: {}", row.case, row.result);
}

/// Stops the writers of workload `tag` on every node.
fn stop_writers(lab: &Lab, tag: &str) -> anyhow::Result<()> {
    Workload {
        tag: tag.into(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
    }
    .stop(lab)
}

/// Phase transitions of `node`'s agent after `since` (Unix seconds) that left `steady`, as `phase: detail`.
fn left_steady_since(lab: &Lab, node: &str, since: f64) -> anyhow::Result<Vec<String>> {
    let s = status(lab, node)?;
    Ok(s["phases"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|r| r["at_ms"].as_f64().unwrap_or(0.0) / 1000.0 > since && r["phase"] != "steady")
        .map(|r| format!("{}: {}", r["phase"], r["detail"]))
        .collect())
}

/// Cases 2 and 3: node4 power-cut while node1..3 write, then it returns and heals.
fn cases_2_and_3(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut c2 = CaseRow {
        case: "2 power-cut node4".into(),
        ..Default::default()
    };
    let mut c3 = CaseRow {
        case: "3 node4 returns, heals".into(),
        ..Default::default()
    };
    let survivors = ["node1", "node2", "node3"];
    let wl = Workload {
        tag: "c2".into(),
        nodes: survivors.iter().map(|s| s.to_string()).collect(),
    };
    let r2 = (|| -> anyhow::Result<()> {
        Workload::start(lab, &wl.tag, &survivors, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 10, Duration::from_secs(60))?;
        let cut_at = now();
        lab.kill("node4")?;
        for n in survivors {
            wait_until(
                Duration::from_secs(20),
                &format!("{n} to say degraded"),
                || Ok(status(lab, n)?["health"] == "degraded"),
            )?;
        }
        let m = manager_among(lab, &survivors)?;
        wait_until(
            Duration::from_secs(90),
            "3 replicas running on the survivors",
            || {
                let tasks = running_tasks(lab, &m)?;
                Ok(tasks.len() == 3 && tasks.iter().all(|n| n != "node4"))
            },
        )?;
        wait_acks(lab, &wl, cut_at + 10.0, 10, Duration::from_secs(60))?;
        let acks = wl.attempts(lab)?;
        c2.stall_s = Some(write_stall(&acks, cut_at, now()));
        // A survivor keeps its working mount: it never left `steady` after the cut.
        for n in survivors {
            let left = left_steady_since(lab, n, cut_at)?;
            anyhow::ensure!(left.is_empty(), "{n} left steady after the cut: {left:?}");
        }
        check_data(lab, &acks, &survivors, &mut c2)
    })();
    if r2.is_err() {
        let _ = wl.stop(lab);
    }
    finish(&mut c2, r2, t);
    let t = Instant::now();
    let r3 = (|| -> anyhow::Result<()> {
        lab.start("node4")?;
        let back = Instant::now();
        wait_heal(lab, "node1")?;
        c3.heal_s = Some(back.elapsed().as_secs_f64());
        wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
        wl.stop(lab)?;
        wait_heal(lab, "node1")?;
        let acks = wl.attempts(lab)?;
        check_data(lab, &acks, &NODES, &mut c3)
    })();
    finish(&mut c3, r3, t);
    rows.push(c2);
    rows.push(c3);
}

/// The lab node whose agent calls itself `host` (brick host names are the agents' host names).
fn lab_node_of(lab: &Lab, host: &str) -> anyhow::Result<String> {
    for n in NODES {
        if status(lab, n)?["this_node"] == host {
            return Ok(n.to_string());
        }
    }
    anyhow::bail!("no lab node calls itself {host}")
}

/// The two halves of a 2|2 partition: the node holding the volume's first brick with the next node, and the rest.
fn halves_2_2(lab: &Lab) -> anyhow::Result<[Vec<&'static str>; 2]> {
    let mut first = String::new();
    wait_until(Duration::from_secs(60), "the volume's first brick", || {
        let xml = lab.exec_ok("node1", &["gluster", "--xml", "volume", "info", VOL])?;
        // <bricks><brick uuid="..">HOST:/PATH<name>HOST:/PATH</name>...
        first = xml
            .split_once("<bricks>")
            .and_then(|(_, b)| b.split_once("<name>"))
            .and_then(|(_, b)| b.split(':').next())
            .ok_or_else(|| anyhow::anyhow!("no brick in volume info: {xml}"))?
            .to_string();
        Ok(true)
    })?;
    let first = lab_node_of(lab, &first)?;
    let i = NODES.iter().position(|n| *n == first).unwrap_or(0);
    let mate = NODES[(i + 1) % NODES.len()];
    let a: Vec<&str> = NODES
        .iter()
        .copied()
        .filter(|n| *n == first || *n == mate)
        .collect();
    let b: Vec<&str> = NODES.iter().copied().filter(|n| !a.contains(n)).collect();
    Ok([a, b])
}

fn written_by(a: &Attempt, nodes: &[&str]) -> bool {
    nodes.iter().any(|n| a.name.contains(&format!("-{n}-")))
}

/// Case 5: the network split into `groups` (the first group is the side that keeps quorum) while every node
/// writes; then joined again.
fn case_5(lab: &Lab, rows: &mut Vec<CaseRow>, name: &str, groups: &[&[&str]]) {
    let t = Instant::now();
    let (quorum, refused) = (groups[0], groups[1]);
    let mut row = CaseRow {
        case: format!("5 partition {name} ({} refused)", refused.join(",")),
        ..Default::default()
    };
    let tag = format!("c5{}", name.replace('|', "x"));
    let r = (|| -> anyhow::Result<()> {
        let wl = Workload::start(lab, &tag, &NODES, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 20, Duration::from_secs(60))?;
        let cut_at = now();
        lab.partition(groups)?;
        // The rules are in force once `ci/lab partition` returns: a write that started before may still have
        // reached every brick. The stall is counted from `cut_at`, the refusals from `split_at`.
        let split_at = now();
        // The side with quorum keeps writing (after at most one ping-timeout).
        wait_until(
            Duration::from_secs(90),
            &format!("10 acknowledged writes on {quorum:?} after the split"),
            || {
                Ok(wl
                    .attempts(lab)?
                    .iter()
                    .filter(|a| a.ok && a.end > cut_at + 10.0 && written_by(a, quorum))
                    .count()
                    >= 10)
            },
        )?;
        // The other side: every write refused, at least 3 on each of its nodes.
        wait_until(
            Duration::from_secs(90),
            &format!("3 refused writes on each of {refused:?}"),
            || {
                let acks = wl.attempts(lab)?;
                Ok(refused.iter().all(|n| {
                    acks.iter()
                        .filter(|a| !a.ok && a.start > split_at && written_by(a, &[n]))
                        .count()
                        >= 3
                }))
            },
        )?;
        let acks = wl.attempts(lab)?;
        let wrongly: Vec<&Attempt> = acks
            .iter()
            .filter(|a| a.ok && a.start > split_at && written_by(a, refused))
            .collect();
        anyhow::ensure!(
            wrongly.is_empty(),
            "{refused:?} acknowledged {} writes without quorum, e.g. {:?}",
            wrongly.len(),
            wrongly.first()
        );
        let quorum_acks: Vec<Attempt> = acks
            .iter()
            .filter(|a| written_by(a, quorum))
            .cloned()
            .collect();
        row.stall_s = Some(write_stall(&quorum_acks, cut_at, now()));
        lab.join()?;
        let back = Instant::now();
        // Writes resume on the side that was refused.
        let joined_at = now();
        wait_until(
            Duration::from_secs(120),
            &format!("writes acknowledged again on {refused:?} after the join"),
            || {
                let acks = wl.attempts(lab)?;
                Ok(refused.iter().all(|n| {
                    acks.iter()
                        .any(|a| a.ok && a.start > joined_at && written_by(a, &[n]))
                }))
            },
        )?;
        wait_heal(lab, "node1")?;
        row.heal_s = Some(back.elapsed().as_secs_f64());
        wl.stop(lab)?;
        wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
        wait_heal(lab, "node1")?;
        check_data(lab, &wl.attempts(lab)?, &NODES, &mut row)
    })();
    // A failed step may leave the network split or writers running: undo both (idempotent).
    let _ = lab.join();
    let _ = stop_writers(lab, &tag);
    finish(&mut row, r, t);
    rows.push(row);
}

/// Lines in every gluster log of `node` saying a brick or client stopped answering (the ping timer fired) or a
/// connection was lost.
fn disconnect_lines(lab: &Lab, node: &str) -> anyhow::Result<u64> {
    let out = lab.sh(
        node,
        "cat /var/log/glusterfs/*.log /var/log/glusterfs/bricks/*.log 2>/dev/null | \
         grep -c -e 'has not responded in the last' -e 'disconnected from' || true",
    )?;
    Ok(out.trim().parse().unwrap_or(0))
}

/// Case 0: writers on every node while every node also runs two CPU hogs (busy loops, four times the cores of
/// this machine in all) for 60 s: no log may report a ping timeout or a lost connection.
fn case_0(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "0 CPU load, no fault".into(),
        ..Default::default()
    };
    let r = (|| -> anyhow::Result<()> {
        let before: Vec<u64> = NODES
            .iter()
            .map(|n| disconnect_lines(lab, n))
            .collect::<anyhow::Result<_>>()?;
        for n in NODES {
            lab.sh(
                n,
                "for i in 1 2; do setsid timeout 70 sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & done",
            )?;
        }
        let wl = Workload::start(lab, "c0", &NODES, INTERVAL_MS, FILE_SIZE)?;
        let from = now();
        wait_until(
            Duration::from_secs(120),
            "60 s of writes under load",
            || Ok(wl.attempts(lab)?.iter().any(|a| a.end > from + 60.0)),
        )?;
        wl.stop(lab)?;
        let acks = wl.attempts(lab)?;
        row.stall_s = Some(write_stall(&acks, from, from + 60.0));
        let mut new = Vec::new();
        for (n, b) in NODES.iter().zip(before) {
            let d = disconnect_lines(lab, n)? - b;
            if d > 0 {
                new.push(format!("{n}: {d}"));
            }
        }
        anyhow::ensure!(
            new.is_empty(),
            "disconnects logged under load without a fault: {new:?}"
        );
        let failed = acks.iter().filter(|a| !a.ok).count();
        anyhow::ensure!(failed == 0, "{failed} writes failed under load");
        check_data(lab, &acks, &NODES, &mut row)
    })();
    let _ = stop_writers(lab, "c0");
    finish(&mut row, r, t);
    rows.push(row);
}

/// Case 4: every node power-cut while all write, then all started.
fn case_4(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "4 all power-cut, all start".into(),
        ..Default::default()
    };
    let r = (|| -> anyhow::Result<()> {
        let vol = volume_id(lab, "node1")?;
        // Right after case 5's splits end, the managers may still be electing a leader: `docker info` then shows
        // no cluster id. Wait until a manager names one before the cut.
        let mut swarm = String::new();
        wait_until(
            Duration::from_secs(90),
            "a manager to name the swarm id before the power cut",
            || {
                let m = manager_among(lab, &NODES)?;
                swarm = swarm_id(lab, &m)?;
                Ok(!swarm.is_empty())
            },
        )?;
        let wl = Workload::start(lab, "c4", &NODES, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 20, Duration::from_secs(60))?;
        for n in NODES {
            lab.kill(n)?;
        }
        for n in NODES {
            lab.start(n)?;
        }
        let back = Instant::now();
        wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
        wait_heal(lab, "node1")?;
        row.heal_s = Some(back.elapsed().as_secs_f64());
        for n in NODES {
            anyhow::ensure!(volume_id(lab, n)? == vol, "{n}: another volume id");
        }
        // Every manager must name the Swarm it had before the power cut (a manager that has just restarted may
        // not answer yet: wait for it, with a deadline; the ids seen are reported when it passes).
        wait_until(
            Duration::from_secs(90),
            "every manager to name the old swarm id",
            || {
                let mut seen = Vec::new();
                for n in NODES {
                    if is_manager(lab, n) {
                        let id = swarm_id(lab, n).unwrap_or_default();
                        anyhow::ensure!(
                            id.is_empty() || id == swarm,
                            "{n}: another swarm id {id} (was {swarm})"
                        );
                        seen.push((n, id));
                    }
                }
                anyhow::ensure!(
                    seen.len() >= 3 && seen.iter().all(|(_, id)| *id == swarm),
                    "managers and their swarm ids: {seen:?} (want at least 3 naming {swarm})"
                );
                Ok(true)
            },
        )?;
        check_data(lab, &wl.attempts(lab)?, &NODES, &mut row)
    })();
    finish(&mut row, r, t);
    rows.push(row);
}

/// Case 8: the brick process of node2 is killed (a crash, the OOM killer) while all write; glusterd stays up and
/// never restarts a brick by itself: node2's agent must notice and have it started again, then everything heals.
fn case_8(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "8 brick process killed on node2".into(),
        ..Default::default()
    };
    let wl = Workload {
        tag: "c8".into(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
    };
    let r = (|| -> anyhow::Result<()> {
        Workload::start(lab, &wl.tag, &NODES, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 10, Duration::from_secs(60))?;
        let old = lab.exec_ok("node2", &["pgrep", "-x", "glusterfsd"])?;
        let old = old.trim().to_string();
        anyhow::ensure!(
            !old.is_empty(),
            "node2 runs no brick process before the kill"
        );
        let cut_at = now();
        lab.exec_ok("node2", &["pkill", "-KILL", "-x", "glusterfsd"])?;
        let mut degraded_seen = false;
        wait_until(
            Duration::from_secs(120),
            "node2's brick process started again and every brick online on node1's status page",
            || {
                let s2 = status(lab, "node2")?;
                degraded_seen |= s2["health"] == "degraded"
                    && s2["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("brick offline"));
                let now_pid = lab
                    .exec_ok("node2", &["pgrep", "-x", "glusterfsd"])
                    .map(|o| o.trim().to_string())
                    .unwrap_or_default();
                if now_pid.is_empty() || now_pid == old {
                    return Ok(false);
                }
                let s1 = status(lab, "node1")?;
                let bricks = s1["volume_detail"]["bricks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                Ok(bricks.len() == NODES.len() && bricks.iter().all(|b| b["online"] == true))
            },
        )?;
        let back = now();
        eprintln!(
            "fault_suite: case 8: brick back {:.1} s after the kill; node2's page said degraded (brick offline) in \
             between: {degraded_seen}",
            back - cut_at
        );
        let heal = wait_heal(lab, "node1")?;
        row.heal_s = Some(back - cut_at + heal);
        wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
        wait_acks(lab, &wl, back, 10, Duration::from_secs(60))?;
        wl.stop(lab)?;
        wait_heal(lab, "node1")?;
        let acks = wl.attempts(lab)?;
        row.stall_s = Some(write_stall(&acks, cut_at, now()));
        check_data(lab, &acks, &NODES, &mut row)
    })();
    if r.is_err() {
        let _ = wl.stop(lab);
    }
    finish(&mut row, r, t);
    rows.push(row);
}

#[test]
fn fault_suite() {
    if !require_root("fault_suite") {
        return;
    }
    let t = Instant::now();
    let lab = Lab::up(LabOptions::new(4)).expect("lab up");
    wait_healthy(&lab, &NODES, FORM_TIMEOUT).expect("formation");
    make_service(&lab).expect("swarm service with a local image");
    eprintln!(
        "fault_suite: formed with a service in {} s",
        t.elapsed().as_secs()
    );
    // Which half of a 2|2 split keeps quorum is decided by the volume's first brick: read it before any fault.
    let halves = halves_2_2(&lab).expect("the volume's first brick");
    let mut rows = Vec::new();
    case_0(&lab, &mut rows);
    cases_2_and_3(&lab, &mut rows);
    case_5(
        &lab,
        &mut rows,
        "1|3",
        &[&["node1", "node2", "node3"], &["node4"]],
    );
    case_5(&lab, &mut rows, "2|2", &[&halves[0], &halves[1]]);
    case_8(&lab, &mut rows);
    case_4(&lab, &mut rows);
    let table = render(&rows);
    println!(
        "\nfault suite ({} s in all)\n{table}",
        t.elapsed().as_secs()
    );
    lab.down().unwrap();
    let failed: Vec<&CaseRow> = rows
        .iter()
        .filter(|r| r.result.starts_with("FAIL"))
        .collect();
    assert!(failed.is_empty(), "failed cases:\n{table}");
}
