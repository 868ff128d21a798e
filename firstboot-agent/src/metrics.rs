//! `GET /metrics`: the status document in the Prometheus text exposition format (version 0.0.4).
//!
//! Rendered from the same in-memory [`ClusterStatus`] the status page shows, so scraping costs no CLI call.
//! Every metric name starts with `picluster_`; each family has `# HELP` and `# TYPE` lines. No label or value
//! holds a secret: the document they come from has none.

use crate::api::model::{ClusterStatus, Health};
use std::fmt::Write as _;

/// The content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn b(v: bool) -> u8 {
    u8::from(v)
}

/// Renders `status` as Prometheus text.
pub fn render(status: &ClusterStatus) -> String {
    let mut o = Out(String::with_capacity(4096));
    let cluster = status.cluster_name.as_str();

    o.family(
        "picluster_info",
        "gauge",
        "The cluster and the node serving these metrics (always 1).",
    );
    o.sample(
        "picluster_info",
        &[
            ("cluster", cluster),
            ("cluster_id", &status.cluster_id),
            ("node", &status.this_node),
            ("schema", &status.schema.to_string()),
        ],
        1,
    );

    o.family(
        "picluster_health",
        "gauge",
        "Cluster health: 1 for the current state, 0 for the others.",
    );
    for (h, name) in [
        (Health::Forming, "forming"),
        (Health::Healthy, "healthy"),
        (Health::Degraded, "degraded"),
        (Health::Failed, "failed"),
    ] {
        o.sample(
            "picluster_health",
            &[("state", name)],
            b(status.health == h),
        );
    }

    o.family(
        "picluster_nodes_expected",
        "gauge",
        "Nodes the cluster was built for.",
    );
    o.sample("picluster_nodes_expected", &[], status.expected_nodes);
    o.family(
        "picluster_nodes_present",
        "gauge",
        "Nodes that answer (this one included).",
    );
    o.sample("picluster_nodes_present", &[], status.present_nodes);

    o.family(
        "picluster_node_up",
        "gauge",
        "1 when the node answered its peers within the last seconds, else 0.",
    );
    for n in &status.nodes {
        let addr = n.address.map(|a| a.to_string()).unwrap_or_default();
        o.sample(
            "picluster_node_up",
            &[("node", &n.name), ("address", &addr)],
            b(n.up),
        );
    }
    o.family(
        "picluster_node_mount_ok",
        "gauge",
        "1 when the node has the shared volume mounted, else 0.",
    );
    for n in &status.nodes {
        o.sample(
            "picluster_node_mount_ok",
            &[("node", &n.name)],
            b(n.mount_ok),
        );
    }

    if let Some(v) = &status.volume_detail {
        o.family(
            "picluster_brick_online",
            "gauge",
            "1 when the brick's process runs and its host answers, else 0.",
        );
        for br in &v.bricks {
            o.sample(
                "picluster_brick_online",
                &[("volume", &v.name), ("node", &br.node), ("path", &br.path)],
                b(br.online),
            );
        }
        o.family(
            "picluster_bricks_online",
            "gauge",
            "Bricks of the shared volume that are online.",
        );
        o.sample(
            "picluster_bricks_online",
            &[("volume", &v.name)],
            v.bricks_online,
        );
        o.family(
            "picluster_bricks_total",
            "gauge",
            "Bricks of the shared volume.",
        );
        o.sample(
            "picluster_bricks_total",
            &[("volume", &v.name)],
            v.bricks.len(),
        );
        if let Some(h) = v.heal_pending {
            o.family(
                "picluster_heal_pending",
                "gauge",
                "Entries of the shared volume waiting to be healed.",
            );
            o.sample("picluster_heal_pending", &[("volume", &v.name)], h);
        }
        if let (Some(usable), Some(used)) = (v.usable_bytes, v.used_bytes) {
            o.family(
                "picluster_volume_usable_bytes",
                "gauge",
                "Bytes a user can store on the shared volume.",
            );
            o.sample(
                "picluster_volume_usable_bytes",
                &[("volume", &v.name)],
                usable,
            );
            o.family(
                "picluster_volume_used_bytes",
                "gauge",
                "Bytes used on the shared volume.",
            );
            o.sample("picluster_volume_used_bytes", &[("volume", &v.name)], used);
        }
    }

    if let Some(s) = &status.swarm_detail {
        o.family(
            "picluster_swarm_nodes",
            "gauge",
            "Swarm nodes by role and state, as a manager sees them.",
        );
        let mut counts = std::collections::BTreeMap::<(&str, &str), u32>::new();
        for n in &s.nodes {
            *counts
                .entry((n.role.as_str(), n.state.as_str()))
                .or_default() += 1;
        }
        for ((role, state), count) in counts {
            o.sample(
                "picluster_swarm_nodes",
                &[("role", role), ("state", state)],
                count,
            );
        }
    }

    o.family(
        "picluster_formation_step",
        "gauge",
        "Position of this node's formation phase in the chain (steps = the chain's length; 0 = failed).",
    );
    o.sample(
        "picluster_formation_step",
        &[
            ("phase", &status.formation.phase),
            ("steps", &status.formation.steps.to_string()),
        ],
        status.formation.step,
    );
    if let Some(ms) = status.formation.duration_ms {
        o.family(
            "picluster_formation_duration_seconds",
            "gauge",
            "Seconds from this agent's start to its first steady state.",
        );
        o.sample(
            "picluster_formation_duration_seconds",
            &[],
            format!("{:.3}", ms as f64 / 1000.0),
        );
    }

    o.family(
        "picluster_state_changes_total",
        "counter",
        "Cluster state changes this agent saw since it started, by kind.",
    );
    for (kind, n) in &status.state_changes {
        o.sample("picluster_state_changes_total", &[("kind", kind)], n);
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{
        BrickReport, FormationProgress, NodeStatus, SwarmNodeReport, SwarmReport, VolumeReport,
    };
    use std::collections::BTreeMap;

    /// One parsed sample line.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A strict parser of the text format (what Prometheus accepts), written independently of the renderer.
    fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, (String, String)>) {
        let mut samples = Vec::new();
        let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
        assert!(text.ends_with('\n'), "the exposition ends with a line feed");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.is_empty());
                families.entry(name.into()).or_default().0 = help.into();
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(["gauge", "counter"].contains(&kind), "type {kind}");
                assert!(
                    families.get(name).is_some_and(|f| f.1.is_empty()),
                    "one TYPE per family, after its HELP: {name}"
                );
                families.get_mut(name).unwrap().1 = kind.into();
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().expect("the value is a number");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels close");
                    let mut labels = BTreeMap::new();
                    let mut chars = body.chars().peekable();
                    while chars.peek().is_some() {
                        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                        assert_eq!(chars.next(), Some('"'), "label value is quoted");
                        let mut val = String::new();
                        loop {
                            match chars.next().expect("label value closes") {
                                '\\' => match chars.next() {
                                    Some('n') => val.push('\n'),
                                    Some(c @ ('\\' | '"')) => val.push(c),
                                    other => panic!("bad escape {other:?}"),
                                },
                                '"' => break,
                                c => val.push(c),
                            }
                        }
                        labels.insert(key, val);
                        match chars.next() {
                            Some(',') | None => {}
                            other => panic!("expected , after a label, got {other:?}"),
                        }
                    }
                    (name.to_string(), labels)
                }
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name}"
            );
            assert!(
                families.get(&name).is_some_and(|f| !f.1.is_empty()),
                "{name} has HELP and TYPE before its samples"
            );
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        (samples, families)
    }

    fn get<'a>(s: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        s.iter().find(|x| {
            x.name == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    fn example() -> ClusterStatus {
        let node = |n: &str, up: bool| NodeStatus {
            name: n.into(),
            address: Some(format!("10.0.0.{}", &n[4..]).parse().unwrap()),
            up,
            mount_ok: up,
            ..Default::default()
        };
        ClusterStatus {
            schema: 1,
            cluster_name: "lab \"one\"\\x".into(),
            cluster_id: "c-1".into(),
            health: Health::Degraded,
            this_node: "node1".into(),
            expected_nodes: 4,
            present_nodes: 3,
            nodes: vec![
                node("node1", true),
                node("node2", true),
                node("node3", true),
                node("node4", false),
            ],
            volume_detail: Some(VolumeReport {
                name: "shared".into(),
                bricks: (1..=4)
                    .map(|i| BrickReport {
                        node: format!("node{i}"),
                        path: "/srv/gluster/brick1/brick".into(),
                        online: i != 4,
                        ..Default::default()
                    })
                    .collect(),
                bricks_online: 3,
                heal_pending: Some(12),
                usable_bytes: Some(1 << 30),
                used_bytes: Some(1 << 20),
                ..Default::default()
            }),
            swarm_detail: Some(SwarmReport {
                nodes: vec![
                    SwarmNodeReport {
                        role: "manager".into(),
                        state: "ready".into(),
                        ..Default::default()
                    },
                    SwarmNodeReport {
                        role: "manager".into(),
                        state: "ready".into(),
                        ..Default::default()
                    },
                    SwarmNodeReport {
                        role: "worker".into(),
                        state: "down".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            formation: FormationProgress {
                phase: "steady".into(),
                step: 9,
                steps: 9,
                duration_ms: Some(17_250),
                ..Default::default()
            },
            state_changes: [("node-lost".to_string(), 2), ("health".to_string(), 3)]
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_sample_parses_back_with_its_family_and_labels() {
        let text = render(&example());
        let (s, families) = parse(&text);
        assert_eq!(
            get(&s, "picluster_node_up", &[("node", "node4")]).map(|x| x.value),
            Some(0.0)
        );
        assert_eq!(
            get(
                &s,
                "picluster_node_up",
                &[("node", "node1"), ("address", "10.0.0.1")]
            )
            .map(|x| x.value),
            Some(1.0)
        );
        assert_eq!(
            s.iter().filter(|x| x.name == "picluster_node_up").count(),
            4
        );
        assert_eq!(
            get(&s, "picluster_bricks_online", &[("volume", "shared")]).map(|x| x.value),
            Some(3.0)
        );
        assert_eq!(
            get(&s, "picluster_brick_online", &[("node", "node4")]).map(|x| x.value),
            Some(0.0)
        );
        assert_eq!(
            get(&s, "picluster_heal_pending", &[]).map(|x| x.value),
            Some(12.0)
        );
        assert_eq!(
            get(&s, "picluster_formation_duration_seconds", &[]).map(|x| x.value),
            Some(17.25)
        );
        assert_eq!(
            get(&s, "picluster_state_changes_total", &[("kind", "health")]).map(|x| x.value),
            Some(3.0)
        );
        assert_eq!(families["picluster_state_changes_total"].1, "counter");
        assert_eq!(
            get(&s, "picluster_health", &[("state", "degraded")]).map(|x| x.value),
            Some(1.0)
        );
        let health_sum: f64 = s
            .iter()
            .filter(|x| x.name == "picluster_health")
            .map(|x| x.value)
            .sum();
        assert_eq!(health_sum, 1.0, "exactly one health state is set");
        assert_eq!(
            get(
                &s,
                "picluster_swarm_nodes",
                &[("role", "manager"), ("state", "ready")]
            )
            .map(|x| x.value),
            Some(2.0)
        );
        // A label value with quotes and backslashes survives the round trip.
        assert_eq!(
            get(&s, "picluster_info", &[]).unwrap().labels["cluster"],
            "lab \"one\"\\x"
        );
        // Every family with HELP and TYPE has at least one sample.
        for name in families.keys() {
            assert!(s.iter().any(|x| &x.name == name), "{name} has no sample");
        }
    }

    #[test]
    fn unknown_values_are_left_out_rather_than_shown_as_zero() {
        let mut st = example();
        st.volume_detail.as_mut().unwrap().heal_pending = None;
        st.formation.duration_ms = None;
        st.volume_detail.as_mut().unwrap().usable_bytes = None;
        let (s, _) = parse(&render(&st));
        assert!(get(&s, "picluster_heal_pending", &[]).is_none());
        assert!(get(&s, "picluster_formation_duration_seconds", &[]).is_none());
        assert!(get(&s, "picluster_volume_usable_bytes", &[]).is_none());
        // A document of a node that just started still renders and parses.
        let (s, _) = parse(&render(&ClusterStatus::default()));
        assert!(
            get(&s, "picluster_health", &[("state", "forming")]).is_some_and(|x| x.value == 1.0)
        );
    }

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
