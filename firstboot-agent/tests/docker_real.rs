//! The docker wrappers against a real dockerd (root only), in private namespaces (see `support_ns`):
//! its own data root, exec root, pid file, socket, bridge address and cgroup parent.
//!
//! Swarm init, join tokens, node list (one leader manager), a node label, leave.

mod support_ns;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use firstboot_agent::docker::{Availability, Docker, LocalNodeState, NodeRole, NodeState};
use support_ns::{wait_for, NODE_ADDR};

#[test]
fn docker_wrappers_against_a_real_dockerd() {
    if let Some(why) = support_ns::skip_reason(&["dockerd", "containerd"]) {
        eprintln!("SKIPPED docker_wrappers_against_a_real_dockerd: {why}");
        return;
    }
    support_ns::run_inner("inner_docker", Duration::from_secs(150));
}

/// Stops dockerd (it stops its containerd), even when the test panics.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut d) = self.0.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = d.wait();
        }
    }
}

fn start_dockerd(work: &Path) -> (Child, std::path::PathBuf) {
    let socket = work.join("docker.sock");
    let log = std::fs::File::create(work.join("dockerd.log")).unwrap();
    let child = Command::new("dockerd")
        .arg("--data-root")
        .arg(work.join("data"))
        .arg("--exec-root")
        .arg(work.join("exec"))
        .arg("--pidfile")
        .arg(work.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(["--bip", "10.199.0.1/24"])
        .arg("--cgroup-parent")
        .arg(format!("/firstboot-docker-test-{}", std::process::id()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting dockerd");
    (child, socket)
}

#[tokio::test]
#[ignore = "runs inside private namespaces, started by docker_wrappers_against_a_real_dockerd"]
async fn inner_docker() {
    if !support_ns::is_inner() {
        return;
    }
    support_ns::setup_namespace();
    let work = tempfile::tempdir().unwrap();
    let (child, socket) = start_dockerd(work.path());
    let _guard = Guard(Some(child));

    let log = work.path().join("dockerd.log");
    let docker = wait_for("dockerd to answer", Duration::from_secs(60), || async {
        if !socket.exists() {
            return None;
        }
        let d = Docker::connect_at(&socket).await.ok()?;
        d.ping().await.ok()?;
        Some(d)
    })
    .await;
    assert_eq!(
        docker.api_version(),
        "1.41",
        "negotiated down to Debian dockerd 20.10's API"
    );

    let state = docker.swarm_state().await.unwrap();
    assert_eq!(state.local_state, LocalNodeState::Inactive, "{state:?}");
    assert!(!state.is_manager && state.swarm_id.is_none());
    docker
        .leave(false)
        .await
        .expect("leaving when in no swarm is fine");

    let swarm_id = docker
        .swarm_init(NODE_ADDR, "0.0.0.0:2377")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    let again = docker
        .swarm_init(NODE_ADDR, "0.0.0.0:2377")
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("already part of a swarm"),
        "{again}"
    );

    let state = docker.swarm_state().await.unwrap();
    assert_eq!(state.local_state, LocalNodeState::Active);
    assert!(state.is_manager);
    assert_eq!(state.swarm_id.as_deref(), Some(swarm_id.as_str()));
    assert_eq!((state.managers, state.nodes), (1, 1));
    assert_eq!(state.node_addr.as_deref(), Some(NODE_ADDR));

    let tokens = docker.join_tokens().await.unwrap();
    assert!(tokens.worker.starts_with("SWMTKN-1-") && tokens.manager.starts_with("SWMTKN-1-"));
    assert_ne!(tokens.worker, tokens.manager);
    let shown = format!("{tokens:?}");
    assert!(
        !shown.contains(&tokens.worker) && !shown.contains(&tokens.manager),
        "{shown}"
    );

    let nodes = docker.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let me = &nodes[0];
    assert_eq!(Some(&me.id), state.node_id.as_ref());
    assert_eq!(me.role, NodeRole::Manager);
    assert!(me.leader);
    assert_eq!(me.state, NodeState::Ready);
    assert_eq!(me.availability, Availability::Active);
    assert_eq!(me.reachability.as_deref(), Some("reachable"));
    assert_eq!(me.addr, NODE_ADDR);

    docker
        .set_node_label(&me.id, "cluster.shared-mounted", "true")
        .await
        .unwrap();
    docker
        .set_node_label(&me.id, "cluster.node", "node1")
        .await
        .unwrap();
    let me = docker.nodes().await.unwrap().remove(0);
    assert_eq!(
        me.labels.get("cluster.shared-mounted").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        me.labels.get("cluster.node").map(String::as_str),
        Some("node1"),
        "other labels kept"
    );
    docker
        .set_node_availability(&me.id, Availability::Drain)
        .await
        .unwrap();
    docker
        .set_node_availability(&me.id, Availability::Active)
        .await
        .unwrap();
    docker
        .set_node_role(&me.id, NodeRole::Manager)
        .await
        .unwrap();
    let e = docker
        .set_node_label("nosuchnode", "k", "v")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("node inspect"), "{e}");

    let e = docker.leave(false).await.unwrap_err();
    assert!(
        e.to_string().contains("swarm leave"),
        "a lone manager must be forced out: {e}"
    );
    docker.leave(true).await.unwrap();
    let state = docker.swarm_state().await.unwrap();
    assert_eq!(state.local_state, LocalNodeState::Inactive);
}
