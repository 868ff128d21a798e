//! The cluster configuration: one TOML file written by `image-builder` onto the boot partition and installed by
//! the first-run script under `/etc/firstboot-agent/cluster.toml` (mode 0600, it holds the key).
//!
//! The same type is read by both programs, so the builder never writes a file the agent would refuse.
//! Unknown keys and bad values are errors that name the key and the file; the config is validated once, when read.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the first-run script installs the config on the root filesystem.
pub const INSTALLED_CONFIG_PATH: &str = "/etc/firstboot-agent/cluster.toml";
/// The config's file name on the FAT boot partition (in its root directory).
pub const BOOT_CONFIG_NAME: &str = "cluster.toml";
/// Default TCP port of the agent's API and status page.
pub const DEFAULT_API_PORT: u16 = 7780;
/// Length of the cluster key in bytes (it is stored hex-encoded).
pub const KEY_LEN: usize = 32;

/// Name of the stand-in brick directory under `storage.brick_mount` ([`ClusterConfig::stand_in_path`]).
pub const STAND_IN_DIR: &str = "stand-in";

/// Errors found while reading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read cluster config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML could not be parsed, or names an unknown key, or a value has the wrong type.
    #[error("cluster config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, including the key and line.
        message: String,
    },
    /// A value parsed but is out of range.
    #[error("cluster config {path}: key `{key}`: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key, dotted (`disk.brick_share`).
        key: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// How the brick partition (partition 3) is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrickLayoutMode {
    /// The builder laid out partition 3 for a known card size; the agent only fixes it when the real card differs.
    Fixed,
    /// The image has no partition 3 (or a placeholder); the agent lays it out at first boot from the real card size.
    Deferred,
}

/// The whole cluster configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster identity and trust.
    pub cluster: ClusterSection,
    /// The brick partition and the shared volume.
    pub storage: StorageSection,
    /// Node naming and the agent's own settings.
    #[serde(default)]
    pub agent: AgentSection,
}

/// `[cluster]`: who belongs to this cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Human name of the cluster, shown on the status page.
    pub name: String,
    /// Random id made by the builder (UUID text); announcements carry it.
    pub id: String,
    /// The cluster key, 32 bytes hex-encoded. Every agent-to-agent request proves knowledge of it.
    pub key: String,
    /// How many nodes the cluster is built for (the builder's `--nodes`).
    pub nodes: u32,
}

/// `[storage]`: the brick and the replicated volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Percent of the card given to the brick partition, 1..=99.
    #[serde(default = "default_brick_share")]
    pub brick_share: u8,
    /// Whether partition 3 was laid out by the builder or is left to first boot.
    #[serde(default = "default_layout")]
    pub layout: BrickLayoutMode,
    /// Card size in bytes the builder laid the table out for (only with `layout = "fixed"`).
    #[serde(default)]
    pub card_size: Option<u64>,
    /// Name of the Gluster volume.
    #[serde(default = "default_volume_name")]
    pub volume_name: String,
    /// Where the brick partition's XFS is mounted.
    #[serde(default = "default_brick_mount")]
    pub brick_mount: PathBuf,
    /// The brick directory inside the brick mount (Gluster wants a subdirectory, not the mount point itself).
    #[serde(default = "default_brick_dir")]
    pub brick_dir: String,
    /// Where the shared volume is mounted on every node.
    #[serde(default = "default_mount_point")]
    pub mount_point: PathBuf,
}

/// `[agent]`: naming and the agent's own knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Host names are `<prefix>-<short id>`.
    #[serde(default = "default_hostname_prefix")]
    pub hostname_prefix: String,
    /// TCP port of the API and status page.
    #[serde(default = "default_api_port")]
    pub api_port: u16,
    /// Where the agent keeps its state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Seconds to wait for all expected nodes before forming from a majority.
    #[serde(default = "default_majority_wait")]
    pub majority_wait_secs: u64,
    /// Seconds a cluster member may be unreachable before it counts as dead. Only then does a fresh node that
    /// appears take its place (its brick by replace-brick; the dead peer is detached and its Swarm node removed).
    /// A member that comes back sooner only heals. The default (600 s) outlasts a reboot or a short power or
    /// network outage of a Pi.
    #[serde(default = "default_replace_grace")]
    pub replace_grace_secs: u64,
    /// Directory holding .deb files to install offline, if the image carries them: the carried archive is
    /// unpacked here (on the root filesystem) and installed from here.
    #[serde(default)]
    pub packages_dir: Option<PathBuf>,
    /// The archive of .deb files the image carries on its boot partition (`image-builder build --packages`),
    /// unpacked into `packages_dir` and removed at first boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_archive: Option<PathBuf>,
    /// Only where systemd does not manage the system (the lab): a program the agent runs as `PROGRAM glusterd` or
    /// `PROGRAM dockerd` to start that daemon when it stops answering. It must start the daemon in the background
    /// and return. On a Pi this stays unset and the agent restarts the units with `systemctl`.
    #[serde(default)]
    pub service_starter: Option<PathBuf>,
    /// Put a fast answer to `gsyncd --version` in gsyncd's place (a local dpkg diversion keeps the real program;
    /// see `gluster::gsyncd`): every `gluster` CLI call asks it, and the real one starts Python. Off in the lab,
    /// whose nodes share the host's /usr.
    #[serde(default = "default_true")]
    pub gsyncd_version_shortcut: bool,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            hostname_prefix: default_hostname_prefix(),
            api_port: default_api_port(),
            state_dir: default_state_dir(),
            majority_wait_secs: default_majority_wait(),
            replace_grace_secs: default_replace_grace(),
            packages_dir: None,
            packages_archive: None,
            service_starter: None,
            gsyncd_version_shortcut: true,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_brick_share() -> u8 {
    50
}
fn default_layout() -> BrickLayoutMode {
    BrickLayoutMode::Deferred
}
fn default_volume_name() -> String {
    "shared".into()
}
fn default_brick_mount() -> PathBuf {
    "/srv/gluster/brick1".into()
}
fn default_brick_dir() -> String {
    "brick".into()
}
fn default_mount_point() -> PathBuf {
    "/mnt/shared".into()
}
fn default_hostname_prefix() -> String {
    "picluster".into()
}
fn default_api_port() -> u16 {
    DEFAULT_API_PORT
}
fn default_state_dir() -> PathBuf {
    "/var/lib/firstboot-agent".into()
}
fn default_majority_wait() -> u64 {
    120
}
fn default_replace_grace() -> u64 {
    600
}

impl ClusterConfig {
    /// A new config with a fresh random id and key and every default.
    pub fn generate(name: &str, nodes: u32) -> ClusterConfig {
        use rand::RngCore;
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        ClusterConfig {
            cluster: ClusterSection {
                name: name.to_string(),
                id: uuid::Uuid::new_v4().to_string(),
                key: hex::encode(key),
                nodes,
            },
            storage: StorageSection {
                brick_share: default_brick_share(),
                layout: default_layout(),
                card_size: None,
                volume_name: default_volume_name(),
                brick_mount: default_brick_mount(),
                brick_dir: default_brick_dir(),
                mount_point: default_mount_point(),
            },
            agent: AgentSection::default(),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ClusterConfig, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Serialises the config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The config with the key replaced by a placeholder, for display.
    pub fn redacted(&self) -> ClusterConfig {
        let mut c = self.clone();
        c.cluster.key = "<redacted>".into();
        c
    }

    /// The key as bytes (validated to be `KEY_LEN` bytes).
    pub fn key_bytes(&self) -> Vec<u8> {
        hex::decode(&self.cluster.key).expect("key validated at load")
    }

    /// Full path of the brick directory (`brick_mount/brick_dir`).
    pub fn brick_path(&self) -> PathBuf {
        self.storage.brick_mount.join(&self.storage.brick_dir)
    }

    /// Path of this node's stand-in brick directory (`brick_mount/stand-in`), on the brick partition beside the
    /// brick: it holds a missing node's slot in a volume formed without that node, until a node takes the slot
    /// (see [`crate::agent::election`]).
    pub fn stand_in_path(&self) -> PathBuf {
        self.storage.brick_mount.join(STAND_IN_DIR)
    }

    /// Checks every value's range; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        if self.cluster.name.trim().is_empty() || self.cluster.name.len() > 63 {
            return Err(bad("cluster.name", "must be 1 to 63 characters".into()));
        }
        if self.cluster.id.is_empty() || self.cluster.id.len() > 64 {
            return Err(bad("cluster.id", "must be 1 to 64 characters".into()));
        }
        match hex::decode(&self.cluster.key) {
            Ok(k) if k.len() == KEY_LEN => {}
            _ => {
                return Err(bad(
                    "cluster.key",
                    format!("must be {} hex characters ({KEY_LEN} bytes)", KEY_LEN * 2),
                ))
            }
        }
        if !(1..=64).contains(&self.cluster.nodes) {
            return Err(bad(
                "cluster.nodes",
                format!("{} is not in 1..=64", self.cluster.nodes),
            ));
        }
        if !(1..=99).contains(&self.storage.brick_share) {
            return Err(bad(
                "storage.brick_share",
                format!("{} is not a percentage in 1..=99", self.storage.brick_share),
            ));
        }
        if self.storage.layout == BrickLayoutMode::Fixed && self.storage.card_size.is_none() {
            return Err(bad(
                "storage.card_size",
                "is required when storage.layout = \"fixed\"".into(),
            ));
        }
        let vol = &self.storage.volume_name;
        if vol.is_empty()
            || vol.len() > 64
            || !vol
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "storage.volume_name",
                format!("{vol:?} must be 1 to 64 letters, digits, '-' or '_'"),
            ));
        }
        let starter = self.agent.service_starter.as_ref();
        for (key, p) in [
            ("storage.brick_mount", Some(&self.storage.brick_mount)),
            ("storage.mount_point", Some(&self.storage.mount_point)),
            ("agent.state_dir", Some(&self.agent.state_dir)),
            ("agent.service_starter", starter),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        {
            if !p.is_absolute() {
                return Err(bad(
                    key,
                    format!("{} must be an absolute path", p.display()),
                ));
            }
        }
        let dir = &self.storage.brick_dir;
        if dir.is_empty() || dir.contains('/') || dir == "." || dir == ".." {
            return Err(bad(
                "storage.brick_dir",
                format!("{dir:?} must be one plain directory name"),
            ));
        }
        if dir == STAND_IN_DIR {
            return Err(bad(
                "storage.brick_dir",
                format!("{dir:?} is the stand-in brick's directory; choose another name"),
            ));
        }
        let prefix = &self.agent.hostname_prefix;
        if prefix.is_empty()
            || prefix.len() > 40
            || prefix.starts_with('-')
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad(
                "agent.hostname_prefix",
                format!("{prefix:?} must be 1 to 40 letters, digits or '-', not starting with '-'"),
            ));
        }
        if self.agent.api_port == 0 {
            return Err(bad("agent.api_port", "must not be 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/firstboot-agent/cluster.toml")
    }

    #[test]
    fn generated_config_round_trips() {
        let c = ClusterConfig::generate("lab", 4);
        let back = ClusterConfig::parse(&c.to_toml(), p()).unwrap();
        assert_eq!(c, back);
        assert_eq!(c.key_bytes().len(), KEY_LEN);
    }

    #[test]
    fn unknown_key_is_named() {
        let mut text = ClusterConfig::generate("lab", 4).to_toml();
        text = text.replace("[storage]", "[storage]\nbrick_sahre = 40");
        let err = ClusterConfig::parse(&text, p()).unwrap_err().to_string();
        assert!(err.contains("brick_sahre"), "{err}");
        assert!(err.contains("cluster.toml"), "{err}");
    }

    #[test]
    fn bad_share_is_named() {
        let text = ClusterConfig::generate("lab", 4)
            .to_toml()
            .replace("brick_share = 50", "brick_share = 0");
        let err = ClusterConfig::parse(&text, p()).unwrap_err().to_string();
        assert!(err.contains("storage.brick_share"), "{err}");
    }

    #[test]
    fn short_key_is_refused() {
        let mut c = ClusterConfig::generate("lab", 4);
        c.cluster.key = "abcd".into();
        let err = ClusterConfig::parse(&c.to_toml(), p())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.key"), "{err}");
    }

    #[test]
    fn redacted_hides_key() {
        let c = ClusterConfig::generate("lab", 4);
        assert!(!c.redacted().to_toml().contains(&c.cluster.key));
    }
}
