//! The lab itself, without the agent: real glusterd and dockerd on three namespaced nodes can form a pool, a
//! replicated volume on XFS bricks and a swarm by hand; mDNS crosses the bridge beside avahi; a power cut and a
//! restart keep a node's identity; `down` leaves nothing behind; two labs run side by side.
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.

use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// Peers glusterd on `node` reports as connected in `gluster --xml pool list` (itself included).
fn connected_peers(lab: &Lab, node: &str) -> anyhow::Result<usize> {
    let xml = lab.exec_ok(node, &["gluster", "--xml", "pool", "list"])?;
    anyhow::ensure!(xml.contains("<opRet>0</opRet>"), "pool list failed: {xml}");
    Ok(xml.matches("<connected>1</connected>").count())
}

/// The UUID glusterd on `node` calls itself.
fn glusterd_uuid(lab: &Lab, node: &str) -> anyhow::Result<String> {
    let info = lab.exec_ok(node, &["cat", "/var/lib/glusterd/glusterd.info"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("UUID="))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no UUID in glusterd.info: {info}"))
}

/// Everything a lab leaves on the host while it is up, by its names: namespaces, links, loop devices.
fn host_traces(id: &str, bridge: &str, state_dir: &Path) -> Vec<String> {
    let mut traces = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{id}-node")) {
                traces.push(format!("network namespace {name}"));
            }
        }
    }
    // The bridge is `pb<hash>`, the veths `p<hash>n<i>`: both contain the hash.
    let hash = bridge.trim_start_matches("pb");
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(hash) {
                traces.push(format!("link {name}"));
            }
        }
    }
    let loops = std::process::Command::new("losetup")
        .args(["-l", "-n", "-O", "NAME,BACK-FILE"])
        .output()
        .expect("losetup runs");
    for line in String::from_utf8_lossy(&loops.stdout).lines() {
        if line.contains(&*state_dir.to_string_lossy()) {
            traces.push(format!("loop device {line}"));
        }
    }
    if state_dir.exists() {
        traces.push(format!("state directory {}", state_dir.display()));
    }
    traces
}

#[test]
fn three_nodes_pool_volume_swarm_mdns_power_cut_and_clean_down() -> anyhow::Result<()> {
    if !require_root("lab_smoke::three_nodes") {
        return Ok(());
    }
    let t0 = Instant::now();
    macro_rules! step {
        ($($arg:tt)*) => { eprintln!("[{:6.1} s] {}", t0.elapsed().as_secs_f64(), format!($($arg)*)) };
    }
    let lab = Lab::up(LabOptions::new(3).no_agent())?;
    eprintln!("ci/lab up of 3 nodes took {:?}", lab.up_time());
    let nodes = lab.node_names();
    let ips: Vec<String> = nodes.iter().map(|n| lab.ip(n)).collect::<Result<_, _>>()?;

    // Every node has its own glusterd, dockerd, host name and machine id.
    let mut ids = Vec::new();
    for node in &nodes {
        assert_eq!(
            connected_peers(&lab, node)?,
            1,
            "{node}: a fresh glusterd knows only itself"
        );
        let docker_id = lab.exec_ok(node, &["docker", "info", "--format", "{{.ID}}"])?;
        assert!(
            !docker_id.trim().is_empty(),
            "{node}: docker info gave no id"
        );
        assert_eq!(lab.exec_ok(node, &["hostname"])?.trim(), node.as_str());
        ids.push(lab.exec_ok(node, &["cat", "/etc/machine-id"])?);
        ids.push(glusterd_uuid(&lab, node)?);
        ids.push(docker_id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "machine ids, glusterd UUIDs and docker ids must all differ: {ids:?}"
    );

    step!("identities checked");
    // node1 reaches node3 by address (node3's glusterd port).
    lab.exec_ok(
        "node1",
        &["bash", "-c", &format!("exec 3<>/dev/tcp/{}/24007", ips[2])],
    )?;

    // A pool, a replica-3 volume on XFS bricks on the cards, mounted everywhere; data crosses nodes intact.
    for node in &nodes {
        lab.brick(node)?;
        let fs = lab.exec_ok(
            node,
            &["findmnt", "-n", "-o", "FSTYPE", "/srv/gluster/brick1"],
        )?;
        assert_eq!(fs.trim(), "xfs", "{node}: the brick is not XFS");
    }
    for ip in &ips[1..] {
        lab.exec_ok("node1", &["gluster", "peer", "probe", ip])?;
    }
    wait_until(
        Duration::from_secs(30),
        "3 connected peers on every node",
        || {
            for node in &nodes {
                if connected_peers(&lab, node)? != 3 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    let mut create = vec![
        "gluster",
        "--mode=script",
        "volume",
        "create",
        "shared",
        "replica",
        "3",
    ];
    let bricks: Vec<String> = ips
        .iter()
        .map(|ip| format!("{ip}:/srv/gluster/brick1/brick"))
        .collect();
    create.extend(bricks.iter().map(String::as_str));
    lab.exec_ok("node1", &create)?;
    // A power-cut node answers nothing (no RST): clients wait network.ping-timeout (42 s by default) before they
    // give up on its brick. The agent chooses its own value; a short one keeps this test fast.
    lab.exec_ok(
        "node1",
        &[
            "gluster",
            "--mode=script",
            "volume",
            "set",
            "shared",
            "network.ping-timeout",
            "5",
        ],
    )?;
    lab.exec_ok(
        "node1",
        &["gluster", "--mode=script", "volume", "start", "shared"],
    )?;
    step!("volume created and started");
    for (node, ip) in nodes.iter().zip(&ips) {
        lab.exec_ok(
            node,
            &[
                "mount",
                "-t",
                "glusterfs",
                &format!("{ip}:/shared"),
                "/mnt/shared",
            ],
        )?;
    }
    let written = lab.sh(
        "node1",
        "head -c 5000000 /dev/urandom > /mnt/shared/probe.bin && sync && sha256sum < /mnt/shared/probe.bin",
    )?;
    let read = lab.sh("node3", "sha256sum < /mnt/shared/probe.bin")?;
    assert_eq!(
        read, written,
        "the file read on node3 differs from the one written on node1"
    );

    step!("file read back on node3");
    // A swarm by hand: node1 initialises, node2 joins as a worker.
    lab.exec_ok(
        "node1",
        &["docker", "swarm", "init", "--advertise-addr", &ips[0]],
    )?;
    let token = lab.exec_ok("node1", &["docker", "swarm", "join-token", "-q", "worker"])?;
    lab.exec_ok(
        "node2",
        &[
            "docker",
            "swarm",
            "join",
            "--advertise-addr",
            &ips[1],
            "--token",
            token.trim(),
            &format!("{}:2377", ips[0]),
        ],
    )?;
    wait_until(
        Duration::from_secs(30),
        "a swarm of 2 nodes seen by node1",
        || {
            let out = lab.exec_ok(
                "node1",
                &[
                    "docker",
                    "node",
                    "ls",
                    "--format",
                    "{{.Hostname}} {{.Status}}",
                ],
            )?;
            Ok(out.lines().filter(|l| l.ends_with(" Ready")).count() == 2)
        },
    )?;

    step!("swarm of 2");
    // mDNS crosses the bridge: node1's avahi publishes a service, python-zeroconf on node3 (beside node3's avahi,
    // which holds port 5353) browses and resolves it, TXT included.
    lab.sh(
        "node1",
        r#"cat > /etc/avahi/services/lab-smoke.service <<'XML'
<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group>
  <name>lab-smoke-node1</name>
  <service><type>_pilab-smoke._tcp</type><port>7780</port><txt-record>hello=node1</txt-record></service>
</service-group>
XML"#,
    )?;
    let browse = r#"
import sys, time
from zeroconf import Zeroconf, ServiceBrowser, ServiceListener
found = {}
class L(ServiceListener):
    def add_service(self, zc, t, name): found[name] = zc.get_service_info(t, name, 3000)
    def update_service(self, zc, t, name): pass
    def remove_service(self, zc, t, name): pass
zc = Zeroconf()
ServiceBrowser(zc, "_pilab-smoke._tcp.local.", L())
end = time.time() + 20
while time.time() < end and not any(i is not None for i in found.values()):
    time.sleep(0.1)
for name, info in found.items():
    if info is not None:
        print(name, info.parsed_addresses(), info.port, info.properties.get(b"hello", b"").decode())
zc.close()
"#;
    let seen = lab.exec_ok("node3", &["python3", "-c", browse])?;
    assert!(
        seen.contains("lab-smoke-node1._pilab-smoke._tcp.local.")
            && seen.contains(&ips[0])
            && seen.contains("7780 node1"),
        "node3 did not see node1's mDNS service with its address, port and TXT: {seen:?}"
    );

    step!("mDNS browsed");
    // node2 records its brick and the shared volume in /etc/fstab, as the agent does; the lab's boot mounts them.
    lab.sh(
        "node2",
        &format!(
            "uuid=$(blkid -o value -s UUID \"$(findmnt -n -o SOURCE /srv/gluster/brick1)\") && \
             printf 'UUID=%s\\t/srv/gluster/brick1\\txfs\\tdefaults,noatime,nofail\\t0\\t0\\n' \"$uuid\" >> /etc/fstab && \
             echo '{}:/shared /mnt/shared glusterfs defaults,_netdev,nofail,backup-volfile-servers={}:{} 0 0' >> /etc/fstab",
            ips[1], ips[0], ips[2]
        ),
    )?;

    // Power cut of node2: all its processes die at once; it boots again with the same identity and state.
    let uuid2 = glusterd_uuid(&lab, "node2")?;
    let machine_id2 = lab.exec_ok("node2", &["cat", "/etc/machine-id"])?;
    let before = lab.status()?;
    let node2_pids: Vec<u64> = before["nodes"][1]["pids"]
        .as_object()
        .expect("pids object")
        .values()
        .filter_map(|v| v.as_u64())
        .chain(before["nodes"][1]["init_pid"].as_u64())
        .collect();
    assert_eq!(
        node2_pids.len(),
        4,
        "init, glusterd, dockerd, avahi: {before}"
    );
    let cut_at = Instant::now();
    lab.kill("node2")?;
    eprintln!("ci/lab kill took {:?}", cut_at.elapsed());
    for pid in &node2_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} of node2 survived the power cut"
        );
    }
    assert!(
        !lab.exec("node2", &["true"])?.status.success(),
        "exec on a powered-off node must fail"
    );
    assert_eq!(lab.status()?["nodes"][1]["state"], "off");
    // The survivors still serve the data.
    step!("node2 off");
    assert_eq!(
        lab.sh("node3", "sha256sum < /mnt/shared/probe.bin")?,
        written,
        "data on node3 with node2 off"
    );
    step!("read on node3 with node2 off");
    let boot = Instant::now();
    lab.start("node2")?;
    eprintln!("ci/lab start took {:?}", boot.elapsed());
    assert_eq!(
        glusterd_uuid(&lab, "node2")?,
        uuid2,
        "node2's glusterd came back with another identity"
    );
    assert_eq!(
        lab.exec_ok("node2", &["cat", "/etc/machine-id"])?,
        machine_id2,
        "node2's machine id changed"
    );
    wait_until(
        Duration::from_secs(60),
        "node2 back in the pool of 3 with its brick online and the volume mounted",
        || {
            let status = lab.gluster_ok("node1", &["--xml", "volume", "status", "shared"])?;
            let online = status.matches("<status>1</status>").count();
            Ok(connected_peers(&lab, "node1")? == 3
            && online >= 6 // 3 bricks + 3 self-heal daemons
            && lab.exec("node2", &["mountpoint", "-q", "/mnt/shared"])?.status.success())
        },
    )?;
    assert_eq!(
        lab.sh("node2", "sha256sum < /mnt/shared/probe.bin")?,
        written,
        "data on node2 after restart"
    );

    step!("node2 back with brick and volume");
    // down leaves nothing of the lab on the host.
    let status = lab.status()?;
    let bridge = status["bridge"].as_str().expect("bridge").to_string();
    let mut pids: Vec<u64> = Vec::new();
    for n in status["nodes"].as_array().expect("nodes") {
        pids.extend(
            n["pids"]
                .as_object()
                .expect("pids")
                .values()
                .filter_map(|v| v.as_u64()),
        );
        pids.extend(n["init_pid"].as_u64());
    }
    let (id, state_dir) = (lab.id().to_string(), lab.state_dir());
    assert!(
        !host_traces(&id, &bridge, &state_dir).is_empty(),
        "the trace finder must see a running lab"
    );
    lab.down()?;
    step!("down");
    assert_eq!(
        host_traces(&id, &bridge, &state_dir),
        Vec::<String>::new(),
        "left behind by ci/lab down"
    );
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the lab survived down"
        );
    }
    let rules = std::process::Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains(&format!("pilab:{id}")),
        "the lab's FORWARD rule survived down"
    );
    Ok(())
}

#[test]
fn two_labs_run_side_by_side_apart() -> anyhow::Result<()> {
    if !require_root("lab_smoke::two_labs") {
        return Ok(());
    }
    let a = Lab::up(LabOptions::new(1).no_agent())?;
    let b = Lab::up(LabOptions::new(1).no_agent())?;
    let (sa, sb) = (a.status()?, b.status()?);
    assert_ne!(sa["subnet"], sb["subnet"], "two labs share a subnet");
    assert_ne!(sa["bridge"], sb["bridge"], "two labs share a bridge");
    for lab in [&a, &b] {
        assert_eq!(connected_peers(lab, "node1")?, 1);
    }
    // Apart: a node of lab A cannot reach a node of lab B.
    let ip_b = b.ip("node1")?;
    let reach = a.exec(
        "node1",
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{ip_b}/24007"),
        ],
    )?;
    assert!(
        !reach.status.success(),
        "lab A's node reached lab B's node {ip_b}"
    );
    // Taking one down leaves the other running.
    a.down()?;
    assert_eq!(
        connected_peers(&b, "node1")?,
        1,
        "lab B's node died with lab A"
    );
    b.down()?;
    Ok(())
}

#[test]
fn down_cleans_up_after_lost_state() -> anyhow::Result<()> {
    if !require_root("lab_smoke::down_after_lost_state") {
        return Ok(());
    }
    let lab = Lab::up(LabOptions::new(1).no_agent())?;
    let bridge = lab.status()?["bridge"]
        .as_str()
        .expect("bridge")
        .to_string();
    let (id, state_dir) = (lab.id().to_string(), lab.state_dir());
    // As after a crash in the middle of `up`: the pid files and the card file are gone, the processes, the
    // namespace, the loop device and the bridge are not.
    std::fs::remove_dir_all(state_dir.join("node1/pids"))?;
    std::fs::remove_file(state_dir.join("node1/card.img"))?;
    lab.down()?;
    assert_eq!(
        host_traces(&id, &bridge, &state_dir),
        Vec::<String>::new(),
        "left behind by ci/lab down"
    );
    Ok(())
}

#[test]
fn cut_is_a_dead_peer_for_gluster_and_heal_brings_it_back() -> anyhow::Result<()> {
    if !require_root("lab_smoke::cut_and_heal") {
        return Ok(());
    }
    let lab = Lab::up(LabOptions::new(2).no_agent())?;
    let ip2 = lab.ip("node2")?;
    lab.exec_ok("node1", &["gluster", "peer", "probe", &ip2])?;
    wait_until(Duration::from_secs(30), "a pool of 2", || {
        Ok(connected_peers(&lab, "node1")? == 2 && connected_peers(&lab, "node2")? == 2)
    })?;
    lab.cut("node2")?;
    assert_eq!(lab.status()?["nodes"][1]["state"], "cut");
    let cut_at = Instant::now();
    // No RST crosses a pulled cable: glusterd notices by TCP keepalive (about 26 s seen here).
    wait_until(
        Duration::from_secs(90),
        "node1 to see node2 disconnected",
        || Ok(connected_peers(&lab, "node1")? == 1),
    )?;
    eprintln!("node1 saw node2 disconnected after {:?}", cut_at.elapsed());
    // node2 is alive behind its cable: its own glusterd still answers.
    assert!(connected_peers(&lab, "node2")? >= 1);
    lab.heal("node2")?;
    let healed_at = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "node1 to see node2 connected again",
        || Ok(connected_peers(&lab, "node1")? == 2),
    )?;
    eprintln!("reconnected {:?} after heal", healed_at.elapsed());
    assert_eq!(lab.status()?["nodes"][1]["state"], "running");
    lab.down()?;
    Ok(())
}

/// The agent binary the lab would start (`FIRSTBOOT_AGENT_BIN`, else the workspace's debug build), if it has `run`.
/// `ci/lab partition` splits the bridge into groups (2|2, then 1|3): a node reaches its own group only; `join`
/// restores every path; `kill`/`start` during a partition keeps the restarted node in its group.
#[test]
fn partition_splits_the_network_into_groups_and_join_restores_it() -> anyhow::Result<()> {
    if !require_root("partition_splits_the_network_into_groups_and_join_restores_it") {
        return Ok(());
    }
    let lab = Lab::up(LabOptions::new(4).no_agent())?;
    let nodes = ["node1", "node2", "node3", "node4"];
    let matrix = |lab: &Lab| -> anyhow::Result<Vec<(usize, usize, bool)>> {
        let mut m = Vec::new();
        for (i, a) in nodes.iter().enumerate() {
            for (j, b) in nodes.iter().enumerate() {
                if i != j {
                    m.push((i, j, lab.reaches(a, b)?));
                }
            }
        }
        Ok(m)
    };
    let expect = |group: &dyn Fn(usize) -> usize, m: &[(usize, usize, bool)], what: &str| {
        for &(i, j, ok) in m {
            assert_eq!(
                ok,
                group(i) == group(j),
                "{what}: node{} -> node{} reachable={ok}",
                i + 1,
                j + 1
            );
        }
    };
    expect(&|_| 0, &matrix(&lab)?, "before");
    lab.partition(&[&["node1", "node2"], &["node3", "node4"]])?;
    expect(&|i| i / 2, &matrix(&lab)?, "2|2");
    lab.partition(&[&["node1"], &["node2", "node3", "node4"]])?;
    expect(&|i| usize::from(i > 0), &matrix(&lab)?, "1|3");
    // A node restarted during the partition comes back inside its group.
    lab.kill("node1")?;
    lab.start("node1")?;
    expect(&|i| usize::from(i > 0), &matrix(&lab)?, "1|3 after restart");
    lab.join()?;
    expect(&|_| 0, &matrix(&lab)?, "after join");
    lab.down()?;
    Ok(())
}

fn agent_with_run() -> Option<std::path::PathBuf> {
    let path = match std::env::var_os("FIRSTBOOT_AGENT_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let out = std::process::Command::new("cargo")
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .current_dir(cluster_tests::lab::repo_root())
                .output()
                .ok()?;
            let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            Path::new(meta["target_directory"].as_str()?).join("debug/firstboot-agent")
        }
    };
    let help = std::process::Command::new(&path)
        .args(["run", "--help"])
        .output()
        .ok()?;
    help.status.success().then_some(path)
}

#[test]
fn agent_prepares_each_card_and_forms_the_cluster_in_the_lab() -> anyhow::Result<()> {
    if !require_root("lab_smoke::agent_in_the_lab") {
        return Ok(());
    }
    let Some(agent) = agent_with_run() else {
        eprintln!("SKIPPED lab_smoke::agent_in_the_lab: no firstboot-agent with a `run` subcommand (FIRSTBOOT_AGENT_BIN or the debug build)");
        return Ok(());
    };
    // The default card: an image-builder image (or the marked fallback while the builder cannot build one).
    let lab = Lab::up(LabOptions::new(3).agent(&agent))?;
    eprintln!("ci/lab up of 3 nodes with agents took {:?}", lab.up_time());
    let started = Instant::now();
    let nodes = lab.node_names();
    wait_until(
        Duration::from_secs(180),
        "the shared volume mounted on every node by the agents",
        || {
            for node in &nodes {
                let fs = lab.exec(node, &["findmnt", "-n", "-o", "FSTYPE", "/mnt/shared"])?;
                if String::from_utf8_lossy(&fs.stdout).trim() != "fuse.glusterfs" {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    eprintln!(
        "volume mounted on all 3 nodes {:?} after the agents started",
        started.elapsed()
    );
    let status = lab.status()?;
    for (i, node) in nodes.iter().enumerate() {
        // The agent's prepare-disk ran on this node's own card: partition 3 holds the XFS brick.
        let card = status["nodes"][i]["card"]
            .as_str()
            .expect("card")
            .to_string();
        let brick = lab.exec_ok(
            node,
            &[
                "findmnt",
                "-n",
                "-o",
                "SOURCE,FSTYPE",
                "/srv/gluster/brick1",
            ],
        )?;
        assert_eq!(
            brick.split_whitespace().collect::<Vec<_>>(),
            [format!("{card}p3").as_str(), "xfs"],
            "{node}"
        );
        // The first run installed the config from the card's boot partition, readable by root only.
        let mode = lab.exec_ok(
            node,
            &["stat", "-c", "%a", "/etc/firstboot-agent/cluster.toml"],
        )?;
        assert_eq!(mode.trim(), "600", "{node}: cluster.toml mode");
        // The API answers JSON on port 7780.
        lab.api_get(node, 7780, "/api/status")?;
    }
    lab.down()?;
    Ok(())
}
