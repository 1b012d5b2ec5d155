//! systemd's readiness notification (sd_notify(3), `Type=notify`): the unit is ordered
//! before rsyslog, and systemd starts rsyslog only once the watcher says `READY=1`, which it
//! does once its socket is bound. Without it (`Type=simple`) rsyslog could start, and send,
//! before the socket exists.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// Tells systemd the watcher is ready, when systemd asked (`NOTIFY_SOCKET`); a failure is
/// said on stderr and changes nothing else (systemd then times the start out and says so).
pub fn ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket, b"READY=1\n") {
        eprintln!(
            "sftpctl watch: warning: cannot tell systemd the watcher is ready ({}): {e}",
            Path::new(&socket).display()
        );
    }
}

/// `@name` is an abstract socket address, anything else a path.
fn send(socket: &OsStr, message: &[u8]) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            sock.send_to_addr(message, &SocketAddr::from_abstract_name(name)?)?;
        }
        None => {
            sock.send_to(message, Path::new(socket))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("sftpctl-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), b"READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("sftpctl-notify-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        send(OsStr::new(&format!("@{name}")), b"READY=1\n").unwrap();
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
