//! Tells systemd when the speaker is ready and when it stops (a `Type=notify` unit, as the
//! Debian package's): the datagrams of sd_notify(3), sent to the socket NOTIFY_SOCKET names.
//! Without that variable (a container, a shell) nothing is sent.

use std::{
    ffi::OsStr,
    io,
    os::unix::{
        ffi::OsStrExt as _,
        net::{SocketAddr, UnixDatagram},
    },
};

use tracing::warn;

/// Announcing what it should: systemd's start job completes, `systemctl start` returns.
pub const READY: &str = "READY=1";
/// Withdrawing and leaving.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` to the service manager, if one asked for it; a failure is logged, never fatal
/// (the speaker's job is the LAN's answers, not its unit's state).
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send(&socket, state) {
        warn!(socket = %socket.to_string_lossy(), error = %e, state, "service manager not told");
    }
}

/// One datagram to `socket`: a path, or an abstract name written with a leading `@`.
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt as _;

    use super::*;

    fn received(listener: &UnixDatagram) -> String {
        let mut buf = [0; 64];
        let n = listener.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = std::env::temp_dir().join(format!("herald-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), READY).unwrap();
        assert_eq!(received(&listener), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("herald-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        send(OsStr::new(&format!("@{name}")), STOPPING).unwrap();
        assert_eq!(received(&listener), "STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        assert!(send(OsStr::new("/nonexistent/herald/notify"), READY).is_err());
    }
}
