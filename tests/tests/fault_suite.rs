//! The fault suite (issue 6): one 4-node lab with the agent, faults applied one after another, each case writing
//! checksummed files continuously through the shared mount and proving, on every node: 0 lost acknowledged bytes,
//! 0 split-brain entries, 0 files differing between bricks after heal. A summary table is printed at the end.
//!
//! Cases (numbers of issue 6): 2 power cut of one node after formation (writes on the survivors continue, the Swarm
//! keeps its replicas, the status says degraded); 3 the node returns (heal pending reaches 0, healthy); 5 partition
//! 1|3 with `ci/lab cut` (writes refused on the isolated node, accepted on the quorum side, no split-brain after
//! heal; 2|2 is not made: `ci/lab cut` isolates one node from all others, it cannot split the bridge in two
//! halves); 7 kill -9 of glusterd and dockerd inside a node (the agent must bring them back); 4 every node
//! power-cut and started (the cluster returns on its own, same volume id, same swarm id).
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.
//! Run: `cargo test -p cluster-tests --test fault_suite -- --ignored --nocapture` (about 14 min on the loaded
//! 2-core machine; ignored by default until the agent restarts crashed daemons, see the `ignore` reason).

use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use cluster_tests::summary::{render, CaseRow};
use cluster_tests::workload::{self, write_stall, Attempt, Workload};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VOL: &str = "shared";
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
const HEAL_TIMEOUT: Duration = Duration::from_secs(240);
const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];
/// Writer period and file size for the suite's workload.
const INTERVAL_MS: u64 = 500;
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
    for n in on {
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

/// Case 5: node4's cable pulled while all four write; 2|2 cannot be made by the lab.
fn case_5(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "5 partition 1|3 (node4 cut)".into(),
        ..Default::default()
    };
    let r = (|| -> anyhow::Result<()> {
        let wl = Workload::start(lab, "c5", &NODES, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 20, Duration::from_secs(60))?;
        let cut_at = now();
        lab.cut("node4")?;
        wait_acks(lab, &wl, cut_at + 10.0, 15, Duration::from_secs(60))?;
        // The isolated side: its writes are refused (errors), none acknowledged.
        wait_until(
            Duration::from_secs(60),
            "node4's writes to be refused",
            || {
                Ok(wl
                    .attempts(lab)?
                    .iter()
                    .filter(|a| !a.ok && a.name.contains("-node4-") && a.start > cut_at)
                    .count()
                    >= 3)
            },
        )?;
        let acks = wl.attempts(lab)?;
        let isolated_ok: Vec<&Attempt> = acks
            .iter()
            .filter(|a| a.ok && a.name.contains("-node4-") && a.start > cut_at)
            .collect();
        anyhow::ensure!(
            isolated_ok.is_empty(),
            "node4 acknowledged {} writes while cut off, e.g. {:?}",
            isolated_ok.len(),
            isolated_ok.first()
        );
        let quorum: Vec<Attempt> = acks
            .iter()
            .filter(|a| !a.name.contains("-node4-"))
            .cloned()
            .collect();
        row.stall_s = Some(write_stall(&quorum, cut_at, now()));
        lab.heal("node4")?;
        let back = Instant::now();
        wait_heal(lab, "node1")?;
        row.heal_s = Some(back.elapsed().as_secs_f64());
        wl.stop(lab)?;
        wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
        wait_heal(lab, "node1")?;
        check_data(lab, &wl.attempts(lab)?, &NODES, &mut row)
    })();
    // Writers left running by a failed step stop here (idempotent).
    let _ = stop_writers(lab, "c5");
    finish(&mut row, r, t);
    rows.push(row);
    rows.push(CaseRow {
        case: "5 partition 2|2".into(),
        result: "MISSING: ci/lab cut isolates one node; no 2|2 split".into(),
        ..Default::default()
    });
}

/// Case 7: kill -9 of glusterd and dockerd inside node2; the agent must bring both back.
fn case_7(lab: &Lab, rows: &mut Vec<CaseRow>) {
    let t = Instant::now();
    let mut row = CaseRow {
        case: "7 kill -9 glusterd+dockerd node2".into(),
        ..Default::default()
    };
    let r = (|| -> anyhow::Result<()> {
        let wl = Workload::start(lab, "c7", &NODES, INTERVAL_MS, FILE_SIZE)?;
        wait_acks(lab, &wl, 0.0, 20, Duration::from_secs(60))?;
        let killed_at = now();
        // Inside the node's PID namespace `pidof` sees only the node's own daemons.
        lab.sh("node2", "kill -9 $(pidof glusterd) $(pidof dockerd)")?;
        let back = Instant::now();
        let recovered = wait_until(
            Duration::from_secs(90),
            "glusterd and dockerd back on node2",
            || {
                Ok(lab
                    .exec_ok("node2", &["gluster", "--xml", "pool", "list"])
                    .is_ok()
                    && lab
                        .exec_ok(
                            "node2",
                            &["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
                        )?
                        .trim()
                        == "active")
            },
        );
        wait_acks(lab, &wl, killed_at + 5.0, 15, Duration::from_secs(60))?;
        let acks = wl.attempts(lab)?;
        row.stall_s = Some(write_stall(&acks, killed_at, now()));
        if let Err(e) = recovered {
            wl.stop(lab)?;
            // Restore the node for the next case, then report.
            lab.kill("node2")?;
            lab.start("node2")?;
            wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
            anyhow::bail!("the agent did not bring the daemons back: {e}");
        }
        row.heal_s = Some(back.elapsed().as_secs_f64());
        wait_healthy(lab, &NODES, FORM_TIMEOUT)?;
        wl.stop(lab)?;
        wait_heal(lab, "node1")?;
        check_data(lab, &wl.attempts(lab)?, &NODES, &mut row)
    })();
    // Writers left running by a failed step stop here (idempotent).
    let _ = stop_writers(lab, "c7");
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
        let m = manager_among(lab, &NODES)?;
        let swarm = swarm_id(lab, &m)?;
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
        let m = manager_among(lab, &NODES)?;
        anyhow::ensure!(swarm_id(lab, &m)? == swarm, "another swarm id");
        check_data(lab, &wl.attempts(lab)?, &NODES, &mut row)
    })();
    finish(&mut row, r, t);
    rows.push(row);
}

#[test]
#[ignore = "agent bug: glusterd and dockerd killed with -9 are not restarted by the agent (case 7); case 5's heal \
            after a 1|3 cut exceeds 240 s in the lab. Run with --ignored"]
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
    let mut rows = Vec::new();
    cases_2_and_3(&lab, &mut rows);
    case_5(&lab, &mut rows);
    case_7(&lab, &mut rows);
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
