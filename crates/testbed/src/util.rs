//! Small helpers: free loopback ports, a plain-HTTP GET for health
//! endpoints, random tokens, kubeconfig files.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ports handed out, from below the kernel's ephemeral range (32768+ here),
/// so that no outgoing connection and no `bind(0)` takes one meanwhile.
const PORT_RANGE: std::ops::Range<u16> = 20000..32000;

/// A loopback port reserved for this process: nobody listened on it when
/// it was picked, and an exclusive `flock` on
/// `$TMPDIR/testbed-ports/<port>.lock` keeps every other testbed (in this
/// or another process) off it while the reservation lives. The kernel drops
/// the lock when the process dies, so a killed test leaks nothing.
#[derive(Debug)]
pub struct PortReservation {
    pub port: u16,
    _lock: std::fs::File,
}

/// Reserves a free loopback port (see [`PortReservation`]).
pub fn reserve_port() -> anyhow::Result<PortReservation> {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join("testbed-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for _ in 0..2000 {
        let mut bytes = [0u8; 2];
        random_bytes(&mut bytes)?;
        let span = PORT_RANGE.end - PORT_RANGE.start;
        let port = PORT_RANGE.start + u16::from_le_bytes(bytes) % span;
        let path = dir.join(format!("{port}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock(2) on a descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(PortReservation { port, _lock: file });
        }
    }
    anyhow::bail!("no free loopback port in {PORT_RANGE:?} after 2000 tries")
}

fn random_bytes(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("reading /dev/urandom")
}

/// 32 random hex characters.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `GET http://127.0.0.1:port/path` (HTTP/1.0): status and body.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        stream
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {text:.200}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err(format!("GET 127.0.0.1:{port}{path}: no answer in 5s")))
}

/// A kubeconfig with one cluster (`server`, trusting `ca_pem`), one
/// bearer-token user `user` and a current context of that name.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {
            "server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "testbed", "user": user}}],
        "current-context": user,
    });
    let text = serde_saphyr::to_string(&config)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
