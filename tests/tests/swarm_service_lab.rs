//! A Swarm service uses the shared mount (issue 4): in a 4-node lab with the agent, an image made locally on every
//! node (no registry: `docker import` of a tiny rootfs holding `/bin/sh` and its libraries) runs as a one-shot
//! service pinned to node2, restricted to nodes labelled `picluster.shared-volume=mounted`, with `/mnt/shared` bound
//! at `/data`; what it writes there is read on node4 and names the node it ran on.
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.
//! The agent binary: `FIRSTBOOT_AGENT_BIN`, else `ci/lab` builds it.

use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use serde_json::Value;
use std::time::{Duration, Instant};

const FORM_TIMEOUT: Duration = Duration::from_secs(180);
const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];
const IMAGE: &str = "picluster-test/sh:1";
const SERVICE: &str = "writer";

fn status(lab: &Lab, node: &str) -> anyhow::Result<Value> {
    let out = lab.exec_ok(
        node,
        &["curl", "-sf", "-m", "3", "http://127.0.0.1:7780/api/status"],
    )?;
    Ok(serde_json::from_str(&out)?)
}

fn is_manager(lab: &Lab, node: &str) -> bool {
    lab.exec_ok(
        node,
        &["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"],
    )
    .is_ok_and(|s| s.trim() == "true")
}

/// `docker service ps` of the test service on `manager`: one "node state error" line per task.
fn tasks(lab: &Lab, manager: &str) -> String {
    lab.exec_ok(
        manager,
        &[
            "docker",
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.Node}}|{{.CurrentState}}|{{.Error}}",
            SERVICE,
        ],
    )
    .unwrap_or_else(|e| format!("docker service ps failed: {e}"))
}

#[test]
fn a_local_image_service_writes_on_one_node_and_another_reads_it() {
    if !require_root("a_local_image_service_writes_on_one_node_and_another_reads_it") {
        return;
    }
    let start = Instant::now();
    let lab = Lab::up(LabOptions::new(4)).expect("lab up");
    wait_until(FORM_TIMEOUT, "node1 to say healthy", || {
        let s = status(&lab, "node1")?;
        Ok(s["phase"] == "steady" && s["health"] == "healthy")
    })
    .unwrap();
    eprintln!("formed in {:?}", start.elapsed());

    // Every node has its own dockerd: import the same tiny image (a shell and its libraries) on each.
    for n in NODES {
        lab.sh(
            n,
            &format!(
                "set -e; r=/var/log/svc-rootfs; rm -rf $r; mkdir -p $r/bin $r/data; cp -L /bin/sh $r/bin/sh; \
                 for l in $(ldd /bin/sh | grep -o '/[^ ]*'); do mkdir -p $r$(dirname $l); cp -L $l $r$l; done; \
                 tar -C $r -c . | docker import - {IMAGE} >/dev/null; rm -rf $r"
            ),
        )
        .unwrap_or_else(|e| panic!("{n}: docker import: {e}"));
    }

    // node2's name as the swarm knows it, to pin the task there.
    let target = lab
        .exec_ok("node2", &["docker", "info", "--format", "{{.Name}}"])
        .unwrap()
        .trim()
        .to_string();
    assert!(!target.is_empty());
    let manager = NODES
        .iter()
        .find(|n| is_manager(&lab, n))
        .expect("some node is a manager");
    // The container's host name is the node's (a Swarm template); the shell reads it with builtins only.
    lab.exec_ok(
        manager,
        &[
            "docker",
            "service",
            "create",
            "--detach",
            "--name",
            SERVICE,
            "--constraint",
            "node.labels.picluster.shared-volume==mounted",
            "--constraint",
            &format!("node.hostname=={target}"),
            "--mount",
            "type=bind,src=/mnt/shared,dst=/data",
            "--restart-condition",
            "none",
            "--hostname",
            "{{.Node.Hostname}}",
            IMAGE,
            "/bin/sh",
            "-c",
            "read h < /etc/hostname; echo hello-from-$h > /data/svc.txt",
        ],
    )
    .unwrap();

    // The file appears on node4 through the shared volume and names node2.
    let want = format!("hello-from-{target}");
    wait_until(
        Duration::from_secs(90),
        "/mnt/shared/svc.txt on node4",
        || {
            let out = lab.exec(
                "node4",
                &["sh", "-c", "cat /mnt/shared/svc.txt 2>/dev/null || true"],
            )?;
            Ok(String::from_utf8_lossy(&out.stdout).trim() == want)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\ntasks:\n{}", tasks(&lab, manager)));

    // It ran exactly once, on node2, and completed.
    wait_until(Duration::from_secs(30), "the task to complete", || {
        Ok(tasks(&lab, manager).contains("|Complete"))
    })
    .unwrap_or_else(|e| panic!("{e}\ntasks:\n{}", tasks(&lab, manager)));
    let ps = tasks(&lab, manager);
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines.len(), 1, "one task: {ps}");
    let f: Vec<&str> = lines[0].split('|').collect();
    assert_eq!(f[0], target, "ran on node2: {ps}");
    assert!(f[1].starts_with("Complete"), "completed: {ps}");
    eprintln!("done in {:?}", start.elapsed());
    lab.down().unwrap();
}
