//! Identity (issue 8, `docs/identity-spec.md`): access tokens from a trusted OIDC provider,
//! the hostile tokens it must refuse, its key rotation, self-service tokens, service accounts,
//! partner tokens and their usage, and rotating the gateway's own signing keys.

use crate::{boxed, ensure, error_code, now, Case, CaseResult, Ctx, OIDC_AUDIENCE};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway_core::token::{new_token_id, TokenIssuer, TokenKind, TokenRequest};
use gateway_core::Config;
use gateway_tests::deploy::{self, Deployment};
use gateway_tests::route::RouteJson;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub const ALL: &[Case] = &[
    ("idp_tokens_reach_routes_with_mapped_groups", |c| boxed(idp_tokens_reach_routes_with_mapped_groups(c))),
    ("idp_tokens_refused_401", |c| boxed(idp_tokens_refused_401(c))),
    ("idp_key_rotation_is_picked_up", |c| boxed(idp_key_rotation_is_picked_up(c))),
    ("self_service_tokens_are_isolated", |c| boxed(self_service_tokens_are_isolated(c))),
    ("service_accounts_own_their_tokens", |c| boxed(service_accounts_own_their_tokens(c))),
    ("partner_tokens_carry_metadata_and_usage_groups_by_partner", |c| boxed(partner_tokens_carry_metadata_and_usage_groups_by_partner(c))),
    ("signing_key_rotation_overlap_then_removal", |c| boxed(signing_key_rotation_overlap_then_removal(c))),
];

/// How long a revocation may take to reach the data plane (isolate and instance caches).
const REVOCATION: Duration = Duration::from_secs(10);

/// An RS256 access token from the trusted provider, valid for ten minutes.
fn idp_token(c: &Ctx, subject: &str, groups: &[&str]) -> String {
    c.idp.sign("RS256", "rsa-1", &c.idp.claims_for(subject, groups, OIDC_AUDIENCE, 600))
}

/// Status of a data-plane GET and the stand-in that served it ("" when none did).
async fn served(c: &Ctx, path: &str, token: &str) -> Result<(u16, String), String> {
    let res = c.get(path, Some(token), &[]).await?;
    let status = res.status().as_u16();
    let who = res.headers().get("x-standin-instance").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    res.bytes().await.map_err(|e| format!("GET {path}: body: {e}"))?;
    Ok((status, who))
}

/// Fails unless `res` is a 401 with a Bearer challenge.
async fn expect_401(res: reqwest::Response, why: &str) -> CaseResult {
    let challenge = res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (s, _, v) = error_code(res).await;
    ensure!(s == 401 && challenge.starts_with("Bearer"), "{why}: expected 401 with `WWW-Authenticate: Bearer`, got {s} (challenge {challenge:?}) {v}");
    Ok(())
}

/// Fails unless `token` is refused on `path` with a 401 and a Bearer challenge.
async fn refused(c: &Ctx, path: &str, token: &str, why: &str) -> CaseResult {
    expect_401(c.get(path, Some(token), &[]).await?, why).await
}

/// Part `i` (0 header, 1 claims) of a JWT, decoded.
fn jwt_part(token: &str, i: usize) -> Value {
    token.split('.').nth(i).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
}

/// The item of `list[key]` whose `id` is `id`.
fn find_id<'a>(v: &'a Value, key: &str, id: &str) -> Option<&'a Value> {
    v[key].as_array().and_then(|l| l.iter().find(|t| t["id"] == id))
}

async fn idp_tokens_reach_routes_with_mapped_groups(c: &Ctx) -> CaseResult {
    let name = c.name("idp");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    // `interns` is not in the group map: it must add nothing.
    let claims = c.idp.claims_for("alice@corp.example", &["ml-engineers", "interns"], OIDC_AUDIENCE, 600);
    let rs256 = c.idp.sign("RS256", "rsa-1", &claims);
    let (s, who) = served(c, &path, &rs256).await?;
    ensure!(s == 200 && who == "a", "RS256 token of IdP group ml-engineers on an ml-team route: {s}, served by {who:?}");
    let (s, who) = served(c, &path, &c.idp.sign("ES256", "ec-1", &claims)).await?;
    ensure!(s == 200 && who == "a", "ES256 token: {s}, served by {who:?}");
    let mut listed = claims.clone();
    listed["aud"] = json!(["another-api", OIDC_AUDIENCE]);
    let (s, _) = served(c, &path, &c.idp.sign("RS256", "rsa-1", &listed)).await?;
    ensure!(s == 200, "a token whose `aud` array names the audience: {s}");

    for (groups, why) in [(&["interns"][..], "only an unmapped IdP group"), (&["ml-team"][..], "an IdP group named like a gateway group but not mapped")] {
        let (s, code, v) = error_code(c.get(&path, Some(&idp_token(c, "intern@corp.example", groups)), &[]).await?).await;
        ensure!(s == 403 && code == "forbidden", "{why}: expected 403 forbidden, got {s} {v}");
    }

    let (s, me) = c.call_as(&rs256, Method::GET, "me", None).await?;
    ensure!(s == 200, "GET /_gateway/me with an IdP token: {s} {me}");
    ensure!(me["subject"] == "alice@corp.example", "subject is the `email` claim (subject_claim): {me}");
    ensure!(me["groups"] == json!(["ml-team"]), "groups are the mapped ones only: {me}");
    ensure!(me["provider"] == "corp" && me["kind"] == "user", "provider corp, kind user: {me}");
    let sub = claims["sub"].as_str().unwrap_or_default();
    ensure!(me["token_id"] == format!("oidc:corp:{sub}").as_str(), "token_id is oidc:corp:<sub>: {me}");
    ensure!(me["expires_at"] == claims["exp"], "expires_at is the token's exp {}: {me}", claims["exp"]);

    // Admin rights come from the map too, and only from it.
    let (s, v) = c.call_as(&idp_token(c, "root@corp.example", &["gw-admins"]), Method::GET, "routes", None).await?;
    ensure!(s == 200, "IdP group gw-admins maps to admin: GET routes {s} {v}");
    let (s, _) = c.call_as(&rs256, Method::GET, "routes", None).await?;
    ensure!(s == 403, "an ml-team user on the admin API: {s}");
    Ok(())
}

async fn idp_tokens_refused_401(c: &Ctx) -> CaseResult {
    let name = c.name("idp-refused");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    let good = c.idp.claims_for("mallory@corp.example", &["ml-engineers"], OIDC_AUDIENCE, 600);
    let (s, _) = served(c, &path, &c.idp.sign("RS256", "rsa-1", &good)).await?;
    ensure!(s == 200, "the untampered token works (else the refusals below prove nothing): {s}");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        edit(&mut claims);
        claims
    };
    let without = |claim: &str| {
        let mut claims = good.clone();
        if let Some(o) = claims.as_object_mut() {
            o.remove(claim);
        }
        claims
    };
    let t = now();
    let idp_signed = |claims: Value| c.idp.sign("RS256", "rsa-1", &claims);
    let rogue_header = |header: Value| c.rogue.sign_with_header("RS256", "rsa-1", &header, &good);
    let hostile = [
        ("an issuer that is not configured", idp_signed(with(&|v| v["iss"] = json!("https://idp.not-configured.example")))),
        ("the issuer with a trailing slash", idp_signed(with(&|v| v["iss"] = json!(format!("{}/", c.idp.issuer()))))),
        ("another audience", idp_signed(with(&|v| v["aud"] = json!("another-api")))),
        ("expired ten minutes ago", idp_signed(with(&|v| {
            v["iat"] = json!(t - 3600);
            v["nbf"] = json!(t - 3600);
            v["exp"] = json!(t - 600);
        }))),
        ("nbf ten minutes ahead", idp_signed(with(&|v| v["nbf"] = json!(t + 600)))),
        ("no exp", idp_signed(without("exp"))),
        ("no sub", idp_signed(without("sub"))),
        ("HS256 keyed with rsa-1's public key", c.idp.sign_hs256_with_public_key("rsa-1", &good)),
        ("alg none", c.idp.sign_with_header("none", "rsa-1", &json!({}), &good)),
        ("RS384, not among the provider's algorithms", c.idp.sign("RS384", "rsa-1", &good)),
        ("an ES256 header over an RS256 signature", c.idp.sign_with_header("RS256", "rsa-1", &json!({"alg": "ES256"}), &good)),
        ("the rogue provider's own token", c.rogue.sign("RS256", "rsa-1", &c.rogue.claims_for("mallory@corp.example", &["ml-engineers"], OIDC_AUDIENCE, 600))),
        ("the trusted issuer signed with the rogue's rsa-1", c.rogue.sign("RS256", "rsa-1", &good)),
        ("a jku header pointing at the rogue's JWKS", rogue_header(json!({"jku": c.rogue.jwks_url()}))),
        ("an x5u header pointing at the rogue's JWKS", rogue_header(json!({"x5u": c.rogue.jwks_url()}))),
        ("the rogue's key embedded as a jwk header", rogue_header(json!({"jwk": c.rogue.public_jwk("rsa-1")}))),
    ];
    let upstream_before = c.a.requests();
    let rogue_fetches = c.rogue.jwks_fetches();
    for (why, token) in &hostile {
        refused(c, &path, token, why).await?;
    }

    // An unknown kid makes the gateway look again (at most once per 5 s), then still refuse.
    let unknown = c.idp.sign_with_header("RS256", "rsa-1", &json!({"kid": "never-published"}), &good);
    let fetches = c.idp.jwks_fetches();
    c.eventually("a token with an unknown kid makes the gateway refetch the JWKS", Duration::from_secs(8), || async {
        refused(c, &path, &unknown, "an unknown kid").await?;
        Ok(c.idp.jwks_fetches() > fetches)
    })
    .await?;
    let after = c.idp.jwks_fetches();
    for _ in 0..5 {
        refused(c, &path, &unknown, "an unknown kid, again").await?;
    }
    let burst = c.idp.jwks_fetches() - after;
    ensure!(burst <= 1, "5 unknown-kid tokens in a row fetched the JWKS {burst} times; at most once per 5 s");

    ensure!(c.rogue.jwks_fetches() == rogue_fetches, "the gateway fetched the rogue's JWKS ({} times) because a token pointed there", c.rogue.jwks_fetches() - rogue_fetches);
    ensure!(c.a.requests() == upstream_before, "{} refused request(s) reached the upstream", c.a.requests() - upstream_before);
    Ok(())
}

async fn idp_key_rotation_is_picked_up(c: &Ctx) -> CaseResult {
    let name = c.name("idp-rotation");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    let claims = c.idp.claims_for("rotated@corp.example", &["ml-engineers"], OIDC_AUDIENCE, 600);
    let next = c.idp.sign("RS256", "rsa-2", &claims);
    refused(c, &path, &next, "a token signed with rsa-2 before the IdP publishes it").await?;
    c.idp.publish("rsa-2");
    // The refresh floor: an unknown kid refetches at most once per 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (s, who) = served(c, &path, &next).await?;
    ensure!(s == 200 && who == "a", "rsa-2 token 5.5 s after the IdP published rsa-2: {s}, served by {who:?}");
    let (s, _) = served(c, &path, &c.idp.sign("RS256", "rsa-1", &claims)).await?;
    ensure!(s == 200, "rsa-1 still works after the rotation: {s}");
    Ok(())
}

async fn self_service_tokens_are_isolated(c: &Ctx) -> CaseResult {
    let name = c.name("self-service");
    c.route_over(&name, &[&c.a]).await?;
    let path = format!("/{name}/v1/models");
    let (alice, bob) = (format!("{}@corp.example", c.name("alice")), format!("{}@corp.example", c.name("bob")));
    let (a, b) = (idp_token(c, &alice, &["ml-engineers"]), idp_token(c, &bob, &["ml-engineers"]));

    let (s, v) = c.call_as(&a, Method::POST, "me/tokens", Some(json!({"ttl_seconds": 600, "description": "a"}))).await?;
    ensure!(s == 201, "A issues herself a token: {s} {v}");
    let (id, mine) = (v["id"].as_str().unwrap_or_default().to_string(), v["token"].as_str().unwrap_or_default().to_string());
    ensure!(!id.is_empty() && mine.split('.').count() == 3, "201 holds id and token: {v}");
    ensure!(v["expires_at"].as_u64().is_some_and(|e| e <= now() + 601), "expires within its ttl: {v}");
    let (s, who) = served(c, &path, &mine).await?;
    ensure!(s == 200 && who == "a", "the self-service token on an ml-team route: {s}, served by {who:?}");
    let (s, me) = c.call_as(&mine, Method::GET, "me", None).await?;
    ensure!(s == 200 && me["subject"] == alice.as_str() && me["kind"] == "user" && me["groups"] == json!(["ml-team"]), "the token is A's, kind user, her groups: {s} {me}");

    let (s, v) = c.call_as(&a, Method::POST, "me/tokens", Some(json!({"ttl_seconds": 600, "groups": ["admin"]}))).await?;
    ensure!(s == 403 && v["error"]["code"] == "forbidden", "A asks for a group she lacks: {s} {v}");
    let (s, v) = c.call_as(&a, Method::POST, "me/tokens", Some(json!({"ttl_seconds": 91 * 86400}))).await?;
    ensure!(s == 400, "ttl over GATEWAY_MAX_TOKEN_TTL_SECONDS: {s} {v}");
    let (s, v) = c.call_as(&a, Method::POST, "me/tokens", Some(json!({"description": "forever"}))).await?;
    ensure!(s == 400, "no ttl_seconds: {s} {v}");

    // The owner is the provider's stable `sub`, not the e-mail a user could change.
    let (_, me_a) = c.call_as(&a, Method::GET, "me", None).await?;
    let owner = me_a["token_id"].as_str().unwrap_or_default().to_string();
    ensure!(owner.starts_with("oidc:corp:") && !owner.contains(alice.as_str()), "A's identity is oidc:corp:{{sub}}: {me_a}");
    let (s, v) = c.call_as(&a, Method::GET, "me/tokens", None).await?;
    let record = find_id(&v, "tokens", &id).cloned().unwrap_or(Value::Null);
    ensure!(s == 200 && record["owner"] == owner.as_str(), "A lists her token with owner {owner}: {s} {v}");
    ensure!(!v.to_string().contains(&mine), "the list never holds the token itself");
    let (s, v) = c.call_as(&a, Method::GET, &format!("me/tokens/{id}"), None).await?;
    ensure!(s == 200 && v["id"] == id.as_str(), "A reads her token: {s} {v}");

    let (s, v) = c.call_as(&b, Method::GET, "me/tokens", None).await?;
    ensure!(s == 200 && v["tokens"].is_array() && find_id(&v, "tokens", &id).is_none(), "B's list must not show A's token: {s} {v}");
    for method in [Method::GET, Method::DELETE] {
        let (s, v) = c.call_as(&b, method.clone(), &format!("me/tokens/{id}"), None).await?;
        ensure!(s == 404 && v["error"]["code"] == "not_found", "B {method} A's token: expected 404 not_found (existence not revealed), got {s} {v}");
    }
    let (s, _) = c.call_as(&b, Method::GET, "tokens", None).await?;
    ensure!(s == 403, "B on the admin token list: {s}");
    let (s, _) = served(c, &path, &mine).await?;
    ensure!(s == 200, "B's DELETE left A's token working: {s}");

    let (s, v) = c.admin_call(Method::GET, &format!("tokens?q={alice}"), None).await?;
    let record = find_id(&v, "tokens", &id).cloned().unwrap_or(Value::Null);
    ensure!(s == 200 && record["owner"] == owner.as_str(), "the admin sees A's token with its owner: {s} {v}");

    // Only people signed in through the IdP serve themselves; gateway tokens (including
    // self-service ones) cannot mint more.
    let (_, issued) = c.issue(json!({"subject": alice, "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600})).await?;
    for (token, why) in [(&issued, "an admin-issued user token"), (&mine, "a self-service token"), (&c.user(&["ml-team"]), "an offline user token")] {
        let (s, v) = c.call_as(token, Method::POST, "me/tokens", Some(json!({"ttl_seconds": 600}))).await?;
        ensure!(s == 403, "{why} calling POST /_gateway/me/tokens: {s} {v}");
    }
    let (s, me) = c.call_as(&issued, Method::GET, "me", None).await?;
    ensure!(s == 200 && me["provider"].is_null(), "a gateway token's provider is null: {s} {me}");

    let (s, v) = c.call_as(&a, Method::DELETE, &format!("me/tokens/{id}"), None).await?;
    // The spec answers {"revoked": id}; the admin revoke answers {"id", "revoked": true}.
    ensure!(s == 200 && (v["revoked"] == id.as_str() || v["id"] == id.as_str()), "A revokes her token: {s} {v}");
    c.eventually("A's revoked self-service token is refused", REVOCATION, || async { Ok(served(c, &path, &mine).await?.0 == 401) }).await?;
    Ok(())
}

async fn service_accounts_own_their_tokens(c: &Ctx) -> CaseResult {
    let route = c.name("svc-route");
    c.route_over(&route, &[&c.a]).await?;
    let path = format!("/{route}/v1/models");
    let svc = c.name("svc-x");
    let account = json!({"name": svc, "groups": ["ml-team"], "owner": "team-ml@corp.example", "description": "nightly evals"});
    let (s, v) = c.admin_call(Method::POST, "service-accounts", Some(account.clone())).await?;
    ensure!(s == 201, "create {svc}: {s} {v}");
    ensure!(v["name"] == svc.as_str() && v["groups"] == json!(["ml-team"]) && v["owner"] == "team-ml@corp.example", "the account as created: {v}");
    ensure!(v["created_by"] == "contract-admin" && v["created_at"].as_u64().is_some_and(|t| t + 60 > now()), "who and when: {v}");
    let (s, v) = c.admin_call(Method::POST, "service-accounts", Some(account.clone())).await?;
    ensure!(s == 409 && v["error"]["code"] == "conflict", "creating {svc} twice: {s} {v}");

    let token_path = format!("service-accounts/{svc}/tokens");
    for (who, token) in [("an ml-team user", c.user(&["ml-team"])), ("an IdP user", idp_token(c, "eve@corp.example", &["ml-engineers"]))] {
        for (method, call, body) in [
            (Method::POST, "service-accounts".to_string(), Some(json!({"name": c.name("svc-y"), "groups": ["ml-team"], "owner": "eve@corp.example"}))),
            (Method::GET, "service-accounts".to_string(), None),
            (Method::GET, format!("service-accounts/{svc}"), None),
            (Method::POST, token_path.clone(), Some(json!({"ttl_seconds": 600}))),
            (Method::DELETE, format!("service-accounts/{svc}"), None),
        ] {
            let (s, v) = c.call_as(&token, method.clone(), &call, body).await?;
            ensure!(s == 403, "{who}: {method} /_gateway/{call}: expected 403, got {s} {v}");
        }
    }

    let (s, v) = c.admin_call(Method::POST, &token_path, Some(json!({"ttl_seconds": 600, "description": "nightly"}))).await?;
    ensure!(s == 201, "a token for {svc}: {s} {v}");
    let (id, token) = (v["id"].as_str().unwrap_or_default().to_string(), v["token"].as_str().unwrap_or_default().to_string());
    let (s, me) = c.call_as(&token, Method::GET, "me", None).await?;
    ensure!(s == 200 && me["kind"] == "service" && me["subject"] == svc.as_str() && me["groups"] == json!(["ml-team"]), "the token is {svc}'s, kind service: {s} {me}");
    let (s, who) = served(c, &path, &token).await?;
    ensure!(s == 200 && who == "a", "{svc}'s token on an ml-team route: {s}, served by {who:?}");

    let (s, v) = c.admin_call(Method::GET, &format!("service-accounts/{svc}"), None).await?;
    ensure!(s == 200 && v["name"] == svc.as_str() && find_id(&v, "tokens", &id).is_some(), "the account lists its token {id}: {s} {v}");
    let (s, v) = c.admin_call(Method::GET, "service-accounts", None).await?;
    let listed = v["service_accounts"].as_array().is_some_and(|l| l.iter().any(|a| a["name"] == svc.as_str()));
    ensure!(s == 200 && listed, "{svc} in the list: {s} {v}");

    let (s, v) = c.admin_call(Method::DELETE, &format!("service-accounts/{svc}"), None).await?;
    ensure!(s == 200 && v["deleted"] == svc.as_str() && v["revoked_tokens"].as_u64().is_some_and(|n| n >= 1), "delete {svc} revokes its tokens: {s} {v}");
    c.eventually(&format!("{svc}'s token refused after the account was deleted"), REVOCATION, || async { Ok(served(c, &path, &token).await?.0 == 401) }).await?;
    let (s, _) = c.admin_call(Method::GET, &format!("service-accounts/{svc}"), None).await?;
    ensure!(s == 404, "{svc} is gone: {s}");

    let (s, v) = c.admin_call(Method::GET, "audit?limit=200", None).await?;
    ensure!(s == 200, "audit: {s} {v}");
    let ours: Vec<&Value> = v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["actor"] == "contract-admin" && e["outcome"] == "ok" && e["object"].as_str().is_some_and(|o| o.contains(svc.as_str()) || o.contains(id.as_str())))
        .collect();
    ensure!(ours.len() >= 3, "creating {svc}, issuing its token and deleting it are audited (3 entries), found {}: {ours:?}", ours.len());
    Ok(())
}

async fn partner_tokens_carry_metadata_and_usage_groups_by_partner(c: &Ctx) -> CaseResult {
    let name = c.name("partner-route");
    c.route_over(&name, &[&c.a]).await?;
    // Unique per run: other cases mint partner tokens too, and usage is counted per partner.
    let partner = c.name("acme");
    let body = |metadata: Value| json!({"subject": format!("{partner}-portal"), "kind": "partner", "groups": [], "routes": [name], "ttl_seconds": 600, "metadata": metadata});
    for (metadata, field) in [
        (json!({}), "metadata.partner"),
        (json!({"contract_id": "C-42"}), "metadata.partner"),
        (json!({"partner": "Acme Corp!", "contract_id": "C-42"}), "metadata.partner"),
        (json!({"partner": partner}), "metadata.contract_id"),
    ] {
        let (s, v) = c.admin_call(Method::POST, "tokens", Some(body(metadata.clone()))).await?;
        ensure!(s == 400 && v["error"]["param"] == field, "partner token with metadata {metadata}: expected 400 naming {field}, got {s} {v}");
    }
    let (id, token) = c.issue(body(json!({"partner": partner, "contract_id": "C-42"}))).await?;
    ensure!(jwt_part(&token, 1)["partner"] == partner.as_str(), "the token carries claim partner={partner}: {}", jwt_part(&token, 1));
    for i in 0..3 {
        let (s, who) = served(c, &format!("/{name}/v1/models"), &token).await?;
        ensure!(s == 200 && who == "a", "partner request {i} on its route: {s}, served by {who:?}");
    }

    c.eventually(&format!("partners.{partner}.requests reaches 3"), Duration::from_secs(20), || async {
        let (s, v) = c.admin_call(Method::GET, "metrics", None).await?;
        ensure!(s == 200, "GET metrics: {s} {v}");
        let p = &v["partners"][&partner];
        let n = p["requests"].as_u64().unwrap_or(0);
        ensure!(n <= 3, "{partner} counted {n} requests, more than the 3 sent: {p}");
        ensure!(n < 3 || p["routes"][&name] == 3, "{partner}'s requests by route: {p}");
        Ok(n == 3)
    })
    .await?;
    let (s, v) = c.admin_call(Method::GET, "metrics", None).await?;
    ensure!(s == 200 && v["tokens"][&id]["requests"] == 3, "the partner token's own count: {}", v["tokens"][&id]);

    let res = c.http.get(c.url("/_gateway/metrics/prometheus")).bearer_auth(&c.admin).send().await.map_err(|e| e.to_string())?;
    ensure!(res.status() == 200, "prometheus: {}", res.status());
    let text = res.text().await.map_err(|e| e.to_string())?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(|e| format!("parse: {e}"))?;
    let sample = scrape.samples.iter().find(|s| s.metric == "gateway_partner_requests_total" && s.labels.get("partner") == Some(partner.as_str()));
    match sample.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(n)) | Some(prometheus_parse::Value::Untyped(n)) if *n == 3.0 => Ok(()),
        other => Err(format!("gateway_partner_requests_total{{partner=\"{partner}\"}}: expected 3, got {other:?}")),
    }
}

/// HS256 keys of the rotation case (test values, worthless).
const OLD_KEY: &str = r#"{"kid":"old-1","alg":"HS256","secret":"cm90YXRpb24tY29udHJhY3Qtb2xkLWtleS0zMi1ieXRlcyEh"}"#;
const NEW_KEY: &str = r#"{"kid":"new-1","alg":"HS256","secret":"cm90YXRpb24tY29udHJhY3QtbmV3LWtleS0zMi1ieXRlcyEh"}"#;

/// A deployment a case starts for itself; dropping it stops every process it started.
struct Extra {
    gateway: deploy::Running,
    // Declared after the gateway, so dropped after it (as `run` does).
    _lambda: Option<(deploy::Running, deploy::Running)>,
}

/// Starts a deployment of the same kind as the suite's in the background (so several start at once).
async fn start_extra(d: Deployment, vars: Vec<(&'static str, String)>, seeds: Vec<deploy::Seed>, tag: &'static str) -> Result<Extra, String> {
    match d {
        Deployment::Edge => tokio::task::spawn_blocking(move || Extra { gateway: deploy::start_edge(&vars, &seeds, tag), _lambda: None }).await,
        Deployment::Lambda => {
            tokio::spawn(async move {
                let l = deploy::start_lambda(&vars, &seeds, tag).await;
                Extra { gateway: l.gateway, _lambda: Some((l._emulator, l._dynamo)) }
            })
            .await
        }
    }
    .map_err(|e| format!("starting the {tag} deployment: {e}"))
}

/// Mints a token offline under `keys` (a `GATEWAY_SIGNING_KEYS` value; the first key signs).
fn mint(keys: &str, subject: &str, groups: &[&str]) -> Result<String, String> {
    let cfg = Config::from_lookup(&|k| (k == "GATEWAY_SIGNING_KEYS").then(|| keys.to_string())).map_err(|e| format!("config for {keys}: {e}"))?;
    let req = TokenRequest {
        rate_limit_rpm: None,
        subject: subject.into(),
        kind: TokenKind::User,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        routes: None,
        ttl_seconds: Some(3600),
        description: "rotation".into(),
        metadata: Default::default(),
        registrar: None,
    };
    let jti = new_token_id().map_err(|e| e.to_string())?;
    TokenIssuer::new(&cfg).issue(&req, now(), jti).map(|(t, _)| t).map_err(|e| format!("mint: {e}"))
}

/// Status of `GET {base}{path}` with `token`, and the stand-in that served it.
async fn get_at(c: &Ctx, base: &str, path: &str, token: &str) -> Result<(u16, String), String> {
    let res = c.http.get(format!("{base}{path}")).bearer_auth(token).send().await.map_err(|e| format!("GET {base}{path}: {e}"))?;
    let status = res.status().as_u16();
    let who = res.headers().get("x-standin-instance").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    res.bytes().await.map_err(|e| format!("GET {base}{path}: body: {e}"))?;
    Ok((status, who))
}

/// An admin call on the deployment at `base`.
async fn call_at(c: &Ctx, base: &str, token: &str, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
    let mut req = c.http.request(method, format!("{base}/_gateway/{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.map_err(|e| format!("{base} admin call {path}: {e}"))?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn signing_key_rotation_overlap_then_removal(c: &Ctx) -> CaseResult {
    let route = "rotation";
    let seed = || {
        let json = RouteJson::new().endpoint("a", c.a.url()).with("name", json!(route)).with("managed_by", json!("terraform")).json();
        vec![deploy::Seed { name: route.to_string(), json: json.to_string() }]
    };
    let vars = |keys: String, kid: Option<&str>| {
        let mut v = vec![("GATEWAY_SIGNING_KEYS", keys), ("GATEWAY_ALLOW_HTTP", "1".to_string()), ("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "1".to_string()), ("GATEWAY_CACHE_SECONDS", "1".to_string())];
        v.extend(kid.map(|k| ("GATEWAY_SIGNING_KID", k.to_string())));
        v
    };
    let (old, new, both) = (format!("[{OLD_KEY}]"), format!("[{NEW_KEY}]"), format!("[{OLD_KEY},{NEW_KEY}]"));
    // Overlap: both keys verify, the new one signs. Removal: only the new one is left.
    let (overlap, removed) = tokio::join!(
        start_extra(c.deployment, vars(both, Some("new-1")), seed(), "rot1"),
        start_extra(c.deployment, vars(new.clone(), None), seed(), "rot2"),
    );
    // Either may have failed; whichever started is stopped when it goes out of scope, as both
    // are on every return below.
    let (overlap, removed) = (overlap?, removed?);
    let path = format!("/{route}/v1/models");
    let by_old = mint(&old, "rotation-user-a", &["ml-team"])?;
    let by_new = mint(&new, "rotation-user-b", &["ml-team"])?;

    let base = overlap.gateway.base.as_str();
    for (token, why) in [(&by_old, "token A, signed by the old key"), (&by_new, "token B, signed by the new key")] {
        let (s, who) = get_at(c, base, &path, token).await?;
        ensure!(s == 200 && who == "a", "overlap: {why} on the seeded route: {s}, served by {who:?}");
    }
    let admin_old = mint(&old, "rotation-admin", &["admin"])?;
    let (s, v) = call_at(c, base, &admin_old, Method::POST, "tokens", Some(json!({"subject": "rotation-issued", "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600}))).await?;
    ensure!(s == 201, "overlap: an admin token signed by the old key issues a token: {s} {v}");
    let issued = v["token"].as_str().unwrap_or_default().to_string();
    ensure!(jwt_part(&issued, 0)["kid"] == "new-1", "overlap: the issued token is signed by new-1: {}", jwt_part(&issued, 0));
    let (s, _) = get_at(c, base, &path, &issued).await?;
    ensure!(s == 200, "overlap: the issued token works: {s}");
    let (s, v) = call_at(c, base, &admin_old, Method::GET, "keys", None).await?;
    ensure!(s == 200 && v["signing_kid"] == "new-1", "overlap: GET keys names new-1 as the signing key: {s} {v}");
    let key = |kid: &str| v["keys"].as_array().and_then(|k| k.iter().find(|k| k["kid"] == kid)).cloned().unwrap_or(Value::Null);
    let (k_old, k_new) = (key("old-1"), key("new-1"));
    ensure!(k_new["signing"] == true && k_new["tokens_outstanding"] == 1, "overlap: new-1 signs and has the one issued token outstanding: {v}");
    ensure!(k_old["signing"] == false && k_old["tokens_outstanding"] == 0, "overlap: old-1 has no recorded token outstanding (offline tokens are not recorded): {v}");
    ensure!(k_new["last_expiry"] == jwt_part(&issued, 1)["exp"], "overlap: new-1's last_expiry is the issued token's exp: {v}");

    let base = removed.gateway.base.as_str();
    expect_401(c.http.get(format!("{base}{path}")).bearer_auth(&by_old).send().await.map_err(|e| e.to_string())?, "removal: token A after its key was removed").await?;
    let (s, who) = get_at(c, base, &path, &by_new).await?;
    ensure!(s == 200 && who == "a", "removal: token B still works: {s}, served by {who:?}");
    Ok(())
}
