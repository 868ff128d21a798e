//! GlusterFS, driven through its command line (`gluster --xml --mode=script ...`).
//!
//! Every call runs the `gluster` CLI with a timeout and parses its machine-readable XML output: nothing is
//! remembered between calls, so the caller always sees the real state of glusterd (which may have restarted).
//!
//! - [`cli`]: the [`Gluster`] handle and one method per CLI command the agent needs.
//! - [`xml`]: the typed results and the parsers of `gluster --xml` output (pure functions, tested on captures).
//! - [`mount`]: mounting the volume through FUSE, checking the mount answers, the fstab line for boot.
//! - [`brick`]: the marks glusterd leaves on a brick directory, and clearing those a failed transaction left.
//! - [`gsyncd`]: a fast answer to the `gsyncd --version` every CLI call runs.

pub mod brick;
pub mod brick_process;
pub mod cli;
pub mod gsyncd;
pub mod mount;
pub mod xml;

pub use cli::Gluster;
pub use xml::{
    Brick, BrickHeal, BrickStatus, HealInfo, PoolPeer, VolumeInfo, VolumeState, VolumeStatus,
};

use std::time::Duration;

/// What went wrong when running a `gluster` command.
///
/// Every variant names the command line that was run, so a log line says what to retry by hand.
#[derive(Debug, thiserror::Error)]
pub enum GlusterError {
    /// The `gluster` binary could not be started.
    #[error("could not run `{command}`: {source}; is the glusterfs-server package installed?")]
    Spawn {
        /// The command line.
        command: String,
        /// The error from the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The command did not finish in time (it was killed).
    #[error(
        "`{command}` did not finish within {timeout:?}; glusterd may be hung or a peer unreachable"
    )]
    Timeout {
        /// The command line.
        command: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// The CLI could not reach the local glusterd.
    #[error("`{command}`: glusterd is not running or not answering ({stderr}); start glusterd and retry")]
    NotRunning {
        /// The command line.
        command: String,
        /// What the CLI printed.
        stderr: String,
    },
    /// glusterd answered and refused or failed the operation (`opRet` != 0 in the XML).
    #[error("`{command}` failed: {message} (opRet {op_ret}, opErrno {op_errno})")]
    Failed {
        /// The command line.
        command: String,
        /// glusterd's `opRet`.
        op_ret: i32,
        /// glusterd's `opErrno`.
        op_errno: i32,
        /// glusterd's `opErrstr` (or the CLI's stderr when the XML carried none).
        message: String,
        /// What the CLI printed on stderr.
        stderr: String,
    },
    /// The CLI exited with an error and printed no XML that explains it.
    #[error("`{command}` exited with {status}: {stderr}")]
    Exit {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// What the CLI printed (stderr, or stdout when stderr was empty).
        stderr: String,
    },
    /// The output was not the XML this module expects (a glusterfs version with another format?).
    #[error("could not understand the output of `{command}`: {reason}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong.
        reason: String,
    },
}

impl GlusterError {
    /// The message glusterd gave for a failed operation, if the error is one.
    pub fn op_message(&self) -> Option<&str> {
        match self {
            GlusterError::Failed { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether glusterd said the named thing already exists / is already done
    /// (e.g. "already started", "already in peer list", "already exists"). Not a brick directory marked for a
    /// volume ([`GlusterError::is_brick_in_use`]): that refusal is not the work done.
    pub fn is_already(&self) -> bool {
        !self.is_brick_in_use()
            && self
                .op_message()
                .map(|m| {
                    let m = m.to_ascii_lowercase();
                    m.contains("already") || m.contains("is in cluster") || m.contains("exists")
                })
                .unwrap_or(false)
    }

    /// Whether glusterd refused a brick directory because it is marked for a volume ("PATH is already part of a
    /// volume").
    pub fn is_brick_in_use(&self) -> bool {
        self.op_message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("already part of a volume"))
    }

    /// Whether glusterd said the volume does not exist.
    pub fn is_no_such_volume(&self) -> bool {
        self.op_message()
            .map(|m| m.to_ascii_lowercase().contains("does not exist"))
            .unwrap_or(false)
    }

    /// Whether glusterd said the volume is not started.
    pub fn is_not_started(&self) -> bool {
        self.op_message()
            .map(|m| m.to_ascii_lowercase().contains("not started"))
            .unwrap_or(false)
    }
}

/// Reads a captured `gluster --xml` output from `tests/fixtures/gluster/` (see its README for where each came from).
#[cfg(test)]
pub(crate) fn test_fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/gluster/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
