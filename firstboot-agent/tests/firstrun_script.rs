//! `overlays/firstrun.sh` run by `/bin/sh` against a fake root and a fake boot partition
//! (FIRSTRUN_ROOT / FIRSTRUN_BOOT), with the real agent binary doing the identity.

use firstboot_agent::config::ClusterConfig;
use firstboot_agent::identity::NodeIdentity;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=b7ffb30e-02 rootfstype=ext4 \
fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot systemd.run=/boot/firmware/firstrun.sh \
systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly user@laptop";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlays/firstrun.sh")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

struct Fake {
    _dir: tempfile::TempDir,
    root: PathBuf,
    boot: PathBuf,
}

fn fake(config: &ClusterConfig) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let boot = dir.path().join("boot");
    write(
        &root.join("etc/machine-id"),
        "5f3c0a1e2d4b4c6a8e9f0a1b2c3d4e5f\n",
    );
    write(&root.join("etc/hostname"), "raspberrypi\n");
    write(
        &root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n",
    );
    write(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
    );
    write(
        &root.join("var/lib/systemd/rfkill/platform-3f300000.mmcnr:wlan"),
        "1\n",
    );
    write(&boot.join("cmdline.txt"), CMDLINE);
    write(&boot.join("cluster.toml"), &config.to_toml());
    write(
        &boot.join("cluster-firstrun.env"),
        &format!(
            "CLUSTER_HOSTNAME_PREFIX=lab\nCLUSTER_WIFI_SSID='Lab Net'\nCLUSTER_WIFI_PSK='pass word 123'\n\
             CLUSTER_WIFI_COUNTRY=DE\nCLUSTER_USER=pi\nCLUSTER_SSH_AUTHORIZED_KEY='{KEY}'\n"
        ),
    );
    std::fs::copy(
        env!("CARGO_BIN_EXE_firstboot-agent"),
        boot.join("firstboot-agent"),
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlays/firstboot-agent.service"),
        boot.join("firstboot-agent.service"),
    )
    .unwrap();
    Fake {
        _dir: dir,
        root,
        boot,
    }
}

fn run(f: &Fake) {
    std::fs::copy(script(), f.boot.join("firstrun.sh")).unwrap();
    let out = Command::new("/bin/sh")
        .arg(f.boot.join("firstrun.sh"))
        .env("FIRSTRUN_ROOT", &f.root)
        .env("FIRSTRUN_BOOT", &f.boot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "firstrun.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn firstrun_script_parses() {
    for shell in ["sh", "dash", "bash"] {
        let st = Command::new(shell)
            .arg("-n")
            .arg(script())
            .status()
            .unwrap();
        assert!(st.success(), "{shell} -n");
    }
}

#[test]
fn firstrun_installs_agent_config_unit_and_removes_secrets_and_tokens() {
    let config = ClusterConfig::generate("lab", 4);
    let f = fake(&config);
    let agent_bytes = std::fs::read(f.boot.join("firstboot-agent")).unwrap();
    run(&f);

    // Agent, config (0600 in a 0700 dir), unit enabled.
    let agent = f.root.join("usr/local/sbin/firstboot-agent");
    assert_eq!(std::fs::read(&agent).unwrap(), agent_bytes);
    assert_eq!(mode(&agent), 0o755);
    let cfg = f.root.join("etc/firstboot-agent/cluster.toml");
    assert_eq!(
        ClusterConfig::load(&cfg).unwrap(),
        config,
        "installed config is the builder's"
    );
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(mode(cfg.parent().unwrap()), 0o700);
    let unit = f.root.join("etc/systemd/system/firstboot-agent.service");
    assert!(std::fs::read_to_string(&unit)
        .unwrap()
        .contains("ExecStart=/usr/local/sbin/firstboot-agent run"));
    let wants = f
        .root
        .join("etc/systemd/system/multi-user.target.wants/firstboot-agent.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/etc/systemd/system/firstboot-agent.service")
    );

    // Secrets are gone from the FAT partition, and so is the script.
    assert!(
        !f.boot.join("cluster.toml").exists(),
        "the key left the boot partition"
    );
    assert!(!f.boot.join("cluster-firstrun.env").exists());
    assert!(!f.boot.join("firstrun.sh").exists());

    // Host name from the agent's identity.
    let id = NodeIdentity::detect_in(&f.root, "lab").unwrap();
    let hostname = std::fs::read_to_string(f.root.join("etc/hostname")).unwrap();
    assert_eq!(hostname.trim(), id.hostname);
    let hosts = std::fs::read_to_string(f.root.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains(&format!("127.0.1.1\t{}", id.hostname)),
        "{hosts}"
    );
    assert!(!hosts.contains("raspberrypi"));

    // Wi-Fi, unblocked, with the country on the command line.
    let conn = f
        .root
        .join("etc/NetworkManager/system-connections/cluster-wifi.nmconnection");
    let c = std::fs::read_to_string(&conn).unwrap();
    assert!(
        c.contains("ssid=Lab Net\n") && c.contains("psk=pass word 123\n"),
        "{c}"
    );
    assert_eq!(mode(&conn), 0o600);
    let rf = std::fs::read_to_string(
        f.root
            .join("var/lib/systemd/rfkill/platform-3f300000.mmcnr:wlan"),
    )
    .unwrap();
    assert_eq!(rf.trim(), "0");

    // SSH key for pi, SSH switched on for the next boot.
    let keys = f.root.join("home/pi/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{KEY}\n"));
    assert_eq!(mode(&keys), 0o600);
    assert!(f.boot.join("ssh").exists());

    // cmdline.txt: one line, no systemd.run tokens, no root growth, the Wi-Fi country added.
    let cmdline = std::fs::read_to_string(f.boot.join("cmdline.txt")).unwrap();
    assert_eq!(
        cmdline,
        "console=serial0,115200 console=tty1 root=PARTUUID=b7ffb30e-02 rootfstype=ext4 fsck.repair=yes rootwait \
         quiet cfg80211.ieee80211_regdom=DE\n"
    );

    // Running again (the script put back, the secrets already gone) changes nothing.
    let snapshot = |p: &Path| std::fs::read(p).unwrap();
    let before: Vec<Vec<u8>> = [&cfg, &unit, &keys, &conn]
        .iter()
        .map(|p| snapshot(p))
        .collect();
    run(&f);
    let after: Vec<Vec<u8>> = [&cfg, &unit, &keys, &conn]
        .iter()
        .map(|p| snapshot(p))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        std::fs::read_to_string(f.boot.join("cmdline.txt")).unwrap(),
        cmdline
    );
    assert_eq!(
        std::fs::read_to_string(f.root.join("etc/hostname")).unwrap(),
        hostname
    );
}

#[test]
fn firstrun_with_nothing_optional_only_installs() {
    let config = ClusterConfig::generate("lab", 4);
    let f = fake(&config);
    std::fs::remove_file(f.boot.join("cluster-firstrun.env")).unwrap();
    run(&f);
    assert!(f.root.join("etc/firstboot-agent/cluster.toml").exists());
    assert!(!f.boot.join("cluster.toml").exists());
    assert_eq!(
        std::fs::read_to_string(f.root.join("etc/hostname")).unwrap(),
        "raspberrypi\n",
        "no prefix given: host name left to the agent"
    );
    assert!(!f.root.join("etc/NetworkManager").exists());
    assert!(!f.root.join("home/pi/.ssh").exists());
    assert!(!f.boot.join("ssh").exists());
    let cmdline = std::fs::read_to_string(f.boot.join("cmdline.txt")).unwrap();
    assert!(
        !cmdline.contains("systemd.run") && !cmdline.contains("init="),
        "{cmdline}"
    );
}
