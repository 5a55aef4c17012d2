//! Writes the committed seed corpora, `seeds/<target>/`, deterministically
//! (fixed clock, fixed token ids, HS256): running it again gives the same files.
//!
//!     cargo +nightly run --manifest-path fuzz/Cargo.toml --target-dir target/fuzz \
//!         --features forge --example gen_seeds -- fuzz/seeds
//!
//! Files named `crash-*` (inputs that once crashed a target) are never touched.

use gateway_core::forge::hostile_tokens;
use gateway_core::token::{TokenVerifier, MAX_TOKEN_BYTES};
use gateway_fuzz::{b64url, config, hs256, mint, EPHEMERAL_ID, HOSTED, KID, NOW};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Hostile tokens larger than this are left out, so libFuzzer's -max_len stays near the token limit.
const MAX_SEED_BYTES: usize = MAX_TOKEN_BYTES + 512;

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into()));
    let mut n = 0;
    for (target, seeds) in [("token_verify", token_seeds()), ("path_route", path_seeds()), ("admin_json", admin_seeds()), ("headers", header_seeds())] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        let mut names = std::collections::HashSet::new();
        for (name, bytes) in seeds {
            assert!(names.insert(name.clone()), "two seeds named {name}");
            write(&dir, &name, &bytes);
            n += 1;
        }
    }
    println!("wrote {n} seeds under {}", root.display());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    assert!(!name.starts_with("crash-"));
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// A file name from a description: lowercase letters, digits and dashes.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn signed(header: &serde_json::Value, payload: &serde_json::Value) -> String {
    let msg = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(payload.to_string().as_bytes()));
    format!("{msg}.{}", hs256(msg.as_bytes()))
}

fn token_seeds() -> Vec<(String, Vec<u8>)> {
    let cfg = config();
    let v = TokenVerifier::new(cfg);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let valid = [
        ("valid-user", mint("alice", "user", &["ml-team"], None, 3600, "tok_alice")),
        ("valid-admin", mint("ops", "user", &["admin"], None, 3600, "tok_admin")),
        ("valid-service", mint("batch", "service", &["ml-team", "svc:batch"], None, 86_400, "tok_batch")),
        ("valid-partner", mint("acme", "partner", &[], Some(&["llama", EPHEMERAL_ID]), 600, "tok_acme")),
    ];
    for (name, t) in &valid {
        let p = v.verify(t, NOW).unwrap_or_else(|e| panic!("seed {name} does not verify: {e:?}"));
        assert!(p.token_id.starts_with("tok_"));
        out.push((format!("{name}.jwt"), t.clone().into_bytes()));
    }
    out.push(("bearer-valid-user.txt".into(), format!("Bearer {}", valid[0].1).into_bytes()));
    out.push(("bearer-lowercase-spaces.txt".into(), format!("bearer   {}  ", valid[1].1).into_bytes()));
    out.push(("basic-auth.txt".into(), b"Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_vec()));

    // Core's own hostile corpus: each must be refused.
    for (i, h) in hostile_tokens(cfg, NOW, &["ml-team"]).into_iter().enumerate() {
        if h.token.len() > MAX_SEED_BYTES {
            continue;
        }
        assert!(v.verify(&h.token, NOW).is_err(), "hostile seed {} verifies", h.name);
        out.push((format!("hostile-{i:02}-{}.jwt", slug(h.name)), h.token.into_bytes()));
    }
    // The shapes this brief names, built here so they stay whatever forge becomes.
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": KID});
    let claims = json!({"iss": cfg.issuer, "aud": cfg.audience, "sub": "alice", "jti": "tok_x", "iat": NOW, "nbf": NOW, "exp": NOW + 600,
        "groups": ["ml-team"], "kind": "user"});
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#), b64url(claims.to_string().as_bytes()));
    out.push(("shape-alg-none.jwt".into(), none.into_bytes()));
    out.push(("shape-jwe-5-segments.jwt".into(), format!("{}.a.b.c.d", b64url(br#"{"alg":"dir","enc":"A128GCM"}"#)).into_bytes()));
    let mut huge_kid = header.clone();
    huge_kid["kid"] = json!("k".repeat(4000));
    out.push(("shape-huge-kid.jwt".into(), signed(&huge_kid, &claims).into_bytes()));
    let mut string_exp = claims.clone();
    string_exp["exp"] = json!((NOW + 600).to_string());
    out.push(("shape-string-exp.jwt".into(), signed(&header, &string_exp).into_bytes()));
    let mut rpm = claims.clone();
    rpm["rpm"] = json!(60);
    out.push(("shape-rpm.jwt".into(), signed(&header, &rpm).into_bytes()));
    out.push(("shape-too-large.jwt".into(), "a".repeat(MAX_TOKEN_BYTES + 1).into_bytes()));
    out.push(("shape-empty-parts.jwt".into(), b"..".to_vec()));
    out.push(("shape-not-base64.jwt".into(), b"a!b.c$d.e%f".to_vec()));
    // Structured mode (first byte 0x01): the builder's choices from these bytes.
    out.push(("structured-zeros.bin".into(), [&[1u8][..], &[0u8; 64]].concat()));
    out.push(("structured-ones.bin".into(), [&[1u8][..], &[0xffu8; 64]].concat()));
    out.push(("structured-ramp.bin".into(), std::iter::once(1u8).chain((0..=255u8).map(|b| b.wrapping_mul(37))).collect()));
    out
}

fn path_seeds() -> Vec<(String, Vec<u8>)> {
    let user = mint("alice", "user", &["ml-team"], None, 3600, "tok_alice");
    let partner = mint("acme", "partner", &[], Some(&["llama"]), 3600, "tok_acme");
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, path) in [
        "/llama/v1/chat/completions",
        "/e/abc/x",
        "/_gateway/routes/x",
        "/%2e%2e/",
        "/a%2fb",
        "//x",
        "/a/./b",
        "/llama/../_gateway/routes",
        "/llama/%2E%2e/x",
        "/llama/a%5c..",
        "/llama/%00",
        "/llama/%ff",
        "/llama/a%20b/?stream=true",
        "/_gateway/healthz",
        "/pub/v1/models?x=1&y=%2F",
        "/pub/",
        "/nope/x",
        "/_x/y",
        "*",
        "http://models.example.com/v1/models",
    ]
    .iter()
    .enumerate()
    {
        let name: String = slug(path).chars().take(50).collect();
        let name = if name.is_empty() { "other".to_string() } else { name };
        out.push((format!("path-{i:02}-{name}.txt"), path.as_bytes().to_vec()));
    }
    out.push(("path-e-valid.txt".into(), format!("/e/{EPHEMERAL_ID}/v1/models").into_bytes()));
    let with_headers = |path: &str, headers: &[(&str, &str)]| {
        let mut s = path.to_string();
        for (n, v) in headers {
            s.push_str(&format!("\n{n}: {v}"));
        }
        s.into_bytes()
    };
    out.push(("req-llama-user.txt".into(), with_headers("/llama/v1/chat/completions", &[
        ("host", "gw.example.com"), ("authorization", &format!("Bearer {user}")), ("content-length", "12"), ("x-session-id", "s1"),
    ])));
    out.push(("req-llama-partner-hostile-headers.txt".into(), with_headers("/llama/v1/models?x=1", &[
        ("authorization", &format!("Bearer {partner}")), ("connection", "x-foo, keep-alive"), ("x-foo", "1"), ("proxy-authorization", "Basic x"),
        ("x-forwarded-for", "1.2.3.4"), ("x-request-id", "client-rid"), ("cookie", "a=1; sid=zz"), ("te", "trailers"), ("host", "gw.example.com:443"),
    ])));
    out.push(("req-llama-no-token.txt".into(), with_headers("/llama/x", &[("host", "gw.example.com")])));
    out.push(("req-llama-huge-body.txt".into(), with_headers("/llama/x", &[("authorization", &format!("Bearer {user}")), ("content-length", "10485761")])));
    out.push(("req-llama-bad-length.txt".into(), with_headers("/llama/x", &[("authorization", &format!("Bearer {user}")), ("content-length", "12, 12")])));
    out.push(("req-hosted.txt".into(), with_headers("/v1/models", &[("host", &format!("{HOSTED}:8443"))])));
    out.push(("req-hosted-admin.txt".into(), with_headers("/_gateway/routes", &[("host", HOSTED)])));
    out.push(("req-ephemeral.txt".into(), with_headers(&format!("/e/{EPHEMERAL_ID}/v1/models"), &[("host", "gw.example.com")])));
    out.push(("req-pub-post.txt".into(), [&with_headers("/pub/v1/completions", &[("host", "gw.example.com")])[..], b"\n*m\x02"].concat()));
    out.push(("req-many-headers.txt".into(), [&with_headers("/pub/x", &[("x-a", "1")])[..], b"\n*h\xff"].concat()));
    out.push(("req-long-url.txt".into(), [&b"/pub/x?q=1"[..], b"\n*p\xff"].concat()));
    out
}

/// A `headers` input: the flags byte, client request headers, an empty line, upstream response headers.
fn header_input(flags: u8, request: &[&str], response: &[&str]) -> Vec<u8> {
    [&[flags][..], request.join("\n").as_bytes(), b"\n\n", response.join("\n").as_bytes()].concat()
}

fn header_seeds() -> Vec<(String, Vec<u8>)> {
    vec![
        // Sandbox on, cookies dropped, affinity cookie `sid`, route prefix `/llama/`, endpoint http://10.0.0.1:8000.
        ("hostile-both-ways.bin".into(), header_input(0x04, &[
            "authorization: Bearer client-token", "cookie: dashboard=secret; sid=zz", "cookie: other=1", "cf-connecting-ip: 6.6.6.6",
            "true-client-ip: 6.6.6.6", "x-forwarded-for: 6.6.6.6", "x-forwarded-host: evil.example", "x-real-ip: 6.6.6.6",
            "forwarded: for=6.6.6.6", "connection: keep-alive, x-hop", "x-hop: 1", "content-type: application/json",
        ], &[
            "set-cookie: session=x; Path=/", "service-worker-allowed: /", "content-security-policy: default-src 'self'",
            "location: http://10.0.0.1:8000/v1/models", "content-location: http://10.0.0.1:80001/x", "transfer-encoding: chunked",
        ])),
        // Sandbox off, Set-Cookie forwarded, host route (prefix `/`): redirects that must not leave the origin.
        ("host-route-redirects.bin".into(), header_input(0x0b, &["cookie: sid=zz"], &[
            "location: http://10.0.0.1:8000/\\evil.com", "location: //evil.com", "location: /\\evil.com", "location: /\t/evil.com",
            "location: http://10.0.0.1:8000evil.com/", "content-location: HTTP://evil.com", "set-cookie: a=1",
            "content-security-policy: sandbox", "connection: content-security-policy",
        ])),
    ]
}

fn admin_seeds() -> Vec<(String, Vec<u8>)> {
    // The route object of API.md, as written there.
    let api_md = json!({
        "name": "llama-prod", "host": null, "enabled": true,
        "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000", "weight": 1}],
        "auth": {"required": true, "groups": ["ml-team", "partner-acme"]},
        "affinity": {"header": "x-session-id", "cookie": null},
        "upstream_api_key_secret": "VLLM_API_KEY",
        "timeouts": {"connect_ms": 2000, "response_ms": 300000},
        "max_body_bytes": 10485760, "managed_by": "terraform"
    });
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("json");
    let call = |line: &str, body: &serde_json::Value| [line.as_bytes(), b"\n", &pretty(body)].concat();
    let mut out: Vec<(String, Vec<u8>)> = vec![("route-api-md.json".into(), pretty(&api_md))];
    let mut own = api_md.clone();
    own.as_object_mut().unwrap().remove("managed_by");
    out.push(("put-route-api-md.txt".into(), call("PUT routes/llama-prod", &own)));
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let variants: Vec<(&str, Edit)> = vec![
        ("full", Box::new(|r| {
            r["host"] = json!("llama.example.com");
            r["affinity"] = json!({"header": null, "cookie": "sid"});
            r["endpoints"] = json!([{"id": "a", "url": "https://10.0.1.5:8443/v1", "weight": 1000, "via": "VPC_1"}, {"id": "b.2", "url": "http://[::1]:8000"}]);
            r["timeouts"] = json!({"connect_ms": 1, "response_ms": 3600000, "idle_ms": 1000});
            r["rate_limit_rpm"] = json!(60);
            r["enabled"] = json!(false);
        })),
        ("minimal", Box::new(|r| *r = json!({"name": "llama-prod"}))),
        ("public", Box::new(|r| r["auth"] = json!({"required": false}))),
        ("weight-zero", Box::new(|r| r["endpoints"][0]["weight"] = json!(0))),
        ("unknown-field", Box::new(|r| r["colour"] = json!("red"))),
        ("expires", Box::new(|r| r["expires_at"] = json!(NOW + 60))),
        ("managed", Box::new(|r| r["managed_by"] = json!("terraform"))),
        ("aws-secret", Box::new(|r| r["upstream_api_key_secret"] = json!("AWS_SECRET_ACCESS_KEY"))),
        ("url-credentials", Box::new(|r| r["endpoints"][0]["url"] = json!("http://user:pw@10.0.1.5:8000"))),
        ("url-ftp", Box::new(|r| r["endpoints"][0]["url"] = json!("ftp://10.0.1.5"))),
        ("url-query", Box::new(|r| r["endpoints"][0]["url"] = json!("http://h:1/x?y=1"))),
        ("duplicate-endpoints", Box::new(|r| r["endpoints"] = json!([{"id": "a", "url": "http://h"}, {"id": "a", "url": "http://i"}]))),
        ("host-taken", Box::new(|r| r["host"] = json!(HOSTED))),
        ("host-uppercase", Box::new(|r| r["host"] = json!("Models.Example.com"))),
        ("bad-header", Box::new(|r| r["affinity"]["header"] = json!("x session"))),
        ("huge-timeout", Box::new(|r| r["timeouts"]["response_ms"] = json!(u64::MAX))),
        ("rpm-zero", Box::new(|r| r["rate_limit_rpm"] = json!(0))),
        ("body-limit-zero", Box::new(|r| r["max_body_bytes"] = json!(0))),
        ("name-mismatch", Box::new(|r| r["name"] = json!("other"))),
    ];
    for (name, f) in variants {
        let mut r = own.clone();
        f(&mut r);
        out.push((format!("route-{name}.json"), pretty(&r)));
        out.push((format!("put-route-{name}.txt"), call("PUT routes/llama-prod", &r)));
    }
    let calls: Vec<(&str, &str, serde_json::Value)> = vec![
        ("put-route-new", "PUT routes/new", json!({"endpoints": [{"id": "a", "url": "http://10.0.0.1:8000"}]})),
        ("put-route-llama", "PUT routes/llama", json!({"endpoints": [{"id": "a", "url": "http://10.0.0.1:8000"}], "auth": {"groups": ["ml-team"]}})),
        ("put-route-tf", "PUT routes/tf", json!({"endpoints": []})),
        ("put-route-reserved", "PUT routes/_x", json!({})),
        ("put-route-user", "PUT routes/x user", json!({})),
        ("put-lease", "PUT routes/llama/endpoints/l2", json!({"url": "http://10.0.0.5:8000", "weight": 2, "lease_seconds": 30, "via": "VPC"})),
        ("put-lease-tf", "PUT routes/tf/endpoints/b", json!({"url": "http://h2", "lease_seconds": 30})),
        ("put-lease-defined", "PUT routes/llama/endpoints/a", json!({"url": "http://h2", "lease_seconds": 30})),
        ("put-lease-long", "PUT routes/llama/endpoints/l3", json!({"url": "http://h2", "lease_seconds": 86401})),
        ("post-ephemeral", "POST ephemeral", json!({"url": "http://h:1", "ttl_seconds": 120, "groups": ["dev"], "upstream_api_key_secret": "VLLM_KEY"})),
        ("post-ephemeral-no-ttl", "POST ephemeral", json!({"url": "http://h:1"})),
        ("post-token", "POST tokens", json!({"subject": "bob", "kind": "user", "groups": ["ml-team"], "ttl_seconds": 600, "description": "notebook", "metadata": {"team": "ml"}})),
        ("post-token-partner", "POST tokens", json!({"subject": "acme", "kind": "partner", "routes": ["llama"], "ttl_seconds": 600, "rate_limit_rpm": 60})),
        ("post-token-forever", "POST tokens", json!({"subject": "bob", "kind": "user"})),
        ("post-token-revoked-caller", "POST tokens revoked", json!({"subject": "bob", "kind": "user", "ttl_seconds": 600})),
    ];
    for (name, line, body) in calls {
        out.push((format!("{name}.txt"), call(line, &body)));
    }
    for (name, line) in [
        ("get-routes", "GET routes"),
        ("get-route", "GET routes/llama"),
        ("delete-route", "DELETE routes/llama"),
        ("delete-route-tf", "DELETE routes/tf"),
        ("delete-lease", "DELETE routes/llama/endpoints/l1"),
        ("get-tokens", "GET tokens?q=Ma+l%6Co"),
        ("delete-token", "DELETE tokens/tok_alice"),
        ("delete-token-revoked", "DELETE tokens/tok_revoked"),
        ("delete-token-bad", "DELETE tokens/../x"),
        ("get-audit", "GET audit?before=5&limit=10"),
        ("get-audit-bad", "GET audit?limit=0"),
        ("healthz", "GET healthz none"),
        ("healthz-post", "POST healthz none"),
        ("patch-route", "PATCH routes/llama"),
        ("head-routes", "HEAD routes"),
        ("no-token-write", "DELETE routes/llama none"),
        ("partner-read", "GET routes partner"),
        ("unknown-call", "GET nope"),
    ] {
        out.push((format!("{name}.txt"), line.as_bytes().to_vec()));
    }
    out
}
