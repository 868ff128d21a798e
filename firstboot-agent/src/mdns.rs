//! mDNS discovery: announce this node under the project's own service type and browse for its peers.
//!
//! - Service type [`SERVICE_TYPE`]; the instance name is the node's host name; the SRV target is
//!   `<hostname>-agent.local.`. The agent never registers the plain `<hostname>.local` name: on Raspberry Pi OS
//!   avahi-daemon owns it and would see a conflict and rename the host. Peers use the signed `addr` TXT value,
//!   not the SRV target, so the extra name is only informational.
//! - Works beside a running avahi-daemon: mdns-sd binds 5353 with address reuse, like avahi does, and both see
//!   every multicast packet.
//! - Interfaces: IPv4 only; loopback, `docker*`, `veth*`, `br-*`, `virbr*` and `docker_gwbridge` are skipped
//!   (Docker Swarm creates some of these after formation; announcing there would leak to containers).
//! - Every received record is verified ([`Announcement::from_txt`]); forged, foreign or malformed ones are
//!   dropped (counted in [`Stats`]) and never reach the [`PeerTable`].

use crate::peers::{Announcement, PeerTable};
use crate::trust::{unix_now, ClusterKey};
use mdns_sd::{IfKind, IfPredicate, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The project's own mDNS service type.
pub const SERVICE_TYPE: &str = "_picluster._tcp.local.";

/// Errors of the mDNS layer.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// The mDNS daemon could not start or refused a command.
    #[error("mDNS: {0} (is UDP port 5353 usable and multicast enabled on the LAN interface?)")]
    Daemon(#[from] mdns_sd::Error),
}

/// Whether the agent uses an interface for mDNS and for its LAN address.
pub fn interface_allowed(name: &str) -> bool {
    !(name == "lo"
        || name.starts_with("docker")
        || name.starts_with("veth")
        || name.starts_with("br-")
        || name.starts_with("virbr")
        || name.starts_with("cni")
        || name.starts_with("flannel"))
}

/// This node's LAN address: the first IPv4 address (by interface name, `eth*` first) of an allowed interface
/// that is up, or `None`.
pub fn lan_address() -> Option<Ipv4Addr> {
    let mut found: Vec<(bool, String, Ipv4Addr)> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|i| interface_allowed(&i.name) && !i.is_loopback())
        .filter_map(|i| match i.ip() {
            IpAddr::V4(a) if !a.is_link_local() => Some((!i.name.starts_with("eth"), i.name, a)),
            _ => None,
        })
        .collect();
    found.sort();
    found.first().map(|(_, _, a)| *a)
}

/// Counters of received announcements.
#[derive(Debug, Default)]
pub struct Stats {
    /// Verified announcements accepted.
    pub accepted: AtomicU64,
    /// Announcements dropped (bad signature, other cluster, malformed).
    pub rejected: AtomicU64,
}

/// The running mDNS announcer and browser.
pub struct Mdns {
    daemon: ServiceDaemon,
    key: ClusterKey,
    instance: String,
    /// Counters of what the browser received.
    pub stats: Arc<Stats>,
}

impl Mdns {
    /// Starts the mDNS daemon on the allowed IPv4 interfaces; `instance` is the service instance name.
    pub fn start(key: ClusterKey, instance: &str) -> Result<Mdns, MdnsError> {
        let daemon = ServiceDaemon::new()?;
        daemon.disable_interface(IfKind::IPv6)?;
        daemon.disable_interface(IfKind::Predicate(IfPredicate::new(|i| {
            !interface_allowed(&i.name) || i.is_loopback()
        })))?;
        Ok(Mdns {
            daemon,
            key,
            instance: instance.to_string(),
            stats: Arc::new(Stats::default()),
        })
    }

    /// Announces (or re-announces, with a fresh signature) this node.
    pub fn announce(&self, a: &Announcement) -> Result<(), MdnsError> {
        let txt: HashMap<String, String> = a.to_txt(&self.key).into_iter().collect();
        let host = format!("{}-agent.local.", a.hostname);
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance,
            &host,
            IpAddr::V4(a.addr),
            a.api_port,
            txt,
        )?;
        self.daemon.register(info)?;
        Ok(())
    }

    /// Browses for peers in a background thread, putting every verified announcement of `cluster_id` except
    /// this node's own (`self_id`) into `table`.
    pub fn browse(
        &self,
        table: Arc<PeerTable>,
        cluster_id: String,
        self_id: String,
    ) -> Result<(), MdnsError> {
        let rx = self.daemon.browse(SERVICE_TYPE)?;
        let key = self.key.clone();
        let stats = self.stats.clone();
        std::thread::Builder::new()
            .name("mdns-browse".into())
            .spawn(move || {
                while let Ok(event) = rx.recv() {
                    let ServiceEvent::ServiceResolved(info) = event else {
                        continue;
                    };
                    let pairs: Vec<(String, String)> = info
                        .get_properties()
                        .iter()
                        .map(|p| (p.key().to_string(), p.val_str().to_string()))
                        .collect();
                    match Announcement::from_txt(&pairs, &key, &cluster_id) {
                        Ok(a) if a.node_id == self_id => {}
                        Ok(a) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            table.upsert(a, unix_now());
                        }
                        Err(e) => {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(
                                instance = info.get_fullname(),
                                "ignored announcement: {e}"
                            );
                        }
                    }
                }
            })
            .map_err(|e| MdnsError::Daemon(mdns_sd::Error::Msg(e.to_string())))?;
        Ok(())
    }

    /// Stops announcing and browsing.
    pub fn shutdown(&self) {
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_container_and_loopback_interfaces() {
        for n in [
            "lo",
            "docker0",
            "docker_gwbridge",
            "veth12ab",
            "br-3f2a",
            "virbr0",
        ] {
            assert!(!interface_allowed(n), "{n}");
        }
        for n in ["eth0", "wlan0", "end0", "enp1s0"] {
            assert!(interface_allowed(n), "{n}");
        }
    }
}
