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
    /// Status page addition (issue 5): the detail gathered in the background by
    /// [`crate::agent::observe_status`], merged into every served status document.
    pub observed: RwLock<crate::agent::observe_status::Observed>,
}

/// The router with every route.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/status", get(status))
        .route("/", get(page))
        .route("/metrics", get(metrics))
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
    Json(served_status(&s))
}

// ---- Status page additions (issue 5) ----

/// The status page, embedded in the binary (no external asset: it works with no internet).
pub const STATUS_PAGE: &str = include_str!("../../assets/status.html");

/// The status document as served: the reconcile loop's document plus the detail gathered in the background.
/// Reads memory only.
pub fn served_status(s: &Shared) -> ClusterStatus {
    let mut status = s.status.read().expect("status lock").clone();
    s.observed
        .read()
        .expect("observed lock")
        .apply(&mut status, crate::trust::unix_now());
    status
}

async fn page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        crate::metrics::render(&served_status(&s)),
    )
        .into_response()
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

// Status page (issue 5): the served endpoints hold no secret.
#[cfg(test)]
mod status_page_tests;
