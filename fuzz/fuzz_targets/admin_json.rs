//! Admin JSON: route objects (`Route` + `validate`), the other admin bodies,
//! `AdminCommand::parse` and the whole `admin::handle` on a pre-filled
//! `MemoryStore` must never panic, and must keep the admin API's promises:
//! a route that validates round-trips through JSON, every write is audited,
//! Terraform's routes are never changed, the store never holds an invalid route.
//!
//! Input: when it starts with an uppercase letter, its first line is a request
//! line `METHOD path[?query] [caller]` (path after `/_gateway/`; caller one of
//! admin, user, partner, revoked, none; default admin) and the rest is the
//! body. Otherwise the whole input is the body of `PUT routes/{its name}` (or
//! `routes/fuzzed`) by an admin.
#![no_main]

use gateway_core::admin::{handle, AdminCommand, AdminRequest, EphemeralRequest, LeaseRequest, MAX_LEASE_SECONDS};
use gateway_core::route::{is_valid_endpoint_id, is_valid_route_name, validate_endpoint_url, Endpoint, Route};
use gateway_core::store::{AdminStore, RouteSource};
use gateway_core::token::{SeededIds, TokenIssuer, TokenRequest, TokenVerifier};
use gateway_core::Error;
use gateway_fuzz::{block_on, callers, check_error, config, seeded_store, NOW};
use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (line, body) = match data.first() {
        Some(b) if b.is_ascii_uppercase() => match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b""[..]),
        },
        _ => (&b""[..], data),
    };
    let line = if line.is_empty() {
        // A bare route object is PUT under its own name.
        let name = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("name")?.as_str().map(String::from));
        format!("PUT routes/{}", name.as_deref().unwrap_or("fuzzed").replace(['/', ' ', '?'], "_")).into()
    } else {
        String::from_utf8_lossy(line)
    };
    let mut words = line.split(' ');
    let method = Method::from_bytes(words.next().unwrap_or_default().as_bytes()).unwrap_or(Method::GET);
    let target = words.next().unwrap_or_default();
    let caller = words.next().unwrap_or("admin");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(String::from).collect();

    check_route_json(body);
    check_other_bodies(body);
    check_parse(&method, &segs, query, body);
    check_handle(&method, &segs, query, caller, body);
});

fn check_route_json(body: &[u8]) {
    let Ok(route) = serde_json::from_slice::<Route>(body) else { return };
    match route.validate() {
        Ok(()) => {
            assert!(is_valid_route_name(&route.name), "{:?}", route.name);
            for (i, e) in route.endpoints.iter().enumerate() {
                e.validate(&format!("endpoints[{i}]")).expect("a valid route's endpoint");
            }
            let text = serde_json::to_vec(&route).expect("serialise");
            let back: Route = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("a valid route does not read back: {e}: {}", String::from_utf8_lossy(&text)));
            assert_eq!(back, route, "route changes through JSON");
            back.validate().expect("a read-back route validates");
        }
        Err(e) => {
            assert!(matches!(e, Error::BadRequest { .. }), "{e:?}");
            check_error(&e);
        }
    }
}

fn check_other_bodies(body: &[u8]) {
    if let Ok(ep) = serde_json::from_slice::<Endpoint>(body) {
        match ep.validate("endpoint") {
            Ok(()) => {
                assert!(is_valid_endpoint_id(&ep.id));
                assert_eq!(validate_endpoint_url(&ep.url), Ok(()));
                let uri: http::Uri = ep.url.parse().expect("a valid endpoint URL parses");
                assert!(matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty()), "{}", ep.url);
                assert!(uri.query().is_none() && uri.authority().is_some_and(|a| !a.as_str().contains('@')), "{}", ep.url);
            }
            Err(e) => check_error(&e),
        }
    }
    if let Ok(req) = serde_json::from_slice::<TokenRequest>(body) {
        let cfg = config();
        match req.validate(cfg) {
            Ok(ttl) => {
                assert!((60..=cfg.max_token_ttl).contains(&ttl));
                // Whatever validates mints a token that verifies as the same principal.
                let (token, claims) = TokenIssuer::new(cfg).issue(&req, NOW, "tok_fuzz".into()).expect("a valid request mints");
                let p = TokenVerifier::new(cfg).verify(&token, NOW).unwrap_or_else(|e| panic!("a minted token does not verify: {e:?} for {req:?}"));
                assert_eq!(
                    (p.subject, p.kind, p.groups, p.routes, p.expires_at, p.rate_limit_rpm, p.registrar),
                    (req.subject, req.kind, req.groups, req.routes, NOW + ttl, req.rate_limit_rpm, req.registrar)
                );
                assert_eq!(claims.exp, NOW + ttl);
            }
            Err(e) => {
                assert!(matches!(e, Error::BadRequest { .. }), "{e:?}");
                check_error(&e);
            }
        }
    }
    let _ = serde_json::from_slice::<LeaseRequest>(body);
    let _ = serde_json::from_slice::<EphemeralRequest>(body);
}

fn check_parse(method: &Method, segs: &[String], query: Option<&str>, body: &[u8]) {
    match AdminCommand::parse(method, segs, query, body) {
        Ok(AdminCommand::PutRoute(r)) => {
            r.validate().expect("PutRoute holds a valid route");
            assert!(r.expires_at.is_none());
            assert_eq!(r.name, segs[1], "the path names the route");
        }
        Ok(AdminCommand::PutEndpoint { route, endpoint, lease_seconds }) => {
            assert!(is_valid_route_name(&route));
            assert_eq!(endpoint.id, segs[3]);
            endpoint.validate("endpoint").expect("PutEndpoint holds a valid endpoint");
            assert!((5..=MAX_LEASE_SECONDS).contains(&lease_seconds));
        }
        Ok(AdminCommand::Audit { limit, .. }) => assert!((1..=1000).contains(&limit)),
        Ok(_) => {}
        Err(e) => {
            assert!(e.status().is_client_error(), "parse failed with {e:?}");
            check_error(&e);
        }
    }
}

fn check_handle(method: &Method, segs: &[String], query: Option<&str>, caller: &str, body: &[u8]) {
    let c = callers();
    let authorization = match caller {
        "none" => None,
        "user" => Some(&c.user),
        "partner" => Some(&c.partner),
        "revoked" => Some(&c.revoked),
        _ => Some(&c.admin),
    };
    let cfg = config();
    let store = seeded_store();
    block_on(async {
        // Terraform's own changes are audited when the gateway first sees them (actor
        // `terraform`, the seeded route on the first call); the rule below is about the caller's.
        let callers = |log: Vec<gateway_core::store::AuditEntry>| log.iter().filter(|e| e.actor != "terraform").count();
        let audit_before = callers(store.audit(None, usize::MAX).await.unwrap());
        let tf_before = store.route("tf").await.unwrap();
        // Ids from a fixed seed, so a crashing input replays exactly.
        let ids = SeededIds::new(0);
        let result = handle(cfg, &store, NOW, AdminRequest { method, segments: segs, query, authorization, body, trace_id: None, ids: &ids }).await;
        let healthz = segs.len() == 1 && segs[0] == "healthz";
        match &result {
            Ok(reply) => {
                assert!(reply.status.is_success(), "{reply:?}");
                assert!(healthz || authorization == Some(&c.admin), "{caller} got {reply:?}");
                if let Some(t) = reply.body.get("token").and_then(|t| t.as_str()) {
                    TokenVerifier::new(cfg).verify(t, NOW).expect("an issued token verifies");
                }
                let _ = reply.clone().into_response();
            }
            Err(e) => {
                assert!(!matches!(e, Error::Internal(_)), "an admin call caused {e:?}");
                check_error(e);
            }
        }
        // Every write, allowed or not, is audited once; reads never are.
        let is_write = !matches!(*method, Method::GET | Method::HEAD);
        let audited = callers(store.audit(None, usize::MAX).await.unwrap()) - audit_before;
        assert_eq!(audited, usize::from(is_write && !healthz), "{method} {segs:?} → {result:?}");
        // Terraform's route never changes through the admin API.
        assert_eq!(store.route("tf").await.unwrap(), tf_before, "{method} {segs:?} changed tf");
        // The store holds only valid routes, one per host, none claimed by an owner other than Terraform's own.
        let routes = store.list_routes().await.unwrap();
        let mut hosts = std::collections::HashSet::new();
        for r in &routes {
            r.validate().unwrap_or_else(|e| panic!("the store holds an invalid route {r:?}: {e:?}"));
            assert!(r.name == "tf" || r.managed_by.is_none(), "{r:?}");
            assert!(r.expires_at.is_none(), "a static route expires: {r:?}");
            if let Some(h) = &r.host {
                assert!(hosts.insert(h.clone()), "two routes on host {h}");
            }
        }
    });
}
