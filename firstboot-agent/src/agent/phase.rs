//! The formation state machine: the phases a node goes through and which transitions are allowed.
//!
//! ```text
//! InstallingPackages -> PreparingDisk -> EnsuringServices -> Discovering -> Electing -> FormingPool -> CreatingVolume
//!      -> Mounting -> FormingSwarm -> Steady
//! ```
//! - Forward: exactly one step at a time (a step whose real state is already done passes straight on, so after a
//!   reboot a node walks the chain in well under a second without changing anything).
//! - Back: from any phase to any earlier phase from `Discovering` on (repair: e.g. `Steady -> Mounting` when the
//!   mount vanished, `Steady -> FormingPool` when this node was dropped from the pool).
//! - Any phase may go to `Failed`; `Failed` may go back to `InstallingPackages`, `PreparingDisk`,
//!   `EnsuringServices` or `Discovering` (retry after a back-off).
//!
//! Every transition is logged and recorded with its time ([`PhaseLog`]) for the status page and the benchmark.

use crate::api::model::PhaseRecord;
use serde::{Deserialize, Serialize};

/// One formation phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Installing the packages the cluster needs (carried on the card, else with apt once the network allows);
    /// passes straight on when they are installed.
    InstallingPackages,
    /// Laying out and formatting the brick partition.
    PreparingDisk,
    /// Making sure glusterd and dockerd run.
    EnsuringServices,
    /// Announcing and browsing until enough peers are present or an existing cluster is found.
    Discovering,
    /// Choosing the coordinator (or the existing cluster to join).
    Electing,
    /// Probing peers into the Gluster pool / waiting to be probed.
    FormingPool,
    /// Creating and starting the volume / waiting for it.
    CreatingVolume,
    /// Mounting the volume at the mount point.
    Mounting,
    /// Initialising or joining the Swarm.
    FormingSwarm,
    /// Formed: watching health, admitting late nodes.
    Steady,
    /// Stuck on an error it cannot get past alone (the detail says which).
    Failed,
}

impl Phase {
    /// The phases in formation order (without `Failed`).
    pub const CHAIN: [Phase; 10] = [
        Phase::InstallingPackages,
        Phase::PreparingDisk,
        Phase::EnsuringServices,
        Phase::Discovering,
        Phase::Electing,
        Phase::FormingPool,
        Phase::CreatingVolume,
        Phase::Mounting,
        Phase::FormingSwarm,
        Phase::Steady,
    ];

    /// Lower-case text, as announced and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::InstallingPackages => "installing-packages",
            Phase::PreparingDisk => "preparing-disk",
            Phase::EnsuringServices => "ensuring-services",
            Phase::Discovering => "discovering",
            Phase::Electing => "electing",
            Phase::FormingPool => "forming-pool",
            Phase::CreatingVolume => "creating-volume",
            Phase::Mounting => "mounting",
            Phase::FormingSwarm => "forming-swarm",
            Phase::Steady => "steady",
            Phase::Failed => "failed",
        }
    }

    /// The next phase in the chain (`None` for `Steady` and `Failed`).
    pub fn next(self) -> Option<Phase> {
        let i = Phase::CHAIN.iter().position(|p| *p == self)?;
        Phase::CHAIN.get(i + 1).copied()
    }

    /// Whether `self -> to` is an allowed transition.
    pub fn can_go_to(self, to: Phase) -> bool {
        if self == to {
            return false;
        }
        if to == Phase::Failed {
            return true;
        }
        if self == Phase::Failed {
            return matches!(
                to,
                Phase::InstallingPackages
                    | Phase::PreparingDisk
                    | Phase::EnsuringServices
                    | Phase::Discovering
            );
        }
        if self.next() == Some(to) {
            return true;
        }
        to < self && to >= Phase::Discovering
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused transition (a bug in the agent: it is logged and the transition skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transition {from} -> {to} is not allowed")]
pub struct BadTransition {
    /// Current phase.
    pub from: Phase,
    /// Asked phase.
    pub to: Phase,
}

/// The current phase and the record of every transition.
#[derive(Debug, Clone)]
pub struct PhaseLog {
    current: Phase,
    detail: String,
    records: Vec<PhaseRecord>,
}

/// How many transition records are kept (the oldest are dropped first, the first 16 are always kept).
pub const MAX_RECORDS: usize = 256;

impl PhaseLog {
    /// A log starting in `first` at `at_ms`.
    pub fn new(first: Phase, at_ms: i64) -> PhaseLog {
        PhaseLog {
            current: first,
            detail: String::new(),
            records: vec![PhaseRecord {
                phase: first.as_str().into(),
                at_ms,
                detail: String::new(),
            }],
        }
    }

    /// The current phase.
    pub fn current(&self) -> Phase {
        self.current
    }

    /// What the current phase waits for or did last.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Sets the detail without changing phase.
    pub fn set_detail(&mut self, detail: impl Into<String>) {
        self.detail = detail.into();
    }

    /// Moves to `to` if allowed, recording it; a move to the current phase only updates the detail.
    pub fn go(&mut self, to: Phase, at_ms: i64, detail: &str) -> Result<(), BadTransition> {
        if to == self.current {
            self.detail = detail.into();
            return Ok(());
        }
        if !self.current.can_go_to(to) {
            return Err(BadTransition {
                from: self.current,
                to,
            });
        }
        tracing::info!(from = %self.current, to = %to, "phase: {detail}");
        self.current = to;
        self.detail = detail.into();
        if self.records.len() >= MAX_RECORDS {
            self.records.remove(16);
        }
        self.records.push(PhaseRecord {
            phase: to.as_str().into(),
            at_ms,
            detail: detail.into(),
        });
        Ok(())
    }

    /// Every recorded transition.
    pub fn records(&self) -> &[PhaseRecord] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_one_step_only() {
        assert!(Phase::InstallingPackages.can_go_to(Phase::PreparingDisk));
        assert!(!Phase::InstallingPackages.can_go_to(Phase::EnsuringServices));
        assert!(Phase::PreparingDisk.can_go_to(Phase::EnsuringServices));
        assert!(Phase::FormingSwarm.can_go_to(Phase::Steady));
        assert!(!Phase::Discovering.can_go_to(Phase::CreatingVolume));
        assert!(!Phase::PreparingDisk.can_go_to(Phase::Steady));
    }

    #[test]
    fn back_only_to_discovering_or_later() {
        assert!(Phase::Steady.can_go_to(Phase::Mounting));
        assert!(Phase::Steady.can_go_to(Phase::Discovering));
        assert!(!Phase::Steady.can_go_to(Phase::PreparingDisk));
        assert!(!Phase::Mounting.can_go_to(Phase::EnsuringServices));
    }

    #[test]
    fn failed_and_retry() {
        for p in Phase::CHAIN {
            assert!(p.can_go_to(Phase::Failed));
        }
        assert!(Phase::Failed.can_go_to(Phase::Discovering));
        assert!(!Phase::Failed.can_go_to(Phase::Steady));
    }

    #[test]
    fn log_records_transitions_and_refuses_bad_ones() {
        let mut log = PhaseLog::new(Phase::PreparingDisk, 0);
        log.go(Phase::EnsuringServices, 10, "disk ready").unwrap();
        log.go(Phase::EnsuringServices, 11, "still").unwrap();
        assert_eq!(
            log.go(Phase::Steady, 12, "jump"),
            Err(BadTransition {
                from: Phase::EnsuringServices,
                to: Phase::Steady
            })
        );
        assert_eq!(log.current(), Phase::EnsuringServices);
        assert_eq!(log.records().len(), 2);
        assert_eq!(log.records()[1].at_ms, 10);
        assert_eq!(log.detail(), "still");
    }
}
