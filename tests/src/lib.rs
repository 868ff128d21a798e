//! Shared helpers for the cross-crate integration tests: [`lab`] drives the multi-node lab (`ci/lab`).

pub mod lab;
