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
    /// `GATEWAY_DEPLOYMENT=edge|lambda|all` (default all): the same cases run against each.
    pub fn from_env() -> Result<Vec<Deployment>, String> {
        match std::env::var("GATEWAY_DEPLOYMENT").as_deref() {
            Err(_) | Ok("all") | Ok("") => Ok(vec![Deployment::Edge, Deployment::Lambda]),
            Ok("edge") => Ok(vec![Deployment::Edge]),
            Ok("lambda") => Ok(vec![Deployment::Lambda]),
            Ok(other) => Err(format!("GATEWAY_DEPLOYMENT={other}: expected edge, lambda or all")),
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
    /// The gateway's store, for writes that do not go through the gateway (Terraform's).
    pub backing: Option<Backing>,
}

/// Where a deployment keeps its state.
#[derive(Debug, Clone)]
pub enum Backing {
    /// Workers KV under `wrangler dev`, persisted in this directory.
    Kv { state: PathBuf },
    /// DynamoDB on moto.
    Dynamo { endpoint: String, table: String },
}

impl Backing {
    /// Writes a route as `infra/modules/routes` does: the KV entry `route:{name}`, or the
    /// DynamoDB item `route#{name}`/`def`. `None` removes it, as `terraform destroy` does.
    pub async fn terraform_write(&self, name: &str, json: Option<&str>) -> Result<(), String> {
        self.write(&format!("route:{name}"), (&format!("route#{name}"), "def", "route"), json).await
    }

    /// Writes a token budget as `infra/modules/routes` does (`budgets`): `budget:{key}` in KV,
    /// `budgets`/`{key}` in DynamoDB.
    pub async fn terraform_budget(&self, key: &str, json: Option<&str>) -> Result<(), String> {
        self.write(&format!("budget:{key}"), ("budgets", key, "budget"), json).await
    }

    /// Writes model routing's index entry as `infra/modules/routes` does: `model:{model}` → route
    /// name in KV, `models`/`{model}` with `route_name` in DynamoDB.
    pub async fn terraform_model(&self, model: &str, route: Option<&str>) -> Result<(), String> {
        self.write(&format!("model:{model}"), ("models", model, "route_name"), route).await
    }

    /// One Terraform-written value: the KV key, or the DynamoDB item (partition, sort key,
    /// attribute holding the JSON).
    async fn write(&self, kv_key: &str, item: (&str, &str, &str), json: Option<&str>) -> Result<(), String> {
        match self {
            Backing::Kv { state } => {
                let (state, key, json) = (state.clone(), kv_key.to_string(), json.map(str::to_string));
                tokio::task::spawn_blocking(move || {
                    // Tried up to 3 times, as Terraform's provider retries a 5xx: the local KV
                    // store, shared with the running `wrangler dev`, now and then answers 500
                    // under load. A put or delete is idempotent.
                    let mut last = String::new();
                    for attempt in 0..3 {
                        if attempt > 0 {
                            std::thread::sleep(std::time::Duration::from_millis(500));
                        }
                        let mut cmd = Command::new(repo_root().join("node_modules/.bin/wrangler"));
                        cmd.current_dir(repo_root());
                        match &json {
                            Some(j) => cmd.args(["kv", "key", "put", &key, j]),
                            None => cmd.args(["kv", "key", "delete", &key]),
                        };
                        let out = cmd
                            .args(["--binding", "GATEWAY_KV", "--env", "contract", "--local", "--persist-to"])
                            .arg(&state)
                            .env("GATEWAY_EDGE_PREBUILT", "1")
                            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
                            .env("WRANGLER_SEND_METRICS", "false")
                            .stdin(Stdio::null())
                            .output()
                            .map_err(|e| format!("wrangler kv: {e}"))?;
                        if out.status.success() {
                            return Ok(());
                        }
                        last = format!("wrangler kv {key}: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    Err(last)
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Backing::Dynamo { endpoint, table } => {
                use aws_sdk_dynamodb::types::AttributeValue::S;
                let client = dynamo_client(endpoint).await;
                let (entity, sort, attr) = item;
                let key = [("entity", S(entity.to_string())), ("item", S(sort.to_string()))];
                match json {
                    Some(j) => {
                        let mut put = client.put_item().table_name(table).item(attr, S(j.to_string()));
                        for (k, v) in key {
                            put = put.item(k, v);
                        }
                        put.send().await.map(|_| ()).map_err(|e| format!("put item: {e:?}"))
                    }
                    None => {
                        let mut del = client.delete_item().table_name(table);
                        for (k, v) in key {
                            del = del.key(k, v);
                        }
                        del.send().await.map(|_| ()).map_err(|e| format!("delete item: {e:?}"))
                    }
                }
            }
        }
    }
}

/// A DynamoDB client for moto at `endpoint`.
pub async fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "contract"))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

impl Running {
    /// The process id of the started command (wrangler, cargo lambda, moto or the function),
    /// the leader of its process group.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the started command's whole process group.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg("--").arg(format!("-{}", self.child.id())).status().map_err(|e| format!("kill -{signal}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} -{}: {status}", self.child.id()))
        }
    }
}

impl LambdaDeployment {
    /// Pauses this deployment's DynamoDB (its own moto) with SIGSTOP: a partition that loses
    /// no data. Resumed (SIGCONT) by [`PausedStore::resume`], or when the guard is dropped,
    /// so a failing or timed-out case never leaves it stopped.
    pub fn pause_store(&self) -> Result<PausedStore<'_>, String> {
        self._dynamo.signal("STOP")?;
        Ok(PausedStore { store: &self._dynamo, resumed: false })
    }
}

/// A paused store ([`LambdaDeployment::pause_store`]); resumed at the latest when dropped.
pub struct PausedStore<'a> {
    store: &'a Running,
    resumed: bool,
}

impl PausedStore<'_> {
    /// Resumes the store (SIGCONT).
    pub fn resume(mut self) -> Result<(), String> {
        self.resumed = true;
        self.store.signal("CONT")
    }
}

impl Drop for PausedStore<'_> {
    fn drop(&mut self) {
        if !self.resumed {
            let _ = self.store.signal("CONT");
        }
    }
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
/// `tag` keeps the files of several deployments of one run apart.
pub fn start_edge(vars: &[(&str, String)], seeds: &[Seed], tag: &str) -> Running {
    let root = repo_root();
    let dir = std::env::temp_dir().join(format!("gw-contract-{}-{tag}", std::process::id()));
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
            .args(["kv", "key", "put", &format!("route:{}", seed.name), &seed.json, "--binding", "GATEWAY_KV", "--env", "contract", "--local", "--persist-to"])
            .arg(&state)
            .env("GATEWAY_EDGE_PREBUILT", "1")
            // Miniflare would otherwise try to fetch the `Request.cf` object from workers.cloudflare.com.
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
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
        // The `contract` environment adds a service binding to a stand-in VPC service (tests/tunnel).
        .args(["dev", "--env", "contract", "-c", "wrangler.toml", "-c", "tests/tunnel/wrangler.toml"])
        .args(["--local", "--ip", "127.0.0.1", "--show-interactive-dev-session=false", "--log-level", "log", "--test-scheduled"])
        .args(["--port", &port.to_string(), "--inspector-port", &free_port().to_string()])
        .arg("--persist-to")
        .arg(&state)
        .arg("--env-file")
        .arg(&env_file)
        .env("GATEWAY_EDGE_PREBUILT", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log fd"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("start wrangler dev");
    let mut running = Running { base: format!("http://127.0.0.1:{port}"), child, log, backing: Some(Backing::Kv { state: state.clone() }) };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("wrangler dev exited with {status}:\n{}", tail(&running.log));
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /_gateway/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 16];
            // 200, or the gateway's own answer to plain HTTP when that is not allowed (308, 403).
            if std::io::Read::read(&mut s, &mut buf).is_ok_and(|n| n >= 12 && matches!(&buf[9..12], b"200" | b"308" | b"403")) {
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

/// Waits until `GET {base}/_gateway/healthz` answers 200, or the child exits, or `limit` passes.
fn wait_healthy(running: &mut Running, port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!("exited with {status}:\n{}", tail(&running.log)));
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            // As a Function URL does, say the client came over HTTPS.
            let _ = s.write_all(b"GET /_gateway/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n");
            // Read to the end: hanging up early would break the function's streamed response.
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut buf);
            // 200, or 403 from a gateway that takes calls only through its front door.
            if buf.len() >= 12 && matches!(&buf[9..12], b"200" | b"403") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("not ready in {limit:?}:\n{}", tail(&running.log)));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn spawn_logged(mut cmd: Command, log: PathBuf) -> Child {
    let out = std::fs::File::create(&log).expect("log file");
    cmd.stdin(Stdio::null()).stdout(out.try_clone().expect("log fd")).stderr(out).process_group(0).spawn().expect("spawn")
}

/// The Lambda deployment: moto as DynamoDB, the table created as Terraform declares it,
/// `seeds` written as Terraform writes route items, then `cargo lambda watch`.
pub struct LambdaDeployment {
    pub gateway: Running,
    pub _emulator: Running,
    pub _dynamo: Running,
}

/// The Cargo target directory (`CARGO_TARGET_DIR` or `target/` at the repository root).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

pub async fn start_lambda(vars: &[(&str, String)], seeds: &[Seed], tag: &str) -> LambdaDeployment {
    start_lambda_with_secrets(vars, seeds, tag, &[]).await
}

/// [`start_lambda`] with `secrets` in a Secrets Manager secret (on moto) that the function
/// reads at its cold start (`GATEWAY_SECRETS_ARN`), as `infra/modules/lambda` deploys it.
pub async fn start_lambda_with_secrets(vars: &[(&str, String)], seeds: &[Seed], tag: &str, secrets: &[(&str, String)]) -> LambdaDeployment {
    let root = repo_root();
    let dir = std::env::temp_dir().join(format!("gw-contract-lambda-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    let moto_port = free_port();
    let mut moto = Command::new("moto_server");
    moto.args(["-H", "127.0.0.1", "-p", &moto_port.to_string()]);
    let moto_log = dir.join("moto.log");
    let mut dynamo = Running { base: format!("http://127.0.0.1:{moto_port}"), child: spawn_logged(moto, moto_log.clone()), log: moto_log, backing: None };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", moto_port)).is_err() {
        if Instant::now() > deadline || matches!(dynamo.child.try_wait(), Ok(Some(_))) {
            panic!("moto_server did not start:\n{}", tail(&dynamo.log));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let table = "gateway";
    let client = dynamo_client(&dynamo.base).await;
    let secrets_arn = if secrets.is_empty() {
        None
    } else {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&dynamo.base)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "contract"))
            .load()
            .await;
        let value: serde_json::Map<String, serde_json::Value> = secrets.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect();
        let created = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(format!("ai-gateway/{tag}"))
            .secret_string(serde_json::Value::Object(value).to_string())
            .send()
            .await
            .expect("create the secret");
        Some(created.arn().expect("secret arn").to_string())
    };
    gateway_lambda::table::create_table(&client, table).await.expect("create table");
    for seed in seeds {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        client
            .put_item()
            .table_name(table)
            .item("entity", S(format!("route#{}", seed.name)))
            .item("item", S("def".into()))
            .item("route", S(seed.json.clone()))
            .send()
            .await
            .expect("seed route item");
    }

    // `cargo lambda watch` only emulates the Runtime API and the Function URL here; the function
    // is the binary `cargo test` built in this same invocation (no second build with other features).
    let port = free_port();
    let mut watch = Command::new("cargo");
    watch.current_dir(&root).args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()]);
    let watch_log = dir.join("cargo-lambda.log");
    let mut emulator = Running { base: String::new(), child: spawn_logged(watch, watch_log.clone()), log: watch_log, backing: None };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || matches!(emulator.child.try_wait(), Ok(Some(_))) {
            panic!("cargo lambda watch did not start:\n{}", tail(&emulator.log));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // GATEWAY_LAMBDA_BIN picks another build (the benchmarks use the release one).
    let bin = std::env::var_os("GATEWAY_LAMBDA_BIN").map(PathBuf::from).unwrap_or_else(|| target_dir().join("debug").join("gateway-lambda"));
    assert!(bin.exists(), "{} is missing: run the suite through `cargo test` (it builds the Lambda binary) or `cargo build -p gateway-lambda`", bin.display());
    let mut function = Command::new(&bin);
    function
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("GATEWAY_TABLE", table)
        .env("AWS_ENDPOINT_URL", &dynamo.base)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    for (k, v) in vars {
        function.env(k, v);
    }
    if let Some(arn) = &secrets_arn {
        function.env("GATEWAY_SECRETS_ARN", arn);
    }
    let log = dir.join("function.log");
    let backing = Some(Backing::Dynamo { endpoint: dynamo.base.clone(), table: table.to_string() });
    let mut gateway = Running { base: format!("http://127.0.0.1:{port}"), child: spawn_logged(function, log.clone()), log, backing };
    let ready = tokio::task::block_in_place(|| wait_healthy(&mut gateway, port, Duration::from_secs(60)));
    if let Err(e) = ready {
        drop(gateway);
        drop(emulator);
        drop(dynamo);
        panic!("the Lambda function: {e}");
    }
    LambdaDeployment { gateway, _emulator: emulator, _dynamo: dynamo }
}
