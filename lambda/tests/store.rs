//! The DynamoDB store against a local DynamoDB (moto): conditional writes, expiry at
//! read time, atomic counters under concurrency, metric counters read back as the
//! reference store reads them, health records, down sets, probes and JWKS fetches (on
//! loopback), and service accounts.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use gateway_core::health::Health;
use gateway_core::metrics::{self, RequestSample};
use gateway_core::probe::ProbeTarget;
use gateway_core::route::{Endpoint, Route};
use gateway_core::store::{AdminStore, AuditEntry, MemoryStore, MetricsSink, RouteSource, ServiceAccount, TokenRecord};
use gateway_core::Error;
use gateway_lambda::store::DynamoStore;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.0.id())).status();
        let _ = self.0.wait();
    }
}

async fn store(table: &str) -> (DynamoStore, Client, Moto) {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let moto = Moto(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let client = Client::new(&sdk);
    gateway_lambda::table::create_table(&client, table).await.expect("create table");
    (DynamoStore::new(client.clone(), table), client, moto)
}

fn route(name: &str) -> Route {
    Route::new(name, vec![Endpoint::new("a", "http://10.0.0.1:8000")])
}

fn record(id: &str, expires_at: u64) -> TokenRecord {
    gateway_core::fixtures::token_record(id, expires_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_refuse_lost_updates_and_duplicates() {
    let (s, _c, _m) = store("cond").await;
    let r = route("llama");
    s.put_route(&r, None).await.expect("create");
    // Creating again as if it did not exist: refused, not overwritten.
    assert!(matches!(s.put_route(&r, None).await, Err(Error::Conflict(_))));
    // Replacing on the basis of a stale read: refused.
    let mut newer = r.clone();
    newer.auth.groups = vec!["ml-team".into()];
    s.put_route(&newer, Some(&r)).await.expect("replace what we read");
    let mut stale = r.clone();
    stale.enabled = false;
    assert!(matches!(s.put_route(&stale, Some(&r)).await, Err(Error::Conflict(_))));
    assert_eq!(s.route("llama").await.unwrap().unwrap().auth.groups, vec!["ml-team".to_string()]);
    // Revoking twice: the second is a conflict.
    let mut rec = record("tok_a", 4_000_000_000);
    s.put_token(&rec).await.unwrap();
    rec.revoked_at = Some(1);
    s.revoke(&rec).await.unwrap();
    assert!(matches!(s.revoke(&rec).await, Err(Error::Conflict(_))));
    assert!(s.is_revoked("tok_a").await.unwrap());
    assert!(!s.is_revoked("tok_b").await.unwrap());
    // A lease on a route that does not exist is refused.
    let mut lease = Endpoint::new("l", "http://10.0.0.2:8000");
    lease.lease_expires_at = Some(4_000_000_000);
    assert!(matches!(s.put_lease("nope", &lease).await, Err(Error::Conflict(_))));
    s.put_lease("llama", &lease).await.unwrap();
    assert_eq!(s.leases("llama").await.unwrap().len(), 1);
    assert!(s.delete_lease("llama", "l").await.unwrap());
    assert!(!s.delete_lease("llama", "l").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_checked_at_read_time() {
    let (s, _c, _m) = store("expiry").await;
    let now = 1_900_000_000;
    // Items past their time are still in the table (TTL deletes late); reads must not use them.
    let mut eph = route("abcdefghijklmnop");
    eph.expires_at = Some(now - 1);
    s.put_ephemeral(&eph).await.unwrap();
    let read = s.ephemeral("abcdefghijklmnop").await.unwrap().expect("still stored");
    assert!(!read.is_active(now), "an expired ephemeral route is not served");
    s.put_route(&route("r"), None).await.unwrap();
    let mut lease = Endpoint::new("old", "http://10.0.0.3:8000");
    lease.lease_expires_at = Some(now - 1);
    s.put_lease("r", &lease).await.unwrap();
    let leases = s.leases("r").await.unwrap();
    assert_eq!(leases.len(), 1, "still stored");
    assert!(!leases[0].is_live(now), "an ended lease is not live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_exactly() {
    let (s, _c, _m) = store("counters").await;
    let n = 40;
    // One after another: moto (this test's DynamoDB) can lose one of several concurrent
    // UpdateItem ADDs to one item (seen failing 1 of 4 runs); real DynamoDB applies each
    // ADD atomically, which is what makes concurrent requests count exactly there.
    for i in 0..n {
        let mut one = sample("c", 1000 + i, 200);
        one.token_id = Some("tok_c".into());
        s.record(&metrics::updates(&one)).await.unwrap();
    }
    // A token's use is its `tok:` counters: every concurrent request counted, the latest kept.
    let counters = s.counters(1000).await.unwrap();
    let get = |k: &str| counters.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    assert_eq!(get("tok:tok_c:req"), Some(n));
    assert_eq!(get("tok:tok_c:last_seen"), Some(1000 + n - 1));

    // Audit sequence numbers come from an atomic counter, so every append gets its own place.
    // Appended one after another: moto (this test's DynamoDB) can lose one of several
    // concurrent PutItems into a partition, which real DynamoDB never does.
    for i in 0..20 {
        s.append_audit(AuditEntry {
            seq: 0,
            at: i,
            actor: "a".into(),
            actor_token: None,
            action: "x".into(),
            object: format!("o{i}"),
            trace_id: None,
            old_version: None,
            new_version: None,
            outcome: "ok".into(),
        })
        .await
        .unwrap();
    }
    let log = s.audit(None, 100).await.unwrap();
    assert_eq!(log.len(), 20);
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=20).rev().collect::<Vec<_>>(), "newest first, no gaps or repeats");
    let page = s.audit(Some(11), 5).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10, 9, 8, 7, 6]);
}

fn sample(route: &str, at: u64, status: u16) -> RequestSample {
    RequestSample {
        route: route.into(),
        endpoint: Some("a".into()),
        failed_endpoints: vec!["b".into()],
        status,
        latency_ms: 42.5,
        gateway_ms: Some(0.75),
        first_byte_ms: Some(30.0),
        request_bytes: 100,
        response_bytes: 2_000,
        token_id: Some("tok_m".into()),
        prompt_tokens: Some(7),
        completion_tokens: Some(11),
        partner: None,
        at,
        budget_keys: Vec::new(),
    }
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_counters_add_up_under_concurrency_and_read_back_like_the_reference() {
    let (s, c, _m) = store("metrics").await;
    let reference = MemoryStore::default();
    let now = 1_900_000_000;
    let updates = metrics::updates(&sample("llama", now, 200));
    // The same updates twice, concurrently: every number doubles, the maximum does not.
    let (a, b) = tokio::join!(s.record(&updates), s.record(&updates));
    a.unwrap();
    b.unwrap();
    reference.record(&updates).await.unwrap();
    reference.record(&updates).await.unwrap();
    // An older request (outside the last hour) raises the totals, not the recent minutes,
    // and leaves the token's last_seen where it was.
    let old = metrics::updates(&sample("llama", now - 7_200, 502));
    s.record(&old).await.unwrap();
    reference.record(&old).await.unwrap();

    let got = sorted(s.counters(now).await.unwrap());
    assert_eq!(got, sorted(reference.counters(now).await.unwrap()), "the table reads back as the reference store");
    let get = |k: &str| got.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    let minute = metrics::minute_item(metrics::minute_of(now), "llama");
    assert_eq!(get(&format!("{minute}:req")), Some(2));
    assert_eq!(get("route:llama:req"), Some(3));
    assert_eq!(get("route:llama:bytes_out"), Some(6_000));
    assert_eq!(get("route:llama:lat:sum_us"), Some(3 * 42_500));
    assert_eq!(get("ep:llama:b:fail"), Some(3));
    assert_eq!(get("tok:tok_m:completion"), Some(33));
    assert_eq!(get("tok:tok_m:last_seen"), Some(now));
    let old_minute = metrics::minute_item(metrics::minute_of(now - 7_200), "llama");
    assert!(got.iter().all(|(k, _)| !k.starts_with(&old_minute)), "minutes outside the recent range are not read");
    assert!(got.iter().all(|(k, _)| !k.ends_with(":ttl")), "ttl is not a counter");

    // The minute item carries its TTL; totals do not expire.
    let item = |entity: &str, sk: &str| {
        let c = c.clone();
        let (entity, sk) = (entity.to_string(), sk.to_string());
        async move {
            c.get_item()
                .table_name("metrics")
                .key("entity", AttributeValue::S(entity))
                .key("item", AttributeValue::S(sk))
                .send()
                .await
                .unwrap()
                .item
                .expect("item exists")
        }
    };
    let m = item("metric-m", &minute).await;
    let ttl: u64 = m["ttl"].as_n().unwrap().parse().unwrap();
    assert_eq!(Some(ttl), metrics::expires_at(&format!("{minute}:req")));
    assert!(!item("metric", "route:llama").await.contains_key("ttl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_records_and_down_sets_round_trip() {
    let (s, _c, _m) = store("health").await;
    let mut h = Health::default();
    h.observe(1_000, false);
    h.observe(1_060, false);
    s.put_health("llama", "gpu:a", &h).await.unwrap();
    s.put_health("llama", "b", &Health::default()).await.unwrap();
    let mut got = s.health().await.unwrap();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, vec![("llama".into(), "b".into(), Health::default()), ("llama".into(), "gpu:a".into(), h)]);

    assert!(s.down_endpoints("llama").await.unwrap().is_empty());
    s.put_down("llama", &["gpu:a".to_string()]).await.unwrap();
    assert_eq!(s.down_endpoints("llama").await.unwrap(), vec!["gpu:a".to_string()]);
    assert!(s.down_endpoints("other").await.unwrap().is_empty());
    s.put_down("llama", &[]).await.unwrap();
    assert!(s.down_endpoints("llama").await.unwrap().is_empty());
}

/// A loopback HTTP server answering every request with `status` (or never, for `None`).
async fn health_server(status: Option<u16>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                match status {
                    Some(code) => {
                        let _ = conn.write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_the_status_or_none_in_time_and_a_round_marks_endpoints_down() {
    let (s, _c, _m) = store("probes").await;
    let target = |url: String, timeout_ms| ProbeTarget { route: "r".into(), endpoint: "a".into(), url, via: None, timeout_ms };
    let ok = health_server(Some(200)).await;
    let sick = health_server(Some(503)).await;
    let silent = health_server(None).await;
    assert_eq!(gateway_core::probe::probe(&s, &target(format!("{ok}/health"), 2_000)).await, Some(200));
    assert_eq!(gateway_core::probe::probe(&s, &target(format!("{sick}/health"), 2_000)).await, Some(503));
    let started = Instant::now();
    assert_eq!(gateway_core::probe::probe(&s, &target(format!("{silent}/health"), 300)).await, None, "no answer in time");
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout bounds the whole request");
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    assert_eq!(gateway_core::probe::probe(&s, &target(format!("http://{closed}/health"), 2_000)).await, None, "refused connection");

    // Two rounds against the table: the failing endpoint goes down, the other stays up.
    s.put_route(&Route::new("llama", vec![Endpoint::new("up", &ok), Endpoint::new("sick", &sick)]), None).await.unwrap();
    gateway_core::probe::run(&s, 1_900_000_000).await.unwrap();
    assert!(s.down_endpoints("llama").await.unwrap().is_empty(), "one failure decides nothing");
    let report = gateway_core::probe::run(&s, 1_900_000_060).await.unwrap();
    assert_eq!(report.probes.len(), 2);
    assert_eq!(s.down_endpoints("llama").await.unwrap(), vec!["sick".to_string()]);
    let health = s.health().await.unwrap();
    let state = |id: &str| health.iter().find(|(_, e, _)| e == id).unwrap().2.state(1_900_000_060);
    assert_eq!((state("up"), state("sick")), (gateway_core::health::HealthState::Up, gateway_core::health::HealthState::Down));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_are_created_once_read_listed_and_deleted() {
    let (s, _c, _m) = store("accounts").await;
    let account = |name: &str| ServiceAccount {
        name: name.into(),
        groups: vec!["ml-team".into()],
        owner: "team-ml".into(),
        description: "nightly batch".into(),
        created_at: 1_900_000_000,
        created_by: "ops".into(),
    };
    assert!(s.list_service_accounts().await.unwrap().is_empty());
    s.create_service_account(&account("batch")).await.unwrap();
    let mut other = account("batch");
    other.groups = vec!["admin".into()];
    match s.create_service_account(&other).await {
        Err(Error::Conflict(m)) => assert_eq!(m, "service account `batch` exists"),
        r => panic!("a second create must be a conflict, got {r:?}"),
    }
    s.create_service_account(&account("etl")).await.unwrap();
    assert_eq!(s.service_account("batch").await.unwrap(), Some(account("batch")), "not overwritten");
    let mut names: Vec<String> = s.list_service_accounts().await.unwrap().into_iter().map(|a| a.name).collect();
    names.sort();
    assert_eq!(names, ["batch", "etl"]);
    s.delete_service_account("batch").await.unwrap();
    assert_eq!(s.service_account("batch").await.unwrap(), None);
    assert_eq!(s.list_service_accounts().await.unwrap(), vec![account("etl")]);
    assert!(s.service_account("nope").await.unwrap().is_none());
}

/// A loopback JWKS server: answers every request with `status` and `body`, counting requests.
struct JwksServer {
    url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(status: u16, body: String, extra_headers: String) -> JwksServer {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let (hits, body, extra_headers) = (counted.clone(), body.clone(), extra_headers.clone());
                tokio::spawn(async move {
                    // Read the request head (bounded), then answer and close.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let res = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(res.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        JwksServer { url, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The key of the tests in `core/src/oidc.rs`, as a JWKS.
fn jwks_doc() -> String {
    serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "use": "sig", "x": "JLXY79kcgV0acye6SAqdZF3hKwZETrIwTGZJP9slul8"}
    ]})
    .to_string()
}

fn provider(name: &str, jwks_url: &str) -> gateway_core::oidc::Provider {
    let json = serde_json::json!([{"name": name, "issuer": format!("https://{name}.example.com"), "audience": "ai-gateway",
        "jwks_url": jwks_url, "algorithms": ["EdDSA"], "jwks_max_age_seconds": 600, "group_prefix": "gw-"}]);
    gateway_core::oidc::parse_providers(&json.to_string(), true).unwrap().remove(0)
}

/// The clock the JWKS test's store reads (only that test sets it).
static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_900_000_000);
fn clock() -> u64 {
    CLOCK.load(std::sync::atomic::Ordering::SeqCst)
}
fn advance(secs: u64) {
    CLOCK.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
}

/// A store whose DynamoDB is never reached (key fetching does not touch the table).
fn offline_store() -> DynamoStore {
    offline_store_at(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
}

fn offline_store_at(clock: fn() -> u64) -> DynamoStore {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    DynamoStore::new(Client::from_conf(conf), "unused").with_clock(clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_are_fetched_once_cached_shared_and_kept_when_the_provider_goes_away() {
    use gateway_core::oidc::MIN_REFRESH_SECS;
    let server = JwksServer::start(200, jwks_doc(), String::new()).await;
    let corp = provider("corp", &server.url);
    let s = offline_store_at(clock);
    let data_plane = gateway_core::cache::CachedSource::new(s.clone(), 60_000, || clock() * 1000);

    assert_eq!(s.jwks(&corp, false).await.unwrap().kids(), ["ed-1"]);
    assert_eq!(server.hits(), 1, "the first call fetches");
    advance(10);
    assert_eq!(s.jwks(&corp, false).await.unwrap().kids(), ["ed-1"]);
    assert_eq!(data_plane.jwks(&corp, false).await.unwrap().kids(), ["ed-1"], "clones share one cache");
    assert_eq!(server.hits(), 1, "within the max age nothing is fetched");
    advance(600);
    assert_eq!(s.jwks(&corp, false).await.unwrap().kids(), ["ed-1"]);
    assert_eq!(server.hits(), 2, "past the max age the keys are fetched again");
    // An unknown `kid` right after a fetch: the keys just fetched answer.
    assert_eq!(s.jwks(&corp, true).await.unwrap().kids(), ["ed-1"]);
    advance(MIN_REFRESH_SECS - 1);
    assert_eq!(data_plane.jwks(&corp, true).await.unwrap().kids(), ["ed-1"]);
    assert_eq!(server.hits(), 2, "a refresh within MIN_REFRESH_SECS of a fetch reuses it");

    // The provider goes away: a refresh past the floor fails and the stale keys still answer.
    server.task.abort();
    let _ = server.task.await;
    advance(1);
    assert_eq!(s.jwks(&corp, true).await.unwrap().kids(), ["ed-1"], "stale keys while the provider is unreachable");
    advance(600);
    assert_eq!(data_plane.jwks(&corp, false).await.unwrap().kids(), ["ed-1"], "past the max age too");
    // A provider never reached has no keys to fall back on.
    let never = provider("never", &server.url);
    assert!(matches!(s.jwks(&never, false).await, Err(Error::IdentityProviderUnavailable(n)) if n == "never"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_small_200_answer_from_the_configured_url_is_taken() {
    let s = offline_store();
    let refused = |server: &JwksServer, name: &str| provider(name, &server.url);
    // A redirect is not followed (the target is never asked).
    let target = JwksServer::start(200, jwks_doc(), String::new()).await;
    let redirect = JwksServer::start(302, String::new(), format!("location: {}\r\n", target.url)).await;
    let p = refused(&redirect, "redirect");
    assert!(matches!(s.jwks(&p, false).await, Err(Error::IdentityProviderUnavailable(_))));
    assert_eq!((redirect.hits(), target.hits()), (1, 0));
    // Any status but 200.
    let failing = JwksServer::start(500, jwks_doc(), String::new()).await;
    assert!(matches!(s.jwks(&refused(&failing, "failing"), false).await, Err(Error::IdentityProviderUnavailable(_))));
    // Failed moments ago: the next call answers at once, without asking again.
    assert!(matches!(s.jwks(&refused(&failing, "failing"), false).await, Err(Error::IdentityProviderUnavailable(_))));
    assert_eq!(failing.hits(), 1);
    // Too large a document.
    let big = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(gateway_core::oidc::MAX_JWKS_BYTES));
    let large = JwksServer::start(200, big, String::new()).await;
    assert!(matches!(s.jwks(&refused(&large, "large"), false).await, Err(Error::IdentityProviderUnavailable(_))));
    // Not a JWKS.
    let junk = JwksServer::start(200, "<html>".into(), String::new()).await;
    assert!(matches!(s.jwks(&refused(&junk, "junk"), false).await, Err(Error::IdentityProviderUnavailable(_))));
    // A provider that never answers: the fetch gives up within its timeout.
    let silent = health_server(None).await;
    let started = Instant::now();
    assert!(matches!(s.jwks(&provider("silent", &format!("{silent}/jwks")), false).await, Err(Error::IdentityProviderUnavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the fetch timeout");
}

/// A DynamoDB endpoint that accepts connections and never answers (as a paused moto does):
/// every call of a client built by `client_with_timeout` ends within its bound, and the data
/// plane's reads and the rate limiter report the store unavailable (503), never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswering_store_times_out_within_the_bound_as_store_unavailable() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", silent.local_addr().unwrap()))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let bound = Duration::from_millis(200);
    let s = DynamoStore::new(gateway_lambda::store::client_with_timeout(&aws, bound), "gateway");
    let t = Instant::now();
    let read = s.route("r").await;
    assert!(matches!(read, Err(Error::StoreUnavailable(_))), "{read:?}");
    assert!(matches!(s.is_revoked("tok_x").await, Err(Error::StoreUnavailable(_))));
    let limit = gateway_core::ratelimit::RateLimit { key: "tok:x".into(), per_minute: 10 };
    assert!(matches!(s.rate_hit(&limit, 1_000_000).await, Err(Error::StoreUnavailable(_))));
    assert!(t.elapsed() < 3 * bound + Duration::from_millis(500), "three calls took {:?}", t.elapsed());
    assert_eq!(Error::StoreUnavailable(String::new()).status(), 503);
    drop(silent);
}
