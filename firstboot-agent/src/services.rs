//! glusterd and dockerd: installed, enabled and running before formation.
//!
//! With systemd (PID 1, `/run/systemd/system` exists) the units are checked with `systemctl is-active` and started
//! with `systemctl enable --now`. Without systemd (the lab, where each node's daemons are started by the lab) the
//! daemons are checked directly: glusterd answers `gluster --xml pool list` on its socket, dockerd answers
//! `GET /_ping` on its socket, and a daemon that does not answer is started with the configured starter program
//! (`agent.service_starter`, which the lab writes into each node's config) when there is one. Missing packages are
//! installed from `.deb` files carried on the card (`agent.packages_archive` unpacked into `agent.packages_dir`, see
//! [`crate::packages`]) when there are any, else with `apt-get`; when neither works the error says so
//! ([`ServiceError::WaitingForNetwork`] when apt could not reach its mirror, which the agent retries with a back-off).

use crate::config::ClusterConfig;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Debian packages the cluster needs.
pub const PACKAGES: &[&str] = &[
    "glusterfs-server",
    "glusterfs-client",
    "docker.io",
    "xfsprogs",
];

/// Environment variable replacing the directories searched for the packages' programs (colon-separated).
pub const BIN_DIRS_ENV: &str = "FIRSTBOOT_AGENT_BIN_DIRS";
/// Environment variable replacing the `apt-get` program.
pub const APT_GET_ENV: &str = "FIRSTBOOT_AGENT_APT_GET";

/// Errors of `ensure_services`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Packages are missing and could not be installed.
    #[error(
        "missing packages {missing:?} could not be installed: {why}. Carry the .deb files on the boot partition \
         (config agent.packages_dir) or connect the Pi to a network with a Debian mirror"
    )]
    Install {
        /// The packages still missing.
        missing: Vec<String>,
        /// What was tried and how it failed.
        why: String,
    },
    /// Packages are missing, none are carried on the card, and apt cannot reach its mirror (no network yet).
    #[error(
        "waiting for network: {why} (missing packages {missing:?}; to install them without a network, carry them \
         on the card: `image-builder build --packages DIR`, DIR made by ci/fetch-packages)"
    )]
    WaitingForNetwork {
        /// The packages still missing.
        missing: Vec<String>,
        /// What apt said.
        why: String,
    },
    /// A service is not running (and could not be started).
    #[error("{service} is not running: {detail}")]
    NotRunning {
        /// `glusterd` or `dockerd`.
        service: String,
        /// What was seen.
        detail: String,
    },
}

/// How services are checked and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    /// systemd is PID 1: systemctl.
    Systemd,
    /// No systemd: the daemons are checked directly and must be started by someone else.
    Direct,
}

/// Options for `ensure_services`; the defaults are the real system's paths and tools.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `None`: detect (`/run/systemd/system`).
    pub manager: Option<Manager>,
    /// Directories searched for the programs that show a package is installed.
    pub bin_dirs: Vec<PathBuf>,
    /// Directory of `.deb` files to install offline.
    pub packages_dir: Option<PathBuf>,
    /// Archive of `.deb` files carried on the boot partition, unpacked into `packages_dir` first.
    pub packages_archive: Option<PathBuf>,
    /// Allow installing missing packages.
    pub install: bool,
    /// `dpkg`, `dpkg-deb`, `dpkg-query`.
    pub dpkg: crate::packages::DpkgTools,
    /// `apt-get` program.
    pub apt_get: PathBuf,
    /// `systemctl` program.
    pub systemctl: PathBuf,
    /// `gluster` CLI program.
    pub gluster: PathBuf,
    /// glusterd's socket.
    pub glusterd_socket: PathBuf,
    /// dockerd's API socket.
    pub docker_socket: PathBuf,
    /// How long to wait for a service to come up after starting it.
    pub start_timeout: Duration,
    /// Without systemd: the program run as `STARTER glusterd|dockerd` to start a daemon that does not answer.
    pub starter: Option<PathBuf>,
}

impl ServiceOptions {
    /// Defaults for this system, with `packages_dir` and `packages_archive` from the config.
    /// `FIRSTBOOT_AGENT_BIN_DIRS` (colon-separated) and `FIRSTBOOT_AGENT_APT_GET`, when set, replace the
    /// directories searched for the packages' programs and the apt-get program (tests of a node without the
    /// packages on a machine that has them).
    pub fn for_config(config: &ClusterConfig) -> Self {
        let docker_socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/run/docker.sock"));
        ServiceOptions {
            manager: None,
            bin_dirs: match std::env::var_os(BIN_DIRS_ENV).filter(|v| !v.is_empty()) {
                Some(v) => std::env::split_paths(&v).collect(),
                None => [
                    "/usr/local/sbin",
                    "/usr/local/bin",
                    "/usr/sbin",
                    "/usr/bin",
                    "/sbin",
                    "/bin",
                ]
                .iter()
                .map(PathBuf::from)
                .collect(),
            },
            packages_dir: config.agent.packages_dir.clone(),
            packages_archive: config.agent.packages_archive.clone(),
            install: true,
            dpkg: crate::packages::DpkgTools::default(),
            apt_get: std::env::var_os(APT_GET_ENV)
                .filter(|v| !v.is_empty())
                .map_or_else(|| "apt-get".into(), PathBuf::from),
            systemctl: "systemctl".into(),
            gluster: "gluster".into(),
            glusterd_socket: "/run/glusterd.socket".into(),
            docker_socket,
            start_timeout: Duration::from_secs(60),
            starter: config.agent.service_starter.clone(),
        }
    }
}

/// The state of one service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// `glusterd` or `dockerd`.
    pub name: String,
    /// Whether it answers.
    pub running: bool,
    /// How it was checked and what was seen.
    pub detail: String,
    /// Whether this run started it.
    pub started: bool,
}

/// What `ensure_services` found and did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServicesReport {
    /// systemd or direct checks.
    pub manager: Manager,
    /// Packages installed by this run.
    pub installed: Vec<String>,
    /// How they were installed (`dpkg -i DIR/*.deb`, `apt-get install`).
    pub install_method: Option<String>,
    /// Each service.
    pub services: Vec<ServiceStatus>,
}

impl ServicesReport {
    /// Whether every service runs.
    pub fn ready(&self) -> bool {
        self.services.iter().all(|s| s.running)
    }
}

/// The program that shows a package is installed.
fn package_program(package: &str) -> &'static str {
    match package {
        "glusterfs-server" => "glusterd",
        "glusterfs-client" => "mount.glusterfs",
        "docker.io" => "dockerd",
        "xfsprogs" => "mkfs.xfs",
        _ => "",
    }
}

/// Packages whose program is found in none of `bin_dirs`.
pub fn missing_packages(bin_dirs: &[PathBuf]) -> Vec<String> {
    PACKAGES
        .iter()
        .filter(|p| {
            let prog = package_program(p);
            !bin_dirs.iter().any(|d| d.join(prog).is_file())
        })
        .map(|p| p.to_string())
        .collect()
}

/// Detects whether systemd manages this system.
pub fn detect_manager() -> Manager {
    if Path::new("/run/systemd/system").is_dir() {
        Manager::Systemd
    } else {
        Manager::Direct
    }
}

fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.trim().lines().rev().take(4).collect();
        Err(format!(
            "`{} {}` failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// Whether an install of the packages carried on the card was cut off (see
/// [`crate::packages::INSTALL_MARKER`]): they must be installed again even when no program is missing.
pub fn carried_install_interrupted(opts: &ServiceOptions) -> bool {
    opts.packages_dir
        .as_deref()
        .is_some_and(crate::packages::install_interrupted)
}

/// Installs missing packages: `.deb` files carried on the card first (unpacked from `packages_archive` into
/// `packages_dir`), then `apt-get`.
fn install(opts: &ServiceOptions, report: &mut ServicesReport) -> Result<(), ServiceError> {
    use crate::packages;
    let missing = missing_packages(&opts.bin_dirs);
    // An install cut off by a power loss may have left the programs in place but their files empty: it is done
    // again (`install_debs` sees its marker).
    if missing.is_empty() && !carried_install_interrupted(opts) {
        return Ok(());
    }
    if !opts.install {
        return Err(ServiceError::Install {
            missing,
            why: "installing is turned off".into(),
        });
    }
    let mut tried = Vec::new();
    let mut carried = false;
    if let Some(dir) = &opts.packages_dir {
        if let Some(archive) = &opts.packages_archive {
            let unpacked = std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))
                .and_then(|_| packages::unpack_carried(archive, dir).map_err(|e| e.to_string()));
            if let Err(e) = unpacked {
                tried.push(e);
            }
        }
        if packages::debs_in(dir).is_empty() {
            tried.push(format!("no .deb files in {}", dir.display()));
        } else {
            carried = true;
            match packages::install_debs(dir, &opts.dpkg) {
                Ok(r) => {
                    tracing::info!(
                        "installed {} carried packages ({} already present) in {} dpkg pass(es)",
                        r.installed.len(),
                        r.skipped.len(),
                        r.passes
                    );
                    report.install_method = Some(format!(
                        "dpkg -i {}/*.deb ({} installed, {} already present)",
                        dir.display(),
                        r.installed.len(),
                        r.skipped.len()
                    ));
                }
                Err(e) => tried.push(e.to_string()),
            }
        }
    }
    let still = missing_packages(&opts.bin_dirs);
    let mut apt_unreachable = None;
    if !still.is_empty() {
        tracing::info!("installing {still:?} with apt-get");
        // `--fix-broken`: a carried set that dpkg could only partly install left packages apt must complete.
        let mut args = vec!["install", "-y", "--fix-broken", "--no-install-recommends"];
        args.extend(still.iter().map(String::as_str));
        // `--error-on=any`: a mirror that cannot be reached is an error, not a warning (apt >= 2.1).
        match run(&opts.apt_get, &["update", "--error-on=any"]) {
            Err(e) => {
                apt_unreachable = Some(e.clone());
                tried.push(e);
            }
            Ok(_) => match run(&opts.apt_get, &args) {
                Ok(_) => report.install_method = Some("apt-get install".into()),
                Err(e) => tried.push(e),
            },
        }
    }
    let left = missing_packages(&opts.bin_dirs);
    report.installed = missing.into_iter().filter(|p| !left.contains(p)).collect();
    if left.is_empty() {
        if let Some(dir) = opts.packages_dir.as_ref().filter(|_| carried) {
            // Installed: the files only take room on the root filesystem now.
            for f in packages::debs_in(dir) {
                let _ = std::fs::remove_file(f);
            }
        }
        return Ok(());
    }
    match apt_unreachable {
        Some(why) if !carried => Err(ServiceError::WaitingForNetwork { missing: left, why }),
        _ => Err(ServiceError::Install {
            missing: left,
            why: tried.join("; "),
        }),
    }
}

/// Asks glusterd whether it answers: its socket accepts, and `gluster --xml pool list` succeeds.
pub fn glusterd_alive(opts: &ServiceOptions) -> Result<String, String> {
    UnixStream::connect(&opts.glusterd_socket)
        .map_err(|e| format!("{}: {e}", opts.glusterd_socket.display()))?;
    let sock = format!("--glusterd-sock={}", opts.glusterd_socket.display());
    let out = run(
        &opts.gluster,
        &[
            "--mode=script",
            "--timeout=10",
            &sock,
            "--xml",
            "pool",
            "list",
        ],
    )?;
    if out.contains("<opRet>0</opRet>") {
        Ok(format!(
            "answers `gluster --xml pool list` on {}",
            opts.glusterd_socket.display()
        ))
    } else {
        Err("`gluster --xml pool list` did not report success".into())
    }
}

/// Asks dockerd whether it answers `GET /_ping` on its socket.
pub fn dockerd_alive(socket: &Path) -> Result<String, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let status_ok = resp
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    if status_ok && resp.trim_end().ends_with("OK") {
        Ok(format!("answers GET /_ping on {}", socket.display()))
    } else {
        Err(format!(
            "{} answered {:?}",
            socket.display(),
            resp.lines().next().unwrap_or("")
        ))
    }
}

/// The kernel setting that bounds how long a TCP connection with unacknowledged data to a dead host lives.
pub const TCP_RETRIES2: &str = "/proc/sys/net/ipv4/tcp_retries2";
/// The cluster's value of [`TCP_RETRIES2`]: about 100 s of retransmissions (RTO 0.2 s doubling) instead of
/// Linux's 15 (about 15 min).
///
/// Why: a power-cut Pi never closes its connections. glusterd on a peer that had a request in flight to it keeps
/// that connection (and the cluster-wide volume lock of the transaction) until TCP gives up, so for 15 minutes
/// every `volume set`, `replace-brick` and `volume status` answers "Another transaction is in progress" (seen in
/// the lab, fault case 6). Keep-alive does not help: it only probes idle connections. 8 is still far above any
/// stall a loaded Pi on a LAN shows, so live peers are never dropped by it.
pub const CLUSTER_TCP_RETRIES2: u32 = 8;

/// Lowers `tcp_retries2` (file `path`, normally [`TCP_RETRIES2`]) to `max` when it is higher; returns the value in
/// force. Per network namespace, so in the lab it tunes only the node's own network.
pub fn limit_tcp_retries(path: &Path, max: u32) -> std::io::Result<u32> {
    let now: u32 = std::fs::read_to_string(path)?.trim().parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    if now <= max {
        return Ok(now);
    }
    std::fs::write(path, format!("{max}\n"))?;
    tracing::info!(
        "{}: {now} -> {max} (a dead peer's connections end after ~100 s)",
        path.display()
    );
    Ok(max)
}

/// Polls `check` until it succeeds or `timeout` passes; returns the last result.
fn poll(
    timeout: Duration,
    mut check: impl FnMut() -> Result<String, String>,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = check();
        if r.is_ok() || Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Installs missing packages only (no service checks): the agent's `run` calls this before
/// [`crate::disk::prepare_disk`], which needs `mkfs.xfs` (Raspberry Pi OS Lite does not ship xfsprogs).
/// Returns the packages installed.
pub fn ensure_packages(opts: &ServiceOptions) -> Result<Vec<String>, ServiceError> {
    let mut report = ServicesReport {
        manager: opts.manager.unwrap_or_else(detect_manager),
        installed: Vec::new(),
        install_method: None,
        services: Vec::new(),
    };
    install(opts, &mut report)?;
    Ok(report.installed)
}

/// Makes sure the packages are installed and glusterd and dockerd run (see the module documentation).
pub fn ensure_services(opts: &ServiceOptions) -> Result<ServicesReport, ServiceError> {
    let manager = opts.manager.unwrap_or_else(detect_manager);
    let mut report = ServicesReport {
        manager,
        installed: Vec::new(),
        install_method: None,
        services: Vec::new(),
    };
    install(opts, &mut report)?;
    type Check<'a> = Box<dyn Fn() -> Result<String, String> + 'a>;
    let services: [(&str, &str, Check); 2] = [
        (
            "glusterd",
            "glusterd.service",
            Box::new(|| glusterd_alive(opts)),
        ),
        (
            "dockerd",
            "docker.service",
            Box::new(|| dockerd_alive(&opts.docker_socket)),
        ),
    ];
    // Without systemd, every daemon that does not answer is started first and then all are waited for, so two
    // crashed daemons come back in the time of the slower one.
    let mut launched: Vec<&str> = Vec::new();
    if let (Manager::Direct, Some(starter)) = (manager, &opts.starter) {
        for (name, _, check) in &services {
            if let Err(e) = check() {
                tracing::warn!(
                    "{name} does not answer ({e}): starting it with {}",
                    starter.display()
                );
                run(starter, &[name]).map_err(|detail| ServiceError::NotRunning {
                    service: name.to_string(),
                    detail,
                })?;
                launched.push(name);
            }
        }
    }
    for (name, unit, check) in services {
        let mut started = false;
        let result = match manager {
            Manager::Systemd => {
                let active = run(&opts.systemctl, &["is-active", "--quiet", unit]).is_ok();
                let enabled = run(&opts.systemctl, &["is-enabled", "--quiet", unit]).is_ok();
                if !active || !enabled {
                    tracing::info!("systemctl enable --now {unit}");
                    if let Err(e) = run(&opts.systemctl, &["enable", "--now", unit]) {
                        return Err(ServiceError::NotRunning {
                            service: name.into(),
                            detail: e,
                        });
                    }
                    started = !active;
                }
                poll(opts.start_timeout, &*check)
            }
            Manager::Direct if launched.contains(&name) => {
                started = true;
                poll(opts.start_timeout, &*check)
            }
            Manager::Direct => check().map_err(|e| {
                if opts.starter.is_some() {
                    e
                } else {
                    format!(
                        "{e} (no systemd here to start it and no agent.service_starter configured: start {name} first)"
                    )
                }
            }),
        };
        match result {
            Ok(detail) => report.services.push(ServiceStatus {
                name: name.into(),
                running: true,
                detail,
                started,
            }),
            Err(detail) => {
                return Err(ServiceError::NotRunning {
                    service: name.into(),
                    detail,
                })
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn opts(dir: &Path) -> ServiceOptions {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        ServiceOptions {
            manager: Some(Manager::Direct),
            bin_dirs: vec![bin.clone()],
            packages_dir: None,
            packages_archive: None,
            install: true,
            dpkg: crate::packages::DpkgTools {
                dpkg: script(dir, "dpkg", "exit 1"),
                dpkg_deb: script(dir, "dpkg-deb", "exit 2"),
                dpkg_query: script(dir, "dpkg-query", "exit 0"),
                root: None,
            },
            // No network: `apt-get update` cannot reach the mirror.
            apt_get: script(
                dir,
                "apt-get",
                "echo \"W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary \
                 failure resolving 'deb.debian.org'\" >&2; echo 'E: Some index files failed to download.' >&2; \
                 exit 100",
            ),
            systemctl: script(dir, "systemctl", "exit 1"),
            gluster: script(
                dir,
                "gluster",
                "echo '<cliOutput><opRet>0</opRet></cliOutput>'",
            ),
            glusterd_socket: dir.join("glusterd.socket"),
            docker_socket: dir.join("docker.sock"),
            start_timeout: Duration::from_secs(2),
            starter: None,
        }
    }

    fn install_all(o: &ServiceOptions) {
        for p in PACKAGES {
            script(&o.bin_dirs[0], package_program(p), "true");
        }
    }

    #[test]
    fn missing_packages_without_network_say_what_they_wait_for() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path());
        let err = ensure_services(&o).unwrap_err();
        assert!(
            matches!(err, ServiceError::WaitingForNetwork { .. }),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.starts_with("waiting for network: `"), "{err}");
        assert!(
            err.contains("apt-get update --error-on=any` failed"),
            "{err}"
        );
        assert!(err.contains("Temporary failure resolving"), "{err}");
        assert!(
            err.contains("glusterfs-server") && err.contains("docker.io"),
            "{err}"
        );
        assert!(err.contains("--packages"), "{err}");
    }

    #[test]
    fn missing_packages_apt_cannot_find_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.apt_get = script(
            d.path(),
            "apt-get",
            "[ \"$1\" = update ] && exit 0; echo 'E: Unable to locate package glusterfs-server' >&2; exit 100",
        );
        let err = ensure_services(&o).unwrap_err();
        assert!(matches!(err, ServiceError::Install { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("Unable to locate package"), "{err}");
        assert!(err.contains("packages_dir"), "{err}");
    }

    #[test]
    fn debs_carried_on_the_card_are_unpacked_and_installed_first() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        // The archive the builder puts on the boot partition.
        let src = d.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let files: Vec<PathBuf> = [
            "glusterfs-server_10.3-5_arm64.deb",
            "xfsprogs_6.1.0-1_arm64.deb",
        ]
        .iter()
        .map(|n| {
            let p = src.join(n);
            std::fs::write(&p, n.as_bytes()).unwrap();
            p
        })
        .collect();
        let archive = d.path().join("boot").join(crate::packages::ARCHIVE_NAME);
        std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
        let mut f = std::fs::File::create(&archive).unwrap();
        crate::packages::write_tar(&mut f, &files, &mut |_| {}).unwrap();
        drop(f);
        let debs = d.path().join("cache/debs");
        o.packages_dir = Some(debs.clone());
        o.packages_archive = Some(archive.clone());
        // dpkg-deb reads the fields from the file name; the fake dpkg "installs" every program.
        o.dpkg.dpkg_deb = script(
            d.path(),
            "dpkg-deb",
            "n=$(basename \"$2\" .deb); echo \"Package: ${n%%_*}\"; v=${n#*_}; echo \"Version: ${v%_*}\"; \
             echo \"Architecture: ${n##*_}\"",
        );
        let bin = o.bin_dirs[0].display().to_string();
        o.dpkg.dpkg = script(
            d.path(),
            "dpkg",
            &format!(
                "echo \"$@\" >> {0}/../dpkg.args; [ \"$1\" = -i ] || exit 0; \
                 for p in glusterd mount.glusterfs dockerd mkfs.xfs; do \
                 printf '#!/bin/sh\\n' > {0}/$p; chmod +x {0}/$p; done; \
                 for f in \"$@\"; do case \"$f\" in *.deb) n=$(basename \"$f\" .deb); v=${{n#*_}}; \
                 printf '%s\\t%s\\t%s\\tinstalled\\n' \"${{n%%_*}}\" \"${{n##*_}}\" \"${{v%_*}}\" \
                 >> {0}/../dpkg.status;; esac; done",
                bin
            ),
        );
        // dpkg-query reports what the fake dpkg installed.
        o.dpkg.dpkg_query = script(
            d.path(),
            "dpkg-query",
            &format!("cat {bin}/../dpkg.status 2>/dev/null; exit 0"),
        );
        let err = ensure_services(&o).unwrap_err();
        // Installed, but glusterd does not run here: that is the next error, and it says how it was checked.
        assert!(
            matches!(err, ServiceError::NotRunning { ref service, .. } if service == "glusterd"),
            "{err}"
        );
        assert!(err.to_string().contains("glusterd.socket"), "{err}");
        let args = std::fs::read_to_string(d.path().join("dpkg.args")).unwrap();
        let lines: Vec<&str> = args.lines().collect();
        assert_eq!(lines[0], "--configure -a", "{args}");
        assert!(
            lines[1].starts_with("-i ")
                && lines[1].contains("cache/debs/glusterfs-server_10.3-5_arm64.deb")
                && lines[1].contains("xfsprogs_6.1.0-1_arm64.deb"),
            "{args}"
        );
        assert_eq!(lines.len(), 2, "one dpkg -i of every file: {args}");
        assert!(missing_packages(&o.bin_dirs).is_empty());
        // The boot partition's archive is gone, and so are the installed files.
        assert!(!archive.exists());
        assert!(crate::packages::debs_in(&debs).is_empty());
    }

    #[test]
    fn direct_checks_see_running_daemons() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path());
        install_all(&o);
        let _gl = UnixListener::bind(&o.glusterd_socket).unwrap();
        let dock = UnixListener::bind(&o.docker_socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = dock.accept().unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).unwrap();
            assert!(std::str::from_utf8(&buf[..n])
                .unwrap()
                .starts_with("GET /_ping"));
            c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .unwrap();
        });
        let report = ensure_services(&o).unwrap();
        server.join().unwrap();
        assert!(report.ready());
        assert_eq!(report.manager, Manager::Direct);
        assert_eq!(report.services.len(), 2);
        assert!(report.installed.is_empty());
    }

    #[test]
    fn dockerd_down_is_reported_with_the_socket() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path());
        install_all(&o);
        let _gl = UnixListener::bind(&o.glusterd_socket).unwrap();
        let err = ensure_services(&o).unwrap_err().to_string();
        assert!(
            err.contains("dockerd") && err.contains("docker.sock"),
            "{err}"
        );
    }

    #[test]
    fn a_daemon_that_does_not_answer_is_started_with_the_configured_starter() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        install_all(&o);
        let marker = d.path().join("started");
        o.starter = Some(script(
            d.path(),
            "starter",
            &format!("echo \"$1\" >> {}", marker.display()),
        ));
        o.start_timeout = Duration::from_secs(20);
        let _gl = UnixListener::bind(&o.glusterd_socket).unwrap();
        // dockerd "starts" when the starter has run: its socket appears and answers.
        let (sock, m) = (o.docker_socket.clone(), marker.clone());
        let server = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !m.exists() {
                assert!(Instant::now() < deadline, "the starter never ran");
                std::thread::sleep(Duration::from_millis(20));
            }
            let dock = UnixListener::bind(&sock).unwrap();
            let (mut c, _) = dock.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf).unwrap();
            c.write_all(b"HTTP/1.0 200 OK\r\n\r\nOK").unwrap();
        });
        let report = ensure_services(&o).unwrap();
        server.join().unwrap();
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "dockerd\n");
        let started: Vec<(&str, bool)> = report
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.started))
            .collect();
        assert_eq!(started, [("glusterd", false), ("dockerd", true)]);
    }

    #[test]
    fn without_systemd_or_starter_the_error_says_what_to_configure() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path());
        install_all(&o);
        let err = ensure_services(&o).unwrap_err().to_string();
        assert!(err.contains("agent.service_starter"), "{err}");
    }

    #[test]
    fn tcp_retries_are_lowered_never_raised() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tcp_retries2");
        std::fs::write(&f, "15\n").unwrap();
        assert_eq!(limit_tcp_retries(&f, 8).unwrap(), 8);
        assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), "8");
        std::fs::write(&f, "5\n").unwrap();
        assert_eq!(limit_tcp_retries(&f, 8).unwrap(), 5);
        assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), "5");
    }

    #[test]
    fn systemd_units_are_enabled_and_started() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        install_all(&o);
        o.manager = Some(Manager::Systemd);
        let log = d.path().join("systemctl.log");
        o.systemctl = script(
            d.path(),
            "systemctl",
            &format!(
                "echo \"$@\" >> {}; case \"$1\" in is-*) exit 3;; esac; exit 0",
                log.display()
            ),
        );
        let _gl = UnixListener::bind(&o.glusterd_socket).unwrap();
        let dock = UnixListener::bind(&o.docker_socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = dock.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf).unwrap();
            c.write_all(b"HTTP/1.1 200 OK\r\n\r\nOK").unwrap();
        });
        let report = ensure_services(&o).unwrap();
        server.join().unwrap();
        assert!(report.services.iter().all(|s| s.started));
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(calls.contains("enable --now glusterd.service"), "{calls}");
        assert!(calls.contains("enable --now docker.service"), "{calls}");
    }
}
