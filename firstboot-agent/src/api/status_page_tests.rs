//! Status page (issue 5): every public endpoint of a running API answers from memory and shows no secret, even
//! when the agent holds the cluster key and Swarm join tokens.

use super::model::*;
use super::{router, JoinTokens, Shared};
use crate::config::ClusterConfig;
use crate::trust::{ClusterKey, Verifier};
use std::sync::{Arc, RwLock};

fn shared_with_secrets(config: &ClusterConfig, worker: &str, manager: &str) -> Arc<Shared> {
    let status = ClusterStatus {
        schema: STATUS_SCHEMA,
        cluster_name: config.cluster.name.clone(),
        cluster_id: config.cluster.id.clone(),
        health: Health::Healthy,
        phase: "steady".into(),
        this_node: "node1".into(),
        expected_nodes: 4,
        present_nodes: 4,
        nodes: (1..=4)
            .map(|i| NodeStatus {
                name: format!("node{i}"),
                up: true,
                mount_ok: true,
                swarm_role: "manager".into(),
                ..Default::default()
            })
            .collect(),
        swarm: Some(SwarmBrief {
            cluster_id: "swarm-1".into(),
            node_id: "n1".into(),
            is_manager: true,
            is_leader: true,
            remote_managers: vec!["10.0.0.1:2377".into()],
        }),
        ..Default::default()
    };
    let summary = NodeSummary {
        node_id: "n1".into(),
        hostname: "node1".into(),
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        status: RwLock::new(status),
        summary: RwLock::new(summary),
        tokens: RwLock::new(Some(JoinTokens {
            worker: worker.into(),
            manager: manager.into(),
            remote_addrs: vec!["10.0.0.1:2377".into()],
        })),
        verifier: Verifier::new(ClusterKey::new(&config.key_bytes())),
        observed: Default::default(),
    });
    shared.observed.write().unwrap().volume = Some(VolumeReport {
        name: "shared".into(),
        bricks: vec![BrickReport {
            node: "node1".into(),
            path: "/srv/gluster/brick1/brick".into(),
            online: true,
            ..Default::default()
        }],
        bricks_online: 1,
        ..Default::default()
    });
    shared
}

#[tokio::test]
async fn no_endpoint_shows_the_key_or_a_join_token() {
    let config = ClusterConfig::generate("homelab", 4);
    let worker = "SWMTKN-1-workertokenworkertokenworkertoken-aaaaaaaa";
    let manager = "SWMTKN-1-managertokenmanagertokenmanagertoken-bbbbbbbb";
    let shared = shared_with_secrets(&config, worker, manager);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(shared)).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let key_hex = config.cluster.key.clone();
    let key_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(config.key_bytes())
    };
    let mut seen = Vec::new();
    for (path, want_status, want_type) in [
        ("/", 200, "text/html"),
        ("/api/status", 200, "application/json"),
        ("/metrics", 200, "text/plain; version=0.0.4"),
        ("/healthz", 200, "text/plain"),
        ("/api/v1/summary", 401, ""),
    ] {
        let resp = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want_status, "{path}");
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(ctype.starts_with(want_type), "{path}: content type {ctype}");
        let body = resp.text().await.unwrap();
        for secret in [
            &key_hex,
            &key_b64,
            &worker.to_string(),
            &manager.to_string(),
        ] {
            assert!(!body.contains(secret.as_str()), "{path} shows a secret");
        }
        assert!(!body.contains("SWMTKN"), "{path} shows a join token");
        seen.push((path, body));
    }
    // The served document carries the gathered detail (and so the check above covered it).
    let doc: ClusterStatus = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(doc.volume_detail.unwrap().bricks_online, 1);
    assert!(doc.generated_at > 0);
    assert!(
        seen[0].1.contains("<title>"),
        "the page is the embedded HTML"
    );
    assert!(seen[2].1.contains("picluster_node_up{node=\"node4\""));
    // A join token travels only to a caller that proves the key.
    let resp = http
        .post(format!("http://{addr}/api/v1/swarm/join-token"))
        .body("{\"role\":\"worker\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(!resp.text().await.unwrap().contains("SWMTKN"));
}
