//! Zero-downtime binary upgrade and the service manager's view of the process.
//!
//! The upgrade is Pingora's: a new process started with `run --upgrade` receives the listening
//! sockets from the running one over `{state_dir}/upgrade.sock` when that one gets SIGQUIT; the
//! old process then stops accepting and drains exactly like a SIGTERM stop (see `drain.rs`):
//! its streams run to the end (or `limits.shutdown_grace_s`), its usage lines are written, and
//! it exits 0. `llm-gateway upgrade` drives the whole exchange (it is the systemd unit's
//! `ExecReload`), and a serving process tells systemd it is the service's main process
//! (`sd_notify` `MAINPID=`, `READY=1`) and writes `{state_dir}/llm-gateway.pid`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// The socket the listening sockets are handed over on.
pub fn upgrade_sock(state_dir: &Path) -> PathBuf {
    state_dir.join("upgrade.sock")
}

/// The file naming the process that serves (written once it serves).
pub fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("llm-gateway.pid")
}

/// Send `msg` to systemd's notification socket (`$NOTIFY_SOCKET`), if there is one.
pub fn sd_notify(msg: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        if let Err(e) = notify_to(&path, msg) {
            tracing::warn!("cannot notify the service manager: {e}");
        }
    }
}

/// Send `msg` to the notification socket `path` (`@name` = an abstract socket).
fn notify_to(path: &std::ffi::OsStr, msg: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        // An abstract socket name.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
        }
        None => sock.send_to(msg.as_bytes(), path),
    };
    sent.map(|_| ())
}

/// The longest `Ready` waits for the listeners before it reports anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Once the process serves: write the pid file and tell systemd this process is the service
/// (after an upgrade the main process is the new one).
///
/// "Serves" means every listener is listening. Pingora binds a fresh start's sockets as each
/// service starts, beside this background service, so `READY=1` sent at once could reach
/// systemd (and whatever waits on the unit) a moment before the port existed: a client let in
/// then was refused. So it first waits until this process listens on each configured port
/// (read from `/proc`, without connecting: a probe connection would be a handshake error in the
/// TLS listener's log). After an upgrade the sockets are inherited and already listen.
pub struct Ready {
    pub state_dir: PathBuf,
    /// The data, TLS and admin listen addresses (`host:port`).
    pub listen: Vec<String>,
}

#[async_trait]
impl BackgroundService for Ready {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let pid = std::process::id();
        let deadline = Instant::now() + LISTEN_WAIT;
        for addr in &self.listen {
            let Some(port) = addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()) else { continue };
            while !listens(pid, port) {
                if Instant::now() >= deadline {
                    tracing::warn!(listen = %addr, "not listening yet; reporting ready anyway");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let path = pid_file(&self.state_dir);
        let tmp = path.with_extension("pid.tmp");
        let written = std::fs::write(&tmp, format!("{pid}\n")).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot write the pid file: {e}");
        }
        sd_notify(&format!("MAINPID={pid}\nREADY=1\nSTATUS=serving"));
        tracing::info!(pid, "serving");
    }
}

/// Whether process `pid` has a listening TCP socket (IPv4 or IPv6, any address) on `port`:
/// the socket inodes of `/proc/net/tcp` and `tcp6` in state LISTEN against the process's open
/// files. Where `/proc` cannot be read, it cannot tell and says yes.
pub fn listens(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return !std::path::Path::new("/proc/self").exists();
    };
    let sockets: std::collections::HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).unwrap_or_default().lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN; the inode is field 9.
            f.len() > 9
                && f[3] == "0A"
                && f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && sockets.contains(f[9])
        })
    })
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("no running gateway: {path} cannot be read ({reason}); pass --pid")]
    NoPid { path: String, reason: String },
    #[error("cannot start the new process: {0}")]
    Spawn(std::io::Error),
    #[error("the new process exited ({status}) before taking over; the running one ({old}) was not touched")]
    NewExited { status: String, old: u32 },
    #[error("the new process did not get ready to take over within {0:?}; it was stopped, the running one was not touched")]
    NotWaiting(Duration),
    #[error("cannot signal the running process {pid}: {reason}")]
    Signal { pid: u32, reason: String },
    #[error("the new process {new} did not report serving within {within:?}")]
    NotServing { new: u32, within: Duration },
}

/// `llm-gateway upgrade`: start `exe run -c config --upgrade`, wait until it waits for the
/// sockets, SIGQUIT the running process (`old`, else the pid file's), and wait until the new
/// process serves. Returns the new process's pid. The new process keeps running on its own
/// (stdout and stderr are this command's, e.g. the journal).
pub fn upgrade(
    exe: &Path,
    config: &Path,
    state_dir: &Path,
    old: Option<u32>,
    threads: Option<usize>,
    within: Duration,
) -> Result<u32, UpgradeError> {
    let pid_path = pid_file(state_dir);
    let old = match old {
        Some(p) => p,
        None => read_pid(&pid_path)?,
    };
    let sock = upgrade_sock(state_dir);
    let _ = std::fs::remove_file(&sock);
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--upgrade", "-c"]).arg(config).stdin(Stdio::null());
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let mut child = cmd.spawn().map_err(UpgradeError::Spawn)?;
    let new = child.id();
    // The new process listens on the upgrade socket once its config is loaded.
    let deadline = Instant::now() + within;
    while !sock.exists() {
        if let Some(status) = exited(&mut child) {
            return Err(UpgradeError::NewExited { status, old });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(UpgradeError::NotWaiting(within));
        }
        pause();
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), nix::sys::signal::Signal::SIGQUIT)
        .map_err(|e| UpgradeError::Signal { pid: old, reason: e.to_string() })?;
    while read_pid(&pid_path).ok() != Some(new) {
        if let Some(status) = exited(&mut child) {
            return Err(UpgradeError::NewExited { status, old });
        }
        if Instant::now() > deadline {
            return Err(UpgradeError::NotServing { new, within });
        }
        pause();
    }
    Ok(new)
}

/// The poll interval of the `upgrade` command (a plain CLI process, no async runtime).
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(Duration::from_millis(20));
}

fn exited(child: &mut Child) -> Option<String> {
    child.try_wait().ok().flatten().map(|s| s.to_string())
}

fn read_pid(path: &Path) -> Result<u32, UpgradeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UpgradeError::NoPid { path: path.display().to_string(), reason: e.to_string() })?;
    text.trim().parse().map_err(|_| UpgradeError::NoPid {
        path: path.display().to_string(),
        reason: format!("{:?} is not a pid", text.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_seen_and_a_closed_one_is_not() {
        let me = std::process::id();
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        assert!(listens(me, port));
        drop(v4);
        assert!(!listens(me, port));
        // A connected socket on a port is not a listener.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert!(!listens(me, client_port));
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            assert!(listens(me, v6.local_addr().unwrap().port()));
        }
    }

    #[test]
    fn a_notification_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_missing_or_bad_pid_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_pid(&pid_file(dir.path())).unwrap_err();
        assert!(e.to_string().contains("pass --pid"), "{e}");
        std::fs::write(pid_file(dir.path()), "abc\n").unwrap();
        let e = read_pid(&pid_file(dir.path())).unwrap_err();
        assert!(e.to_string().contains("\"abc\" is not a pid"), "{e}");
        std::fs::write(pid_file(dir.path()), "4242\n").unwrap();
        assert_eq!(read_pid(&pid_file(dir.path())).unwrap(), 4242);
    }
}
