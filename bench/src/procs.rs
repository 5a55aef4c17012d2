//! Processes: starting them in their own process group (stopped with the whole group
//! when dropped), finding them in /proc, and reading their CPU accounting.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child started in its own process group; the group is stopped when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` in a new process group, stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        Ok(Proc { name: name.to_string(), child, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("{} exited with {status}:\n{}", self.name, tail(&self.log, 30))),
            _ => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        stop_group(self.child.id() as i32, &mut self.child);
    }
}

/// SIGTERM to the group, up to 10 s, then SIGKILL.
pub fn stop_group(pgid: i32, child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg("--").arg(format!("-{pgid}")).stderr(Stdio::null()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; make sure nothing of its group lingers.
            let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pgid}")).stderr(Stdio::null()).status();
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pgid}")).stderr(Stdio::null()).status();
    let _ = child.wait();
}

pub fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Waits until something accepts connections on `addr`.
pub fn wait_port(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {addr} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// One line of /proc/<pid>/stat.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub ppid: i32,
    pub pgrp: i32,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    // Fields after the command: state(3) ppid(4) pgrp(5) session(6) ... utime(14) stime(15).
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat { pid, comm, ppid: num(4)? as i32, pgrp: num(5)? as i32, ticks: num(14)? + num(15)? })
}

pub fn all() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(stat).collect()
}

pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default()
}

pub fn environ_has(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).map(|b| b.split(|c| *c == 0).any(|kv| kv == needle.as_bytes())).unwrap_or(false)
}

pub fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The process whose command line holds every one of `args` (e.g. a flag and its port).
pub fn find_by_cmdline(args: &[&str]) -> Option<i32> {
    all().into_iter().map(|s| s.pid).find(|&pid| {
        let c = cmdline(pid);
        args.iter().all(|a| c.iter().any(|x| x == a))
    })
}

/// Every process in process group `pgrp`.
pub fn group(pgrp: i32) -> Vec<Stat> {
    all().into_iter().filter(|s| s.pgrp == pgrp).collect()
}

/// `pid` and its descendants.
pub fn tree(pid: i32) -> Vec<i32> {
    let procs = all();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(procs.iter().filter(|s| s.ppid == p).map(|s| s.pid));
        i += 1;
    }
    out
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clk_tck() -> u64 {
    Command::new("getconf").arg("CLK_TCK").output().ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(100)
}

/// A named set of processes whose CPU time is read together.
#[derive(Debug, Clone)]
pub enum CpuSet {
    /// These pids (each with all its threads).
    Pids(Vec<i32>),
    /// Every process of this group.
    Group(i32),
    /// The processes of this group with this command name (e.g. workerd under wrangler).
    GroupComm(i32, String),
    /// Like `GroupComm`, keeping only processes whose command line has (or lacks) an
    /// argument starting with the prefix; looked up at each reading, so a restarted
    /// process is followed.
    GroupCommArg { pgrp: i32, comm: String, arg_prefix: String, present: bool },
}

impl CpuSet {
    /// utime + stime of the set now, in clock ticks.
    pub fn ticks(&self) -> u64 {
        match self {
            CpuSet::Pids(p) => p.iter().filter_map(|&pid| stat(pid)).map(|s| s.ticks).sum(),
            CpuSet::Group(g) => group(*g).iter().map(|s| s.ticks).sum(),
            CpuSet::GroupComm(g, comm) => group(*g).iter().filter(|s| &s.comm == comm).map(|s| s.ticks).sum(),
            CpuSet::GroupCommArg { pgrp, comm, arg_prefix, present } => group(*pgrp)
                .iter()
                .filter(|s| &s.comm == comm && cmdline(s.pid).iter().any(|a| a.starts_with(arg_prefix.as_str())) == *present)
                .map(|s| s.ticks)
                .sum(),
        }
    }
}

/// TCP ports `pid` listens on (IPv4 and IPv6), from /proc/net/tcp{,6} and the process's fds.
pub fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (ADDR:PORT in hex), st is field 3 (0A = LISTEN), inode field 9.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                if let Some(port) = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) {
                    ports.push(port);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}
