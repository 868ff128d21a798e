//! The [`Gluster`] handle: one method per `gluster` CLI command the agent uses.

use std::path::PathBuf;
use std::time::Duration;

use super::xml::{HealInfo, PoolPeer, VolumeInfo, VolumeStatus};
use super::GlusterError;

/// Default time a `gluster` command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the `gluster` CLI against the local glusterd.
#[derive(Debug, Clone)]
pub struct Gluster {
    /// Path (or name on `PATH`) of the `gluster` binary.
    pub binary: PathBuf,
    /// Time each command may take.
    pub timeout: Duration,
}

impl Default for Gluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Gluster {
    /// A handle that runs `gluster` from `PATH` with [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Gluster {
            binary: PathBuf::from("gluster"),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same handle with another per-command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same handle running another `gluster` binary.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    /// Every member of the trusted pool, this node included (`gluster pool list`).
    pub async fn pool_list(&self) -> Result<Vec<PoolPeer>, GlusterError> {
        todo!()
    }

    /// Adds `host` to the pool (`gluster peer probe HOST`). Probing a host already in the pool succeeds.
    pub async fn peer_probe(&self, host: &str) -> Result<(), GlusterError> {
        let _ = host;
        todo!()
    }

    /// Removes `host` from the pool (`gluster peer detach HOST [force]`).
    pub async fn peer_detach(&self, host: &str, force: bool) -> Result<(), GlusterError> {
        let _ = (host, force);
        todo!()
    }

    /// Describes the volume `name`, or `None` when it does not exist.
    pub async fn volume_info(&self, name: &str) -> Result<Option<VolumeInfo>, GlusterError> {
        let _ = name;
        todo!()
    }

    /// Describes every volume of the pool.
    pub async fn volume_info_all(&self) -> Result<Vec<VolumeInfo>, GlusterError> {
        todo!()
    }

    /// Creates a replicated volume from `bricks` (each `host:/path`), `replica` copies of each file.
    /// `force` is needed when bricks sit on a root file system or several on one host.
    pub async fn volume_create_replica(
        &self,
        name: &str,
        replica: u32,
        bricks: &[String],
        force: bool,
    ) -> Result<(), GlusterError> {
        let _ = (name, replica, bricks, force);
        todo!()
    }

    /// Sets a volume option (`gluster volume set NAME KEY VALUE`).
    pub async fn volume_set(&self, name: &str, key: &str, value: &str) -> Result<(), GlusterError> {
        let _ = (name, key, value);
        todo!()
    }

    /// Starts the volume. Starting a started volume succeeds. `force` also restarts brick processes that died.
    pub async fn volume_start(&self, name: &str, force: bool) -> Result<(), GlusterError> {
        let _ = (name, force);
        todo!()
    }

    /// Stops the volume (no prompt). Stopping a stopped volume succeeds.
    pub async fn volume_stop(&self, name: &str, force: bool) -> Result<(), GlusterError> {
        let _ = (name, force);
        todo!()
    }

    /// Deletes a stopped volume (no prompt). The bricks' data stays on disk.
    pub async fn volume_delete(&self, name: &str) -> Result<(), GlusterError> {
        let _ = name;
        todo!()
    }

    /// Brick processes, ports and sizes of a started volume (`volume status NAME detail`).
    /// Fails with an error for which [`GlusterError::is_not_started`] holds when the volume is not started.
    pub async fn volume_status(&self, name: &str) -> Result<VolumeStatus, GlusterError> {
        let _ = name;
        todo!()
    }

    /// Entries waiting to be healed, per brick (`volume heal NAME info`).
    pub async fn heal_info(&self, name: &str) -> Result<HealInfo, GlusterError> {
        let _ = name;
        todo!()
    }

    /// Number of entries in split-brain (`volume heal NAME info split-brain`).
    pub async fn heal_split_brain(&self, name: &str) -> Result<u64, GlusterError> {
        let _ = name;
        todo!()
    }

    /// Asks the self-heal daemon to heal now (`volume heal NAME [full]`).
    pub async fn heal_start(&self, name: &str, full: bool) -> Result<(), GlusterError> {
        let _ = (name, full);
        todo!()
    }

    /// Adds one brick, raising the replica count to `replica` (`volume add-brick NAME replica N BRICK`).
    pub async fn add_brick(
        &self,
        name: &str,
        replica: u32,
        brick: &str,
        force: bool,
    ) -> Result<(), GlusterError> {
        let _ = (name, replica, brick, force);
        todo!()
    }

    /// Removes one brick, lowering the replica count to `replica`
    /// (`volume remove-brick NAME replica N BRICK force`; a replica brick holds no unique data).
    pub async fn remove_brick(
        &self,
        name: &str,
        replica: u32,
        brick: &str,
        force: bool,
    ) -> Result<(), GlusterError> {
        let _ = (name, replica, brick, force);
        todo!()
    }

    /// Puts brick `new` in the place of `old` (`volume replace-brick NAME OLD NEW commit force`);
    /// self-heal then fills the new brick.
    pub async fn replace_brick(
        &self,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<(), GlusterError> {
        let _ = (name, old, new);
        todo!()
    }

    /// Lets only `hosts` mount the volume (`auth.allow`, comma-separated).
    pub async fn volume_auth_allow(
        &self,
        name: &str,
        hosts: &[String],
    ) -> Result<(), GlusterError> {
        let _ = (name, hosts);
        todo!()
    }

    /// Whether the local glusterd answers a `pool list` within the timeout.
    pub async fn is_responding(&self) -> bool {
        todo!()
    }
}
