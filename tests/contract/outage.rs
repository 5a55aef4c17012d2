//! A state-store outage does not take the data plane down: with DynamoDB (moto) paused, a
//! warm Lambda keeps answering from what it last read, for a bounded time
//! (`GATEWAY_STALE_IF_ERROR_SECONDS`), then answers a quick 503 `store_unavailable`, never a
//! hang; once the store is back, requests succeed again.

use crate::{boxed, ensure, Case, CaseResult, Ctx};
use gateway_tests::deploy::{self, Deployment};
use gateway_tests::route::RouteJson;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const ALL: &[Case] = &[("a_paused_store_does_not_take_the_data_plane_down", |c| {
    boxed(a_paused_store_does_not_take_the_data_plane_down(c))
})];

/// The deployment's bounds: cached reads for 1 s, kept answers up to 6 s past that while the
/// store fails, each DynamoDB call bounded at 300 ms.
const CACHE_SECONDS: u64 = 1;
const STALE_IF_ERROR_SECONDS: u64 = 6;
const STORE_TIMEOUT_MS: u64 = 300;
/// Longest any answer may take while the store is paused.
const QUICK: Duration = Duration::from_secs(2);

/// One answer: status, error code, `Retry-After`, and how long it took, body included.
struct Answer {
    status: u16,
    code: String,
    retry_after: Option<String>,
    took: Duration,
}

async fn call(http: &reqwest::Client, url: &str, token: &str) -> Result<Answer, String> {
    let t = Instant::now();
    let res = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("GET {url} after {:?}: {e}", t.elapsed()))?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = res
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: body after {:?}: {e}", t.elapsed()))?;
    let took = t.elapsed();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        code: v["error"]["code"].as_str().unwrap_or("").to_string(),
        retry_after,
        took,
    })
}

async fn a_paused_store_does_not_take_the_data_plane_down(c: &Ctx) -> CaseResult {
    if c.deployment == Deployment::Edge {
        // Workers KV cannot be paused under `wrangler dev`; the edge's KV cache follows the same
        // rules from core (gateway_core::cache's tests: fresh, stale, stale-if-error, 503).
        println!("      edge: KV cannot be paused locally; the KV cache's rules are core's (gateway_core::cache tests)");
        return Ok(());
    }
    // Its own deployment (and its own moto), so the suite's shared one is untouched.
    let vars = [
        ("GATEWAY_SIGNING_KEYS", crate::TEST_KEYS.to_string()),
        ("GATEWAY_ALLOW_HTTP", "1".to_string()),
        ("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "1".to_string()),
        ("GATEWAY_CACHE_SECONDS", CACHE_SECONDS.to_string()),
        (
            "GATEWAY_STALE_IF_ERROR_SECONDS",
            STALE_IF_ERROR_SECONDS.to_string(),
        ),
        ("GATEWAY_STORE_TIMEOUT_MS", STORE_TIMEOUT_MS.to_string()),
    ];
    let d = deploy::start_lambda(&vars, &[], "outage").await;
    let base = d.gateway.base.clone();
    // A client that gives up well before the case does: a hang shows as an error, not a stall.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;

    let admin = |method: reqwest::Method, path: &str, body: Value| {
        http.request(method, format!("{base}/_gateway/{path}"))
            .bearer_auth(&c.admin)
            .json(&body)
            .send()
    };
    let res = admin(reqwest::Method::PUT, "routes/outage", RouteJson::new().endpoint("a", c.a.url()).json())
        .await
        .map_err(|e| e.to_string())?;
    ensure!(res.status().is_success(), "PUT route: {}", res.status());
    // A token with a record and a rate limit: its revocation and the limiter are store reads too.
    let res = admin(reqwest::Method::POST, "tokens", json!({"subject": "outage-user", "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600, "rate_limit_rpm": 1000}))
        .await
        .map_err(|e| e.to_string())?;
    ensure!(res.status() == 201, "issue token: {}", res.status());
    let v: Value = res.json().await.map_err(|e| e.to_string())?;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let url = format!("{base}/outage/v1/models");

    // Warm: the route, leases, revocations and budgets are in the instance's cache.
    for _ in 0..3 {
        let a = call(&http, &url, &token).await?;
        ensure!(a.status == 200, "warming: {} {}", a.status, a.code);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let paused = d.pause_store()?;
    let t0 = Instant::now();
    // Inside the window (cache period, then stale-if-error): every answer is the route's, quickly.
    let stale_window = Duration::from_secs(CACHE_SECONDS + STALE_IF_ERROR_SECONDS);
    let mut served = Vec::new();
    while t0.elapsed() + Duration::from_secs(2) < stale_window {
        let at = t0.elapsed();
        let a = call(&http, &url, &token).await?;
        ensure!(
            a.status == 200,
            "{:.1} s into the outage: {} {} (want 200 from the kept answers)",
            at.as_secs_f64(),
            a.status,
            a.code
        );
        ensure!(
            a.took < QUICK,
            "{:.1} s into the outage the answer took {:?}",
            at.as_secs_f64(),
            a.took
        );
        served.push(format!("{:.1}s:{}ms", at.as_secs_f64(), a.took.as_millis()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(
        served.len() >= 5,
        "too few requests inside the window: {served:?}"
    );

    // Past the bound: a quick 503 store_unavailable with Retry-After, every time, never a hang.
    let past = stale_window + Duration::from_millis(700);
    if let Some(wait) = past.checked_sub(t0.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let mut refused = Vec::new();
    for _ in 0..3 {
        let at = t0.elapsed();
        let a = call(&http, &url, &token).await?;
        ensure!(
            a.status == 503 && a.code == "store_unavailable",
            "{:.1} s into the outage: {} {} (want 503 store_unavailable)",
            at.as_secs_f64(),
            a.status,
            a.code
        );
        ensure!(a.retry_after.is_some(), "the 503 carries Retry-After");
        ensure!(
            a.took < QUICK,
            "{:.1} s into the outage the 503 took {:?}",
            at.as_secs_f64(),
            a.took
        );
        refused.push(format!("{:.1}s:{}ms", at.as_secs_f64(), a.took.as_millis()));
    }

    // The store is back: answered again.
    paused.resume()?;
    let back = Instant::now();
    loop {
        let a = call(&http, &url, &token).await?;
        if a.status == 200 {
            break;
        }
        ensure!(
            back.elapsed() < Duration::from_secs(15),
            "15 s after the store resumed: still {} {}",
            a.status,
            a.code
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovered = back.elapsed();
    for _ in 0..3 {
        let a = call(&http, &url, &token).await?;
        ensure!(
            a.status == 200 && a.took < QUICK,
            "after the store resumed: {} {} in {:?}",
            a.status,
            a.code,
            a.took
        );
    }
    println!(
        "      served {} (at:took); then 503 {}; 200 again {:.1} s after the store resumed",
        served.join(" "),
        refused.join(" "),
        recovered.as_secs_f64()
    );
    Ok(())
}
