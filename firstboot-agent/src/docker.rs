//! Docker Engine and Swarm, through the Engine API over the local unix socket (bollard).
//!
//! The API version is negotiated on connect (Debian's dockerd 20.10 speaks API 1.41; bollard would otherwise
//! ask for a newer one). Every call has a timeout. Nothing is cached: each call reads the real state.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Default socket of dockerd.
pub const DEFAULT_SOCKET: &str = "/run/docker.sock";

/// Default time an API call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to dockerd.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The socket could not be used or the version not negotiated.
    #[error("could not connect to dockerd at {socket}: {message}; is dockerd running?")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// What failed.
        message: String,
    },
    /// The API call failed.
    #[error("docker API `{operation}` failed: {message}")]
    Api {
        /// The operation (e.g. `swarm init`).
        operation: String,
        /// HTTP status when dockerd answered with an error.
        status: Option<u16>,
        /// dockerd's message (or the transport error).
        message: String,
    },
    /// The call did not finish in time.
    #[error("docker API `{operation}` did not answer within {timeout:?}; dockerd may be hung")]
    Timeout {
        /// The operation.
        operation: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// dockerd answered something this module cannot use.
    #[error("docker API `{operation}` answered unexpectedly: {message}")]
    Unexpected {
        /// The operation.
        operation: String,
        /// What was missing or wrong.
        message: String,
    },
}

/// This node's place in a swarm (`LocalNodeState` of `/info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalNodeState {
    /// Not in a swarm.
    Inactive,
    /// Joining.
    Pending,
    /// In a swarm.
    Active,
    /// Failed to join or lost its state.
    Error,
    /// The swarm is locked (autolock) and needs its unlock key.
    Locked,
}

/// The swarm as this node sees it (from `/info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmState {
    /// This node's state.
    pub local_state: LocalNodeState,
    /// This node's swarm node id (when in a swarm).
    pub node_id: Option<String>,
    /// The swarm's cluster id (only known to managers).
    pub swarm_id: Option<String>,
    /// The address this node advertises to the swarm.
    pub node_addr: Option<String>,
    /// Whether this node is a manager (control plane available).
    pub is_manager: bool,
    /// Number of managers (as far as this node knows; 0 on workers).
    pub managers: u32,
    /// Number of nodes (as far as this node knows; 0 on workers).
    pub nodes: u32,
    /// The addresses of the managers this node knows of.
    pub remote_managers: Vec<String>,
    /// The error dockerd reports for the swarm, if any.
    pub error: Option<String>,
}

/// The swarm's join tokens. Secret: its `Debug` does not show them, and it is not `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinTokens {
    /// Token to join as a worker.
    pub worker: String,
    /// Token to join as a manager.
    pub manager: String,
}

impl fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTokens")
            .field("worker", &"<redacted>")
            .field("manager", &"<redacted>")
            .finish()
    }
}

/// A swarm node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Runs tasks only.
    Worker,
    /// Part of the Raft control plane.
    Manager,
}

/// Whether the scheduler may put tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Tasks may run.
    Active,
    /// No new tasks.
    Pause,
    /// Tasks are moved away.
    Drain,
}

/// Whether a swarm node is up, as the managers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Unknown.
    Unknown,
    /// Starting or heartbeats missed for a short time.
    Down,
    /// Up.
    Ready,
    /// Disconnected.
    Disconnected,
}

/// One node of the swarm (from a manager's `/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmNode {
    /// Swarm node id.
    pub id: String,
    /// Host name the node reported.
    pub hostname: String,
    /// Role.
    pub role: NodeRole,
    /// Availability.
    pub availability: Availability,
    /// Up or down.
    pub state: NodeState,
    /// Address the node reported.
    pub addr: String,
    /// Whether it is the Raft leader.
    pub leader: bool,
    /// Manager reachability (`reachable`, `unreachable`, `unknown`); `None` for workers.
    pub reachability: Option<String>,
    /// Node labels (spec labels, set with [`Docker::set_node_label`]).
    pub labels: BTreeMap<String, String>,
    /// Spec version, needed to update the node.
    pub version: u64,
}

/// A connection to dockerd.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    socket: PathBuf,
    timeout: Duration,
}

impl fmt::Debug for Docker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Docker")
            .field("socket", &self.socket)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Docker {
    /// Connects to dockerd on [`DEFAULT_SOCKET`] and negotiates the API version.
    pub async fn connect() -> Result<Self, DockerError> {
        Self::connect_at(Path::new(DEFAULT_SOCKET)).await
    }

    /// Connects to dockerd on the unix socket at `socket` and negotiates the API version.
    pub async fn connect_at(socket: &Path) -> Result<Self, DockerError> {
        let _ = socket;
        todo!()
    }

    /// The same connection with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The API version in use after negotiation (e.g. `1.41`).
    pub fn api_version(&self) -> String {
        self.client.client_version().to_string()
    }

    /// Checks that dockerd answers.
    pub async fn ping(&self) -> Result<(), DockerError> {
        todo!()
    }

    /// This node's swarm state, from `/info`.
    pub async fn swarm_state(&self) -> Result<SwarmState, DockerError> {
        todo!()
    }

    /// Creates a new swarm with this node as its first manager; returns the swarm's cluster id.
    pub async fn swarm_init(
        &self,
        advertise_addr: &str,
        listen_addr: &str,
    ) -> Result<String, DockerError> {
        let _ = (advertise_addr, listen_addr);
        todo!()
    }

    /// The swarm's join tokens (a manager only).
    pub async fn join_tokens(&self) -> Result<JoinTokens, DockerError> {
        todo!()
    }

    /// Joins an existing swarm through one of `remote_managers` (`host:2377`) with `token`
    /// (the worker or the manager token decides the role).
    pub async fn swarm_join(
        &self,
        advertise_addr: &str,
        listen_addr: &str,
        remote_managers: &[String],
        token: &str,
    ) -> Result<(), DockerError> {
        let _ = (advertise_addr, listen_addr, remote_managers, token);
        todo!()
    }

    /// Every node of the swarm (a manager only).
    pub async fn nodes(&self) -> Result<Vec<SwarmNode>, DockerError> {
        todo!()
    }

    /// Promotes or demotes node `id` (a manager only).
    pub async fn set_node_role(&self, id: &str, role: NodeRole) -> Result<(), DockerError> {
        let _ = (id, role);
        todo!()
    }

    /// Sets the availability of node `id` (a manager only).
    pub async fn set_node_availability(
        &self,
        id: &str,
        availability: Availability,
    ) -> Result<(), DockerError> {
        let _ = (id, availability);
        todo!()
    }

    /// Sets label `key=value` on node `id`, keeping its other labels (a manager only).
    pub async fn set_node_label(
        &self,
        id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), DockerError> {
        let _ = (id, key, value);
        todo!()
    }

    /// Removes node `id` from the swarm (a manager only; `force` removes a node that is not down).
    pub async fn remove_node(&self, id: &str, force: bool) -> Result<(), DockerError> {
        let _ = (id, force);
        todo!()
    }

    /// Makes this node leave its swarm (`force` is needed for a manager). Leaving when in no swarm succeeds.
    pub async fn leave(&self, force: bool) -> Result<(), DockerError> {
        let _ = force;
        todo!()
    }
}
