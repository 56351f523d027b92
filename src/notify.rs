//! The systemd readiness protocol (`sd_notify(3)`): one datagram per state change to the
//! unix socket named by `$NOTIFY_SOCKET`, a path or, with a leading `@`, an abstract name.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing. A failed send
//! is logged and otherwise ignored: a daemon must not stop serving because its supervisor
//! went away. This module owns only the wire format; `app` decides when to send what.

use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::{debug, warn};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A state change for the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every volume is checked and every listener accepts connections.
    Ready,
    /// SIGHUP received: credentials and certificates are being re-read; `Ready` follows.
    Reloading,
    /// Shutdown began: no new connections, in-flight requests are finishing.
    Stopping,
}

impl State {
    /// The datagram text for this state (`KEY=VALUE` lines). `RELOADING=1` carries
    /// `MONOTONIC_USEC`, which systemd 253+ wants to match the reload with its `READY=1`.
    pub fn message(self) -> String {
        match self {
            State::Ready => "READY=1\nSTATUS=serving".to_owned(),
            State::Reloading => format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()),
            State::Stopping => "STOPPING=1\nSTATUS=finishing in-flight requests".to_owned(),
        }
    }
}

/// Sends `state` to the service manager, if `$NOTIFY_SOCKET` names one.
pub fn notify(state: State) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let Some(target) = target.to_str() else {
        warn!("NOTIFY_SOCKET is not UTF-8: not notifying systemd");
        return;
    };
    match send(target, &state.message()) {
        Ok(()) => debug!(?state, "notified systemd"),
        Err(e) => warn!(?state, socket = target, error = %e, "cannot notify systemd"),
    }
}

/// Sends one datagram `msg` to the socket `target` (a path, or `@name` for an abstract one).
///
/// Errors: the socket cannot be created, the name is invalid, or the send fails.
pub fn send(target: &str, msg: &str) -> std::io::Result<()> {
    let addr = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(target)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(msg.as_bytes(), &addr)?;
    Ok(())
}

fn monotonic_usec() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_sockets_receive_the_message() {
        let scratch = crate::store::scratch::Scratch::new("notify");
        let dir = scratch.join("notify.sock");
        let rx = UnixDatagram::bind(&dir).unwrap();
        send(dir.to_str().unwrap(), &State::Ready.message()).unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("READY=1"));
        std::fs::remove_file(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("s3vol-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send(&format!("@{name}"), &State::Stopping.message()).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("STOPPING=1"));
    }

    #[test]
    fn reloading_carries_a_monotonic_timestamp() {
        let m = State::Reloading.message();
        let usec: u64 = m.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).unwrap().parse().unwrap();
        assert!(usec > 0, "{m}");
    }
}
