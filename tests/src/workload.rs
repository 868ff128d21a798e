//! A checksummed write workload through the shared mount, and the checks that prove nothing was lost (issue 6).
//!
//! Each writer node runs a small python3 loop (in the background, inside the node) that writes one file every
//! `interval` into `/mnt/shared/fault-wl/`, named `<tag>-<node>-<seq>`, whose content is derived from its name alone
//! (a SHA-256 chain), so any node can verify any file without a list. Every write is `fsync`ed; only a write whose
//! open, write, fsync and close all succeeded is *acknowledged* and logged, with its start and end time, to
//! `/var/log/fault-wl-<tag>.log` on the writer node (node-local, survives a power cut of the node).
//!
//! Checks: [`verify`] reads every file on a node and compares every acknowledged one; [`split_brain`] counts
//! `gluster volume heal VOL info split-brain` entries; [`brick_differences`] compares every brick directory's files
//! (ignoring `.glusterfs`) across nodes; [`write_stall`] turns acknowledgements into the longest time no write
//! completed.

use crate::lab::Lab;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Directory on the shared mount the workload writes into.
pub const WL_DIR: &str = "/mnt/shared/fault-wl";
/// Brick directory on every node.
pub const BRICK_DIR: &str = "/srv/gluster/brick1/brick";

const SCRIPT: &str = r#"
import hashlib, os, sys, time
MODE = sys.argv[1]
def content(name, size):
    out, h = bytearray(), name.encode()
    while len(out) < size:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:size])
if MODE == "write":
    tag, node, interval, size = sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    stop, log = "/var/log/fault-wl-%s.stop" % tag, "/var/log/fault-wl-%s.log" % tag
    d = sys.argv[6]
    i = 0
    with open(log, "a", buffering=1) as out:
        while not os.path.exists(stop):
            name = "%s-%s-%07d" % (tag, node, i)
            data = content(name, size)
            t0 = time.time()
            try:
                os.makedirs(d, exist_ok=True)
                fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                out.write("ok %s %.3f %.3f %d\n" % (name, t0, time.time(), size))
            except OSError as e:
                out.write("fail %s %.3f %.3f %d\n" % (name, t0, time.time(), e.errno or 0))
            i += 1
            left = t0 + interval - time.time()
            if left > 0:
                time.sleep(left)
elif MODE == "verify":
    d = sys.argv[2]
    prefix = sys.argv[3] if len(sys.argv) > 3 else ""
    for name in sorted(n for n in os.listdir(d) if n.startswith(prefix)):
        try:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
        except OSError as e:
            print("err %s %d" % (name, e.errno or 0))
            continue
        print("%s %s %d" % ("good" if data == content(name, len(data)) and data else "bad", name, len(data)))
elif MODE == "bricksum":
    root = sys.argv[2]
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not (dirpath == root and x == ".glusterfs"))
        for fn in sorted(files):
            p = os.path.join(dirpath, fn)
            with open(p, "rb") as f:
                print("%s %s" % (os.path.relpath(p, root), hashlib.sha256(f.read()).hexdigest()))
"#;

/// Installs the workload script on `node` (at `/var/log/fault-wl.py`); idempotent.
pub fn install(lab: &Lab, node: &str) -> Result<()> {
    lab.sh(
        node,
        &format!("cat > /var/log/fault-wl.py <<'PYEOF'\n{SCRIPT}\nPYEOF\n"),
    )?;
    Ok(())
}

/// One write attempt as logged by a writer.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// File name (also the content seed).
    pub name: String,
    /// True when acknowledged (open, write, fsync, close all succeeded).
    pub ok: bool,
    /// Unix time the attempt started.
    pub start: f64,
    /// Unix time it ended.
    pub end: f64,
    /// Bytes written (for an acknowledged write).
    pub bytes: u64,
}

/// A running workload on some nodes.
pub struct Workload {
    /// The tag naming this workload's files and logs.
    pub tag: String,
    /// The writer nodes.
    pub nodes: Vec<String>,
}

impl Workload {
    /// Starts a writer on every node of `nodes`: one file of `size` bytes every `interval_ms`.
    pub fn start(
        lab: &Lab,
        tag: &str,
        nodes: &[&str],
        interval_ms: u64,
        size: usize,
    ) -> Result<Workload> {
        for n in nodes {
            install(lab, n)?;
            lab.sh(
                n,
                &format!(
                    "rm -f /var/log/fault-wl-{tag}.stop; setsid /usr/bin/python3 /var/log/fault-wl.py write {tag} {n} {} {size} {WL_DIR} \
                     </dev/null >>/var/log/fault-wl-{tag}.err 2>&1 &",
                    interval_ms as f64 / 1000.0
                ),
            )?;
        }
        Ok(Workload {
            tag: tag.to_string(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Asks every writer that is still up to stop and waits (bounded) until none runs; a node that is off is skipped.
    pub fn stop(&self, lab: &Lab) -> Result<()> {
        for n in &self.nodes {
            let tag = &self.tag;
            // A writer blocked on a hung mount finishes its current write first: wait up to 90 s.
            let _ = lab.sh(
                n,
                &format!(
                    "touch /var/log/fault-wl-{tag}.stop; for i in $(seq 450); do \
                     pgrep -f 'fault-wl[.]py write {tag} ' >/dev/null || exit 0; sleep 0.2; done; \
                     echo writer still running >&2; exit 1"
                ),
            );
        }
        Ok(())
    }

    /// Every attempt logged so far by every writer node (nodes that are off are an error).
    pub fn attempts(&self, lab: &Lab) -> Result<Vec<Attempt>> {
        let mut all = Vec::new();
        for n in &self.nodes {
            let text = lab.sh(
                n,
                &format!("cat /var/log/fault-wl-{}.log 2>/dev/null || true", self.tag),
            )?;
            all.extend(parse_attempts(&text));
        }
        all.sort_by(|a, b| a.end.total_cmp(&b.end));
        Ok(all)
    }
}

/// Parses a writer log (lines `ok|fail NAME START END BYTES|ERRNO`); a torn last line is skipped.
pub fn parse_attempts(text: &str) -> Vec<Attempt> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 5 {
                return None;
            }
            let ok = f[0] == "ok";
            Some(Attempt {
                name: f[1].to_string(),
                ok,
                start: f[2].parse().ok()?,
                end: f[3].parse().ok()?,
                bytes: if ok { f[4].parse().ok()? } else { 0 },
            })
        })
        .collect()
}

/// The longest time, in seconds, in which no acknowledged write completed, counted from `from` (Unix time) to
/// `until`: the gap from `from` to the first completion after it, and every gap between completions after it, and
/// the gap from the last completion to `until`.
pub fn write_stall(attempts: &[Attempt], from: f64, until: f64) -> f64 {
    let mut ends: Vec<f64> = attempts
        .iter()
        .filter(|a| a.ok && a.end >= from && a.end <= until)
        .map(|a| a.end)
        .collect();
    ends.sort_by(f64::total_cmp);
    let mut last = from;
    let mut worst: f64 = 0.0;
    for e in ends {
        worst = worst.max(e - last);
        last = e;
    }
    worst.max(until - last)
}

/// What [`verify`] found on one node.
#[derive(Debug, Default, Clone)]
pub struct Verification {
    /// Acknowledged files checked.
    pub checked: usize,
    /// Acknowledged files missing, unreadable or with wrong content.
    pub lost: Vec<String>,
    /// Bytes of acknowledged files lost.
    pub lost_bytes: u64,
}

/// Reads every workload file through the shared mount on `node` and checks every acknowledged attempt in `acked`.
pub fn verify(lab: &Lab, node: &str, acked: &[Attempt]) -> Result<Verification> {
    install(lab, node)?;
    // Only the files of the workloads in `acked` are read (names start with `<tag>-`): the directory also holds
    // every earlier case's files, and reading all of them through FUSE on every node took minutes under load.
    let tags: BTreeSet<&str> = acked
        .iter()
        .filter_map(|a| a.name.split('-').next())
        .collect();
    let prefix = match tags.iter().collect::<Vec<_>>()[..] {
        [one] => format!("{one}-"),
        _ => String::new(),
    };
    let out = lab
        .exec_ok(
            node,
            &[
                "/usr/bin/python3",
                "/var/log/fault-wl.py",
                "verify",
                WL_DIR,
                &prefix,
            ],
        )
        .with_context(|| format!("verifying on {node}"))?;
    let mut seen: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3 {
            seen.insert(f[1], (f[0], f[2].parse().unwrap_or(0)));
        }
    }
    let mut v = Verification::default();
    for a in acked.iter().filter(|a| a.ok) {
        v.checked += 1;
        match seen.get(a.name.as_str()) {
            Some(("good", len)) if *len == a.bytes => {}
            _ => {
                v.lost.push(a.name.clone());
                v.lost_bytes += a.bytes;
            }
        }
    }
    Ok(v)
}

/// Entries listed by `gluster volume heal VOL info split-brain` (summed over bricks).
pub fn split_brain(lab: &Lab, node: &str, vol: &str) -> Result<u64> {
    let out = lab.exec_ok(
        node,
        &[
            "timeout",
            "-k",
            "5",
            "120",
            "gluster",
            "volume",
            "heal",
            vol,
            "info",
            "split-brain",
        ],
    )?;
    // A brick that is down prints `-`: it cannot be asked, it counts as 0 here (heal_pending catches it).
    sum_entries(
        &out.replace("split-brain: -", "split-brain: 0"),
        "Number of entries in split-brain:",
    )
}

/// Entries pending heal (`gluster volume heal VOL info`, summed over bricks); an error while a brick is unreachable.
pub fn heal_pending(lab: &Lab, node: &str, vol: &str) -> Result<u64> {
    // `timeout` signals its whole process group: glfsheal (the CLI's child) goes too.
    let out = lab.exec_ok(
        node,
        &[
            "timeout", "-k", "5", "60", "gluster", "volume", "heal", vol, "info",
        ],
    )?;
    if out.contains("Transport endpoint is not connected") {
        bail!("a brick is not connected: {out}");
    }
    sum_entries(&out, "Number of entries:")
}

fn sum_entries(out: &str, key: &str) -> Result<u64> {
    let mut total = 0;
    let mut found = false;
    for l in out.lines() {
        if let Some(rest) = l.trim().strip_prefix(key) {
            let n = rest.trim();
            total += n
                .parse::<u64>()
                .with_context(|| format!("unreadable entry count '{n}' in: {out}"))?;
            found = true;
        }
    }
    if !found {
        bail!("no '{key}' line in: {out}");
    }
    Ok(total)
}

/// Every file (relative path → SHA-256) in `node`'s brick directory, `.glusterfs` excluded.
pub fn brick_files(lab: &Lab, node: &str) -> Result<BTreeMap<String, String>> {
    install(lab, node)?;
    let out = lab.exec_ok(
        node,
        &[
            "/usr/bin/python3",
            "/var/log/fault-wl.py",
            "bricksum",
            BRICK_DIR,
        ],
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(p, h)| (p.to_string(), h.to_string()))
        .collect())
}

/// Paths that are not identical on every node's brick (missing somewhere, or different content).
pub fn brick_differences(lab: &Lab, nodes: &[&str]) -> Result<Vec<String>> {
    let maps: Vec<BTreeMap<String, String>> = nodes
        .iter()
        .map(|n| brick_files(lab, n))
        .collect::<Result<_>>()?;
    let all: BTreeSet<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    Ok(all
        .into_iter()
        .filter(|p| {
            let first = maps[0].get(*p);
            first.is_none() || maps.iter().any(|m| m.get(*p) != first)
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(end: f64) -> Attempt {
        Attempt {
            name: format!("x{end}"),
            ok: true,
            start: end - 0.01,
            end,
            bytes: 10,
        }
    }

    #[test]
    fn stall_is_the_longest_gap_without_a_completed_write() {
        let a = vec![ack(9.0), ack(10.2), ack(10.4), ack(14.4), ack(14.5)];
        assert!((write_stall(&a, 10.0, 15.0) - 4.0).abs() < 1e-9);
        // Nothing after the fault: the whole window is a stall.
        assert!((write_stall(&a, 20.0, 25.0) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn parses_logs_and_skips_torn_lines() {
        let a = parse_attempts("ok a 1.0 1.5 4096\nfail b 2.0 2.1 30\nok c 3.0");
        assert_eq!(a.len(), 2);
        assert!(a[0].ok && a[0].bytes == 4096);
        assert!(!a[1].ok && a[1].bytes == 0);
    }

    #[test]
    fn sums_entries_over_bricks() {
        let out = "Brick a:/b\nStatus: Connected\nNumber of entries: 2\n\nBrick c:/b\nNumber of entries: 3\n";
        assert_eq!(sum_entries(out, "Number of entries:").unwrap(), 5);
        assert!(sum_entries("nothing", "Number of entries:").is_err());
    }
}
