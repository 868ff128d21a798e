//! Peers: what a node announces over mDNS (the signed TXT record) and the table of verified peers.
//!
//! An [`Announcement`] is encoded into TXT pairs with a `sig` pair made by [`crate::trust::ClusterKey::sign_txt`];
//! [`Announcement::from_txt`] refuses anything unsigned, signed with another key, from another cluster id, too
//! large or malformed. Only verified announcements enter the [`PeerTable`].

use crate::trust::{ClusterKey, TrustError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::RwLock;

/// Largest accepted length of one TXT value.
pub const MAX_TXT_VALUE: usize = 200;
/// Largest accepted number of TXT pairs.
pub const MAX_TXT_PAIRS: usize = 24;

/// Why an announcement was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// A required key is absent.
    #[error("announcement lacks `{0}`")]
    Missing(&'static str),
    /// A value is too long or the record has too many pairs.
    #[error("announcement is oversized")]
    Oversized,
    /// A value does not parse.
    #[error("announcement field `{0}` is malformed")]
    Malformed(&'static str),
    /// The announcement belongs to another cluster.
    #[error("announcement is for another cluster")]
    OtherCluster,
    /// The signature does not verify with this cluster's key.
    #[error("announcement signature: {0}")]
    Signature(#[from] TrustError),
}

/// What a node tells the network about itself (all of it signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The cluster id from the config.
    pub cluster_id: String,
    /// The node's stable id.
    pub node_id: String,
    /// The node's host name (what Gluster peers are probed by).
    pub hostname: String,
    /// Agent version.
    pub version: String,
    /// The node's formation phase, as text.
    pub phase: String,
    /// TCP port of the node's agent API.
    pub api_port: u16,
    /// The node's LAN address.
    pub addr: Ipv4Addr,
    /// Unix time the announcement was signed.
    pub ts: i64,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Announcement {
    /// The TXT pairs for this announcement, `sig` included.
    pub fn to_txt(&self, key: &ClusterKey) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("cid".to_string(), self.cluster_id.clone()),
            ("nid".to_string(), self.node_id.clone()),
            ("host".to_string(), self.hostname.clone()),
            ("ver".to_string(), self.version.clone()),
            ("st".to_string(), self.phase.clone()),
            ("port".to_string(), self.api_port.to_string()),
            ("addr".to_string(), self.addr.to_string()),
            ("ts".to_string(), self.ts.to_string()),
        ];
        let sig = key.sign_txt(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        pairs.push(("sig".to_string(), sig));
        pairs
    }

    /// Parses and verifies TXT pairs; refuses other clusters, bad signatures and malformed records.
    pub fn from_txt(
        pairs: &[(String, String)],
        key: &ClusterKey,
        cluster_id: &str,
    ) -> Result<Announcement, AnnounceError> {
        if pairs.len() > MAX_TXT_PAIRS {
            return Err(AnnounceError::Oversized);
        }
        let mut map: HashMap<&str, &str> = HashMap::new();
        for (k, v) in pairs {
            if k.len() > 16 || v.len() > MAX_TXT_VALUE {
                return Err(AnnounceError::Oversized);
            }
            if map.insert(k.as_str(), v.as_str()).is_some() {
                return Err(AnnounceError::Malformed("duplicate key"));
            }
        }
        let get = |k: &'static str| map.get(k).copied().ok_or(AnnounceError::Missing(k));
        if get("cid")? != cluster_id {
            return Err(AnnounceError::OtherCluster);
        }
        let sig = get("sig")?;
        key.verify_txt(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), sig)?;
        let node_id = get("nid")?;
        let hostname = get("host")?;
        if !valid_name(node_id) {
            return Err(AnnounceError::Malformed("nid"));
        }
        if !valid_name(hostname) {
            return Err(AnnounceError::Malformed("host"));
        }
        Ok(Announcement {
            cluster_id: cluster_id.to_string(),
            node_id: node_id.to_string(),
            hostname: hostname.to_string(),
            version: get("ver")?.to_string(),
            phase: get("st")?.to_string(),
            api_port: get("port")?
                .parse()
                .map_err(|_| AnnounceError::Malformed("port"))?,
            addr: get("addr")?
                .parse()
                .map_err(|_| AnnounceError::Malformed("addr"))?,
            ts: get("ts")?
                .parse()
                .map_err(|_| AnnounceError::Malformed("ts"))?,
        })
    }
}

/// One verified peer.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// Its latest verified announcement.
    pub announcement: Announcement,
    /// Unix time it was last seen (announcement or successful authenticated API call).
    pub last_seen: i64,
}

/// The table of verified peers, keyed by node id. Shared between the mDNS browser, the agent and the API.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: RwLock<BTreeMap<String, Peer>>,
}

impl PeerTable {
    /// An empty table.
    pub fn new() -> PeerTable {
        PeerTable::default()
    }

    /// Adds or refreshes a peer from a verified announcement. An older announcement never replaces a newer one.
    pub fn upsert(&self, a: Announcement, now: i64) {
        let mut peers = self.peers.write().expect("peer table lock");
        match peers.get_mut(&a.node_id) {
            Some(p) if p.announcement.ts > a.ts => p.last_seen = p.last_seen.max(now),
            Some(p) => {
                p.announcement = a;
                p.last_seen = now;
            }
            None => {
                peers.insert(
                    a.node_id.clone(),
                    Peer {
                        announcement: a,
                        last_seen: now,
                    },
                );
            }
        }
    }

    /// Marks a peer as seen now (after an authenticated exchange with it).
    pub fn touch(&self, node_id: &str, now: i64) {
        if let Some(p) = self
            .peers
            .write()
            .expect("peer table lock")
            .get_mut(node_id)
        {
            p.last_seen = now;
        }
    }

    /// All peers, ordered by node id.
    pub fn all(&self) -> Vec<Peer> {
        self.peers
            .read()
            .expect("peer table lock")
            .values()
            .cloned()
            .collect()
    }

    /// Peers seen within `max_age` seconds of `now`.
    pub fn fresh(&self, now: i64, max_age: i64) -> Vec<Peer> {
        self.all()
            .into_iter()
            .filter(|p| now - p.last_seen <= max_age)
            .collect()
    }

    /// Forgets a peer (a node replaced or gone for good); a later verified announcement adds it again.
    pub fn remove(&self, node_id: &str) -> Option<Peer> {
        self.peers.write().expect("peer table lock").remove(node_id)
    }

    /// One peer by node id.
    pub fn get(&self, node_id: &str) -> Option<Peer> {
        self.peers
            .read()
            .expect("peer table lock")
            .get(node_id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Announcement {
        Announcement {
            cluster_id: "c-1".into(),
            node_id: "0123abcd".into(),
            hostname: "picluster-0123".into(),
            version: "0.1.0".into(),
            phase: "discovering".into(),
            api_port: 7780,
            addr: Ipv4Addr::new(10, 0, 0, 2),
            ts: 1000,
        }
    }

    #[test]
    fn round_trip_verifies() {
        let k = ClusterKey::new(&[7; 32]);
        let txt = ann().to_txt(&k);
        assert_eq!(Announcement::from_txt(&txt, &k, "c-1").unwrap(), ann());
    }

    #[test]
    fn forged_or_foreign_announcements_are_refused() {
        let k = ClusterKey::new(&[7; 32]);
        let other = ClusterKey::new(&[8; 32]);
        // Signed with another key.
        let txt = ann().to_txt(&other);
        assert!(matches!(
            Announcement::from_txt(&txt, &k, "c-1"),
            Err(AnnounceError::Signature(_))
        ));
        // Another cluster id.
        assert_eq!(
            Announcement::from_txt(&ann().to_txt(&k), &k, "c-2"),
            Err(AnnounceError::OtherCluster)
        );
        // A field changed after signing.
        let mut txt = ann().to_txt(&k);
        txt[6].1 = "10.0.0.66".into();
        assert!(matches!(
            Announcement::from_txt(&txt, &k, "c-1"),
            Err(AnnounceError::Signature(_))
        ));
        // Unsigned.
        let mut txt = ann().to_txt(&k);
        txt.pop();
        assert_eq!(
            Announcement::from_txt(&txt, &k, "c-1"),
            Err(AnnounceError::Missing("sig"))
        );
    }

    #[test]
    fn oversized_and_malformed_are_refused() {
        let k = ClusterKey::new(&[7; 32]);
        let mut a = ann();
        a.version = "x".repeat(500);
        assert_eq!(
            Announcement::from_txt(&a.to_txt(&k), &k, "c-1"),
            Err(AnnounceError::Oversized)
        );
        let mut a = ann();
        a.hostname = "bad host;rm".into();
        assert_eq!(
            Announcement::from_txt(&a.to_txt(&k), &k, "c-1"),
            Err(AnnounceError::Malformed("host"))
        );
        let many: Vec<(String, String)> = (0..100).map(|i| (i.to_string(), "v".into())).collect();
        assert_eq!(
            Announcement::from_txt(&many, &k, "c-1"),
            Err(AnnounceError::Oversized)
        );
    }

    #[test]
    fn older_announcement_does_not_replace_newer() {
        let t = PeerTable::new();
        let mut a = ann();
        a.ts = 2000;
        a.phase = "steady".into();
        t.upsert(a, 2000);
        let mut old = ann();
        old.ts = 1000;
        t.upsert(old, 2001);
        let p = t.get("0123abcd").unwrap();
        assert_eq!(p.announcement.phase, "steady");
        assert_eq!(p.last_seen, 2001);
    }
}
