//! The agent's HTTP API (axum), on `0.0.0.0:<agent.api_port>`.
//!
//! Unauthenticated, read-only: `GET /healthz`, `GET /api/status` (never a secret).
//! Authenticated with the cluster key ([`crate::trust`]; anything else gets 401 and changes nothing):
//! `GET /api/v1/summary` (this node's own reading) and `POST /api/v1/swarm/join-token` (the only way a Swarm join
//! token travels). Every handler answers from memory: the agent's background loop reads glusterd, dockerd and the
//! mount table and stores the result in [`Shared`]; no handler runs a command or waits on one.

pub mod client;
pub mod model;

use crate::trust::{Verifier, HEADER_MAC, HEADER_NONCE, HEADER_TS};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use model::{ClusterStatus, JoinTokenRequest, JoinTokenResponse, NodeSummary};
use std::sync::{Arc, RwLock};

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

/// Swarm join tokens held in memory on a manager (a secret: never serialised into status or logs).
#[derive(Clone, Default)]
pub struct JoinTokens {
    /// Worker token.
    pub worker: String,
    /// Manager token.
    pub manager: String,
    /// Manager addresses (`ip:2377`) a joiner should use.
    pub remote_addrs: Vec<String>,
}

/// What the API serves, kept current by the agent.
pub struct Shared {
    /// The public status document.
    pub status: RwLock<ClusterStatus>,
    /// This node's own reading.
    pub summary: RwLock<NodeSummary>,
    /// Join tokens when this node is a manager.
    pub tokens: RwLock<Option<JoinTokens>>,
    /// Checks request proofs.
    pub verifier: Verifier,
}

/// The router with every route.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/status", get(status))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/swarm/join-token", post(join_token))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).await
}

async fn status(State(s): State<Arc<Shared>>) -> Json<ClusterStatus> {
    Json(s.status.read().expect("status lock").clone())
}

fn authenticate(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), crate::trust::TrustError> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Verifier::proof_from_headers(h(HEADER_TS), h(HEADER_NONCE), h(HEADER_MAC))
        .and_then(|proof| {
            s.verifier
                .verify_request(method.as_str(), path, body, &proof)
        })
        .inspect_err(|e| tracing::warn!(%method, path, "refused request: {e}"))
}

fn unauthorized(e: crate::trust::TrustError) -> Response {
    (StatusCode::UNAUTHORIZED, format!("unauthorized: {e}\n")).into_response()
}

async fn summary(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authenticate(&s, &method, &uri, &headers, &body) {
        return unauthorized(e);
    }
    Json(s.summary.read().expect("summary lock").clone()).into_response()
}

async fn join_token(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authenticate(&s, &method, &uri, &headers, &body) {
        return unauthorized(e);
    }
    let Ok(req) = serde_json::from_slice::<JoinTokenRequest>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "body must be {\"role\":\"worker\"|\"manager\"}\n",
        )
            .into_response();
    };
    let tokens = s.tokens.read().expect("tokens lock").clone();
    let Some(t) = tokens else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is not a Swarm manager (yet); ask another\n",
        )
            .into_response();
    };
    let token = match req.role.as_str() {
        "worker" => t.worker,
        "manager" => t.manager,
        _ => return (StatusCode::BAD_REQUEST, "role must be worker or manager\n").into_response(),
    };
    Json(JoinTokenResponse {
        token,
        remote_addrs: t.remote_addrs,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::client::{ClientError, PeerClient};
    use super::model::{Health, STATUS_SCHEMA};
    use super::*;
    use crate::trust::ClusterKey;

    const SECRET_TOKEN: &str = "SWMTKN-1-secret-worker-token";

    async fn server(key: &ClusterKey) -> (std::net::SocketAddr, Arc<Shared>) {
        let shared = Arc::new(Shared {
            status: RwLock::new(ClusterStatus {
                schema: STATUS_SCHEMA,
                cluster_name: "lab".into(),
                cluster_id: "c-1".into(),
                health: Health::Forming,
                phase: "discovering".into(),
                detail: String::new(),
                this_node: "pc-1".into(),
                expected_nodes: 4,
                present_nodes: 1,
                nodes: vec![],
                volume: None,
                swarm: None,
                phases: vec![],
            }),
            summary: RwLock::new(NodeSummary {
                node_id: "n1".into(),
                ..Default::default()
            }),
            tokens: RwLock::new(None),
            verifier: Verifier::new(key.clone()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, shared.clone()));
        (addr, shared)
    }

    fn status_of(r: Result<impl std::fmt::Debug, ClientError>) -> u16 {
        match r {
            Err(ClientError::Status { status, .. }) => status,
            Ok(_) => 200,
            Err(e) => panic!("transport error: {e}"),
        }
    }

    #[tokio::test]
    async fn only_the_cluster_key_reads_the_summary_and_tokens() {
        let key = ClusterKey::new(&[1; 32]);
        let (addr, shared) = server(&key).await;
        let good = PeerClient::new(key.clone());
        let bad = PeerClient::new(ClusterKey::new(&[2; 32]));
        assert_eq!(good.summary(addr).await.unwrap().node_id, "n1");
        assert_eq!(status_of(bad.summary(addr).await), 401);
        // No manager yet: no token for anyone.
        assert_eq!(status_of(good.join_token(addr, "worker").await), 503);
        *shared.tokens.write().unwrap() = Some(JoinTokens {
            worker: SECRET_TOKEN.into(),
            manager: "SWMTKN-1-secret-manager-token".into(),
            remote_addrs: vec!["10.0.0.1:2377".into()],
        });
        assert_eq!(status_of(bad.join_token(addr, "worker").await), 401);
        assert_eq!(
            good.join_token(addr, "worker").await.unwrap().token,
            SECRET_TOKEN
        );
        assert_eq!(status_of(good.join_token(addr, "root").await), 400);
        // Unsigned requests and replays are refused.
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{addr}/api/v1/swarm/join-token"))
            .body("{\"role\":\"worker\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let body = b"{\"role\":\"worker\"}".to_vec();
        let proof = key.sign_request("POST", "/api/v1/swarm/join-token", &body);
        let send = || {
            http.post(format!("http://{addr}/api/v1/swarm/join-token"))
                .header(HEADER_TS, proof.ts.to_string())
                .header(HEADER_NONCE, proof.nonce.clone())
                .header(HEADER_MAC, proof.mac.clone())
                .body(body.clone())
                .send()
        };
        assert_eq!(send().await.unwrap().status().as_u16(), 200);
        assert_eq!(send().await.unwrap().status().as_u16(), 401, "replay");
        // The public status never carries a secret.
        let page = http
            .get(format!("http://{addr}/api/status"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("\"health\":\"forming\""), "{page}");
        assert!(!page.contains("SWMTKN"), "{page}");
        assert!(!page.contains(&hex::encode([1u8; 32])), "{page}");
    }
}
