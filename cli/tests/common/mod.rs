//! A tiny admin API on 127.0.0.1 for the CLI's tests: it records every request
//! and answers through the test's own handler, as the gateway would. It stops
//! by itself after a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: String,
    pub body: String,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An answer: status, content type, body.
pub type Reply = (u16, &'static str, String);

pub fn json(status: u16, v: serde_json::Value) -> Reply {
    (status, "application/json", v.to_string())
}

pub struct Server {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Serves with `handler` until `deadline` passes.
    pub fn start(deadline: Duration, handler: impl Fn(&Seen) -> Reply + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + deadline;
            while Instant::now() < end {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                let (mut length, mut authorization) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => length = v.trim().parse().unwrap_or(0),
                            "authorization" => authorization = v.trim().to_string(),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let req = Seen { method, path, authorization, body: String::from_utf8_lossy(&body).into_owned() };
                let (status, ctype, reply) = handler(&req);
                log.lock().unwrap().push(req);
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Server { base, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// (method, path) of every request so far.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.seen().into_iter().map(|s| (s.method, s.path)).collect()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("gatewayctl-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `gatewayctl` with a clean environment: no gateway or token from the caller's, and a config
/// file that does not exist unless the test makes it.
pub fn gatewayctl(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatewayctl"));
    c.env_remove("GATEWAY_URL").env_remove("GATEWAY_TOKEN").env("GATEWAYCTL_CONFIG", config);
    c
}

/// Runs `gatewayctl` against `base` with a token from the environment.
pub fn run(base: &str, args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join("gatewayctl-no-config.yaml");
    gatewayctl(&dir).env("GATEWAY_URL", base).env("GATEWAY_TOKEN", "adm.tok.en").args(args).output().expect("run gatewayctl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with both streams unless the run exited `code`.
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}
