//! `gatewayctl endpoints register` as a model server runs it, against a tiny
//! admin API on 127.0.0.1: register, renew, and deregister on SIGTERM; or
//! register once. The server stops by itself after a few seconds.
#![cfg(unix)]

mod common;

use common::{json, Seen, Server};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves `200 {"lease_expires_at": …}` to every request until `deadline` passes.
fn serve(deadline: Duration) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let server = Server::start(deadline, |_| json(200, serde_json::json!({"lease_expires_at": 1_800_000_060u64})));
    (server.base, server.seen)
}

fn gatewayctl(base: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatewayctl"));
    c.env("GATEWAYCTL_CONFIG", std::env::temp_dir().join("gatewayctl-no-config.yaml"));
    c.arg("--server").arg(base).args(args).env_remove("GATEWAY_URL").env("GATEWAY_TOKEN", "reg.tok.en");
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn wait_for(seen: &Arc<Mutex<Vec<Seen>>>, n: usize, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if seen.lock().unwrap().len() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn registers_renews_and_deregisters_on_sigterm() {
    let (base, seen) = serve(Duration::from_secs(15));
    let dir = std::env::temp_dir().join(format!("gatewayctl-register-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "file.tok.en\n").unwrap();
    let mut child = gatewayctl(&base, &["endpoints", "register", "llama", "gpu-1", "--url", "http://10.0.1.7:8000", "--weight", "2", "--lease", "5s"])
        .arg("--token-file")
        .arg(&token_file)
        .spawn()
        .expect("spawn gatewayctl");
    // Registered, then renewed a second later (every third of the 5 s lease).
    let renewed = wait_for(&seen, 2, Duration::from_secs(8));
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("gatewayctl did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(renewed, "no renewal: {stderr}");
    assert!(status.success(), "{status:?}: {stderr}");
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert!(methods.len() >= 3 && methods[..methods.len() - 1].iter().all(|m| *m == "PUT") && methods.last() == Some(&"DELETE"), "{methods:?}");
    for s in &seen {
        assert_eq!((s.path.as_str(), s.authorization.as_str()), ("/_gateway/routes/llama/endpoints/gpu-1", "Bearer file.tok.en"));
    }
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"url": "http://10.0.1.7:8000", "weight": 2, "lease_seconds": 5}));
    assert!(stderr.contains("registered") && stderr.contains("deregistered"), "{stderr}");
    assert!(!stderr.contains("file.tok.en"), "the token is never logged");
}

#[test]
fn once_registers_and_exits() {
    let (base, seen) = serve(Duration::from_secs(10));
    let out = gatewayctl(&base, &["endpoints", "register", "llama", "gpu-1", "--url", "http://10.0.1.7:8000", "--once"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|s| (s.method.as_str(), s.authorization.as_str())).collect::<Vec<_>>(), [("PUT", "Bearer reg.tok.en")]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&seen[0].body).unwrap()["lease_seconds"], 60);
}
