//! nginx in front of the nodes (`--front nginx`): a configuration derived from the shipped
//! `deploy/nginx.conf`, with one upstream and one `server` block (its own listen port) per node,
//! so each client stays on the node it was meant for while going through nginx as in production.
//! Everything else (timeouts, WebSocket upgrade, buffering, keep-alive, logs) is the shipped file.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped configuration, as of this build.
pub(crate) const SHIPPED: &str = include_str!("../../../deploy/nginx.conf");

/// The shipped configuration rewritten for `fronts`: (listen port, node port) per node. Node `k`
/// gets `upstream splitsave_k` (the shipped upstream block with only that node's `server`
/// line) and a copy of the shipped `server` block listening on its port and proxying to it.
pub(crate) fn derive_conf(shipped: &str, fronts: &[(u16, u16)]) -> Result<String, String> {
    let lines: Vec<&str> = shipped.lines().collect();
    let upstream = block(&lines, |l| l.starts_with("upstream splitsave {"))
        .ok_or("no `upstream splitsave {` block")?;
    let server = block(&lines, |l| l == "server {").ok_or("no `server {` block")?;
    if server.0 < upstream.1 {
        return Err("expected the `server` block after the upstream".into());
    }
    let mut out: Vec<String> = Vec::new();
    out.extend(lines[..upstream.0].iter().map(|l| (*l).to_owned()));
    for (k, (_, node_port)) in fronts.iter().enumerate() {
        let mut placed = false;
        for line in &lines[upstream.0..upstream.1] {
            let trimmed = line.trim_start();
            if trimmed.starts_with("upstream splitsave {") {
                out.push(line.replace(
                    "upstream splitsave {",
                    &format!("upstream splitsave_{k} {{"),
                ));
            } else if trimmed.starts_with("server 127.0.0.1:") {
                if !placed {
                    let indent = &line[..line.len() - trimmed.len()];
                    let rest = trimmed
                        .split_once(' ')
                        .and_then(|(_, r)| r.split_once(' '))
                        .map_or(";", |(_, r)| r);
                    out.push(format!("{indent}server 127.0.0.1:{node_port} {rest}"));
                    placed = true;
                }
            } else {
                out.push((*line).to_owned());
            }
        }
        if !placed {
            return Err("the upstream block has no `server 127.0.0.1:` line".into());
        }
    }
    out.extend(lines[upstream.1..server.0].iter().map(|l| (*l).to_owned()));
    for (k, (listen, _)) in fronts.iter().enumerate() {
        let mut listened = false;
        for line in &lines[server.0..server.1] {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("listen ") {
                out.push(format!("{indent}listen 127.0.0.1:{listen};"));
                listened = true;
            } else if trimmed == "proxy_pass http://splitsave;" {
                out.push(format!("{indent}proxy_pass http://splitsave_{k};"));
            } else {
                out.push((*line).to_owned());
            }
        }
        if !listened {
            return Err("the server block has no `listen` line".into());
        }
    }
    out.extend(lines[server.1..].iter().map(|l| (*l).to_owned()));
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// The first block whose opening line (trimmed) satisfies `opens`: (first line, one past its
/// closing line).
fn block(lines: &[&str], opens: impl Fn(&str) -> bool) -> Option<(usize, usize)> {
    let start = lines.iter().position(|l| opens(l.trim()))?;
    let mut depth = 0i32;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let code = line.split('#').next().unwrap_or("");
        depth += code.matches('{').count() as i32;
        depth -= code.matches('}').count() as i32;
        if depth == 0 {
            return Some((start, i + 1));
        }
    }
    None
}

/// An nginx master process started by the generator.
pub(crate) struct Nginx {
    child: Child,
}

impl Nginx {
    /// Writes the derived configuration under `prefix` and starts nginx on it in the
    /// foreground; returns once every listen port accepts connections.
    pub(crate) fn start(
        binary: &Path,
        prefix: &Path,
        fronts: &[(u16, u16)],
    ) -> Result<Nginx, String> {
        if !binary.exists() {
            return Err(format!(
                "{} not found (Debian: apt-get install nginx-light), or use --front direct",
                binary.display()
            ));
        }
        let conf_text = derive_conf(SHIPPED, fronts)?;
        for dir in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(dir)).map_err(|e| e.to_string())?;
        }
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, conf_text).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(prefix.join("logs/stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut nginx = Nginx { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        for (listen, _) in fronts {
            while std::net::TcpStream::connect(("127.0.0.1", *listen)).is_err() {
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    return Err(format!(
                        "nginx exited with {status} (see {})",
                        prefix.join("logs").display()
                    ));
                }
                if Instant::now() > deadline {
                    nginx.stop();
                    return Err(format!("nginx did not listen on {listen}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(nginx)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fast shutdown (SIGTERM: the master stops its workers), SIGKILL if it lingers.
    pub(crate) fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_upstream_and_listen_port() {
        let conf = derive_conf(SHIPPED, &[(18001, 13001), (18002, 13002)]).expect("derived");
        assert!(conf.contains("upstream splitsave_0 {"));
        assert!(conf.contains("upstream splitsave_1 {"));
        assert!(!conf.contains("upstream splitsave {"));
        // Each node's line keeps the shipped parameters (max_fails, fail_timeout, ...).
        let shipped_params = SHIPPED
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("server 127.0.0.1:"))
            .and_then(|rest| rest.split_once(' '))
            .map(|(_, params)| params)
            .expect("the shipped upstream has a server line with parameters");
        assert!(conf.contains(&format!("server 127.0.0.1:13001 {shipped_params}")));
        assert!(conf.contains(&format!("server 127.0.0.1:13002 {shipped_params}")));
        assert!(!conf.contains(":3001"));
        assert!(!conf.contains(":3002"));
        assert!(conf.contains("listen 127.0.0.1:18001;"));
        assert!(conf.contains("listen 127.0.0.1:18002;"));
        // Every location of the shipped server block, once per node.
        let locations = SHIPPED.matches("proxy_pass http://splitsave;").count();
        assert!(locations >= 2, "{locations}");
        assert_eq!(
            conf.matches("proxy_pass http://splitsave_0;").count(),
            locations
        );
        assert_eq!(
            conf.matches("proxy_pass http://splitsave_1;").count(),
            locations
        );
        assert!(!conf.contains("proxy_pass http://splitsave;"));
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
        // The rest of the shipped file is kept.
        assert!(conf.contains("proxy_read_timeout 1h;"));
        assert!(conf.contains("keepalive 32;"));
        assert!(conf.contains("worker_connections 4096;"));
    }
}
