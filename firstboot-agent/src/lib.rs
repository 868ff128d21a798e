//! firstboot-agent: the program that runs on every Pi of the cluster.
//!
//! It prepares the card (brick partition, XFS), makes sure glusterd and dockerd run, finds its peers over mDNS,
//! forms the Gluster pool, the replicated volume and the Docker Swarm, mounts the volume, serves the status page
//! and keeps the cluster healthy. The library part also holds what `image-builder` shares with it: the cluster
//! config type and the partition arithmetic.

pub mod agent;
pub mod api;
pub mod config;
pub mod disk;
pub mod docker;
pub mod gluster;
pub mod hosts;
pub mod identity;
pub mod layout;
pub mod mdns;
pub mod metrics;
pub mod notify;
pub mod packages;
pub mod peers;
pub mod services;
pub mod state;
pub mod status_cli;
pub mod trust;
