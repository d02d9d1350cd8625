//! What the export benchmark reads: the server's memory from /proc (sampled on a thread of its
//! own, and the kernel's peak since a reset), and the export downloaded over a plain HTTP/1.1
//! connection whose receive buffer is small, so that a slow reader holds the server back
//! instead of the kernel's socket buffers taking in the whole body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::{LoadError, Result};

// ---- /proc ------------------------------------------------------------------------------------

/// A `kB` field of a `/proc/<pid>/status` text (`VmRSS`, `VmHWM`, ...), in KiB.
pub(crate) fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name != field {
            return None;
        }
        let mut parts = rest.split_whitespace();
        let value = parts.next()?.parse().ok()?;
        (parts.next() == Some("kB")).then_some(value)
    })
}

/// A field of the process's status now, KiB.
pub(crate) fn read_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, field)
}

/// Resets the process's peak resident size (`VmHWM`) to its resident size now (writing 5 to
/// `clear_refs`, Linux 4.0 and later); false when the kernel refused.
pub(crate) fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// Samples a process's `VmRSS` every `every` on a thread of its own (not delayed by the
/// generator's runtime, which is busy reading the download).
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Samples>,
}

/// What a [`Sampler`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Samples {
    pub(crate) count: u64,
    pub(crate) peak_kib: u64,
}

impl Sampler {
    pub(crate) fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut s = Samples::default();
            loop {
                // One more sample after the stop, so the last moment is seen too.
                let last = flag.load(Ordering::Relaxed);
                if let Some(kib) = read_kib(pid, "VmRSS") {
                    s.count += 1;
                    s.peak_kib = s.peak_kib.max(kib);
                }
                if last {
                    return s;
                }
                std::thread::sleep(every);
            }
        });
        Sampler { stop, thread }
    }

    pub(crate) fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

// ---- the download -----------------------------------------------------------------------------

/// The receive buffer asked for the download's socket (the kernel doubles it).
pub(crate) const RECV_BUFFER: u32 = 64 * 1024;
/// Bytes read at a time.
const READ_BYTES: usize = 16 * 1024;

/// A finished download.
pub(crate) struct Download {
    pub(crate) status: u16,
    /// The body, its transfer coding removed.
    pub(crate) body: Vec<u8>,
    /// Request sent -> first byte of the response.
    pub(crate) first_byte: Duration,
    /// Request sent -> connection closed after the body.
    pub(crate) total: Duration,
}

/// `GET path` on `port` of loopback with the bearer `token`, reading at most `rate` bytes a
/// second (as fast as it comes without one) until the server closes the connection
/// (`Connection: close`). A body cut off before its end (a chunked body without its last
/// chunk, or shorter than its length) is an error.
pub(crate) async fn get(port: u16, path: &str, token: &str, rate: Option<u64>) -> Result<Download> {
    let io = |e: std::io::Error| LoadError::Protocol(format!("GET {path}: {e}"));
    let socket = TcpSocket::new_v4().map_err(io)?;
    socket.set_recv_buffer_size(RECV_BUFFER).map_err(io)?;
    let mut stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let sent = Instant::now();
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; READ_BYTES];
    let mut first_byte = None;
    loop {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| sent.elapsed());
        raw.extend_from_slice(&buf[..n]);
        if let Some(rate) = rate.filter(|r| *r > 0) {
            // Behind schedule by what was read beyond `rate` bytes a second: wait it out.
            let due = Duration::from_secs_f64(raw.len() as f64 / rate as f64);
            let elapsed = sent.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    let total = sent.elapsed();
    let response =
        parse_response(&raw).map_err(|e| LoadError::Protocol(format!("GET {path}: {e}")))?;
    Ok(Download {
        status: response.status,
        body: response.body,
        first_byte: first_byte.unwrap_or(total),
        total,
    })
}

/// An HTTP/1.1 response read to its end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Parses a whole HTTP/1.1 response: the status line, the headers, and the body by its
/// `Content-Length`, its chunked transfer coding, or up to the end.
pub(crate) fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("no end of the headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad content-length {value:?}"))?,
            );
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        if rest.len() < length {
            return Err(format!("body cut off: {} of {length} bytes", rest.len()));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Removes the chunked transfer coding (RFC 9112, 7.1): the chunks' data in order, up to the
/// last (zero-size) chunk, which must be there.
pub(crate) fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::with_capacity(data.len());
    loop {
        let line_end = find(data, b"\r\n").ok_or("cut off before the last chunk")?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size line")?;
        // Extensions (`;name=value`) may follow the size.
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err("cut off inside a chunk".into());
        }
        body.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsplitsave\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  812345 kB\nVmSize:\t  802112 kB\nVmHWM:\t   61440 kB\nVmRSS:\t   40960 kB\nRssAnon:\t   30000 kB\nThreads:\t5\n";

    #[test]
    fn status_fields_are_read_in_kib_by_their_exact_name() {
        assert_eq!(status_kib(STATUS, "VmRSS"), Some(40_960));
        assert_eq!(status_kib(STATUS, "VmHWM"), Some(61_440));
        assert_eq!(status_kib(STATUS, "RssAnon"), Some(30_000));
        // Not a prefix match, and not a field without a kB unit.
        assert_eq!(status_kib(STATUS, "Vm"), None);
        assert_eq!(status_kib(STATUS, "Threads"), None);
        assert_eq!(status_kib(STATUS, "VmSwap"), None);
        assert_eq!(status_kib("VmRSS:\tlots kB\n", "VmRSS"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let rss = read_kib(std::process::id(), "VmRSS").expect("VmRSS");
        assert!(rss > 0);
    }

    #[test]
    fn chunked_bodies_are_joined_and_must_end_with_the_last_chunk() {
        let raw = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(
            dechunk(raw).expect("complete"),
            b"Wikipedia in \r\n\r\nchunks."
        );
        assert!(dechunk(b"4\r\nWiki\r\n").is_err(), "no last chunk");
        assert!(dechunk(b"a\r\nWiki\r\n0\r\n\r\n").is_err(), "cut inside");
        assert!(dechunk(b"zz\r\n").is_err(), "bad size");
        assert_eq!(dechunk(b"0\r\n\r\n").expect("empty"), b"");
    }

    #[test]
    fn responses_are_read_by_length_by_chunks_or_to_the_end() {
        let chunked = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked),
            Ok(Response {
                status: 200,
                body: b"{}".to_vec()
            })
        );
        let sized = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 3\r\n\r\nabcdef";
        assert_eq!(
            parse_response(sized).map(|r| (r.status, r.body)),
            Ok((429, b"abc".to_vec()))
        );
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc";
        assert!(parse_response(short).is_err());
        let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n";
        assert!(parse_response(cut).is_err());
        let no_length = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        assert_eq!(
            parse_response(no_length).map(|r| r.body),
            Ok(b"all of it".to_vec())
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n").is_err(),
            "no end of headers"
        );
        assert!(parse_response(b"SMTP 200\r\n\r\n").is_err());
    }
}
