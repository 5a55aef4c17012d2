//! vLLM-aware balancing (issue 16): bounded-load affinity driven by the load vLLM reports
//! on `/metrics`, the `affinity.fallback` modes for requests without a session key, and
//! the load readings shown to admins. Each case starts its own stand-ins, so the loads it
//! sets never reach another case.

use crate::{boxed, ensure, Case, CaseResult, Ctx};
use gateway_core::token::TokenKind;
use gateway_tests::deploy::Deployment;
use gateway_tests::route::RouteJson;
use gateway_tests::standin::{StandIn, StandInOptions, VllmLoad};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub const ALL: &[Case] = &[
    ("balance_bounded_load_moves_only_the_overflow_and_brings_it_back", |c| boxed(bounded_load_moves_only_the_overflow_and_brings_it_back(c))),
    ("balance_keyless_service_traffic_spreads_while_users_stay", |c| boxed(keyless_service_traffic_spreads_while_users_stay(c))),
    ("balance_prefix_fallback_keeps_a_shared_prompt_on_one_instance", |c| boxed(prefix_fallback_keeps_a_shared_prompt_on_one_instance(c))),
    ("balance_load_readings_are_read_and_shown", |c| boxed(load_readings_are_read_and_shown(c))),
];

async fn pair(tag: &str) -> Result<(StandIn, StandIn), String> {
    let a = StandIn::start(StandInOptions::new(format!("{tag}-a"))).await.map_err(|e| e.to_string())?;
    let b = StandIn::start(StandInOptions::new(format!("{tag}-b"))).await.map_err(|e| e.to_string())?;
    Ok((a, b))
}

/// One round of probes and load readings now (what the schedule does every few seconds),
/// then long enough for the data plane's cached copy to expire (`GATEWAY_CACHE_SECONDS=1`).
async fn read_loads(c: &Ctx) -> Result<Value, String> {
    let (s, v) = c.admin_call(Method::POST, "probes", None).await?;
    ensure!(s == 200, "POST probes: {s} {v}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    Ok(v)
}

/// Which instance served each session.
async fn placement(c: &Ctx, route: &str, token: &str, sessions: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for sid in sessions {
        out.insert(sid.clone(), c.served_by(&format!("/{route}/v1/models"), Some(token), &[("x-session-id", sid)]).await?);
    }
    Ok(out)
}

async fn bounded_load_moves_only_the_overflow_and_brings_it_back(c: &Ctx) -> CaseResult {
    let (a, b) = pair("bl").await?;
    let name = c.name("bounded");
    c.route_over(&name, &[&a, &b]).await?;
    let user = c.user(&["ml-team"]);
    let sessions: Vec<String> = (0..24).map(|i| format!("conv-{i}")).collect();
    let before = placement(c, &name, &user, &sessions).await?;
    let on_a: Vec<&String> = before.iter().filter(|(_, who)| *who == a.name()).map(|(s, _)| s).collect();
    ensure!(!on_a.is_empty() && on_a.len() < sessions.len(), "sessions over both instances: {before:?}");

    // a's queue is long: its sessions overflow to b; b's stay where they are.
    a.set_load(VllmLoad { running: 8.0, waiting: 40.0, ..VllmLoad::default() });
    let report = read_loads(c).await?;
    ensure!(report["loads"][&name][a.name()]["waiting"] == 40.0, "the reading was taken: {}", report["loads"]);
    let during = placement(c, &name, &user, &sessions).await?;
    for (sid, who) in &before {
        ensure!(during[sid] == b.name(), "{sid} was on {who}; with a saturated it must be on b: {during:?}");
    }
    // Sessions are sticky again once the load falls: they come back to a.
    a.set_load(VllmLoad::default());
    read_loads(c).await?;
    let after = placement(c, &name, &user, &sessions).await?;
    ensure!(after == before, "placement returns when the load falls:\nbefore {before:?}\nafter  {after:?}");

    // A moderate load under the bound (factor 1.25 of the total) moves nothing.
    a.set_load(VllmLoad { running: 1.0, ..VllmLoad::default() });
    b.set_load(VllmLoad { running: 1.0, ..VllmLoad::default() });
    read_loads(c).await?;
    let even = placement(c, &name, &user, &sessions).await?;
    ensure!(even == before, "balanced load keeps plain rendezvous:\nbefore {before:?}\neven   {even:?}");
    a.stop().await;
    b.stop().await;
    Ok(())
}

async fn keyless_service_traffic_spreads_while_users_stay(c: &Ctx) -> CaseResult {
    let (a, b) = pair("ks").await?;
    let name = c.name("spread");
    c.route_over(&name, &[&a, &b]).await?;
    let service = c.token("nightly-batch", TokenKind::Service, &["ml-team"], None);
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..30 {
        *count.entry(c.served_by(&format!("/{name}/v1/models"), Some(&service), &[]).await?).or_default() += 1;
    }
    ensure!(count.len() == 2 && count.values().all(|n| *n >= 5), "a service token's keyless requests spread over both: {count:?}");

    // A person's requests without a session header stay on one instance (keyed by token).
    let user = c.user(&["ml-team"]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(c.served_by(&format!("/{name}/v1/models"), Some(&user), &[]).await?);
    }
    ensure!(seen.len() == 1, "a user's keyless requests stay: {seen:?}");

    // `fallback: token` keeps even a service token's requests together.
    let pinned = c.name("pinned");
    c.put_route(&pinned, RouteJson::new().endpoint(a.name(), a.url()).endpoint(b.name(), b.url()).with("affinity", json!({"fallback": "token"}))).await?;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(c.served_by(&format!("/{pinned}/v1/models"), Some(&service), &[]).await?);
    }
    ensure!(seen.len() == 1, "fallback token pins a service token: {seen:?}");
    let (s, v) = c.admin_call(Method::GET, &format!("routes/{pinned}"), None).await?;
    ensure!(s == 200 && v["affinity"]["fallback"] == "token", "the route shows its fallback: {v}");
    let endpoints = json!([{"id": a.name(), "url": a.url()}, {"id": b.name(), "url": b.url()}]);
    let (s, v) = c.admin_call(Method::PUT, &format!("routes/{pinned}"), Some(json!({"endpoints": endpoints, "affinity": {"fallback": "sometimes"}}))).await?;
    let names = |v: &Value, what: &str| v["error"].to_string().contains(what);
    ensure!(s == 400 && names(&v, "fallback"), "an unknown fallback is refused: {s} {v}");
    let (s, v) = c.admin_call(Method::PUT, &format!("routes/{pinned}"), Some(json!({"endpoints": endpoints, "affinity": {"balance_factor": 0.5}}))).await?;
    ensure!(s == 400 && names(&v, "balance_factor"), "a factor under 1 is refused: {s} {v}");
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// A chat request body: `system`, then the turns.
fn chat(system: &str, turns: &[(&str, &str)]) -> Value {
    let mut messages = vec![json!({"role": "system", "content": system})];
    messages.extend(turns.iter().map(|(role, content)| json!({"role": role, "content": content})));
    json!({"model": "m", "messages": messages, "max_tokens": 4})
}

async fn post_chat(c: &Ctx, route: &str, token: &str, body: &Value) -> Result<String, String> {
    let res = c
        .http
        .post(c.url(&format!("/{route}/v1/chat/completions")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "chat: {}", res.status());
    let who = res.headers().get("x-standin-instance").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    res.bytes().await.map_err(|e| e.to_string())?;
    Ok(who)
}

async fn prefix_fallback_keeps_a_shared_prompt_on_one_instance(c: &Ctx) -> CaseResult {
    let (a, b) = pair("px").await?;
    let name = c.name("prefix");
    c.put_route(&name, RouteJson::new().endpoint(a.name(), a.url()).endpoint(b.name(), b.url()).with("affinity", json!({"fallback": "prefix"}))).await?;
    let system = "You are the support assistant of Example Corp. Answer from the manual only. ".repeat(20);
    // Three callers (a person and two services), no session header, one system prompt and
    // first question: one instance.
    let callers = [c.user(&["ml-team"]), c.token("svc-one", TokenKind::Service, &["ml-team"], None), c.token("svc-two", TokenKind::Service, &["ml-team"], None)];
    let mut seen = std::collections::BTreeSet::new();
    for caller in &callers {
        seen.insert(post_chat(c, &name, caller, &chat(&system, &[("user", "How do I reset my password?")])).await?);
    }
    ensure!(seen.len() == 1, "one shared prompt, one instance: {seen:?}");
    let home = seen.into_iter().next().unwrap_or_default();
    // The conversation goes on (and grows past the 64 KiB the gateway peeks at): same instance,
    // and the whole body arrives.
    let long_answer = "x".repeat(80 * 1024);
    let body = chat(&system, &[("user", "How do I reset my password?"), ("assistant", &long_answer), ("user", "And then?")]);
    let sent = serde_json::to_vec(&body).map_err(|e| e.to_string())?.len();
    let who = post_chat(c, &name, &callers[1], &body).await?;
    ensure!(who == home, "a later turn stays on {home}: {who}");
    let stand_in = if who == a.name() { &a } else { &b };
    let got = stand_in.last_request().map(|r| r.body.len()).unwrap_or(0);
    ensure!(got == sent, "the body went upstream whole after the peek: {got} of {sent} bytes");
    // Different system prompts spread over both instances.
    let mut spread = std::collections::BTreeSet::new();
    for i in 0..16 {
        spread.insert(post_chat(c, &name, &callers[1], &chat(&format!("You are assistant number {i}."), &[("user", "hi")])).await?);
    }
    ensure!(spread.len() == 2, "different prompts use both instances: {spread:?}");
    a.stop().await;
    b.stop().await;
    Ok(())
}

async fn load_readings_are_read_and_shown(c: &Ctx) -> CaseResult {
    let (a, b) = pair("lr").await?;
    let name = c.name("loads");
    c.route_over(&name, &[&a, &b]).await?;
    a.set_load(VllmLoad { running: 3.0, waiting: 2.0, kv_cache_usage: 0.4, prefix_cache_queries: 200.0, prefix_cache_hits: 50.0 });
    read_loads(c).await?;
    let (s, v) = c.admin_call(Method::GET, "metrics", None).await?;
    ensure!(s == 200, "metrics: {s}");
    let load = &v["routes"][&name]["endpoints"][a.name()]["load"];
    ensure!(load["running"] == 3.0 && load["waiting"] == 2.0 && load["kv_cache_usage"] == 0.4, "a's reading: {load}");
    ensure!(load["prefix_cache_hit_rate"] == 0.25, "hit rate from vLLM's counters: {load}");
    let b_load = &v["routes"][&name]["endpoints"][b.name()]["load"];
    ensure!(b_load["running"] == 0.0, "b's reading: {b_load}");
    let res = c.http.get(c.url("/_gateway/metrics/prometheus")).bearer_auth(&c.admin).send().await.map_err(|e| e.to_string())?;
    let text = res.text().await.map_err(|e| e.to_string())?;
    let line = format!("gateway_endpoint_requests_waiting{{route=\"{name}\",endpoint=\"{}\"}} 2", a.name());
    ensure!(text.contains(&line), "Prometheus has {line}");
    ensure!(text.contains(&format!("gateway_endpoint_kv_cache_usage_ratio{{route=\"{name}\",endpoint=\"{}\"}} 0.4", a.name())), "KV usage gauge");

    // At the edge a Durable Object alarm reads them every 10 s with no call at all.
    if c.deployment == Deployment::Edge {
        a.set_load(VllmLoad { running: 6.0, waiting: 9.0, ..VllmLoad::default() });
        let reads = a.metrics_reads();
        c.eventually("the alarm reads /metrics again", Duration::from_secs(30), || async {
            let (_, v) = c.admin_call(Method::GET, "metrics", None).await?;
            Ok(v["routes"][&name]["endpoints"][a.name()]["load"]["waiting"] == 9.0)
        })
        .await?;
        ensure!(a.metrics_reads() > reads, "read by the alarm");
    }
    a.stop().await;
    b.stop().await;
    Ok(())
}
