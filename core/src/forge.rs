//! Hostile tokens, for the test suites only (feature `forge`): every shape of
//! token an attacker or a broken client might send, each of which the gateway
//! must refuse with 401 before any upstream is contacted. Each one is validly
//! signed with the gateway's own key unless the attack is on the signature, so
//! the refusal comes from the rule the case names.

use crate::config::Config;
use crate::token::{TokenIssuer, TokenKind, TokenRequest};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// One hostile token and the rule that must refuse it.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// Short name of the attack, for test output.
    pub name: &'static str,
    /// The token as sent after `Bearer `.
    pub token: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, signed with `key` under `alg` whatever the header says.
fn signed(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap_or_default();
    format!("{msg}.{sig}")
}

/// Every hostile token for `cfg` at `now`. `cfg`'s signing key must be HMAC.
/// `groups` are given to the otherwise valid claims, so that a token which
/// slipped through would reach the route under test.
pub fn hostile_tokens(cfg: &Config, now: u64, groups: &[&str]) -> Vec<Hostile> {
    let (kid, alg, key) = cfg.keys.signing_parts();
    let Some(key) = key else { return vec![] };
    let req = TokenRequest {
        subject: "mallory".into(),
        kind: TokenKind::User,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        routes: None,
        ttl_seconds: Some(3600),
        description: String::new(),
        metadata: Default::default(),
        rate_limit_rpm: None,
        registrar: None,
    };
    let Ok((valid, claims)) = TokenIssuer::new(cfg).issue(&req, now, "tok_hostile0000000000000000000".into()) else { return vec![] };
    let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": kid});
    let payload = serde_json::to_value(&claims).unwrap_or(Value::Null);
    let with_header = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        signed(&h, &payload, key, alg)
    };
    let with_claims = |f: &dyn Fn(&mut Value)| {
        let mut p = payload.clone();
        f(&mut p);
        signed(&header, &p, key, alg)
    };
    let unsigned = |alg_name: &str| format!("{}.{}.", b64(json!({"alg": alg_name, "typ": "JWT", "kid": kid}).to_string().as_bytes()), b64(payload.to_string().as_bytes()));
    let (body, sig) = valid.rsplit_once('.').unwrap_or((&valid, ""));
    let other_key = EncodingKey::from_secret(b"another-key-that-is-32-bytes-long!!");
    let mut out = vec![
        Hostile { name: "alg none", token: unsigned("none") },
        Hostile { name: "alg None", token: unsigned("None") },
        Hostile { name: "alg NONE", token: unsigned("NONE") },
        Hostile { name: "signature stripped", token: format!("{body}.") },
        Hostile { name: "signature truncated", token: format!("{body}.{}", &sig[..sig.len().saturating_sub(6)]) },
        Hostile { name: "signed by another key", token: signed(&header, &payload, &other_key, alg) },
        Hostile { name: "HS512 with the right secret while HS256 is pinned", token: with_header(&|h| h["alg"] = json!("HS512")) },
        Hostile { name: "RS256 header, HMAC signature (RS/HS confusion)", token: with_header(&|h| h["alg"] = json!("RS256")) },
        Hostile { name: "ES256 header, HMAC signature", token: with_header(&|h| h["alg"] = json!("ES256")) },
        Hostile { name: "claims tampered after signing", token: {
            let mut p = payload.clone();
            p["groups"] = json!(["admin", "ml-team"]);
            format!("{}.{}.{sig}", body.split('.').next().unwrap_or(""), b64(p.to_string().as_bytes()))
        } },
        Hostile { name: "exp missing", token: with_claims(&|p| { p.as_object_mut().map(|o| o.remove("exp")); }) },
        Hostile { name: "exp in the past beyond the leeway", token: with_claims(&|p| {
            p["iat"] = json!(now - 7200);
            p["nbf"] = json!(now - 7200);
            p["exp"] = json!(now - cfg.leeway - 60);
        }) },
        Hostile { name: "exp string-typed", token: with_claims(&|p| p["exp"] = json!((now + 600).to_string())) },
        Hostile { name: "exp a float", token: with_claims(&|p| p["exp"] = json!((now + 600) as f64 + 0.5)) },
        Hostile { name: "nbf in the future", token: with_claims(&|p| p["nbf"] = json!(now + 600)) },
        Hostile { name: "iat in the future", token: with_claims(&|p| { p["iat"] = json!(now + 600); p["exp"] = json!(now + 1200); }) },
        Hostile { name: "exp - iat over the maximum lifetime", token: with_claims(&|p| p["exp"] = json!(now + cfg.max_token_ttl + 3600)) },
        Hostile { name: "wrong iss", token: with_claims(&|p| p["iss"] = json!("https://evil.example")) },
        Hostile { name: "missing iss", token: with_claims(&|p| { p.as_object_mut().map(|o| o.remove("iss")); }) },
        Hostile { name: "wrong aud", token: with_claims(&|p| p["aud"] = json!("another-service")) },
        Hostile { name: "missing aud", token: with_claims(&|p| { p.as_object_mut().map(|o| o.remove("aud")); }) },
        Hostile { name: "typ at+jwt", token: with_header(&|h| h["typ"] = json!("at+jwt")) },
        Hostile { name: "typ missing", token: with_header(&|h| { h.as_object_mut().map(|o| o.remove("typ")); }) },
        Hostile { name: "kid unknown", token: with_header(&|h| h["kid"] = json!("nobody")) },
        Hostile { name: "kid empty", token: with_header(&|h| h["kid"] = json!("")) },
        Hostile { name: "kid missing", token: with_header(&|h| { h.as_object_mut().map(|o| o.remove("kid")); }) },
        Hostile { name: "kid path traversal", token: with_header(&|h| h["kid"] = json!("../../../../dev/null")) },
        Hostile { name: "kid SQL", token: with_header(&|h| h["kid"] = json!("x' UNION SELECT 'secret' --")) },
        Hostile { name: "inline jwk", token: with_header(&|h| h["jwk"] = json!({"kty": "oct", "k": b64(b"attacker-chosen-secret-32-bytes!!")})) },
        Hostile { name: "jku header", token: with_header(&|h| h["jku"] = json!("https://attacker.example/jwks.json")) },
        Hostile { name: "x5u header", token: with_header(&|h| h["x5u"] = json!("https://attacker.example/cert.pem")) },
        Hostile { name: "crit header", token: with_header(&|h| h["crit"] = json!(["exp"])) },
        Hostile { name: "tens of kilobytes", token: with_claims(&|p| p["pad"] = json!("A".repeat(20 * 1024))) },
        Hostile { name: "JWE-shaped (5 segments)", token: format!("{}.{}..{}.{}", b64(br#"{"alg":"dir","enc":"A256GCM","kid":"k"}"#), b64(b"iv"), b64(b"ciphertext"), b64(b"tag")) },
        Hostile { name: "not base64", token: "a!b.c$d.e%f".into() },
        Hostile { name: "jti not a gateway token id", token: with_claims(&|p| p["jti"] = json!("../../admin")) },
        Hostile { name: "partner without routes", token: with_claims(&|p| p["kind"] = json!("partner")) },
        Hostile { name: "unknown kind", token: with_claims(&|p| p["kind"] = json!("root")) },
    ];
    out.retain(|h| !h.token.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::test_config;
    use crate::token::TokenVerifier;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn every_hostile_token_is_refused_with_401() {
        let cfg = test_config();
        let v = TokenVerifier::new(&cfg);
        let all = hostile_tokens(&cfg, NOW, &["ml-team"]);
        assert!(all.len() >= 35, "{}", all.len());
        for h in &all {
            match v.verify(&h.token, NOW) {
                Ok(p) => panic!("accepted hostile token `{}` as {p:?}", h.name),
                Err(e) => assert_eq!(e.status(), 401, "{}: {e}", h.name),
            }
        }
    }

    #[test]
    fn the_baseline_is_valid_so_each_case_tests_its_own_rule() {
        // Re-signing the untouched header and claims must verify: otherwise every
        // case above would be refused for the wrong reason.
        let cfg = test_config();
        let (kid, alg, key) = cfg.keys.signing_parts();
        let (tok, claims) = TokenIssuer::new(&cfg)
            .issue(&TokenRequest { subject: "s".into(), kind: TokenKind::User, groups: vec![], routes: None, ttl_seconds: Some(600), description: String::new(), metadata: Default::default(), rate_limit_rpm: None, registrar: None }, NOW, "tok_base".into())
            .unwrap();
        let again = signed(&json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": kid}), &serde_json::to_value(&claims).unwrap(), key.unwrap(), alg);
        assert!(TokenVerifier::new(&cfg).verify(&again, NOW).is_ok());
        assert!(TokenVerifier::new(&cfg).verify(&tok, NOW).is_ok());
    }
}
