//! Header hygiene both ways: `request_headers`, `response_headers` and
//! `rewrite_location` must never panic, and what they return must keep
//! forward.rs's promises: upstream, no client credential, hop-by-hop,
//! `cf-*`, forged forwarding header or cookie other than the route's affinity
//! cookie; back to the client, no `Set-Cookie` (unless the route forwards it),
//! no `Service-Worker-Allowed`, `Content-Security-Policy: sandbox` (unless the
//! route opts out), and no `Location` a browser would follow off the gateway's
//! origin or that names the endpoint.
//!
//! Input: the first byte picks the route's settings (bit 0 sandbox off, bit 1
//! forward Set-Cookie, bit 2 affinity cookie `sid`, bit 3 host route (prefix
//! `/`), bit 4 no client address, bits 5-6 the endpoint base). The rest, split
//! at `\n`: lines `name: value` are client request headers until an empty
//! line, then upstream response headers. Every value is also fed to
//! `rewrite_location` on its own.
#![no_main]

use gateway_core::forward::{request_headers, response_headers, rewrite_location, ForwardPlan};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"];
const BASES: &[&str] = &["http://10.0.0.1:8000", "http://10.0.0.1:8000/v1/", "https://vllm.internal", "http://[fd00::1]:8000"];
const CLIENT_IP: &str = "203.0.113.9";
const UPSTREAM_KEY: &str = "upstream-secret";
const REQUEST_ID: &str = "rid-fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let sandbox = flags & 1 == 0;
    let forward_set_cookie = flags & 2 != 0;
    let affinity_cookie = (flags & 4 != 0).then_some("sid");
    let prefix = if flags & 8 != 0 { "/" } else { "/llama/" };
    let client_ip = (flags & 16 == 0).then_some(CLIENT_IP);
    let base = BASES[usize::from(flags >> 5) % BASES.len()];

    let (mut client, mut upstream) = (HeaderMap::new(), HeaderMap::new());
    let mut in_response = false;
    for line in rest.split(|&b| b == b'\n') {
        if line.is_empty() {
            in_response = true;
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        check_location(&value, base, prefix);
        if let Ok(name) = HeaderName::from_bytes(name) {
            if in_response { &mut upstream } else { &mut client }.append(name, value);
        }
    }

    check_request(&client, client_ip, affinity_cookie);
    let plan = ForwardPlan { request_id: REQUEST_ID.into(), public_prefix: prefix.into(), sandbox, forward_set_cookie, ..gateway_core::fixtures::plan("llama") };
    check_response(&upstream, &plan, base);
});

/// A URL as a browser reads it: leading spaces and C0 controls trimmed, tabs and line breaks removed.
fn browser_reads(v: &[u8]) -> Vec<u8> {
    let start = v.iter().position(|&b| b > b' ').unwrap_or(v.len());
    v[start..].iter().copied().filter(|b| !matches!(b, b'\t' | b'\n' | b'\r')).collect()
}

/// True when a browser would leave the gateway's origin following `v`: `//`, `/\`, `\`, or a scheme.
fn leaves_origin(v: &[u8]) -> bool {
    let v = browser_reads(v);
    let scheme = match v.iter().position(|&b| b == b':') {
        Some(i) => v[0].is_ascii_alphabetic() && v[..i].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')),
        None => false,
    };
    scheme || v.starts_with(b"//") || v.starts_with(b"/\\") || v.starts_with(b"\\")
}

fn check_location(value: &HeaderValue, base: &str, prefix: &str) {
    let Some(out) = rewrite_location(value, base, prefix) else { return };
    assert!(!leaves_origin(out.as_bytes()), "{value:?} under {base} became {out:?}, which leaves the origin");
    if value.as_bytes().starts_with(base.trim_end_matches('/').as_bytes()) {
        // Under the endpoint: mapped into the route, so the endpoint's address never comes back.
        assert!(out.as_bytes().starts_with(prefix.as_bytes()), "{value:?} mapped outside the route: {out:?}");
    } else {
        assert_eq!(out, value, "only values under the endpoint are rewritten");
    }
}

fn check_request(client: &HeaderMap, client_ip: Option<&str>, affinity_cookie: Option<&str>) {
    for with_key in [false, true] {
        let key = with_key.then_some(UPSTREAM_KEY);
        let out = request_headers(client, REQUEST_ID, client_ip, "https", key, affinity_cookie);
        for (name, value) in &out {
            let n = name.as_str();
            assert!(!HOP_BY_HOP.contains(&n) && !n.starts_with("proxy-"), "{n} went upstream");
            assert!(!n.starts_with("cf-") && !matches!(n, "true-client-ip" | "x-real-ip" | "forwarded" | "host" | "content-length" | "x-origin-verify"), "{n} went upstream");
            // The trace context is the gateway's to set (`Trace::inject`), never the client's copied.
            assert!(!matches!(n, "traceparent" | "tracestate"), "the client's {n} went upstream as it was");
            if n.starts_with("x-forwarded-") {
                let want = match n {
                    "x-forwarded-for" => client_ip,
                    "x-forwarded-proto" => Some("https"),
                    _ => None,
                };
                assert_eq!(Some(value.as_bytes()), want.map(str::as_bytes), "client value of {n} went upstream");
            }
        }
        assert_eq!(out.get_all("x-forwarded-for").iter().count(), usize::from(client_ip.is_some()));
        assert_eq!(out.get_all("x-forwarded-proto").iter().count(), 1);
        assert_eq!(out.get_all("x-request-id").iter().collect::<Vec<_>>(), [REQUEST_ID]);
        let auth: Vec<_> = out.get_all("authorization").iter().collect();
        match key {
            Some(k) => assert_eq!(auth, [format!("Bearer {k}").as_str()], "only the route's key goes upstream"),
            None => assert!(auth.is_empty(), "the client's Authorization went upstream"),
        }
        let cookies: Vec<_> = out.get_all("cookie").iter().collect();
        match affinity_cookie {
            None => assert!(cookies.is_empty(), "cookies went upstream without an affinity cookie: {cookies:?}"),
            Some(name) => {
                assert!(cookies.len() <= 1, "{cookies:?}");
                if let Some(c) = cookies.first() {
                    let c = c.to_str().expect("a rebuilt cookie is text");
                    assert!(c.starts_with(&format!("{name}=")) && !c.contains(';'), "cookie {c:?} is not just {name}");
                }
            }
        }
    }
}

fn check_response(upstream: &HeaderMap, plan: &ForwardPlan, base: &str) {
    let out = response_headers(upstream, plan, base, 1.0);
    for (name, value) in &out {
        let n = name.as_str();
        assert!(!HOP_BY_HOP.contains(&n) && !n.starts_with("proxy-") && n != "content-length", "{n} came back");
        assert_ne!(n, "service-worker-allowed");
        assert!(plan.forward_set_cookie || n != "set-cookie", "Set-Cookie came back");
        if n == "location" || n == "content-location" {
            assert!(!leaves_origin(value.as_bytes()), "{n}: {value:?} leaves the origin");
        }
    }
    let csp: Vec<_> = out.get_all("content-security-policy").iter().collect();
    assert_eq!(csp.last().is_some_and(|v| *v == "sandbox"), plan.sandbox || upstream_sandbox_last(upstream), "{csp:?}");
    assert_eq!(out.get_all("x-request-id").iter().collect::<Vec<_>>(), [plan.request_id.as_str()]);
}

/// Without the gateway's sandbox, the last policy is `sandbox` only if the upstream's own last one was.
fn upstream_sandbox_last(upstream: &HeaderMap) -> bool {
    let listed = upstream
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|s| s.trim().eq_ignore_ascii_case("content-security-policy"));
    !listed && upstream.get_all("content-security-policy").iter().last().is_some_and(|v| v == "sandbox")
}
