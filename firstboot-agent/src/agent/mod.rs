//! The formation agent (placeholder while the state machine is written).
pub mod election;
pub mod phase;
pub use phase::Phase;
