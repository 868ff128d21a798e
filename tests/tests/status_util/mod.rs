//! Helpers of the status page tests (`status_lab.rs`, `status_browser.rs`): bring a 4-node lab to a formed,
//! healthy cluster, read every node's status document, find the secrets a page must never show, and reach a
//! node's API from the host through a loopback proxy.

#![allow(dead_code)]

use cluster_tests::lab::{wait_until, Lab, LabOptions};
use firstboot_agent::api::model::{ClusterStatus, Health};
use firstboot_agent::config::ClusterConfig;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Longest wait for 4 nodes to form from nothing.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(300);
/// The bound for a lost node to show as down on every survivor.
pub const DOWN_WITHIN: Duration = Duration::from_secs(15);

/// A 4-node lab with agents, with a lab id of this test's own.
pub fn four_node_lab(tag: &str) -> Lab {
    let id = format!("{tag}{}", std::process::id() % 100_000);
    let lab = Lab::up(LabOptions::new(4).lab_id(&id)).expect("ci/lab up --nodes 4");
    eprintln!("lab {id} up in {:?}", lab.up_time());
    lab
}

/// `GET path` on `node`'s agent, from inside the node (as a user on that Pi would).
pub fn get(lab: &Lab, node: &str, path: &str) -> anyhow::Result<String> {
    Ok(lab.exec_ok(
        node,
        &[
            "curl",
            "-sSf",
            "-m",
            "3",
            &format!("http://127.0.0.1:7780{path}"),
        ],
    )?)
}

/// `node`'s status document.
pub fn status(lab: &Lab, node: &str) -> anyhow::Result<ClusterStatus> {
    Ok(serde_json::from_str(&get(lab, node, "/api/status")?)?)
}

/// Why `s` is not the formed 4-node cluster the issue describes, 3 of its nodes Swarm managers (`None` when it is).
pub fn not_formed(s: &ClusterStatus) -> Option<String> {
    let bricks = s.volume_detail.as_ref();
    let swarm = s.swarm_detail.as_ref();
    let problems = [
        (s.health != Health::Healthy).then(|| format!("health {:?}: {}", s.health, s.detail)),
        (s.nodes.len() != 4 || s.nodes.iter().any(|n| !n.up)).then(|| {
            format!(
                "nodes {:?}",
                s.nodes.iter().map(|n| (&n.name, n.up)).collect::<Vec<_>>()
            )
        }),
        (bricks.map(|v| (v.bricks.len(), v.bricks_online)) != Some((4, 4))).then(|| {
            format!(
                "bricks {:?}",
                bricks.map(|v| (v.bricks.len(), v.bricks_online))
            )
        }),
        (swarm.map(|w| w.nodes.iter().filter(|n| n.state == "ready").count()) != Some(4))
            .then(|| format!("swarm {:?}", swarm.map(|w| &w.nodes))),
        // The leader promotes one worker at a time: the status page's Swarm reading may lag the health by a tick.
        (swarm.map(|w| w.managers.len()) != Some(3))
            .then(|| format!("swarm managers {:?}", swarm.map(|w| &w.managers))),
    ];
    let p: Vec<String> = problems.into_iter().flatten().collect();
    (!p.is_empty()).then(|| p.join("; "))
}

/// Waits until every listed node's document shows the formed, healthy 4-node cluster.
pub fn wait_formed(lab: &Lab, nodes: &[&str], timeout: Duration) {
    wait_until(
        timeout,
        &format!(
            "{nodes:?} to show 4 healthy nodes, 4 online bricks and a 4-node swarm with 3 managers"
        ),
        || {
            for n in nodes {
                if let Some(why) = not_formed(&status(lab, n)?) {
                    anyhow::bail!("{n}: {why}");
                }
            }
            Ok(true)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent_logs(lab, nodes)));
}

/// The last lines of each node's agent log, for failure messages.
pub fn agent_logs(lab: &Lab, nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(lab.log_path(n, "agent")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            format!(
                "--- {n} agent log\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The name a node's agent goes by in status documents (found by its address).
pub fn agent_name(lab: &Lab, observer: &str, node: &str) -> anyhow::Result<String> {
    let ip = lab.ip(node)?;
    let s = status(lab, observer)?;
    s.nodes
        .iter()
        .find(|n| n.address.map(|a| a.to_string()) == Some(ip.clone()))
        .map(|n| n.name.clone())
        .ok_or_else(|| anyhow::anyhow!("{observer} does not list {node} ({ip})"))
}

/// The secrets no response may hold: the cluster key (from node1's card config, hex and base64) and the swarm's
/// worker and manager join tokens (read on a manager with `docker swarm join-token -q`).
pub fn secrets(lab: &Lab) -> Vec<String> {
    let cfg_path = lab.state_dir().join("node1/fs/agent-etc/cluster.toml");
    let config = ClusterConfig::load(&cfg_path).expect("node1's cluster.toml");
    let mut out = vec![config.cluster.key.clone(), {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(config.key_bytes())
    }];
    for node in lab.node_names() {
        let w = lab.exec(&node, &["docker", "swarm", "join-token", "-q", "worker"]);
        let m = lab.exec(&node, &["docker", "swarm", "join-token", "-q", "manager"]);
        if let (Ok(w), Ok(m)) = (w, m) {
            if w.status.success() && m.status.success() {
                out.push(String::from_utf8_lossy(&w.stdout).trim().to_string());
                out.push(String::from_utf8_lossy(&m.stdout).trim().to_string());
                break;
            }
        }
    }
    assert_eq!(out.len(), 4, "no manager gave its join tokens");
    assert!(
        out.iter().all(|s| s.len() >= 32),
        "secrets read: {}",
        out.len()
    );
    out
}

/// A proxy on the host's loopback to `node`'s `127.0.0.1:port` (the host has no address on the lab bridge):
/// a thread enters the node's network namespace and connects there for every accepted connection.
/// Returns the host port; the proxy lives until the process ends.
pub fn proxy_to_node(lab: &Lab, node: &str, port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let host_port = listener.local_addr().unwrap().port();
    let ns = std::path::PathBuf::from("/run/netns").join(format!("{}-{node}", lab.id()));
    let ns_file = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("{}: {e}", ns.display()));
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace file descriptor.
        let rc = unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            pipe(client, upstream);
        }
    });
    host_port
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    std::thread::spawn(move || copy(a, b));
    std::thread::spawn(move || copy(b2, a2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
