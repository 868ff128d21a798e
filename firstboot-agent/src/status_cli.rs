//! `firstboot-agent status [--json] [--node HOST[:PORT]]`: the status page from a terminal.
//!
//! Fetches `GET /api/status` from this node's agent (`127.0.0.1:<agent.api_port>`) or from `HOST`, and prints
//! either a compact table for people ([`render_table`]) or the JSON document as the agent served it.

use crate::api::model::{ClusterStatus, Health};
use std::fmt::Write as _;
use std::time::Duration;

/// The agent's default API port (the config's `agent.api_port` default).
pub const DEFAULT_PORT: u16 = 7780;

/// Why `status` could not show the cluster.
#[derive(Debug, thiserror::Error)]
pub enum StatusCliError {
    /// `--node` is not `HOST` or `HOST:PORT`.
    #[error("--node {0:?} is not HOST or HOST:PORT")]
    BadTarget(String),
    /// The agent could not be reached or did not answer in time.
    #[error("cannot reach the agent at {url}: {source}; is firstboot-agent running there (`firstboot-agent run`), and is the port right (`agent.api_port`, --node HOST:PORT)?")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// The HTTP error.
        source: reqwest::Error,
    },
    /// The agent answered with an error status.
    #[error("the agent at {url} answered HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not a status document.
    #[error(
        "the answer of {url} is not a status document ({source}); is that port a firstboot-agent?"
    )]
    Parse {
        /// What was fetched.
        url: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// The status URL for `--node` (`HOST`, `HOST:PORT`, optionally with `http://`) or this node.
pub fn status_url(node: Option<&str>, default_port: u16) -> Result<String, StatusCliError> {
    let Some(target) = node else {
        return Ok(format!("http://127.0.0.1:{default_port}/api/status"));
    };
    let t = target
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let bad = || StatusCliError::BadTarget(target.to_string());
    if t.is_empty() || t.contains('/') || t.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse::<u16>().map_err(|_| bad())?),
        Some(_) if t.starts_with('[') => match t.rsplit_once("]:") {
            Some((h, p)) => (&t[..h.len() + 1], p.parse::<u16>().map_err(|_| bad())?),
            None => (t, default_port),
        },
        Some(_) => return Err(bad()),
        None => (t, default_port),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(format!("http://{host}:{port}/api/status"))
}

/// Fetches the status document from `url`; returns it parsed and as the agent sent it.
pub async fn fetch(url: &str) -> Result<(ClusterStatus, String), StatusCliError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client builds");
    let unreachable = |source| StatusCliError::Unreachable {
        url: url.to_string(),
        source,
    };
    let resp = http.get(url).send().await.map_err(unreachable)?;
    if !resp.status().is_success() {
        return Err(StatusCliError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let text = resp.text().await.map_err(unreachable)?;
    let doc = serde_json::from_str(&text).map_err(|source| StatusCliError::Parse {
        url: url.to_string(),
        source,
    })?;
    Ok((doc, text))
}

/// Bytes in binary units, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `secs` ago in words.
pub fn ago(secs: i64) -> String {
    match secs {
        i64::MIN..=1 => "now".into(),
        2..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

fn health_word(h: Health) -> &'static str {
    match h {
        Health::Forming => "FORMING",
        Health::Healthy => "HEALTHY",
        Health::Degraded => "DEGRADED",
        Health::Failed => "FAILED",
    }
}

/// Lays rows out in columns separated by two spaces (the last column is not padded).
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The compact human table: cluster and health, nodes, volume and bricks, swarm, the last events.
pub fn render_table(s: &ClusterStatus) -> String {
    let now = s.generated_at;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cluster {} ({}): {}, {} of {} nodes present, served by {}",
        s.cluster_name,
        s.cluster_id,
        health_word(s.health),
        s.present_nodes,
        s.expected_nodes,
        s.this_node
    );
    let f = &s.formation;
    let mut phase = format!("Phase {}", s.phase);
    if f.steps > 0 && f.step > 0 && f.step < f.steps {
        let _ = write!(phase, " (step {} of {})", f.step, f.steps);
    }
    if let Some(ms) = f.duration_ms {
        let _ = write!(phase, ", formed in {:.1} s", ms as f64 / 1000.0);
    }
    if !s.detail.is_empty() && s.health != Health::Healthy {
        let _ = write!(phase, ": {}", s.detail);
    }
    let _ = writeln!(out, "{phase}\n");

    let mut rows = vec![[
        "NODE",
        "ADDRESS",
        "AGENT",
        "LAST SEEN",
        "GLUSTER PEER",
        "SWARM",
        "MOUNTED",
    ]
    .map(String::from)
    .to_vec()];
    for n in &s.nodes {
        let mut swarm = n.swarm_role.clone();
        if !n.swarm_availability.is_empty() {
            let _ = write!(swarm, "/{}", n.swarm_availability);
        }
        rows.push(vec![
            if n.name == s.this_node {
                format!("{} *", n.name)
            } else {
                n.name.clone()
            },
            n.address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            if n.up {
                n.agent_state.clone()
            } else {
                "DOWN".into()
            },
            if now > 0 {
                ago(now - n.last_seen)
            } else {
                "-".into()
            },
            n.gluster_peer.clone(),
            swarm,
            if n.mount_ok { "yes" } else { "no" }.into(),
        ]);
    }
    if s.nodes.is_empty() {
        out.push_str("No nodes known yet.\n");
    } else {
        out.push_str(&columns(&rows));
    }

    out.push('\n');
    match (&s.volume_detail, &s.volume) {
        (Some(v), _) => {
            let mut line = format!(
                "Volume {}: {}, {}, replica {}, {} of {} bricks online",
                v.name,
                v.vol_type,
                v.status,
                v.replica,
                v.bricks_online,
                v.bricks.len()
            );
            if let (Some(u), Some(used)) = (v.usable_bytes, v.used_bytes) {
                let _ = write!(line, ", {} used of {}", human_bytes(used), human_bytes(u));
            }
            match v.heal_pending {
                Some(h) => {
                    let _ = write!(line, ", {h} pending heal");
                }
                None => line.push_str(", heal backlog unknown"),
            }
            let _ = writeln!(out, "{line}");
            let mut rows = vec![["BRICK", "ONLINE", "SIZE", "FREE"]
                .map(String::from)
                .to_vec()];
            for b in &v.bricks {
                rows.push(vec![
                    format!("{}:{}", b.node, b.path),
                    if b.online { "yes" } else { "NO" }.into(),
                    b.size_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
                    b.free_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
                ]);
            }
            out.push_str(&columns(&rows));
        }
        (None, Some(v)) => {
            let _ = writeln!(
                out,
                "Volume {}: replica {}, {} bricks, {}",
                v.name,
                v.replica,
                v.bricks.len(),
                if v.started { "started" } else { "not started" }
            );
        }
        (None, None) => out.push_str("Volume: none yet\n"),
    }

    out.push('\n');
    match &s.swarm_detail {
        Some(w) => {
            let ready = w.nodes.iter().filter(|n| n.state == "ready").count();
            let _ = writeln!(
                out,
                "Swarm {}: {} nodes ({} ready), managers {}, leader {}",
                short_id(&w.id),
                w.nodes.len(),
                ready,
                if w.managers.is_empty() {
                    "-".to_string()
                } else {
                    w.managers.join(", ")
                },
                w.leader.as_deref().unwrap_or("none")
            );
        }
        None => match &s.swarm {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "Swarm: this node is a {} (the whole swarm is not known yet)",
                    if b.is_manager { "manager" } else { "worker" }
                );
            }
            None => out.push_str("Swarm: none yet\n"),
        },
    }

    if !s.events.is_empty() {
        out.push_str("\nLast events:\n");
        for e in s.events.iter().rev().take(8) {
            let when = if now > 0 {
                ago(now - e.at)
            } else {
                e.at.to_string()
            };
            let _ = writeln!(out, "  {when:>10}  {}", e.message);
        }
    }
    out
}

fn short_id(id: &str) -> &str {
    if id.is_empty() {
        "(id unknown)"
    } else {
        &id[..id.len().min(12)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::*;

    fn doc() -> ClusterStatus {
        let node = |i: u32, up: bool| NodeStatus {
            name: format!("node{i}"),
            node_id: format!("id{i}"),
            address: Some(format!("10.210.3.{}", 10 + i).parse().unwrap()),
            agent_state: "steady".into(),
            last_seen: if up { 1000 } else { 958 },
            up,
            gluster_peer: if i == 1 {
                "self".into()
            } else if up {
                "connected".into()
            } else {
                "disconnected".into()
            },
            swarm_role: if i < 4 { "manager" } else { "worker" }.into(),
            mount_ok: up,
            swarm_availability: "active".into(),
            swarm_state: if up { "ready" } else { "down" }.into(),
        };
        ClusterStatus {
            schema: STATUS_SCHEMA,
            cluster_name: "homelab".into(),
            cluster_id: "c0ffee".into(),
            health: Health::Degraded,
            phase: "steady".into(),
            this_node: "node1".into(),
            expected_nodes: 4,
            present_nodes: 3,
            nodes: vec![node(1, true), node(2, true), node(3, false), node(4, true)],
            generated_at: 1000,
            volume_detail: Some(VolumeReport {
                name: "shared".into(),
                vol_type: "Replicate".into(),
                status: "started".into(),
                replica: 4,
                usable_bytes: Some(4 << 30),
                used_bytes: Some(512 << 20),
                bricks: (1..=4)
                    .map(|i| BrickReport {
                        node: format!("node{i}"),
                        path: "/srv/gluster/brick1/brick".into(),
                        online: i != 3,
                        size_bytes: (i != 3).then_some(4 << 30),
                        free_bytes: (i != 3).then_some(3 << 30),
                    })
                    .collect(),
                bricks_online: 3,
                heal_pending: Some(5),
                read_at: 999,
            }),
            swarm_detail: Some(SwarmReport {
                id: "abcdefghijklmnopqrstuvwxyz".into(),
                managers: vec!["node1".into(), "node2".into(), "node3".into()],
                leader: Some("node1".into()),
                nodes: (1..=4)
                    .map(|i| SwarmNodeReport {
                        hostname: format!("node{i}"),
                        state: if i == 3 { "down" } else { "ready" }.into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            events: vec![StatusEvent {
                at: 960,
                kind: "node-lost".into(),
                message: "node3 stopped answering".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn table_shows_health_every_node_bricks_swarm_and_events() {
        let t = render_table(&doc());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "Cluster homelab (c0ffee): DEGRADED, 3 of 4 nodes present, served by node1"
        );
        let node3 = lines
            .iter()
            .find(|l| l.starts_with("node3"))
            .expect("node3 row");
        assert!(node3.contains("DOWN"), "{node3}");
        assert!(node3.contains("42 s ago"), "{node3}");
        assert!(node3.contains("disconnected"), "{node3}");
        assert!(node3.ends_with("no"), "{node3}");
        let node1 = lines.iter().find(|l| l.starts_with("node1 *")).unwrap();
        assert!(node1.contains("manager/active") && node1.contains("now"));
        // Columns line up: every node row has its address at the header's ADDRESS column.
        let header = lines.iter().find(|l| l.starts_with("NODE")).unwrap();
        let col = header.find("ADDRESS").unwrap();
        for l in lines
            .iter()
            .filter(|l| l.starts_with("node") && l.contains("10.210"))
        {
            assert_eq!(l.find("10.210"), Some(col), "{l}");
        }
        assert!(t.contains(
            "Volume shared: Replicate, started, replica 4, 3 of 4 bricks online, 512.0 MiB used of 4.0 GiB, 5 pending heal"
        ));
        let brick3 = lines.iter().find(|l| l.starts_with("node3:/srv")).unwrap();
        assert!(brick3.contains("NO"));
        assert!(t.contains(
            "Swarm abcdefghijkl: 4 nodes (3 ready), managers node1, node2, node3, leader node1"
        ));
        assert!(t.contains("40 s ago  node3 stopped answering"));
    }

    #[test]
    fn table_of_a_node_that_just_started() {
        let s = ClusterStatus {
            cluster_name: "homelab".into(),
            phase: "discovering".into(),
            detail: "1 of 4 nodes present".into(),
            formation: FormationProgress {
                step: 3,
                steps: 9,
                ..Default::default()
            },
            ..Default::default()
        };
        let t = render_table(&s);
        assert!(t.contains("FORMING"));
        assert!(t.contains("Phase discovering (step 3 of 9): 1 of 4 nodes present"));
        assert!(t.contains("No nodes known yet."));
        assert!(t.contains("Volume: none yet"));
        assert!(t.contains("Swarm: none yet"));
    }

    #[test]
    fn node_targets() {
        assert_eq!(
            status_url(None, 7780).unwrap(),
            "http://127.0.0.1:7780/api/status"
        );
        assert_eq!(
            status_url(Some("node2.local"), 7780).unwrap(),
            "http://node2.local:7780/api/status"
        );
        assert_eq!(
            status_url(Some("10.0.0.2:9000"), 7780).unwrap(),
            "http://10.0.0.2:9000/api/status"
        );
        assert_eq!(
            status_url(Some("http://10.0.0.2:9000/"), 7780).unwrap(),
            "http://10.0.0.2:9000/api/status"
        );
        assert_eq!(
            status_url(Some("[fe80::1]:7781"), 7780).unwrap(),
            "http://[fe80::1]:7781/api/status"
        );
        for bad in ["", "host:port", "a/b", "host:99999", ":7780"] {
            assert!(status_url(Some(bad), 7780).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes_and_ages_in_words() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(ago(0), "now");
        assert_eq!(ago(42), "42 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(7200), "2 h ago");
    }
}
