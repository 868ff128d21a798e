//! The gluster wrappers against a real glusterd (root only), in private namespaces (see `support_ns`).
//!
//! One node, a replica-2 volume with both bricks on it (`force`), created, started, checked, mounted through
//! FUSE, a brick killed and healed back, unmounted, stopped and deleted; then glusterd stopped.

mod support_ns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use firstboot_agent::gluster::brick;
use firstboot_agent::gluster::mount::{self, MountHealth, MountOutcome};
use firstboot_agent::gluster::{Gluster, GlusterError, VolumeState};
use support_ns::{sh, wait_for, NODE_ADDR};

#[test]
fn gluster_wrappers_against_a_real_glusterd() {
    if let Some(why) =
        support_ns::skip_reason(&["glusterd", "gluster", "mkfs.xfs", "mount.glusterfs"])
    {
        eprintln!("SKIPPED gluster_wrappers_against_a_real_glusterd: {why}");
        return;
    }
    support_ns::run_inner("inner_gluster", Duration::from_secs(150));
}

/// Stops glusterd and unmounts what the test mounted, even when the test panics (the namespaces' end would
/// do it too; this makes it orderly).
struct Guard {
    glusterd: Option<Child>,
    mounts: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        if let Some(mut g) = self.glusterd.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
    }
}

fn start_glusterd(work: &Path) -> Child {
    // A fresh glusterd state and log directory over the system ones, inside this mount namespace only.
    let lib = work.join("lib");
    let log = work.join("log");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    sh("cp", &["-a", "/var/lib/glusterd/.", lib.to_str().unwrap()]);
    sh(
        "mount",
        &["--bind", lib.to_str().unwrap(), "/var/lib/glusterd"],
    );
    sh(
        "mount",
        &["--bind", log.to_str().unwrap(), "/var/log/glusterfs"],
    );
    Command::new("glusterd")
        .args(["-N", "-p", "/run/glusterd.pid"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting glusterd")
}

/// Asks for a heal until glusterd accepts (it refuses while the self-heal daemon has not reconnected to every
/// brick: "Glusterd Syncop Mgmt brick op 'Heal' failed").
async fn heal_when_accepted(g: &Gluster, full: bool) {
    wait_for(
        "the self-heal daemon to accept a heal",
        Duration::from_secs(30),
        || async {
            match g.heal_start("shared", full).await {
                Ok(()) => Some(()),
                Err(e) => {
                    eprintln!("heal start refused for now: {e}");
                    None
                }
            }
        },
    )
    .await
}

#[tokio::test]
#[ignore = "runs inside private namespaces, started by gluster_wrappers_against_a_real_glusterd"]
async fn inner_gluster() {
    if !support_ns::is_inner() {
        return;
    }
    support_ns::setup_namespace();
    let work = tempfile::tempdir().unwrap();
    let bricks = work.path().join("bricks");
    support_ns::xfs_loop_mount(&work.path().join("brick.img"), "1G", &bricks);
    let mut guard = Guard {
        glusterd: None,
        mounts: vec![bricks.clone()],
    };
    guard.glusterd = Some(start_glusterd(work.path()));

    let g = Gluster::new().with_timeout(Duration::from_secs(30));
    let log = work.path().join("log/glusterd.log");
    let started = std::time::Instant::now();
    loop {
        if g.is_responding().await {
            break;
        }
        if let Some(status) = guard.glusterd.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "glusterd exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "glusterd did not answer within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("glusterd answered after {:?}", started.elapsed());

    // Pool: only this node.
    let pool = g.pool_list().await.unwrap();
    assert_eq!(pool.len(), 1, "{pool:?}");
    assert!(pool[0].is_self && pool[0].connected);
    g.peer_probe(NODE_ADDR)
        .await
        .expect("probing this node itself is fine");
    let e = g.peer_probe("10.78.0.1").await.unwrap_err();
    assert!(matches!(e, GlusterError::Failed { .. }), "{e:?}");
    assert!(e.to_string().contains("peer probe 10.78.0.1"), "{e}");
    assert_eq!(
        g.pool_list().await.unwrap().len(),
        1,
        "a failed probe adds no peer"
    );

    // Volume: create (twice), options, start (twice).
    assert_eq!(g.volume_info("shared").await.unwrap(), None);
    let brick_specs: Vec<String> = ["b1", "b2"]
        .iter()
        .map(|b| format!("{NODE_ADDR}:{}/{b}", bricks.display()))
        .collect();
    g.volume_create_replica("shared", 2, &brick_specs, true)
        .await
        .unwrap();
    let again = g
        .volume_create_replica("shared", 2, &brick_specs, true)
        .await
        .unwrap_err();
    assert!(again.is_already(), "{again}");
    let info = g
        .volume_info("shared")
        .await
        .unwrap()
        .expect("the volume exists");
    assert_eq!(info.status, VolumeState::Created);
    assert_eq!(info.replica_count, 2);
    assert_eq!(info.vol_type, "Replicate");
    assert_eq!(
        info.bricks.iter().map(|b| b.spec()).collect::<Vec<_>>(),
        brick_specs
    );
    g.volume_set("shared", "network.ping-timeout", "5")
        .await
        .unwrap();
    g.volume_set("shared", "cluster.quorum-type", "auto")
        .await
        .unwrap();
    g.volume_auth_allow("shared", &[NODE_ADDR.to_string(), "127.0.0.1".to_string()])
        .await
        .unwrap();
    let bad = g
        .volume_set("shared", "no.such.option", "1")
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("no.such.option"), "{bad}");
    g.volume_start("shared", false).await.unwrap();
    g.volume_start("shared", false)
        .await
        .expect("starting a started volume is fine");
    let info = g.volume_info("shared").await.unwrap().unwrap();
    assert_eq!(info.status, VolumeState::Started);
    assert_eq!(
        info.options.get("network.ping-timeout").map(String::as_str),
        Some("5")
    );
    assert_eq!(
        info.options.get("auth.allow").map(String::as_str),
        Some("10.77.0.1,127.0.0.1")
    );
    assert_eq!(g.volume_info_all().await.unwrap().len(), 1);

    // Status: both bricks online with their sizes.
    let status = wait_for("both bricks online", Duration::from_secs(20), || async {
        let s = g.volume_status("shared").await.ok()?;
        (s.bricks.len() == 2 && s.bricks.iter().all(|b| b.online)).then_some(s)
    })
    .await;
    for b in &status.bricks {
        assert!(b.pid.is_some() && b.port.is_some(), "{b:?}");
        assert!(b.size_total.unwrap() > 900_000_000, "{b:?}");
        assert!(b.size_free.unwrap() <= b.size_total.unwrap(), "{b:?}");
    }
    let heal = g.heal_info("shared").await.unwrap();
    assert_eq!(heal.total, 0);
    assert!(heal.bricks.iter().all(|b| b.connected), "{heal:?}");
    assert_eq!(g.heal_split_brain("shared").await.unwrap(), 0);

    // Mount through FUSE (twice), write, and find the file on both bricks.
    let mnt = work.path().join("mnt/shared");
    let servers = vec![NODE_ADDR.to_string(), "127.0.0.1".to_string()];
    guard.mounts.push(mnt.clone());
    assert_eq!(
        mount::mount_volume(&servers, "shared", &mnt).await.unwrap(),
        MountOutcome::Mounted
    );
    assert_eq!(
        mount::mount_volume(&servers, "shared", &mnt).await.unwrap(),
        MountOutcome::AlreadyMounted
    );
    assert!(mount::is_mounted(&mnt).await);
    match mount::mount_health(&mnt, Duration::from_secs(5)).await {
        MountHealth::Answering { entry, total, .. } => {
            assert_eq!(entry.fstype, "fuse.glusterfs");
            assert!(total > 100_000_000, "{total}");
        }
        other => panic!("{other:?}"),
    }
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(mnt.join("hello.bin"), &payload).unwrap();
    assert_eq!(std::fs::read(mnt.join("hello.bin")).unwrap(), payload);
    for b in ["b1", "b2"] {
        assert_eq!(
            std::fs::read(bricks.join(b).join("hello.bin")).unwrap(),
            payload,
            "copy on brick {b}"
        );
    }

    // A brick dies: status shows it offline, writes are pending heal; start force brings it back and it heals.
    let victim = status.bricks[1].clone();
    sh("kill", &[&victim.pid.unwrap().to_string()]);
    wait_for(
        "the killed brick to show offline",
        Duration::from_secs(20),
        || async {
            let s = g.volume_status("shared").await.ok()?;
            s.bricks
                .iter()
                .any(|b| b.path == victim.path && !b.online)
                .then_some(())
        },
    )
    .await;
    let written = wait_for(
        "a write while a brick is down to be pending heal",
        Duration::from_secs(30),
        || {
            let mnt = mnt.clone();
            let g = g.clone();
            async move {
                std::fs::write(mnt.join("while-down.txt"), b"written while b2 was down").ok()?;
                let h = g.heal_info("shared").await.ok()?;
                (h.total > 0 && h.bricks.iter().any(|b| !b.connected)).then_some(h)
            }
        },
    )
    .await;
    assert_eq!(
        written.bricks.iter().filter(|b| !b.connected).count(),
        1,
        "{written:?}"
    );
    g.volume_start("shared", true).await.unwrap();
    wait_for(
        "the brick to be back online",
        Duration::from_secs(20),
        || async {
            let s = g.volume_status("shared").await.ok()?;
            s.bricks.iter().all(|b| b.online).then_some(())
        },
    )
    .await;
    // The self-heal daemon may not have reconnected to the restarted brick yet: ask until it accepts.
    heal_when_accepted(&g, false).await;
    wait_for("self-heal to finish", Duration::from_secs(60), || async {
        let h = g.heal_info("shared").await.ok()?;
        (h.total == 0 && h.bricks.iter().all(|b| b.connected)).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read(bricks.join("b2/while-down.txt")).unwrap(),
        b"written while b2 was down",
        "healed onto the brick that was down"
    );

    // Growing and shrinking the replica set, and replacing a brick (a fifth node, a replaced card).
    let spec = |b: &str| format!("{NODE_ADDR}:{}/{b}", bricks.display());
    // b5 carries the marks a failed add-brick leaves (fault case 1b): glusterd refuses it in a new volume (without
    // `force`, as the agent runs) until they are cleared.
    let b5 = bricks.join("b5");
    std::fs::create_dir_all(b5.join(".glusterfs/indices")).unwrap();
    let raw_id = format!("0x{}", info.id.replace('-', ""));
    sh(
        "setfattr",
        &[
            "-n",
            brick::VOLUME_ID_XATTR,
            "-v",
            &raw_id,
            b5.to_str().unwrap(),
        ],
    );
    assert_eq!(
        brick::volume_mark(&b5).unwrap().as_deref(),
        Some(info.id.as_str())
    );
    let create_other = || {
        Command::new("gluster")
            .args(["--mode=script", "volume", "create", "other", &spec("b5")])
            .output()
            .unwrap()
    };
    let refused = create_other();
    let said = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(
        !refused.status.success() && said.contains("already part of a volume"),
        "{said}"
    );
    assert!(brick::clear_stale_marks(&b5, &info.id).unwrap());
    assert!(create_other().status.success(), "a cleared brick is taken");
    g.volume_delete("other").await.unwrap();
    g.add_brick("shared", 3, &spec("b3"), true).await.unwrap();
    let info = g.volume_info("shared").await.unwrap().unwrap();
    assert_eq!((info.replica_count, info.bricks.len()), (3, 3), "{info:?}");
    g.remove_brick("shared", 2, &spec("b3"), true)
        .await
        .unwrap();
    let info = g.volume_info("shared").await.unwrap().unwrap();
    assert_eq!((info.replica_count, info.bricks.len()), (2, 2), "{info:?}");
    g.replace_brick("shared", &spec("b2"), &spec("b4"))
        .await
        .unwrap();
    let info = g.volume_info("shared").await.unwrap().unwrap();
    assert_eq!(
        info.bricks.iter().map(|b| b.spec()).collect::<Vec<_>>(),
        vec![spec("b1"), spec("b4")]
    );
    heal_when_accepted(&g, true).await;
    wait_for(
        "the replacement brick to be filled",
        Duration::from_secs(60),
        || async {
            std::fs::read(bricks.join("b4/hello.bin"))
                .ok()
                .filter(|d| *d == payload)
                .map(drop)
        },
    )
    .await;
    let e = g.peer_detach("10.78.0.1", false).await.unwrap_err();
    assert!(e.to_string().contains("not part of cluster"), "{e}");

    // fstab line for boot, then unmount, stop, delete.
    let fstab = work.path().join("fstab");
    let line = mount::fstab_entry(&servers, "shared", &mnt);
    assert!(mount::ensure_fstab_entry(&fstab, &line).unwrap());
    assert!(!mount::ensure_fstab_entry(&fstab, &line).unwrap());
    mount::unmount(&mnt, false).await.unwrap();
    assert!(!mount::is_mounted(&mnt).await);
    g.volume_stop("shared", false).await.unwrap();
    g.volume_stop("shared", false)
        .await
        .expect("stopping a stopped volume is fine");
    assert_eq!(
        g.volume_info("shared").await.unwrap().unwrap().status,
        VolumeState::Stopped
    );
    g.volume_delete("shared").await.unwrap();
    assert_eq!(g.volume_info("shared").await.unwrap(), None);

    // glusterd gone: the wrappers say so instead of hanging.
    let mut glusterd = guard.glusterd.take().unwrap();
    glusterd.kill().unwrap();
    glusterd.wait().unwrap();
    assert!(!g.is_responding().await);
    let e = g.pool_list().await.unwrap_err();
    assert!(matches!(e, GlusterError::NotRunning { .. }), "{e:?}");
}
