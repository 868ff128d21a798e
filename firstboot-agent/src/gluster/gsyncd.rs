//! A fast answer to `gsyncd --version`.
//!
//! Every `gluster` CLI call runs `gsyncd --version` to learn whether geo-replication is installed (seen with
//! `strace -f -e trace=execve gluster pool list`: glusterfs 10.3 runs `/usr/lib/<triplet>/glusterfs/gsyncd
//! --version`, which starts `python3 .../syncdaemon/gsyncd.py --version`). That is 0.1 s of CPU on a PC, seconds
//! on a Pi 3 and 20-45 s in an emulated Pi, and the agent runs the CLI several times per reconcile round.
//!
//! [`install_version_shortcut`] moves the real program aside with a local dpkg diversion (`gsyncd.distrib`: a
//! package upgrade updates that file, not the wrapper) and puts a small shell script in its place that prints the
//! real program's own `--version` answer (asked once, at each agent start) and runs the real program for anything
//! else, so geo-replication works as before.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wrapper's second line: how the agent recognises its own file.
const MARKER: &str = "# firstboot-agent: gsyncd --version shortcut";

/// Suffix of the diverted real program.
const DIVERTED_SUFFIX: &str = ".distrib";

/// What [`install_version_shortcut`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortcut {
    /// No gsyncd under `usr/lib/*/glusterfs/` (glusterfs not installed): nothing to do.
    NoGsyncd,
    /// The wrapper was written (or rewritten) at `path`, answering `version`.
    Installed {
        /// gsyncd's path in the system.
        path: PathBuf,
        /// The real program's `--version` answer the wrapper prints.
        version: String,
    },
    /// The wrapper at `path` already answers `version`.
    AlreadyInPlace {
        /// gsyncd's path in the system.
        path: PathBuf,
        /// The answer.
        version: String,
    },
}

/// Why the shortcut could not be put in place. The real gsyncd is always left working.
#[derive(Debug, thiserror::Error)]
pub enum GsyncdError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `dpkg-divert` failed.
    #[error("`dpkg-divert {args}` failed: {detail}")]
    Divert {
        /// Its arguments.
        args: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// The real program's answer to `--version` is not one the wrapper can repeat safely.
    #[error(
        "`{path} --version` answered {answer:?}, not `gsyncd...`: the shortcut was removed and the real gsyncd \
         put back"
    )]
    UnexpectedVersion {
        /// The real program.
        path: PathBuf,
        /// What it printed (and its exit status when it failed).
        answer: String,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> GsyncdError + 'a {
    move |source| GsyncdError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// gsyncd's path under `root` (`usr/lib/<triplet>/glusterfs/gsyncd`), diverted or not.
pub fn find_gsyncd(root: &Path) -> Option<PathBuf> {
    let lib = root.join("usr/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("glusterfs"))
        .collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join("gsyncd")).find(|p| {
        p.exists() || {
            let mut name = p.clone().into_os_string();
            name.push(DIVERTED_SUFFIX);
            Path::new(&name).exists()
        }
    })
}

/// The path a file under `root` has in that system (`root` stripped, `/` in front).
fn in_system(root: &Path, path: &Path) -> PathBuf {
    Path::new("/").join(path.strip_prefix(root).unwrap_or(path))
}

/// Whether `path` is the agent's wrapper.
fn is_wrapper(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.lines().nth(1) == Some(MARKER))
}

/// The wrapper's text: answers exactly `gsyncd --version` with `version`, runs `real` (its path in the system)
/// for anything else.
pub fn wrapper_script(version: &str, real: &Path) -> String {
    format!(
        "#!/bin/sh\n{MARKER}\n\
         # Every gluster CLI call runs `gsyncd --version`; this answers it without starting Python. Anything else\n\
         # runs the real gsyncd, kept by a local dpkg diversion (dpkg-divert --list '*gsyncd*').\n\
         if [ \"$#\" -eq 1 ] && [ \"$1\" = --version ]; then\n  echo '{version}'\n  exit 0\nfi\n\
         exec '{}' \"$@\"\n",
        real.display()
    )
}

/// Runs `dpkg-divert` on the system at `root` (`--root` unless it is `/`).
fn dpkg_divert(root: &Path, args: &[&str]) -> Result<(), GsyncdError> {
    let mut all: Vec<OsString> = Vec::new();
    if root != Path::new("/") {
        all.push("--root".into());
        all.push(root.into());
    }
    all.extend(args.iter().map(OsString::from));
    let shown = all
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("dpkg-divert")
        .args(&all)
        .output()
        .map_err(|e| GsyncdError::Divert {
            args: shown.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(GsyncdError::Divert {
            args: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Puts the `--version` shortcut in gsyncd's place on the system at `root` (`/` on a Pi; a directory in tests),
/// or refreshes its answer. Idempotent; safe to run at every start.
pub fn install_version_shortcut(root: &Path) -> Result<Shortcut, GsyncdError> {
    let Some(path) = find_gsyncd(root) else {
        return Ok(Shortcut::NoGsyncd);
    };
    let mut real = path.clone().into_os_string();
    real.push(DIVERTED_SUFFIX);
    let real = PathBuf::from(real);
    let sys_path = in_system(root, &path);
    let sys_real = in_system(root, &real);
    let (sys_path_s, sys_real_s) = (
        sys_path.to_string_lossy().into_owned(),
        sys_real.to_string_lossy().into_owned(),
    );
    let divert_args = [
        "--local",
        "--rename",
        "--divert",
        sys_real_s.as_str(),
        "--add",
        sys_path_s.as_str(),
    ];
    if !real.exists() {
        if is_wrapper(&path) {
            // The wrapper without a real program behind it (should not happen): leave it alone.
            return Err(GsyncdError::UnexpectedVersion {
                path: sys_real,
                answer: "(missing)".into(),
            });
        }
        dpkg_divert(root, &divert_args)?;
    } else if path.exists() && !is_wrapper(&path) {
        // Both exist and `path` is not ours: a package upgrade without the diversion? Keep the package's file.
        return Err(GsyncdError::Io {
            what: "not replacing",
            path: sys_path,
            source: std::io::Error::other(format!("{} exists as well", sys_real.display())),
        });
    }

    let out = Command::new(&real).arg("--version").output();
    let answer = match &out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => format!(
            "{} ({})",
            String::from_utf8_lossy(&o.stdout).trim(),
            o.status
        ),
        Err(e) => format!("(could not run: {e})"),
    };
    let safe = answer.starts_with("gsyncd")
        && !answer.is_empty()
        && answer
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c));
    if !safe {
        // Put the real program back where the CLI looks for it.
        let _ = std::fs::remove_file(&path);
        let undo = ["--rename", "--remove", sys_path_s.as_str()];
        dpkg_divert(root, &undo)?;
        return Err(GsyncdError::UnexpectedVersion {
            path: sys_real,
            answer,
        });
    }

    let script = wrapper_script(&answer, &sys_real);
    if std::fs::read_to_string(&path).is_ok_and(|s| s == script) {
        return Ok(Shortcut::AlreadyInPlace {
            path: sys_path,
            version: answer,
        });
    }
    let mut tmp = path.clone().into_os_string();
    tmp.push(".firstboot-agent.tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &script).map_err(io("writing", &tmp))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io("making executable", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming onto", &path))?;
    Ok(Shortcut::Installed {
        path: sys_path,
        version: answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const GSYNCD: &str = "usr/lib/aarch64-linux-gnu/glusterfs/gsyncd";

    /// A system root with dpkg's admin directory and a stand-in gsyncd that answers `--version` like the real one
    /// (glusterfs 10.3: `gsyncd.py 4.0.0`) and records any other call in `calls`.
    fn fake_root(answer: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/dpkg")).unwrap();
        let g = root.path().join(GSYNCD);
        std::fs::create_dir_all(g.parent().unwrap()).unwrap();
        let calls = root.path().join("calls");
        std::fs::write(
            &g,
            format!(
                "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{answer}'; exit 0; fi\necho \"$@\" >> '{}'\n",
                calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o755)).unwrap();
        root
    }

    fn have_dpkg_divert() -> bool {
        Command::new("dpkg-divert")
            .arg("--version")
            .output()
            .is_ok()
    }

    /// Runs the wrapper at `root/GSYNCD` as the CLI would, with its real-program path mapped into `root`.
    fn run_wrapper(root: &Path, args: &[&str]) -> String {
        let text = std::fs::read_to_string(root.join(GSYNCD)).unwrap();
        let mapped = text.replace(
            &format!("'/{GSYNCD}.distrib'"),
            &format!("'{}/{GSYNCD}.distrib'", root.display()),
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&mapped)
            .arg("gsyncd")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_wrapper_answers_version_and_passes_everything_else_to_the_real_gsyncd() {
        if !have_dpkg_divert() {
            eprintln!("skipped: no dpkg-divert");
            return;
        }
        let root = fake_root("gsyncd.py 4.0.0");
        let r = install_version_shortcut(root.path()).unwrap();
        assert_eq!(
            r,
            Shortcut::Installed {
                path: Path::new("/").join(GSYNCD),
                version: "gsyncd.py 4.0.0".into()
            }
        );
        // The real program is kept under the diverted name, recorded in dpkg's diversions.
        assert!(root.path().join(format!("{GSYNCD}.distrib")).exists());
        let diversions =
            std::fs::read_to_string(root.path().join("var/lib/dpkg/diversions")).unwrap();
        assert!(
            diversions.contains(&format!("/{GSYNCD}.distrib")),
            "{diversions}"
        );
        assert!(is_wrapper(&root.path().join(GSYNCD)));

        assert_eq!(
            run_wrapper(root.path(), &["--version"]),
            "gsyncd.py 4.0.0\n"
        );
        assert!(
            !root.path().join("calls").exists(),
            "--version ran the real program"
        );
        run_wrapper(root.path(), &["--monitor", "a b"]);
        assert_eq!(
            std::fs::read_to_string(root.path().join("calls")).unwrap(),
            "--monitor a b\n"
        );

        // At the next start: nothing to change.
        let again = install_version_shortcut(root.path()).unwrap();
        assert!(
            matches!(again, Shortcut::AlreadyInPlace { .. }),
            "{again:?}"
        );
    }

    #[test]
    fn an_answer_that_cannot_be_repeated_puts_the_real_gsyncd_back() {
        if !have_dpkg_divert() {
            eprintln!("skipped: no dpkg-divert");
            return;
        }
        let root = fake_root("oops'; rm -rf /");
        let err = install_version_shortcut(root.path()).unwrap_err();
        assert!(
            matches!(err, GsyncdError::UnexpectedVersion { .. }),
            "{err}"
        );
        let g = root.path().join(GSYNCD);
        assert!(g.exists() && !is_wrapper(&g), "the real gsyncd is back");
        assert!(!root.path().join(format!("{GSYNCD}.distrib")).exists());
        let diversions = std::fs::read_to_string(root.path().join("var/lib/dpkg/diversions"))
            .unwrap_or_default();
        assert!(!diversions.contains("gsyncd"), "{diversions}");
    }

    #[test]
    fn no_glusterfs_no_change() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib/aarch64-linux-gnu")).unwrap();
        assert_eq!(
            install_version_shortcut(root.path()).unwrap(),
            Shortcut::NoGsyncd
        );
    }
}
