//! `ensure-services` against the real glusterd and dockerd, as in the lab (no systemd): both daemons started in
//! private network, mount and PID namespaces (so nothing leaks: when the namespace's first process exits, the
//! kernel ends every daemon in it), each with its own /run, state and data directories. Needs root and Debian's
//! glusterfs-server and docker.io.

use std::process::Command;

const SCRIPT: &str = r#"
set -u
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p "$W/lib" "$W/log" "$W/docker" "$W/exec"
mount --bind "$W/lib" /var/lib/glusterd
mount --bind "$W/log" /var/log/glusterfs
ip link set lo up
glusterd -N > "$W/glusterd.out" 2>&1 &
dockerd --data-root "$W/docker" --exec-root "$W/exec" --pidfile "$W/docker.pid" -H unix:///run/docker.sock \
  --bridge=none --iptables=false --ip6tables=false > "$W/dockerd.out" 2>&1 &
D=$!
# Poll (with a deadline) until both sockets exist.
i=0
while [ $i -lt 300 ] && ! { [ -S /run/docker.sock ] && [ -S /run/glusterd.socket ]; }; do i=$((i+1)); sleep 0.1; done
# glusterd creates its socket before it answers: in the lab, daemons answer before the agent starts. Poll (deadline).
i=0
while [ $i -lt 120 ] && ! gluster --mode=script --timeout=5 pool list >/dev/null 2>&1; do i=$((i+1)); sleep 0.5; done
"$AGENT" --config "$W/cluster.toml" ensure-services --json > "$W/up.json" 2> "$W/up.err"
echo $? > "$W/up.rc"
kill $D
while kill -0 $D 2>/dev/null; do sleep 0.1; done
"$AGENT" --config "$W/cluster.toml" ensure-services --json > "$W/down.json" 2> "$W/down.err"
echo $? > "$W/down.rc"
"#;

#[test]
fn services_real_glusterd_and_dockerd_without_systemd() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let w = tempfile::Builder::new()
        .prefix("services-test-")
        .tempdir()
        .unwrap();
    let config = firstboot_agent::config::ClusterConfig::generate("svc", 4);
    std::fs::write(w.path().join("cluster.toml"), config.to_toml()).unwrap();
    let st = Command::new("timeout")
        .args([
            "180",
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .args(["sh", "-c", SCRIPT])
        .env("W", w.path())
        .env("AGENT", env!("CARGO_BIN_EXE_firstboot-agent"))
        .env("PATH", "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")
        .status()
        .unwrap();
    assert!(st.success(), "namespace script failed: {st}");
    let read = |n: &str| std::fs::read_to_string(w.path().join(n)).unwrap_or_default();

    assert_eq!(
        read("up.rc").trim(),
        "0",
        "stderr: {}\nglusterd: {}\ndockerd: {}",
        read("up.err"),
        read("glusterd.out"),
        read("dockerd.out")
    );
    let up: serde_json::Value = serde_json::from_str(&read("up.json")).unwrap();
    assert_eq!(up["manager"], "direct");
    let names: Vec<&str> = up["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["running"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["glusterd", "dockerd"]);

    // dockerd stopped: a clear error that names it and its socket.
    assert_eq!(read("down.rc").trim(), "1");
    let err = read("down.err");
    assert!(
        err.contains("dockerd is not running") && err.contains("/run/docker.sock"),
        "{err}"
    );
}
