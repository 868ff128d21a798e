//! The authenticated client one agent uses to call another's API.

use super::model::{JoinTokenRequest, JoinTokenResponse, NodeSummary};
use crate::trust::{ClusterKey, HEADER_MAC, HEADER_NONCE, HEADER_TS};
use std::net::SocketAddr;
use std::time::Duration;

/// Errors of a call to a peer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The peer could not be reached or did not answer in time.
    #[error("peer {addr}: {source}")]
    Transport {
        /// The peer.
        addr: SocketAddr,
        /// The HTTP error.
        source: reqwest::Error,
    },
    /// The peer answered with an error status.
    #[error("peer {addr} answered {status}: {body}")]
    Status {
        /// The peer.
        addr: SocketAddr,
        /// HTTP status.
        status: u16,
        /// Its message.
        body: String,
    },
}

/// Signs and sends requests to peers' APIs.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    key: ClusterKey,
}

impl PeerClient {
    /// A client with short timeouts (a dead peer must not hold the agent up).
    pub fn new(key: ClusterKey) -> PeerClient {
        // reqwest is built without a default TLS provider; plain HTTP is used between agents, but the builder
        // still wants one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .build()
            .expect("HTTP client builds");
        PeerClient { http, key }
    }

    async fn call(
        &self,
        addr: SocketAddr,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ClientError> {
        let proof = self.key.sign_request(method.as_str(), path, &body);
        let resp = self
            .http
            .request(method, format!("http://{addr}{path}"))
            .header(HEADER_TS, proof.ts.to_string())
            .header(HEADER_NONCE, proof.nonce)
            .header(HEADER_MAC, proof.mac)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|source| ClientError::Transport { addr, source })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                addr,
                status,
                body: body.trim().chars().take(200).collect(),
            });
        }
        Ok(resp)
    }

    /// Fetches a peer's own reading.
    pub async fn summary(&self, addr: SocketAddr) -> Result<NodeSummary, ClientError> {
        self.call(addr, reqwest::Method::GET, "/api/v1/summary", Vec::new())
            .await?
            .json()
            .await
            .map_err(|source| ClientError::Transport { addr, source })
    }

    /// Asks a manager for a Swarm join token for `role` (`worker` or `manager`).
    pub async fn join_token(
        &self,
        addr: SocketAddr,
        role: &str,
    ) -> Result<JoinTokenResponse, ClientError> {
        let body = serde_json::to_vec(&JoinTokenRequest {
            role: role.to_string(),
        })
        .expect("serialises");
        self.call(
            addr,
            reqwest::Method::POST,
            "/api/v1/swarm/join-token",
            body,
        )
        .await?
        .json()
        .await
        .map_err(|source| ClientError::Transport { addr, source })
    }
}
