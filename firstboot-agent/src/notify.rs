//! `sd_notify(3)` without a crate: one datagram to `$NOTIFY_SOCKET` tells systemd the agent is ready
//! (`Type=notify` in the unit). Without `$NOTIFY_SOCKET` (not started by systemd, or in the lab) it does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1`, `STATUS=forming the pool`) to systemd. Returns whether a socket was there.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var(NOTIFY_SOCKET_ENV) {
        Ok(socket) if !socket.is_empty() => notify_to(&socket, state).map(|_| true),
        _ => Ok(false),
    }
}

/// Tells systemd the service is ready (`READY=1`).
pub fn ready() -> std::io::Result<bool> {
    notify("READY=1")
}

/// Tells systemd a one-line status shown by `systemctl status`.
pub fn status(text: &str) -> std::io::Result<bool> {
    notify(&format!("STATUS={}", text.replace('\n', " ")))
}

/// Sends `state` to the socket named `socket` (a path, or `@name` for the abstract namespace).
pub fn notify_to(socket: &str, state: &str) -> std::io::Result<()> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("firstboot-agent-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        notify_to(&format!("@{name}"), "STATUS=x").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=x");
    }

    #[test]
    fn missing_socket_is_an_error() {
        assert!(notify_to("/nonexistent/notify", "READY=1").is_err());
    }
}
