//! Microbenchmarks of gateway-core on the host: token verification, route matching,
//! balancing, and the whole per-request decision, next to one HMAC-SHA256 over a
//! token-sized input (the physical floor of verifying an HS256 token).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_executor::block_on;
use gateway_core::balance::Balancer;
use gateway_core::gateway::{decide, Decision, RequestContext};
use gateway_core::route::{parse_target, Endpoint, Route};
use gateway_core::store::{AdminStore, MemoryStore, RouteSource};
use gateway_core::token::{TokenIssuer, TokenKind, TokenRequest, TokenVerifier};
use gateway_core::Config;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

const KEYS: &str = r#"[{"kid":"bench-1","alg":"HS256","secret":"YmVuY2htYXJrLXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmch"}]"#;
const SECRET: &[u8] = b"benchmark-signing-key-32-bytes-long!";
const NOW: u64 = 1_800_000_000;

fn config() -> Config {
    Config::from_lookup(&|k| match k {
        "GATEWAY_SIGNING_KEYS" => Some(KEYS.to_string()),
        "GATEWAY_ALLOW_HTTP" | "GATEWAY_ALLOW_LOCAL_UPSTREAMS" => Some("1".to_string()),
        _ => None,
    })
    .expect("bench config")
}

fn token(cfg: &Config) -> String {
    let req = TokenRequest {
        rate_limit_rpm: None,
        subject: "bench-user".into(),
        kind: TokenKind::User,
        groups: vec!["bench".into(), "ml-team".into()],
        routes: None,
        ttl_seconds: Some(3600),
        description: "benchmark".into(),
        metadata: Default::default(),
        registrar: None,
    };
    TokenIssuer::new(cfg).issue(&req, NOW, "tok_benchbenchbenchbenchbenchbe".into()).expect("token").0
}

fn store() -> MemoryStore {
    let s = MemoryStore::default();
    let mut r = Route::new("llama", vec![Endpoint::new("a", "http://10.0.0.1:8000"), Endpoint::new("b", "http://10.0.0.2:8000")]);
    r.auth.groups = vec!["bench".into()];
    r.affinity.header = Some("x-session-id".into());
    block_on(s.put_route(&r, None)).expect("route");
    s
}

fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n).map(|i| Endpoint::new(format!("ep{i}"), format!("http://10.0.{}.{}:8000", i / 250, i % 250))).collect()
}

fn bench_token(c: &mut Criterion) {
    let cfg = config();
    let t = token(&cfg);
    let verifier = TokenVerifier::new(&cfg);
    assert!(verifier.verify(&t, NOW).is_ok());
    let mut g = c.benchmark_group("token");
    g.bench_function("verify_hs256", |b| b.iter(|| verifier.verify(black_box(&t), NOW).expect("valid")));
    g.finish();

    // The floor: one HMAC-SHA256 over the token's signing input (header.payload).
    let signing_input = t.rsplit_once('.').expect("a JWT").0.as_bytes().to_vec();
    let mut g = c.benchmark_group("hmac_sha256");
    g.bench_function(BenchmarkId::from_parameter(format!("{}B", signing_input.len())), |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
            mac.update(black_box(&signing_input));
            mac.finalize().into_bytes()
        })
    });
    g.finish();
}

fn bench_route(c: &mut Criterion) {
    let s = store();
    let mut g = c.benchmark_group("route");
    g.bench_function("parse_target", |b| b.iter(|| parse_target(black_box("/llama/v1/chat/completions"), false).expect("target")));
    g.bench_function("memory_store_lookup", |b| b.iter(|| block_on(s.route(black_box("llama"))).expect("store").expect("route")));
    g.finish();
}

fn bench_balance(c: &mut Criterion) {
    let mut g = c.benchmark_group("balance");
    for n in [2usize, 8, 64] {
        let eps = endpoints(n);
        g.bench_with_input(BenchmarkId::new("rank", n), &eps, |b, eps| {
            b.iter(|| Balancer::rank(black_box("s\u{0}bench-user\u{0}session-42"), eps, NOW, &|_| false).len())
        });
    }
    g.finish();
}

fn bench_decision(c: &mut Criterion) {
    let cfg = config();
    let s = store();
    let auth = format!("Bearer {}", token(&cfg));
    let parts = http::Request::builder()
        .method("POST")
        .uri("/llama/v1/chat/completions")
        .header("host", "gateway.example.com")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .header("content-length", "120")
        .header("x-session-id", "session-42")
        .header("user-agent", "OpenAI/Python 1.0")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let trace = gateway_core::trace::Trace::from_headers(&parts.headers, &[5; 24]);
    let ctx = RequestContext {
        now: NOW,
        client_ip: Some("203.0.113.9"),
        proto: "https",
        new_request_id: "req_bench",
        trace: &trace,
        failures: &Default::default(),
        in_flight: &Default::default(),
        body_peek: None,
    };
    assert!(matches!(
        block_on(decide(&cfg, &s, &parts, &ctx)),
        Ok(Decision::Forward(_))
    ));
    let mut g = c.benchmark_group("gateway");
    // Warm: the token was verified before in this isolate / instance (the usual case).
    g.bench_function("route_request", |b| b.iter(|| block_on(decide(&cfg, &s, black_box(&parts), &ctx)).expect("a plan")));
    g.bench_function("route_request_warm_token", |b| b.iter(|| block_on(decide(&cfg, &s, black_box(&parts), &ctx)).expect("a plan")));
    // Cold: an empty verified-token cache each time (signature and JSON decoding paid).
    g.bench_function("route_request_cold_token", |b| {
        b.iter_batched(
            || {
                let mut cold = cfg.clone();
                cold.verified = Default::default();
                cold
            },
            |cold| block_on(decide(&cold, &s, black_box(&parts), &ctx)).expect("a plan"),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(50);
    targets = bench_token, bench_route, bench_balance, bench_decision
}
criterion_main!(benches);
