//! The gateway's configuration: one struct, read once from the platform's
//! environment (Worker vars and secrets, Lambda environment), validated at
//! start with errors that name the setting.

use crate::token::{KeySet, SigningKeySpec};
use jsonwebtoken::Algorithm;

/// Default and ceiling of a token's lifetime when `GATEWAY_MAX_TOKEN_TTL_SECONDS` is unset: 90 days.
pub const DEFAULT_MAX_TOKEN_TTL: u64 = 90 * 24 * 3600;
/// Shortest lifetime a token may be issued with.
pub const MIN_TOKEN_TTL: u64 = 60;
/// `GATEWAY_STALE_IF_ERROR_SECONDS` when unset: 5 minutes.
pub const DEFAULT_STALE_IF_ERROR_SECONDS: u64 = 300;
/// `GATEWAY_STORE_TIMEOUT_MS` when unset.
pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 1000;

/// Request size limits applied before any route logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sum of header name and value bytes.
    pub max_header_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Length of path plus query.
    pub max_url_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_header_bytes: 32 * 1024, max_headers: 100, max_url_bytes: 8 * 1024 }
    }
}

/// Everything the gateway needs to know at start.
#[derive(Clone)]
pub struct Config {
    /// `iss` of issued tokens, and the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only one accepted.
    pub audience: String,
    /// Verification keys by `kid`, and the one that signs.
    pub keys: KeySet,
    /// Longest lifetime of any token, in seconds.
    pub max_token_ttl: u64,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`, in seconds.
    pub leeway: u64,
    /// Request size limits.
    pub limits: Limits,
    /// How long an isolate may reuse a route or revocation lookup, in seconds.
    pub cache_seconds: u64,
    /// How long past `cache_seconds` a kept lookup is still used while the store cannot be
    /// read (`GATEWAY_STALE_IF_ERROR_SECONDS`; 0 never: fail closed) ([`crate::cache`]).
    pub stale_if_error_seconds: u64,
    /// Bound on one store operation, retries included, in ms (`GATEWAY_STORE_TIMEOUT_MS`;
    /// the Lambda's DynamoDB client).
    pub store_timeout_ms: u64,
    /// Answer plain-HTTP requests (local development only).
    pub allow_http: bool,
    /// When plain HTTP is not allowed: redirect `GET`/`HEAD` to HTTPS (308) instead of refusing (403).
    pub redirect_http: bool,
    /// Trusted identity providers for internal users (`GATEWAY_OIDC_PROVIDERS`).
    pub oidc: Vec<crate::oidc::Provider>,
    /// The only host the admin API answers on (`GATEWAY_ADMIN_HOST`; lowercase, no port).
    /// When set, `/_gateway/*` elsewhere is 404 (except `healthz`) and the data plane is 404 on it.
    pub admin_host: Option<String>,
    /// Which upstreams endpoints may name (`GATEWAY_ALLOW_LOCAL_UPSTREAMS`, `GATEWAY_VIA_BINDINGS`).
    pub upstreams: crate::route::UpstreamPolicy,
    /// The secret a front door (CloudFront, `infra/modules/lambda`) sends in `x-origin-verify`
    /// (`GATEWAY_ORIGIN_SECRET`). When set, requests without it are refused and the front
    /// door's `x-forwarded-host` is the host routes are matched on ([`crate::gateway::check_origin`]).
    pub origin_secret: Option<OriginSecret>,
    /// The gateway's own tokens verified recently in this isolate or instance.
    pub verified: crate::token::VerifiedTokens,
    /// The platform's secrets routes may name in `upstream_api_key_secret`, read once at start
    /// ([`Config::with_upstream_secrets`]).
    pub upstream_secrets: UpstreamSecrets,
}

/// The platform's secrets that a route may send upstream as its API key, resolved once at
/// start from every setting the platform holds (Worker secrets and vars; the Lambda's
/// environment and Secrets Manager secret). Only names a route may name are kept
/// ([`crate::route::may_name_secret`]): never the gateway's own (`GATEWAY_*`) nor the
/// platform's (`AWS_*`…). `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UpstreamSecrets(std::collections::BTreeMap<String, String>);

impl UpstreamSecrets {
    /// From the platform's settings, as (name, value) pairs; a later pair wins over an earlier
    /// one of the same name. Names a route may not name are left out.
    pub fn from_settings<I: IntoIterator<Item = (String, String)>>(settings: I) -> UpstreamSecrets {
        UpstreamSecrets(settings.into_iter().filter(|(name, _)| crate::route::may_name_secret(name)).collect())
    }

    /// The secret `name`, when the platform has it.
    pub fn get(&self, name: &str) -> Option<SecretValue> {
        self.0.get(name).map(|v| SecretValue(v.clone()))
    }

    /// The names held, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// One secret's value, held to be sent and never printed (`Debug` shows `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value, to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl std::fmt::Debug for UpstreamSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UpstreamSecrets").field(&self.names().collect::<Vec<_>>()).finish()
    }
}

/// The front door's shared secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginSecret(String);

impl OriginSecret {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for OriginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OriginSecret(<redacted>)")
    }
}

impl std::fmt::Debug for Config {
    // Never print keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &self.keys.kids())
            .field("max_token_ttl", &self.max_token_ttl)
            .field("leeway", &self.leeway)
            .field("admin_host", &self.admin_host)
            .field("origin_secret", &self.origin_secret.is_some())
            .field("upstream_secrets", &self.upstream_secrets)
            .finish_non_exhaustive()
    }
}

/// A setting that is missing or wrong, named so operators can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub setting: &'static str,
    /// What is wrong with it (never its value).
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration {}: {}", self.setting, self.message)
    }
}
impl std::error::Error for ConfigError {}

fn err(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { setting, message: message.into() }
}

/// True for a lowercase DNS host name (no port, no trailing dot).
pub fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..")
}

fn parse_u64(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| err(name, "must be a whole number")),
    }
}

impl Config {
    /// Reads the configuration through `lookup` (environment variable or Worker binding).
    ///
    /// Settings: `GATEWAY_SIGNING_KEYS` (JSON array of keys, required),
    /// `GATEWAY_SIGNING_KID` (the key that signs; default the first),
    /// `GATEWAY_ALGORITHMS` (comma list accepted; default the keys' own),
    /// `GATEWAY_ISSUER`, `GATEWAY_AUDIENCE`, `GATEWAY_MAX_TOKEN_TTL_SECONDS`,
    /// `GATEWAY_LEEWAY_SECONDS`, `GATEWAY_CACHE_SECONDS`, `GATEWAY_STALE_IF_ERROR_SECONDS`,
    /// `GATEWAY_STORE_TIMEOUT_MS`, `GATEWAY_ALLOW_HTTP`,
    /// `GATEWAY_PLAIN_HTTP` (`refuse`, the default, or `redirect`), `GATEWAY_OIDC_PROVIDERS`,
    /// `GATEWAY_ADMIN_HOST` (the admin API's own host name), `GATEWAY_ALLOW_LOCAL_UPSTREAMS`
    /// (`1`: endpoints may be loopback, link-local or metadata addresses; local development only),
    /// `GATEWAY_VIA_BINDINGS` (comma list of the bindings an endpoint's `via` may name).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let keys_json = lookup("GATEWAY_SIGNING_KEYS")
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err("GATEWAY_SIGNING_KEYS", "is required (a JSON array of signing keys)"))?;
        let specs: Vec<SigningKeySpec> = serde_json::from_str(&keys_json)
            .map_err(|e| err("GATEWAY_SIGNING_KEYS", format!("is not a JSON array of keys (line {}, column {})", e.line(), e.column())))?;
        let algorithms = match lookup("GATEWAY_ALGORITHMS").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|a| match a.trim() {
                        "HS256" => Ok(Algorithm::HS256),
                        "HS384" => Ok(Algorithm::HS384),
                        "HS512" => Ok(Algorithm::HS512),
                        "EdDSA" => Ok(Algorithm::EdDSA),
                        other => Err(err("GATEWAY_ALGORITHMS", format!("unsupported algorithm `{other}` (HS256, HS384, HS512, EdDSA)"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let signing_kid = lookup("GATEWAY_SIGNING_KID").filter(|s| !s.trim().is_empty());
        let keys = KeySet::from_specs(&specs, signing_kid.as_deref(), algorithms.as_deref())
            .map_err(|m| err("GATEWAY_SIGNING_KEYS", m))?;
        let max_token_ttl = parse_u64(lookup, "GATEWAY_MAX_TOKEN_TTL_SECONDS", DEFAULT_MAX_TOKEN_TTL)?;
        if max_token_ttl < MIN_TOKEN_TTL || max_token_ttl > 366 * 24 * 3600 {
            return Err(err("GATEWAY_MAX_TOKEN_TTL_SECONDS", "must be between 60 and 31622400 (366 days)"));
        }
        let leeway = parse_u64(lookup, "GATEWAY_LEEWAY_SECONDS", 5)?;
        if leeway > 30 {
            return Err(err("GATEWAY_LEEWAY_SECONDS", "must be at most 30"));
        }
        let cache_seconds = parse_u64(lookup, "GATEWAY_CACHE_SECONDS", 5)?;
        if cache_seconds > 60 {
            return Err(err("GATEWAY_CACHE_SECONDS", "must be at most 60"));
        }
        let stale_if_error_seconds = parse_u64(lookup, "GATEWAY_STALE_IF_ERROR_SECONDS", DEFAULT_STALE_IF_ERROR_SECONDS)?;
        if stale_if_error_seconds > 3600 {
            return Err(err("GATEWAY_STALE_IF_ERROR_SECONDS", "must be at most 3600"));
        }
        let store_timeout_ms = parse_u64(lookup, "GATEWAY_STORE_TIMEOUT_MS", DEFAULT_STORE_TIMEOUT_MS)?;
        if !(50..=30_000).contains(&store_timeout_ms) {
            return Err(err("GATEWAY_STORE_TIMEOUT_MS", "must be between 50 and 30000"));
        }
        let allow_http = matches!(lookup("GATEWAY_ALLOW_HTTP").as_deref().map(str::trim), Some("1" | "true" | "yes"));
        let redirect_http = match lookup("GATEWAY_PLAIN_HTTP").as_deref().map(str::trim) {
            None | Some("" | "refuse") => false,
            Some("redirect") => true,
            Some(_) => return Err(err("GATEWAY_PLAIN_HTTP", "must be `refuse` or `redirect`")),
        };
        let oidc = match lookup("GATEWAY_OIDC_PROVIDERS").filter(|s| !s.trim().is_empty()) {
            None => Vec::new(),
            Some(json) => crate::oidc::parse_providers(&json, allow_http).map_err(|m| err("GATEWAY_OIDC_PROVIDERS", m))?,
        };
        let admin_host = match lookup("GATEWAY_ADMIN_HOST").map(|h| h.trim().to_string()).filter(|h| !h.is_empty()) {
            None => None,
            Some(h) if is_host_name(&h) => Some(h),
            Some(_) => return Err(err("GATEWAY_ADMIN_HOST", "must be a lowercase host name without port, e.g. admin.gw.example.com")),
        };
        let allow_local = match lookup("GATEWAY_ALLOW_LOCAL_UPSTREAMS").as_deref().map(str::trim) {
            None | Some("" | "0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(_) => return Err(err("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "must be `1` (allow, local development only) or `0`")),
        };
        let mut via_bindings = Vec::new();
        for name in lookup("GATEWAY_VIA_BINDINGS").unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name.len() > 64 || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(err("GATEWAY_VIA_BINDINGS", "must be a comma list of binding names ([A-Za-z0-9_]{1,64})"));
            }
            via_bindings.push(name.to_string());
        }
        let origin_secret = match lookup("GATEWAY_ORIGIN_SECRET").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) if (32..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => Some(OriginSecret(s)),
            Some(_) => return Err(err("GATEWAY_ORIGIN_SECRET", "must be 32 to 256 visible ASCII characters (it is sent as a header value)")),
        };
        let issuer = lookup("GATEWAY_ISSUER").filter(|s| !s.is_empty()).unwrap_or_else(|| "ai-gateway".into());
        if oidc.iter().any(|p| p.issuer == issuer) {
            return Err(err("GATEWAY_OIDC_PROVIDERS", "a provider's issuer equals GATEWAY_ISSUER"));
        }
        Ok(Config {
            oidc,
            issuer,
            audience: lookup("GATEWAY_AUDIENCE").filter(|s| !s.is_empty()).unwrap_or_else(|| "ai-gateway".into()),
            keys,
            max_token_ttl,
            leeway,
            limits: Limits::default(),
            cache_seconds,
            stale_if_error_seconds,
            store_timeout_ms,
            allow_http,
            redirect_http,
            admin_host,
            upstreams: crate::route::UpstreamPolicy { allow_local, via_bindings },
            origin_secret,
            verified: Default::default(),
            upstream_secrets: UpstreamSecrets::default(),
        })
    }

    /// The same configuration with the secrets routes may send upstream, resolved from every
    /// setting the platform has (see [`UpstreamSecrets::from_settings`]).
    pub fn with_upstream_secrets(mut self, secrets: UpstreamSecrets) -> Config {
        self.upstream_secrets = secrets;
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A configuration with one HS256 key, for tests across the crate.
    pub fn test_config() -> Config {
        let env = HashMap::from([(
            "GATEWAY_SIGNING_KEYS",
            r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#.to_string(),
        )]);
        Config::from_lookup(&|k| env.get(k).cloned()).unwrap()
    }

    #[test]
    fn upstream_secrets_keep_only_what_a_route_may_name_and_never_print_a_value() {
        let secrets = UpstreamSecrets::from_settings(
            [
                ("VLLM_KEY", "first"),
                ("GATEWAY_SIGNING_KEYS", "signing"),
                ("AWS_SECRET_ACCESS_KEY", "role"),
                ("_HIDDEN", "x"),
                ("lower_case", "x"),
                ("VLLM_KEY", "second"),
                ("PARTNER_KEY", "p"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(secrets.get("VLLM_KEY").as_ref().map(SecretValue::expose), Some("second"), "the later setting wins");
        assert_eq!(format!("{:?}", secrets.get("VLLM_KEY")), "Some(SecretValue(<redacted>))");
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["PARTNER_KEY", "VLLM_KEY"]);
        assert_eq!(secrets.get("GATEWAY_SIGNING_KEYS"), None);
        assert_eq!(secrets.get("AWS_SECRET_ACCESS_KEY"), None);
        let cfg = test_config().with_upstream_secrets(secrets);
        let printed = format!("{cfg:?}");
        assert!(printed.contains("VLLM_KEY") && !printed.contains("second") && !printed.contains("\"p\""), "{printed}");
    }

    #[test]
    fn missing_keys_name_the_setting() {
        let e = Config::from_lookup(&|_| None).unwrap_err();
        assert_eq!(e.setting, "GATEWAY_SIGNING_KEYS");
    }

    #[test]
    fn short_hmac_key_is_refused() {
        // "short" in base64: 5 bytes.
        let env = HashMap::from([("GATEWAY_SIGNING_KEYS", r#"[{"kid":"k","alg":"HS256","secret":"c2hvcnQ="}]"#)]);
        let e = Config::from_lookup(&|k| env.get(k).map(|s| s.to_string())).unwrap_err();
        assert!(e.message.contains("32 bytes"), "{e}");
    }

    #[test]
    fn bad_numbers_are_named() {
        let env = HashMap::from([
            ("GATEWAY_SIGNING_KEYS", r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#),
            ("GATEWAY_MAX_TOKEN_TTL_SECONDS", "forever"),
        ]);
        let e = Config::from_lookup(&|k| env.get(k).map(|s| s.to_string())).unwrap_err();
        assert_eq!(e.setting, "GATEWAY_MAX_TOKEN_TTL_SECONDS");
    }

    #[test]
    fn store_outage_settings_have_defaults_and_bounds() {
        let key = r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#;
        let with = |pairs: &[(&str, &str)]| {
            let mut env = HashMap::from([("GATEWAY_SIGNING_KEYS".to_string(), key.to_string())]);
            env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Config::from_lookup(&|k| env.get(k).cloned())
        };
        let c = with(&[]).unwrap();
        assert_eq!((c.stale_if_error_seconds, c.store_timeout_ms), (300, 1000));
        let c = with(&[("GATEWAY_STALE_IF_ERROR_SECONDS", "0"), ("GATEWAY_STORE_TIMEOUT_MS", "250")]).unwrap();
        assert_eq!((c.stale_if_error_seconds, c.store_timeout_ms), (0, 250));
        assert_eq!(with(&[("GATEWAY_STALE_IF_ERROR_SECONDS", "3601")]).unwrap_err().setting, "GATEWAY_STALE_IF_ERROR_SECONDS");
        assert_eq!(with(&[("GATEWAY_STALE_IF_ERROR_SECONDS", "-1")]).unwrap_err().setting, "GATEWAY_STALE_IF_ERROR_SECONDS");
        assert_eq!(with(&[("GATEWAY_STORE_TIMEOUT_MS", "0")]).unwrap_err().setting, "GATEWAY_STORE_TIMEOUT_MS");
        assert_eq!(with(&[("GATEWAY_STORE_TIMEOUT_MS", "30001")]).unwrap_err().setting, "GATEWAY_STORE_TIMEOUT_MS");
    }

    #[test]
    fn plain_http_policy_is_checked() {
        let key = r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#;
        let with = |v: &str| {
            let env = HashMap::from([("GATEWAY_SIGNING_KEYS", key.to_string()), ("GATEWAY_PLAIN_HTTP", v.to_string())]);
            Config::from_lookup(&|k| env.get(k).cloned())
        };
        assert!(with("redirect").unwrap().redirect_http);
        assert!(!with("refuse").unwrap().redirect_http);
        assert_eq!(with("allow").unwrap_err().setting, "GATEWAY_PLAIN_HTTP");
    }

    #[test]
    fn admin_host_is_a_lowercase_host_name() {
        let key = r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#;
        let with = |v: &str| {
            let env = HashMap::from([("GATEWAY_SIGNING_KEYS", key.to_string()), ("GATEWAY_ADMIN_HOST", v.to_string())]);
            Config::from_lookup(&|k| env.get(k).cloned())
        };
        assert_eq!(with("admin.gw.example.com").unwrap().admin_host.as_deref(), Some("admin.gw.example.com"));
        assert_eq!(with("").unwrap().admin_host, None);
        for bad in ["Admin.example.com", "admin.example.com:443", "https://admin.example.com", "admin..example.com", ".x", "a b"] {
            assert_eq!(with(bad).unwrap_err().setting, "GATEWAY_ADMIN_HOST", "{bad}");
        }
    }

    #[test]
    fn upstream_settings_are_checked() {
        let key = r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#;
        let with = |k: &'static str, v: &str| {
            let env = HashMap::from([("GATEWAY_SIGNING_KEYS", key.to_string()), (k, v.to_string())]);
            Config::from_lookup(&|name| env.get(name).cloned())
        };
        assert!(!test_config().upstreams.allow_local && test_config().upstreams.via_bindings.is_empty(), "refused by default");
        assert!(with("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "1").unwrap().upstreams.allow_local);
        assert!(!with("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "0").unwrap().upstreams.allow_local);
        assert_eq!(with("GATEWAY_ALLOW_LOCAL_UPSTREAMS", "please").unwrap_err().setting, "GATEWAY_ALLOW_LOCAL_UPSTREAMS");
        assert_eq!(with("GATEWAY_VIA_BINDINGS", " VPC_A, VPC_B ,").unwrap().upstreams.via_bindings, ["VPC_A", "VPC_B"]);
        assert_eq!(with("GATEWAY_VIA_BINDINGS", "VPC-A").unwrap_err().setting, "GATEWAY_VIA_BINDINGS");
    }

    #[test]
    fn debug_never_prints_secrets() {
        let s = format!("{:?}", test_config());
        assert!(!s.contains("MDEy"));
    }
}
