//! Bearer tokens: JWTs the gateway signs and verifies. Every token expires;
//! verification pins the algorithms, looks `kid` up in the configured key set
//! (never fetches a key), and checks `iss`, `aud`, `exp`, `nbf`, `iat` against
//! the `now` it is given. Revocation by `jti` is checked by the caller against
//! the store.

use crate::config::{Config, MIN_TOKEN_TTL};
use crate::error::{Error, Result};
use crate::registrar::RegistrarScope;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Metadata key naming a partner token's partner.
pub const PARTNER_KEY: &str = "partner";
/// Metadata key naming the contract a partner token is issued under.
pub const CONTRACT_KEY: &str = "contract_id";

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The `typ` header of every gateway token.
pub const TOKEN_TYP: &str = "JWT";

/// Who holds a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A person inside the company.
    User,
    /// A service inside the company.
    Service,
    /// An external partner; must carry a `routes` allow-list.
    Partner,
    /// A model server registering itself: only its own leases on the routes it names, within
    /// its [`RegistrarScope`]; never the data plane, never another admin call.
    Registrar,
}

impl TokenKind {
    /// Every kind, in the order listings and metrics show them.
    pub const ALL: [TokenKind; 4] = [
        TokenKind::User,
        TokenKind::Service,
        TokenKind::Partner,
        TokenKind::Registrar,
    ];

    /// The kind's name, as its JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Service => "service",
            TokenKind::Partner => "partner",
            TokenKind::Registrar => "registrar",
        }
    }
}

/// The claims of a gateway token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Principal.
    pub sub: String,
    /// Token id, `tok_…`.
    pub jti: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry; always present.
    pub exp: u64,
    /// Groups of the principal.
    #[serde(default)]
    pub groups: Vec<String>,
    /// user, service or partner.
    pub kind: TokenKind,
    /// Optional allow-list of route names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
    /// Requests per minute this token may make; when absent the route's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Partner tokens: the partner's name, for usage by partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// Partner tokens: the contract they are issued under, whose token budget they share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// Registrar tokens: the hosts, weight cap and longest lease they may register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<RegistrarScope>,
}

/// A verified caller, as the rest of the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `jti`.
    pub token_id: String,
    /// `sub`.
    pub subject: String,
    /// Token kind.
    pub kind: TokenKind,
    /// Groups.
    pub groups: Vec<String>,
    /// Allow-list of routes, if any.
    pub routes: Option<Vec<String>>,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// Issue time (`iat`), unix seconds: a subject revoked at or after it refuses the token.
    pub issued_at: u64,
    /// Requests per minute set at issuance, if any.
    pub rate_limit_rpm: Option<u32>,
    /// The identity provider that signed in this user; `None` for the gateway's own tokens.
    pub provider: Option<String>,
    /// For partner tokens: the partner's name (claim `partner`).
    pub partner: Option<String>,
    /// For partner tokens: the contract id (claim `contract`), whose budget they share.
    pub contract: Option<String>,
    /// For registrar tokens: what they may register (claim `reg`).
    pub registrar: Option<RegistrarScope>,
}

impl Principal {
    /// True when the principal holds `group`.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// One key as written in `GATEWAY_SIGNING_KEYS`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySpec {
    /// Key id, sent in the token header.
    pub kid: String,
    /// `HS256` (default), `HS384`, `HS512` or `EdDSA`.
    #[serde(default = "default_alg")]
    pub alg: String,
    /// HMAC secret, standard base64, at least 32 bytes decoded.
    #[serde(default)]
    pub secret: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM); absent for verify-only keys.
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// Ed25519 public key (SPKI PEM).
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

fn default_alg() -> String {
    "HS256".into()
}

#[derive(Clone)]
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

/// The configured keys: several verify (rotation), one signs.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    signing: usize,
    algorithms: Vec<Algorithm>,
}

impl KeySet {
    /// Builds the key set; errors name the key but never print key material.
    pub fn from_specs(specs: &[SigningKeySpec], signing_kid: Option<&str>, algorithms: Option<&[Algorithm]>) -> Result<KeySet, String> {
        if specs.is_empty() {
            return Err("must hold at least one key".into());
        }
        let mut keys = Vec::new();
        for spec in specs {
            let kid = &spec.kid;
            if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
                return Err("every key needs a kid of 1-64 characters [A-Za-z0-9._-]".into());
            }
            if keys.iter().any(|k: &Key| &k.kid == kid) {
                return Err(format!("kid `{kid}` appears twice"));
            }
            let key = match spec.alg.as_str() {
                "HS256" | "HS384" | "HS512" => {
                    let alg = match spec.alg.as_str() {
                        "HS256" => Algorithm::HS256,
                        "HS384" => Algorithm::HS384,
                        _ => Algorithm::HS512,
                    };
                    let secret = spec.secret.as_deref().ok_or(format!("key `{kid}` needs `secret` (base64)"))?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(secret.trim())
                        .map_err(|_| format!("key `{kid}`: secret is not valid base64"))?;
                    if bytes.len() < 32 {
                        return Err(format!("key `{kid}`: HMAC secret must be at least 32 bytes, got {}", bytes.len()));
                    }
                    Key { kid: kid.clone(), alg, encoding: Some(EncodingKey::from_secret(&bytes)), decoding: DecodingKey::from_secret(&bytes) }
                }
                "EdDSA" => {
                    let public = spec.public_key_pem.as_deref().ok_or(format!("key `{kid}` needs `public_key_pem`"))?;
                    let decoding = DecodingKey::from_ed_pem(public.as_bytes()).map_err(|_| format!("key `{kid}`: public_key_pem is not an Ed25519 public key"))?;
                    let encoding = match spec.private_key_pem.as_deref() {
                        Some(p) => Some(EncodingKey::from_ed_pem(p.as_bytes()).map_err(|_| format!("key `{kid}`: private_key_pem is not an Ed25519 private key"))?),
                        None => None,
                    };
                    Key { kid: kid.clone(), alg: Algorithm::EdDSA, encoding, decoding }
                }
                other => return Err(format!("key `{kid}`: unsupported alg `{other}`")),
            };
            keys.push(key);
        }
        let signing = match signing_kid {
            Some(kid) => keys.iter().position(|k| k.kid == kid).ok_or(format!("GATEWAY_SIGNING_KID `{kid}` is not among the keys"))?,
            None => 0,
        };
        if keys[signing].encoding.is_none() {
            return Err(format!("signing key `{}` has no private key", keys[signing].kid));
        }
        let algorithms = match algorithms {
            Some(list) => list.to_vec(),
            None => {
                let mut v: Vec<Algorithm> = keys.iter().map(|k| k.alg).collect();
                v.dedup();
                v
            }
        };
        if !algorithms.contains(&keys[signing].alg) {
            return Err("the signing key's algorithm is not in GATEWAY_ALGORITHMS".into());
        }
        Ok(KeySet { keys, signing, algorithms })
    }

    /// Each key's id and algorithm, and whether it signs new tokens.
    pub fn describe(&self) -> Vec<(&str, String, bool)> {
        self.keys.iter().enumerate().map(|(i, k)| (k.kid.as_str(), format!("{:?}", k.alg), i == self.signing)).collect()
    }

    /// The id of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.keys[self.signing].kid
    }

    /// The key ids, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The signing key's id and encoding key (for [`crate::forge`]).
    #[cfg(any(test, feature = "forge"))]
    pub(crate) fn signing_parts(&self) -> (&str, Algorithm, Option<&EncodingKey>) {
        let k = &self.keys[self.signing];
        (&k.kid, k.alg, k.encoding.as_ref())
    }

    fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// What an admin asks for when issuing a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Principal.
    pub subject: String,
    /// user, service or partner.
    pub kind: TokenKind,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Allow-list (required for partners).
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// Lifetime; required.
    pub ttl_seconds: Option<u64>,
    /// What the token is for.
    #[serde(default)]
    pub description: String,
    /// Small string map kept with the record.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Requests per minute; when absent, each route's default applies.
    #[serde(default)]
    pub rate_limit_rpm: Option<u32>,
    /// Registrar tokens (required for them, refused for others): what they may register.
    #[serde(default)]
    pub registrar: Option<RegistrarScope>,
}

impl TokenRequest {
    /// Checks the request against the lifetime rules and shapes; returns the lifetime.
    pub fn validate(&self, cfg: &Config) -> Result<u64> {
        let ttl = self.ttl_seconds.ok_or_else(|| Error::bad_request("ttl_seconds", "is required; there are no non-expiring tokens"))?;
        if ttl < MIN_TOKEN_TTL || ttl > cfg.max_token_ttl {
            return Err(Error::bad_request(
                "ttl_seconds",
                format!("must be between {MIN_TOKEN_TTL} and {} seconds", cfg.max_token_ttl),
            ));
        }
        if self.subject.is_empty() || self.subject.len() > 128 || self.subject.chars().any(char::is_control) {
            return Err(Error::bad_request("subject", "must be 1-128 printable characters"));
        }
        if self.groups.len() > 64 || self.groups.iter().any(|g| g.is_empty() || g.len() > 64 || !g.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':'))) {
            return Err(Error::bad_request("groups", "at most 64 groups, each ^[A-Za-z0-9._:-]{1,64}$"));
        }
        if let Some(routes) = &self.routes {
            if routes.len() > 256 || routes.iter().any(|r| !crate::route::is_valid_route_name(r) && !crate::route::is_valid_ephemeral_id(r)) {
                return Err(Error::bad_request("routes", "must be a list of route names"));
            }
        }
        match (self.kind, &self.registrar) {
            (TokenKind::Registrar, None) => {
                return Err(Error::bad_request("registrar", "a registrar token needs `registrar`: {hosts, max_weight, max_lease_seconds}"));
            }
            (TokenKind::Registrar, Some(scope)) => {
                // It reaches no route and no admin call but its own leases: no groups, so never `admin`.
                if !self.groups.is_empty() {
                    return Err(Error::bad_request("groups", "a registrar token carries no groups"));
                }
                match &self.routes {
                    Some(routes) if !routes.is_empty() && routes.iter().all(|r| crate::route::is_valid_route_name(r)) => {}
                    _ => return Err(Error::bad_request("routes", "a registrar token must name the routes it may register endpoints on")),
                }
                scope.validate()?;
            }
            (_, Some(_)) => return Err(Error::bad_request("registrar", "only registrar tokens take `registrar`")),
            (_, None) => {}
        }
        if self.kind == TokenKind::Partner && self.routes.as_ref().is_none_or(Vec::is_empty) {
            return Err(Error::bad_request("routes", "a partner token must name the routes it may reach"));
        }
        if self.kind == TokenKind::Partner {
            if self.groups.iter().any(|g| g == crate::rbac::ADMIN_GROUP) {
                return Err(Error::bad_request("groups", "a partner token cannot hold `admin`"));
            }
            let partner = self.metadata.get(PARTNER_KEY).map(String::as_str).unwrap_or("");
            if partner.is_empty() || partner.len() > 64 || !partner.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
                return Err(Error::bad_request("metadata.partner", "a partner token names its partner, ^[a-z0-9-]{1,64}$"));
            }
            if self.metadata.get(CONTRACT_KEY).is_none_or(|c| c.trim().is_empty()) {
                return Err(Error::bad_request("metadata.contract_id", "a partner token names the contract it is issued under"));
            }
        }
        if self.rate_limit_rpm.is_some_and(|n| !(1..=crate::ratelimit::MAX_RPM).contains(&n)) {
            return Err(Error::bad_request("rate_limit_rpm", format!("must be between 1 and {}", crate::ratelimit::MAX_RPM)));
        }
        if self.description.len() > 256 {
            return Err(Error::bad_request("description", "at most 256 characters"));
        }
        if self.metadata.len() > 16 || self.metadata.iter().any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256) {
            return Err(Error::bad_request("metadata", "at most 16 entries, keys 1-64 and values up to 256 characters"));
        }
        Ok(ttl)
    }
}

/// Where fresh ids (token ids, ephemeral route ids) come from: the OS's randomness in a
/// deployment ([`OsRandom`]), a seeded sequence in tests ([`SeededIds`]), so an admin
/// conversation replays exactly. Core itself never reaches for randomness.
pub trait IdSource: Send + Sync {
    /// `n` fresh bytes.
    fn bytes(&self, n: usize) -> Result<Vec<u8>>;

    /// Lowercase RFC 4648 base32 of `n` fresh bytes, no padding.
    fn base32(&self, n: usize) -> Result<String> {
        Ok(base32(&self.bytes(n)?))
    }

    /// A request id, `req_` and 16 base32 characters (80 bits); `req_unknown` when no
    /// randomness is to be had (a request is never refused for want of an id).
    fn request_id(&self) -> String {
        format!("req_{}", self.base32(10).unwrap_or_else(|_| "unknown".into()))
    }

    /// A token id, `tok_` and 26 base32 characters (128 bits).
    fn token_id(&self) -> Result<String> {
        Ok(format!("tok_{}", self.base32(16)?))
    }
}

/// The operating system's randomness (`getrandom`; `crypto.getRandomValues` in a Worker).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl IdSource for OsRandom {
    fn bytes(&self, n: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; n];
        getrandom::getrandom(&mut bytes).map_err(|_| Error::Internal("no randomness available".into()))?;
        Ok(bytes)
    }
}

/// A repeatable sequence of ids for tests: the same seed gives the same ids in the same order.
/// Not random: never for a deployment.
#[derive(Debug, Default)]
pub struct SeededIds {
    seed: u64,
    next: std::sync::atomic::AtomicU64,
}

impl SeededIds {
    /// A sequence starting from `seed`.
    pub fn new(seed: u64) -> SeededIds {
        SeededIds { seed, next: Default::default() }
    }
}

impl IdSource for SeededIds {
    fn bytes(&self, n: usize) -> Result<Vec<u8>> {
        use sha2::Digest;
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut out = Vec::with_capacity(n);
        let mut block = 0u64;
        while out.len() < n {
            let d = sha2::Sha256::new().chain_update(self.seed.to_be_bytes()).chain_update(i.to_be_bytes()).chain_update(block.to_be_bytes()).finalize();
            out.extend_from_slice(&d[..(n - out.len()).min(d.len())]);
            block += 1;
        }
        Ok(out)
    }
}

/// Makes a fresh token id from the OS's randomness ([`IdSource::token_id`]).
pub fn new_token_id() -> Result<String> {
    OsRandom.token_id()
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Signs tokens with the configured signing key.
pub struct TokenIssuer<'a> {
    cfg: &'a Config,
}

impl<'a> TokenIssuer<'a> {
    /// An issuer over `cfg`.
    pub fn new(cfg: &'a Config) -> Self {
        TokenIssuer { cfg }
    }

    /// Mints a token for a validated request. Returns the signed token and its claims.
    pub fn issue(&self, req: &TokenRequest, now: u64, jti: String) -> Result<(String, Claims)> {
        let ttl = req.validate(self.cfg)?;
        let claims = Claims {
            iss: self.cfg.issuer.clone(),
            aud: self.cfg.audience.clone(),
            sub: req.subject.clone(),
            jti,
            iat: now,
            nbf: now,
            exp: now + ttl,
            groups: req.groups.clone(),
            kind: req.kind,
            routes: req.routes.clone(),
            rpm: req.rate_limit_rpm,
            partner: (req.kind == TokenKind::Partner).then(|| req.metadata.get(PARTNER_KEY).cloned()).flatten(),
            contract: (req.kind == TokenKind::Partner).then(|| req.metadata.get(CONTRACT_KEY).cloned()).flatten(),
            reg: req.registrar.clone().filter(|_| req.kind == TokenKind::Registrar),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Signs arbitrary claims with the signing key (tests use it to forge edge cases).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let key = &self.cfg.keys.keys[self.cfg.keys.signing];
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some(TOKEN_TYP.into());
        let enc = key.encoding.as_ref().ok_or_else(|| Error::Internal("signing key has no private part".into()))?;
        jsonwebtoken::encode(&header, claims, enc).map_err(|_| Error::Internal("signing failed".into()))
    }
}

/// The gateway's own tokens verified recently in this isolate or instance, by the SHA-256
/// of the whole token: a repeated token skips the signature check and the JSON decoding.
/// An entry is used until the token's expiry (plus the configured leeway) at most;
/// revocation is still checked on every request ([`crate::identity::authenticate`]). It
/// lives in [`Config`], so a new configuration (a key rotated out) starts empty. Bounded:
/// when full, expired entries go first, then everything.
#[derive(Clone, Default)]
pub struct VerifiedTokens {
    entries: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], (Principal, u64)>>>,
}

/// Most tokens [`VerifiedTokens`] holds.
pub const MAX_VERIFIED_TOKENS: usize = 4096;

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens' digests or principals: only how many.
        f.debug_struct("VerifiedTokens").field("len", &self.entries.lock().map(|m| m.len()).unwrap_or(0)).finish()
    }
}

impl VerifiedTokens {
    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// The principal of `token` if it was verified before and is still valid at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Principal> {
        let map = self.entries.lock().ok()?;
        if map.is_empty() {
            return None;
        }
        map.get(&Self::digest(token)).filter(|(_, until)| now <= *until).map(|(p, _)| p.clone())
    }

    /// Keeps `token`'s verified principal until `until` (its expiry plus leeway).
    pub fn put(&self, token: &str, principal: &Principal, until: u64, now: u64) {
        let Ok(mut map) = self.entries.lock() else { return };
        if map.len() >= MAX_VERIFIED_TOKENS {
            map.retain(|_, (_, u)| *u >= now);
            if map.len() >= MAX_VERIFIED_TOKENS {
                map.clear();
            }
        }
        map.insert(Self::digest(token), (principal.clone(), until));
    }

    /// Tokens held (expired or not).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies bearer tokens.
pub struct TokenVerifier<'a> {
    cfg: &'a Config,
}

impl<'a> TokenVerifier<'a> {
    /// A verifier over `cfg`.
    pub fn new(cfg: &'a Config) -> Self {
        TokenVerifier { cfg }
    }

    /// Verifies everything but revocation; returns the principal.
    pub fn verify(&self, token: &str, now: u64) -> Result<Principal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::InvalidToken("too large"));
        }
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(Error::InvalidToken("malformed"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken("malformed header"))?;
        if header.typ.as_deref() != Some(TOKEN_TYP) {
            return Err(Error::InvalidToken("unexpected typ"));
        }
        // Keys are never taken from the token itself.
        if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() || header.x5c.is_some() || header.crit.is_some() {
            return Err(Error::InvalidToken("unsupported header parameters"));
        }
        if !self.cfg.keys.algorithms.contains(&header.alg) {
            return Err(Error::InvalidToken("algorithm not allowed"));
        }
        let kid = header.kid.as_deref().ok_or(Error::InvalidToken("missing kid"))?;
        let key = self.cfg.keys.find(kid).ok_or(Error::InvalidToken("unknown kid"))?;
        if key.alg != header.alg {
            return Err(Error::InvalidToken("algorithm does not match the key"));
        }
        let mut v = Validation::new(key.alg);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.leeway = self.cfg.leeway;
        // Time is checked below against the caller's `now`, not the crate's clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Error::InvalidToken("bad signature"),
            ErrorKind::InvalidIssuer => Error::InvalidToken("wrong issuer"),
            ErrorKind::InvalidAudience => Error::InvalidToken("wrong audience"),
            ErrorKind::MissingRequiredClaim(_) => Error::InvalidToken("missing claim"),
            ErrorKind::InvalidAlgorithm => Error::InvalidToken("algorithm not allowed"),
            _ => Error::InvalidToken("malformed claims"),
        })?;
        let c = data.claims;
        let leeway = self.cfg.leeway;
        if now > c.exp.saturating_add(leeway) {
            return Err(Error::TokenExpired);
        }
        if c.nbf > now.saturating_add(leeway) || c.iat > now.saturating_add(leeway) {
            return Err(Error::TokenNotYetValid);
        }
        if c.exp < c.iat || c.exp - c.iat > self.cfg.max_token_ttl {
            return Err(Error::InvalidToken("lifetime over the maximum"));
        }
        if !c.jti.starts_with("tok_") || c.jti.len() > 64 {
            return Err(Error::InvalidToken("malformed jti"));
        }
        if c.kind == TokenKind::Partner && c.routes.as_ref().is_none_or(Vec::is_empty) {
            return Err(Error::InvalidToken("partner token without routes"));
        }
        if c.kind == TokenKind::Registrar && (c.reg.is_none() || !c.groups.is_empty() || c.routes.as_ref().is_none_or(Vec::is_empty)) {
            return Err(Error::InvalidToken("registrar token without its scope"));
        }
        Ok(Principal {
            token_id: c.jti,
            subject: c.sub,
            kind: c.kind,
            groups: c.groups,
            routes: c.routes,
            expires_at: c.exp,
            issued_at: c.iat,
            rate_limit_rpm: c.rpm,
            provider: None,
            partner: c.partner.filter(|_| c.kind == TokenKind::Partner),
            contract: c.contract.filter(|_| c.kind == TokenKind::Partner),
            registrar: c.reg.filter(|_| c.kind == TokenKind::Registrar),
        })
    }
}

/// Takes the token out of an `Authorization: Bearer …` header value.
pub fn bearer(value: Option<&http::HeaderValue>) -> Result<&str> {
    let v = value.ok_or(Error::MissingToken)?;
    let s = v.to_str().map_err(|_| Error::InvalidToken("malformed header"))?;
    let (scheme, token) = s.split_once(' ').ok_or(Error::InvalidToken("malformed header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::test_config;

    const NOW: u64 = 1_800_000_000;

    fn req(ttl: u64) -> TokenRequest {
        TokenRequest {
            subject: "alice".into(),
            kind: TokenKind::User,
            groups: vec!["ml-team".into()],
            routes: None,
            ttl_seconds: Some(ttl),
            description: String::new(),
            metadata: Default::default(),
            rate_limit_rpm: None,
            registrar: None,
        }
    }

    fn claims(cfg: &Config) -> Claims {
        TokenIssuer::new(cfg).issue(&req(3600), NOW, "tok_x".into()).unwrap().1
    }

    #[test]
    fn issued_token_verifies() {
        let cfg = test_config();
        let (tok, _) = TokenIssuer::new(&cfg).issue(&req(3600), NOW, "tok_abc".into()).unwrap();
        let p = TokenVerifier::new(&cfg).verify(&tok, NOW + 10).unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.token_id, "tok_abc");
        assert_eq!(p.expires_at, NOW + 3600);
    }

    #[test]
    fn a_verified_token_is_served_from_the_cache_until_its_expiry_and_revocation_still_applies() {
        use crate::store::{AdminStore, MemoryStore};
        use futures_executor::block_on;
        let cfg = test_config();
        let (tok, _) = TokenIssuer::new(&cfg).issue(&req(3600), NOW, "tok_cached".into()).unwrap();
        let header = http::HeaderValue::from_str(&format!("Bearer {tok}")).unwrap();
        let store = MemoryStore::default();
        assert!(cfg.verified.get(&tok, NOW).is_none());
        let p = block_on(crate::identity::authenticate(&cfg, &store, Some(&header), NOW)).unwrap();
        assert_eq!(cfg.verified.get(&tok, NOW + 10).as_ref(), Some(&p));
        // A clone of the configuration shares the cache; another token is not in it.
        assert!(cfg.clone().verified.get(&tok, NOW).is_some());
        assert!(cfg.verified.get(&format!("{tok}x"), NOW).is_none());
        // Past its expiry (and the leeway) the entry is not used, and the token is refused.
        let late = NOW + 3600 + cfg.leeway + 1;
        assert!(cfg.verified.get(&tok, late).is_none());
        assert_eq!(block_on(crate::identity::authenticate(&cfg, &store, Some(&header), late)), Err(Error::TokenExpired));
        // Revocation is read on every request, cached principal or not.
        block_on(store.revoke_subject("alice", NOW + 20)).unwrap();
        assert_eq!(block_on(crate::identity::authenticate(&cfg, &store, Some(&header), NOW + 30)), Err(Error::TokenRevoked));
        // Bounded.
        for i in 0..MAX_VERIFIED_TOKENS + 5 {
            cfg.verified.put(&format!("t{i}"), &p, NOW + 10, NOW);
        }
        assert!(cfg.verified.len() <= MAX_VERIFIED_TOKENS);
    }

    #[test]
    fn lifetime_rules() {
        let cfg = test_config();
        let issuer = TokenIssuer::new(&cfg);
        assert!(matches!(issuer.issue(&req(59), NOW, "tok_a".into()), Err(Error::BadRequest { field, .. }) if field == "ttl_seconds"));
        assert!(issuer.issue(&req(cfg.max_token_ttl + 1), NOW, "tok_a".into()).is_err());
        let mut forever = req(60);
        forever.ttl_seconds = None;
        assert!(issuer.issue(&forever, NOW, "tok_a".into()).is_err());
        assert!(issuer.issue(&req(cfg.max_token_ttl), NOW, "tok_a".into()).is_ok());
    }

    #[test]
    fn partner_needs_routes() {
        let cfg = test_config();
        let mut r = req(600);
        r.kind = TokenKind::Partner;
        assert!(r.validate(&cfg).is_err());
        r.routes = Some(vec!["llama".into()]);
        assert_eq!(r.validate(&cfg).unwrap_err(), Error::bad_request("metadata.partner", "a partner token names its partner, ^[a-z0-9-]{1,64}$"));
        r.metadata.insert(PARTNER_KEY.into(), "acme".into());
        assert!(matches!(r.validate(&cfg), Err(Error::BadRequest { field, .. }) if field == "metadata.contract_id"));
        r.metadata.insert(CONTRACT_KEY.into(), "C-42".into());
        assert!(r.validate(&cfg).is_ok());
        let (t, c) = TokenIssuer::new(&cfg).issue(&r, NOW, "tok_p".into()).unwrap();
        assert_eq!(c.partner.as_deref(), Some("acme"));
        assert_eq!(TokenVerifier::new(&cfg).verify(&t, NOW).unwrap().partner.as_deref(), Some("acme"));
    }

    #[test]
    fn registrar_tokens_carry_their_scope_and_nothing_else() {
        let cfg = test_config();
        let scope: RegistrarScope = serde_json::from_str(r#"{"hosts": ["10.0.1.0/24"], "max_weight": 4}"#).unwrap();
        let mut r = req(600);
        r.kind = TokenKind::Registrar;
        r.groups = vec![];
        r.routes = Some(vec!["llama".into()]);
        let field = |r: &TokenRequest| match r.validate(&cfg) {
            Err(Error::BadRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(&r), "registrar");
        r.registrar = Some(scope.clone());
        r.groups = vec!["admin".into()];
        assert_eq!(field(&r), "groups", "never `admin`, nor any group");
        r.groups = vec![];
        r.routes = None;
        assert_eq!(field(&r), "routes");
        r.routes = Some(vec!["abcdefghijklmnop".into(), "e".into()]);
        assert_eq!(field(&r), "routes", "route names only");
        r.routes = Some(vec!["llama".into()]);
        let (t, c) = TokenIssuer::new(&cfg).issue(&r, NOW, "tok_r".into()).unwrap();
        assert_eq!(c.reg.as_ref(), Some(&scope));
        let p = TokenVerifier::new(&cfg).verify(&t, NOW).unwrap();
        assert_eq!((p.kind, p.registrar.as_ref(), p.groups.len()), (TokenKind::Registrar, Some(&scope), 0));
        // Other kinds take no scope.
        let mut u = req(600);
        u.registrar = Some(scope.clone());
        assert_eq!(field(&u), "registrar");
        // A signed registrar claim set without its scope, or with groups, is not accepted.
        let mut bare = c.clone();
        bare.reg = None;
        assert!(matches!(TokenVerifier::new(&cfg).verify(&TokenIssuer::new(&cfg).sign(&bare).unwrap(), NOW), Err(Error::InvalidToken(_))));
        let mut grouped = c.clone();
        grouped.groups = vec!["admin".into()];
        assert!(matches!(TokenVerifier::new(&cfg).verify(&TokenIssuer::new(&cfg).sign(&grouped).unwrap(), NOW), Err(Error::InvalidToken(_))));
        // A scope on another kind's claims is ignored.
        let mut user = claims(&cfg);
        user.reg = Some(scope);
        assert_eq!(TokenVerifier::new(&cfg).verify(&TokenIssuer::new(&cfg).sign(&user).unwrap(), NOW).unwrap().registrar, None);
        assert_eq!(serde_json::to_value(TokenKind::Registrar).unwrap(), "registrar");
    }

    #[test]
    fn time_checks_use_now_with_small_leeway() {
        let cfg = test_config();
        let (tok, c) = TokenIssuer::new(&cfg).issue(&req(60), NOW, "tok_a".into()).unwrap();
        let v = TokenVerifier::new(&cfg);
        assert!(v.verify(&tok, c.exp + cfg.leeway).is_ok());
        assert_eq!(v.verify(&tok, c.exp + cfg.leeway + 1), Err(Error::TokenExpired));
        assert_eq!(v.verify(&tok, NOW - cfg.leeway - 1), Err(Error::TokenNotYetValid));
    }

    #[test]
    fn over_long_lifetime_is_refused_even_if_signed() {
        let cfg = test_config();
        let mut c = claims(&cfg);
        c.exp = c.iat + cfg.max_token_ttl + 1;
        let tok = TokenIssuer::new(&cfg).sign(&c).unwrap();
        assert!(matches!(TokenVerifier::new(&cfg).verify(&tok, NOW), Err(Error::InvalidToken(_))));
    }

    #[test]
    fn wrong_issuer_audience_and_tampering() {
        let cfg = test_config();
        let v = TokenVerifier::new(&cfg);
        let mut c = claims(&cfg);
        c.iss = "evil".into();
        assert!(v.verify(&TokenIssuer::new(&cfg).sign(&c).unwrap(), NOW).is_err());
        let mut c = claims(&cfg);
        c.aud = "other".into();
        assert!(v.verify(&TokenIssuer::new(&cfg).sign(&c).unwrap(), NOW).is_err());
        // Swap the payload of a valid token for one with more groups.
        let tok = TokenIssuer::new(&cfg).sign(&claims(&cfg)).unwrap();
        let mut c = claims(&cfg);
        c.groups.push("admin".into());
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        let parts: Vec<&str> = tok.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(v.verify(&forged, NOW), Err(Error::InvalidToken("bad signature")));
    }

    #[test]
    fn alg_none_and_oversized_and_jwe_shapes_are_refused() {
        let cfg = test_config();
        let v = TokenVerifier::new(&cfg);
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let payload = b64(&serde_json::to_string(&claims(&cfg)).unwrap());
        for alg in ["none", "None", "NONE"] {
            let t = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#)), payload);
            assert!(v.verify(&t, NOW).is_err(), "{alg}");
        }
        assert_eq!(v.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), NOW), Err(Error::InvalidToken("too large")));
        assert_eq!(v.verify("a.b.c.d.e", NOW), Err(Error::InvalidToken("malformed")));
    }

    #[test]
    fn unknown_kid_and_key_rotation() {
        let specs: Vec<SigningKeySpec> = serde_json::from_str(
            r#"[{"kid":"new","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="},
                {"kid":"old","secret":"YWJjZGVmYWJjZGVmYWJjZGVmYWJjZGVmYWJjZGVmYWI="}]"#,
        )
        .unwrap();
        let mut old_cfg = test_config();
        old_cfg.keys = KeySet::from_specs(&specs, Some("old"), None).unwrap();
        let mut new_cfg = test_config();
        new_cfg.keys = KeySet::from_specs(&specs, Some("new"), None).unwrap();
        let (old_tok, _) = TokenIssuer::new(&old_cfg).issue(&req(600), NOW, "tok_o".into()).unwrap();
        // A token signed by the previous key still verifies after rotation.
        assert!(TokenVerifier::new(&new_cfg).verify(&old_tok, NOW).is_ok());
        // Dropping the old key refuses it as unknown.
        let only_new = test_config();
        assert_eq!(TokenVerifier::new(&only_new).verify(&old_tok, NOW), Err(Error::InvalidToken("unknown kid")));
    }

    /// A throwaway Ed25519 key pair (test only), with an HS256 key beside it.
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKUU8HiyJz/GEVXh+UMIqmrjVY/EZ9axDibVbqClvZux\n-----END PRIVATE KEY-----\n";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJLXY79kcgV0acye6SAqdZF3hKwZETrIwTGZJP9slul8=\n-----END PUBLIC KEY-----\n";

    fn ed_config() -> Config {
        let specs = serde_json::json!([
            {"kid": "ed", "alg": "EdDSA", "private_key_pem": ED_PRIVATE, "public_key_pem": ED_PUBLIC},
            {"kid": "hs", "alg": "HS256", "secret": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}
        ]);
        let specs: Vec<SigningKeySpec> = serde_json::from_value(specs).unwrap();
        let mut cfg = test_config();
        cfg.keys = KeySet::from_specs(&specs, Some("ed"), None).unwrap();
        cfg
    }

    #[test]
    fn eddsa_tokens_verify() {
        let cfg = ed_config();
        let (tok, _) = TokenIssuer::new(&cfg).issue(&req(600), NOW, "tok_ed".into()).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&tok).unwrap().alg, Algorithm::EdDSA);
        assert_eq!(TokenVerifier::new(&cfg).verify(&tok, NOW).unwrap().token_id, "tok_ed");
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        // The classic key confusion: the attacker knows the Ed25519 public key and signs an
        // HS256 token with it as the HMAC secret, naming the Ed25519 key's kid. HS256 is
        // accepted here (another key uses it), so only the per-key algorithm stops it.
        let cfg = ed_config();
        let claims = TokenIssuer::new(&cfg).issue(&req(600), NOW, "tok_confused".into()).unwrap().1;
        for secret in [ED_PUBLIC.as_bytes(), ED_PUBLIC.trim().as_bytes()] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("ed".into());
            header.typ = Some(TOKEN_TYP.into());
            let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
            assert_eq!(TokenVerifier::new(&cfg).verify(&forged, NOW), Err(Error::InvalidToken("algorithm does not match the key")));
        }
    }

    #[test]
    fn bearer_header_parsing() {
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(Some(&hv("Bearer abc"))).unwrap(), "abc");
        assert_eq!(bearer(Some(&hv("bearer  abc "))).unwrap(), "abc");
        assert_eq!(bearer(None), Err(Error::MissingToken));
        assert_eq!(bearer(Some(&hv("Basic abc"))), Err(Error::MissingToken));
        assert!(bearer(Some(&hv("Bearer"))).is_err());
    }

    #[test]
    fn base32_ids() {
        assert_eq!(base32(&[0xff; 5]), "77777777");
        let id = new_token_id().unwrap();
        assert!(id.starts_with("tok_") && id.len() == 4 + 26);
    }
}
