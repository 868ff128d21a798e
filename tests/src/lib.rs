//! Shared helpers for the cross-crate integration tests: [`lab`] drives the multi-node lab (`ci/lab`), [`workload`]
//! writes checksummed files through the shared mount and proves none was lost, [`summary`] prints the fault suite's
//! table.

pub mod lab;
pub mod summary;
pub mod workload;
