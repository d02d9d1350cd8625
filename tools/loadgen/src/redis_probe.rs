//! The generator's own view of the nodes' Redis traffic, for telling where cross-node
//! propagation time goes: a subscriber to the run's cluster channel (`<REDIS_PREFIX>cluster`,
//! see server/src/sync/cluster.rs) that timestamps each commit notice as it arrives, and a
//! `PING` round-trip probe. A few lines of RESP over a TCP stream; no Redis client library.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use uuid::Uuid;

/// Where a Redis server is, from a `redis://[[user]:password@]host[:port][/db]` URL.
#[derive(Clone, Debug)]
pub(crate) struct RedisAddr {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl RedisAddr {
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if parsed.scheme() != "redis" {
            return Err(format!(
                "only redis:// URLs are supported here, not {}",
                parsed.scheme()
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| "the Redis URL has no host".to_string())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let user = Some(parsed.username().to_string()).filter(|u| !u.is_empty());
        let password = parsed.password().map(str::to_string);
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(6379),
            user,
            password,
        })
    }
}

/// A Redis reply, as far as this module needs them (no nested arrays).
#[derive(Debug)]
enum Reply {
    Simple(String),
    Error(String),
    Int,
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

type Conn = BufReader<TcpStream>;

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn line(conn: &mut Conn) -> std::io::Result<String> {
    let mut s = String::new();
    if conn.read_line(&mut s).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

async fn scalar(conn: &mut Conn, head: &str) -> std::io::Result<Reply> {
    let (kind, rest) = head.split_at(head.len().min(1));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => {
            rest.parse::<i64>().map_err(|_| bad(head.to_string()))?;
            Reply::Int
        }
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad(head.to_string()))?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; n as usize + 2];
                conn.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        _ => return Err(bad(format!("unexpected reply {head:?}"))),
    })
}

async fn reply(conn: &mut Conn) -> std::io::Result<Reply> {
    let head = line(conn).await?;
    if let Some(n) = head.strip_prefix('*') {
        let n: i64 = n.parse().map_err(|_| bad(head.clone()))?;
        let mut items = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n.max(0) {
            let h = line(conn).await?;
            items.push(scalar(conn, &h).await?);
        }
        return Ok(Reply::Array(items));
    }
    scalar(conn, &head).await
}

async fn connect(addr: &RedisAddr) -> std::io::Result<Conn> {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect((addr.host.as_str(), addr.port)),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    if let Some(password) = &addr.password {
        let cmd = match &addr.user {
            Some(user) => command(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => command(&[b"AUTH", password.as_bytes()]),
        };
        conn.get_mut().write_all(&cmd).await?;
        if let Reply::Error(e) = reply(&mut conn).await? {
            return Err(bad(format!("AUTH: {e}")));
        }
    }
    Ok(conn)
}

/// Notices heard on the cluster channel while armed: commit notices' arrival times per
/// document, and presence notices' arrival times.
#[derive(Default)]
pub(crate) struct Notices {
    armed: AtomicBool,
    subscribed: AtomicBool,
    heard: AtomicU64,
    by_pid: Mutex<HashMap<Uuid, Vec<Instant>>>,
    presence: Mutex<Vec<Instant>>,
}

impl Notices {
    /// Starts recording (forgetting what was recorded before).
    pub(crate) fn arm(&self) {
        self.by_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.heard.store(0, Ordering::Relaxed);
        self.armed.store(true, Ordering::Relaxed);
    }

    /// Stops recording and hands over what was recorded: commit notices per document, and
    /// presence notices.
    pub(crate) fn disarm(&self) -> (HashMap<Uuid, Vec<Instant>>, Vec<Instant>) {
        self.armed.store(false, Ordering::Relaxed);
        (
            std::mem::take(&mut *self.by_pid.lock().unwrap_or_else(|e| e.into_inner())),
            std::mem::take(&mut *self.presence.lock().unwrap_or_else(|e| e.into_inner())),
        )
    }

    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Commit notices heard since armed.
    pub(crate) fn heard(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    fn record(&self, payload: &[u8], at: Instant) {
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        // `c <partnership> <version> <node>`, or `C <partnership> <version> <node>` + a line
        // break + the merge's changes; `p <partnership> <user> <0|1> <node>`; revocations are
        // not timed.
        let header = payload.split(|&b| b == b'\n').next().unwrap_or_default();
        let Ok(text) = std::str::from_utf8(header) else {
            return;
        };
        let mut parts = text.split(' ');
        match parts.next() {
            Some("c" | "C") => {}
            Some("p") => {
                self.presence
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(at);
                return;
            }
            _ => return,
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<Uuid>().ok()) else {
            return;
        };
        self.heard.fetch_add(1, Ordering::Relaxed);
        self.by_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pid)
            .or_default()
            .push(at);
    }
}

/// Subscribes to `channel` and records the notices into `notices` until the connection fails
/// (then says so once and ends: the figures that need it are reported as missing).
pub(crate) async fn subscribe(addr: RedisAddr, channel: String, notices: std::sync::Arc<Notices>) {
    let run = async {
        let mut conn = connect(&addr).await?;
        conn.get_mut()
            .write_all(&command(&[b"SUBSCRIBE", channel.as_bytes()]))
            .await?;
        loop {
            let r = reply(&mut conn).await?;
            let at = Instant::now();
            match r {
                Reply::Array(items) => match items.as_slice() {
                    [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(payload))]
                        if kind.as_slice() == b"message" =>
                    {
                        notices.record(payload, at);
                    }
                    [Reply::Bulk(Some(kind)), _, Reply::Int] if kind.as_slice() == b"subscribe" => {
                        notices.subscribed.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                },
                Reply::Error(e) => return Err(bad(format!("SUBSCRIBE: {e}"))),
                _ => {}
            }
        }
    };
    let result: std::io::Result<()> = run.await;
    notices.subscribed.store(false, Ordering::Relaxed);
    if let Err(err) = result {
        println!("  (the generator's own Redis subscription ended: {err})");
    }
}

/// A connection for timing `PING` round trips.
pub(crate) struct Pinger {
    conn: Conn,
}

impl Pinger {
    pub(crate) async fn connect(addr: &RedisAddr) -> std::io::Result<Self> {
        Ok(Self {
            conn: connect(addr).await?,
        })
    }

    /// One `PING` round trip.
    pub(crate) async fn ping(&mut self) -> std::io::Result<Duration> {
        let start = Instant::now();
        self.conn
            .get_mut()
            .write_all(b"*1\r\n$4\r\nPING\r\n")
            .await?;
        match reply(&mut self.conn).await? {
            Reply::Simple(s) if s == "PONG" => Ok(start.elapsed()),
            other => Err(bad(format!("PING answered {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let a = RedisAddr::parse("redis://127.0.0.1:6379").expect("plain");
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 6379));
        assert!(a.password.is_none() && a.user.is_none());
        let b = RedisAddr::parse("redis://:secret@cache/2").expect("password");
        assert_eq!((b.host.as_str(), b.port), ("cache", 6379));
        assert_eq!(b.password.as_deref(), Some("secret"));
        assert!(b.user.is_none());
        assert!(RedisAddr::parse("rediss://x").is_err());
    }

    #[test]
    fn commit_notices_are_recorded_only_while_armed() {
        let n = Notices::default();
        let pid = Uuid::now_v7();
        n.record(format!("c {pid} 3 abcd").as_bytes(), Instant::now());
        n.arm();
        let mut with_changes = format!("C {pid} 4 abcd\n").into_bytes();
        with_changes.extend_from_slice(&[0, 0, 0, 0, 2, 0xff, 0x20]);
        n.record(&with_changes, Instant::now());
        n.record(format!("p {pid} {pid} 1 abcd").as_bytes(), Instant::now());
        assert_eq!(n.heard(), 1);
        let (got, presence) = n.disarm();
        assert_eq!(got.get(&pid).map(Vec::len), Some(1));
        assert_eq!(presence.len(), 1);
        n.record(format!("c {pid} 5 abcd").as_bytes(), Instant::now());
        assert_eq!(n.heard(), 1);
    }
}
