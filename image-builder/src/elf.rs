//! Checks the agent binary's ELF header: the Pi needs a 64-bit little-endian aarch64 executable.

use crate::error::{invalid, IoContext, Result};
use std::io::Read;
use std::path::Path;

/// `e_machine` of aarch64.
pub const EM_AARCH64: u16 = 183;

/// Names a few `e_machine` values users may meet.
fn machine_name(m: u16) -> String {
    match m {
        3 => "x86 (32-bit)".into(),
        40 => "ARM (32-bit)".into(),
        62 => "x86-64".into(),
        183 => "aarch64".into(),
        243 => "RISC-V".into(),
        other => format!("machine {other}"),
    }
}

/// The `e_machine` of an ELF file, or an error when `path` is not an ELF file.
pub fn elf_machine(path: &Path) -> Result<u16> {
    let mut head = [0u8; 20];
    let mut f =
        std::fs::File::open(path).ctx(|| format!("cannot open agent binary {}", path.display()))?;
    let n = f
        .read(&mut head)
        .ctx(|| format!("cannot read agent binary {}", path.display()))?;
    if n < 20 || &head[..4] != b"\x7fELF" {
        return invalid(format!(
            "agent binary {} is not an ELF executable: build the agent with ci/build-agent-aarch64 or pass \
             --agent PATH to an aarch64 Linux build of firstboot-agent",
            path.display()
        ));
    }
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    Ok(machine)
}

/// Refuses an agent that is not a 64-bit little-endian aarch64 ELF, unless `allow_any` (lab and tests on x86_64).
pub fn check_agent(path: &Path, allow_any: bool) -> Result<()> {
    if !path.is_file() {
        return invalid(format!(
            "agent binary {} does not exist: build it with ci/build-agent-aarch64 (it writes \
             target/aarch64-unknown-linux-gnu/release/firstboot-agent) or pass --agent PATH",
            path.display()
        ));
    }
    if allow_any {
        // Still refuse something that is not a file at all.
        std::fs::metadata(path).ctx(|| format!("agent binary {}", path.display()))?;
        return Ok(());
    }
    let machine = elf_machine(path)?;
    let mut head = [0u8; 6];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .ctx(|| format!("cannot read agent binary {}", path.display()))?;
    if machine != EM_AARCH64 || head[4] != 2 || head[5] != 1 {
        return invalid(format!(
            "agent binary {} is built for {}, but a Raspberry Pi needs an aarch64 (arm64) Linux binary: build it \
             with ci/build-agent-aarch64 (or cargo build --release --target aarch64-unknown-linux-gnu -p \
             firstboot-agent) and pass it with --agent; for a lab of x86_64 machines pass --allow-any-agent-arch",
            path.display(),
            machine_name(machine)
        ));
    }
    Ok(())
}

/// A minimal 64-bit little-endian ELF header for `machine`, for tests.
pub fn fake_elf_header(machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1; // version
    h[16] = 2; // ET_EXEC
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20] = 1;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aarch64_passes_x86_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a64");
        std::fs::write(&good, fake_elf_header(EM_AARCH64)).unwrap();
        check_agent(&good, false).unwrap();
        let bad = dir.path().join("x86");
        std::fs::write(&bad, fake_elf_header(62)).unwrap();
        let e = check_agent(&bad, false).unwrap_err().to_string();
        assert!(
            e.contains("x86-64") && e.contains("x86") && e.contains("--agent"),
            "{e}"
        );
        check_agent(&bad, true).unwrap();
        let txt = dir.path().join("txt");
        std::fs::write(&txt, "#!/bin/sh\n").unwrap();
        let e = check_agent(&txt, false).unwrap_err().to_string();
        assert!(e.contains("not an ELF"), "{e}");
    }
}
