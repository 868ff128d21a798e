//! The marks glusterd puts on a brick directory when a volume takes it: the extended attributes
//! `trusted.glusterfs.volume-id` (the volume's UUID) and `trusted.gfid`, and the `.glusterfs` directory. glusterd
//! refuses a marked directory in any later `volume create`, `add-brick` or `replace-brick` ("is already part of a
//! volume"). An `add-brick` that marks this node's brick and then fails pre-validation on another node (seen in
//! fault case 1b: "Host ... not connected") leaves the marks behind on a brick the volume does not list, and every
//! later attempt is refused. [`clear_stale_marks`] removes them, only from a brick that holds no data.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The extended attribute naming the volume a brick directory belongs to (16 raw UUID bytes).
pub const VOLUME_ID_XATTR: &str = "trusted.glusterfs.volume-id";
/// The extended attribute holding the GFID of the brick's root.
pub const GFID_XATTR: &str = "trusted.gfid";
/// Gluster's own metadata directory inside a brick.
pub const META_DIR: &str = ".glusterfs";

/// Why stale marks were not removed.
#[derive(Debug, thiserror::Error)]
pub enum BrickMarkError {
    /// Reading or changing the directory failed.
    #[error("brick directory {path}: cannot {action}: {source}")]
    Io {
        /// The brick directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
    /// The marks name another volume: not ours to touch.
    #[error("brick directory {path} is marked for volume {found}, not {expected}; left as it is (clear it by hand if it is not needed)")]
    OtherVolume {
        /// The brick directory.
        path: PathBuf,
        /// The volume id on the directory.
        found: String,
        /// The volume id expected.
        expected: String,
    },
    /// The directory holds files: a real brick, never cleared.
    #[error("brick directory {path} holds data ({entry}); its marks are left as they are")]
    HoldsData {
        /// The brick directory.
        path: PathBuf,
        /// One entry found besides `.glusterfs`.
        entry: String,
    },
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Reads extended attribute `name` of `path` (`None`: the attribute is not set).
fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = c_path(path)?;
    let n = CString::new(name).expect("attribute names have no NUL");
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and live across the call; the buffer is valid for its length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(len as usize);
    Ok(Some(buf))
}

/// Removes extended attribute `name` of `path`; an attribute that is not set is not an error.
fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    let p = c_path(path)?;
    let n = CString::new(name).expect("attribute names have no NUL");
    // SAFETY: both strings are NUL-terminated and live across the call.
    if unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENODATA) {
            return Err(e);
        }
    }
    Ok(())
}

/// The text of a volume-id mark: a UUID as `gluster volume info` prints volume ids (`8-4-4-4-12` lowercase hex),
/// or plain hex when the mark is not 16 bytes.
fn mark_text(raw: &[u8]) -> String {
    uuid::Uuid::from_slice(raw).map_or_else(|_| hex::encode(raw), |u| u.to_string())
}

/// The volume id `dir` is marked with, as a UUID string (`None`: not marked; a mark that is not 16 bytes is
/// returned as plain hex).
pub fn volume_mark(dir: &Path) -> io::Result<Option<String>> {
    Ok(get_xattr(dir, VOLUME_ID_XATTR)?.map(|raw| mark_text(&raw)))
}

/// The first entry of `dir` other than [`META_DIR`] (`None`: the brick holds no data).
fn first_data_entry(dir: &Path) -> io::Result<Option<String>> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if name != META_DIR {
            return Ok(Some(name.to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Turns an I/O error on brick directory `dir` while doing `action` into a [`BrickMarkError`].
fn io_error<'a>(dir: &'a Path, action: &'static str) -> impl Fn(io::Error) -> BrickMarkError + 'a {
    move |source| BrickMarkError::Io {
        path: dir.to_path_buf(),
        action,
        source,
    }
}

/// [`volume_mark`] with the error naming the directory.
fn read_mark(dir: &Path) -> Result<Option<String>, BrickMarkError> {
    volume_mark(dir).map_err(io_error(dir, "read its volume id"))
}

/// Removes the marks of volume `volume_id` from brick directory `dir` when it holds no data (nothing but
/// `.glusterfs`): both attributes and the `.glusterfs` directory. Returns whether there was a mark to remove.
/// Refuses a directory marked for another volume or holding data. The caller decides that the volume does not
/// list this brick and that no transaction is under way (the marks stayed for a while).
pub fn clear_stale_marks(dir: &Path, volume_id: &str) -> Result<bool, BrickMarkError> {
    let io_err = |action| io_error(dir, action);
    let Some(found) = read_mark(dir)? else {
        return Ok(false);
    };
    if !found.eq_ignore_ascii_case(volume_id) {
        return Err(BrickMarkError::OtherVolume {
            path: dir.to_path_buf(),
            found,
            expected: volume_id.to_string(),
        });
    }
    if let Some(entry) = first_data_entry(dir).map_err(io_err("list it"))? {
        return Err(BrickMarkError::HoldsData {
            path: dir.to_path_buf(),
            entry,
        });
    }
    let meta = dir.join(META_DIR);
    if meta.exists() {
        std::fs::remove_dir_all(&meta).map_err(io_err("remove its .glusterfs"))?;
    }
    remove_xattr(dir, GFID_XATTR).map_err(io_err("remove trusted.gfid"))?;
    remove_xattr(dir, VOLUME_ID_XATTR).map_err(io_err("remove trusted.glusterfs.volume-id"))?;
    Ok(true)
}

/// Moves a marked brick directory that no volume of this cluster lists out of the way, whole: renamed to
/// `previous-brick-<volume id>-<unix time>` beside it, on the same filesystem, with its data, marks and
/// `.glusterfs`. Nothing is deleted. A card flashed again keeps its brick filesystem (the agent never formats an
/// existing one), so an earlier life's brick, of this cluster or another, would otherwise block every `volume
/// create`, `add-brick` or `replace-brick` ("is already part of a volume"). The caller decides that no volume of
/// the cluster lists it and that this has lasted; the caller recreates the brick directory. Returns where it went,
/// `None` when `dir` was not marked.
pub fn set_aside(dir: &Path, now_unix: i64) -> Result<Option<PathBuf>, BrickMarkError> {
    let Some(found) = read_mark(dir)? else {
        return Ok(None);
    };
    let short: String = found.chars().filter(|c| *c != '-').take(8).collect();
    let to = dir.with_file_name(format!("previous-brick-{short}-{now_unix}"));
    std::fs::rename(dir, &to).map_err(io_error(dir, "move it aside"))?;
    Ok(Some(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: &str = "317922d8-7c1e-4a55-9a51-0f1d2e3c4b5a";

    /// Sets a `trusted.*` attribute (needs root); `None` when this process may not.
    fn set(dir: &Path, name: &str, value: &[u8]) -> Option<()> {
        let p = c_path(dir).unwrap();
        let n = CString::new(name).unwrap();
        // SAFETY: valid NUL-terminated strings and buffer.
        let r = unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        (r == 0).then_some(())
    }

    fn raw(uuid: &str) -> Vec<u8> {
        uuid::Uuid::parse_str(uuid).unwrap().as_bytes().to_vec()
    }

    /// A brick directory marked for `uuid`, or `None` when not root (trusted.* attributes need it).
    fn marked(uuid: &str) -> Option<tempfile::TempDir> {
        let d = tempfile::tempdir().unwrap();
        set(d.path(), VOLUME_ID_XATTR, &raw(uuid))?;
        let mut gfid = [0u8; 16];
        gfid[15] = 1;
        set(d.path(), GFID_XATTR, &gfid)?;
        std::fs::create_dir_all(d.path().join(".glusterfs/indices")).unwrap();
        Some(d)
    }

    #[test]
    fn mark_is_read_as_gluster_prints_volume_ids() {
        assert_eq!(mark_text(&raw(VOL)), VOL);
        assert_eq!(mark_text(&[1, 0xab]), "01ab");
    }

    #[test]
    fn unmarked_directory_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(volume_mark(d.path()).unwrap(), None);
        assert!(!clear_stale_marks(d.path(), VOL).unwrap());
    }

    #[test]
    fn empty_marked_brick_is_cleared() {
        let Some(d) = marked(VOL) else {
            eprintln!("skipped: trusted.* attributes need root");
            return;
        };
        assert_eq!(volume_mark(d.path()).unwrap().as_deref(), Some(VOL));
        assert!(clear_stale_marks(d.path(), &VOL.to_uppercase()).unwrap());
        assert_eq!(volume_mark(d.path()).unwrap(), None);
        assert_eq!(get_xattr(d.path(), GFID_XATTR).unwrap(), None);
        assert!(!d.path().join(META_DIR).exists());
    }

    #[test]
    fn brick_with_data_or_of_another_volume_is_refused_and_unchanged() {
        let Some(d) = marked(VOL) else {
            eprintln!("skipped: trusted.* attributes need root");
            return;
        };
        std::fs::write(d.path().join("photo.jpg"), b"x").unwrap();
        let err = clear_stale_marks(d.path(), VOL).unwrap_err();
        assert!(matches!(err, BrickMarkError::HoldsData { .. }), "{err}");
        assert!(err.to_string().contains("photo.jpg"), "{err}");
        assert_eq!(volume_mark(d.path()).unwrap().as_deref(), Some(VOL));
        assert!(d.path().join(META_DIR).exists());

        let other = marked(VOL).unwrap();
        let err =
            clear_stale_marks(other.path(), "00000000-0000-0000-0000-000000000001").unwrap_err();
        assert!(matches!(err, BrickMarkError::OtherVolume { .. }), "{err}");
        assert_eq!(volume_mark(other.path()).unwrap().as_deref(), Some(VOL));
    }

    #[test]
    fn an_earlier_lifes_brick_is_set_aside_whole() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("brick");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(
            set_aside(&dir, 1_796_000_000).unwrap(),
            None,
            "not marked: left"
        );
        assert!(dir.exists());
        if set(&dir, VOLUME_ID_XATTR, &raw(VOL)).is_none() {
            eprintln!("skipped: trusted.* attributes need root");
            return;
        }
        std::fs::create_dir_all(dir.join(".glusterfs/indices")).unwrap();
        std::fs::write(dir.join("photo.jpg"), b"kept").unwrap();
        let to = set_aside(&dir, 1_796_000_000).unwrap().unwrap();
        assert_eq!(to, parent.path().join("previous-brick-317922d8-1796000000"));
        assert!(!dir.exists());
        assert_eq!(std::fs::read(to.join("photo.jpg")).unwrap(), b"kept");
        assert!(to.join(".glusterfs/indices").is_dir());
        assert_eq!(volume_mark(&to).unwrap().as_deref(), Some(VOL));
    }
}
