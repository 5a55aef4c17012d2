//! Bearer tokens: `TokenVerifier::verify` and `bearer` must never panic, and
//! whatever they accept must meet the rules token.rs promises.
//!
//! Input: raw bytes are the token (lossy UTF-8) and the `Authorization` value.
//! An input that starts with `STRUCTURED` instead drives a token builder:
//! header and payload JSON assembled from fuzz-chosen pieces, base64url-encoded,
//! and signed with the real key when the fuzzer asks, so runs reach the JSON
//! decoding and the claim checks past the split and the signature.
#![no_main]

use gateway_core::token::{bearer, TokenKind, TokenVerifier, MAX_TOKEN_BYTES};
use gateway_core::Error;
use gateway_fuzz::{b64url, check_error, config, hs256, KID, NOW};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// First byte that selects the structured mode.
const STRUCTURED: u8 = 0x01;

fuzz_target!(|data: &[u8]| {
    if let Some((&STRUCTURED, rest)) = data.split_first() {
        let mut u = Unstructured::new(rest);
        if let Ok((token, now)) = build_token(&mut u) {
            check_verify(&token, now);
        }
        return;
    }
    let token = String::from_utf8_lossy(data);
    check_verify(&token, NOW);
    check_bearer(data);
    let mut prefixed = b"Bearer ".to_vec();
    prefixed.extend_from_slice(data);
    check_bearer(&prefixed);
});

fn check_verify(token: &str, now: u64) {
    let cfg = config();
    let result = TokenVerifier::new(cfg).verify(token, now);
    match &result {
        Ok(p) => {
            assert!(token.len() <= MAX_TOKEN_BYTES, "accepted an over-long token");
            assert_eq!(token.bytes().filter(|&b| b == b'.').count(), 2, "accepted a token that is not three parts");
            assert!(p.token_id.starts_with("tok_") && p.token_id.len() <= 64, "accepted jti {:?}", p.token_id);
            assert!(now <= p.expires_at.saturating_add(cfg.leeway), "accepted an expired token: {p:?} at {now}");
            if p.kind == TokenKind::Partner {
                assert!(p.routes.as_ref().is_some_and(|r| !r.is_empty()), "accepted a partner token without routes");
            }
        }
        Err(e) => {
            // A bad token is the caller's fault: always 401, never a 500.
            assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED, "{e:?}");
            if token.len() > MAX_TOKEN_BYTES {
                assert_eq!(*e, Error::InvalidToken("too large"));
            }
            check_error(e);
        }
    }
}

fn check_bearer(value: &[u8]) {
    let Ok(hv) = http::HeaderValue::from_bytes(value) else { return };
    match bearer(Some(&hv)) {
        Ok(token) => {
            assert!(!token.is_empty() && token == token.trim(), "bearer returned {token:?}");
            let s = hv.to_str().expect("bearer accepted a non-visible-ASCII value");
            let (scheme, _) = s.split_once(' ').expect("bearer accepted a value without a scheme");
            assert!(scheme.eq_ignore_ascii_case("bearer"), "bearer accepted scheme {scheme:?}");
            assert!(s.trim_end().ends_with(token), "bearer returned {token:?} from {s:?}");
            check_verify(token, NOW);
        }
        Err(e) => {
            assert!(matches!(e, Error::MissingToken | Error::InvalidToken(_)), "{e:?}");
            check_error(&e);
        }
    }
}

// The builder reads its choices from the input with `Unstructured`; choice 0,
// which is also what an exhausted input reads, is always the well-formed one,
// so short inputs make valid tokens and mutations step away from them.

/// True once in `n` (never on a zero byte or an exhausted input).
fn one_in(u: &mut Unstructured, n: u32) -> Result<bool> {
    Ok(u.int_in_range(0..=n - 1)? == n - 1)
}

/// One of `choices` (the first by default), or now and then a fuzz-made string.
fn pick(u: &mut Unstructured, choices: &[&str]) -> Result<String> {
    if one_in(u, 8)? {
        return u.arbitrary::<String>();
    }
    let i = u.int_in_range(0..=choices.len() - 1)?;
    Ok(choices[i].to_string())
}

/// Any JSON value, nested at most `depth` deep.
fn any_json(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 6 } else { 8 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<i64>()?),
        3 => json!(u.arbitrary::<u64>()?),
        4 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 | 6 => Value::String(u.arbitrary()?),
        7 => Value::Array((0..u.int_in_range(0..=3)?).map(|_| any_json(u, depth - 1)).collect::<Result<_>>()?),
        _ => {
            let mut m = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                m.insert(u.arbitrary()?, any_json(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

/// A field that is usually well formed, sometimes absent, sometimes any JSON.
fn field(u: &mut Unstructured, m: &mut Map<String, Value>, name: &str, good: Value) -> Result<()> {
    match u.int_in_range(0..=9)? {
        8 => {}
        9 => {
            m.insert(name.into(), any_json(u, 2)?);
        }
        _ => {
            m.insert(name.into(), good);
        }
    }
    Ok(())
}

/// `NOW` plus a small offset, or an edge value, or a wrong type (string exp, float, negative).
fn time(u: &mut Unstructured, offset: i64) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        4 => json!(0),
        5 => json!(u64::MAX),
        6 => json!(u.arbitrary::<u64>()?),
        7 => json!(-(u.int_in_range(1..=1_000_000i64)?)),
        8 => json!((NOW as i64 + offset).to_string()),
        9 => json!((NOW as i64 + offset) as f64 + 0.5),
        _ => {
            let delta = u.int_in_range(0..=200_000i64)?;
            json!(NOW as i64 + offset + if u.arbitrary()? { -delta } else { delta })
        }
    })
}

fn header(u: &mut Unstructured) -> Result<Vec<u8>> {
    if one_in(u, 16)? {
        return Ok(u.arbitrary::<String>()?.into_bytes());
    }
    let mut h = Map::new();
    let alg = pick(u, &["HS256", "HS384", "HS512", "EdDSA", "none", "None", "NONE", "RS256", "ES256", "PS256", ""])?;
    field(u, &mut h, "alg", json!(alg))?;
    let typ = pick(u, &["JWT", "jwt", "JWE", "at+jwt"])?;
    field(u, &mut h, "typ", json!(typ))?;
    let kid = match u.int_in_range(0..=7)? {
        4 => "k".repeat(u.int_in_range(0..=10_000)?),
        5 => u.arbitrary::<String>()?,
        6 => "K1".into(),
        7 => "../k1".into(),
        _ => KID.into(),
    };
    field(u, &mut h, "kid", json!(kid))?;
    // Parameters the verifier must refuse (keys from the token) or ignore.
    for name in ["jku", "jwk", "x5u", "x5c", "crit", "cty", "enc", "zip", "x5t", "extra"] {
        if one_in(u, 16)? {
            h.insert(name.into(), any_json(u, 2)?);
        }
    }
    Ok(serde_json::to_vec(&Value::Object(h)).expect("json"))
}

fn payload(u: &mut Unstructured) -> Result<Vec<u8>> {
    if one_in(u, 16)? {
        return Ok(u.arbitrary::<String>()?.into_bytes());
    }
    let cfg = config();
    let mut c = Map::new();
    let iss = pick(u, &[&cfg.issuer, "evil", ""])?;
    field(u, &mut c, "iss", json!(iss))?;
    let aud = pick(u, &[&cfg.audience, "other"])?;
    let aud = if one_in(u, 6)? { json!([aud, "other"]) } else { json!(aud) };
    field(u, &mut c, "aud", aud)?;
    let sub = pick(u, &["alice", "ops", ""])?;
    field(u, &mut c, "sub", json!(sub))?;
    let jti = match u.int_in_range(0..=5)? {
        3 => u.arbitrary::<String>()?,
        4 => format!("tok_{}", "x".repeat(u.int_in_range(0..=100)?)),
        5 => format!("tok_{}", u.arbitrary::<String>()?),
        _ => "tok_fuzz".into(),
    };
    field(u, &mut c, "jti", json!(jti))?;
    for (name, offset) in [("iat", 0), ("nbf", 0), ("exp", 3600)] {
        let t = time(u, offset)?;
        field(u, &mut c, name, t)?;
    }
    let groups: Vec<String> = (0..u.int_in_range(0..=3)?).map(|_| pick(u, &["ml-team", "admin", "partner-acme"])).collect::<Result<_>>()?;
    field(u, &mut c, "groups", json!(groups))?;
    let kind = pick(u, &["user", "service", "partner", "User", "admin"])?;
    field(u, &mut c, "kind", json!(kind))?;
    if u.arbitrary()? {
        let routes: Vec<String> = (0..u.int_in_range(0..=3)?).map(|_| pick(u, &["llama", "abcdefghijklmnop", ""])).collect::<Result<_>>()?;
        field(u, &mut c, "routes", json!(routes))?;
    }
    if one_in(u, 4)? {
        let rpm = match u.int_in_range(0..=3)? {
            2 => json!(0),
            3 => json!(u64::from(u32::MAX) + 1),
            _ => json!(u.int_in_range(1..=1_000_000u32)?),
        };
        field(u, &mut c, "rpm", rpm)?;
    }
    if one_in(u, 8)? {
        let extra: String = u.arbitrary()?;
        c.insert(extra, any_json(u, 2)?);
    }
    Ok(serde_json::to_vec(&Value::Object(c)).expect("json"))
}

/// Encodes one part: base64url (usually), padded standard base64, or the raw text.
fn encode(u: &mut Unstructured, bytes: &[u8]) -> Result<String> {
    use base64::Engine as _;
    Ok(match u.int_in_range(0..=15)? {
        13 => base64::engine::general_purpose::STANDARD.encode(bytes),
        14 => String::from_utf8_lossy(bytes).into_owned(),
        15 => base64::engine::general_purpose::URL_SAFE.encode(bytes),
        _ => b64url(bytes),
    })
}

fn build_token(u: &mut Unstructured) -> Result<(String, u64)> {
    let h = header(u)?;
    let p = payload(u)?;
    let signing_input = format!("{}.{}", encode(u, &h)?, encode(u, &p)?);
    let sig = match u.int_in_range(0..=7)? {
        5 => String::new(),
        6 => b64url(&u.arbitrary::<Vec<u8>>()?),
        7 => u.arbitrary::<String>()?,
        // The real key's signature, so the claim checks past it are reached.
        _ => hs256(signing_input.as_bytes()),
    };
    let mut token = format!("{signing_input}.{sig}");
    match u.int_in_range(0..=15)? {
        // A JWE's five parts.
        13 => token.push_str(".e30.e30"),
        14 => token.push('.'),
        15 => token = format!(" {token} "),
        _ => {}
    }
    let now = match u.int_in_range(0..=15)? {
        13 => 0,
        14 => u64::MAX,
        15 => u.arbitrary()?,
        _ => NOW + u.int_in_range(0..=100_000)?,
    };
    Ok((token, now))
}
