//! Trust, proven in the lab (issue 6): a device without the key, with a wrong key, or replaying a valid signed request
//! gets 401 from every authenticated endpoint of every agent and changes nothing (same pool, volume, swarm); no join
//! token appears in any refused answer; malformed requests (oversized, truncated, wrong JSON types, junk proof
//! headers) are rejected and the agent still answers `/healthz`; an mDNS announcement signed with a wrong key is
//! seen on the wire but never listed as a node.
//!
//! The "device" is curl inside a lab node aimed at another node's address (the host has no address on the lab
//! bridge). The mDNS forger and watcher are this test binary itself, re-run inside lab nodes (the ignored test
//! `mdns_helper`, driven by environment variables).
//!
//! Needs root and the packages of `ci/install-deps`; skipped (with a message) when not root.
//! Run: `cargo test -p cluster-tests --test trust_api -- --nocapture`.

use cluster_tests::lab::{require_root, wait_until, Lab, LabOptions};
use firstboot_agent::config::ClusterConfig;
use firstboot_agent::trust::{ClusterKey, RequestProof, HEADER_MAC, HEADER_NONCE, HEADER_TS};
use serde_json::Value;
use std::time::{Duration, Instant};

const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];
const SUMMARY: &str = "/api/v1/summary";
const JOIN: &str = "/api/v1/swarm/join-token";

fn status(lab: &Lab, node: &str) -> anyhow::Result<Value> {
    let out = lab.exec_ok(
        node,
        &["curl", "-sf", "-m", "3", "http://127.0.0.1:7780/api/status"],
    )?;
    Ok(serde_json::from_str(&out)?)
}

/// Everything that must not change: pool uuids, volume id, swarm id and node list, as seen from `node`.
fn cluster_state(lab: &Lab, node: &str) -> String {
    lab.sh(
        node,
        "gluster --xml pool list | grep -o '<uuid>[^<]*' | sort; \
         gluster --xml volume info | grep -o '<id>[^<]*'; \
         docker info --format '{{.Swarm.Cluster.ID}}'; \
         docker node ls --format '{{.Hostname}} {{.ManagerStatus}}' 2>/dev/null | awk '{print $1}' | sort",
    )
    .unwrap()
}

/// One HTTP exchange made with curl inside `from`: (status code, body).
fn call(
    lab: &Lab,
    from: &str,
    url: &str,
    method: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    let mut args: Vec<String> = vec![
        "curl".into(),
        "-s".into(),
        "-m".into(),
        "5".into(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    for (k, v) in headers {
        args.push("-H".into());
        args.push(format!("{k}: {v}"));
    }
    if !body.is_empty() {
        args.extend([
            "-H".into(),
            "content-type: application/json".into(),
            "--data-binary".into(),
            body.into(),
        ]);
    }
    args.push(url.into());
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = lab.exec(from, &refs).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn proof_headers(p: &RequestProof) -> Vec<(String, String)> {
    vec![
        (HEADER_TS.to_string(), p.ts.to_string()),
        (HEADER_NONCE.to_string(), p.nonce.clone()),
        (HEADER_MAC.to_string(), p.mac.clone()),
    ]
}

#[test]
fn requests_without_the_key_change_nothing_and_leak_nothing() {
    if !require_root("requests_without_the_key_change_nothing_and_leak_nothing") {
        return;
    }
    let t = Instant::now();
    let lab = Lab::up(LabOptions::new(4)).expect("lab up");
    wait_until(Duration::from_secs(180), "formation", || {
        for n in NODES {
            let s = status(&lab, n)?;
            if s["phase"] != "steady" || s["health"] != "healthy" {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .unwrap();
    let config = ClusterConfig::parse(
        &lab.exec_ok("node2", &["cat", "/etc/firstboot-agent/cluster.toml"])
            .unwrap(),
        std::path::Path::new("cluster.toml"),
    )
    .unwrap();
    let key = ClusterKey::new(&config.key_bytes());
    let wrong = ClusterKey::new(&[0x5a; 32]);
    let manager = NODES
        .iter()
        .find(|n| {
            lab.exec_ok(
                n,
                &["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"],
            )
            .is_ok_and(|s| s.trim() == "true")
        })
        .unwrap()
        .to_string();
    let tokens: Vec<String> = ["worker", "manager"]
        .iter()
        .map(|r| {
            lab.exec_ok(&manager, &["docker", "swarm", "join-token", "-q", r])
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let before = cluster_state(&lab, "node1");
    let attacker = "node1";
    let mut refused = Vec::new();
    for target in NODES.iter().filter(|n| **n != attacker) {
        let ip = lab.ip(target).unwrap();
        let url = |p: &str| format!("http://{ip}:7780{p}");
        let join_body = r#"{"role":"worker"}"#;
        for (method, path, body) in [
            ("GET", SUMMARY, ""),
            ("POST", JOIN, join_body),
            ("POST", JOIN, r#"{"role":"manager"}"#),
        ] {
            // Unsigned.
            refused.push((
                format!("{target} unsigned {method} {path}"),
                call(&lab, attacker, &url(path), method, &[], body),
            ));
            // Signed with a wrong key.
            let p = wrong.sign_request(method, path, body.as_bytes());
            refused.push((
                format!("{target} wrong key {method} {path}"),
                call(&lab, attacker, &url(path), method, &proof_headers(&p), body),
            ));
            // Right key, stale time (an old capture).
            let p = key.sign_request_at(
                method,
                path,
                body.as_bytes(),
                firstboot_agent::trust::unix_now() - 3600,
            );
            refused.push((
                format!("{target} stale {method} {path}"),
                call(&lab, attacker, &url(path), method, &proof_headers(&p), body),
            ));
            // Right key, signed for another body (tampered in flight).
            let p = key.sign_request(method, path, b"{\"role\":\"nobody\"}");
            refused.push((
                format!("{target} tampered {method} {path}"),
                call(&lab, attacker, &url(path), method, &proof_headers(&p), body),
            ));
            // Junk proof headers.
            let junk = vec![
                (HEADER_TS.to_string(), "yesterday".to_string()),
                (HEADER_NONCE.to_string(), "x".repeat(5000)),
                (HEADER_MAC.to_string(), "zz".to_string()),
            ];
            refused.push((
                format!("{target} junk headers {method} {path}"),
                call(&lab, attacker, &url(path), method, &junk, body),
            ));
        }
        // Replay: a valid signed summary request is answered once, its exact replay is refused.
        let p = key.sign_request("GET", SUMMARY, b"");
        let (code, first) = call(&lab, attacker, &url(SUMMARY), "GET", &proof_headers(&p), "");
        assert_eq!(
            code, 200,
            "{target}: a valid signed request is accepted: {first}"
        );
        refused.push((
            format!("{target} replayed GET summary"),
            call(&lab, attacker, &url(SUMMARY), "GET", &proof_headers(&p), ""),
        ));
        // Replay of a join-token request to the manager: refused the second time.
        if *target == manager {
            let p = key.sign_request("POST", JOIN, join_body.as_bytes());
            let (code, _) = call(
                &lab,
                attacker,
                &url(JOIN),
                "POST",
                &proof_headers(&p),
                join_body,
            );
            assert_eq!(code, 200, "{target}: valid join-token request");
            refused.push((
                format!("{target} replayed POST join-token"),
                call(
                    &lab,
                    attacker,
                    &url(JOIN),
                    "POST",
                    &proof_headers(&p),
                    join_body,
                ),
            ));
        }
    }
    for (what, (code, body)) in &refused {
        assert_eq!(*code, 401, "{what}: answered {code}: {body}");
        for t in &tokens {
            assert!(!body.contains(t.as_str()), "{what}: a join token leaked");
        }
        assert!(!body.contains("SWMTKN"), "{what}: a join token leaked");
    }
    eprintln!(
        "trust_api: {} unauthenticated or replayed calls, all 401",
        refused.len()
    );

    // Malformed requests, correctly signed or not: rejected, the agent keeps answering.
    let ip = lab.ip("node2").unwrap();
    let url = format!("http://{ip}:7780{JOIN}");
    // 200 kB (the limit is 16 kB), too long for an argument: curl sends it from a file made in the node.
    let big = "x".repeat(200_000);
    lab.sh(
        attacker,
        "head -c 200000 /dev/zero | tr '\\0' x > /var/log/trust-big.body",
    )
    .unwrap();
    let p = key.sign_request("POST", JOIN, big.as_bytes());
    let (code, _) = call(
        &lab,
        attacker,
        &url,
        "POST",
        &proof_headers(&p),
        "@/var/log/trust-big.body",
    );
    assert!(code == 413 || code == 401, "oversized body: {code}");
    for body in [
        r#"{"role":5}"#,
        r#"{"role":["worker"]}"#,
        "[1,2",
        "{}",
        "\u{1}\u{2}",
    ] {
        let p = key.sign_request("POST", JOIN, body.as_bytes());
        let (code, resp) = call(&lab, attacker, &url, "POST", &proof_headers(&p), body);
        assert!(
            code == 400 || code == 422,
            "signed wrong-typed body {body:?}: {code} {resp}"
        );
        assert!(!resp.contains("SWMTKN"));
    }
    // Truncated: a Content-Length larger than what is sent, then the connection closes.
    lab.sh(
        attacker,
        &format!(
            "exec 3<>/dev/tcp/{ip}/7780; printf 'POST {JOIN} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 1000\\r\\n\\r\\n{{\"ro' >&3; exec 3>&-; \
             printf 'GET /api/status HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5\\r\\n\\r\\n' | head -c 30 > /dev/tcp/{ip}/7780 || true"
        ),
    )
    .unwrap();
    for n in NODES {
        let ip = lab.ip(n).unwrap();
        let ok = lab
            .exec_ok(
                attacker,
                &[
                    "curl",
                    "-sf",
                    "-m",
                    "3",
                    &format!("http://{ip}:7780/healthz"),
                ],
            )
            .unwrap();
        assert_eq!(ok.trim(), "ok", "{n} still answers /healthz");
    }
    assert_eq!(cluster_state(&lab, "node1"), before, "nothing changed");

    // A forged mDNS announcement (wrong key, this cluster's id): seen on the wire, never listed.
    let exe = std::env::current_exe().unwrap().display().to_string();
    let cid = config.cluster.id.clone();
    lab.sh(
        "node4",
        &format!(
            "TRUST_MDNS_MODE=forge TRUST_MDNS_CID={cid} setsid {exe} --exact mdns_helper --ignored --nocapture \
             </dev/null >/var/log/mdns-forge.log 2>&1 &"
        ),
    )
    .unwrap();
    let seen = lab
        .exec(
            "node3",
            &[
                "env",
                "TRUST_MDNS_MODE=watch",
                &format!("TRUST_MDNS_CID={cid}"),
                &exe,
                "--exact",
                "mdns_helper",
                "--ignored",
                "--nocapture",
            ],
        )
        .unwrap();
    let watch_out =
        String::from_utf8_lossy(&seen.stdout).to_string() + &String::from_utf8_lossy(&seen.stderr);
    assert!(
        watch_out.contains("FORGED-SEEN"),
        "the forged announcement was not on the wire: {watch_out}"
    );
    // For 10 s after it was seen on the wire, no agent lists it.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for n in NODES {
            let s = status(&lab, n).unwrap();
            let nodes = s["nodes"].as_array().unwrap();
            assert_eq!(nodes.len(), 4, "{n} lists {}: {s}", nodes.len());
            assert!(
                !s.to_string().contains("forged"),
                "{n} lists the forged node: {s}"
            );
        }
    }
    assert_eq!(cluster_state(&lab, "node1"), before, "nothing changed");
    eprintln!("trust_api: done in {} s", t.elapsed().as_secs());
    lab.down().unwrap();
}

/// Not a test on its own: re-run by the test above inside a lab node. `TRUST_MDNS_MODE=forge` announces a node
/// signed with a wrong key for 60 s; `watch` browses with that same wrong key and prints `FORGED-SEEN` when the
/// forged announcement arrives (proof it was on the wire).
#[test]
#[ignore = "helper run inside a lab node by requests_without_the_key_change_nothing_and_leak_nothing"]
fn mdns_helper() {
    use firstboot_agent::mdns::{lan_address, Mdns};
    use firstboot_agent::peers::{Announcement, PeerTable};
    use std::sync::Arc;
    let Ok(mode) = std::env::var("TRUST_MDNS_MODE") else {
        return;
    };
    let cid = std::env::var("TRUST_MDNS_CID").unwrap();
    let wrong = ClusterKey::new(&[0x5a; 32]);
    match mode.as_str() {
        "forge" => {
            let m = Mdns::start(wrong, "forged").unwrap();
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end {
                m.announce(&Announcement {
                    cluster_id: cid.clone(),
                    node_id: "forged".into(),
                    hostname: "forged".into(),
                    version: "0.0.0".into(),
                    phase: "steady".into(),
                    api_port: 7780,
                    addr: lan_address().unwrap(),
                    ts: firstboot_agent::trust::unix_now(),
                })
                .unwrap();
                std::thread::sleep(Duration::from_secs(2));
            }
            m.shutdown();
        }
        "watch" => {
            let m = Mdns::start(wrong, "watcher").unwrap();
            let table = Arc::new(PeerTable::new());
            m.browse(table.clone(), cid, "watcher".into()).unwrap();
            wait_until(Duration::from_secs(30), "the forged announcement", || {
                Ok(table
                    .all()
                    .iter()
                    .any(|p| p.announcement.node_id == "forged"))
            })
            .unwrap();
            println!("FORGED-SEEN");
            m.shutdown();
        }
        other => panic!("unknown TRUST_MDNS_MODE {other}"),
    }
}
