//! Compute governance (issue 17): OpenAI's rate-limit headers on every answer of a limited
//! route; token budgets; usage on every stream.

use crate::{boxed, ensure, error_code, Case, CaseResult, Ctx};
use serde_json::json;

pub const ALL: &[Case] = &[
    ("governance_rate_limit_headers_on_every_answer_of_a_limited_route", |c| boxed(governance_rate_limit_headers_on_every_answer_of_a_limited_route(c))),
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
