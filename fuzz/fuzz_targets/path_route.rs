//! Request paths and the data plane's decision: `normalise_path`,
//! `parse_target`, `check_limits` and `decide` must never panic, and
//! what they accept must keep route.rs's promises (no `.`/`..`, `/`, `\` or
//! control character in a segment; only a literal first `_gateway` reaches the
//! admin API; the forwarded rest re-decodes to the same segments).
//!
//! Input, split at `\n`: the first line is the request target (`/path?query`,
//! or any bytes); each further line is a header `name: value`, or a directive:
//! `*h` + byte k repeats the previous header k times, `*p` + byte k makes the
//! path k × 33 bytes longer (to reach the header and URL limits), `*m` + byte k
//! picks the method (GET by default).
#![no_main]

use gateway_core::forward::FailureMemory;
use gateway_core::load::InFlight;
use gateway_core::gateway::{check_limits, check_transport, decide, Decision, RequestContext, Transport};
use gateway_core::route::{encode_segments, is_valid_ephemeral_id, is_valid_route_name, normalise_path, parse_target, Target};
use gateway_core::store::MemoryStore;
use gateway_core::Error;
use gateway_fuzz::{block_on, check_error, config, config_redirect, seeded_store, NOW, UPSTREAM_SECRET_VALUE};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"];
const CLIENT_IP: &str = "203.0.113.9";
const METHODS: &[http::Method] = &[http::Method::GET, http::Method::HEAD, http::Method::POST, http::Method::PUT, http::Method::DELETE, http::Method::OPTIONS];

fn store() -> &'static MemoryStore {
    static S: OnceLock<MemoryStore> = OnceLock::new();
    S.get_or_init(seeded_store)
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let mut target = lines.next().unwrap_or_default().to_vec();
    let mut headers: Vec<(&[u8], &[u8])> = Vec::new();
    let mut method = http::Method::GET;
    for line in lines {
        match line {
            [b'*', b'm', k, ..] => method = METHODS[*k as usize % METHODS.len()].clone(),
            [b'*', b'h', k, ..] => {
                if let Some(&last) = headers.last() {
                    headers.extend(std::iter::repeat_n(last, *k as usize));
                }
            }
            [b'*', b'p', k, ..] => {
                // Before any query, so the path itself grows.
                let at = target.iter().position(|&b| b == b'?').unwrap_or(target.len());
                let pad = b"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".repeat(*k as usize);
                target.splice(at..at, pad);
            }
            _ => {
                let (name, value) = match line.iter().position(|&b| b == b':') {
                    Some(i) => (&line[..i], &line[i + 1..]),
                    None => (line, &b""[..]),
                };
                let value = value.strip_prefix(b" ").unwrap_or(value);
                headers.push((name, value));
            }
        }
    }

    // The core functions take any text, whatever the platform let through.
    check_target(&String::from_utf8_lossy(&target));

    // What a platform hands over: a parsed URI and headers.
    let Ok(uri) = http::Uri::try_from(target.as_slice()) else { return };
    check_target(uri.path());
    let (mut parts, ()) = http::Request::builder().method(method).uri(uri).body(()).expect("request").into_parts();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
            parts.headers.append(n, v);
        }
    }

    let cfg = config();
    let limits = check_limits(cfg, &parts);
    let url_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let header_bytes: usize = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let over = url_len > cfg.limits.max_url_bytes || parts.headers.len() > cfg.limits.max_headers || header_bytes > cfg.limits.max_header_bytes;
    match &limits {
        Ok(()) => assert!(!over, "check_limits passed {url_len} URL bytes, {} headers, {header_bytes} header bytes", parts.headers.len()),
        Err(e) => {
            assert!(over, "check_limits refused a request within limits: {e:?}");
            if url_len > cfg.limits.max_url_bytes {
                assert!(matches!(e, Error::UriTooLong { .. }), "{e:?}");
            } else {
                assert!(matches!(e, Error::HeadersTooLarge(_)), "{e:?}");
            }
            check_error(e);
        }
    }
    check_transports(&parts);

    // On every seeded route, `b` failed moments ago and `a` has five requests in flight.
    let (mut failures, mut in_flight) = (FailureMemory::default(), InFlight::default());
    for route in ["llama", "pub", "tf", "hosted", gateway_fuzz::EPHEMERAL_ID] {
        failures.mark_failed(route, "b", NOW);
        for _ in 0..5 {
            in_flight.start(route, "a");
        }
    }
    let ctx = RequestContext { now: NOW, client_ip: Some(CLIENT_IP), proto: "https", new_request_id: "rid-fuzz", trace: &gateway_core::trace::Trace::from_headers(&parts.headers, &[3; 24]), failures: &failures, in_flight: &in_flight, body_peek: None };
    match block_on(decide(cfg, store(), &parts, &ctx)) {
        Err(e) => {
            if let Err(l) = &limits {
                assert_eq!(&e, l, "limits are checked first");
            }
            assert!(!matches!(e, Error::Internal(_)), "a client's request caused {e:?}");
            check_error(&e);
        }
        Ok(routed) => {
            assert!(limits.is_ok(), "routed a request over the limits");
            match routed {
                Decision::Admin(segs) => {
                    assert_eq!(parse_target(parts.uri.path(), false), Ok(Target::Admin(segs)));
                }
                Decision::Forward(plan) => check_plan(&parts, &plan),
                // The gateway's own answers under /v1/ (the model list): always JSON.
                Decision::Answer(res) => {
                    assert_eq!(parse_target(parts.uri.path(), false).ok().map(|t| matches!(t, Target::Model { .. })), Some(true), "{:?} answered by the gateway", parts.uri);
                    assert!(serde_json::from_slice::<serde_json::Value>(res.body()).is_ok(), "the answer is JSON");
                }
            }
        }
    }
});

/// A decoded segment is never empty, a dot segment, or holds a separator or control character.
fn assert_clean(seg: &str, raw: &str) {
    assert!(!seg.is_empty() && seg != "." && seg != "..", "segment {seg:?} from {raw:?}");
    assert!(!seg.chars().any(|c| c == '/' || c == '\\' || c.is_control()), "segment {seg:?} from {raw:?}");
}

/// The forwarded rest: encoded pchars only, no dot segment, and decoding it gives `segs` back.
fn assert_rest(rest: &str, segs: &[String], raw: &str) {
    assert!(!rest.starts_with('/'), "rest {rest:?} from {raw:?} starts with /");
    assert!(
        rest.is_ascii() && !rest.chars().any(|c| matches!(c, '?' | '#' | '\\') || c.is_ascii_control() || c == ' '),
        "rest {rest:?} from {raw:?} holds a character that needs encoding"
    );
    let body = rest.strip_suffix('/').unwrap_or(rest);
    if !body.is_empty() {
        for s in body.split('/') {
            assert!(!s.is_empty() && s != "." && s != "..", "rest {rest:?} from {raw:?} has segment {s:?}");
        }
    }
    assert_eq!(body, encode_segments(segs), "rest of {raw:?}");
    assert_eq!(normalise_path(&format!("/{rest}")).as_deref(), Ok(segs), "rest {rest:?} of {raw:?} decodes differently");
    let trailing = raw.len() > 1 && raw.ends_with('/');
    if !rest.is_empty() {
        assert_eq!(rest.ends_with('/'), trailing, "trailing slash of {raw:?} in {rest:?}");
    }
}

fn check_target(raw: &str) {
    let norm = normalise_path(raw);
    match &norm {
        Ok(segs) => {
            for s in segs {
                assert_clean(s, raw);
            }
            let again = normalise_path(&format!("/{}", encode_segments(segs)));
            assert_eq!(again.as_ref(), Ok(segs), "re-encoding {raw:?} changes its segments");
        }
        Err(e) => {
            assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
            check_error(e);
        }
    }
    let mut admin = [None, None];
    for (i, host_route) in [false, true].into_iter().enumerate() {
        let t = parse_target(raw, host_route);
        if let Ok(t) = &t {
            let segs = norm.as_ref().unwrap_or_else(|e| panic!("parse_target({raw:?}) = {t:?} but normalise_path failed: {e:?}"));
            match t {
                Target::Admin(s) => {
                    assert_eq!(segs.first().map(String::as_str), Some("_gateway"), "{raw:?} reached the admin API");
                    assert_eq!(s.as_slice(), &segs[1..]);
                    admin[i] = Some(s.clone());
                }
                Target::Static { name, rest } => {
                    assert!(!host_route && is_valid_route_name(name), "{raw:?} → {t:?}");
                    assert_eq!(&segs[0], name);
                    assert_rest(rest, &segs[1..], raw);
                }
                Target::Ephemeral { id, rest } => {
                    assert!(!host_route && is_valid_ephemeral_id(id) && segs[0] == "e", "{raw:?} → {t:?}");
                    assert_eq!(&segs[1], id);
                    assert_rest(rest, &segs[2..], raw);
                }
                Target::Host { rest } => {
                    assert!(host_route && segs.first().is_none_or(|s| s != "_gateway"), "{raw:?} → {t:?}");
                    assert_rest(rest, segs, raw);
                }
                Target::Model { rest } => {
                    assert!(!host_route && segs[0] == "v1", "{raw:?} → {t:?}");
                    assert_rest(rest, segs, raw);
                }
            }
        }
        if let Err(e) = &t {
            assert!(matches!(e, Error::InvalidRequest(_) | Error::NotFound(_)), "{e:?}");
            check_error(e);
        }
    }
    // The admin API answers the same on every host.
    assert_eq!(admin[0], admin[1], "{raw:?} reaches the admin API on one kind of host only");
}

fn check_plan(parts: &http::request::Parts, plan: &gateway_core::forward::ForwardPlan) {
    assert!(!plan.upstreams.is_empty());
    assert!(plan.public_prefix.starts_with('/') && plan.public_prefix.ends_with('/'), "{:?}", plan.public_prefix);
    for up in &plan.upstreams {
        let base = format!("{}/", up.base.trim_end_matches('/'));
        let tail = up.url.strip_prefix(&base).unwrap_or_else(|| panic!("upstream {:?} is outside its base {:?}", up.url, up.base));
        let path = tail.split('?').next().unwrap_or_default();
        assert!(!path.split('/').any(|s| s == "." || s == ".."), "upstream {:?} steps out of {:?}", up.url, up.base);
        assert!(!path.contains('#') && !path.contains('\\'), "upstream {:?}", up.url);
        if let Some(q) = parts.uri.query().filter(|q| !q.is_empty()) {
            assert!(up.url.ends_with(&format!("?{q}")), "upstream {:?} lost the query {q:?}", up.url);
        }
    }
    // The client's credentials, addresses and hop-by-hop headers never go upstream.
    for (name, value) in &plan.headers {
        let n = name.as_str();
        assert!(!HOP_BY_HOP.contains(&n) && !n.starts_with("proxy-") && n != "host", "forwarded {n}");
        match n {
            "authorization" => assert_eq!(value, &format!("Bearer {UPSTREAM_SECRET_VALUE}")[..], "forwarded the client's authorization"),
            "x-forwarded-for" => assert_eq!(value, CLIENT_IP),
            "x-forwarded-proto" => assert_eq!(value, "https"),
            "x-request-id" => assert_eq!(value, plan.request_id.as_str()),
            _ => {}
        }
    }
    assert_eq!(plan.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(plan.headers.get_all("authorization").iter().count(), usize::from(plan.route == "llama"));
    // The route that needs a token got one.
    if plan.route == "llama" {
        assert!(plan.token_id.is_some(), "llama answered without a token");
    }
}

/// HTTPS policy: HTTPS always proceeds; plain HTTP is refused, or redirected only for
/// `GET`/`HEAD` under `redirect`, to an `https://` URL that is a valid `Location` value.
fn check_transports(parts: &http::request::Parts) {
    for cfg in [config(), config_redirect()] {
        assert_eq!(check_transport(cfg, "https", parts), Ok(Transport::Proceed));
        assert_eq!(check_transport(cfg, "HTTPS", parts), Ok(Transport::Proceed));
        match check_transport(cfg, "http", parts) {
            Ok(Transport::Proceed) => panic!("plain HTTP proceeds without allow_http"),
            Ok(Transport::Redirect(loc)) => {
                assert!(cfg.redirect_http && matches!(parts.method, http::Method::GET | http::Method::HEAD), "redirected {} {loc}", parts.method);
                assert!(loc.starts_with("https://"), "{loc}");
                let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                assert!(loc.ends_with(pq), "redirect {loc:?} lost {pq:?}");
                assert!(http::HeaderValue::from_str(&loc).is_ok(), "redirect {loc:?} is not a valid Location value");
            }
            Err(e) => {
                assert_eq!(e, Error::HttpsRequired);
                check_error(&e);
            }
        }
    }
}
