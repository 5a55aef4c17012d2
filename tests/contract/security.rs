//! Security review findings (issue 15): each case is an attack a reviewer would try,
//! shown refused on both deployments.

use crate::{boxed, ensure, error_code, Case, CaseResult, Ctx, OIDC_AUDIENCE};
use gateway_tests::deploy::{self, Deployment};
use gateway_tests::route::RouteJson;
use reqwest::Method;
use futures_util::StreamExt;
use serde_json::{json, Value};

pub const ALL: &[Case] = &[
    ("proxied_content_cannot_act_on_the_gateway_origin", |c| boxed(proxied_content_cannot_act_on_the_gateway_origin(c))),
    ("only_the_affinity_cookie_and_our_forwarding_headers_go_upstream", |c| boxed(only_the_affinity_cookie_and_our_forwarding_headers_go_upstream(c))),
    ("location_rewrites_stay_on_the_route", |c| boxed(location_rewrites_stay_on_the_route(c))),
    ("idp_sign_ins_need_iat_and_a_bounded_life", |c| boxed(idp_sign_ins_need_iat_and_a_bounded_life(c))),
    ("a_burst_of_unknown_kids_makes_one_jwks_fetch", |c| boxed(a_burst_of_unknown_kids_makes_one_jwks_fetch(c))),
    ("revoking_a_subject_ends_its_sign_ins_and_self_service_tokens", |c| boxed(revoking_a_subject_ends_its_sign_ins_and_self_service_tokens(c))),
    ("self_service_cannot_exhaust_the_state", |c| boxed(self_service_cannot_exhaust_the_state(c))),
    ("an_endless_admin_body_is_cut_off_unread", |c| boxed(an_endless_admin_body_is_cut_off_unread(c))),
    ("registrars_manage_only_their_own_leases_within_their_scope", |c| boxed(registrars_manage_only_their_own_leases_within_their_scope(c))),
    ("production_settings_keep_admin_on_its_host_and_upstreams_off_the_gateways_surroundings", |c| {
        boxed(production_settings_keep_admin_on_its_host_and_upstreams_off_the_gateways_surroundings(c))
    }),
];

fn header(res: &reqwest::Response, name: &str) -> Vec<String> {
    res.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
}

async fn proxied_content_cannot_act_on_the_gateway_origin(c: &Ctx) -> CaseResult {
    // A public route: the riskiest kind, since anyone can make a browser load it.
    let name = c.name("hostile");
    c.put_route(&name, RouteJson::new().public().endpoint("a", c.a.url())).await?;
    let res = c.get(&format!("/{name}/hostile"), None, &[]).await?;
    ensure!(res.status() == 200, "hostile page: {}", res.status());
    ensure!(header(&res, "service-worker-allowed").is_empty(), "Service-Worker-Allowed passed: {:?}", header(&res, "service-worker-allowed"));
    ensure!(header(&res, "set-cookie").is_empty(), "upstream cookies passed: {:?}", header(&res, "set-cookie"));
    let csp = header(&res, "content-security-policy");
    ensure!(csp.iter().any(|v| v.split(';').any(|d| d.trim() == "sandbox")), "proxied content is sandboxed: {csp:?}");
    res.bytes().await.map_err(|e| e.to_string())?;

    // A browser registering a service worker from a proxied script is refused.
    let res = c.get(&format!("/{name}/sw.js"), None, &[("service-worker", "script")]).await?;
    let (s, code, _) = error_code(res).await;
    ensure!(s == 403 && code == "service_worker_refused", "service worker registration: {s} {code}");

    // A real web app behind a route can opt out of the sandbox and into its cookies; the
    // service-worker scope header stays dropped.
    let app = c.name("webapp");
    c.put_route(&app, RouteJson::new().public().endpoint("a", c.a.url()).with("sandbox", json!(false)).with("forward_set_cookie", json!(true))).await?;
    let (s, v) = c.admin_call(Method::GET, &format!("routes/{app}"), None).await?;
    ensure!(s == 200 && v["sandbox"] == false && v["forward_set_cookie"] == true, "route shows its choices: {v}");
    let (s, v) = c.admin_call(Method::GET, &format!("routes/{name}"), None).await?;
    ensure!(s == 200 && v["sandbox"] == true && v["forward_set_cookie"] == false, "defaults are safe: {v}");
    let res = c.get(&format!("/{app}/hostile"), None, &[]).await?;
    ensure!(header(&res, "set-cookie").len() == 2, "opted-in cookies pass: {:?}", header(&res, "set-cookie"));
    ensure!(!header(&res, "content-security-policy").iter().any(|v| v.contains("sandbox")), "opted out of the sandbox");
    ensure!(header(&res, "service-worker-allowed").is_empty(), "Service-Worker-Allowed never passes");
    res.bytes().await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn only_the_affinity_cookie_and_our_forwarding_headers_go_upstream(c: &Ctx) -> CaseResult {
    let name = c.name("cookies");
    c.put_route(&name, RouteJson::new().endpoint("a", c.a.url()).with("affinity", json!({"header": null, "cookie": "gw_session"}))).await?;
    let tok = c.user(&["ml-team"]);
    let forged = "203.0.113.66";
    let res = c
        .get(
            &format!("/{name}/echo"),
            Some(&tok),
            &[
                ("cookie", "sso=corp-sso-secret; gw_session=abc123; CF_Authorization=cf-access-jwt"),
                // (cf-connecting-ip is the platform's own at the edge: Cloudflare overwrites it.)
                ("cf-ipcountry", "forged-country"),
                ("cf-access-authenticated-user-email", "forged@evil.example"),
                ("true-client-ip", forged),
                ("x-forwarded-for", forged),
                ("x-forwarded-host", "evil.example"),
                ("x-real-ip", forged),
                ("forwarded", "for=203.0.113.66;host=evil.example"),
            ],
        )
        .await?;
    ensure!(res.status() == 200, "echo: {}", res.status());
    let v: Value = res.json().await.map_err(|e| e.to_string())?;
    let h = &v["headers"];
    ensure!(h["cookie"] == "gw_session=abc123", "only the affinity cookie goes upstream: {}", h["cookie"]);
    let all = h.to_string();
    ensure!(!all.contains("corp-sso-secret") && !all.contains("cf-access-jwt"), "SSO cookies reached the upstream: {all}");
    ensure!(!all.contains(forged) && !all.contains("evil.example") && !all.contains("forged-country"), "client forwarding headers reached the upstream: {all}");
    ensure!(h["x-forwarded-proto"].is_string(), "the gateway sets its own x-forwarded-proto: {all}");
    ensure!(h.get("true-client-ip").is_none() && h.get("x-forwarded-host").is_none(), "dropped headers: {all}");
    Ok(())
}

async fn location_rewrites_stay_on_the_route(c: &Ctx) -> CaseResult {
    let name = c.name("redir");
    c.put_route(&name, RouteJson::new().endpoint("a", c.a.url())).await?;
    let tok = c.user(&["ml-team"]);
    let base = c.a.url();
    // (Location the upstream sends, what the client may see: Some(exact) or None for dropped)
    let port_plus = format!("{base}0/x"); // same prefix, another port: not the endpoint
    let host_plus = format!("{base}.evil.example/x");
    let on_route = format!("{base}/v1/models");
    let cases: Vec<(String, Option<String>)> = vec![
        (on_route, Some(format!("/{name}/v1/models"))),
        (port_plus, None),
        (host_plus, None),
        ("/\\evil.example/".to_string(), None),
        ("\\\\evil.example/".to_string(), None),
        ("//evil.example/".to_string(), None),
        ("https://evil.example/".to_string(), None),
    ];
    for (to, want) in cases {
        let enc: String = to.bytes().map(|b| format!("%{b:02X}")).collect();
        let res = c.get(&format!("/{name}/redirect-to?to={enc}"), Some(&tok), &[]).await?;
        ensure!(res.status() == 302, "redirect for {to:?}: {}", res.status());
        let got = res.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        ensure!(got == want, "Location {to:?}: got {got:?}, want {want:?}");
    }
    Ok(())
}

async fn idp_sign_ins_need_iat_and_a_bounded_life(c: &Ctx) -> CaseResult {
    let name = c.name("idp-life");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    let good = c.idp.claims_for("erin@corp.example", &["ml-engineers"], OIDC_AUDIENCE, 600);
    let path = path.as_str();
    let status = |claims: Value| async move {
        let res = c.get(path, Some(&c.idp.sign("RS256", "rsa-1", &claims)), &[]).await?;
        Ok::<_, String>(error_code(res).await)
    };
    let (s, _, _) = status(good.clone()).await?;
    ensure!(s == 200, "the untampered sign-in works: {s}");
    let mut no_iat = good.clone();
    no_iat.as_object_mut().ok_or("claims")?.remove("iat");
    let (s, code, v) = status(no_iat).await?;
    ensure!(s == 401, "a sign-in without iat: {s} {code} {v}");
    // Longer than the provider's max_token_lifetime_seconds (default one day).
    let mut long = good.clone();
    long["exp"] = json!(crate::now() + 3 * 86_400);
    let (s, code, v) = status(long).await?;
    ensure!(s == 401, "a sign-in living three days: {s} {code} {v}");
    Ok(())
}

async fn a_burst_of_unknown_kids_makes_one_jwks_fetch(c: &Ctx) -> CaseResult {
    let name = c.name("idp-burst");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    let good = c.idp.claims_for("frank@corp.example", &["ml-engineers"], OIDC_AUDIENCE, 600);
    let (s, _, _) = error_code(c.get(&path, Some(&c.idp.sign("RS256", "rsa-1", &good)), &[]).await?).await;
    ensure!(s == 200, "the untampered sign-in works: {s}");
    // Past the refresh floor (5 s), an unknown kid may refetch: 12 at once must make one fetch.
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    let unknown = c.idp.sign_with_header("RS256", "rsa-1", &json!({"kid": "burst-unknown"}), &good);
    let before = c.idp.jwks_fetches();
    let calls = (0..12).map(|_| async { Ok::<_, String>(error_code(c.get(&path, Some(&unknown), &[]).await?).await) });
    let outcomes = futures_util::future::join_all(calls).await;
    for o in outcomes {
        let (s, _, v) = o?;
        ensure!(s == 401, "an unknown kid is refused: {s} {v}");
    }
    let fetched = c.idp.jwks_fetches() - before;
    ensure!(fetched <= 1, "12 concurrent unknown-kid tokens fetched the JWKS {fetched} times");
    Ok(())
}

async fn revoking_a_subject_ends_its_sign_ins_and_self_service_tokens(c: &Ctx) -> CaseResult {
    let name = c.name("subject-revoke");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    let who = format!("{}@corp.example", c.name("grace"));
    let other = format!("{}@corp.example", c.name("heidi"));
    let sign_in = |subject: &str| c.idp.sign("RS256", "rsa-1", &c.idp.claims_for(subject, &["ml-engineers"], OIDC_AUDIENCE, 600));
    let (grace, heidi) = (sign_in(&who), sign_in(&other));
    let (s, v) = c.call_as(&grace, Method::POST, "me/tokens", Some(json!({"ttl_seconds": 600, "description": "notebook"}))).await?;
    ensure!(s == 201, "self-service token: {s} {v}");
    let own = v["token"].as_str().unwrap_or_default().to_string();
    let status = |t: String| {
        let path = path.clone();
        async move { Ok::<_, String>(c.get(&path, Some(&t), &[]).await?.status().as_u16()) }
    };
    ensure!(status(grace.clone()).await? == 200 && status(own.clone()).await? == 200, "before: both work");

    // Only an admin may revoke a subject.
    let (s, _) = c.call_as(&heidi, Method::POST, &format!("subjects/{who}/revoke"), None).await?;
    ensure!(s == 403, "a user revoking another: {s}");
    let (s, v) = c.admin_call(Method::POST, &format!("subjects/{who}/revoke"), None).await?;
    ensure!(s == 200 && v["tokens_revoked"].as_array().is_some_and(|t| t.len() == 1), "revoke the subject: {s} {v}");
    c.eventually("the sign-in and the self-service token are refused", std::time::Duration::from_secs(15), || async {
        Ok(status(grace.clone()).await? == 401 && status(own.clone()).await? == 401)
    })
    .await?;
    ensure!(status(heidi.clone()).await? == 200, "another user is untouched");
    let (s, v) = c.call_as(&grace, Method::GET, "me", None).await?;
    ensure!(s == 401, "the revoked sign-in cannot reach the admin API either: {s} {v}");
    // A sign-in the identity provider issues after the revocation is its new decision.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ensure!(status(sign_in(&who)).await? == 200, "a later sign-in works");
    let (s, v) = c.admin_call(Method::GET, "audit?limit=50", None).await?;
    let audited = v["entries"].as_array().or(v.as_array()).is_some_and(|es| es.iter().any(|e| e["action"] == "subject.revoke" && e["object"] == format!("subject/{who}")));
    ensure!(s == 200 && audited, "the revocation is audited: {v}");
    Ok(())
}

async fn self_service_cannot_exhaust_the_state(c: &Ctx) -> CaseResult {
    let who = format!("{}@corp.example", c.name("ivan"));
    let ivan = c.idp.sign("RS256", "rsa-1", &c.idp.claims_for(&who, &["ml-engineers"], OIDC_AUDIENCE, 600));
    // Issue and revoke in a loop: bounded per owner per day, revoked ones included.
    let cap = gateway_core::admin::MAX_SELF_SERVICE_ISSUES_PER_DAY;
    for i in 0..cap {
        let (s, v) = c.call_as(&ivan, Method::POST, "me/tokens", Some(json!({"ttl_seconds": 600}))).await?;
        ensure!(s == 201, "issue {i}: {s} {v}");
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let (s, v) = c.call_as(&ivan, Method::DELETE, &format!("me/tokens/{id}"), None).await?;
        ensure!(s == 200, "revoke {i}: {s} {v}");
    }
    let res = c.http.post(c.url("/_gateway/me/tokens")).bearer_auth(&ivan).json(&json!({"ttl_seconds": 600})).send().await.map_err(|e| e.to_string())?;
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let (s, code, v) = error_code(res).await;
    ensure!(s == 429 && code == "rate_limit_exceeded" && retry.is_some_and(|r| r > 0), "issue {cap} in a day: {s} {code} {v} (Retry-After {retry:?})");

    // Every listing is paged.
    let (s, v) = c.call_as(&ivan, Method::GET, "me/tokens?limit=10", None).await?;
    ensure!(s == 200 && v["tokens"].as_array().is_some_and(|t| t.len() == 10) && v["next_cursor"].is_string(), "first page of own tokens: {s} {v}");
    let (mut seen, mut cursor) = (0, v["next_cursor"].as_str().map(str::to_string));
    seen += 10;
    while let Some(cur) = cursor {
        let (s, v) = c.call_as(&ivan, Method::GET, &format!("me/tokens?limit=10&cursor={cur}"), None).await?;
        ensure!(s == 200, "next page: {s} {v}");
        seen += v["tokens"].as_array().map_or(0, Vec::len);
        cursor = v["next_cursor"].as_str().map(str::to_string);
        ensure!(seen <= cap, "pages repeat tokens: {seen}");
    }
    ensure!(seen == cap, "the pages hold every token once: {seen} of {cap}");
    for path in ["tokens?limit=1", "routes?limit=1", "service-accounts?limit=1"] {
        let (s, v) = c.admin_call(Method::GET, path, None).await?;
        let list = v.as_object().and_then(|o| o.values().find_map(Value::as_array)).map_or(usize::MAX, Vec::len);
        ensure!(s == 200 && list <= 1 && v.get("next_cursor").is_some(), "GET {path}: {s} {v}");
    }
    let (s, v) = c.admin_call(Method::GET, "tokens?limit=0", None).await?;
    ensure!(s == 400 && v["error"]["param"] == "limit", "a bad page size: {s} {v}");
    Ok(())
}

async fn an_endless_admin_body_is_cut_off_unread(c: &Ctx) -> CaseResult {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    // A chunked body with no Content-Length that would go on for 64 MiB, sent without a token.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let body = futures_util::stream::iter(0..1024).map(move |_| {
        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    });
    let res = c.http.put(c.url("/_gateway/routes/endless")).header("content-type", "application/json").body(reqwest::Body::wrap_stream(body)).send().await;
    let at_answer = sent.load(Ordering::SeqCst);
    let (status, code) = match res {
        Ok(r) => {
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (s, v["error"]["code"].as_str().unwrap_or("").to_string())
        }
        Err(e) => return Err(format!("no answer to an endless admin body: {e}")),
    };
    match c.deployment {
        // The Worker stops reading at the limit (1 MiB), before any authentication, and answers
        // 413. wrangler dev's local proxy sometimes turns an answer given while the client is
        // still uploading into its own bare 503; either way the answer came long before the
        // body ended, which is what reading the whole body first could not do.
        Deployment::Edge => {
            // (Its body may be cut off with the connection the proxy drops.)
            ensure!(status == 413 || status == 503 && code.is_empty(), "an endless admin body: {status} {code}");
            ensure!(at_answer < 32 * 1024 * 1024, "the gateway read {at_answer} bytes before answering");
        }
        // The platform takes the body whole (a Function URL refuses over 6 MB); core answers
        // 413 before any token check.
        Deployment::Lambda => ensure!(status == 413 && code == "body_too_large", "an endless admin body: {status} {code}"),
    }
    Ok(())
}

async fn registrars_manage_only_their_own_leases_within_their_scope(c: &Ctx) -> CaseResult {
    let (route, other) = (c.name("reg"), c.name("reg-other"));
    c.route_over(&route, &[&c.a]).await?;
    c.route_over(&other, &[&c.a]).await?;
    let issue = |subject: String, routes: Vec<String>| {
        json!({"subject": subject, "kind": "registrar", "routes": routes, "ttl_seconds": 600, "description": "gpu host",
               "registrar": {"hosts": ["127.0.0.1"], "max_weight": 2, "max_lease_seconds": 60, "max_endpoints": 1}})
    };
    let (s, v) = c.admin_call(Method::POST, "tokens", Some(json!({"subject": "x", "kind": "registrar", "routes": [route], "groups": ["admin"], "ttl_seconds": 600, "registrar": {"hosts": ["127.0.0.1"]}}))).await?;
    ensure!(s == 400, "a registrar with groups: {s} {v}");
    let (_, host7) = c.issue(issue(c.name("gpu-host"), vec![route.clone()])).await?;
    let (_, host8) = c.issue(issue(c.name("gpu-host"), vec![route.clone()])).await?;
    let lease = |weight: u32, lease: u32| json!({"url": c.b.url(), "weight": weight, "lease_seconds": lease});
    let path = format!("routes/{route}/endpoints/gpu-7");

    // Its own lease, within its scope: registered, renewed, served, removed.
    let (s, v) = c.call_as(&host7, Method::PUT, &path, Some(lease(2, 60))).await?;
    ensure!(s == 200 || s == 201, "register: {s} {v}");
    let (s, v) = c.call_as(&host7, Method::PUT, &path, Some(lease(2, 60))).await?;
    ensure!(s == 200 || s == 201, "renew: {s} {v}");
    let (s, v) = c.admin_call(Method::GET, &format!("routes/{route}"), None).await?;
    ensure!(s == 200 && v.to_string().contains("registered_by"), "the admin sees who registered it: {v}");

    // Outside its scope.
    let refusals: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("a route it does not name", format!("routes/{other}/endpoints/gpu-7"), Some(lease(1, 60)), 403),
        ("a weight over its cap", path.clone(), Some(lease(1000, 60)), 400),
        ("a lease over its longest", path.clone(), Some(lease(1, 3600)), 400),
        ("a route's own endpoint", format!("routes/{route}/endpoints/{}", c.a.name()), Some(lease(1, 60)), 403),
        ("a second lease over max_endpoints", format!("routes/{route}/endpoints/gpu-7b"), Some(lease(1, 60)), 403),
    ];
    for (why, p, body, want) in refusals {
        let (s, v) = c.call_as(&host7, Method::PUT, &p, body).await?;
        ensure!(s == want, "{why}: {s} {v}");
    }
    let (s, v) = c.call_as(&host7, Method::PUT, &path, Some(json!({"url": "http://10.9.9.9:8000", "weight": 1, "lease_seconds": 60}))).await?;
    ensure!(s == 403, "a URL outside its hosts: {s} {v}");
    // Another registrar cannot renew or remove it; no other admin call, no data plane.
    let (s, v) = c.call_as(&host8, Method::PUT, &path, Some(lease(1, 60))).await?;
    ensure!(s == 403, "another registrar takes the lease: {s} {v}");
    let (s, v) = c.call_as(&host8, Method::DELETE, &path, None).await?;
    ensure!(s == 403, "another registrar removes the lease: {s} {v}");
    for (m, p) in [(Method::GET, "routes"), (Method::POST, "tokens"), (Method::PUT, &format!("routes/{route}") as &str)] {
        let (s, v) = c.call_as(&host7, m.clone(), p, Some(json!({}))).await?;
        ensure!(s == 403, "{m} {p} as a registrar: {s} {v}");
    }
    let res = c.get(&format!("/{route}/v1/models"), Some(&host7), &[]).await?;
    ensure!(res.status() == 403, "a registrar on the data plane: {}", res.status());
    let (s, v) = c.call_as(&host7, Method::DELETE, &path, None).await?;
    ensure!(s == 200 || s == 204, "deregister its own: {s} {v}");
    let (s, v) = c.admin_call(Method::GET, "audit?limit=100", None).await?;
    let acted = v["entries"].as_array().is_some_and(|es| es.iter().any(|e| e["action"] == "endpoint.register" && e["object"].as_str().is_some_and(|o| o.contains("gpu-7"))));
    ensure!(s == 200 && acted, "registrations are audited: {v}");
    Ok(())
}

async fn production_settings_keep_admin_on_its_host_and_upstreams_off_the_gateways_surroundings(c: &Ctx) -> CaseResult {
    // A second deployment with production's defaults for upstreams (no local upstreams, no
    // via bindings) and a dedicated admin host. Plain HTTP stays allowed so the test can reach it.
    let admin_host = "admin.gateway.test";
    let vars = vec![
        ("GATEWAY_SIGNING_KEYS", crate::TEST_KEYS.to_string()),
        ("GATEWAY_ALLOW_HTTP", "1".to_string()),
        ("GATEWAY_ADMIN_HOST", admin_host.to_string()),
    ];
    let mut lambda_parts = None;
    let running = match c.deployment {
        Deployment::Edge => tokio::task::spawn_blocking(move || deploy::start_edge(&vars, &[], "prod")).await.map_err(|e| e.to_string())?,
        Deployment::Lambda => {
            let d = deploy::start_lambda(&vars, &[], "prod").await;
            lambda_parts = Some((d._emulator, d._dynamo));
            d.gateway
        }
    };
    let base = running.base.clone();
    let outcome = async {
        let call = |host: &'static str, method: Method, path: String, body: Option<Value>| {
            let mut req = c.http.request(method, format!("{base}{path}")).header("host", host).bearer_auth(&c.admin);
            if let Some(b) = body {
                req = req.json(&b);
            }
            async move {
                let res = req.send().await.map_err(|e| e.to_string())?;
                let s = res.status().as_u16();
                Ok::<_, String>((s, res.json::<Value>().await.unwrap_or(Value::Null)))
            }
        };
        // healthz everywhere; the admin API only on its host.
        let (s, _) = call("api.gateway.test", Method::GET, "/_gateway/healthz".into(), None).await?;
        ensure!(s == 200, "healthz on the public host: {s}");
        let (s, v) = call("api.gateway.test", Method::GET, "/_gateway/routes".into(), None).await?;
        ensure!(s == 404, "admin API on the public host: {s} {v}");
        let (s, v) = call("api.gateway.test", Method::GET, "/_gateway/dashboard".into(), None).await?;
        ensure!(s == 404, "dashboard on the public host: {s} {v}");
        let (s, v) = call(admin_host, Method::GET, "/_gateway/routes".into(), None).await?;
        ensure!(s == 200, "admin API on the admin host: {s} {v}");

        // Upstreams on the gateway's own surroundings are refused, naming the field.
        for url in ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "http://169.254.169.254", "http://2130706433:8000", "http://0x7f.1:8000", "http://[::ffff:127.0.0.1]:8000", "http://metadata.google.internal"] {
            let (s, v) = call(admin_host, Method::PUT, "/_gateway/routes/local-up".into(), Some(json!({"endpoints": [{"id": "x", "url": "http://10.0.1.5:8000"}, {"id": "y", "url": url}]}))).await?;
            ensure!(s == 400 && v["error"]["param"] == "endpoints[1].url", "route endpoint {url}: {s} {v}");
        }
        let (s, v) = call(admin_host, Method::PUT, "/_gateway/routes/private-up".into(), Some(json!({"endpoints": [{"id": "x", "url": "http://10.0.1.5:8000"}]}))).await?;
        ensure!(s == 200 || s == 201, "a private-network endpoint is fine: {s} {v}");
        let (s, v) = call(admin_host, Method::PUT, "/_gateway/routes/private-up/endpoints/lease-1".into(), Some(json!({"url": "http://169.254.169.254/latest", "weight": 1, "lease_seconds": 60}))).await?;
        ensure!(s == 400 && v["error"]["param"] == "url", "leased endpoint on the metadata address: {s} {v}");
        let (s, v) = call(admin_host, Method::POST, "/_gateway/ephemeral".into(), Some(json!({"url": "http://127.0.0.1:9", "ttl_seconds": 600, "groups": ["ml-team"]}))).await?;
        ensure!(s == 400 && v["error"]["param"] == "url", "ephemeral route on loopback: {s} {v}");
        let (s, v) = call(admin_host, Method::PUT, "/_gateway/routes/via-up".into(), Some(json!({"endpoints": [{"id": "x", "url": "http://10.0.1.5:8000", "via": "SOME_BINDING"}]}))).await?;
        ensure!(s == 400 && v["error"]["param"] == "endpoints[0].via", "via outside the allow-list: {s} {v}");

        // The admin host never proxies: the route exists, but not there.
        let tok = c.user(&["ml-team"]);
        let res = c.http.get(format!("{base}/private-up/v1/models")).header("host", admin_host).bearer_auth(&tok).send().await.map_err(|e| e.to_string())?;
        ensure!(res.status() == 404, "data plane on the admin host: {}", res.status());
        Ok(())
    }
    .await;
    drop(running);
    drop(lambda_parts);
    outcome
}
