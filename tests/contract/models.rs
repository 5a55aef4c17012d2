//! One OpenAI base URL (`/v1`): requests routed by the body's `model`, the combined model list,
//! RBAC per model (issue 17).

use crate::{boxed, ensure, error_code, Case, CaseResult, Ctx};
use gateway_tests::route::RouteJson;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub const ALL: &[Case] = &[
    ("models_one_base_url_reaches_two_routes_by_model_name", |c| boxed(models_one_base_url_reaches_two_routes_by_model_name(c))),
    ("models_unknown_and_forbidden_look_the_same_and_the_list_follows_rbac", |c| boxed(models_unknown_and_forbidden_look_the_same_and_the_list_follows_rbac(c))),
    ("models_the_body_is_peeked_not_buffered_and_bad_bodies_are_400s", |c| boxed(models_the_body_is_peeked_not_buffered_and_bad_bodies_are_400s(c))),
    ("models_terraform_takes_a_model_and_an_admin_route_leaving_it_does_not_break_it", |c| boxed(models_terraform_takes_a_model_and_an_admin_route_leaving_it_does_not_break_it(c))),
];

/// Two routes, each serving its own models; returns (route a, route b, model a, alias of a, model b).
async fn two_routes(c: &Ctx, tag: &str) -> Result<(String, String, String, String, String), String> {
    let (ra, rb) = (c.name(&format!("{tag}-a")), c.name(&format!("{tag}-b")));
    let (ma, alias, mb) = (format!("{ra}-llama"), format!("{ra}-alias"), format!("mistralai/{rb}-7B"));
    c.put_route(&ra, RouteJson::new().endpoint("a", c.a.url()).with("models", json!([ma, alias]))).await?;
    c.put_route(&rb, RouteJson::new().endpoint("b", c.b.url()).with("models", json!([mb]))).await?;
    Ok((ra, rb, ma, alias, mb))
}

async fn post_model(c: &Ctx, token: Option<&str>, body: Value) -> Result<reqwest::Response, String> {
    let mut req = c.http.post(c.url("/v1/chat/completions")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.map_err(|e| e.to_string())
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
}

async fn models_one_base_url_reaches_two_routes_by_model_name(c: &Ctx) -> CaseResult {
    let (_, _, ma, alias, mb) = two_routes(c, "mr").await?;
    let token = c.user(&["ml-team"]);
    // The Python SDK with one base URL, where the real-vLLM setup made it available.
    if let Some(home) = gateway_tests::vllm::home() {
        let script = gateway_tests::deploy::repo_root().join("tests/vllm/sdk_models.py");
        let run = tokio::process::Command::new(gateway_tests::vllm::python(&home)).arg(&script).arg(c.url("/v1")).arg(&token).args([&ma, &alias, &mb]).output();
        let out = tokio::time::timeout(Duration::from_secs(60), run).await.map_err(|_| "the SDK script took over 60 s".to_string())?.map_err(|e| e.to_string())?;
        ensure!(out.status.success(), "the SDK script failed: {}", String::from_utf8_lossy(&out.stderr));
        let seen: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))?;
        let listed: Vec<&str> = seen["listed"].as_array().map(|l| l.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        ensure!([&ma, &alias, &mb].iter().all(|m| listed.contains(&m.as_str())), "the SDK's model list: {listed:?}");
        for (m, instance) in [(&ma, "a"), (&alias, "a"), (&mb, "b")] {
            ensure!(seen["served_by"][m]["instance"] == instance, "{m} served by {}", seen["served_by"][m]);
            ensure!(seen["streamed_by"][m]["instance"] == instance && seen["streamed_by"][m]["chunks"].as_u64().is_some_and(|n| n >= 2), "{m} streamed: {}", seen["streamed_by"][m]);
        }
        ensure!(seen["retrieved"] == ma.as_str(), "models.retrieve: {}", seen["retrieved"]);
        let u = &seen["unknown"];
        ensure!(u["raised"] == "NotFoundError" && u["status"] == 404 && u["code"] == "model_not_found" && u["param"] == "model", "an unknown model: {u}");
        println!("      OpenAI SDK, one base_url: {ma} and {alias} → a, {mb} → b");
    } else {
        println!("      (no vLLM venv: the SDK part is covered by raw requests only)");
    }
    // The same over plain HTTP, including what went upstream.
    for (m, up) in [(&ma, &c.a), (&alias, &c.a), (&mb, &c.b)] {
        let res = post_model(c, Some(&token), chat(m)).await?;
        let by = res.headers().get("x-standin-instance").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        ensure!(res.status() == 200 && by == up.name(), "{m}: {} served by {by}", res.status());
        let last = up.last_request().ok_or("nothing reached the stand-in")?;
        ensure!(last.path == "/v1/chat/completions" && last.json().is_some_and(|b| b["model"] == m.as_str()), "upstream saw {} {:?}", last.path, last.json());
    }
    // The model route's metrics are the route's.
    Ok(())
}

async fn models_unknown_and_forbidden_look_the_same_and_the_list_follows_rbac(c: &Ctx) -> CaseResult {
    let (_, _, ma, _, _) = two_routes(c, "mrb").await?;
    let secret_route = c.name("mrb-secret");
    let secret_model = format!("{secret_route}-model");
    c.put_route(&secret_route, RouteJson::new().endpoint("c", c.c.url()).groups(&["other-team"]).with("models", json!([secret_model]))).await?;
    let ml = c.user(&["ml-team"]);
    let other = c.user(&["other-team"]);

    let unknown_name = format!("{secret_route}-nope"); // same length as the forbidden one's
    let mut bodies = Vec::new();
    for (token, model) in [(Some(ml.as_str()), secret_model.as_str()), (Some(ml.as_str()), unknown_name.as_str()), (None, secret_model.as_str()), (None, unknown_name.as_str())] {
        let res = post_model(c, token, chat(model)).await?;
        let (s, code, v) = error_code(res).await;
        ensure!(s == 404 && code == "model_not_found" && v["error"]["type"] == "invalid_request_error" && v["error"]["param"] == "model", "{model} with {:?}: {s} {v}", token.is_some());
        bodies.push(v["error"]["message"].as_str().unwrap_or("").replace(model, "<model>"));
    }
    ensure!(bodies.iter().all(|b| *b == bodies[0]), "the answers differ: {bodies:?}");
    ensure!(c.c.last_request().is_none_or(|r| !r.json().is_some_and(|b| b["model"] == secret_model.as_str())), "a refused request reached the route");
    let res = post_model(c, Some(&other), chat(&secret_model)).await?;
    ensure!(res.status() == 200, "the group that may use it: {}", res.status());

    let list = |token: String| async move {
        let res = c.http.get(c.url("/v1/models")).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
        ensure!(res.status() == 200, "GET /v1/models: {}", res.status());
        let v: Value = res.json().await.map_err(|e| e.to_string())?;
        ensure!(v["object"] == "list", "shape: {v}");
        Ok::<Vec<String>, String>(v["data"].as_array().map(|d| d.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect()).unwrap_or_default())
    };
    // New routes' models join the list within the cache bound (GATEWAY_CACHE_SECONDS).
    c.eventually("the lists show the new routes' models", Duration::from_secs(10), || async {
        let (for_ml, for_other) = (list(ml.clone()).await?, list(other.clone()).await?);
        Ok(for_ml.contains(&ma) && for_other.contains(&secret_model))
    })
    .await?;
    let (for_ml, for_other) = (list(ml.clone()).await?, list(other.clone()).await?);
    ensure!(for_ml.contains(&ma) && !for_ml.contains(&secret_model), "ml-team's list: {for_ml:?}");
    ensure!(for_other.contains(&secret_model) && !for_other.contains(&ma), "other-team's list: {for_other:?}");
    let res = c.http.get(c.url(&format!("/v1/models/{secret_model}"))).bearer_auth(&ml).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 404, "retrieving a forbidden model: {}", res.status());

    // One route per model name.
    let (s, v) = c.admin_call(Method::PUT, &format!("routes/{}", c.name("mrb-dup")), Some(json!({"endpoints": [], "models": [ma]}))).await?;
    ensure!(s == 409 && v["error"]["message"].as_str().is_some_and(|m| m.contains("models[0]")), "a model served twice: {s} {v}");
    Ok(())
}

async fn models_the_body_is_peeked_not_buffered_and_bad_bodies_are_400s(c: &Ctx) -> CaseResult {
    let (_, _, ma, _, _) = two_routes(c, "mrp").await?;
    let token = c.user(&["ml-team"]);
    // 200 KB of prompt after the model: routed by the first bytes, delivered whole.
    let long = "y".repeat(200_000);
    // (Written by hand: serde_json would sort `model` after `messages`.)
    let sent = format!(r#"{{"model": "{ma}", "messages": [{{"role": "user", "content": "{long}"}}], "max_tokens": 2}}"#).into_bytes();
    let res = c.http.post(c.url("/v1/chat/completions")).bearer_auth(&token).header("content-type", "application/json").body(sent.clone()).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "a long body: {}", res.status());
    let last = c.a.last_request().ok_or("nothing upstream")?;
    ensure!(last.body.len() == sent.len() && last.body[..] == sent[..], "upstream got {} of {} bytes", last.body.len(), sent.len());

    // The model after 64 KiB: a clear 400, nothing sent.
    let late = format!(r#"{{"messages": [{{"role": "user", "content": "{long}"}}], "model": "{ma}"}}"#);
    let before = c.a.requests();
    let res = c.http.post(c.url("/v1/chat/completions")).bearer_auth(&token).header("content-type", "application/json").body(late).send().await.map_err(|e| e.to_string())?;
    let (s, code, v) = error_code(res).await;
    ensure!(s == 400 && v["error"]["param"] == "model" && v["error"]["message"].as_str().is_some_and(|m| m.contains("64 KiB")), "model after 64 KiB: {s} {code} {v}");
    for bad in [json!({"messages": []}), json!({"model": 7}), json!(["model"])] {
        let res = post_model(c, Some(&token), bad.clone()).await?;
        let (s, _, v) = error_code(res).await;
        ensure!(s == 400 && v["error"]["param"] == "model", "{bad}: {s} {v}");
    }
    let res = c.http.post(c.url("/v1/chat/completions")).bearer_auth(&token).body(r#"{"model": "a", "model": "b"}"#).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 400, "two models: {}", res.status());
    ensure!(c.a.requests() == before, "a refused body went upstream");
    Ok(())
}

async fn models_terraform_takes_a_model_and_an_admin_route_leaving_it_does_not_break_it(c: &Ctx) -> CaseResult {
    let (admin_route, tf_route) = (c.name("mtf-admin"), c.name("mtf-tf"));
    let model = format!("{admin_route}-model");
    c.put_route(&admin_route, RouteJson::new().endpoint("a", c.a.url()).with("models", json!([model]))).await?;
    // Terraform claims the same name for its route, writing the store as infra/modules/routes does.
    let tf = RouteJson::new().endpoint("b", c.b.url()).with("name", json!(tf_route)).with("models", json!([model])).with("managed_by", json!("terraform")).json();
    c.backing.terraform_write(&tf_route, Some(&tf.to_string())).await?;
    c.backing.terraform_model(&model, Some(&tf_route)).await?;
    let token = c.user(&["ml-team"]);
    let served_by = |res: &reqwest::Response| res.headers().get("x-standin-instance").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    c.eventually("Terraform's route serves the model", Duration::from_secs(10), || async {
        let res = post_model(c, Some(&token), chat(&model)).await?;
        Ok(res.status() == 200 && served_by(&res) == c.b.name())
    })
    .await?;
    // The admin route lets the name go, then goes: Terraform's entry stays.
    let (s, v) = c.admin_call(Method::PUT, &format!("routes/{admin_route}"), Some(RouteJson::new().endpoint("a", c.a.url()).json())).await?;
    ensure!(s == 200, "the admin route drops the model: {s} {v}");
    let (s, v) = c.admin_call(Method::DELETE, &format!("routes/{admin_route}"), None).await?;
    ensure!(s == 200, "the admin route goes: {s} {v}");
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the cache bound
    let res = post_model(c, Some(&token), chat(&model)).await?;
    ensure!(res.status() == 200 && served_by(&res) == c.b.name(), "after the admin route went: {} served by {}", res.status(), served_by(&res));
    c.backing.terraform_model(&model, None).await?;
    c.backing.terraform_write(&tf_route, None).await?;
    Ok(())
}
