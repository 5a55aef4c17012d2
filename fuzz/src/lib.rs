//! Shared fixtures of the fuzz targets: one fixed configuration (the same HS256
//! key as core's `config::tests::test_config`), a fixed clock, tokens minted
//! with core's own issuer, a pre-filled `MemoryStore`, and checks every
//! target applies to the errors it sees.

use base64::Engine as _;
use gateway_core::route::{Endpoint, Route};
use gateway_core::store::{AdminStore, MemoryStore, TokenRecord};
use gateway_core::token::{TokenIssuer, TokenRequest};
use gateway_core::{Config, Error};
use hmac::{Hmac, Mac};
use serde_json::json;
use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

/// The clock every target runs at (2027-01-15).
pub const NOW: u64 = 1_800_000_000;
/// The HS256 secret of the fuzz configuration (32 bytes), as core's tests use it.
pub const SECRET: &[u8] = b"01234567890123456789012345678901";
/// `SECRET` in standard base64, as `GATEWAY_SIGNING_KEYS` holds it.
pub const SECRET_B64: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";
/// The kid of the only key.
pub const KID: &str = "k1";
/// Route names and ids the pre-filled store holds.
pub const EPHEMERAL_ID: &str = "abcdefghijklmnop";
/// Host bound to the `hosted` route.
pub const HOSTED: &str = "models.example.com";
/// The platform secret the `llama` route sends upstream.
pub const UPSTREAM_SECRET: &str = "VLLM_KEY";
/// Its value.
pub const UPSTREAM_SECRET_VALUE: &str = "upstream-secret";

/// The configuration of every target, built like core's `test_config` through `Config::from_lookup`.
pub fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let keys = format!(r#"[{{"kid":"{KID}","alg":"HS256","secret":"{SECRET_B64}"}}]"#);
        Config::from_lookup(&|k| (k == "GATEWAY_SIGNING_KEYS").then(|| keys.clone())).expect("fuzz config").with_upstream_secrets(upstream_secrets())
    })
}

/// The same configuration with `GATEWAY_PLAIN_HTTP=redirect`.
pub fn config_redirect() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let keys = format!(r#"[{{"kid":"{KID}","alg":"HS256","secret":"{SECRET_B64}"}}]"#);
        Config::from_lookup(&|k| match k {
            "GATEWAY_SIGNING_KEYS" => Some(keys.clone()),
            "GATEWAY_PLAIN_HTTP" => Some("redirect".into()),
            _ => None,
        })
        .expect("fuzz config")
        .with_upstream_secrets(upstream_secrets())
    })
}

/// The platform's secrets: the one the `llama` route names.
fn upstream_secrets() -> gateway_core::config::UpstreamSecrets {
    gateway_core::config::UpstreamSecrets::from_settings([(UPSTREAM_SECRET.to_string(), UPSTREAM_SECRET_VALUE.to_string())])
}

/// URL-safe base64 without padding, as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The HS256 signature (base64url) of `signing_input` under the fuzz key.
pub fn hs256(signing_input: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(signing_input);
    b64url(&mac.finalize().into_bytes())
}

/// A token minted with core's `TokenIssuer` at `NOW`. The request is read from
/// JSON, as the admin API reads it, so fields core adds later take their defaults.
pub fn mint(subject: &str, kind: &str, groups: &[&str], routes: Option<&[&str]>, ttl: u64, jti: &str) -> String {
    // Partner tokens name their partner and contract.
    let metadata = if kind == "partner" { json!({"partner": "acme", "contract_id": "C-fuzz"}) } else { json!({}) };
    let req: TokenRequest = serde_json::from_value(json!({
        "subject": subject, "kind": kind, "groups": groups, "routes": routes, "ttl_seconds": ttl, "metadata": metadata,
    }))
    .expect("token request");
    TokenIssuer::new(config()).issue(&req, NOW, jti.into()).expect("mint").0
}

/// Bearer tokens of each caller the targets play.
pub struct Callers {
    /// Group `admin`.
    pub admin: http::HeaderValue,
    /// Group `ml-team` (reaches `llama`, not the admin API).
    pub user: http::HeaderValue,
    /// A partner allowed `llama` only.
    pub partner: http::HeaderValue,
    /// An admin token the store has revoked.
    pub revoked: http::HeaderValue,
}

/// The callers, minted once.
pub fn callers() -> &'static Callers {
    static C: OnceLock<Callers> = OnceLock::new();
    C.get_or_init(|| {
        let hv = |t: String| http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header");
        Callers {
            admin: hv(mint("ops", "user", &["admin"], None, 3600, "tok_admin")),
            user: hv(mint("alice", "user", &["ml-team"], None, 3600, "tok_alice")),
            partner: hv(mint("acme", "partner", &[], Some(&["llama"]), 3600, "tok_acme")),
            revoked: hv(mint("mallory", "user", &["admin"], None, 3600, "tok_revoked")),
        }
    })
}

/// A store holding: `llama` (group `ml-team`, two endpoints, an upstream secret, a
/// session cookie, one lease), `pub` (no auth), `tf` (managed by Terraform),
/// `hosted` (bound to `models.example.com`), one ephemeral route and one revoked token.
pub fn seeded_store() -> MemoryStore {
    let s = MemoryStore::default();
    let mut llama = Route::new("llama", vec![Endpoint::new("a", "http://10.0.0.1:8000"), Endpoint::new("b", "http://10.0.0.2:8000/v1/")]);
    llama.auth.groups = vec!["ml-team".into()];
    llama.upstream_api_key_secret = Some(UPSTREAM_SECRET.into());
    llama.affinity.cookie = Some("sid".into());
    let mut public = Route::new("pub", vec![Endpoint::new("p", "https://public.example.com/base")]);
    public.auth.required = false;
    let mut tf = Route::new("tf", vec![Endpoint::new("a", "http://h")]);
    tf.managed_by = Some("terraform".into());
    let mut hosted = Route::new("hosted", vec![Endpoint::new("h", "http://10.0.0.3:8000")]);
    hosted.host = Some(HOSTED.into());
    hosted.auth.required = false;
    let mut eph = Route::new(EPHEMERAL_ID, vec![Endpoint::new("e0", "http://10.0.0.4:8000")]);
    eph.auth.required = false;
    eph.expires_at = Some(NOW + 600);
    let mut lease = Endpoint::new("l1", "http://10.0.0.9:8000");
    lease.lease_expires_at = Some(NOW + 30);
    let revoked: TokenRecord = serde_json::from_value(json!({
        "id": "tok_revoked", "subject": "mallory", "kind": "user", "groups": ["admin"], "routes": null,
        "description": "", "created_by": "ops", "created_at": NOW, "expires_at": NOW + 3600, "revoked_at": NOW,
    }))
    .expect("token record");
    block_on(async {
        for r in [&llama, &public, &tf, &hosted] {
            s.put_route(r, None).await.unwrap();
        }
        s.put_ephemeral(&eph).await.unwrap();
        s.put_lease("llama", &lease).await.unwrap();
        s.revoke(&revoked).await.unwrap();
    });
    s
}

/// Runs a future that never waits (the `MemoryStore`'s are always ready).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("a MemoryStore future stayed pending");
}

/// Every error renders to its status, a JSON body naming its code, and a response.
pub fn check_error(e: &Error) {
    let status = e.status();
    assert!(status.is_client_error() || status.is_server_error(), "{e:?} has status {status}");
    let body: serde_json::Value = serde_json::from_slice(&e.body()).expect("error body is JSON");
    assert_eq!(body["error"]["code"], e.code(), "{e:?}");
    let res = e.into_response();
    assert_eq!(res.status(), status);
    let _ = e.to_string();
}
