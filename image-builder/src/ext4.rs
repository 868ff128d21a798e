//! Reading and writing single files of the ext4 root partition with e2fsprogs' `debugfs`, on the partition's
//! byte offset inside the image file (`image?offset=N`), without mounting anything.

use crate::error::{Error, IoContext, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Finds `debugfs` on PATH or in the sbin directories (often not on a user's PATH).
fn debugfs() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("debugfs"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Tool {
            tool: "debugfs".into(),
            message: "not found: install e2fsprogs (apt-get install e2fsprogs)".into(),
        })
}

fn device(image: &Path, offset: u64) -> String {
    format!("{}?offset={offset}", image.display())
}

/// Reads file `path` of the ext4 filesystem at `offset` of `image`; `None` when it does not exist.
pub fn read_file(image: &Path, offset: u64, path: &str) -> Result<Option<Vec<u8>>> {
    let out = Command::new(debugfs()?)
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(device(image, offset))
        .output()
        .ctx(|| "cannot run debugfs")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("File not found") {
        return Ok(None);
    }
    if !out.status.success() || stderr.contains("Bad magic") || stderr.contains("while opening") {
        return Err(Error::Tool {
            tool: "debugfs".into(),
            message: format!(
                "cannot read {path} from the root partition of {}: {}",
                image.display(),
                stderr.trim()
            ),
        });
    }
    Ok(Some(out.stdout))
}

/// Replaces file `path` of the ext4 filesystem at `offset` of `image` with `data` (mode `mode`, owner root),
/// then reads it back to check.
pub fn write_file(image: &Path, offset: u64, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = path.rsplit_once('/').ok_or_else(|| Error::Tool {
        tool: "debugfs".into(),
        message: format!("{path} is not an absolute path"),
    })?;
    let dir = if dir.is_empty() { "/" } else { dir };
    let mut src = tempfile::NamedTempFile::new().ctx(|| "cannot create a temporary file")?;
    src.write_all(data)
        .and_then(|_| src.flush())
        .ctx(|| "cannot write a temporary file")?;
    let script = format!(
        "cd {dir}\nrm {name}\nwrite {} {name}\nsif {name} mode 0{:o}\nsif {name} uid 0\nsif {name} gid 0\n",
        src.path().display(),
        0o100000 | mode
    );
    let mut cmds = tempfile::NamedTempFile::new().ctx(|| "cannot create a temporary file")?;
    cmds.write_all(script.as_bytes())
        .and_then(|_| cmds.flush())
        .ctx(|| "cannot write a temporary file")?;
    let out = Command::new(debugfs()?)
        .arg("-w")
        .arg("-f")
        .arg(cmds.path())
        .arg(device(image, offset))
        .output()
        .ctx(|| "cannot run debugfs")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr);
    if !out.status.success() || text.contains("Bad magic") || text.contains("while opening") {
        return Err(Error::Tool {
            tool: "debugfs".into(),
            message: format!(
                "cannot write {path} into the root partition: {}",
                text.trim()
            ),
        });
    }
    match read_file(image, offset, path)? {
        Some(back) if back == data => Ok(()),
        _ => Err(Error::Tool {
            tool: "debugfs".into(),
            message: format!(
                "wrote {path} into the root partition but reading it back gave other content: {}",
                text.trim()
            ),
        }),
    }
}
