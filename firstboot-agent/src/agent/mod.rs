//! The formation agent (the I/O part is being written).
pub mod election;
pub mod phase;
pub mod plan;
pub use phase::Phase;
