//! Observability (issue 5): metrics counted exactly and attributed to tokens,
//! LLM usage read from completions, health probes, the Prometheus exposition
//! and the dashboard.

use crate::{boxed, ensure, Case, CaseResult, Ctx};
use gateway_tests::deploy::Deployment;
use gateway_tests::route::RouteJson;
use gateway_tests::standin::{StandIn, StandInOptions};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub const ALL: &[Case] = &[
    ("metrics_count_exactly_the_requests_sent", |c| {
        boxed(metrics_count_exactly_the_requests_sent(c))
    }),
    ("metering_hundreds_of_requests_over_time_counts_each_once", |c| {
        boxed(metering_hundreds_of_requests_over_time_counts_each_once(c))
    }),
    ("usage_is_summed_from_streamed_and_plain_completions", |c| {
        boxed(usage_is_summed_from_streamed_and_plain_completions(c))
    }),
    ("probes_mark_a_dead_endpoint_down_then_up", |c| {
        boxed(probes_mark_a_dead_endpoint_down_then_up(c))
    }),
    ("prometheus_exposition_parses", |c| {
        boxed(prometheus_exposition_parses(c))
    }),
    (
        "dashboard_is_public_with_a_strict_csp_and_its_data_is_not",
        |c| boxed(dashboard_is_public_with_a_strict_csp_and_its_data_is_not(c)),
    ),
    ("cron_trigger_runs_a_probe_round", |c| {
        boxed(cron_trigger_runs_a_probe_round(c))
    }),
    ("dashboard_in_a_browser", |c| {
        boxed(dashboard_in_a_browser(c))
    }),
    ("traces_reach_vllm_the_logs_and_the_audit", |c| {
        boxed(traces_reach_vllm_the_logs_and_the_audit(c))
    }),
];

/// How long recording may take to show: it happens after the response, off the client's path.
const SETTLE: Duration = Duration::from_secs(20);

async fn metrics(c: &Ctx) -> Result<Value, String> {
    let (status, v) = c.admin_call(Method::GET, "metrics", None).await?;
    ensure!(status == 200, "GET metrics: {status} {v}");
    Ok(v)
}

/// Waits until `route`'s total reaches `n`, then checks it stays there (nothing counted twice).
async fn settled(c: &Ctx, route: &str, n: u64) -> Result<Value, String> {
    c.eventually(&format!("{route} requests_total reaches {n}"), SETTLE, || async {
        let v = metrics(c).await?;
        let got = v["routes"][route]["requests_total"].as_u64().unwrap_or(0);
        ensure!(got <= n, "{route} counted {got} requests, more than the {n} sent");
        Ok(got == n)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = metrics(c).await?;
    ensure!(v["routes"][route]["requests_total"] == n, "{route} moved past {n} after settling: {}", v["routes"][route]);
    Ok(v)
}

async fn chat(c: &Ctx, route: &str, token: &str, stream: bool, words: &str, chunks: u32) -> Result<String, String> {
    let body = json!({"model": "m", "stream": stream, "stream_options": {"include_usage": stream}, "messages": [{"role": "user", "content": words}]});
    let res = c
        .http
        .post(c.url(&format!("/{route}/v1/chat/completions")))
        .bearer_auth(token)
        .header("x-standin-chunks", chunks.to_string())
        .header("x-standin-interval-ms", "5")
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("chat: {e}"))?;
    ensure!(res.status() == 200, "chat: {}", res.status());
    res.text().await.map_err(|e| format!("chat body: {e}"))
}

async fn metrics_count_exactly_the_requests_sent(c: &Ctx) -> CaseResult {
    let name = c.name("counted");
    c.route_over(&name, &[&c.a, &c.b]).await?;
    let (one_id, one) = c.issue(json!({"subject": c.name("one"), "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    let (two_id, two) = c.issue(json!({"subject": c.name("two"), "kind": "service", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    for i in 0..5 {
        let sid = format!("seq-{i}");
        ensure!(c.served_by(&format!("/{name}/v1/models"), Some(&one), &[("x-session-id", &sid)]).await? != "", "sequential request {i}");
    }
    // Concurrent requests land on the recorder at the same time; none may be lost.
    let concurrent = futures_util::future::join_all((0..20).map(|i| {
        let (path, sid, two) = (format!("/{name}/v1/models"), format!("par-{i}"), two.clone());
        async move { c.served_by(&path, Some(&two), &[("x-session-id", &sid)]).await }
    }))
    .await;
    for r in concurrent {
        ensure!(!r?.is_empty(), "a concurrent request was not served by a stand-in");
    }
    // A request the upstream answers 404 counts as a 4xx of the route.
    let res = c.get(&format!("/{name}/v1/no-such-thing"), Some(&one), &[]).await?;
    ensure!(res.status() == 404, "upstream 404 passes through: {}", res.status());
    let v = settled(c, &name, 26).await?;
    let r = &v["routes"][&name];
    ensure!(r["by_status_class"]["2xx"] == 25 && r["by_status_class"]["4xx"] == 1, "status mix: {}", r["by_status_class"]);
    let ep_total = r["endpoints"]["a"]["requests"].as_u64().unwrap_or(0) + r["endpoints"]["b"]["requests"].as_u64().unwrap_or(0);
    ensure!(ep_total == 26, "endpoint requests add up to the route's: {ep_total} ({})", r["endpoints"]);
    ensure!(r["requests_last_hour"] == 26, "last hour: {}", r["requests_last_hour"]);
    let series: u64 = r["series"].as_array().map(|s| s.iter().filter_map(|p| p["requests"].as_u64()).sum()).unwrap_or(0);
    ensure!(series == 26, "the per-minute series adds up to 26: {series}");
    let lat_count: u64 = r["latency_ms"]["histogram"]["counts"].as_array().map(|a| a.iter().filter_map(Value::as_u64).sum()).unwrap_or(0);
    let gw_count: u64 = r["gateway_overhead_ms"]["histogram"]["counts"].as_array().map(|a| a.iter().filter_map(Value::as_u64).sum()).unwrap_or(0);
    ensure!(lat_count == 26 && gw_count == 26, "histograms hold every request: latency {lat_count}, overhead {gw_count}");
    for p in ["p50", "p95", "p99"] {
        ensure!(r["latency_ms"][p].as_f64().is_some_and(|v| v > 0.0), "latency {p}: {}", r["latency_ms"][p]);
    }
    ensure!(r["bytes_out"].as_u64().unwrap_or(0) > 0, "bytes out: {}", r["bytes_out"]);
    // Attribution per token, and the token list's own counters agree.
    let t = &v["tokens"];
    ensure!(t[&one_id]["requests"] == 6 && t[&one_id]["routes"][&name] == 6, "token one: {}", t[&one_id]);
    ensure!(t[&two_id]["requests"] == 20 && t[&two_id]["routes"][&name] == 20, "token two: {}", t[&two_id]);
    ensure!(t[&two_id]["last_seen"].as_u64().is_some_and(|s| s + 120 >= crate::now()), "last seen: {}", t[&two_id]["last_seen"]);
    Ok(())
}

/// Samples are written in batches, at most about once a second per isolate or instance
/// (issue 14): 320 requests spread over about 4 s, from 8 clients at once, over two routes
/// (two counter shards at the edge unless they hash together) and two tokens. Within the
/// documented bound (2 s after the last answer; the case allows the suite's settle time on a
/// loaded machine) every request is counted exactly once, and never more.
async fn metering_hundreds_of_requests_over_time_counts_each_once(c: &Ctx) -> CaseResult {
    let (r1, r2) = (c.name("batched-1"), c.name("batched-2"));
    c.route_over(&r1, &[&c.a]).await?;
    c.route_over(&r2, &[&c.b]).await?;
    let (id, token) = c.issue(json!({"subject": c.name("batched"), "kind": "service", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    let writes_before = store_writes(c).await?;
    let clients = futures_util::future::join_all((0..8).map(|k| {
        let (r1, r2, token) = (r1.clone(), r2.clone(), token.clone());
        async move {
            let mut served = 0u64;
            for i in 0..40 {
                let route = if (i + k) % 4 == 0 { &r2 } else { &r1 };
                let who = c.served_by(&format!("/{route}/v1/models"), Some(&token), &[("x-session-id", &format!("s{k}"))]).await?;
                if !who.is_empty() {
                    served += 1;
                }
                // Spread over time: about 4 s for the 40 requests of each client.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<u64, String>(served)
        }
    }))
    .await;
    let mut served = 0;
    for r in clients {
        served += r?;
    }
    ensure!(served == 320, "every request was served: {served} of 320");
    // Batched: a few writes a second whatever the request rate (one per request or more before:
    // a Durable Object call per request at the edge, 4–6 DynamoDB writes per request on Lambda).
    let writes = store_writes(c).await?.saturating_sub(writes_before);
    println!("      state-store writes for 320 requests over about 4 s: {writes} ({:.3} per request)", writes as f64 / 320.0);
    // Half a write per request at most: a few per second, with room for retries against a
    // store slowed by this machine's load (CI: 70); per-request writing would be 320 or more.
    ensure!(writes <= 160, "{writes} state-store writes for 320 requests: metering is not batched");
    let v1 = settled(c, &r1, 240).await?;
    let v2 = settled(c, &r2, 80).await?;
    ensure!(v1["routes"][&r1]["requests_last_hour"] == 240, "last hour of {r1}: {}", v1["routes"][&r1]);
    for v in [&v1, &v2] {
        let t = &v["tokens"][&id];
        ensure!(t["requests"] == 320, "the token's requests over both routes: {t}");
    }
    ensure!(v2["tokens"][&id]["routes"][&r1] == 240 && v2["tokens"][&id]["routes"][&r2] == 80, "per route: {}", v2["tokens"][&id]);
    Ok(())
}

/// The state-store writes the instance that answers has sent ([`INSTANCE_STORE_WRITES_HEADER`]
/// on an admin's metrics read; one instance serves the whole suite locally).
async fn store_writes(c: &Ctx) -> Result<u64, String> {
    let res = c.http.get(c.url("/_gateway/metrics")).bearer_auth(&c.admin).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "metrics: {}", res.status());
    let header = gateway_core::metrics::INSTANCE_STORE_WRITES_HEADER;
    res.headers().get(header).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| format!("no {header} on an admin's metrics read"))
}

async fn usage_is_summed_from_streamed_and_plain_completions(c: &Ctx) -> CaseResult {
    let name = c.name("usage-llm");
    c.route_over(&name, &[&c.a]).await?;
    let (id, token) = c.issue(json!({"subject": c.name("llm"), "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    // Plain: the stand-in reports prompt = words, completion = 7.
    let plain = chat(c, &name, &token, false, "one two three", 1).await?;
    ensure!(plain.contains("\"completion_tokens\":7"), "plain body has usage: {plain}");
    // Streamed with include_usage: prompt = words, completion = chunks, in the last event.
    let streamed = chat(c, &name, &token, true, "four five six seven", 4).await?;
    ensure!(streamed.contains("\"usage\"") && streamed.trim_end().ends_with("[DONE]"), "stream ends with usage and [DONE]: {streamed}");
    // Streamed without include_usage has no usage to read.
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "eight nine"}]});
    let res = c.http.post(c.url(&format!("/{name}/v1/chat/completions"))).bearer_auth(&token).json(&body).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "stream without usage: {}", res.status());
    res.text().await.map_err(|e| e.to_string())?;
    let v = settled(c, &name, 3).await?;
    let r = &v["routes"][&name];
    ensure!(r["prompt_tokens"] == 7 && r["completion_tokens"] == 11, "route usage 3+4 prompt, 7+4 completion: {} {}", r["prompt_tokens"], r["completion_tokens"]);
    let t = &v["tokens"][&id];
    ensure!(t["prompt_tokens"] == 7 && t["completion_tokens"] == 11, "token usage: {t}");
    Ok(())
}

async fn probe_round(c: &Ctx) -> Result<Value, String> {
    let (status, v) = c.admin_call(Method::POST, "probes", None).await?;
    ensure!(status == 200, "POST probes: {status} {v}");
    Ok(v)
}

fn probe_of<'a>(report: &'a Value, route: &str, endpoint: &str) -> &'a Value {
    report["probes"].as_array().and_then(|ps| ps.iter().find(|p| p["route"] == route && p["endpoint"] == endpoint)).unwrap_or(&Value::Null)
}

async fn probes_mark_a_dead_endpoint_down_then_up(c: &Ctx) -> CaseResult {
    // A port nobody listens on, which a stand-in takes later.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let name = c.name("probed");
    let late_url = format!("http://127.0.0.1:{port}");
    c.put_route(&name, RouteJson::new().endpoint("a", c.a.url()).endpoint("late", &late_url)).await?;

    let first = probe_round(c).await?;
    ensure!(probe_of(&first, &name, "a")["health"] == "up", "a is up: {}", probe_of(&first, &name, "a"));
    ensure!(probe_of(&first, &name, "late")["health"] == "unknown", "one failure decides nothing: {}", probe_of(&first, &name, "late"));
    let second = probe_round(c).await?;
    ensure!(probe_of(&second, &name, "late")["health"] == "down" && probe_of(&second, &name, "late")["changed"] == true, "down after two: {}", probe_of(&second, &name, "late"));
    let v = metrics(c).await?;
    ensure!(v["routes"][&name]["endpoints"]["late"]["health"] == "down", "metrics show down: {}", v["routes"][&name]["endpoints"]);

    // The balancer avoids it: no request tries it (its failure count stays 0) once the down set reached the data plane.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tok = c.user(&["ml-team"]);
    for i in 0..12 {
        let who = c.served_by(&format!("/{name}/v1/models"), Some(&tok), &[("x-session-id", &format!("p-{i}"))]).await?;
        ensure!(who == "a", "session p-{i} served by {who:?}");
    }
    let v = settled(c, &name, 12).await?;
    ensure!(v["routes"][&name]["endpoints"]["late"]["failures"].as_u64().unwrap_or(0) == 0, "a down endpoint costs no attempt: {}", v["routes"][&name]["endpoints"]);

    // It comes back: one good probe, and sessions return to it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut opts = StandInOptions::new("late");
    opts.port = port;
    let late = StandIn::start(opts).await.map_err(|e| format!("start the late stand-in: {e}"))?;
    let third = probe_round(c).await?;
    ensure!(probe_of(&third, &name, "late")["health"] == "up" && probe_of(&third, &name, "late")["changed"] == true, "up again: {}", probe_of(&third, &name, "late"));
    let v = metrics(c).await?;
    let ep = &v["routes"][&name]["endpoints"]["late"];
    ensure!(ep["health"] == "up", "metrics show up: {ep}");
    ensure!(ep["uptime_24h"].as_f64().is_some_and(|u| u < 1.0) && ep["last_probe_at"].as_u64().is_some(), "uptime counts the downtime: {ep}");
    c.eventually("sessions reach the recovered endpoint", Duration::from_secs(10), || async {
        for i in 0..12 {
            if c.served_by(&format!("/{name}/v1/models"), Some(&tok), &[("x-session-id", &format!("p-{i}"))]).await? == "late" {
                return Ok(true);
            }
        }
        Ok(false)
    })
    .await?;
    late.stop().await;
    // The endpoint stays a recorded probe subject; take the route away so later rounds skip it.
    c.admin_call(Method::DELETE, &format!("routes/{name}"), None).await?;
    Ok(())
}

async fn prometheus_exposition_parses(c: &Ctx) -> CaseResult {
    let name = c.name("prom");
    c.route_over(&name, &[&c.a]).await?;
    let tok = c.user(&["ml-team"]);
    for _ in 0..3 {
        c.served_by(&format!("/{name}/v1/models"), Some(&tok), &[]).await?;
    }
    settled(c, &name, 3).await?;
    let unauth = c.http.get(c.url("/_gateway/metrics/prometheus")).send().await.map_err(|e| e.to_string())?;
    ensure!(unauth.status() == 401, "metrics need a token: {}", unauth.status());
    let res = c.http.get(c.url("/_gateway/metrics/prometheus")).bearer_auth(&c.admin).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "prometheus: {}", res.status());
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    ensure!(ct.starts_with("text/plain") && ct.contains("version=0.0.4"), "content type: {ct}");
    let text = res.text().await.map_err(|e| e.to_string())?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(|e| format!("parse: {e}"))?;
    let find = |metric: &str, labels: &[(&str, &str)]| {
        scrape.samples.iter().find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(|s| s.value.clone())
    };
    match find("gateway_requests_total", &[("route", &name), ("status_class", "2xx")]) {
        Some(prometheus_parse::Value::Counter(n)) if n == 3.0 => {}
        other => return Err(format!("gateway_requests_total for {name}: {other:?}")),
    }
    for family in [
        "gateway_request_duration_seconds",
        "gateway_upstream_first_byte_seconds",
        "gateway_request_duration_ms",
    ] {
        match find(family, &[("route", &name)]) {
            Some(prometheus_parse::Value::Histogram(buckets)) => {
                let inf = buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map(|b| b.count);
                ensure!(
                    inf == Some(3.0),
                    "{family}: the +Inf bucket holds all 3: {inf:?}"
                );
            }
            other => return Err(format!("{family} for {name}: {other:?}")),
        }
    }
    ensure!(
        text.contains("gateway_request_duration_seconds_bucket{route=\"")
            && text.contains(",le=\"300\"}"),
        "seconds buckets end at 300 s"
    );
    ensure!(
        scrape
            .docs
            .get("gateway_request_duration_ms")
            .is_some_and(|h| h.starts_with("Deprecated")),
        "the _ms family is marked deprecated"
    );
    // Series per token only when asked for.
    ensure!(!text.contains("token=\""), "no token label by default");
    let res = c
        .http
        .get(c.url("/_gateway/metrics/prometheus?per_token=1"))
        .bearer_auth(&c.admin)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "per_token: {}", res.status());
    let per_token = res.text().await.map_err(|e| e.to_string())?;
    ensure!(
        per_token.contains("gateway_token_requests_total{token=\"")
            && per_token.contains("gateway_token_last_seen_timestamp_seconds{"),
        "per-token series when asked for"
    );
    let res = c
        .http
        .get(c.url("/_gateway/metrics/prometheus?per_token=yes"))
        .bearer_auth(&c.admin)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure!(res.status() == 400, "per_token=yes: {}", res.status());
    ensure!(
        text.contains("# HELP gateway_requests_total")
            && text.contains("# TYPE gateway_requests_total counter"),
        "HELP and TYPE lines"
    );
    ensure!(
        text.contains("gateway_request_duration_ms_sum{")
            && text.contains("gateway_request_duration_ms_count{"),
        "histogram _sum and _count"
    );
    Ok(())
}

async fn dashboard_is_public_with_a_strict_csp_and_its_data_is_not(c: &Ctx) -> CaseResult {
    let res = c.http.get(c.url("/_gateway/dashboard")).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "dashboard: {}", res.status());
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    ensure!(header("content-type").starts_with("text/html"), "html: {}", header("content-type"));
    let csp = header("content-security-policy");
    ensure!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"), "strict CSP: {csp}");
    ensure!(header("x-frame-options") == "DENY", "no framing");
    let page = res.text().await.map_err(|e| e.to_string())?;
    ensure!(page.contains("/_gateway/dashboard/app.js"), "the page loads its script from the gateway");
    for (path, ty) in [("/_gateway/dashboard/app.js", "text/javascript"), ("/_gateway/dashboard/js/api.js", "text/javascript"), ("/_gateway/dashboard/app.css", "text/css")] {
        let res = c.http.get(c.url(path)).send().await.map_err(|e| e.to_string())?;
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        ensure!(res.status() == 200 && ct.starts_with(ty), "{path}: {} {ct}", res.status());
    }
    for path in ["/_gateway/metrics", "/_gateway/dashboard/other.js", "/_gateway/dashboard/js/other.js"] {
        let res = c.http.get(c.url(path)).send().await.map_err(|e| e.to_string())?;
        ensure!(res.status() == 401, "{path} without a token: {}", res.status());
    }
    let res = c.http.post(c.url("/_gateway/dashboard")).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 401, "POST to the page is an admin call like any other: {}", res.status());
    Ok(())
}

async fn cron_trigger_runs_a_probe_round(c: &Ctx) -> CaseResult {
    if c.deployment != Deployment::Edge {
        // The Lambda's scheduled round is a second function (GATEWAY_MODE=probe) run by
        // EventBridge; the emulator serves only the HTTP one. POST /probes runs the same code.
        return Ok(());
    }
    let name = c.name("cron");
    c.route_over(&name, &[&c.b]).await?;
    let before = crate::now();
    // `wrangler dev --test-scheduled` exposes the Cron Trigger at /__scheduled.
    let res = c.http.get(c.url("/__scheduled?cron=*+*+*+*+*")).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "/__scheduled: {}", res.status());
    c.eventually("the scheduled round probed the new route", Duration::from_secs(10), || async {
        let v = metrics(c).await?;
        let ep = &v["routes"][&name]["endpoints"]["b"];
        Ok(ep["health"] == "up" && ep["last_probe_at"].as_u64().is_some_and(|t| t >= before))
    })
    .await
}

async fn dashboard_in_a_browser(c: &Ctx) -> CaseResult {
    if c.deployment != Deployment::Edge || std::env::var("GATEWAY_BROWSER_TEST").as_deref() == Ok("0") {
        return Ok(());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("repo root")?.to_path_buf();
    let name = c.name("dash");
    c.route_over(&name, &[&c.a, &c.b]).await?;
    let (_, user) = c.issue(json!({"subject": "alice@example.com", "kind": "user", "groups": ["ml-team"], "ttl_seconds": 3600, "description": "notebook"})).await?;
    let (revoke_id, _) = c.issue(json!({"subject": "ci-bot", "kind": "service", "groups": ["ml-team"], "ttl_seconds": 7200, "description": "to revoke"})).await?;
    let partner = c.name("globex");
    let (_, partner_token) = c
        .issue(json!({"subject": "globex-integration", "kind": "partner", "routes": [name], "ttl_seconds": 86400,
                      "metadata": {"partner": partner, "contract_id": "C-2026-007"}, "description": "pilot"}))
        .await?;
    let (status, _) = c.admin_call(Method::POST, "service-accounts", Some(json!({"name": c.name("nightly-evals"), "groups": ["ml-team"], "owner": "ml-platform@corp.example"}))).await?;
    ensure!(status == 201, "service account: {status}");
    for i in 0..5 {
        c.served_by(&format!("/{name}/v1/models"), Some(&user), &[("x-session-id", &format!("d-{i}"))]).await?;
    }
    for i in 0..2 {
        c.served_by(&format!("/{name}/v1/models"), Some(&partner_token), &[("x-session-id", &format!("p-{i}"))]).await?;
    }
    chat(c, &name, &user, true, "hello dashboard", 3).await?;
    settled(c, &name, 8).await?;
    probe_round(c).await?;
    let out = root.join("target/browser");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let base = c.base.clone();
    let admin = c.admin.clone();
    let (script, out_dir) = (root.join("tests/browser/dashboard.mjs"), out.clone());
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .current_dir(&root)
            .env("GATEWAY_URL", base)
            .env("ADMIN_TOKEN", admin)
            .env("EXPECT_ROUTE", &name)
            .env("EXPECT_REQUESTS", "8")
            .env("REVOKE_TOKEN_ID", &revoke_id)
            .env("EXPECT_PARTNER", &partner)
            .env("EXPECT_PARTNER_REQUESTS", "2")
            .env("OUT_DIR", &out_dir)
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("run node: {e}"))?;
    let log = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    ensure!(run.status.success(), "browser test failed:\n{log}");
    ensure!(out.join("dashboard.png").metadata().map(|m| m.len() > 10_000).unwrap_or(false), "screenshot saved: {log}");
    Ok(())
}

/// A valid W3C `traceparent`'s parts, or an error naming what is wrong.
fn traceparent_parts(v: &str) -> Result<(String, String, String), String> {
    let f: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    ensure!(
        f.len() == 4 && f[0] == "00" && hex(f[1], 32) && hex(f[2], 16) && f[3].len() == 2,
        "not a valid traceparent: {v:?}"
    );
    Ok((f[1].to_string(), f[2].to_string(), f[3].to_string()))
}

async fn traces_reach_vllm_the_logs_and_the_audit(c: &Ctx) -> CaseResult {
    let name = c.name("trace");
    c.route_over(&name, &[&c.a]).await?;
    let tok = c.user(&["ml-team"]);
    let echo = |headers: Vec<(&'static str, String)>| {
        let (tok, name) = (tok.clone(), name.clone());
        async move {
            let mut req = c
                .http
                .get(c.url(&format!("/{name}/echo/trace")))
                .bearer_auth(&tok);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let res = req.send().await.map_err(|e| e.to_string())?;
            ensure!(res.status() == 200, "echo: {}", res.status());
            let request_id = res
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let v: Value = res.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((request_id, v["headers"].clone()))
        }
    };
    // The caller's trace is joined: same trace id and flags, the gateway's own parent id.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (request_id, seen) = echo(vec![
        ("traceparent", parent.clone()),
        ("tracestate", "congo=t61rcWkgMzE".into()),
    ])
    .await?;
    let (t, p, flags) = traceparent_parts(seen["traceparent"].as_str().unwrap_or(""))?;
    ensure!(
        t == trace_id && p != "00f067aa0ba902b7" && flags == "01",
        "the upstream's traceparent joins the caller's trace: {}",
        seen["traceparent"]
    );
    ensure!(
        seen["tracestate"] == "congo=t61rcWkgMzE",
        "tracestate passed on: {}",
        seen["tracestate"]
    );
    // Without one (or with a malformed one), the gateway starts a trace, a new one each time,
    // and a client's tracestate does not ride along.
    let (_, a) = echo(vec![]).await?;
    let (_, b) = echo(vec![
        ("traceparent", "00-zz-00f067aa0ba902b7-01".into()),
        ("tracestate", "forged=1".into()),
    ])
    .await?;
    let (ta, _, _) = traceparent_parts(a["traceparent"].as_str().unwrap_or(""))?;
    let (tb, _, _) = traceparent_parts(b["traceparent"].as_str().unwrap_or(""))?;
    ensure!(
        ta != tb && ta != trace_id,
        "a new trace per request: {ta} {tb}"
    );
    ensure!(
        b.get("tracestate").is_none(),
        "no tracestate without a valid traceparent: {b}"
    );

    // The admin call's audit entry keeps the trace id.
    let admin_trace = "0af7651916cd43dd8448eb211c80319c";
    let res = c
        .http
        .put(c.url(&format!("/_gateway/routes/{name}")))
        .bearer_auth(&c.admin)
        .header("traceparent", format!("00-{admin_trace}-b7ad6b7169203331-01"))
        .json(&RouteJson::new().endpoint_json(json!({"id": c.a.name(), "url": c.a.url(), "weight": 2})).json())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure!(res.status().is_success(), "route update: {}", res.status());
    let (s, v) = c.admin_call(Method::GET, "audit?limit=50", None).await?;
    ensure!(s == 200, "audit: {s} {v}");
    let object = format!("route/{name}");
    let entry = v["entries"].as_array().and_then(|es| {
        es.iter()
            .find(|e| e["object"] == object.as_str() && e["trace_id"] == admin_trace)
    });
    ensure!(
        entry.is_some(),
        "an audit entry for {object} with trace {admin_trace}: {}",
        v["entries"]
    );

    // The request's log line carries its trace id.
    let log = c.log.clone();
    c.eventually(
        "the request's log line names its trace",
        Duration::from_secs(10),
        || {
            let (log, request_id) = (log.clone(), request_id.clone());
            async move {
                let text =
                    std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
                Ok(text
                    .lines()
                    .any(|l| l.contains(&request_id) && l.contains(trace_id)))
            }
        },
    )
    .await
}
