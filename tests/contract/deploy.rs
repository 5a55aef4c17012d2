//! Starting and stopping the deployment under test on free loopback ports.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which deployment the suite runs against (`GATEWAY_DEPLOYMENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// The Cloudflare Worker under `wrangler dev` (workerd).
    Edge,
    /// The AWS Lambda under `cargo lambda watch` with DynamoDB on moto.
    Lambda,
}

impl Deployment {
    pub fn from_env() -> Result<Deployment, String> {
        match std::env::var("GATEWAY_DEPLOYMENT").as_deref() {
            Err(_) | Ok("edge") => Ok(Deployment::Edge),
            Ok("lambda") => Ok(Deployment::Lambda),
            Ok(other) => Err(format!("GATEWAY_DEPLOYMENT={other}: expected edge or lambda")),
        }
    }
}

/// A route written by Terraform before the gateway starts (store key and JSON value).
pub struct Seed {
    pub name: String,
    pub json: String,
}

/// A running gateway; stopped (whole process group) when dropped.
pub struct Running {
    pub base: String,
    child: Child,
    pub log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // wrangler starts workerd as a child; signal the whole group.
        let _ = Command::new("kill").arg("-TERM").arg("--").arg(format!("-{pgid}")).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pgid}")).status();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repo").to_path_buf()
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Starts the Worker under `wrangler dev` with `vars` as its secrets and `seeds` written to KV first.
pub fn start_edge(vars: &[(&str, String)], seeds: &[Seed]) -> Running {
    let root = repo_root();
    let dir = std::env::temp_dir().join(format!("gw-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let env_file = dir.join("gateway.env");
    let mut f = std::fs::File::create(&env_file).expect("env file");
    for (k, v) in vars {
        // .env syntax: single quotes keep JSON intact.
        writeln!(f, "{k}='{v}'").expect("write env file");
    }
    let state = dir.join("state");
    let wrangler = root.join("node_modules/.bin/wrangler");
    for seed in seeds {
        let status = Command::new(&wrangler)
            .current_dir(&root)
            .args(["kv", "key", "put", &format!("route:{}", seed.name), &seed.json, "--binding", "GATEWAY_KV", "--local", "--persist-to"])
            .arg(&state)
            .env("GATEWAY_EDGE_PREBUILT", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("wrangler kv key put");
        assert!(status.success(), "seeding KV with route {} failed", seed.name);
    }
    let port = free_port();
    let log = dir.join("wrangler.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(&wrangler)
        .current_dir(&root)
        .args(["dev", "--local", "--ip", "127.0.0.1", "--show-interactive-dev-session=false", "--log-level", "log"])
        .args(["--port", &port.to_string(), "--inspector-port", &free_port().to_string()])
        .arg("--persist-to")
        .arg(&state)
        .arg("--env-file")
        .arg(&env_file)
        .env("GATEWAY_EDGE_PREBUILT", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log fd"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("start wrangler dev");
    let mut running = Running { base: format!("http://127.0.0.1:{port}"), child, log };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("wrangler dev exited with {status}:\n{}", tail(&running.log));
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /_gateway/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 16];
            if std::io::Read::read(&mut s, &mut buf).is_ok_and(|n| n >= 12 && &buf[9..12] == b"200") {
                break;
            }
        }
        if Instant::now() > deadline {
            let log = tail(&running.log);
            drop(running);
            panic!("wrangler dev did not become ready in 120 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    running.log = running.log.clone();
    running
}
