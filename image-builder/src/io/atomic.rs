//! An output file written under a temporary name in the destination directory and renamed only when complete.
//! Dropping it before [`AtomicOutput::persist`] removes the temporary file, so an error never leaves output behind.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// A temporary file beside its final path.
#[derive(Debug)]
pub struct AtomicOutput {
    temp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicOutput {
    /// Creates `.<name>.<random>.tmp` in the directory of `dest` (mode 0600 until persisted).
    pub fn new(dest: &Path) -> io::Result<AtomicOutput> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        register_temp(temp.path());
        Ok(AtomicOutput {
            temp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// The open temporary file, mutably.
    pub fn file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Where the temporary file lives now.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Syncs the data, sets `mode` and renames the file to its final path. Without `overwrite`, an existing file
    /// at the final path is an error (checked atomically by the rename).
    pub fn persist(self, mode: u32, overwrite: bool) -> io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.temp.as_file().sync_all()?;
        self.temp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        let dest = self.dest.clone();
        if overwrite {
            self.temp.persist(&dest).map_err(|e| e.error)?;
        } else {
            self.temp.persist_noclobber(&dest).map_err(|e| e.error)?;
        }
        Ok(dest)
    }
}

/// Temporary files to remove if the program is interrupted (SIGINT, SIGTERM, SIGHUP): destructors do not run
/// then, so [`install_interrupt_cleanup`] removes these paths itself.
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Registers a temporary path for removal on interruption.
pub fn register_temp(path: &Path) {
    if let Ok(mut v) = PENDING.lock() {
        v.push(path.to_path_buf());
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this and every later thread and starts a thread that, on one of them,
/// removes every registered temporary file still present and exits with 128 + the signal number. Call it first
/// thing in `main`, before any thread starts.
pub fn install_interrupt_cleanup() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            if let Ok(v) = PENDING.lock() {
                for p in v.iter() {
                    let _ = std::fs::remove_file(p);
                }
            }
            eprintln!(
                "image-builder: interrupted ({sig}); temporary files removed, no output written"
            );
            std::process::exit(128 + sig as i32);
        }
    });
}
