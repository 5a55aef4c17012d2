//! What works without the gateway: minting a token with the signing key, and
//! generating a signing key.

use crate::cli::{Alg, TokenSpec};
use crate::duration::printable;
use base64::Engine as _;
use gateway_core::token::{new_token_id, Claims, TokenIssuer};
use gateway_core::{Config, Error};

/// Offline tokens longer than this get a warning: they are not listed, so they are easy to forget.
pub const LONG_OFFLINE_TTL: u64 = 24 * 3600;

/// A core error as an operator message (internal details are the CLI's own, so shown).
pub fn core_error(e: Error) -> String {
    match e {
        Error::Internal(m) => m,
        other => other.to_string(),
    }
}

/// Mints a token from `spec` at `now` under the admin API's rules. Returns the token and its claims.
pub fn mint(cfg: &Config, spec: &TokenSpec, now: u64) -> Result<(String, Claims), String> {
    let req = spec.to_request();
    // Validate before drawing an id, so the message is about the request.
    req.validate(cfg).map_err(core_error)?;
    let jti = new_token_id().map_err(core_error)?;
    TokenIssuer::new(cfg).issue(&req, now, jti).map_err(core_error)
}

/// True for a kid the gateway accepts.
pub fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A `GATEWAY_SIGNING_KEYS` value with one fresh key: HS256 (32 random bytes) or EdDSA (Ed25519, PEM).
pub fn generate_keys_json(kid: &str, alg: Alg) -> Result<String, String> {
    if !is_valid_kid(kid) {
        return Err(format!("--kid `{}` must be 1-64 characters [A-Za-z0-9._-]", printable(kid)));
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Written by hand to keep the documented field order; kid is plain ASCII.
    let value = match alg {
        Alg::Hs256 => format!(r#"[{{"kid":"{kid}","alg":"HS256","secret":"{}"}}]"#, b64(&bytes)),
        Alg::EdDsa => {
            let public = ed25519_dalek::SigningKey::from_bytes(&bytes).verifying_key().to_bytes();
            // PKCS#8 and SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): fixed prefixes, then the 32 bytes.
            let private_der = [&[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20][..], &bytes].concat();
            let public_der = [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], &public].concat();
            let private = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", b64(&private_der));
            let public = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", b64(&public_der));
            let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
            format!(r#"[{{"kid":"{kid}","alg":"EdDSA","private_key_pem":{},"public_key_pem":{}}}]"#, text(&private), text(&public))
        }
    };
    bytes.fill(0);
    // Whatever is printed must be a value the gateway starts with.
    Config::from_lookup(&|k| (k == "GATEWAY_SIGNING_KEYS").then(|| value.clone())).map_err(|e| e.to_string())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::config::DEFAULT_MAX_TOKEN_TTL;
    use gateway_core::token::{TokenKind, TokenVerifier};
    use std::collections::HashMap;

    const NOW: u64 = 1_800_000_000;
    const KEYS: &str = r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = HashMap::from([("GATEWAY_SIGNING_KEYS".to_string(), KEYS.to_string())]);
        map.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_lookup(&|k| map.get(k).cloned()).expect("test config")
    }

    fn spec(ttl: u64) -> TokenSpec {
        TokenSpec {
            rate_limit_rpm: None,
            subject: "ops".into(),
            kind: TokenKind::User,
            groups: vec!["admin".into(), "ml-team".into()],
            routes: None,
            ttl_seconds: ttl,
            description: "bootstrap".into(),
            registrar: None,
        }
    }

    #[test]
    fn minted_token_verifies_and_carries_the_groups() {
        let cfg = config(&[]);
        let (token, claims) = mint(&cfg, &spec(3600), NOW).unwrap();
        assert_eq!(claims.exp, NOW + 3600);
        let p = TokenVerifier::new(&cfg).verify(&token, NOW + 10).unwrap();
        assert_eq!(p.subject, "ops");
        assert_eq!(p.groups, ["admin", "ml-team"]);
        assert!(p.has_group("admin"));
        assert_eq!(p.kind, TokenKind::User);
        assert!(p.token_id.starts_with("tok_"));
        assert_eq!(p.expires_at, NOW + 3600);
        // And it expires.
        assert!(TokenVerifier::new(&cfg).verify(&token, NOW + 3600 + 60).is_err());
    }

    #[test]
    fn mint_refuses_lifetimes_outside_the_rules() {
        let cfg = config(&[]);
        assert!(mint(&cfg, &spec(59), NOW).unwrap_err().contains("ttl_seconds"));
        assert!(mint(&cfg, &spec(0), NOW).unwrap_err().contains("ttl_seconds"));
        assert!(mint(&cfg, &spec(DEFAULT_MAX_TOKEN_TTL + 1), NOW).unwrap_err().contains("ttl_seconds"));
        assert!(mint(&cfg, &spec(60), NOW).is_ok());
        assert!(mint(&cfg, &spec(DEFAULT_MAX_TOKEN_TTL), NOW).is_ok());
        // The configured maximum is the gateway's, not a constant.
        let short = config(&[("GATEWAY_MAX_TOKEN_TTL_SECONDS", "3600")]);
        assert!(mint(&short, &spec(3601), NOW).is_err());
        assert!(mint(&short, &spec(3600), NOW).is_ok());
    }

    #[test]
    fn mint_applies_the_other_rules_too() {
        let cfg = config(&[]);
        let mut partner = spec(600);
        partner.kind = TokenKind::Partner;
        assert!(mint(&cfg, &partner, NOW).unwrap_err().contains("routes"));
        partner.routes = Some(vec!["llama".into()]);
        assert!(mint(&cfg, &partner, NOW).unwrap_err().contains("cannot hold `admin`"));
        partner.groups = vec!["ml-team".into()];
        // Partner tokens name their partner and contract, which only the admin API takes (`--meta`).
        assert!(mint(&cfg, &partner, NOW).unwrap_err().contains("metadata.partner"));
        let mut service = spec(600);
        service.kind = TokenKind::Service;
        service.routes = Some(vec!["llama".into()]);
        let (t, _) = mint(&cfg, &service, NOW).unwrap();
        assert_eq!(TokenVerifier::new(&cfg).verify(&t, NOW).unwrap().routes, Some(vec!["llama".to_string()]));
        let mut bad = spec(600);
        bad.groups = vec!["no spaces".into()];
        assert!(mint(&cfg, &bad, NOW).unwrap_err().contains("groups"));
    }

    #[test]
    fn mint_uses_the_configured_issuer_and_signing_kid() {
        let cfg = config(&[("GATEWAY_ISSUER", "corp-gw")]);
        let (token, claims) = mint(&cfg, &spec(600), NOW).unwrap();
        assert_eq!(claims.iss, "corp-gw");
        // A gateway with another issuer refuses it.
        assert!(TokenVerifier::new(&config(&[])).verify(&token, NOW).is_err());
    }

    #[test]
    fn generated_keys_start_a_gateway_and_sign() {
        let a = generate_keys_json("k-2026-11", Alg::Hs256).unwrap();
        let b = generate_keys_json("k-2026-11", Alg::Hs256).unwrap();
        assert_ne!(a, b, "keys are random");
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v[0]["kid"], "k-2026-11");
        assert_eq!(v[0]["alg"], "HS256");
        let secret = base64::engine::general_purpose::STANDARD.decode(v[0]["secret"].as_str().unwrap()).unwrap();
        assert_eq!(secret.len(), 32);
        let map = HashMap::from([("GATEWAY_SIGNING_KEYS".to_string(), a)]);
        let cfg = Config::from_lookup(&|k| map.get(k).cloned()).unwrap();
        let (token, _) = mint(&cfg, &spec(600), NOW).unwrap();
        assert!(TokenVerifier::new(&cfg).verify(&token, NOW).is_ok());
        // Another key does not verify it.
        assert!(TokenVerifier::new(&config(&[])).verify(&token, NOW).is_err());
    }

    #[test]
    fn generated_eddsa_keys_start_a_gateway_and_sign() {
        let a = generate_keys_json("ed-1", Alg::EdDsa).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!((v[0]["kid"].as_str(), v[0]["alg"].as_str()), (Some("ed-1"), Some("EdDSA")));
        assert!(v[0]["private_key_pem"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_ne!(a, generate_keys_json("ed-1", Alg::EdDsa).unwrap(), "keys are random");
        let map = HashMap::from([("GATEWAY_SIGNING_KEYS".to_string(), a)]);
        let cfg = Config::from_lookup(&|k| map.get(k).cloned()).unwrap();
        let (token, _) = mint(&cfg, &spec(600), NOW).unwrap();
        assert!(TokenVerifier::new(&cfg).verify(&token, NOW).is_ok());
        assert!(TokenVerifier::new(&config(&[])).verify(&token, NOW).is_err());
    }

    #[test]
    fn bad_kids_are_refused() {
        for kid in ["", "has space", "quote\"", &"k".repeat(65)] {
            assert!(generate_keys_json(kid, Alg::Hs256).is_err(), "{kid:?}");
        }
    }
}
