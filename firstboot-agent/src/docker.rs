//! Docker Engine and Swarm, through the Engine API over the local unix socket (bollard).
//!
//! The API version is negotiated on connect (Debian's dockerd 20.10 speaks API 1.41; bollard would otherwise
//! ask for a newer one). Every call has a timeout. Nothing is cached: each call reads the real state.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    LocalNodeState as ApiLocalState, Node, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum,
    NodeState as ApiNodeState, SwarmInfo, SwarmInitRequest, SwarmJoinRequest,
};
use bollard::query_parameters::{
    DeleteNodeOptions, LeaveSwarmOptions, ListNodesOptions, UpdateNodeOptions,
};
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
        let connect_err = |message: String| DockerError::Connect {
            socket: socket.to_path_buf(),
            message,
        };
        let path = socket
            .to_str()
            .ok_or_else(|| connect_err("the socket path is not UTF-8".into()))?;
        let client = bollard::Docker::connect_with_unix(
            path,
            DEFAULT_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| connect_err(e.to_string()))?;
        let client = tokio::time::timeout(DEFAULT_TIMEOUT, client.negotiate_version())
            .await
            .map_err(|_| {
                connect_err(format!(
                    "no answer to GET /version within {DEFAULT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| connect_err(format!("API version negotiation failed: {e}")))?;
        tracing::debug!(socket = %socket.display(), api = %client.client_version(), "connected to dockerd");
        Ok(Docker {
            client,
            socket: socket.to_path_buf(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Runs one API call with the timeout, naming it in errors.
    async fn call<T>(
        &self,
        operation: &str,
        fut: impl std::future::Future<Output = Result<T, BollardError>>,
    ) -> Result<T, DockerError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(DockerError::Timeout {
                operation: operation.to_string(),
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(api_error(operation, e)),
            Ok(Ok(v)) => Ok(v),
        }
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
        self.call("ping", self.client.ping()).await.map(drop)
    }

    /// This node's swarm state, from `/info`.
    pub async fn swarm_state(&self) -> Result<SwarmState, DockerError> {
        let info = self.call("info", self.client.info()).await?;
        let swarm = info.swarm.ok_or_else(|| DockerError::Unexpected {
            operation: "info".into(),
            message: "the answer has no Swarm section".into(),
        })?;
        Ok(swarm_state_from(swarm))
    }

    /// Creates a new swarm with this node as its first manager; returns the swarm's cluster id.
    pub async fn swarm_init(
        &self,
        advertise_addr: &str,
        listen_addr: &str,
    ) -> Result<String, DockerError> {
        let request = SwarmInitRequest {
            advertise_addr: Some(advertise_addr.to_string()),
            listen_addr: Some(listen_addr.to_string()),
            ..Default::default()
        };
        self.call("swarm init", self.client.init_swarm(request))
            .await?;
        let swarm = self
            .call("swarm inspect", self.client.inspect_swarm())
            .await?;
        swarm
            .id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| DockerError::Unexpected {
                operation: "swarm inspect".into(),
                message: "the new swarm has no id".into(),
            })
    }

    /// The swarm's join tokens (a manager only).
    pub async fn join_tokens(&self) -> Result<JoinTokens, DockerError> {
        let swarm = self
            .call("swarm inspect", self.client.inspect_swarm())
            .await?;
        let missing = || DockerError::Unexpected {
            operation: "swarm inspect".into(),
            message: "no join tokens in the answer (is this node a manager?)".into(),
        };
        let tokens = swarm.join_tokens.ok_or_else(missing)?;
        Ok(JoinTokens {
            worker: tokens
                .worker
                .filter(|t| !t.is_empty())
                .ok_or_else(missing)?,
            manager: tokens
                .manager
                .filter(|t| !t.is_empty())
                .ok_or_else(missing)?,
        })
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
        // An earlier join still runs in dockerd's background: wait for it (the caller retries later).
        if self.swarm_state().await?.local_state == LocalNodeState::Pending {
            return Err(DockerError::Api {
                operation: "swarm join".into(),
                status: None,
                message: "an earlier join of this node is still in progress; asking again later"
                    .into(),
            });
        }
        let request = SwarmJoinRequest {
            advertise_addr: Some(advertise_addr.to_string()),
            listen_addr: Some(listen_addr.to_string()),
            remote_addrs: Some(remote_managers.to_vec()),
            join_token: Some(token.to_string()),
            ..Default::default()
        };
        match self
            .call("swarm join", self.client.join_swarm(request))
            .await
        {
            // dockerd gives up waiting after its own timeout but keeps joining in the background.
            Err(DockerError::Api { message, .. }) if is_join_continuing(&message) => {
                tracing::info!("swarm join goes on in dockerd's background: {message}");
                Ok(())
            }
            other => other,
        }
    }

    /// Every node of the swarm (a manager only).
    pub async fn nodes(&self) -> Result<Vec<SwarmNode>, DockerError> {
        let nodes = self
            .call("node ls", self.client.list_nodes(None::<ListNodesOptions>))
            .await?;
        nodes.into_iter().map(node_from).collect()
    }

    /// Reads node `id`'s spec, lets `change` edit it, and writes it back; retries when another update came
    /// in between (dockerd answers "update out of sequence").
    async fn update_spec(
        &self,
        id: &str,
        change: impl Fn(&mut NodeSpec),
    ) -> Result<(), DockerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let node = self
                .call("node inspect", self.client.inspect_node(id))
                .await?;
            let version =
                node.version
                    .and_then(|v| v.index)
                    .ok_or_else(|| DockerError::Unexpected {
                        operation: "node inspect".into(),
                        message: format!("node {id} has no version"),
                    })?;
            let mut spec = node.spec.unwrap_or_default();
            change(&mut spec);
            let options = UpdateNodeOptions {
                version: version as i64,
            };
            match self
                .call("node update", self.client.update_node(id, spec, options))
                .await
            {
                Err(DockerError::Api { message, .. })
                    if attempt < 5 && message.contains("out of sequence") =>
                {
                    continue
                }
                other => return other,
            }
        }
    }

    /// Promotes or demotes node `id` (a manager only).
    pub async fn set_node_role(&self, id: &str, role: NodeRole) -> Result<(), DockerError> {
        let role = match role {
            NodeRole::Worker => NodeSpecRoleEnum::WORKER,
            NodeRole::Manager => NodeSpecRoleEnum::MANAGER,
        };
        self.update_spec(id, |spec| spec.role = Some(role)).await
    }

    /// Sets the availability of node `id` (a manager only).
    pub async fn set_node_availability(
        &self,
        id: &str,
        availability: Availability,
    ) -> Result<(), DockerError> {
        let a = match availability {
            Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
            Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
            Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
        };
        self.update_spec(id, |spec| spec.availability = Some(a))
            .await
    }

    /// Sets label `key=value` on node `id`, keeping its other labels (a manager only).
    pub async fn set_node_label(
        &self,
        id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), DockerError> {
        self.update_spec(id, |spec| {
            spec.labels
                .get_or_insert_with(Default::default)
                .insert(key.to_string(), value.to_string());
        })
        .await
    }

    /// Removes node `id` from the swarm (a manager only; `force` removes a node that is not down).
    pub async fn remove_node(&self, id: &str, force: bool) -> Result<(), DockerError> {
        self.call(
            "node rm",
            self.client
                .delete_node(id, Some(DeleteNodeOptions { force })),
        )
        .await
    }

    /// Makes this node leave its swarm (`force` is needed for a manager). Leaving when in no swarm succeeds.
    pub async fn leave(&self, force: bool) -> Result<(), DockerError> {
        if self.swarm_state().await?.local_state == LocalNodeState::Inactive {
            return Ok(());
        }
        match self
            .call(
                "swarm leave",
                self.client.leave_swarm(Some(LeaveSwarmOptions { force })),
            )
            .await
        {
            Err(DockerError::Api { message, .. }) if message.contains("not part of a swarm") => {
                Ok(())
            }
            other => other,
        }
    }
}

/// Whether dockerd's answer to a join says the join goes on in the background (it answered before the join ended).
fn is_join_continuing(message: &str) -> bool {
    message.contains("will continue in the background")
}

fn api_error(operation: &str, e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Api {
            operation: operation.to_string(),
            status: Some(status_code),
            message: message.trim().to_string(),
        },
        other => DockerError::Api {
            operation: operation.to_string(),
            status: None,
            message: other.to_string(),
        },
    }
}

/// The swarm part of `/info`, in this module's terms.
fn swarm_state_from(s: SwarmInfo) -> SwarmState {
    let local_state = match s.local_node_state {
        Some(ApiLocalState::PENDING) => LocalNodeState::Pending,
        Some(ApiLocalState::ACTIVE) => LocalNodeState::Active,
        Some(ApiLocalState::ERROR) => LocalNodeState::Error,
        Some(ApiLocalState::LOCKED) => LocalNodeState::Locked,
        _ => LocalNodeState::Inactive,
    };
    let non_empty = |v: Option<String>| v.filter(|x| !x.is_empty());
    SwarmState {
        local_state,
        node_id: non_empty(s.node_id),
        swarm_id: non_empty(s.cluster.and_then(|c| c.id)),
        node_addr: non_empty(s.node_addr),
        is_manager: s.control_available.unwrap_or(false),
        managers: s.managers.unwrap_or(0).max(0) as u32,
        nodes: s.nodes.unwrap_or(0).max(0) as u32,
        remote_managers: s
            .remote_managers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.addr)
            .collect(),
        error: non_empty(s.error),
    }
}

/// One entry of `/nodes`, in this module's terms.
fn node_from(n: Node) -> Result<SwarmNode, DockerError> {
    let id =
        n.id.filter(|i| !i.is_empty())
            .ok_or_else(|| DockerError::Unexpected {
                operation: "node ls".into(),
                message: "a node without an id".into(),
            })?;
    let spec = n.spec.unwrap_or_default();
    let status = n.status.unwrap_or_default();
    let manager = n.manager_status;
    let role = match spec.role {
        Some(NodeSpecRoleEnum::MANAGER) => NodeRole::Manager,
        _ => NodeRole::Worker,
    };
    let availability = match spec.availability {
        Some(NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
        Some(NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
        _ => Availability::Active,
    };
    let state = match status.state {
        Some(ApiNodeState::READY) => NodeState::Ready,
        Some(ApiNodeState::DOWN) => NodeState::Down,
        Some(ApiNodeState::DISCONNECTED) => NodeState::Disconnected,
        _ => NodeState::Unknown,
    };
    // dockerd reports 0.0.0.0 as the status address of some managers; their manager address is right.
    let manager_host = manager
        .as_ref()
        .and_then(|m| m.addr.as_deref())
        .map(|a| a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a).to_string());
    let addr = match status.addr.filter(|a| !a.is_empty() && a != "0.0.0.0") {
        Some(a) => a,
        None => manager_host.unwrap_or_default(),
    };
    Ok(SwarmNode {
        id,
        hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
        role,
        availability,
        state,
        addr,
        leader: manager.as_ref().and_then(|m| m.leader).unwrap_or(false),
        reachability: manager.and_then(|m| m.reachability).map(|r| r.to_string()),
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        version: n.version.and_then(|v| v.index).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/docker/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn swarm_state_of_a_node_in_no_swarm() {
        let info: SwarmInfo = serde_json::from_str(&fixture("info-swarm-inactive.json")).unwrap();
        let s = swarm_state_from(info);
        assert_eq!(s.local_state, LocalNodeState::Inactive);
        assert_eq!((s.node_id, s.swarm_id, s.is_manager), (None, None, false));
        assert_eq!((s.managers, s.nodes), (0, 0));
        assert_eq!(s.error, None);
    }

    #[test]
    fn swarm_state_of_a_first_manager() {
        let info: SwarmInfo = serde_json::from_str(&fixture("info-swarm-manager.json")).unwrap();
        let s = swarm_state_from(info);
        assert_eq!(s.local_state, LocalNodeState::Active);
        assert!(s.is_manager);
        assert_eq!(s.node_id.as_deref(), Some("anpf7qir5yvev0lm6hvk2n3mq"));
        assert_eq!(s.swarm_id.as_deref(), Some("e7m6w5vj40azgavthtxo786hz"));
        assert_eq!(s.node_addr.as_deref(), Some("10.77.0.1"));
        assert_eq!((s.managers, s.nodes), (1, 1));
        assert_eq!(s.remote_managers, vec!["10.77.0.1:2377".to_string()]);
    }

    #[test]
    fn node_list_of_a_one_node_swarm() {
        let nodes: Vec<Node> = serde_json::from_str(&fixture("nodes-one-manager.json")).unwrap();
        let n = nodes
            .into_iter()
            .map(node_from)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(n.len(), 1);
        let n = &n[0];
        assert_eq!(n.id, "anpf7qir5yvev0lm6hvk2n3mq");
        assert_eq!(n.hostname, "vm");
        assert_eq!(
            (n.role, n.availability, n.state),
            (NodeRole::Manager, Availability::Active, NodeState::Ready)
        );
        assert!(n.leader);
        assert_eq!(n.reachability.as_deref(), Some("reachable"));
        assert_eq!(n.addr, "10.77.0.1");
        assert_eq!(n.version, 9);
        assert!(n.labels.is_empty());
    }

    #[test]
    fn a_worker_that_is_down_with_labels() {
        let json = r#"{"ID":"w1","Version":{"Index":31},
            "Spec":{"Labels":{"cluster.shared-mounted":"true"},"Role":"worker","Availability":"drain"},
            "Description":{"Hostname":"node4"},
            "Status":{"State":"down","Addr":"10.77.0.4"}}"#;
        let n = node_from(serde_json::from_str(json).unwrap()).unwrap();
        assert_eq!(
            (n.role, n.availability, n.state),
            (NodeRole::Worker, Availability::Drain, NodeState::Down)
        );
        assert!(!n.leader);
        assert_eq!(n.reachability, None);
        assert_eq!(
            n.labels.get("cluster.shared-mounted").map(String::as_str),
            Some("true")
        );
        // A manager whose status address is 0.0.0.0 takes its manager address instead.
        let json = r#"{"ID":"m2","Spec":{"Role":"manager"},"Status":{"State":"ready","Addr":"0.0.0.0"},
            "ManagerStatus":{"Leader":false,"Reachability":"unreachable","Addr":"10.77.0.2:2377"}}"#;
        let n = node_from(serde_json::from_str(json).unwrap()).unwrap();
        assert_eq!(n.addr, "10.77.0.2");
        assert_eq!(n.reachability.as_deref(), Some("unreachable"));
        assert!(
            node_from(serde_json::from_str("{}").unwrap()).is_err(),
            "a node without id"
        );
    }

    #[test]
    fn join_tokens_do_not_show_in_debug() {
        let t = JoinTokens {
            worker: "SWMTKN-1-worker-secret".into(),
            manager: "SWMTKN-1-manager-secret".into(),
        };
        let shown = format!("{t:?} {t:#?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_that_says_so() {
        let e = Docker::connect_at(Path::new("/nonexistent/docker.sock"))
            .await
            .unwrap_err();
        assert!(matches!(e, DockerError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/docker.sock"), "{e}");
        assert!(e.to_string().contains("is dockerd running"), "{e}");
    }

    #[test]
    fn server_errors_keep_status_and_message() {
        let e = api_error(
            "swarm init",
            BollardError::DockerResponseServerError {
                status_code: 503,
                message: "This node is already part of a swarm.".into(),
            },
        );
        assert!(matches!(
            e,
            DockerError::Api {
                status: Some(503),
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "docker API `swarm init` failed: This node is already part of a swarm."
        );
    }

    #[test]
    fn a_join_answered_before_it_ended_counts_as_going_on() {
        // dockerd 20.10's answer when a manager join outlasts its wait (captured from ci/e2e on TCG-emulated Pis).
        let msg = "Timeout was reached before node joined. The attempt to join the swarm will continue in the \
                   background. Use the \"docker info\" command to see the current swarm status of your node.";
        assert!(super::is_join_continuing(msg));
        assert!(!super::is_join_continuing(
            "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."
        ));
    }
}
