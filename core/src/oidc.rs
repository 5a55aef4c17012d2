//! Internal users signed in through the company's identity providers (OIDC).
//!
//! A provider is trusted by configuration (`GATEWAY_OIDC_PROVIDERS`): its
//! issuer, the audience its tokens must name, where its keys are published,
//! the algorithms it may use, and how its groups become gateway groups. An
//! access token is routed to a provider by its `iss`; everything else the
//! token says about how to check it is distrusted: the algorithm must be one
//! the provider is configured for, the key is looked up by `kid` in the JWKS
//! fetched from the configured URL (never from `jku`/`x5u`/`jwk` in the
//! token, which are refused), and an unknown `kid` causes at most one refetch
//! per [`MIN_REFRESH_SECS`].
//!
//! The adapters fetch and cache the JWKS ([`crate::store::RouteSource::jwks`]);
//! [`JwksCache`] holds the caching rule they share.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::RouteSource;
use crate::token::{Principal, TokenKind, MAX_TOKEN_BYTES};
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// An unknown `kid` refetches the JWKS at most this often per provider (per isolate or instance).
pub const MIN_REFRESH_SECS: u64 = 5;
/// A JWKS that cannot be refreshed is still used this long after it was fetched.
pub const MAX_STALE_SECS: u64 = 24 * 3600;
/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Default of a provider's `max_token_lifetime_seconds`: a sign-in lasts at most a day.
pub const DEFAULT_MAX_TOKEN_LIFETIME: u64 = 24 * 3600;
/// Ceiling of a provider's `max_token_lifetime_seconds` (7 days).
pub const MAX_TOKEN_LIFETIME: u64 = 7 * 24 * 3600;

/// Algorithms a provider may be configured for: asymmetric only.
const ALLOWED: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// One trusted identity provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Short name, used in principals (`oidc:{name}:{sub}`) and logs.
    pub name: String,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The audience its tokens must name.
    pub audience: String,
    /// Where its keys are published.
    pub jwks_url: String,
    /// Algorithms accepted from it.
    pub algorithms: Vec<Algorithm>,
    /// Claim (dotted path) holding the user's groups.
    pub groups_claim: String,
    /// IdP group → gateway groups; unmapped IdP groups give nothing from it. The only way to grant `admin`.
    pub group_map: Option<BTreeMap<String, Vec<String>>>,
    /// IdP groups starting with this prefix give the gateway group named by the rest
    /// (`gw-ml-team` → `ml-team`), never `admin`. A provider has a map, a prefix or both.
    pub group_prefix: Option<String>,
    /// Claim naming the user (the principal's subject).
    pub subject_claim: String,
    /// How long fetched keys are used before they are fetched again, seconds.
    pub jwks_max_age: u64,
    /// Longest `exp - iat` accepted, seconds (`max_token_lifetime_seconds`).
    pub max_token_lifetime: u64,
    /// When set, the JWT header's `typ` must be this (or `application/` + this), case-insensitively.
    pub require_typ: Option<String>,
    /// When set, the token's `azp` must be present and one of these.
    pub allowed_azp: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderSpec {
    name: String,
    issuer: String,
    audience: String,
    jwks_url: String,
    algorithms: Vec<String>,
    #[serde(default)]
    groups_claim: Option<String>,
    #[serde(default)]
    group_map: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    subject_claim: Option<String>,
    #[serde(default)]
    jwks_max_age_seconds: Option<u64>,
    #[serde(default)]
    group_prefix: Option<String>,
    #[serde(default)]
    max_token_lifetime_seconds: Option<u64>,
    #[serde(default)]
    require_typ: Option<String>,
    #[serde(default)]
    allowed_azp: Option<Vec<String>>,
}

fn is_group(g: &str) -> bool {
    !g.is_empty() && g.len() <= 64 && g.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':'))
}

/// Parses `GATEWAY_OIDC_PROVIDERS`; errors name the provider, never a secret (there are none here).
pub fn parse_providers(json: &str, allow_http: bool) -> std::result::Result<Vec<Provider>, String> {
    let specs: Vec<ProviderSpec> =
        serde_json::from_str(json).map_err(|e| format!("is not a JSON array of providers ({e})"))?;
    let mut out: Vec<Provider> = Vec::new();
    for s in specs {
        let name = s.name;
        if name.is_empty() || name.len() > 32 || !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
            return Err("every provider needs a name of 1-32 characters [a-z0-9-]".into());
        }
        if out.iter().any(|p| p.name == name || p.issuer == s.issuer) {
            return Err(format!("provider `{name}`: name or issuer appears twice"));
        }
        if s.issuer.is_empty() || s.audience.is_empty() {
            return Err(format!("provider `{name}`: issuer and audience are required"));
        }
        let url_ok = s.jwks_url.starts_with("https://") || (allow_http && s.jwks_url.starts_with("http://"));
        if !url_ok {
            return Err(format!("provider `{name}`: jwks_url must be https://"));
        }
        if s.algorithms.is_empty() {
            return Err(format!("provider `{name}`: algorithms must name at least one algorithm"));
        }
        let mut algorithms = Vec::new();
        for a in &s.algorithms {
            let alg = ALLOWED
                .iter()
                .find(|(n, _)| n == a)
                .map(|(_, alg)| *alg)
                .ok_or_else(|| format!("provider `{name}`: algorithm `{a}` is not accepted (asymmetric only: RS*, PS*, ES256, ES384, EdDSA)"))?;
            algorithms.push(alg);
        }
        if let Some(map) = &s.group_map {
            if map.values().flatten().any(|g| !is_group(g)) {
                return Err(format!("provider `{name}`: group_map values must be gateway group names"));
            }
        }
        // IdP group names alone never grant routes: whoever may create groups at the IdP
        // must not reach a route by naming a group after it.
        if s.group_map.is_none() && s.group_prefix.is_none() {
            return Err(format!("provider `{name}`: needs group_map or group_prefix (IdP group names are not taken as gateway groups by name alone)"));
        }
        if let Some(prefix) = &s.group_prefix {
            if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(format!("provider `{name}`: group_prefix must be 1-64 printable characters without spaces"));
            }
        }
        let max_age = s.jwks_max_age_seconds.unwrap_or(600);
        if !(60..=86_400).contains(&max_age) {
            return Err(format!("provider `{name}`: jwks_max_age_seconds must be between 60 and 86400"));
        }
        let max_lifetime = s.max_token_lifetime_seconds.unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME);
        if !(60..=MAX_TOKEN_LIFETIME).contains(&max_lifetime) {
            return Err(format!("provider `{name}`: max_token_lifetime_seconds must be between 60 and {MAX_TOKEN_LIFETIME}"));
        }
        if let Some(typ) = &s.require_typ {
            if typ.is_empty() || typ.len() > 64 || !typ.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(format!("provider `{name}`: require_typ must be 1-64 printable characters, e.g. \"at+jwt\""));
            }
        }
        if let Some(azp) = &s.allowed_azp {
            if azp.is_empty() || azp.iter().any(|a| a.is_empty() || a.len() > 256 || a.chars().any(char::is_control)) {
                return Err(format!("provider `{name}`: allowed_azp must be a non-empty array of client ids"));
            }
        }
        out.push(Provider {
            name,
            issuer: s.issuer,
            audience: s.audience,
            jwks_url: s.jwks_url,
            algorithms,
            groups_claim: s.groups_claim.filter(|c| !c.is_empty()).unwrap_or_else(|| "groups".into()),
            group_map: s.group_map,
            group_prefix: s.group_prefix,
            subject_claim: s.subject_claim.filter(|c| !c.is_empty()).unwrap_or_else(|| "sub".into()),
            jwks_max_age: max_age,
            max_token_lifetime: max_lifetime,
            require_typ: s.require_typ,
            allowed_azp: s.allowed_azp,
        });
    }
    Ok(out)
}

/// A provider's published keys, as fetched at `fetched_at`.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<(String, Option<Algorithm>, DecodingKey)>,
    /// Unix seconds.
    pub fetched_at: u64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("kids", &self.kids()).field("fetched_at", &self.fetched_at).finish()
    }
}

impl Jwks {
    /// Parses a JWKS document. Keys without a `kid`, of an unknown type or
    /// meant for encryption are skipped, so one odd key does not hide the others.
    pub fn parse(raw: &str, fetched_at: u64) -> Result<Jwks> {
        if raw.len() > MAX_JWKS_BYTES {
            return Err(Error::Internal("JWKS document too large".into()));
        }
        let doc: Value = serde_json::from_str(raw).map_err(|_| Error::Internal("JWKS is not JSON".into()))?;
        let list = doc.get("keys").and_then(Value::as_array).ok_or_else(|| Error::Internal("JWKS has no `keys`".into()))?;
        let mut keys = Vec::new();
        for k in list {
            if k.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
                continue;
            }
            let Some(kid) = k.get("kid").and_then(Value::as_str).map(str::to_string) else { continue };
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else { continue };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
            let alg = k.get("alg").and_then(Value::as_str).and_then(|a| ALLOWED.iter().find(|(n, _)| *n == a).map(|(_, alg)| *alg));
            // A key whose declared alg is not one we know (e.g. HS256) is not usable.
            if k.get("alg").is_some() && alg.is_none() {
                continue;
            }
            keys.push((kid, alg, key));
        }
        Ok(Jwks { keys, fetched_at })
    }

    /// The key ids held.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _, _)| k.as_str()).collect()
    }

    fn find(&self, kid: &str) -> Option<(Option<Algorithm>, &DecodingKey)> {
        self.keys.iter().find(|(k, _, _)| k == kid).map(|(_, a, key)| (*a, key))
    }
}

/// Whether keys fetched at `fetched_at` may answer at `now`: within the
/// provider's max age normally, or within [`MIN_REFRESH_SECS`] when a refresh
/// was asked for (an unknown `kid`).
pub fn usable(fetched_at: u64, now: u64, max_age: u64, refresh: bool) -> bool {
    let limit = if refresh { MIN_REFRESH_SECS } else { max_age };
    now < fetched_at.saturating_add(limit)
}

/// Fetched key sets by provider name, kept by an isolate or instance between requests.
#[derive(Default, Debug)]
pub struct JwksCache {
    sets: BTreeMap<String, Jwks>,
    failed_at: BTreeMap<String, u64>,
}

impl JwksCache {
    /// The cached set if it may answer ([`usable`]).
    pub fn get(&self, provider: &Provider, now: u64, refresh: bool) -> Option<Jwks> {
        self.sets.get(&provider.name).filter(|j| usable(j.fetched_at, now, provider.jwks_max_age, refresh)).cloned()
    }
    /// The cached set however old, if within [`MAX_STALE_SECS`] (the provider could not be reached).
    pub fn stale(&self, provider: &Provider, now: u64) -> Option<Jwks> {
        self.sets.get(&provider.name).filter(|j| now < j.fetched_at.saturating_add(MAX_STALE_SECS)).cloned()
    }
    /// Keeps a freshly fetched set.
    pub fn put(&mut self, provider: &Provider, jwks: Jwks) {
        self.failed_at.remove(&provider.name);
        self.sets.insert(provider.name.clone(), jwks);
    }
    /// Notes a failed fetch: for [`MIN_REFRESH_SECS`] no other is tried, so an
    /// unreachable provider (or a flood of tokens naming unknown keys) costs one
    /// fetch timeout per few seconds, not one per request.
    pub fn failed(&mut self, provider: &Provider, now: u64) {
        self.failed_at.insert(provider.name.clone(), now);
    }
    /// True while a failed fetch is recent enough that no other should be tried.
    pub fn backing_off(&self, provider: &Provider, now: u64) -> bool {
        self.failed_at.get(&provider.name).is_some_and(|&t| now < t.saturating_add(MIN_REFRESH_SECS))
    }
}

/// The `iss` of a JWT, read without verifying anything (to pick the provider).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

/// The gateway groups a provider's claims give: those its `group_map` maps the
/// IdP groups to, and those IdP groups starting with its `group_prefix` name
/// once the prefix is cut. Nothing else: an IdP group never counts by its name alone.
pub fn groups_of(provider: &Provider, claims: &Value) -> Vec<String> {
    let idp: Vec<&str> = match claim(claims, &provider.groups_claim) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split_whitespace().collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    if let Some(map) = &provider.group_map {
        out.extend(idp.iter().filter_map(|g| map.get(*g)).flatten().cloned());
    }
    if let Some(prefix) = &provider.group_prefix {
        // Never `admin`: who may create groups at the IdP must not become a gateway admin
        // by naming one so. Admin is granted by a map only.
        let named = idp.iter().filter_map(|g| g.strip_prefix(prefix.as_str()));
        out.extend(named.filter(|g| is_group(g) && *g != crate::rbac::ADMIN_GROUP).map(str::to_string));
    }
    out.sort();
    out.dedup();
    out.truncate(64);
    out
}

/// The provider a token names (by its unverified `iss`), its checked header, and the
/// provider's keys holding its `kid` when there are such (one refresh on an unknown `kid`).
/// `None`: not a token of a configured provider.
async fn keys_for<'c, S: RouteSource>(cfg: &'c Config, store: &S, token: &str) -> Result<Option<(&'c Provider, jsonwebtoken::Header, Jwks)>> {
    if cfg.oidc.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Ok(None);
    }
    let Some(iss) = unverified_issuer(token) else { return Ok(None) };
    let Some(provider) = cfg.oidc.iter().find(|p| p.issuer == iss) else { return Ok(None) };
    if token.bytes().filter(|&b| b == b'.').count() != 2 {
        return Err(Error::InvalidToken("malformed"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken("malformed header"))?;
    if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() || header.x5c.is_some() || header.crit.is_some() {
        return Err(Error::InvalidToken("unsupported header parameters"));
    }
    if !provider.algorithms.contains(&header.alg) {
        return Err(Error::InvalidToken("algorithm not allowed"));
    }
    if let Some(want) = &provider.require_typ {
        let ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(want) || (t.get(..12).is_some_and(|p| p.eq_ignore_ascii_case("application/")) && t[12..].eq_ignore_ascii_case(want))
        });
        if !ok {
            return Err(Error::InvalidToken("wrong typ"));
        }
    }
    let kid = header.kid.as_deref().ok_or(Error::InvalidToken("missing kid"))?;
    let mut jwks = store.jwks(provider, false).await?;
    if jwks.find(kid).is_none() {
        jwks = store.jwks(provider, true).await?;
    }
    Ok(Some((provider, header, jwks)))
}

/// Makes sure the keys a provider's token names are at hand (fetched, cached, shared),
/// without verifying the token: the edge's Worker does this before handing an admin call to
/// its state object, which verifies once and never waits on an identity provider.
pub async fn prefetch_keys<S: RouteSource>(cfg: &Config, store: &S, token: &str) {
    let _ = keys_for(cfg, store, token).await;
}

/// Verifies `token` if its issuer is a configured provider: `Ok(None)` when
/// it is not (it may be a gateway token), the principal when it verifies,
/// 401 otherwise.
pub async fn verify<S: RouteSource>(cfg: &Config, store: &S, token: &str, now: u64) -> Result<Option<Principal>> {
    let Some((provider, header, jwks)) = keys_for(cfg, store, token).await? else { return Ok(None) };
    let kid = header.kid.as_deref().unwrap_or_default();
    let (key_alg, key) = jwks.find(kid).ok_or(Error::InvalidToken("unknown kid"))?;
    if key_alg.is_some_and(|a| a != header.alg) {
        return Err(Error::InvalidToken("algorithm does not match the key"));
    }
    let mut v = Validation::new(header.alg);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.set_issuer(&[&provider.issuer]);
    v.set_audience(&[&provider.audience]);
    v.validate_exp = false;
    v.validate_nbf = false;
    let claims = jsonwebtoken::decode::<Value>(token, key, &v)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Error::InvalidToken("bad signature"),
            jsonwebtoken::errors::ErrorKind::InvalidAudience => Error::InvalidToken("wrong audience"),
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => Error::InvalidToken("wrong issuer"),
            jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => Error::InvalidToken("missing claim"),
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => Error::InvalidToken("algorithm does not match the key"),
            _ => Error::InvalidToken("malformed claims"),
        })?
        .claims;
    let time = |name: &str| -> Result<Option<u64>> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(Error::InvalidToken("malformed claims")),
        }
    };
    let exp = time("exp")?.ok_or(Error::InvalidToken("missing claim"))?;
    if now > exp.saturating_add(cfg.leeway) {
        return Err(Error::TokenExpired);
    }
    // `iat` is required: without it a sign-in's life cannot be bounded.
    let iat = time("iat")?.ok_or(Error::InvalidToken("missing claim"))?;
    if time("nbf")?.is_some_and(|t| t > now.saturating_add(cfg.leeway)) || iat > now.saturating_add(cfg.leeway) {
        return Err(Error::TokenNotYetValid);
    }
    if exp < iat {
        return Err(Error::InvalidToken("malformed claims"));
    }
    if exp - iat > provider.max_token_lifetime {
        return Err(Error::InvalidToken("lifetime over the provider's maximum"));
    }
    if let Some(allowed) = &provider.allowed_azp {
        let azp = claims.get("azp").and_then(Value::as_str).ok_or(Error::InvalidToken("missing claim"))?;
        if !allowed.iter().any(|a| a == azp) {
            return Err(Error::InvalidToken("authorized party not allowed"));
        }
    }
    let sub = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control));
    let sub = sub.ok_or(Error::InvalidToken("malformed claims"))?;
    let subject = claim(&claims, &provider.subject_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control))
        .ok_or(Error::InvalidToken("missing claim"))?;
    Ok(Some(Principal {
        token_id: format!("oidc:{}:{sub}", provider.name),
        subject: subject.to_string(),
        kind: TokenKind::User,
        groups: groups_of(provider, &claims),
        routes: None,
        expires_at: exp,
        issued_at: iat,
        rate_limit_rpm: None,
        provider: Some(provider.name.clone()),
        partner: None,
        contract: None,
        registrar: None,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use futures_executor::block_on;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::collections::HashMap;

    pub(crate) const NOW: u64 = 1_800_000_000;
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKUU8HiyJz/GEVXh+UMIqmrjVY/EZ9axDibVbqClvZux\n-----END PRIVATE KEY-----\n";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJLXY79kcgV0acye6SAqdZF3hKwZETrIwTGZJP9slul8=\n-----END PUBLIC KEY-----\n";
    const JWKS_URL: &str = "https://idp.example.com/jwks";

    fn jwks_doc() -> String {
        let der = base64::engine::general_purpose::STANDARD.decode("MCowBQYDK2VwAyEAJLXY79kcgV0acye6SAqdZF3hKwZETrIwTGZJP9slul8=").unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "use": "sig", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc-1", "use": "enc", "x": x},
            {"kty": "weird", "kid": "odd"}
        ]})
        .to_string()
    }

    /// A configuration with provider `corp`: its groups come from `group_map`, or without one
    /// from the prefix `gw-`.
    pub(crate) fn config(algorithms: &str, group_map: Option<serde_json::Value>) -> Config {
        let groups = match group_map {
            Some(m) => json!({"group_map": m}),
            None => json!({"group_prefix": "gw-"}),
        };
        config_with(algorithms, groups).unwrap()
    }

    /// `config` with more provider settings; the configuration error if they are refused.
    pub(crate) fn config_with(algorithms: &str, extra: Value) -> std::result::Result<Config, crate::config::ConfigError> {
        let mut provider = json!({"name": "corp", "issuer": "https://idp.example.com", "audience": "ai-gateway", "jwks_url": JWKS_URL,
            "algorithms": serde_json::from_str::<Value>(algorithms).unwrap(), "groups_claim": "realm.groups", "subject_claim": "email"});
        for (k, v) in extra.as_object().unwrap() {
            provider[k] = v.clone();
        }
        let env = HashMap::from([
            ("GATEWAY_SIGNING_KEYS", r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#.to_string()),
            ("GATEWAY_OIDC_PROVIDERS", json!([provider]).to_string()),
        ]);
        Config::from_lookup(&|k| env.get(k).cloned())
    }

    pub(crate) fn claims() -> Value {
        json!({"iss": "https://idp.example.com", "aud": ["other", "ai-gateway"], "sub": "u-123", "email": "alice@corp.example",
               "exp": NOW + 300, "iat": NOW - 5, "realm": {"groups": ["ml-engineers", "interns"]}})
    }

    pub(crate) fn sign(header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()).unwrap()
    }

    pub(crate) fn ed_header(kid: &str) -> Header {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        h
    }

    pub(crate) fn store() -> MemoryStore {
        let s = MemoryStore::default();
        s.set_jwks(JWKS_URL, &jwks_doc(), NOW);
        s
    }

    fn check(cfg: &Config, token: &str) -> Result<Option<Principal>> {
        block_on(verify(cfg, &store(), token, NOW))
    }

    #[test]
    fn a_provider_token_is_a_user_with_mapped_groups() {
        let cfg = config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team", "notebooks"]})));
        let p = check(&cfg, &sign(ed_header("ed-1"), &claims())).unwrap().unwrap();
        assert_eq!(p.subject, "alice@corp.example");
        assert_eq!(p.groups, ["ml-team", "notebooks"], "interns maps to nothing");
        assert_eq!((p.kind, p.provider.as_deref(), p.token_id.as_str(), p.expires_at), (TokenKind::User, Some("corp"), "oidc:corp:u-123", NOW + 300));
        let mut c = claims();
        let mapped = config(r#"["EdDSA"]"#, Some(json!({"platform-admins": ["admin"]})));
        c["realm"]["groups"] = json!(["platform-admins"]);
        assert_eq!(check(&mapped, &sign(ed_header("ed-1"), &c)).unwrap().unwrap().groups, ["admin"]);
    }

    #[test]
    fn idp_groups_count_only_through_the_map_or_the_prefix() {
        let mut c = claims();
        c["realm"]["groups"] = json!(["gw-ml-team", "ml-engineers", "interns", "admin", "gw-admin", "gw-", "gw-bad group", "ml-team"]);
        let prefixed = config(r#"["EdDSA"]"#, None);
        assert_eq!(check(&prefixed, &sign(ed_header("ed-1"), &c)).unwrap().unwrap().groups, ["ml-team"], "admin never through the prefix");
        let both = config_with(r#"["EdDSA"]"#, json!({"group_prefix": "gw-", "group_map": {"admin": ["admin"], "interns": ["notebooks"]}})).unwrap();
        assert_eq!(check(&both, &sign(ed_header("ed-1"), &c)).unwrap().unwrap().groups, ["admin", "ml-team", "notebooks"]);
        // Neither: refused at start, naming the setting and the provider.
        let e = config_with(r#"["EdDSA"]"#, json!({})).unwrap_err();
        assert_eq!(e.setting, "GATEWAY_OIDC_PROVIDERS");
        assert!(e.message.contains("`corp`") && e.message.contains("group_map") && e.message.contains("group_prefix"), "{e}");
        assert_eq!(config_with(r#"["EdDSA"]"#, json!({"group_prefix": ""})).unwrap_err().setting, "GATEWAY_OIDC_PROVIDERS");
    }

    #[test]
    fn sign_ins_have_a_bounded_life() {
        let cfg = config(r#"["EdDSA"]"#, None);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("iat");
        assert_eq!(check(&cfg, &sign(ed_header("ed-1"), &c)).unwrap_err(), Error::InvalidToken("missing claim"), "iat is required");
        let mut c = claims();
        c["iat"] = json!(NOW - 10);
        c["exp"] = json!(NOW - 10 + DEFAULT_MAX_TOKEN_LIFETIME);
        assert!(check(&cfg, &sign(ed_header("ed-1"), &c)).is_ok(), "a day, the default, is fine");
        c["exp"] = json!(NOW - 10 + DEFAULT_MAX_TOKEN_LIFETIME + 1);
        assert!(matches!(check(&cfg, &sign(ed_header("ed-1"), &c)), Err(Error::InvalidToken(_))), "a second over is not");
        c["exp"] = json!(NOW + 300);
        c["iat"] = json!(NOW + 301);
        assert!(matches!(check(&cfg, &sign(ed_header("ed-1"), &c)), Err(Error::TokenNotYetValid | Error::InvalidToken(_))));
        let short = config_with(r#"["EdDSA"]"#, json!({"group_prefix": "gw-", "max_token_lifetime_seconds": 300})).unwrap();
        assert!(matches!(check(&short, &sign(ed_header("ed-1"), &claims())), Err(Error::InvalidToken(_))), "exp - iat = 305 is over 300");
        let mut c = claims();
        c["exp"] = json!(NOW + 295);
        assert!(check(&short, &sign(ed_header("ed-1"), &c)).is_ok(), "exactly 300");
        for bad in [json!(59), json!(MAX_TOKEN_LIFETIME + 1), json!("1d")] {
            let e = config_with(r#"["EdDSA"]"#, json!({"group_prefix": "gw-", "max_token_lifetime_seconds": bad})).unwrap_err();
            assert_eq!(e.setting, "GATEWAY_OIDC_PROVIDERS");
        }
        let e = config_with(r#"["EdDSA"]"#, json!({"group_prefix": "gw-", "max_token_lifetime_seconds": 59})).unwrap_err();
        assert!(e.message.contains("max_token_lifetime_seconds"), "{e}");
    }

    #[test]
    fn typ_and_azp_are_checked_when_configured() {
        let cfg = config_with(r#"["EdDSA"]"#, json!({"group_prefix": "gw-", "require_typ": "at+jwt", "allowed_azp": ["notebook-app", "cli"]})).unwrap();
        let with_typ = |typ: Option<&str>| {
            let mut h = ed_header("ed-1");
            h.typ = typ.map(str::to_string);
            h
        };
        let mut c = claims();
        c["azp"] = json!("cli");
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+jwt"] {
            assert!(check(&cfg, &sign(with_typ(Some(ok)), &c)).is_ok(), "{ok}");
        }
        for bad in [Some("JWT"), None, Some("application/jwt"), Some("at+jwt2")] {
            assert_eq!(check(&cfg, &sign(with_typ(bad), &c)).unwrap_err(), Error::InvalidToken("wrong typ"), "{bad:?}");
        }
        c["azp"] = json!("someone-else");
        assert!(matches!(check(&cfg, &sign(with_typ(Some("at+jwt")), &c)), Err(Error::InvalidToken(_))));
        c.as_object_mut().unwrap().remove("azp");
        assert!(matches!(check(&cfg, &sign(with_typ(Some("at+jwt")), &c)), Err(Error::InvalidToken(_))), "azp must be present");
        // Unset: neither is looked at.
        let open = config(r#"["EdDSA"]"#, None);
        assert!(check(&open, &sign(with_typ(None), &c)).is_ok());
        for (k, v) in [("require_typ", json!("")), ("allowed_azp", json!([])), ("allowed_azp", json!([""])), ("require_typ", json!("a b"))] {
            let e = config_with(r#"["EdDSA"]"#, json!({"group_prefix": "gw-", k: v})).unwrap_err();
            assert!(e.message.contains(k), "{e}");
        }
    }

    #[test]
    fn the_token_never_chooses_how_it_is_checked() {
        let cfg = config(r#"["EdDSA"]"#, None);
        let refused = |token: String, why: &str| {
            assert!(matches!(check(&cfg, &token), Err(Error::InvalidToken(_))), "{why} must be refused");
        };
        // An algorithm the provider is not configured for, even with a valid signature.
        let rs_only = config(r#"["RS256"]"#, None);
        assert!(matches!(block_on(verify(&rs_only, &store(), &sign(ed_header("ed-1"), &claims()), NOW)), Err(Error::InvalidToken("algorithm not allowed"))));
        // HS256 keyed with the provider's public key (key confusion).
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("ed-1".into());
        refused(jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(ED_PUBLIC.as_bytes())).unwrap(), "HS256 over the public key");
        // Keys named by the token.
        let mut jku = ed_header("ed-1");
        jku.jku = Some("https://attacker.example/jwks".into());
        refused(sign(jku, &claims()), "a jku header");
        refused(sign(ed_header("nope"), &claims()), "an unknown kid");
        refused(sign(ed_header("enc-1"), &claims()), "an encryption key");
        let mut wrong_aud = claims();
        wrong_aud["aud"] = json!("someone-else");
        refused(sign(ed_header("ed-1"), &wrong_aud), "a wrong audience");
        let mut no_sub = claims();
        no_sub.as_object_mut().unwrap().remove("sub");
        refused(sign(ed_header("ed-1"), &no_sub), "no sub");
        let mut expired = claims();
        expired["exp"] = json!(NOW - 60);
        assert_eq!(check(&cfg, &sign(ed_header("ed-1"), &expired)).unwrap_err(), Error::TokenExpired);
        let mut early = claims();
        early["nbf"] = json!(NOW + 600);
        assert_eq!(check(&cfg, &sign(ed_header("ed-1"), &early)).unwrap_err(), Error::TokenNotYetValid);
        // Tampered after signing.
        let good = sign(ed_header("ed-1"), &claims());
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut c = claims();
        c["realm"]["groups"] = json!(["admin"]);
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string());
        refused(parts.join("."), "tampered claims");
    }

    #[test]
    fn other_issuers_are_not_this_modules_business() {
        let cfg = config(r#"["EdDSA"]"#, None);
        let mut other = claims();
        other["iss"] = json!("https://rogue.example.com");
        assert!(check(&cfg, &sign(ed_header("ed-1"), &other)).unwrap().is_none(), "left to the gateway's own verifier, which refuses it");
        let gateway_token = crate::token::TokenIssuer::new(&cfg)
            .issue(
                &crate::token::TokenRequest {
                    subject: "ops".into(),
                    kind: TokenKind::User,
                    groups: vec!["admin".into()],
                    routes: None,
                    ttl_seconds: Some(600),
                    description: String::new(),
                    metadata: Default::default(),
                    rate_limit_rpm: None,
                    registrar: None,
                },
                NOW,
                "tok_a".into(),
            )
            .unwrap()
            .0;
        assert!(check(&cfg, &gateway_token).unwrap().is_none());
        // Through the one entry point both are handled.
        let h = |t: &str| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        assert_eq!(block_on(crate::identity::authenticate(&cfg, &store(), Some(&h(&gateway_token)), NOW)).unwrap().subject, "ops");
        assert!(block_on(crate::identity::authenticate(&cfg, &store(), Some(&h(&sign(ed_header("ed-1"), &other))), NOW)).is_err());
    }

    #[test]
    fn an_unreachable_provider_is_503_not_401() {
        let cfg = config(r#"["EdDSA"]"#, None);
        let empty = MemoryStore::default();
        assert!(matches!(block_on(verify(&cfg, &empty, &sign(ed_header("ed-1"), &claims()), NOW)), Err(Error::IdentityProviderUnavailable(_))));
    }

    #[test]
    fn provider_settings_are_checked() {
        let parse = |v: Value, http: bool| parse_providers(&v.to_string(), http);
        let base = json!({"name": "corp", "issuer": "https://i", "audience": "a", "jwks_url": "https://i/jwks", "algorithms": ["RS256"], "group_prefix": "gw-"});
        assert!(parse(json!([base]), false).is_ok());
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            json!([b])
        };
        assert!(parse(with("algorithms", json!(["HS256"])), false).unwrap_err().contains("HS256"));
        assert!(parse(with("algorithms", json!([])), false).is_err());
        assert!(parse(with("jwks_url", json!("http://i/jwks")), false).unwrap_err().contains("https"));
        assert!(parse(with("jwks_url", json!("http://127.0.0.1:9/jwks")), true).is_ok(), "plain http only in local development");
        assert!(parse(with("name", json!("Corp!")), false).is_err());
        assert!(parse(with("jwks_max_age_seconds", json!(5)), false).is_err());
        assert!(parse(with("group_map", json!({"x": ["bad group"]})), false).is_err());
        assert!(parse(json!([base, base]), false).unwrap_err().contains("twice"));
        assert!(parse(with("unknown", json!(1)), false).is_err());
    }

    #[test]
    fn keys_are_reused_until_max_age_and_refetched_at_most_every_few_seconds() {
        assert!(usable(NOW, NOW + 599, 600, false));
        assert!(!usable(NOW, NOW + 600, 600, false));
        assert!(usable(NOW, NOW + MIN_REFRESH_SECS - 1, 600, true), "a refresh right after a fetch reuses it");
        assert!(!usable(NOW, NOW + MIN_REFRESH_SECS, 600, true));
        let cfg = config(r#"["EdDSA"]"#, None);
        let p = &cfg.oidc[0];
        let mut cache = JwksCache::default();
        assert!(cache.get(p, NOW, false).is_none());
        cache.put(p, Jwks::parse(&jwks_doc(), NOW).unwrap());
        assert_eq!(cache.get(p, NOW + 10, false).unwrap().kids(), ["ed-1"]);
        assert!(cache.get(p, NOW + 10, true).is_none());
        assert!(cache.stale(p, NOW + 3600).is_some() && cache.stale(p, NOW + MAX_STALE_SECS).is_none());
        cache.failed(p, NOW + 700);
        assert!(cache.backing_off(p, NOW + 700 + MIN_REFRESH_SECS - 1) && !cache.backing_off(p, NOW + 700 + MIN_REFRESH_SECS));
        cache.put(p, Jwks::parse(&jwks_doc(), NOW + 701).unwrap());
        assert!(!cache.backing_off(p, NOW + 701), "a success ends the back-off");
    }
}
