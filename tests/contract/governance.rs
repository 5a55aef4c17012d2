//! Compute governance (issue 17): OpenAI's rate-limit headers on every answer of a limited
//! route; token budgets; usage on every stream.

use crate::{boxed, ensure, error_code, Case, CaseResult, Ctx};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub const ALL: &[Case] = &[
    ("governance_rate_limit_headers_on_every_answer_of_a_limited_route", |c| boxed(governance_rate_limit_headers_on_every_answer_of_a_limited_route(c))),
    ("governance_usage_always_counts_every_stream_and_the_client_sees_its_own_stream", |c| boxed(governance_usage_always_counts_every_stream_and_the_client_sees_its_own_stream(c))),
];

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `1m30s`, `59s`, `250ms` → milliseconds.
fn parse_duration(s: &str) -> Option<u64> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok();
    }
    let (mut total, mut num) = (0u64, String::new());
    for ch in s.chars() {
        match ch {
            '0'..='9' => num.push(ch),
            'h' | 'm' | 's' => {
                let n: u64 = num.parse().ok()?;
                total += n * match ch {
                    'h' => 3_600_000,
                    'm' => 60_000,
                    _ => 1_000,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    num.is_empty().then_some(total)
}

async fn governance_rate_limit_headers_on_every_answer_of_a_limited_route(c: &Ctx) -> CaseResult {
    let limited = c.name("rl-headers");
    c.put_route(&limited, json!({"endpoints": [{"id": "a", "url": c.a.url()}], "auth": {"groups": ["ml-team"]}, "rate_limit_rpm": 4})).await?;
    let open = c.name("rl-none");
    c.route_over(&open, &[&c.a]).await?;
    let token = c.token(&c.name("rl-user"), gateway_core::token::TokenKind::User, &["ml-team"], None);

    let mut remaining = Vec::new();
    for i in 0..4 {
        let res = c.get(&format!("/{limited}/v1/models"), Some(&token), &[]).await?;
        ensure!(res.status() == 200, "request {i}: {}", res.status());
        ensure!(header(&res, "x-ratelimit-limit-requests").as_deref() == Some("4"), "limit header on request {i}");
        let reset = header(&res, "x-ratelimit-reset-requests").and_then(|r| parse_duration(&r));
        ensure!(reset.is_some_and(|ms| ms > 0 && ms <= 120_000), "reset header on request {i}: {:?}", header(&res, "x-ratelimit-reset-requests"));
        remaining.push(header(&res, "x-ratelimit-remaining-requests").and_then(|r| r.parse::<u64>().ok()).ok_or("no remaining header")?);
    }
    ensure!(remaining == [3, 2, 1, 0], "remaining counts down: {remaining:?}");
    let res = c.get(&format!("/{limited}/v1/models"), Some(&token), &[]).await?;
    let (limit, left, reset, retry) = (header(&res, "x-ratelimit-limit-requests"), header(&res, "x-ratelimit-remaining-requests"), header(&res, "x-ratelimit-reset-requests"), header(&res, "retry-after"));
    let (s, code, v) = error_code(res).await;
    ensure!(s == 429 && code == "rate_limit_exceeded" && v["error"]["type"] == "requests", "over the limit: {s} {code} {v}");
    ensure!(limit.as_deref() == Some("4") && left.as_deref() == Some("0") && reset.is_some() && retry.is_some(), "the 429's headers: {limit:?} {left:?} {reset:?} {retry:?}");

    // A route without a limit says nothing about one.
    let res = c.get(&format!("/{open}/v1/models"), Some(&token), &[]).await?;
    ensure!(res.status() == 200 && header(&res, "x-ratelimit-limit-requests").is_none(), "an unlimited route: {:?}", res.headers());
    Ok(())
}

/// A stream's text with the per-response parts (`id`, `created`) blanked, event by event.
pub fn normalised_stream(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| match e.strip_prefix("data: ").map(serde_json::from_str::<Value>) {
            Some(Ok(mut v)) if v.is_object() => {
                for k in ["id", "created", "system_fingerprint"] {
                    if v.get(k).is_some() {
                        v[k] = Value::Null;
                    }
                }
                format!("data: {v}")
            }
            _ => e.to_string(),
        })
        .collect()
}

async fn governance_usage_always_counts_every_stream_and_the_client_sees_its_own_stream(c: &Ctx) -> CaseResult {
    let route = c.name("usage-always");
    c.put_route(&route, json!({"endpoints": [{"id": "a", "url": c.a.url()}], "auth": {"groups": ["ml-team"]}, "usage": "always"})).await?;
    let (s, v) = c.admin_call(Method::GET, &format!("routes/{route}"), None).await?;
    ensure!(s == 200 && v["usage"] == "always", "the route keeps usage: {s} {v}");
    let (s, v) = c.admin_call(Method::PUT, &format!("routes/{}", c.name("usage-bad")), Some(json!({"endpoints": [], "usage": "sometimes"}))).await?;
    ensure!(s == 400 && v["error"]["param"] == "usage", "a bad usage value: {s} {v}");
    let (token_id, token) = c.issue(json!({"subject": c.name("usage-user"), "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    let path = format!("/{route}/v1/chat/completions");
    let plain = r#"{"model": "m", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}"#;

    // The client did not ask: vLLM is asked, the client's stream is what it would have been.
    let res = c.http.post(c.url(&path)).bearer_auth(&token).header("x-standin-chunks", "4").header("content-type", "application/json").body(plain).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "stream: {}", res.status());
    let through = res.text().await.map_err(|e| e.to_string())?;
    let upstream = c.a.last_request().ok_or("nothing upstream")?;
    let sent = upstream.json().ok_or("upstream body is not JSON")?;
    ensure!(sent["stream_options"]["include_usage"] == true && sent["messages"][0]["content"] == "one two three", "what went upstream: {sent}");
    let direct = c.http.post(format!("{}/v1/chat/completions", c.a.url())).header("x-standin-chunks", "4").header("content-type", "application/json").body(plain).send().await.map_err(|e| e.to_string())?;
    let direct = direct.text().await.map_err(|e| e.to_string())?;
    ensure!(!through.contains("\"usage\""), "the usage event reached a client that did not ask: {through}");
    ensure!(normalised_stream(&through) == normalised_stream(&direct), "the client's stream differs from the server's own:\n{through}\n---\n{direct}");

    // The client asked: its body goes up unchanged and it gets the usage event.
    let asked = r#"{"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "four five"}]}"#;
    let res = c.http.post(c.url(&path)).bearer_auth(&token).header("x-standin-chunks", "3").header("content-type", "application/json").body(asked).send().await.map_err(|e| e.to_string())?;
    let text = res.text().await.map_err(|e| e.to_string())?;
    ensure!(text.contains("\"usage\":{"), "the client that asked gets usage: {text}");
    ensure!(c.a.last_request().is_some_and(|r| r.body == asked.as_bytes()), "an asking client's body is sent unchanged");

    // Both streams counted: 3 + 2 prompt words, 4 + 3 generated chunks.
    c.eventually("the token's usage counts both streams", Duration::from_secs(10), || async {
        let (s, v) = c.admin_call(Method::GET, "metrics", None).await?;
        let t = &v["tokens"][&token_id];
        Ok(s == 200 && t["prompt_tokens"] == 5 && t["completion_tokens"] == 7)
    })
    .await?;
    Ok(())
}
