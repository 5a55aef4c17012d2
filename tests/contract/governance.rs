//! Compute governance (issue 17): OpenAI's rate-limit headers on every answer of a limited
//! route; token budgets; usage on every stream.

use crate::{boxed, ensure, error_code, Case, CaseResult, Ctx};
use gateway_tests::route::RouteJson;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub const ALL: &[Case] = &[
    ("governance_rate_limit_headers_on_every_answer_of_a_limited_route", |c| boxed(governance_rate_limit_headers_on_every_answer_of_a_limited_route(c))),
    ("governance_usage_always_counts_every_stream_and_the_client_sees_its_own_stream", |c| boxed(governance_usage_always_counts_every_stream_and_the_client_sees_its_own_stream(c))),
    ("governance_token_budgets_refuse_after_the_answer_that_crossed_them", |c| boxed(governance_token_budgets_refuse_after_the_answer_that_crossed_them(c))),
    ("governance_terraform_budgets_apply_and_the_admin_api_leaves_them_alone", |c| boxed(governance_terraform_budgets_apply_and_the_admin_api_leaves_them_alone(c))),
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
    c.put_route(&limited, RouteJson::new().endpoint("a", c.a.url()).with("rate_limit_rpm", json!(4))).await?;
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
    c.put_route(&route, RouteJson::new().endpoint("a", c.a.url()).with("usage", json!("always"))).await?;
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

/// A chat on `route` with a three-word prompt: the stand-in reports 3 prompt + 7 completion tokens.
async fn chat(c: &Ctx, route: &str, token: &str) -> Result<reqwest::Response, String> {
    c.http
        .post(c.url(&format!("/{route}/v1/chat/completions")))
        .bearer_auth(token)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "one two three"}]}))
        .send()
        .await
        .map_err(|e| e.to_string())
}

async fn expect_tokens_429(c: &Ctx, route: &str, token: &str, what: &str) -> Result<u64, String> {
    let res = chat(c, route, token).await?;
    let (limit, left, reset, retry) = (header(&res, "x-ratelimit-limit-tokens"), header(&res, "x-ratelimit-remaining-tokens"), header(&res, "x-ratelimit-reset-tokens"), header(&res, "retry-after"));
    let (s, code, v) = error_code(res).await;
    ensure!(s == 429 && code == "rate_limit_exceeded" && v["error"]["type"] == "tokens", "{what}: {s} {code} {v}");
    ensure!(limit.is_some() && left.as_deref() == Some("0") && reset.is_some(), "{what}: the 429's token headers {limit:?} {left:?} {reset:?}");
    retry.and_then(|r| r.parse().ok()).ok_or_else(|| format!("{what}: no Retry-After"))
}

/// Sends chats until one is refused for its token budget (usage is counted after each answer,
/// within the metering bound); counts the admitted ones in `admitted`. The refusal's Retry-After.
async fn refused_within(c: &Ctx, route: &str, token: &str, what: &str, admitted: Option<&std::cell::Cell<u32>>) -> Result<u64, String> {
    c.eventually_value(what, Duration::from_secs(15), || async move {
        let res = chat(c, route, token).await?;
        if res.status() == 200 {
            if let Some(a) = admitted {
                a.set(a.get() + 1);
            }
            let _ = res.text().await;
            return Ok(None);
        }
        drop(res);
        Ok(Some(expect_tokens_429(c, route, token, what).await?))
    })
    .await
}

async fn governance_token_budgets_refuse_after_the_answer_that_crossed_them(c: &Ctx) -> CaseResult {
    let route = c.name("budget");
    c.put_route(&route, RouteJson::new().endpoint("a", c.a.url())).await?;
    let before = c.a.requests();

    // A token: 15 tokens a minute. The first answer (10 tokens) fits, the second crosses and
    // completes, the third is refused with OpenAI's shape until the minute turns.
    let (id, token) = c.issue(json!({"subject": c.name("budget-user"), "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    let (s, v) = c.admin_call(Method::PUT, &format!("budgets/tokens/{id}"), Some(json!({"tokens_per_minute": 15}))).await?;
    ensure!(s == 200 && v["tokens_per_minute"] == 15, "set the token's budget: {s} {v}");
    let first = chat(c, &route, &token).await?;
    ensure!(first.status() == 200, "the first answer: {}", first.status());
    ensure!(header(&first, "x-ratelimit-limit-tokens").as_deref() == Some("15") && header(&first, "x-ratelimit-remaining-tokens").as_deref() == Some("15"), "token headers on an admitted answer: {:?}", first.headers());
    let _ = first.text().await;
    // Usage is counted after the answer (within the metering bound): requests are admitted
    // until the counted use reaches the limit; the one that crosses it completes.
    let admitted = std::cell::Cell::new(0u32);
    let retry = refused_within(c, &route, &token, "over the token's budget", Some(&admitted)).await?;
    ensure!(admitted.get() >= 1, "the answer that crossed the budget (10 + 10 > 15) was not admitted");
    let upstream_after_refusal = c.a.requests();
    ensure!(chat(c, &route, &token).await?.status() == 429 && c.a.requests() == upstream_after_refusal, "a refused request went upstream");
    let (s, v) = c.admin_call(Method::GET, "budgets", None).await?;
    let listed = v["budgets"].as_array().and_then(|b| b.iter().find(|b| b["id"] == id.as_str()).cloned()).unwrap_or_default();
    ensure!(s == 200 && listed["kind"] == "tokens" && listed["used"]["minute"].as_u64().is_some_and(|n| n >= 20), "the listing shows the use: {listed}");

    // A partner contract's budget is shared by every token under it; another contract is not held back.
    let contract = c.name("C-budget");
    let partner = |contract: String| {
        json!({"subject": c.name("acme-svc"), "kind": "partner", "routes": [route], "ttl_seconds": 600,
               "metadata": {"partner": "acme", "contract_id": contract}})
    };
    let (_, p1) = c.issue(partner(contract.clone())).await?;
    let (_, p2) = c.issue(partner(contract.clone())).await?;
    let (_, other) = c.issue(partner(c.name("C-other"))).await?;
    let (s, v) = c.admin_call(Method::PUT, &format!("budgets/contracts/{contract}"), Some(json!({"tokens_per_day": 10}))).await?;
    ensure!(s == 200, "set the contract's budget: {s} {v}");
    let r = chat(c, &route, &p1).await?;
    ensure!(r.status() == 200, "the contract's first answer: {}", r.status());
    let _ = r.text().await;
    refused_within(c, &route, &p2, "another token of the contract", None).await?;
    ensure!(chat(c, &route, &other).await?.status() == 200, "a token of another contract is not held back");

    // A service account's budget covers its service tokens.
    let svc = c.name("batch-svc");
    let (_, s1) = c.issue(json!({"subject": svc, "kind": "service", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    let (s, _) = c.admin_call(Method::PUT, &format!("budgets/service-accounts/{svc}"), Some(json!({"tokens_per_month": 5}))).await?;
    ensure!(s == 200, "set the service's budget: {s}");
    let r = chat(c, &route, &s1).await?;
    ensure!(r.status() == 200, "the service's first answer: {}", r.status());
    let _ = r.text().await;
    refused_within(c, &route, &s1, "over the service's budget", None).await?;

    // The token's minute turns: admitted again.
    ensure!(retry <= 61, "Retry-After within the minute: {retry}");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let again = chat(c, &route, &token).await?;
    ensure!(again.status() == 200, "after the window turned: {}", again.status());
    ensure!(c.a.requests() > before, "the stand-in answered");
    Ok(())
}

async fn governance_terraform_budgets_apply_and_the_admin_api_leaves_them_alone(c: &Ctx) -> CaseResult {
    let route = c.name("tf-budget");
    c.put_route(&route, RouteJson::new().endpoint("a", c.a.url())).await?;
    let contract = c.name("C-tf");
    let key = format!("contracts/{contract}");
    // An admin's budget first; then Terraform takes the same key over.
    let (s, _) = c.admin_call(Method::PUT, &format!("budgets/{key}"), Some(json!({"tokens_per_day": 1_000_000}))).await?;
    ensure!(s == 200, "the admin's budget: {s}");
    c.backing.terraform_budget(&key, Some(&json!({"tokens_per_day": 10, "managed_by": "terraform"}).to_string())).await?;
    let (s, v) = c.admin_call(Method::GET, "budgets", None).await?;
    let listed = v["budgets"].as_array().and_then(|b| b.iter().find(|b| b["id"] == contract.as_str()).cloned()).unwrap_or_default();
    ensure!(s == 200 && listed["kind"] == "contracts" && listed["tokens_per_day"] == 10 && listed["managed_by"] == "terraform", "listed: {listed}");
    let (s, _) = c.admin_call(Method::PUT, &format!("budgets/{key}"), Some(json!({"tokens_per_day": 1000}))).await?;
    ensure!(s == 409, "an admin change to Terraform's budget: {s}");
    let (s, _) = c.admin_call(Method::DELETE, &format!("budgets/{key}"), None).await?;
    ensure!(s == 409, "an admin removal of Terraform's budget: {s}");
    // It applies: the contract's tokens are refused once the day's 10 tokens are used.
    let (_, p) = c.issue(json!({"subject": c.name("tf-partner"), "kind": "partner", "routes": [route], "ttl_seconds": 600,
                                "metadata": {"partner": "acme", "contract_id": contract}})).await?;
    refused_within(c, &route, &p, "over Terraform's contract budget", None).await?;
    c.backing.terraform_budget(&key, None).await?;
    Ok(())
}
