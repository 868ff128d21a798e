//! A managed block in `/etc/hosts` mapping every verified peer's host name (and this node's own) to its current
//! address, so Gluster peers are probed and named by host name and survive a DHCP address change: when a peer's
//! address changes, its signed announcement changes and the block is rewritten.
//!
//! Only the lines between [`BEGIN_MARKER`] and [`END_MARKER`] are ever touched. The file is replaced atomically
//! (temporary file + rename); when `/etc/hosts` is a bind mount (containers, the lab) a rename is impossible and the
//! content is rewritten in place instead.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

/// First line of the managed block.
pub const BEGIN_MARKER: &str = "# BEGIN picluster (managed by firstboot-agent; do not edit)";
/// Last line of the managed block.
pub const END_MARKER: &str = "# END picluster";

/// Errors while updating the hosts file.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// Reading or writing failed.
    #[error("hosts file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Returns `existing` with the managed block replaced by one line per `(hostname, address)` entry (sorted by
/// name; lines with unsafe names are left out). Text outside the block is kept byte for byte.
pub fn render(existing: &str, entries: &[(String, Ipv4Addr)]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in existing.lines() {
        if line.trim_end() == BEGIN_MARKER {
            inside = true;
            continue;
        }
        if inside {
            if line.trim_end() == END_MARKER {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut entries: Vec<&(String, Ipv4Addr)> = entries
        .iter()
        .filter(|(h, _)| {
            !h.is_empty()
                && h.len() <= 63
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .collect();
    entries.sort();
    entries.dedup_by(|a, b| a.0 == b.0);
    if entries.is_empty() {
        return out;
    }
    out.push_str(BEGIN_MARKER);
    out.push('\n');
    for (h, a) in entries {
        out.push_str(&format!("{a}\t{h}\n"));
    }
    out.push_str(END_MARKER);
    out.push('\n');
    out
}

/// Rewrites the managed block of `path` when it differs; returns whether the file changed.
pub fn update(path: &Path, entries: &[(String, Ipv4Addr)]) -> Result<bool, HostsError> {
    let io = |source| HostsError::Io {
        path: path.display().to_string(),
        source,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let new = render(&existing, entries);
    if new == existing {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.picluster-tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("hosts")
    ));
    let write_tmp = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        let perm = std::fs::metadata(path)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
        std::fs::set_permissions(&tmp, perm)
    };
    write_tmp().map_err(io)?;
    match std::fs::rename(&tmp, path) {
        Ok(()) => Ok(true),
        Err(_) => {
            // A bind-mounted file cannot be replaced by rename (EBUSY); write it in place.
            let _ = std::fs::remove_file(&tmp);
            std::fs::write(path, new.as_bytes()).map_err(io)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(h: &str, a: [u8; 4]) -> (String, Ipv4Addr) {
        (h.to_string(), Ipv4Addr::from(a))
    }

    #[test]
    fn keeps_foreign_lines_and_replaces_only_the_block() {
        let base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n";
        let one = render(base, &[e("pc-b", [10, 0, 0, 3]), e("pc-a", [10, 0, 0, 2])]);
        assert!(one.starts_with(base));
        assert!(one.contains("10.0.0.2\tpc-a\n10.0.0.3\tpc-b\n"));
        let two = render(
            &format!("{one}192.168.1.9\tprinter\n"),
            &[e("pc-a", [10, 0, 0, 9])],
        );
        assert!(two.contains("192.168.1.9\tprinter\n"));
        assert!(two.contains("10.0.0.9\tpc-a\n"));
        assert!(!two.contains("pc-b"));
        assert_eq!(two.matches(BEGIN_MARKER).count(), 1);
        // Idempotent.
        assert_eq!(render(&two, &[e("pc-a", [10, 0, 0, 9])]), two);
    }

    #[test]
    fn unsafe_names_are_left_out() {
        let out = render("", &[e("a b", [1, 1, 1, 1]), e("x\ny", [1, 1, 1, 1])]);
        assert_eq!(out, "");
    }

    #[test]
    fn update_writes_atomically_and_reports_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "127.0.0.1 localhost\n").unwrap();
        assert!(update(&p, &[e("pc-a", [10, 0, 0, 2])]).unwrap());
        assert!(!update(&p, &[e("pc-a", [10, 0, 0, 2])]).unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("127.0.0.1 localhost\n"));
        assert!(text.contains("10.0.0.2\tpc-a"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
