//! Trust between agents: every agent-to-agent request and every mDNS announcement proves knowledge of the
//! cluster key with an HMAC-SHA256.
//!
//! Requests: the MAC covers a fixed domain tag, the HTTP method, the path (with query), the SHA-256 of the body,
//! a Unix timestamp and a random nonce. The timestamp, nonce and MAC travel in the headers [`HEADER_TS`],
//! [`HEADER_NONCE`] and [`HEADER_MAC`]. [`Verifier::verify_request`] refuses a wrong MAC (compared in constant
//! time), a timestamp more than [`MAX_SKEW_SECS`] away from the local clock, and a nonce already seen inside that
//! window (replay); the nonce cache is bounded, and when it is full of fresh nonces new requests are refused
//! rather than letting a replay through.
//!
//! Announcements: the TXT record's key/value pairs are put in a canonical order (sorted by key, `sig` left out)
//! and MACed under a different domain tag, so a request MAC can never be passed off as an announcement MAC.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the request's Unix timestamp (seconds).
pub const HEADER_TS: &str = "x-picluster-ts";
/// Header carrying the request's random nonce (hex).
pub const HEADER_NONCE: &str = "x-picluster-nonce";
/// Header carrying the request's MAC (hex).
pub const HEADER_MAC: &str = "x-picluster-mac";
/// The largest accepted difference between a request's timestamp and the local clock.
pub const MAX_SKEW_SECS: i64 = 30;
/// How many nonces the replay cache holds at most.
pub const NONCE_CACHE_MAX: usize = 16_384;
/// Largest accepted nonce length in characters (a nonce is 32 hex characters when made here).
pub const MAX_NONCE_LEN: usize = 64;

const REQUEST_TAG: &str = "picluster-request-v1";
const TXT_TAG: &str = "picluster-txt-v1";

/// Why a request or announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// A proof header is absent or not valid text.
    #[error("missing or unreadable proof header {0}")]
    MissingHeader(&'static str),
    /// The timestamp is not an integer.
    #[error("timestamp is not a Unix time in seconds")]
    BadTimestamp,
    /// The timestamp is too far from the local clock (replay or clock skew; check NTP on both nodes).
    #[error("timestamp {ts} is {skew} s away from the local clock (limit {MAX_SKEW_SECS} s)")]
    Skew {
        /// The request's timestamp.
        ts: i64,
        /// Its distance from the local clock.
        skew: i64,
    },
    /// The nonce is empty, too long or not hex.
    #[error("nonce is not 1 to {MAX_NONCE_LEN} hex characters")]
    BadNonce,
    /// The MAC does not match: the sender does not hold this cluster's key, or the request was altered.
    #[error("proof does not match the cluster key")]
    BadMac,
    /// This nonce was already used inside the accepted time window.
    #[error("nonce already used (replayed request)")]
    Replay,
    /// The replay cache is full of fresh nonces; the request is refused to stay safe.
    #[error("too many requests inside the replay window; retry later")]
    Busy,
}

/// The proof attached to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestProof {
    /// Unix time in seconds when the request was signed.
    pub ts: i64,
    /// Random nonce, hex.
    pub nonce: String,
    /// HMAC-SHA256, hex.
    pub mac: String,
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Holds the cluster key; signs and checks MACs. Cheap to clone.
#[derive(Clone)]
pub struct ClusterKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// Wraps the raw key bytes.
    pub fn new(key: &[u8]) -> ClusterKey {
        ClusterKey { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    fn request_mac(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        ts: i64,
        nonce: &str,
    ) -> HmacSha256 {
        let digest = hex::encode(Sha256::digest(body));
        let mut m = self.mac();
        let method = method.to_ascii_uppercase();
        for part in [REQUEST_TAG, &method, path, &digest, &ts.to_string(), nonce] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// Signs a request at time `ts` with a fresh random nonce.
    pub fn sign_request_at(&self, method: &str, path: &str, body: &[u8], ts: i64) -> RequestProof {
        use rand::RngCore;
        let mut n = [0u8; 16];
        rand::rng().fill_bytes(&mut n);
        let nonce = hex::encode(n);
        let mac = hex::encode(
            self.request_mac(method, path, body, ts, &nonce)
                .finalize()
                .into_bytes(),
        );
        RequestProof { ts, nonce, mac }
    }

    /// Signs a request now.
    pub fn sign_request(&self, method: &str, path: &str, body: &[u8]) -> RequestProof {
        self.sign_request_at(method, path, body, unix_now())
    }

    /// Checks only the MAC of a request (constant time); no clock or replay checks.
    pub fn check_request_mac(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        proof: &RequestProof,
    ) -> Result<(), TrustError> {
        let mac = hex::decode(&proof.mac).map_err(|_| TrustError::BadMac)?;
        self.request_mac(method, path, body, proof.ts, &proof.nonce)
            .verify_slice(&mac)
            .map_err(|_| TrustError::BadMac)
    }

    fn txt_mac<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> HmacSha256 {
        let mut sorted: Vec<(&str, &str)> = pairs.filter(|(k, _)| *k != "sig").collect();
        sorted.sort();
        let mut m = self.mac();
        m.update(&(TXT_TAG.len() as u64).to_be_bytes());
        m.update(TXT_TAG.as_bytes());
        for (k, v) in sorted {
            m.update(&(k.len() as u64).to_be_bytes());
            m.update(k.as_bytes());
            m.update(&(v.len() as u64).to_be_bytes());
            m.update(v.as_bytes());
        }
        m
    }

    /// The `sig` value for a set of TXT pairs (any `sig` pair among them is ignored).
    pub fn sign_txt<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
        hex::encode(self.txt_mac(pairs).finalize().into_bytes())
    }

    /// Checks a TXT record's `sig` against its other pairs, in constant time.
    pub fn verify_txt<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        sig: &str,
    ) -> Result<(), TrustError> {
        let mac = hex::decode(sig).map_err(|_| TrustError::BadMac)?;
        self.txt_mac(pairs)
            .verify_slice(&mac)
            .map_err(|_| TrustError::BadMac)
    }
}

/// Checks requests: MAC, clock skew and replay. Shared by all API handlers.
pub struct Verifier {
    key: ClusterKey,
    seen: Mutex<NonceCache>,
}

#[derive(Default)]
struct NonceCache {
    by_nonce: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl NonceCache {
    fn expire(&mut self, now: i64) {
        while let Some((ts, _)) = self.order.front() {
            // A nonce older than the window can never be accepted again by the skew check.
            if now - *ts > MAX_SKEW_SECS + 1 {
                let (_, n) = self.order.pop_front().expect("front exists");
                self.by_nonce.remove(&n);
            } else {
                break;
            }
        }
    }
}

impl Verifier {
    /// A verifier for the given key with an empty replay cache.
    pub fn new(key: ClusterKey) -> Verifier {
        Verifier {
            key,
            seen: Mutex::new(NonceCache::default()),
        }
    }

    /// The key this verifier checks against.
    pub fn key(&self) -> &ClusterKey {
        &self.key
    }

    /// Verifies a request at local time `now`; on success the nonce is remembered so it cannot be used again.
    pub fn verify_request_at(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        proof: &RequestProof,
        now: i64,
    ) -> Result<(), TrustError> {
        if proof.nonce.is_empty()
            || proof.nonce.len() > MAX_NONCE_LEN
            || !proof.nonce.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(TrustError::BadNonce);
        }
        // Checked: a timestamp near i64::MIN or MAX must not overflow (a panic in debug builds, and in release a
        // wrapped skew that would pass the check).
        let skew = now
            .checked_sub(proof.ts)
            .and_then(i64::checked_abs)
            .unwrap_or(i64::MAX);
        if skew > MAX_SKEW_SECS {
            return Err(TrustError::Skew { ts: proof.ts, skew });
        }
        // MAC before touching the cache, so unauthenticated senders cannot fill it.
        self.key.check_request_mac(method, path, body, proof)?;
        let mut seen = self.seen.lock().expect("nonce cache lock");
        seen.expire(now);
        if seen.by_nonce.contains_key(&proof.nonce) {
            return Err(TrustError::Replay);
        }
        if seen.by_nonce.len() >= NONCE_CACHE_MAX {
            return Err(TrustError::Busy);
        }
        seen.by_nonce.insert(proof.nonce.clone(), proof.ts);
        // Order by insertion time (`now`), which only grows, so expiry from the front is exact enough:
        // an entry is kept at least as long as the window.
        seen.order
            .push_back((now.max(proof.ts), proof.nonce.clone()));
        Ok(())
    }

    /// Verifies a request now.
    pub fn verify_request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        proof: &RequestProof,
    ) -> Result<(), TrustError> {
        self.verify_request_at(method, path, body, proof, unix_now())
    }

    /// Reads a proof from header values (`None` for an absent header).
    pub fn proof_from_headers(
        ts: Option<&str>,
        nonce: Option<&str>,
        mac: Option<&str>,
    ) -> Result<RequestProof, TrustError> {
        let ts = ts.ok_or(TrustError::MissingHeader(HEADER_TS))?;
        let nonce = nonce.ok_or(TrustError::MissingHeader(HEADER_NONCE))?;
        let mac = mac.ok_or(TrustError::MissingHeader(HEADER_MAC))?;
        let ts: i64 = ts.trim().parse().map_err(|_| TrustError::BadTimestamp)?;
        Ok(RequestProof {
            ts,
            nonce: nonce.to_string(),
            mac: mac.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::new(&[b; 32])
    }

    /// Found while writing the `api_verify` fuzz target: timestamps at the ends of i64 overflowed the skew
    /// arithmetic (a panic in debug builds; in release a wrapped skew). They are refused as skew now.
    #[test]
    fn extreme_timestamps_are_skew_not_overflow() {
        let k = key(1);
        let v = Verifier::new(k.clone());
        for (ts, now) in [
            (i64::MIN, 0),
            (i64::MIN, 1000),
            (i64::MAX, -1),
            (0, i64::MIN),
        ] {
            let p = k.sign_request_at("GET", "/x", b"", ts);
            assert!(
                matches!(
                    v.verify_request_at("GET", "/x", b"", &p, now),
                    Err(TrustError::Skew { .. })
                ),
                "ts {ts} now {now}"
            );
        }
        let p = Verifier::proof_from_headers(Some("-9223372036854775808"), Some("ab"), Some("00"))
            .unwrap();
        assert!(v.verify_request_at("GET", "/x", b"", &p, 5).is_err());
    }

    #[test]
    fn valid_request_passes_once_then_is_a_replay() {
        let k = key(1);
        let v = Verifier::new(k.clone());
        let p = k.sign_request_at("POST", "/api/v1/swarm/join-token", b"{}", 1000);
        assert_eq!(
            v.verify_request_at("POST", "/api/v1/swarm/join-token", b"{}", &p, 1005),
            Ok(())
        );
        assert_eq!(
            v.verify_request_at("POST", "/api/v1/swarm/join-token", b"{}", &p, 1006),
            Err(TrustError::Replay)
        );
    }

    #[test]
    fn wrong_key_is_refused() {
        let p = key(2).sign_request_at("GET", "/api/v1/summary", b"", 1000);
        let v = Verifier::new(key(1));
        assert_eq!(
            v.verify_request_at("GET", "/api/v1/summary", b"", &p, 1000),
            Err(TrustError::BadMac)
        );
    }

    #[test]
    fn tampered_body_path_or_method_is_refused() {
        let k = key(1);
        let v = Verifier::new(k.clone());
        let p = k.sign_request_at("POST", "/a", b"{\"role\":\"worker\"}", 1000);
        for (m, path, body) in [
            ("POST", "/a", &b"{\"role\":\"manager\"}"[..]),
            ("POST", "/b", &b"{\"role\":\"worker\"}"[..]),
            ("GET", "/a", &b"{\"role\":\"worker\"}"[..]),
        ] {
            assert_eq!(
                v.verify_request_at(m, path, body, &p, 1000),
                Err(TrustError::BadMac)
            );
        }
        // The untampered request still passes: a refused attempt does not burn the nonce.
        assert_eq!(
            v.verify_request_at("POST", "/a", b"{\"role\":\"worker\"}", &p, 1000),
            Ok(())
        );
    }

    #[test]
    fn tampered_timestamp_is_refused() {
        let k = key(1);
        let v = Verifier::new(k.clone());
        let mut p = k.sign_request_at("GET", "/x", b"", 1000);
        p.ts = 1001;
        assert_eq!(
            v.verify_request_at("GET", "/x", b"", &p, 1000),
            Err(TrustError::BadMac)
        );
    }

    #[test]
    fn skew_beyond_limit_is_refused() {
        let k = key(1);
        let v = Verifier::new(k.clone());
        let p = k.sign_request_at("GET", "/x", b"", 1000);
        assert!(matches!(
            v.verify_request_at("GET", "/x", b"", &p, 1000 + MAX_SKEW_SECS + 1),
            Err(TrustError::Skew { .. })
        ));
        assert!(matches!(
            v.verify_request_at("GET", "/x", b"", &p, 1000 - MAX_SKEW_SECS - 1),
            Err(TrustError::Skew { .. })
        ));
    }

    #[test]
    fn replay_after_window_is_still_refused_by_skew() {
        let k = key(1);
        let v = Verifier::new(k.clone());
        let p = k.sign_request_at("GET", "/x", b"", 1000);
        assert_eq!(v.verify_request_at("GET", "/x", b"", &p, 1000), Ok(()));
        // Much later the nonce has left the cache, but the timestamp is out of the window.
        assert!(matches!(
            v.verify_request_at("GET", "/x", b"", &p, 1100),
            Err(TrustError::Skew { .. })
        ));
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let v = Verifier::new(key(1));
        assert_eq!(
            Verifier::proof_from_headers(None, Some("ab"), Some("cd")),
            Err(TrustError::MissingHeader(HEADER_TS))
        );
        assert_eq!(
            Verifier::proof_from_headers(Some("x"), Some("ab"), Some("cd")),
            Err(TrustError::BadTimestamp)
        );
        let p = RequestProof {
            ts: 1000,
            nonce: "zz".into(),
            mac: "00".into(),
        };
        assert_eq!(
            v.verify_request_at("GET", "/", b"", &p, 1000),
            Err(TrustError::BadNonce)
        );
        let p = RequestProof {
            ts: 1000,
            nonce: "ab".into(),
            mac: "not hex".into(),
        };
        assert_eq!(
            v.verify_request_at("GET", "/", b"", &p, 1000),
            Err(TrustError::BadMac)
        );
    }

    #[test]
    fn txt_signature_covers_every_pair_in_any_order() {
        let k = key(1);
        let pairs = [("cid", "c1"), ("nid", "n1"), ("st", "steady")];
        let sig = k.sign_txt(pairs.iter().copied());
        let mut reversed = pairs;
        reversed.reverse();
        assert_eq!(k.verify_txt(reversed.iter().copied(), &sig), Ok(()));
        let changed = [("cid", "c1"), ("nid", "n2"), ("st", "steady")];
        assert_eq!(
            k.verify_txt(changed.iter().copied(), &sig),
            Err(TrustError::BadMac)
        );
        assert_eq!(
            key(2).verify_txt(pairs.iter().copied(), &sig),
            Err(TrustError::BadMac)
        );
        // Shifting bytes between key and value changes the signature.
        let shifted = [("cid", "c1"), ("nid", "n1"), ("s", "tsteady")];
        assert_eq!(
            k.verify_txt(shifted.iter().copied(), &sig),
            Err(TrustError::BadMac)
        );
    }
}
