//! The node's stable identity and host name.
//!
//! Every Pi boots the same image, so the identity must come from the hardware: the SoC serial number
//! (`/proc/device-tree/serial-number`, else the `Serial` line of `/proc/cpuinfo`), else `/etc/machine-id` (which
//! systemd makes unique on first boot). The node id is the first 16 hex digits of the SHA-256 of that value, so it
//! is stable across reboots and reinstalls of the same Pi and does not reveal the serial itself.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Length of the node id in hex digits.
pub const NODE_ID_LEN: usize = 16;
/// Length of the short id used in host names.
pub const SHORT_ID_LEN: usize = 6;

/// Where the identity was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentitySource {
    /// The SoC serial number (device tree or `/proc/cpuinfo`).
    Serial,
    /// `/etc/machine-id`.
    MachineId,
}

/// Why no identity could be found.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// None of the sources holds a usable value.
    #[error(
        "no node identity: {serial_dt}, {cpuinfo} and {machine_id} hold no usable serial number or machine id \
         (on a machine without a serial number, run `systemd-machine-id-setup` to create /etc/machine-id)"
    )]
    NotFound {
        /// The device-tree serial path tried.
        serial_dt: PathBuf,
        /// The cpuinfo path tried.
        cpuinfo: PathBuf,
        /// The machine-id path tried.
        machine_id: PathBuf,
    },
    /// The host name prefix is not a valid host name label start.
    #[error(
        "host name prefix {0:?} must be 1 to 40 letters, digits or '-', not starting with '-'"
    )]
    BadPrefix(String),
}

/// This node's identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeIdentity {
    /// Stable id: 16 lowercase hex digits.
    pub node_id: String,
    /// `<prefix>-<short id>`, where the short id is the first 6 hex digits of `node_id`.
    pub hostname: String,
    /// Where the id came from.
    pub source: IdentitySource,
}

impl NodeIdentity {
    /// Detects the identity of the machine this runs on.
    pub fn detect(prefix: &str) -> Result<Self, IdentityError> {
        Self::detect_in(Path::new("/"), prefix)
    }

    /// Detects the identity from files under `root` (`root/proc/device-tree/serial-number`, `root/proc/cpuinfo`,
    /// `root/etc/machine-id`); tests use a fake root.
    pub fn detect_in(root: &Path, prefix: &str) -> Result<Self, IdentityError> {
        if !valid_prefix(prefix) {
            return Err(IdentityError::BadPrefix(prefix.to_string()));
        }
        let serial_dt = root.join("proc/device-tree/serial-number");
        let cpuinfo = root.join("proc/cpuinfo");
        let machine_id = root.join("etc/machine-id");
        let found = read_trimmed(&serial_dt)
            .and_then(usable_serial)
            .or_else(|| {
                std::fs::read_to_string(&cpuinfo)
                    .ok()
                    .and_then(|t| cpuinfo_serial(&t))
                    .and_then(usable_serial)
            })
            .map(|s| (s, IdentitySource::Serial))
            .or_else(|| {
                read_trimmed(&machine_id)
                    .filter(|m| !m.is_empty() && m != "uninitialized")
                    .map(|m| (m, IdentitySource::MachineId))
            });
        match found {
            Some((value, source)) => Ok(Self::from_value(&value, source, prefix)),
            None => Err(IdentityError::NotFound {
                serial_dt,
                cpuinfo,
                machine_id,
            }),
        }
    }

    /// Builds the identity from a source value (a serial number or machine id).
    fn from_value(value: &str, source: IdentitySource, prefix: &str) -> Self {
        let digest = Sha256::digest(value.as_bytes());
        let node_id = hex::encode(digest)[..NODE_ID_LEN].to_string();
        let hostname = format!("{prefix}-{}", &node_id[..SHORT_ID_LEN]);
        NodeIdentity {
            node_id,
            hostname,
            source,
        }
    }

    /// The short id used in the host name (first 6 hex digits of the node id).
    pub fn short_id(&self) -> &str {
        &self.node_id[..SHORT_ID_LEN]
    }
}

fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 40
        && !prefix.starts_with('-')
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Reads a file and trims NULs (device-tree strings end in one) and white space.
fn read_trimmed(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(
        text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string(),
    )
}

/// The value of the `Serial` line of `/proc/cpuinfo`, if any.
fn cpuinfo_serial(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "Serial").then(|| value.trim().to_string())
    })
}

/// A serial is usable when it is not empty and not all zeros (emulators report zeros).
fn usable_serial(s: String) -> Option<String> {
    let s = s.to_ascii_lowercase();
    (!s.is_empty() && !s.chars().all(|c| c == '0')).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
    fn put(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn device_tree_serial_wins() {
        let r = root();
        put(
            r.path(),
            "proc/device-tree/serial-number",
            b"10000000abcdef01\0",
        );
        put(r.path(), "proc/cpuinfo", b"Serial\t\t: 10000000ffffffff\n");
        put(
            r.path(),
            "etc/machine-id",
            b"0123456789abcdef0123456789abcdef\n",
        );
        let id = NodeIdentity::detect_in(r.path(), "pic").unwrap();
        assert_eq!(id.source, IdentitySource::Serial);
        let expect = &hex::encode(Sha256::digest(b"10000000abcdef01"))[..16];
        assert_eq!(id.node_id, expect);
        assert_eq!(id.hostname, format!("pic-{}", &expect[..6]));
        assert_eq!(id.short_id(), &expect[..6]);
    }

    #[test]
    fn cpuinfo_serial_then_machine_id() {
        let r = root();
        put(
            r.path(),
            "proc/cpuinfo",
            b"processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000FFFFFFFF\nModel\t: Pi\n",
        );
        put(
            r.path(),
            "etc/machine-id",
            b"0123456789abcdef0123456789abcdef\n",
        );
        let a = NodeIdentity::detect_in(r.path(), "pic").unwrap();
        assert_eq!(a.source, IdentitySource::Serial);
        assert_eq!(
            a.node_id,
            &hex::encode(Sha256::digest(b"10000000ffffffff"))[..16]
        );

        // An all-zero serial (QEMU) falls back to the machine id.
        put(r.path(), "proc/cpuinfo", b"Serial\t\t: 0000000000000000\n");
        let b = NodeIdentity::detect_in(r.path(), "pic").unwrap();
        assert_eq!(b.source, IdentitySource::MachineId);
        assert_eq!(
            b.node_id,
            &hex::encode(Sha256::digest(b"0123456789abcdef0123456789abcdef"))[..16]
        );
        assert!(b
            .node_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(b.node_id.len(), 16);
    }

    #[test]
    fn stable_and_distinct() {
        let (r1, r2) = (root(), root());
        put(r1.path(), "etc/machine-id", b"aaaa\n");
        put(r2.path(), "etc/machine-id", b"bbbb\n");
        let a1 = NodeIdentity::detect_in(r1.path(), "x").unwrap();
        let a2 = NodeIdentity::detect_in(r1.path(), "x").unwrap();
        let b = NodeIdentity::detect_in(r2.path(), "x").unwrap();
        assert_eq!(a1, a2);
        assert_ne!(a1.node_id, b.node_id);
        assert_ne!(a1.hostname, b.hostname);
    }

    #[test]
    fn nothing_found_names_the_files() {
        let r = root();
        put(r.path(), "etc/machine-id", b"uninitialized\n");
        let err = NodeIdentity::detect_in(r.path(), "pic")
            .unwrap_err()
            .to_string();
        assert!(err.contains("machine-id"), "{err}");
        assert!(err.contains("serial-number"), "{err}");
    }

    #[test]
    fn bad_prefix_refused() {
        let r = root();
        put(r.path(), "etc/machine-id", b"abc\n");
        assert!(matches!(
            NodeIdentity::detect_in(r.path(), "-bad"),
            Err(IdentityError::BadPrefix(_))
        ));
        assert!(NodeIdentity::detect_in(r.path(), "bad_prefix").is_err());
    }
}
