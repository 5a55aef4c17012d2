//! `gateway-bench`: the benchmark orchestrator.
//!
//! `gateway-bench run [options]` starts two stand-in vLLM servers on loopback (one answers at
//! once, one streams), then, one system at a time, starts the system, checks one request of
//! each scenario, drives closed-loop load at each concurrency and stops it:
//! direct, nginx, the edge gateway on workerd, the Lambda gateway under cargo-lambda's
//! emulator (and a no-op function under the same emulator), the Lambda handler served
//! natively, and LiteLLM. It writes `results.json` in the output directory.
//!
//! `gateway-bench report [options]` turns `results.json`, criterion's estimates and the
//! facts `scripts/bench.sh` gathered into `report.md`.
//!
//! Options: `--out DIR` (target/bench), `--warmup S` (1), `--duration S` (5),
//! `--concurrency 1,16,64`, `--systems direct,nginx,edge,edge-mf,lambda,native,noop,litellm`,
//! `--chunks 10`, `--interval-ms 20`, `--litellm-venv DIR` (target/bench/venv),
//! `--criterion DIR` (target/bench/criterion), `--facts FILE` (target/bench/facts.txt).

#![recursion_limit = "256"]

use bytes::Bytes;
use gateway_bench::load::{self, Amount, Expect, Target};
use gateway_bench::procs::{self, CpuSet, Proc};
use gateway_bench::report;
use gateway_bench::results::{CpuRun, Point, Results, Settings, SystemInfo, UsageCheck};
use gateway_core::token::{new_token_id, TokenIssuer, TokenKind, TokenRequest};
use gateway_core::Config;
use gateway_tests::deploy;
use gateway_tests::route::RouteJson;
use gateway_tests::standin::{StandIn, StandInOptions, CHUNKS_HEADER, INTERVAL_HEADER};
use http::{HeaderName, HeaderValue, Method};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The key shared by the gateways (GATEWAY_SIGNING_KEYS) and the harness (to mint the admin token).
const KEYS: &str = r#"[{"kid":"bench-1","alg":"HS256","secret":"YmVuY2htYXJrLXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmch"}]"#;
const LITELLM_MASTER_KEY: &str = "sk-bench-master-key";
const ROUTE_INSTANT: &str = "bench-instant";
const ROUTE_STREAM: &str = "bench-stream";
const ROUTE_PUBLIC: &str = "bench-public";
const GROUP: &str = "bench";

#[derive(Debug, Clone)]
struct Opts {
    out: PathBuf,
    warmup: f64,
    duration: f64,
    concurrency: Vec<usize>,
    systems: Vec<String>,
    chunks: usize,
    interval_ms: u64,
    timeout_s: u64,
    litellm_venv: PathBuf,
    criterion: PathBuf,
    facts: PathBuf,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let target = deploy::target_dir();
    let mut o = Opts {
        out: target.join("bench"),
        warmup: 1.0,
        duration: 5.0,
        concurrency: vec![1, 16, 64],
        systems: ["direct", "nginx", "edge", "edge-mf", "lambda", "noop", "native", "litellm"].iter().map(|s| s.to_string()).collect(),
        chunks: 10,
        interval_ms: 20,
        timeout_s: 30,
        litellm_venv: target.join("bench/venv"),
        criterion: target.join("bench/criterion"),
        facts: target.join("bench/facts.txt"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => o.out = PathBuf::from(v()?),
            "--warmup" => o.warmup = v()?.parse().map_err(|_| "--warmup: seconds")?,
            "--duration" => o.duration = v()?.parse().map_err(|_| "--duration: seconds")?,
            "--concurrency" => o.concurrency = v()?.split(',').map(|c| c.trim().parse::<usize>().map_err(|_| "--concurrency: e.g. 1,16,64".to_string())).collect::<Result<_, _>>()?,
            "--systems" => o.systems = v()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--chunks" => o.chunks = v()?.parse().map_err(|_| "--chunks: a count")?,
            "--interval-ms" => o.interval_ms = v()?.parse().map_err(|_| "--interval-ms: ms")?,
            "--timeout" => o.timeout_s = v()?.parse().map_err(|_| "--timeout: seconds")?,
            "--litellm-venv" => o.litellm_venv = PathBuf::from(v()?),
            "--criterion" => o.criterion = PathBuf::from(v()?),
            "--facts" => o.facts = PathBuf::from(v()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    // Absolute paths: configurations written for other programs (nginx) name them.
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    for p in [&mut o.out, &mut o.litellm_venv, &mut o.criterion, &mut o.facts] {
        if p.is_relative() {
            *p = cwd.join(&*p);
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("", &args[..]),
    };
    if cmd == "load" {
        std::process::exit(adhoc_load(rest));
    }
    let opts = match parse_opts(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gateway-bench: {e}");
            std::process::exit(2);
        }
    };
    let code = match cmd {
        "run" => run(opts),
        "report" => match report::write(&opts.out, &opts.criterion, &opts.facts) {
            Ok(path) => {
                println!("report: {}", path.display());
                0
            }
            Err(e) => {
                eprintln!("gateway-bench report: {e}");
                1
            }
        },
        _ => {
            eprintln!("usage: gateway-bench load URL [-c N] [-d SECONDS | -n COUNT] [-H 'name: value']... [-X METHOD] [--body TEXT] [--expect TEXT | --stream CHUNKS] [--cpu-pid PID]...");
            eprintln!("       gateway-bench run|report [--out DIR] [--warmup S] [--duration S] [--concurrency 1,16,64] [--systems LIST] [--chunks N] [--interval-ms MS]");
            2
        }
    };
    std::process::exit(code);
}

fn run(opts: Opts) -> i32 {
    // The stand-ins get a runtime (and thread) of their own; the load generator runs on one
    // worker thread, so on this 2-core machine neither can take both cores from the other.
    let standin_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("standin").enable_all().build().expect("stand-in runtime");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("load").enable_all().build().expect("load runtime");
    let code = rt.block_on(run_all(opts, standin_rt.handle().clone()));
    rt.shutdown_timeout(Duration::from_secs(5));
    standin_rt.shutdown_timeout(Duration::from_secs(5));
    code
}

/// Everything a system's benchmark needs.
struct Bench {
    opts: Opts,
    run_dir: PathBuf,
    results: Results,
    instant: SocketAddr,
    stream: SocketAddr,
    http: reqwest::Client,
    cfg: Config,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Models,
    Chat,
    Stream,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Models => "models",
            Scenario::Chat => "chat",
            Scenario::Stream => "stream",
        }
    }
}

/// How to reach the stand-ins through one system.
struct Via {
    /// Address for the instant scenarios and for streaming.
    instant: SocketAddr,
    stream: SocketAddr,
    /// Path prefixes, e.g. `/bench-instant`.
    instant_prefix: String,
    stream_prefix: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    session: bool,
    /// Model names in the chat body (LiteLLM routes by model).
    chat_model: &'static str,
    stream_model: &'static str,
    /// Every answer is this text (the no-op function).
    noop: bool,
}

impl Via {
    fn plain(instant: SocketAddr, stream: SocketAddr, instant_prefix: &str, stream_prefix: &str) -> Via {
        Via {
            instant,
            stream,
            instant_prefix: instant_prefix.into(),
            stream_prefix: stream_prefix.into(),
            headers: Vec::new(),
            session: false,
            chat_model: "stand-in",
            stream_model: "stand-in",
            noop: false,
        }
    }
}

fn chat_body(model: &str, stream: bool) -> Bytes {
    Bytes::from(
        json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": 16,
            "stream": stream,
        })
        .to_string(),
    )
}

impl Bench {
    fn target(&self, via: &Via, s: Scenario) -> Arc<Target> {
        let mut headers = via.headers.clone();
        let json_ct = (http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let t = match s {
            Scenario::Models => Target {
                addr: via.instant,
                method: Method::GET,
                path: format!("{}/v1/models", via.instant_prefix),
                headers,
                body: Bytes::new(),
                session: via.session,
                expect: Expect::Contains(if via.noop { "ok" } else { "stand-in" }),
            },
            Scenario::Chat => {
                headers.push(json_ct);
                Target {
                    addr: via.instant,
                    method: Method::POST,
                    path: format!("{}/v1/chat/completions", via.instant_prefix),
                    headers,
                    body: chat_body(via.chat_model, false),
                    session: via.session,
                    expect: Expect::Contains(if via.noop { "ok" } else { "chat.completion" }),
                }
            }
            Scenario::Stream => {
                headers.push(json_ct);
                headers.push((HeaderName::from_static(CHUNKS_HEADER), HeaderValue::from_str(&self.opts.chunks.to_string()).expect("digits")));
                headers.push((HeaderName::from_static(INTERVAL_HEADER), HeaderValue::from_str(&self.opts.interval_ms.to_string()).expect("digits")));
                Target {
                    addr: via.stream,
                    method: Method::POST,
                    path: format!("{}/v1/chat/completions", via.stream_prefix),
                    headers,
                    body: chat_body(via.stream_model, true),
                    session: via.session,
                    expect: Expect::Stream { chunks: self.opts.chunks },
                }
            }
        };
        Arc::new(t)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.opts.timeout_s)
    }

    /// One request of each scenario must succeed before any load is sent.
    async fn smoke(&self, via: &Via, scenarios: &[Scenario]) -> Result<(), String> {
        for &s in scenarios {
            let o = load::run(self.target(via, s), 1, Amount::Counted { total: 1 }, self.timeout()).await;
            if o.ok != 1 {
                return Err(format!("{} request failed: {:?}", s.name(), o.errors));
            }
        }
        Ok(())
    }

    /// Waits (up to `limit`) until one request of each scenario succeeds.
    async fn until_ready(&self, via: &Via, scenarios: &[Scenario], limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.smoke(via, scenarios).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// One timed point: warm-up, then the measured window, with CPU read at both ends of it.
    async fn point(&mut self, system: &str, via: &Via, s: Scenario, c: usize, cpu: &[(String, CpuSet)]) -> Point {
        let warmup = Duration::from_secs_f64(self.opts.warmup);
        let measure = Duration::from_secs_f64(self.opts.duration);
        let started = Instant::now();
        let task = tokio::spawn(load::run(self.target(via, s), c, Amount::Timed { warmup, measure }, self.timeout()));
        tokio::time::sleep_until((started + warmup).into()).await;
        let before: Vec<u64> = cpu.iter().map(|(_, set)| set.ticks()).collect();
        tokio::time::sleep_until((started + warmup + measure).into()).await;
        let after: Vec<u64> = cpu.iter().map(|(_, set)| set.ticks()).collect();
        let outcome = task.await.expect("load run");
        let mut p = Point::from_outcome(system, s.name(), &outcome, self.opts.interval_ms);
        let tick_ms = 1000.0 / self.results.settings.clk_tck as f64;
        for (i, (name, _)) in cpu.iter().enumerate() {
            if outcome.ok > 0 {
                p.cpu_ms_per_req.insert(name.clone(), (after[i].saturating_sub(before[i])) as f64 * tick_ms / outcome.ok as f64);
            }
        }
        let l = p.latency.clone().unwrap_or_default();
        let mut line = format!(
            "{system:<16} {:<7} c={c:<3} p50 {:>8.3} ms  p99 {:>8.3} ms  {:>8.0} req/s  errors {}",
            s.name(),
            l.p50_ms,
            l.p99_ms,
            p.rps,
            p.error_count()
        );
        if let (Some(t), Some(g)) = (&p.ttfc, &p.gaps) {
            line.push_str(&format!("  ttfc p50 {:.3} p99 {:.3}  gap p50 {:.2} p99 {:.2} bunched {:.1}%", t.p50_ms, t.p99_ms, g.p50_ms, g.p99_ms, g.bunched_share * 100.0));
        }
        for (k, v) in &p.cpu_ms_per_req {
            line.push_str(&format!("  cpu[{k}] {v:.3} ms/req"));
        }
        if !p.errors.is_empty() {
            line.push_str(&format!("  {:?}", p.errors));
        }
        println!("{line}");
        self.results.points.push(p.clone());
        self.save();
        p
    }

    /// CPU accounting around exactly `n` requests (idle rate measured first and subtracted).
    async fn cpu_run(&mut self, system: &str, scenario: &str, target: Arc<Target>, c: usize, n: u64, cpu: &[(String, CpuSet)]) {
        let tick_ms = 1000.0 / self.results.settings.clk_tck as f64;
        let idle_for = Duration::from_secs(2);
        let i0: Vec<u64> = cpu.iter().map(|(_, set)| set.ticks()).collect();
        tokio::time::sleep(idle_for).await;
        let i1: Vec<u64> = cpu.iter().map(|(_, set)| set.ticks()).collect();
        let started = Instant::now();
        let outcome = load::run(target, c, Amount::Counted { total: n }, self.timeout()).await;
        // Let work done after the response (usage counting in waitUntil) finish.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let wall = started.elapsed();
        let after: Vec<u64> = cpu.iter().map(|(_, set)| set.ticks()).collect();
        let mut run = CpuRun { system: system.into(), scenario: scenario.into(), concurrency: c, requests: n, ok: outcome.ok, wall_s: wall.as_secs_f64(), ..Default::default() };
        for (i, (name, _)) in cpu.iter().enumerate() {
            let idle_rate = (i1[i].saturating_sub(i0[i])) as f64 * tick_ms / idle_for.as_secs_f64();
            let used = (after[i].saturating_sub(i1[i])) as f64 * tick_ms;
            run.idle_ms_per_s.insert(name.clone(), idle_rate);
            run.cpu_ms.insert(name.clone(), used);
            run.ms_per_request.insert(name.clone(), ((used - idle_rate * wall.as_secs_f64()) / n as f64).max(0.0));
        }
        let shown: Vec<String> = run.ms_per_request.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        println!("{system:<16} cpu run {scenario} c={c} n={n} ok={}: {} ms/request", outcome.ok, shown.join(", "));
        self.results.cpu_runs.push(run);
        self.save();
    }

    fn save(&self) {
        let path = self.opts.out.join("results.json");
        let _ = std::fs::write(&path, serde_json::to_string_pretty(&self.results).expect("results serialise"));
    }

    fn system(&mut self, info: SystemInfo) {
        println!("== {} ({}): {}", info.key, info.label, info.status);
        self.results.systems.retain(|s| s.key != info.key);
        self.results.systems.push(info);
        self.save();
    }

    /// An admin-group token minted offline with the shared key (as gatewayctl does).
    fn admin_token(&self) -> String {
        let req = TokenRequest {
            rate_limit_rpm: None,
            subject: "bench-admin".into(),
            kind: TokenKind::User,
            groups: vec!["admin".into()],
            routes: None,
            ttl_seconds: Some(3600),
            description: "benchmark admin".into(),
            metadata: Default::default(),
            registrar: None,
        };
        TokenIssuer::new(&self.cfg).issue(&req, now(), new_token_id().expect("randomness")).expect("admin token").0
    }

    async fn admin(&self, base: &str, admin: &str, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method, format!("{base}/_gateway/{path}")).bearer_auth(admin).header("x-forwarded-proto", "https");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| format!("admin {path}: {e}"))?;
        let status = res.status().as_u16();
        Ok((status, res.json::<Value>().await.unwrap_or(Value::Null)))
    }

    /// Creates the two routes (auth required, group `bench`, affinity on x-session-id) and
    /// issues a recorded token through the admin API, as an operator would. Returns (token id, token).
    async fn provision(&self, base: &str) -> Result<(String, String), String> {
        let admin = self.admin_token();
        for (name, addr) in [(ROUTE_INSTANT, self.instant), (ROUTE_STREAM, self.stream)] {
            let body = RouteJson::new().groups(&[GROUP]).endpoint(name.trim_start_matches("bench-"), format!("http://{addr}")).with("affinity", json!({"header": "x-session-id"})).json();
            let (st, v) = self.admin(base, &admin, Method::PUT, &format!("routes/{name}"), Some(body)).await?;
            if st != 200 && st != 201 {
                return Err(format!("PUT route {name}: {st} {v}"));
            }
        }
        // A public route over the same stand-in: proxied without a token, so without token
        // verification and usage counting (for the CPU profile at the edge).
        let body = RouteJson::new().public().endpoint("instant", format!("http://{}", self.instant)).json();
        let (st, v) = self.admin(base, &admin, Method::PUT, &format!("routes/{ROUTE_PUBLIC}"), Some(body)).await?;
        if st != 200 && st != 201 {
            return Err(format!("PUT route {ROUTE_PUBLIC}: {st} {v}"));
        }
        let (st, v) = self
            .admin(base, &admin, Method::POST, "tokens", Some(json!({"subject": "bench-user", "kind": "user", "groups": [GROUP], "ttl_seconds": 3600, "description": "benchmark load"})))
            .await?;
        if st != 201 {
            return Err(format!("issue token: {st} {v}"));
        }
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let token = v["token"].as_str().unwrap_or_default().to_string();
        Ok((id, token))
    }

    async fn usage(&mut self, system: &str, base: &str, token_id: &str, sent: u64) {
        let admin = self.admin_token();
        // Counting happens after the response (waitUntil at the edge, a spawned task on Lambda).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let counted = match self.admin(base, &admin, Method::GET, "tokens?q=bench-user", None).await {
            Ok((200, v)) => v["tokens"].as_array().and_then(|a| a.iter().find(|t| t["id"] == token_id)).and_then(|t| t["request_count"].as_u64()).unwrap_or(0),
            other => {
                println!("{system}: could not read the token's request count: {other:?}");
                0
            }
        };
        println!("{system:<16} usage: {counted} counted of {sent} proxied");
        self.results.usage.push(UsageCheck { system: system.into(), sent, counted });
        self.save();
    }

    /// The state-store writes the instance behind `base` has sent so far (its own count, shown
    /// to admins on the metrics read).
    async fn store_writes(&self, base: &str) -> Option<u64> {
        let res = self.http.get(format!("{base}/_gateway/metrics")).bearer_auth(self.admin_token()).header("x-forwarded-proto", "https").send().await.ok()?;
        res.headers().get(gateway_core::metrics::INSTANCE_STORE_WRITES_HEADER)?.to_str().ok()?.parse().ok()
    }

    /// Records the writes per proxied request of `system` between two readings.
    fn writes(&mut self, system: &str, requests: u64, before: Option<u64>, after: Option<u64>) {
        match (before, after) {
            (Some(b), Some(a)) => {
                let writes = a.saturating_sub(b);
                println!("{system:<16} state-store writes: {writes} for {requests} proxied requests ({:.4} per request)", writes as f64 / requests.max(1) as f64);
                self.results.store_writes.push(gateway_bench::results::StoreWrites { system: system.into(), requests, writes });
                self.save();
            }
            _ => println!("{system:<16} state-store writes: not readable"),
        }
    }

    fn gateway_via(&self, addr: SocketAddr, token: &str) -> Via {
        let mut v = Via::plain(addr, addr, &format!("/{ROUTE_INSTANT}"), &format!("/{ROUTE_STREAM}"));
        v.headers.push((http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("token header")));
        v.session = true;
        v
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").trim_end_matches('/').parse().expect("a loopback base URL")
}

const ALL: [Scenario; 3] = [Scenario::Models, Scenario::Chat, Scenario::Stream];

async fn run_all(opts: Opts, standin_rt: tokio::runtime::Handle) -> i32 {
    let started = Instant::now();
    let run_dir = opts.out.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).expect("output directory");
    let instant = standin_rt.spawn(StandIn::start(StandInOptions::new("instant"))).await.expect("stand-in task").expect("stand-in instant");
    let stream = standin_rt.spawn(StandIn::start(StandInOptions::new("stream"))).await.expect("stand-in task").expect("stand-in stream");
    println!("stand-ins: instant {} stream {}", instant.url(), stream.url());
    let cfg = Config::from_lookup(&|k| (k == "GATEWAY_SIGNING_KEYS").then(|| KEYS.to_string())).expect("bench config");
    let mut b = Bench {
        results: Results {
            settings: Settings {
                warmup_s: opts.warmup,
                duration_s: opts.duration,
                concurrency: opts.concurrency.clone(),
                chunks: opts.chunks,
                interval_ms: opts.interval_ms,
                timeout_s: opts.timeout_s,
                clk_tck: procs::clk_tck(),
            },
            ..Default::default()
        },
        run_dir,
        instant: instant.addr(),
        stream: stream.addr(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).no_proxy().build().expect("http client"),
        cfg,
        opts,
    };
    let want = |k: &str| b.opts.systems.iter().any(|s| s == k);
    let (w_direct, w_nginx, w_edge, w_edge_mf, w_lambda, w_noop, w_native, w_litellm) =
        (want("direct"), want("nginx"), want("edge"), want("edge-mf"), want("lambda"), want("noop"), want("native"), want("litellm"));

    if w_direct {
        direct(&mut b).await;
    }
    if w_nginx {
        if let Err(e) = nginx(&mut b).await {
            b.system(SystemInfo { key: "nginx".into(), label: "nginx".into(), status: format!("not measured: {e}"), ..Default::default() });
        }
    }
    if w_edge {
        if let Err(e) = edge(&mut b).await {
            b.system(SystemInfo { key: "edge".into(), label: "edge".into(), status: format!("not measured: {e}"), ..Default::default() });
        }
    }
    if w_edge_mf {
        if let Err(e) = edge_miniflare(&mut b).await {
            b.system(SystemInfo { key: "edge-mf".into(), label: "edge on workerd via Miniflare".into(), status: format!("not measured: {e}"), ..Default::default() });
        }
    }
    if w_lambda || w_native {
        if let Err(e) = lambda(&mut b, w_lambda, w_native).await {
            b.system(SystemInfo { key: "lambda-emulator".into(), label: "lambda".into(), status: format!("not measured: {e}"), ..Default::default() });
        }
    }
    if w_noop {
        if let Err(e) = noop(&mut b).await {
            b.system(SystemInfo { key: "lambda-noop".into(), label: "no-op".into(), status: format!("not measured: {e}"), ..Default::default() });
        }
    }
    if w_litellm {
        if let Err(e) = litellm(&mut b).await {
            b.system(SystemInfo { key: "litellm".into(), label: "LiteLLM".into(), status: format!("not measured: {e}"), ..Default::default() });
        }
    }
    b.results.wall_s = started.elapsed().as_secs_f64();
    b.save();
    instant.stop().await;
    stream.stop().await;
    println!("load part: {:.0} s; results in {}", b.results.wall_s, b.opts.out.join("results.json").display());
    0
}

async fn direct(b: &mut Bench) {
    let via = Via::plain(b.instant, b.stream, "", "");
    b.system(SystemInfo { key: "direct".into(), label: "direct to the stand-in (floor)".into(), status: "ok".into(), ..Default::default() });
    for s in ALL {
        for c in b.opts.concurrency.clone() {
            b.point("direct", &via, s, c, &[]).await;
        }
    }
}

fn command_version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

async fn nginx(b: &mut Bench) -> Result<(), String> {
    let t0 = Instant::now();
    let dir = b.run_dir.join("nginx");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = deploy::free_port();
    let d = dir.display();
    let conf = format!(
        r#"# A plain reverse proxy: no auth, HTTP/1.1 and keep-alive to the upstream, no buffering.
daemon off;
master_process on;
worker_processes auto;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream instant {{ server {instant}; keepalive 128; keepalive_requests 1000000; }}
    upstream stream {{ server {stream}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port};
        location /instant/ {{
            proxy_pass http://instant/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
        location /stream/ {{
            proxy_pass http://stream/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#,
        instant = b.instant,
        stream = b.stream,
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-p").arg(&dir).arg("-e").arg(dir.join("error.log")).arg("-c").arg(&conf_path);
    let mut p = Proc::spawn("nginx", cmd, &dir.join("stdout.log"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::task::block_in_place(|| procs::wait_port(addr, Duration::from_secs(10)))?;
    p.check_alive()?;
    let via = Via::plain(addr, addr, "/instant", "/stream");
    b.until_ready(&via, &ALL, Duration::from_secs(10)).await?;
    let version = command_version("nginx", &["-v"]);
    b.system(SystemInfo {
        key: "nginx".into(),
        label: "nginx reverse proxy (no auth)".into(),
        status: "ok".into(),
        startup_s: t0.elapsed().as_secs_f64(),
        version,
        notes: vec!["worker_processes auto (2), proxy_http_version 1.1, proxy_buffering off, upstream keepalive 128, access log on".into()],
    });
    let cpu = vec![("nginx".to_string(), CpuSet::Group(p.pid() as i32))];
    for s in ALL {
        for c in b.opts.concurrency.clone() {
            b.point("nginx", &via, s, c, &cpu).await;
        }
    }
    drop(p);
    Ok(())
}

async fn edge(b: &mut Bench) -> Result<(), String> {
    let t0 = Instant::now();
    let vars = vec![
        ("GATEWAY_SIGNING_KEYS", KEYS.to_string()),
        ("GATEWAY_ALLOW_HTTP", "1".to_string()),
        ("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "1".to_string()),
        ("GATEWAY_CACHE_SECONDS", "5".to_string()),
    ];
    let running = tokio::task::spawn_blocking(move || deploy::start_edge(&vars, &[], "bench")).await.map_err(|e| format!("wrangler dev: {e}"))?;
    let dev_addr = addr_of(&running.base);
    let port = dev_addr.port().to_string();
    // wrangler (node) leads the process group. It runs two workerd processes: one serves our
    // Worker (with an inspector attached, for logs and devtools), the other is wrangler's dev
    // proxy in front of it (and relays the inspector's messages to node).
    let leader = procs::find_by_cmdline(&["--port", &port]).ok_or("wrangler's process not found")?;
    let pgrp = procs::stat(leader).ok_or("wrangler's process vanished")?.pgrp;
    let user_workerd: Vec<i32> = procs::group(pgrp).iter().filter(|s| s.comm == "workerd" && procs::cmdline(s.pid).iter().any(|a| a.starts_with("--inspector-addr"))).map(|s| s.pid).collect();
    let Some(&worker_pid) = user_workerd.first() else {
        return Err(format!("no workerd process serving the Worker in wrangler's group {pgrp}"));
    };
    // The Worker's own workerd socket: the listening port that answers our healthz.
    let mut entry = None;
    for p in procs::listening_ports(worker_pid) {
        if let Ok(r) = b.http.get(format!("http://127.0.0.1:{p}/_gateway/healthz")).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() && r.text().await.unwrap_or_default().contains("\"status\"") {
                entry = Some(p);
                break;
            }
        }
    }
    let entry: SocketAddr = ([127, 0, 0, 1], entry.ok_or("the Worker's workerd socket was not found")?).into();
    let (token_id, token) = b.provision(&running.base).await?;
    let writes_before = b.store_writes(&running.base).await;
    let via = b.gateway_via(entry, &token);
    let via_dev = b.gateway_via(dev_addr, &token);
    b.until_ready(&via, &ALL, Duration::from_secs(30)).await?;
    b.until_ready(&via_dev, &ALL, Duration::from_secs(30)).await?;
    let version = command_version(&deploy::repo_root().join("node_modules/.bin/wrangler").display().to_string(), &["--version"]);
    let startup = t0.elapsed().as_secs_f64();
    b.system(SystemInfo {
        key: "edge".into(),
        label: "edge gateway on workerd (started by wrangler dev; requests to workerd's own socket)".into(),
        status: "ok".into(),
        startup_s: startup,
        version: format!("wrangler {version}"),
        notes: vec![
            format!("wrangler dev started by gateway_tests::deploy::start_edge; requests sent to the socket of the workerd that runs the Worker (127.0.0.1:{}), past wrangler's dev proxy", entry.port()),
            "token issued through POST /_gateway/tokens (recorded; usage counted in the GatewayState Durable Object); routes created with PUT /_gateway/routes; auth, RBAC, affinity on x-session-id".into(),
        ],
    });
    b.system(SystemInfo {
        key: "edge-dev".into(),
        label: "edge gateway through wrangler dev's own port (dev proxy in front)".into(),
        status: "ok".into(),
        startup_s: startup,
        version: format!("wrangler {version}"),
        notes: vec![format!("{}: wrangler's dev proxy (a second workerd) forwards to the Worker's workerd; present only under wrangler dev", running.base)],
    });
    let worker_cpu = ("workerd".to_string(), CpuSet::GroupCommArg { pgrp, comm: "workerd".into(), arg_prefix: "--inspector-addr".into(), present: true });
    let proxy_cpu = ("dev-proxy workerd".to_string(), CpuSet::GroupCommArg { pgrp, comm: "workerd".into(), arg_prefix: "--inspector-addr".into(), present: false });
    let node_cpu = ("wrangler node".to_string(), CpuSet::GroupComm(pgrp, "node".into()));
    let cpu = vec![worker_cpu.clone(), proxy_cpu.clone(), node_cpu.clone()];
    let mut sent = 0;
    for s in ALL {
        for c in b.opts.concurrency.clone() {
            let p = b.point("edge", &via, s, c, &cpu).await;
            sent += p.sent;
        }
    }
    // Through wrangler's dev proxy: one concurrency, for comparison (it exists only under wrangler dev).
    let dev_c = if b.opts.concurrency.contains(&16) { 16 } else { b.opts.concurrency[0] };
    for s in ALL {
        let p = b.point("edge-dev", &via_dev, s, dev_c, &cpu).await;
        sent += p.sent;
    }
    sent += edge_cpu_runs(b, "edge", entry, &via, &cpu).await;
    // Samples wait at most about a second in the isolate's batch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_after = b.store_writes(&running.base).await;
    b.writes("edge", sent, writes_before, writes_after);
    b.usage("edge", &running.base, &token_id, sent).await;
    drop(running);
    Ok(())
}

/// workerd's CPU around a known number of requests, after the isolate is warm: healthz
/// (no store, no upstream, no log line) is the runtime's own floor per request; a refused
/// request adds the route lookup and one log line. Returns the proxied requests sent.
async fn edge_cpu_runs(b: &mut Bench, system: &str, entry: SocketAddr, via: &Via, cpu: &[(String, CpuSet)]) -> u64 {
    let cpu_c = 16.min(*b.opts.concurrency.iter().max().unwrap_or(&16));
    let plain = |path: String, expect: Expect| Arc::new(Target { addr: entry, method: Method::GET, path, headers: Vec::new(), body: Bytes::new(), session: false, expect });
    b.cpu_run(system, "healthz", plain("/_gateway/healthz".into(), Expect::Contains("\"status\"")), cpu_c, 3000, cpu).await;
    b.cpu_run(system, "401 (no token)", plain(format!("/{ROUTE_INSTANT}/v1/models"), Expect::Status(401)), cpu_c, 3000, cpu).await;
    b.cpu_run(system, "models, public route", plain(format!("/{ROUTE_PUBLIC}/v1/models"), Expect::Contains("stand-in")), cpu_c, 3000, cpu).await;
    let mut sent = 0;
    for (s, n) in [(Scenario::Models, 3000), (Scenario::Chat, 3000), (Scenario::Stream, 600)] {
        let t = b.target(via, s);
        b.cpu_run(system, s.name(), t, cpu_c, n, cpu).await;
        sent += n;
    }
    sent
}

/// The same bundle on workerd through Miniflare's API (bench/edge-miniflare.mjs): no wrangler
/// dev proxy, no inspector relaying console logs.
async fn edge_miniflare(b: &mut Bench) -> Result<(), String> {
    let t0 = Instant::now();
    let port = deploy::free_port();
    let vars = json!({"GATEWAY_SIGNING_KEYS": KEYS, "GATEWAY_ALLOW_HTTP": "1", "GATEWAY_ALLOW_LOCAL_UPSTREAMS": "1", "GATEWAY_CACHE_SECONDS": "5"}).to_string();
    let mut cmd = Command::new("node");
    cmd.current_dir(deploy::repo_root()).arg("bench/edge-miniflare.mjs").arg(port.to_string()).arg(vars);
    let mut p = Proc::spawn("node edge-miniflare.mjs", cmd, &b.run_dir.join("edge-miniflare.log"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::task::block_in_place(|| procs::wait_port(addr, Duration::from_secs(60)))?;
    p.check_alive()?;
    let base = format!("http://{addr}");
    let (token_id, token) = b.provision(&base).await?;
    let writes_before = b.store_writes(&base).await;
    let via = b.gateway_via(addr, &token);
    b.until_ready(&via, &ALL, Duration::from_secs(30)).await?;
    b.system(SystemInfo {
        key: "edge-mf".into(),
        label: "edge gateway on workerd through Miniflare's API (no wrangler, no inspector)".into(),
        status: "ok".into(),
        startup_s: t0.elapsed().as_secs_f64(),
        version: String::new(),
        notes: vec!["bench/edge-miniflare.mjs: the same bundle and bindings (KV, GatewayState and RateLimiter Durable Objects on SQLite, in memory), console logs to workerd's stdout".into()],
    });
    let pgrp = p.pid() as i32;
    let cpu = vec![("workerd".to_string(), CpuSet::GroupComm(pgrp, "workerd".into())), ("node".to_string(), CpuSet::GroupComm(pgrp, "node".into()))];
    let mut sent = 0;
    for s in ALL {
        for c in b.opts.concurrency.clone() {
            sent += b.point("edge-mf", &via, s, c, &cpu).await.sent;
        }
    }
    sent += edge_cpu_runs(b, "edge-mf", addr, &via, &cpu).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_after = b.store_writes(&base).await;
    b.writes("edge-mf", sent, writes_before, writes_after);
    b.usage("edge-mf", &base, &token_id, sent).await;
    drop(p);
    Ok(())
}

/// Starts more instances of a Lambda function against the emulator at `port`
/// (the emulator hands each invocation to whichever instance asks for the next one).
fn spawn_instance(bin: &Path, port: u16, env: &[(String, String)], log: &Path, name: &str) -> Result<Proc, String> {
    let mut cmd = Command::new(bin);
    cmd.env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(name, cmd, log)
}

fn pids_of(ps: &[Proc], extra: &[i32]) -> CpuSet {
    let mut v: Vec<i32> = ps.iter().map(|p| p.pid() as i32).collect();
    v.extend_from_slice(extra);
    CpuSet::Pids(v)
}

async fn lambda(b: &mut Bench, w_lambda: bool, w_native: bool) -> Result<(), String> {
    let t0 = Instant::now();
    let bin = std::env::var_os("GATEWAY_LAMBDA_BIN").map(PathBuf::from).unwrap_or_else(|| deploy::target_dir().join("release/gateway-lambda"));
    if !bin.exists() {
        return Err(format!("{} is missing (cargo build --release -p gateway-lambda)", bin.display()));
    }
    std::env::set_var("GATEWAY_LAMBDA_BIN", &bin);
    let vars: Vec<(&str, String)> = vec![
        ("GATEWAY_SIGNING_KEYS", KEYS.to_string()),
        ("GATEWAY_ALLOW_HTTP", "1".to_string()),
        ("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "1".to_string()),
        ("GATEWAY_CACHE_SECONDS", "5".to_string()),
    ];
    let d = deploy::start_lambda(&vars, &[], "bench").await;
    let emu_addr = addr_of(&d.gateway.base);
    let moto_base = d._dynamo.base.clone();
    let moto_port = addr_of(&moto_base).port().to_string();
    let emu_port = emu_addr.port().to_string();
    let emu_pgrp = procs::find_by_cmdline(&["--invoke-port", &emu_port]).and_then(procs::stat).map(|s| s.pgrp).ok_or("cargo lambda's process not found")?;
    let moto_pgrp = procs::find_by_cmdline(&["-p", &moto_port]).and_then(procs::stat).map(|s| s.pgrp).ok_or("moto's process not found")?;
    let canonical = std::fs::canonicalize(&bin).map_err(|e| e.to_string())?;
    let rt_env = format!("AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:{emu_port}/.rt");
    let first: Vec<i32> = procs::all().into_iter().map(|s| s.pid).filter(|&pid| procs::exe(pid).as_deref() == Some(canonical.as_path()) && procs::environ_has(pid, &rt_env)).collect();
    let (token_id, token) = b.provision(&d.gateway.base).await?;
    let mut sent = 0;
    let fn_env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain([
            ("GATEWAY_TABLE".to_string(), "gateway".to_string()),
            ("AWS_ENDPOINT_URL".to_string(), moto_base.clone()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
        ])
        .collect();
    let moto_cpu = ("moto".to_string(), CpuSet::Group(moto_pgrp));

    if w_lambda {
        let via = b.gateway_via(emu_addr, &token);
        b.until_ready(&via, &ALL, Duration::from_secs(30)).await?;
        b.system(SystemInfo {
            key: "lambda-emulator".into(),
            label: "Lambda gateway under cargo lambda watch (emulator), DynamoDB on moto".into(),
            status: "ok".into(),
            startup_s: t0.elapsed().as_secs_f64(),
            version: command_version("cargo", &["lambda", "--version"]),
            notes: vec![
                format!("release build {}; one function process per concurrent request (as Lambda runs one instance per concurrent invocation)", bin.display()),
                "route, lease and revocation reads cached per instance for GATEWAY_CACHE_SECONDS (5 s), so most requests read nothing from DynamoDB (moto); usage counted with an UpdateItem after the response".into(),
            ],
        });
        let mut extra: Vec<Proc> = Vec::new();
        let log_dir = b.run_dir.join("lambda");
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        for s in ALL {
            for c in b.opts.concurrency.clone() {
                while extra.len() + first.len() < c {
                    let i = extra.len();
                    extra.push(spawn_instance(&bin, emu_addr.port(), &fn_env, &log_dir.join(format!("function-{i}.log")), "gateway-lambda")?);
                }
                // Let new instances reach the emulator's `next` before the load starts.
                tokio::time::sleep(Duration::from_millis(if c > 1 { 1000 } else { 100 })).await;
                let cpu = vec![("function".to_string(), pids_of(&extra, &first)), ("emulator".to_string(), CpuSet::Group(emu_pgrp)), moto_cpu.clone()];
                let p = b.point("lambda-emulator", &via, s, c, &cpu).await;
                if let Some(last) = b.results.points.last_mut() {
                    last.instances = extra.len() + first.len();
                }
                sent += p.sent;
            }
        }
        drop(extra);
    }

    if w_native {
        let t1 = Instant::now();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let native_bin = exe.parent().ok_or("no exe dir")?.join("bench-lambda-native");
        let port = deploy::free_port();
        let mut cmd = Command::new(&native_bin);
        cmd.arg("--port").arg(port.to_string());
        for (k, v) in &fn_env {
            cmd.env(k, v);
        }
        let mut p = Proc::spawn("bench-lambda-native", cmd, &b.run_dir.join("lambda-native.log"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        tokio::task::block_in_place(|| procs::wait_port(addr, Duration::from_secs(20)))?;
        p.check_alive()?;
        let via = b.gateway_via(addr, &token);
        b.until_ready(&via, &ALL, Duration::from_secs(30)).await?;
        b.system(SystemInfo {
            key: "lambda-native".into(),
            label: "Lambda handler served natively (hyper), DynamoDB on moto".into(),
            status: "ok".into(),
            startup_s: t1.elapsed().as_secs_f64(),
            version: String::new(),
            notes: vec![
                format!("{} (release): gateway_lambda::handler::handle with App::new(cfg, dynamo, table), one process, tokio multi-thread", native_bin.display()),
                "same moto, table, routes and token as the emulator rows".into(),
            ],
        });
        let cpu = vec![("native".to_string(), CpuSet::Pids(vec![p.pid() as i32])), moto_cpu.clone()];
        let native_base = format!("http://{addr}");
        let writes_before = b.store_writes(&native_base).await;
        let mut native_sent = 0;
        for s in ALL {
            for c in b.opts.concurrency.clone() {
                let pt = b.point("lambda-native", &via, s, c, &cpu).await;
                native_sent += pt.sent;
            }
        }
        sent += native_sent;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let writes_after = b.store_writes(&native_base).await;
        b.writes("lambda-native", native_sent, writes_before, writes_after);
        drop(p);
    }
    b.usage("lambda", &d.gateway.base, &token_id, sent).await;
    drop(d);
    Ok(())
}

async fn noop(b: &mut Bench) -> Result<(), String> {
    let t0 = Instant::now();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.parent().ok_or("no exe dir")?.join("bench-noop-lambda");
    let dir = b.run_dir.join("noop");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = deploy::free_port();
    // The same emulator setup as deploy::start_lambda: Runtime API and Function URL only.
    let mut watch = Command::new("cargo");
    watch.current_dir(deploy::repo_root()).args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()]);
    let mut emu = Proc::spawn("cargo lambda watch", watch, &dir.join("cargo-lambda.log"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::task::block_in_place(|| procs::wait_port(addr, Duration::from_secs(60)))?;
    emu.check_alive()?;
    let mut fns: Vec<Proc> = vec![spawn_instance(&bin, port, &[], &dir.join("function-0.log"), "bench-noop-lambda")?];
    let mut via = Via::plain(addr, addr, "", "");
    via.noop = true;
    let scenarios = [Scenario::Models, Scenario::Chat];
    b.until_ready(&via, &scenarios, Duration::from_secs(30)).await?;
    b.system(SystemInfo {
        key: "lambda-noop".into(),
        label: "no-op function under the same emulator (emulator overhead)".into(),
        status: "ok".into(),
        startup_s: t0.elapsed().as_secs_f64(),
        version: command_version("cargo", &["lambda", "--version"]),
        notes: vec!["bench-noop-lambda: lambda_http streaming function answering 200 \"ok\" at once; one process per concurrent request".into()],
    });
    for s in scenarios {
        for c in b.opts.concurrency.clone() {
            while fns.len() < c {
                let i = fns.len();
                fns.push(spawn_instance(&bin, port, &[], &dir.join(format!("function-{i}.log")), "bench-noop-lambda")?);
            }
            tokio::time::sleep(Duration::from_millis(if c > 1 { 1000 } else { 100 })).await;
            let cpu = vec![("function".to_string(), pids_of(&fns, &[])), ("emulator".to_string(), CpuSet::Group(emu.pid() as i32))];
            b.point("lambda-noop", &via, s, c, &cpu).await;
            if let Some(last) = b.results.points.last_mut() {
                last.instances = fns.len();
            }
        }
    }
    drop(fns);
    drop(emu);
    Ok(())
}

async fn litellm(b: &mut Bench) -> Result<(), String> {
    let t0 = Instant::now();
    let bin = b.opts.litellm_venv.join("bin/litellm");
    if !bin.exists() {
        return Err(format!("{} is missing (scripts/bench.sh installs litellm[proxy] there)", bin.display()));
    }
    let dir = b.run_dir.join("litellm");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = deploy::free_port();
    let chunks = b.opts.chunks;
    let interval = b.opts.interval_ms;
    // LiteLLM does not pass the client's headers upstream; the streaming model sets the
    // stand-in's chunk count and spacing itself.
    let config = format!(
        r#"model_list:
  - model_name: stand-in
    litellm_params:
      model: openai/stand-in
      api_base: http://{instant}/v1
      api_key: x
  - model_name: stand-in-stream
    litellm_params:
      model: openai/stand-in
      api_base: http://{stream}/v1
      api_key: x
      extra_headers:
        {CHUNKS_HEADER}: "{chunks}"
        {INTERVAL_HEADER}: "{interval}"
general_settings:
  master_key: {LITELLM_MASTER_KEY}
"#,
        instant = b.instant,
        stream = b.stream,
    );
    let cfg_path = dir.join("config.yaml");
    std::fs::write(&cfg_path, config).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--config").arg(&cfg_path).args(["--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "2"]);
    // Offline: the model cost map ships with the package; nothing is fetched.
    cmd.env("LITELLM_LOCAL_MODEL_COST_MAP", "True").env("LITELLM_LOG", "ERROR").env("NO_PROXY", "*").env_remove("HTTP_PROXY").env_remove("HTTPS_PROXY");
    let mut p = Proc::spawn("litellm", cmd, &dir.join("litellm.log"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        p.check_alive()?;
        if let Ok(r) = b.http.get(format!("http://{addr}/health/liveliness")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("LiteLLM not ready in 240 s:\n{}", procs::tail(&p.log, 30)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut via = Via::plain(addr, addr, "", "");
    via.headers.push((http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {LITELLM_MASTER_KEY}")).expect("header")));
    via.stream_model = "stand-in-stream";
    let scenarios = [Scenario::Chat, Scenario::Stream];
    b.until_ready(&via, &scenarios, Duration::from_secs(60)).await?;
    let version = String::from_utf8_lossy(&Command::new(b.opts.litellm_venv.join("bin/python")).args(["-c", "import importlib.metadata as m; print(m.version('litellm'))"]).output().map(|o| o.stdout).unwrap_or_default()).trim().to_string();
    b.system(SystemInfo {
        key: "litellm".into(),
        label: "LiteLLM proxy (master key)".into(),
        status: "ok".into(),
        startup_s: t0.elapsed().as_secs_f64(),
        version: format!("litellm {version}"),
        notes: vec!["--num_workers 2 (one per core), master key auth, no database; model openai/stand-in at the stand-in's /v1".into()],
    });
    let cpu = vec![("litellm".to_string(), CpuSet::Group(p.pid() as i32))];
    for s in scenarios {
        for c in b.opts.concurrency.clone() {
            b.point("litellm", &via, s, c, &cpu).await;
        }
    }
    drop(p);
    Ok(())
}

/// `gateway-bench load URL ...`: the load generator on its own, for ad-hoc measurements.
fn adhoc_load(args: &[String]) -> i32 {
    let mut url = None;
    let (mut c, mut secs, mut count) = (1usize, 5.0f64, None::<u64>);
    let mut headers = Vec::new();
    let mut method = Method::GET;
    let mut body = Bytes::new();
    let mut expect = Expect::Contains("");
    let mut cpu_pids: Vec<i32> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "-c" => c = v().parse().unwrap_or(1),
            "-d" => secs = v().parse().unwrap_or(5.0),
            "-n" => count = v().parse().ok(),
            "-H" => {
                let h = v();
                if let Some((k, val)) = h.split_once(':') {
                    if let (Ok(k), Ok(val)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(val.trim())) {
                        headers.push((k, val));
                    }
                }
            }
            "-X" => method = v().parse().unwrap_or(Method::GET),
            "--body" => body = Bytes::from(v()),
            "--expect" => expect = Expect::Contains(Box::leak(v().into_boxed_str())),
            "--stream" => expect = Expect::Stream { chunks: v().parse().unwrap_or(10) },
            "--cpu-pid" => cpu_pids.extend(v().parse::<i32>().ok()),
            u if url.is_none() => url = Some(u.to_string()),
            other => {
                eprintln!("unknown argument {other}");
                return 2;
            }
        }
    }
    let Some(url) = url else {
        eprintln!("gateway-bench load: a URL is required");
        return 2;
    };
    let rest = url.trim_start_matches("http://");
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = match hostport.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("gateway-bench load: the URL must be http://IP:PORT/path");
            return 2;
        }
    };
    let target = Arc::new(Target { addr, method, path: if path.is_empty() { "/".into() } else { path.into() }, headers, body, session: true, expect });
    let amount = match count {
        Some(n) => Amount::Counted { total: n },
        None => Amount::Timed { warmup: Duration::from_secs(1), measure: Duration::from_secs_f64(secs) },
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let set = CpuSet::Pids(cpu_pids.iter().flat_map(|&p| procs::tree(p)).collect());
    let before = set.ticks();
    let o = rt.block_on(load::run(target, c, amount, Duration::from_secs(30)));
    let after = set.ticks();
    let p = Point::from_outcome("adhoc", "adhoc", &o, 20);
    println!("{}", serde_json::to_string_pretty(&p).expect("json"));
    if !cpu_pids.is_empty() {
        let ms = (after - before) as f64 * 1000.0 / procs::clk_tck() as f64;
        println!("cpu of {:?} and children: {ms:.0} ms over the run, {:.3} ms per sent request", cpu_pids, ms / o.sent.max(1) as f64);
    }
    0
}
