use super::*;
use crate::config::tests::test_config;
use crate::store::{AdminStore, MemoryStore, RouteSource};
use crate::token::{OsRandom, SeededIds, TokenKind, TokenRequest, TokenVerifier};
use futures_executor::block_on;

const NOW: u64 = 1_800_000_000;

fn admin_token(cfg: &Config, groups: &[&str]) -> http::HeaderValue {
    let req = TokenRequest {
        rate_limit_rpm: None,
        subject: "ops".into(),
        kind: TokenKind::User,
        groups: groups.iter().map(|s| s.to_string()).collect(),
        routes: None,
        ttl_seconds: Some(3600),
        description: String::new(),
        metadata: Default::default(),
        registrar: None,
    };
    let (t, _) = TokenIssuer::new(cfg).issue(&req, NOW, "tok_admin".into()).unwrap();
    http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
}

/// One admin call at `now`, as an adapter hands it over.
#[allow(clippy::too_many_arguments)]
fn admin_request(
    cfg: &Config,
    store: &MemoryStore,
    now: u64,
    auth: Option<&http::HeaderValue>,
    method: Method,
    path: &str,
    body: &str,
    trace_id: Option<&str>,
) -> Result<AdminReply> {
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(String::from).collect();
    block_on(handle(cfg, store, now, AdminRequest { method: &method, segments: &segs, query: None, authorization: auth, body: body.as_bytes(), trace_id, ids: &OsRandom }))
}

fn call(cfg: &Config, store: &MemoryStore, auth: Option<&http::HeaderValue>, method: Method, path: &str, body: &str) -> Result<AdminReply> {
    admin_request(cfg, store, NOW, auth, method, path, body, None)
}

/// An identity provider user's bearer header (see `oidc::tests`), with IdP group `ml-engineers` → `ml-team`.
fn idp_user(email: &str) -> http::HeaderValue {
    let mut c = crate::oidc::tests::claims();
    c["email"] = serde_json::json!(email);
    c["sub"] = serde_json::json!(format!("id-{email}"));
    let t = crate::oidc::tests::sign(crate::oidc::tests::ed_header("ed-1"), &c);
    http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
}

#[test]
fn self_service_tokens_belong_to_their_owner_only() {
    let cfg = crate::oidc::tests::config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team"]})));
    let store = crate::oidc::tests::store();
    let (alice, bob) = (idp_user("alice@corp.example"), idp_user("bob@corp.example"));
    let me = call(&cfg, &store, Some(&alice), Method::GET, "me", "").unwrap().body;
    assert_eq!((me["subject"].as_str(), me["provider"].as_str(), &me["groups"]), (Some("alice@corp.example"), Some("corp"), &json!(["ml-team"])));

    let made = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600, "description": "nb"}"#).unwrap();
    assert_eq!(made.status, StatusCode::CREATED);
    let id = made.body["id"].as_str().unwrap().to_string();
    let p = TokenVerifier::new(&cfg).verify(made.body["token"].as_str().unwrap(), NOW).unwrap();
    assert_eq!((p.subject.as_str(), p.groups.clone(), p.kind), ("alice@corp.example", vec!["ml-team".to_string()], TokenKind::User));
    // Groups she lacks, lifetimes over the maximum.
    assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600, "groups": ["admin"]}"#), Err(Error::Forbidden(_))));
    assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 999999999}"#), Err(Error::BadRequest { .. })));

    // Bob sees nothing of hers and cannot touch it; admins' calls are not his.
    assert_eq!(call(&cfg, &store, Some(&bob), Method::GET, "me/tokens", "").unwrap().body["tokens"], json!([]));
    assert!(matches!(call(&cfg, &store, Some(&bob), Method::GET, &format!("me/tokens/{id}"), ""), Err(Error::NotFound(_))));
    assert!(matches!(call(&cfg, &store, Some(&bob), Method::DELETE, &format!("me/tokens/{id}"), ""), Err(Error::NotFound(_))));
    assert!(matches!(call(&cfg, &store, Some(&bob), Method::GET, "tokens", ""), Err(Error::Forbidden(_))));
    // A gateway token cannot mint more tokens for itself.
    let gw = admin_token(&cfg, &["ml-team"]);
    assert!(matches!(call(&cfg, &store, Some(&gw), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#), Err(Error::Forbidden(_))));

    let mine = call(&cfg, &store, Some(&alice), Method::GET, "me/tokens", "").unwrap().body;
    assert_eq!(mine["tokens"][0]["owner"], "oidc:corp:id-alice@corp.example");
    // No own rate limit, no admin, at most 30 days, at most 25 at once.
    assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600, "rate_limit_rpm": 1000000}"#), Err(Error::BadRequest { .. })));
    assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", &format!(r#"{{"ttl_seconds": {}}}"#, MAX_SELF_SERVICE_TTL + 1)), Err(Error::BadRequest { .. })));
    for _ in 1..MAX_SELF_SERVICE_TOKENS {
        call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#).unwrap();
    }
    assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#), Err(Error::Forbidden(_))));
    call(&cfg, &store, Some(&alice), Method::DELETE, &format!("me/tokens/{id}"), "").unwrap();
    assert!(block_on(store.is_revoked(&id)).unwrap());
    let audit = block_on(store.audit(None, 1000)).unwrap();
    assert!(audit.iter().any(|e| e.action == "token.revoke" && e.actor == "alice@corp.example" && e.outcome == "ok"));
    assert!(audit.iter().any(|e| e.action == "token.issue" && e.object == format!("token/{id}")));
}

#[test]
fn an_oversized_admin_body_is_413_before_any_token_check() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let big = "x".repeat(MAX_ADMIN_BODY + 1);
    // No token at all: the size answers first, as at the edge where it is checked while reading.
    assert!(matches!(call(&cfg, &store, None, Method::PUT, "routes/big", &big), Err(Error::PayloadTooLarge { .. })));
    assert!(matches!(call(&cfg, &store, None, Method::PUT, "routes/big", "{}"), Err(Error::MissingToken)));
}

#[test]
fn listings_are_paged_by_cursor() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    for i in 0..5 {
        let body = format!(r#"{{"subject": "svc-{i}", "kind": "service", "groups": ["ml-team"], "ttl_seconds": 600}}"#);
        call(&cfg, &store, Some(&admin), Method::POST, "tokens", &body).unwrap();
    }
    let page = |q: &str| {
        let segs = vec!["tokens".to_string()];
        block_on(handle(
            &cfg,
            &store,
            NOW,
            AdminRequest {
                method: &Method::GET,
                segments: &segs,
                query: Some(q),
                authorization: Some(&admin),
                body: b"",
                trace_id: None,
                ids: &OsRandom,
            },
        ))
    };
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_string(),
        };
        let body = page(&q).unwrap().body;
        let ids: Vec<String> = body["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5), "every token once: {seen:?}");
    assert!(matches!(page("limit=0"), Err(Error::BadRequest { .. })));
    assert!(matches!(page("limit=1001"), Err(Error::BadRequest { .. })));
    let all = page("").unwrap().body;
    assert_eq!((all["tokens"].as_array().map(Vec::len), &all["next_cursor"]), (Some(5), &Value::Null));
}

#[test]
fn self_service_issuance_is_bounded_per_day_even_when_revoked() {
    let cfg = crate::oidc::tests::config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team"]})));
    let store = crate::oidc::tests::store();
    let alice = idp_user("alice@corp.example");
    for _ in 0..MAX_SELF_SERVICE_ISSUES_PER_DAY {
        let made = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#).unwrap();
        let id = made.body["id"].as_str().unwrap().to_string();
        call(&cfg, &store, Some(&alice), Method::DELETE, &format!("me/tokens/{id}"), "").unwrap();
    }
    let refused = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#);
    assert!(matches!(refused, Err(Error::RateLimited { retry_after, .. }) if retry_after > 0 && retry_after <= 24 * 3600), "{refused:?}");
}

#[test]
fn token_records_past_keeping_are_pruned_but_revocations_stay() {
    let store = MemoryStore::default();
    let rec = |id: &str, expires_at: u64, revoked_at: Option<u64>| TokenRecord { revoked_at, ..crate::fixtures::token_record(id, expires_at) };
    block_on(store.put_token(&rec("tok_old", NOW - 31 * 24 * 3600, None))).unwrap();
    block_on(store.revoke(&rec("tok_gone", NOW + 3600, Some(NOW - 3 * 24 * 3600)))).unwrap();
    block_on(store.revoke(&rec("tok_recent", NOW + 3600, Some(NOW - 3600)))).unwrap();
    block_on(store.put_token(&rec("tok_live", NOW + 3600, None))).unwrap();
    assert_eq!(block_on(prune_tokens(&store, NOW)).unwrap(), 2);
    let left: Vec<String> = block_on(store.list_tokens()).unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(left, ["tok_live", "tok_recent"]);
    assert!(block_on(store.is_revoked("tok_gone")).unwrap(), "the revocation outlives the record");
}

#[test]
fn revoking_a_subject_refuses_every_token_it_held_then() {
    let cfg = crate::oidc::tests::config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team"]})));
    let store = crate::oidc::tests::store();
    let (alice, bob) = (idp_user("alice@corp.example"), idp_user("bob@corp.example"));
    let admin = admin_token(&cfg, &["admin"]);
    let made = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#).unwrap();
    let own = http::HeaderValue::from_str(&format!("Bearer {}", made.body["token"].as_str().unwrap())).unwrap();
    let auth = |h: &http::HeaderValue| block_on(crate::identity::authenticate(&cfg, &store, Some(h), NOW));
    assert!(auth(&alice).is_ok() && auth(&own).is_ok());

    // Only admins; the subject is named as listings show it.
    assert!(matches!(call(&cfg, &store, Some(&bob), Method::POST, "subjects/alice@corp.example/revoke", ""), Err(Error::Forbidden(_))));
    let r = call(&cfg, &store, Some(&admin), Method::POST, "subjects/alice@corp.example/revoke", "").unwrap();
    assert_eq!(r.body["tokens_revoked"].as_array().map(Vec::len), Some(1), "{}", r.body);
    assert!(matches!(auth(&alice), Err(Error::TokenRevoked)), "her sign-in");
    assert!(matches!(auth(&own), Err(Error::TokenRevoked)), "her self-service token");
    assert!(auth(&bob).is_ok(), "others are untouched");
    // A sign-in issued after the revocation is a new decision of the identity provider's.
    let mut later = crate::oidc::tests::claims();
    later["iat"] = json!(NOW + 1);
    let t = crate::oidc::tests::sign(crate::oidc::tests::ed_header("ed-1"), &later);
    assert!(auth(&http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()).is_ok());
    // Revoking by the stable IdP id works too.
    call(&cfg, &store, Some(&admin), Method::POST, "subjects/oidc:corp:id-bob@corp.example/revoke", "").unwrap();
    assert!(matches!(auth(&bob), Err(Error::TokenRevoked)));
    let audit = block_on(store.audit(None, 1000)).unwrap();
    assert!(audit.iter().any(|e| e.action == "subject.revoke" && e.object == "subject/alice@corp.example" && e.outcome == "ok"));
    assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "subjects/a\u{1}b/revoke", ""), Err(Error::BadRequest { .. })));
}

#[test]
fn deleting_a_service_account_revokes_its_tokens() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    let body = r#"{"name": "svc-x", "groups": ["ml-team"], "owner": "team-ml@corp.example"}"#;
    assert_eq!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts", body).unwrap().status, StatusCode::CREATED);
    assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts", body), Err(Error::Conflict(_))));
    assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts", r#"{"name": "Bad Name", "owner": "x"}"#), Err(Error::BadRequest { .. })));
    let tok = call(&cfg, &store, Some(&admin), Method::POST, "service-accounts/svc-x/tokens", r#"{"ttl_seconds": 600}"#).unwrap().body;
    let p = TokenVerifier::new(&cfg).verify(tok["token"].as_str().unwrap(), NOW).unwrap();
    assert_eq!((p.kind, p.subject.as_str(), p.groups.clone()), (TokenKind::Service, "svc-x", vec!["ml-team".to_string()]));
    assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts/svc-x/tokens", r#"{"ttl_seconds": 600, "groups": ["admin"]}"#), Err(Error::BadRequest { .. })));
    let shown = call(&cfg, &store, Some(&admin), Method::GET, "service-accounts/svc-x", "").unwrap().body;
    assert_eq!(shown["tokens"][0]["id"], tok["id"]);
    let user = admin_token(&cfg, &["ml-team"]);
    assert!(matches!(call(&cfg, &store, Some(&user), Method::DELETE, "service-accounts/svc-x", ""), Err(Error::Forbidden(_))));
    let gone = call(&cfg, &store, Some(&admin), Method::DELETE, "service-accounts/svc-x", "").unwrap().body;
    assert_eq!(gone["revoked_tokens"], 1);
    assert!(block_on(store.is_revoked(tok["id"].as_str().unwrap())).unwrap());
    assert!(matches!(call(&cfg, &store, Some(&admin), Method::GET, "service-accounts/svc-x", ""), Err(Error::NotFound(_))));
}

#[test]
fn keys_report_what_each_still_verifies() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    call(&cfg, &store, Some(&admin), Method::POST, "tokens", r#"{"subject": "a", "kind": "user", "ttl_seconds": 600}"#).unwrap();
    let keys = call(&cfg, &store, Some(&admin), Method::GET, "keys", "").unwrap().body;
    assert_eq!(keys["signing_kid"], "k1");
    assert_eq!((keys["keys"][0]["tokens_outstanding"].as_u64(), keys["keys"][0]["last_expiry"].as_u64()), (Some(1), Some(NOW + 600)));
}

#[test]
fn bodies_must_be_json_objects() {
    // Found by fuzzing: serde fills a struct from an array, positionally, so `["dev"]`
    // at `PUT /routes/fuzzed` used to write route `dev`.
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    for body in [r#"["dev"]"#, "  [\"dev\", null]", r#""dev""#, "null"] {
        let e = call(&cfg, &store, Some(&admin), Method::PUT, "routes/fuzzed", body).unwrap_err();
        assert!(matches!(&e, Error::BadRequest { field, .. } if field == "body"), "{body}: {e:?}");
    }
    let e = call(&cfg, &store, Some(&admin), Method::POST, "tokens", r#"["alice","user",[],null,600]"#).unwrap_err();
    assert!(matches!(&e, Error::BadRequest { field, .. } if field == "body"), "{e:?}");
    assert!(block_on(store.list_routes()).unwrap().is_empty());
    assert!(call(&cfg, &store, Some(&admin), Method::PUT, "routes/fuzzed", " {}").is_ok());
}

#[test]
fn route_lifecycle_is_audited() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let r = call(&cfg, &store, Some(&auth), Method::PUT, "routes/llama", r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9"}]}"#).unwrap();
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(&cfg, &store, Some(&auth), Method::GET, "routes/llama", "").unwrap();
    assert_eq!(r.body["name"], "llama");
    call(&cfg, &store, Some(&auth), Method::DELETE, "routes/llama", "").unwrap();
    let log = block_on(store.audit(None, 10)).unwrap();
    assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["route.delete", "route.put"]);
    assert!(log.iter().all(|e| e.actor == "ops" && e.outcome == "ok"));
}

#[test]
fn a_value_of_the_wrong_kind_is_named_by_its_field_never_echoed() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let body = r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9"}],"affinity":{"fallback":"s3cr3t-value"}}"#;
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", body).unwrap_err();
    let v: Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(v["error"]["param"], "affinity.fallback", "{v}");
    assert!(!v.to_string().contains("s3cr3t") || v["error"]["message"].as_str().is_some_and(|m| m.contains("unknown variant")), "{v}");
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9","weight":"heavy"}]}"#).unwrap_err();
    assert_eq!(serde_json::from_slice::<Value>(&e.body()).unwrap()["error"]["param"], "endpoints[0].weight");
}

#[test]
fn the_audit_entry_keeps_the_calls_trace_id() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    call_at(
        &cfg,
        &store,
        NOW,
        &auth,
        Method::PUT,
        "routes/traced",
        r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9"}]}"#,
    )
    .unwrap();
    call(
        &cfg,
        &store,
        Some(&auth),
        Method::DELETE,
        "routes/traced",
        "",
    )
    .unwrap();
    let log = block_on(store.audit(None, 10)).unwrap();
    assert_eq!(
        log[1].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(log[0].trace_id, None);
    let shown = serde_json::to_value(&log[1]).unwrap();
    assert_eq!(shown["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn non_admin_and_missing_tokens_are_refused_and_audited() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let user = admin_token(&cfg, &["ml-team"]);
    assert!(matches!(call(&cfg, &store, Some(&user), Method::PUT, "routes/x", "{}"), Err(Error::Forbidden(_))));
    assert_eq!(call(&cfg, &store, None, Method::DELETE, "tokens/tok_x", ""), Err(Error::MissingToken));
    let log = block_on(store.audit(None, 10)).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].outcome, "missing_token");
    assert_eq!(log[1].outcome, "forbidden");
}

#[test]
fn terraform_routes_are_refused_with_409() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let mut r = Route::new("tf", vec![Endpoint::new("a", "http://h")]);
    r.managed_by = Some("terraform".into());
    block_on(store.put_route(&r, None)).unwrap();
    let auth = admin_token(&cfg, &["admin"]);
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/tf", r#"{"endpoints":[]}"#).unwrap_err();
    assert_eq!(e.status(), StatusCode::CONFLICT);
    assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, "routes/tf", "").unwrap_err().status(), StatusCode::CONFLICT);
    // Instances may still take leases on it.
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/tf/endpoints/b", r#"{"url":"http://h2","lease_seconds":30}"#).unwrap();
}

#[test]
fn a_model_is_served_by_one_route_and_names_are_checked() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/a", r#"{"endpoints":[],"models":["llama","llama-3.1-8b"]}"#).unwrap();
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/b", r#"{"endpoints":[],"models":["mistral","llama"]}"#).unwrap_err();
    assert_eq!(e.status(), StatusCode::CONFLICT);
    assert!(e.to_string().contains("models[1]") && e.to_string().contains("route `a`"), "{e}");
    // Its own route may keep it; once route a lets it go, b may take it.
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/a", r#"{"endpoints":[],"models":["llama-3.1-8b","llama"]}"#).unwrap();
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/a", r#"{"endpoints":[],"models":["llama-3.1-8b"]}"#).unwrap();
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/b", r#"{"endpoints":[],"models":["llama"]}"#).unwrap();
    for (body, field) in [
        (r#"{"endpoints":[],"models":["x","x"]}"#, "models[1]"),
        (r#"{"endpoints":[],"models":["has space"]}"#, "models[0]"),
        (r#"{"endpoints":[],"models":[""]}"#, "models[0]"),
        (r#"{"endpoints":[],"models":"llama"}"#, "models"),
    ] {
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/c", body).unwrap_err();
        assert!(matches!(e, Error::BadRequest { field: ref f, .. } if f == field), "{body}: {e:?}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("m{i}")).collect();
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/c", &serde_json::json!({"endpoints": [], "models": many}).to_string()).unwrap_err();
    assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "models"), "{e:?}");
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/v1", r#"{"endpoints":[]}"#).unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "`v1` is model routing's prefix: {e:?}");
}

#[test]
fn budgets_are_set_listed_with_their_use_and_removed() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let put = call(&cfg, &store, Some(&auth), Method::PUT, "budgets/contracts/C-17", r#"{"tokens_per_minute": 1000, "tokens_per_month": 5000000}"#).unwrap();
    assert_eq!((put.body["kind"].as_str(), put.body["id"].as_str(), put.body["tokens_per_minute"].as_u64()), (Some("contracts"), Some("C-17"), Some(1000)));
    store.add_budget_use("contracts/C-17", 250, NOW);
    let list = call(&cfg, &store, Some(&auth), Method::GET, "budgets", "").unwrap();
    let b = &list.body["budgets"][0];
    assert_eq!((b["kind"].as_str(), b["id"].as_str(), b["used"]["minute"].as_u64(), b["used"]["month"].as_u64()), (Some("contracts"), Some("C-17"), Some(250), Some(250)));
    assert!(b.get("tokens_per_day").is_none(), "unset limits are left out");
    for (path, body, field) in [
        ("budgets/partners/x", r#"{"tokens_per_day": 5}"#, "kind"),
        ("budgets/tokens/tok_a", r#"{}"#, "tokens_per_minute"),
        ("budgets/tokens/tok_a", r#"{"tokens_per_day": 0}"#, "tokens_per_day"),
        ("budgets/tokens/tok_a", r#"{"tokens_per_hour": 5}"#, "tokens_per_hour"),
    ] {
        let e = call(&cfg, &store, Some(&auth), Method::PUT, path, body).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == field), "{path} {body}: {e:?}");
        let _ = field;
    }
    call(&cfg, &store, Some(&auth), Method::DELETE, "budgets/contracts/C-17", "").unwrap();
    assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, "budgets/contracts/C-17", "").unwrap_err().status(), StatusCode::NOT_FOUND);
    let log = block_on(store.audit(None, 10)).unwrap();
    assert!(log.iter().any(|e| e.action == "budget.put" && e.object == "budget/contracts/C-17"));
    assert!(log.iter().any(|e| e.action == "budget.delete" && e.outcome == "ok"));
    // Terraform's budgets are Terraform's.
    let tf = crate::budget::TokenBudget { tokens_per_day: Some(9), managed_by: Some(crate::budget::Owner::Terraform), ..Default::default() };
    block_on(store.put_budget("contracts/C-tf", &tf)).unwrap();
    assert_eq!(call(&cfg, &store, Some(&auth), Method::PUT, "budgets/contracts/C-tf", r#"{"tokens_per_day": 99}"#).unwrap_err().status(), StatusCode::CONFLICT);
    assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, "budgets/contracts/C-tf", "").unwrap_err().status(), StatusCode::CONFLICT);
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "budgets/contracts/C-x", r#"{"tokens_per_day": 9, "managed_by": "terraform"}"#).unwrap_err();
    assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "managed_by"), "{e:?}");
    // Not for non-admins.
    let user = admin_token(&cfg, &["ml-team"]);
    assert_eq!(call(&cfg, &store, Some(&user), Method::GET, "budgets", "").unwrap_err().status(), StatusCode::FORBIDDEN);
}

#[test]
fn bad_bodies_name_the_field() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"endpoints":[{"id":"a","url":"http://h","weight":0}]}"#).unwrap_err();
    assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "endpoints[0].weight"), "{e:?}");
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"endpoints":[],"colour":"red"}"#).unwrap_err();
    assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "colour"), "{e:?}");
    let e = call(&cfg, &store, Some(&auth), Method::POST, "tokens", r#"{"subject":"a","kind":"user","groups":[]}"#).unwrap_err();
    assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "ttl_seconds"), "{e:?}");
    assert!(call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", "not json").is_err());
    assert!(call(&cfg, &store, Some(&auth), Method::PUT, "routes/_x", "{}").is_err());
}

#[test]
fn tokens_issue_list_revoke() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let r = call(&cfg, &store, Some(&auth), Method::POST, "tokens", r#"{"subject":"bob","kind":"user","groups":["ml-team"],"ttl_seconds":600,"description":"notebook"}"#).unwrap();
    let id = r.body["id"].as_str().unwrap().to_string();
    let token = r.body["token"].as_str().unwrap();
    assert!(TokenVerifier::new(&cfg).verify(token, NOW).is_ok());
    let list = call(&cfg, &store, Some(&auth), Method::GET, "tokens", "").unwrap();
    let listed = serde_json::to_string(&list.body).unwrap();
    assert!(listed.contains(&id) && !listed.contains(token), "the list never holds the token");
    call(&cfg, &store, Some(&auth), Method::DELETE, &format!("tokens/{id}"), "").unwrap();
    assert!(block_on(store.is_revoked(&id)).unwrap());
    assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, &format!("tokens/{id}"), "").unwrap_err().status(), StatusCode::CONFLICT);
}

#[test]
fn ephemeral_routes_expire() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let r = call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", r#"{"url":"http://h:1","ttl_seconds":120,"groups":["dev"]}"#).unwrap();
    let id = r.body["id"].as_str().unwrap();
    assert!(is_valid_ephemeral_id(id));
    let route = block_on(store.ephemeral(id)).unwrap().unwrap();
    assert!(route.is_active(NOW + 119) && !route.is_active(NOW + 120));
    assert!(call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", r#"{"url":"http://h:1","groups":[]}"#).is_err());
}

#[test]
fn a_route_cannot_take_the_admin_host() {
    let mut cfg = test_config();
    cfg.admin_host = Some("admin.example.com".into());
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"host":"admin.example.com"}"#).unwrap_err();
    assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "host"), "{e:?}");
    assert!(call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"host":"models.example.com"}"#).is_ok());
}

#[test]
fn admin_writes_refuse_local_upstreams_and_unknown_bindings() {
    let mut cfg = test_config();
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let field = |r: Result<AdminReply>| match r {
        Err(Error::BadRequest { field, .. }) => field,
        other => panic!("not a 400: {other:?}"),
    };
    let route = r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:8000"},{"id":"b","url":"http://169.254.169.254/"}]}"#;
    assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", route)), "endpoints[1].url");
    let tunnel = r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:8000","via":"VPC_X"}]}"#;
    assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", tunnel)), "endpoints[0].via");
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", r#"{"endpoints":[]}"#).unwrap();
    let lease = r#"{"url":"http://2130706433:8000","lease_seconds":30}"#;
    assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/l", lease)), "url");
    let lease_via = r#"{"url":"http://10.0.0.1:8000","lease_seconds":30,"via":"VPC_X"}"#;
    assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/l", lease_via)), "via");
    let eph = r#"{"url":"http://localhost:8000","ttl_seconds":60}"#;
    assert_eq!(field(call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", eph)), "url");
    assert!(block_on(store.leases("r")).unwrap().is_empty());

    cfg.upstreams = crate::route::UpstreamPolicy { allow_local: true, via_bindings: vec!["VPC_X".into()] };
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", tunnel).unwrap();
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/l", lease).unwrap();
    call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/m", lease_via).unwrap();
    call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", eph).unwrap();
}

/// [`call`] at `now`, carrying a trace id.
fn call_at(cfg: &Config, store: &MemoryStore, now: u64, auth: &http::HeaderValue, method: Method, path: &str, body: &str) -> Result<AdminReply> {
    admin_request(cfg, store, now, Some(auth), method, path, body, Some("4bf92f3577b34da6a3ce929d0e0e4736"))
}

/// A registrar token issued through the admin API, as its bearer header.
fn registrar(cfg: &Config, store: &MemoryStore, admin: &http::HeaderValue, subject: &str, scope: &str) -> http::HeaderValue {
    let body = format!(r#"{{"subject": "{subject}", "kind": "registrar", "routes": ["llama"], "ttl_seconds": 3600, "registrar": {scope}}}"#);
    let r = call(cfg, store, Some(admin), Method::POST, "tokens", &body).unwrap();
    http::HeaderValue::from_str(&format!("Bearer {}", r.body["token"].as_str().unwrap())).unwrap()
}

fn field_of(r: Result<AdminReply>) -> String {
    match r {
        Err(Error::BadRequest { field, .. }) => field,
        other => panic!("not a 400: {other:?}"),
    }
}

#[test]
fn registrar_tokens_are_issued_by_admins_with_a_valid_scope() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    let issue = |body: &str| call(&cfg, &store, Some(&admin), Method::POST, "tokens", body);
    let base = r#""subject": "gpu-7", "kind": "registrar", "ttl_seconds": 3600"#;
    assert_eq!(field_of(issue(&format!(r#"{{{base}, "routes": ["llama"]}}"#))), "registrar");
    assert_eq!(field_of(issue(&format!(r#"{{{base}, "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "routes");
    assert_eq!(field_of(issue(&format!(r#"{{{base}, "routes": [], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "routes");
    let scoped = |scope: &str| issue(&format!(r#"{{{base}, "routes": ["llama"], "registrar": {scope}}}"#));
    assert_eq!(field_of(scoped(r#"{"hosts": []}"#)), "registrar.hosts");
    assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24", "10.0.2.5/24"]}"#)), "registrar.hosts[1]");
    assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24"], "max_weight": 1001}"#)), "registrar.max_weight");
    assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24"], "max_lease_seconds": 86401}"#)), "registrar.max_lease_seconds");
    assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24"], "colour": 1}"#)), "colour");
    assert_eq!(field_of(issue(&format!(r#"{{{base}, "groups": ["admin"], "routes": ["llama"], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "groups");
    assert_eq!(field_of(issue(&format!(r#"{{{base}, "groups": ["ml-team"], "routes": ["llama"], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "groups");
    let user = r#"{"subject": "bob", "kind": "user", "ttl_seconds": 600, "registrar": {"hosts": ["10.0.1.0/24"]}}"#;
    assert_eq!(field_of(issue(user)), "registrar");
    // Only admins issue them.
    let reg = registrar(&cfg, &store, &admin, "gpu-7", r#"{"hosts": ["10.0.1.0/24"], "max_weight": 4}"#);
    let again = format!(r#"{{{base}, "routes": ["llama"], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#);
    assert!(matches!(call(&cfg, &store, Some(&reg), Method::POST, "tokens", &again), Err(Error::Forbidden(_))));
    // Listed with the scope (defaults filled in), never the secret.
    let listed = call(&cfg, &store, Some(&admin), Method::GET, "tokens", "").unwrap().body;
    let t = &listed["tokens"][0];
    assert_eq!((t["kind"].as_str(), &t["groups"], &t["routes"]), (Some("registrar"), &json!([]), &json!(["llama"])));
    assert_eq!(t["registrar"], json!({"hosts": ["10.0.1.0/24"], "max_weight": 4, "max_lease_seconds": 300, "max_endpoints": 1}));
    assert!(!listed.to_string().contains(reg.to_str().unwrap().trim_start_matches("Bearer ")));
}

#[test]
fn a_registrar_registers_renews_and_removes_only_its_own_leases() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", r#"{"endpoints":[{"id":"a","url":"http://10.0.1.1:8000"}]}"#).unwrap();
    call(&cfg, &store, Some(&admin), Method::PUT, "routes/other", r#"{"endpoints":[]}"#).unwrap();
    let scope = r#"{"hosts": ["10.0.1.0/24", "gpu-*.vllm.internal"], "max_weight": 4, "max_lease_seconds": 60}"#;
    let reg = registrar(&cfg, &store, &admin, "gpu-host-7", scope);
    let at = |now: u64, who: &http::HeaderValue, m: Method, path: &str, body: &str| call_at(&cfg, &store, now, who, m, path, body);
    let put = |who: &http::HeaderValue, path: &str, body: &str| at(NOW, who, Method::PUT, path, body);

    // Its own lease, within its limits: registered, renewed, recorded as its own.
    let lease = r#"{"url": "http://10.0.1.7:8000", "weight": 4, "lease_seconds": 60}"#;
    put(&reg, "routes/llama/endpoints/gpu-7", lease).unwrap();
    put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://gpu-7.vllm.internal:8000", "lease_seconds": 30}"#).unwrap();
    let stored = block_on(store.leases("llama")).unwrap();
    assert_eq!((stored.len(), stored[0].registered_by.as_deref(), stored[0].lease_expires_at), (1, Some("gpu-host-7"), Some(NOW + 30)));
    let shown = call(&cfg, &store, Some(&admin), Method::GET, "routes/llama", "").unwrap().body;
    assert_eq!(shown["leased_endpoints"][0]["registered_by"], "gpu-host-7", "admins see who registered it");

    // Outside its scope.
    assert!(matches!(put(&reg, "routes/other/endpoints/gpu-7", lease), Err(Error::Forbidden(_))), "another route");
    assert!(matches!(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://10.0.2.7:8000", "lease_seconds": 60}"#), Err(Error::Forbidden(m)) if m.contains("`url`")));
    assert!(matches!(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://cpu-7.vllm.internal:8000", "lease_seconds": 60}"#), Err(Error::Forbidden(_))));
    assert_eq!(field_of(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://10.0.1.7:8000", "weight": 5, "lease_seconds": 60}"#)), "weight");
    assert_eq!(field_of(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://10.0.1.7:8000", "lease_seconds": 61}"#)), "lease_seconds");
    assert!(matches!(put(&reg, "routes/llama/endpoints/a", lease), Err(Error::Forbidden(_))), "the route's own endpoint");
    assert!(matches!(put(&reg, "routes/llama/endpoints/gpu-8", lease), Err(Error::Forbidden(m)) if m.contains("max_endpoints")), "one live lease per route by default");

    // Someone else's leases: an admin's, another registrar's.
    put(&admin, "routes/llama/endpoints/adm", r#"{"url": "http://10.0.1.9:8000", "lease_seconds": 600}"#).unwrap();
    let other = registrar(&cfg, &store, &admin, "gpu-host-8", scope);
    put(&other, "routes/llama/endpoints/gpu-8", r#"{"url": "http://10.0.1.8:8000", "lease_seconds": 60}"#).unwrap();
    for id in ["adm", "gpu-8"] {
        let path = format!("routes/llama/endpoints/{id}");
        assert!(matches!(put(&reg, &path, lease), Err(Error::Forbidden(m)) if m.contains("someone else")), "{id}");
        assert!(matches!(at(NOW, &reg, Method::DELETE, &path, ""), Err(Error::Forbidden(_))), "{id}");
    }
    assert!(matches!(at(NOW, &reg, Method::DELETE, "routes/llama/endpoints/nope", ""), Err(Error::NotFound(_))), "as for admins");
    assert!(matches!(at(NOW, &reg, Method::DELETE, "routes/other/endpoints/nope", ""), Err(Error::Forbidden(_))));
    // Its own lease it removes; a lease that has ended is free to take.
    let later = NOW + 61;
    at(later, &reg, Method::DELETE, "routes/llama/endpoints/gpu-7", "").unwrap();
    at(later, &reg, Method::PUT, "routes/llama/endpoints/gpu-8", r#"{"url": "http://10.0.1.7:8000", "lease_seconds": 60}"#).unwrap();
    let gpu8 = block_on(store.leases("llama")).unwrap().into_iter().find(|e| e.id == "gpu-8").unwrap();
    assert_eq!(gpu8.registered_by.as_deref(), Some("gpu-host-7"));

    // An admin's write makes the lease the admins'; the registrar can no longer touch it.
    put(&admin, "routes/llama/endpoints/gpu-8", r#"{"url": "http://10.0.1.7:8000", "weight": 900, "lease_seconds": 600}"#).unwrap();
    let gpu8 = block_on(store.leases("llama")).unwrap().into_iter().find(|e| e.id == "gpu-8").unwrap();
    assert_eq!((gpu8.registered_by, gpu8.weight), (None, 900));
    assert!(matches!(at(later, &reg, Method::DELETE, "routes/llama/endpoints/gpu-8", ""), Err(Error::Forbidden(_))));
    call(&cfg, &store, Some(&admin), Method::DELETE, "routes/llama/endpoints/gpu-8", "").unwrap();

    // Every other admin call, reads included, and the data plane's `/me`.
    for (m, path, body) in [
        (Method::GET, "routes", ""),
        (Method::GET, "routes/llama", ""),
        (Method::PUT, "routes/llama", r#"{"endpoints":[]}"#),
        (Method::DELETE, "routes/llama", ""),
        (Method::POST, "tokens", r#"{"subject": "x", "kind": "user", "ttl_seconds": 600}"#),
        (Method::GET, "tokens", ""),
        (Method::POST, "ephemeral", r#"{"url": "http://10.0.1.7:8000", "ttl_seconds": 60}"#),
        (Method::GET, "audit", ""),
        (Method::GET, "metrics", ""),
        (Method::POST, "probes", ""),
        (Method::GET, "me", ""),
        (Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#),
    ] {
        assert!(matches!(at(NOW, &reg, m.clone(), path, body), Err(Error::Forbidden(_))), "{m} {path}");
    }

    // Audited as the registrar, allowed and refused alike.
    let audit = block_on(store.audit(None, 1000)).unwrap();
    let mine: Vec<(&str, &str, &str)> =
        audit.iter().filter(|e| e.actor == "gpu-host-7").map(|e| (e.action.as_str(), e.object.as_str(), e.outcome.as_str())).collect();
    assert!(mine.contains(&("endpoint.register", "route/llama/endpoint/gpu-7", "ok")));
    assert!(mine.contains(&("endpoint.register", "route/other/endpoint/gpu-7", "forbidden")));
    assert!(mine.contains(&("endpoint.register", "route/llama/endpoint/gpu-7", "invalid_field")));
    assert!(mine.contains(&("endpoint.deregister", "route/llama/endpoint/adm", "forbidden")));
    assert!(mine.contains(&("endpoint.deregister", "route/llama/endpoint/gpu-7", "ok")));
    assert!(mine.contains(&("admin.write", "POST /_gateway/tokens", "forbidden")));
    assert!(!mine.iter().any(|(a, _, _)| *a == "token.issue"));
}

#[test]
fn registrar_leases_still_meet_the_upstream_policy() {
    let mut cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", r#"{"endpoints":[]}"#).unwrap();
    let reg = registrar(&cfg, &store, &admin, "gpu-local", r#"{"hosts": ["127.0.0.1", "169.254.0.0/16", "10.0.1.0/24"], "max_endpoints": 4}"#);
    let put = |cfg: &Config, id: &str, body: &str| call_at(cfg, &store, NOW, &reg, Method::PUT, &format!("routes/llama/endpoints/{id}"), body);
    // Listed, but the gateway's surroundings are still refused, and `via` needs a configured binding.
    assert_eq!(field_of(put(&cfg, "l", r#"{"url": "http://127.0.0.1:8000", "lease_seconds": 60}"#)), "url");
    assert_eq!(field_of(put(&cfg, "m", r#"{"url": "http://169.254.169.254/", "lease_seconds": 60}"#)), "url");
    assert_eq!(field_of(put(&cfg, "v", r#"{"url": "http://10.0.1.5:8000", "via": "VPC_X", "lease_seconds": 60}"#)), "via");
    cfg.upstreams = crate::route::UpstreamPolicy { allow_local: true, via_bindings: vec!["VPC_X".into()] };
    put(&cfg, "l", r#"{"url": "http://127.0.0.1:8000", "lease_seconds": 60}"#).unwrap();
    put(&cfg, "v", r#"{"url": "http://10.0.1.5:8000", "via": "VPC_X", "lease_seconds": 60}"#).unwrap();
    // Local upstreams allowed or not, the host list still binds.
    assert!(matches!(put(&cfg, "x", r#"{"url": "http://localhost:8000", "lease_seconds": 60}"#), Err(Error::Forbidden(_))));
}

#[test]
fn routes_cannot_claim_a_registrar() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    let body = r#"{"endpoints":[{"id":"a","url":"http://10.0.1.1:8000","registered_by":"gpu-host-7"}]}"#;
    assert_eq!(field_of(call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", body)), "endpoints[0].registered_by");
    let lease = r#"{"url":"http://10.0.1.1:8000","lease_seconds":60,"registered_by":"gpu-host-7"}"#;
    assert_eq!(field_of(call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama/endpoints/b", lease)), "registered_by");
}

#[test]
fn healthz_needs_no_token() {
    let cfg = test_config();
    let store = MemoryStore::default();
    assert_eq!(call(&cfg, &store, None, Method::GET, "healthz", "").unwrap().body["status"], "ok");
}

/// One admin conversation against a fresh store, with ids from `ids`: each reply (status and
/// body, the issued token included) and the audit log it left.
fn conversation(ids: &dyn IdSource) -> (Vec<(u16, String)>, Vec<AuditEntry>) {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    let calls: [(Method, &str, &str); 7] = [
        (Method::PUT, "routes/llama", r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:8000"}],"auth":{"required":true,"groups":["ml"]}}"#),
        (Method::POST, "tokens", r#"{"subject":"ana","kind":"user","groups":["ml"],"ttl_seconds":3600,"description":"replay"}"#),
        (Method::POST, "ephemeral", r#"{"url":"http://10.0.0.2:8000","ttl_seconds":600,"groups":["ml"]}"#),
        (Method::POST, "service-accounts", r#"{"name":"batch","groups":["ml"],"owner":"ops"}"#),
        (Method::POST, "service-accounts/batch/tokens", r#"{"ttl_seconds":600}"#),
        (Method::GET, "tokens", ""),
        (Method::DELETE, "routes/nope", ""),
    ];
    let replies = calls
        .iter()
        .map(|(m, path, body)| {
            let segs: Vec<String> = path.split('/').map(String::from).collect();
            let req = AdminRequest { method: m, segments: &segs, query: None, authorization: Some(&admin), body: body.as_bytes(), trace_id: None, ids };
            match block_on(handle(&cfg, &store, NOW, req)) {
                Ok(r) => (r.status.as_u16(), r.body.to_string()),
                Err(e) => (e.status().as_u16(), e.code().to_string()),
            }
        })
        .collect();
    (replies, block_on(store.audit(None, 100)).unwrap())
}

#[test]
fn an_admin_conversation_replays_exactly_given_its_time_and_ids() {
    let (first, audit) = conversation(&SeededIds::new(7));
    let (again, audit_again) = conversation(&SeededIds::new(7));
    assert_eq!(first, again, "same time, same ids: the same replies, tokens included");
    assert_eq!(audit, audit_again);
    assert_eq!(first.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [201, 201, 201, 201, 201, 200, 404]);
    let token: Value = serde_json::from_str(&first[1].1).unwrap();
    let id = token["id"].as_str().unwrap();
    assert!(id.starts_with("tok_") && id.len() == 30, "{id}");
    assert!(audit.iter().any(|e| e.object == format!("token/{id}")), "the audit log names the id it was given");
    // The ids come from the source, nowhere else: another seed, other ids and tokens.
    let (other, _) = conversation(&SeededIds::new(8));
    assert_ne!(first[1], other[1]);
    assert_ne!(first[2], other[2]);
    assert_eq!(first[0], other[0], "a call that makes no id does not change");
}

#[test]
fn content_is_checked_without_the_store_and_a_refusal_keeps_its_action() {
    let cfg = test_config();
    // Each of these is refused by its content alone: `validate` reads no store.
    for (m, path, body, field) in [
        (Method::PUT, "routes/r", r#"{"endpoints":[{"id":"a","url":"http://169.254.169.254/"}]}"#, "endpoints[0].url"),
        (Method::PUT, "routes/r/endpoints/l", r#"{"url":"http://127.0.0.1:8000","lease_seconds":30}"#, "url"),
        (Method::POST, "ephemeral", r#"{"url":"http://10.0.0.1:8000"}"#, "ttl_seconds"),
        (Method::POST, "ephemeral", r#"{"url":"http://10.0.0.1:8000","ttl_seconds":1}"#, "ttl_seconds"),
        (Method::POST, "ephemeral", r#"{"url":"http://10.0.0.1:8000","ttl_seconds":60,"upstream_api_key_secret":"GATEWAY_SIGNING_KEYS"}"#, "upstream_api_key_secret"),
        (Method::POST, "tokens", r#"{"subject":"x","kind":"user"}"#, "ttl_seconds"),
        (Method::POST, "service-accounts", r#"{"name":"batch","groups":["ml-team"],"owner":" "}"#, "owner"),
        (Method::POST, "service-accounts/batch/tokens", r#"{"ttl_seconds":600,"groups":["admin"]}"#, "groups"),
        (Method::POST, "me/tokens", r#"{"ttl_seconds":600,"rate_limit_rpm":5}"#, "rate_limit_rpm"),
        (Method::POST, "me/tokens", r#"{"ttl_seconds":999999999}"#, "ttl_seconds"),
    ] {
        let segs: Vec<String> = path.split('/').map(String::from).collect();
        let cmd = AdminCommand::parse(&m, &segs, None, body.as_bytes()).unwrap_or_else(|e| panic!("{path}: parses: {e:?}"));
        match cmd.validate(&cfg) {
            Err(Error::BadRequest { field: f, .. }) => assert_eq!(f, field, "{path} {body}"),
            other => panic!("{path} {body}: {other:?}"),
        }
    }
    // Through the API: the refusal is audited under the call's own action, and no id is spent.
    let store = MemoryStore::default();
    let auth = admin_token(&cfg, &["admin"]);
    let ids = SeededIds::new(3);
    let segs = vec!["ephemeral".to_string()];
    let req = |body: &'static str| AdminRequest { method: &Method::POST, segments: &segs, query: None, authorization: Some(&auth), body: body.as_bytes(), trace_id: None, ids: &ids };
    assert!(matches!(block_on(handle(&cfg, &store, NOW, req(r#"{"url":"http://10.0.0.1:8000","ttl_seconds":1}"#))), Err(Error::BadRequest { .. })));
    let made = block_on(handle(&cfg, &store, NOW, req(r#"{"url":"http://10.0.0.1:8000","ttl_seconds":60}"#))).unwrap();
    assert_eq!(made.body["id"], json!(SeededIds::new(3).base32(10).unwrap()), "the refused call drew no id");
    let audit = block_on(store.audit(None, 10)).unwrap();
    let entries: Vec<(&str, &str)> = audit.iter().map(|e| (e.action.as_str(), e.outcome.as_str())).collect();
    assert!(entries.contains(&("ephemeral.create", "invalid_field")) && entries.contains(&("ephemeral.create", "ok")), "{entries:?}");
}

#[test]
fn the_callers_own_limits_are_checked_before_the_content() {
    let cfg = test_config();
    let store = MemoryStore::default();
    let admin = admin_token(&cfg, &["admin"]);
    call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", r#"{"endpoints":[]}"#).unwrap();
    call(&cfg, &store, Some(&admin), Method::PUT, "routes/other", r#"{"endpoints":[]}"#).unwrap();
    let reg = registrar(&cfg, &store, &admin, "gpu-9", r#"{"hosts": ["10.0.1.0/24"], "max_endpoints": 2}"#);
    let bad_url = r#"{"url": "http://127.0.0.1:8000", "lease_seconds": 60}"#;
    // Outside its routes or its hosts, a registrar is refused as such, whatever else is wrong.
    assert!(matches!(call_at(&cfg, &store, NOW, &reg, Method::PUT, "routes/other/endpoints/e", bad_url), Err(Error::Forbidden(_))));
    assert!(matches!(call_at(&cfg, &store, NOW, &reg, Method::PUT, "routes/llama/endpoints/e", bad_url), Err(Error::Forbidden(_))));
    // Within them, the content is checked next.
    let in_scope = r#"{"url": "http://10.0.1.5:8000", "lease_seconds": 60, "via": "VPC_X"}"#;
    assert_eq!(field_of(call_at(&cfg, &store, NOW, &reg, Method::PUT, "routes/llama/endpoints/e", in_scope)), "via");
    // A gateway token cannot mint self-service tokens, whatever it asks for.
    let gw = admin_token(&cfg, &["ml-team"]);
    for body in [r#"{"ttl_seconds": 600, "rate_limit_rpm": 5}"#, r#"{"ttl_seconds": 999999999}"#] {
        assert!(matches!(call(&cfg, &store, Some(&gw), Method::POST, "me/tokens", body), Err(Error::Forbidden(_))), "{body}");
    }
}
