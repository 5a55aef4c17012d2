//! Routes: the model admins and Terraform write, its validation, and how a
//! request path is decoded, normalised and matched to a route.

use crate::error::{Error, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use serde::{Deserialize, Serialize};

/// Largest accepted route body limit (1 GiB); the default is 10 MiB.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;
/// Default body limit of a route.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Prefixes of environment names a route may not send upstream: the gateway's own settings and the
/// platform's (on Lambda, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` hold the role's credentials).
pub const RESERVED_SECRET_PREFIXES: &[&str] = &["GATEWAY_", "AWS_", "LAMBDA_", "CLOUDFLARE_", "_"];

/// True for a name of the form `[A-Z0-9_]{1,128}`: what `upstream_api_key_secret` may hold.
pub fn is_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// True for a name a route may send upstream: a secret name that is none of the gateway's or
/// the platform's own ([`RESERVED_SECRET_PREFIXES`]).
pub fn may_name_secret(name: &str) -> bool {
    is_secret_name(name) && !RESERVED_SECRET_PREFIXES.iter().any(|p| name.starts_with(p))
}
/// Most endpoints a route may have (static plus leased).
pub const MAX_ENDPOINTS: usize = 256;
/// Most model names one route may serve (a DynamoDB transaction writes a route with its
/// model index entries, and holds at most 100 items).
pub const MAX_MODELS: usize = 32;

/// A model name a route may serve: 1 to 256 visible ASCII characters (vLLM's names are
/// Hugging Face ids such as `meta-llama/Llama-3.1-8B-Instruct`, or aliases).
pub fn is_valid_model_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// A static or ephemeral route, exactly as API.md's route object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `^[a-z0-9][a-z0-9-]{0,62}$`; for ephemeral routes, the id.
    pub name: String,
    /// Optional host that maps every path on it to this route.
    #[serde(default)]
    pub host: Option<String>,
    /// A disabled route answers 404 as if absent.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The endpoints defined with the route (leased ones are kept apart).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Who may call it.
    #[serde(default)]
    pub auth: Auth,
    /// Where the session key comes from.
    #[serde(default)]
    pub affinity: Affinity,
    /// Name of a platform secret sent upstream as `Authorization: Bearer`.
    #[serde(default)]
    pub upstream_api_key_secret: Option<String>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Request body limit in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Default requests per minute for each token on this route (a token's own limit wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_rpm: Option<u32>,
    /// Proxied responses carry `Content-Security-Policy: sandbox` (default), so
    /// content served through the gateway cannot script the gateway's origin.
    #[serde(default = "yes")]
    pub sandbox: bool,
    /// Pass the upstream's `Set-Cookie` to clients (default: dropped).
    #[serde(default)]
    pub forward_set_cookie: bool,
    /// `"always"`: usage on every stream ([`crate::usage::UsageMode`]); left out when `"client"`.
    #[serde(default, skip_serializing_if = "crate::usage::UsageMode::is_client")]
    pub usage: crate::usage::UsageMode,
    /// Model names clients may ask for under `/v1/…` (model routing, [`crate::models`]):
    /// the names vLLM serves (`--served-model-name`, aliases included). Unique across routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// `"terraform"` when Terraform owns the route; admin writes are then refused.
    #[serde(default)]
    pub managed_by: Option<String>,
    /// Set on ephemeral routes: unix seconds after which the route is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// One upstream vLLM instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Stable id within the route (`^[A-Za-z0-9._-]{1,64}$`).
    pub id: String,
    /// `http(s)://host[:port][/prefix]`.
    pub url: String,
    /// Relative share of sessions, 1..=1000.
    #[serde(default = "one")]
    pub weight: u32,
    /// At the edge, the Workers VPC service binding to fetch through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// For leased endpoints: unix seconds when the lease ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<u64>,
    /// For leases a registrar token took: its subject, the only one (besides admins) that may
    /// renew or remove the lease. Set by the gateway; shown in admin reads only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
}

/// Route access rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// A route is public only when it says so.
    #[serde(default = "yes")]
    pub required: bool,
    /// Groups granted access.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Where the affinity key comes from, and how loaded endpoints shed keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// Header carrying the session id.
    #[serde(default = "default_affinity_header")]
    pub header: Option<String>,
    /// Cookie carrying the session id.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The key of requests without a session id; absent: [`AffinityFallback::Token`]
    /// for user tokens, [`AffinityFallback::Spread`] for the rest (service and
    /// partner tokens, anonymous callers), so batch traffic spreads while
    /// conversations stay put. See [`Affinity::fallback_for`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<AffinityFallback>,
    /// Bound factor of consistent hashing with bounded loads: an endpoint takes
    /// up to this many times its weighted share of the load before keys spill
    /// to their next choice. Between 1 and 10, or 0 for no bound (plain
    /// rendezvous); absent or null: [`crate::balance::DEFAULT_BALANCE_FACTOR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_factor: Option<f64>,
}

/// What keys a request that carries no session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityFallback {
    /// The token id: all of a caller's requests stay on one endpoint.
    Token,
    /// `"none"`: no key; each request goes to the less loaded of two random choices.
    #[serde(rename = "none")]
    Spread,
    /// A hash of the prompt's leading part ([`crate::load::prompt_prefix_key`]), so
    /// requests sharing a system prompt, and a conversation's turns, share vLLM's
    /// prefix cache; `none` when the body gives no key.
    Prefix,
}

impl Affinity {
    /// The fallback for a caller of `kind` (`None`: anonymous).
    pub fn fallback_for(&self, kind: Option<crate::token::TokenKind>) -> AffinityFallback {
        use crate::token::TokenKind;
        match (self.fallback, kind) {
            (Some(f), _) => f,
            (None, Some(TokenKind::User)) => AffinityFallback::Token,
            (None, _) => AffinityFallback::Spread,
        }
    }

    /// The bound factor in effect (0: no bound).
    pub fn factor(&self) -> f64 {
        self.balance_factor
            .unwrap_or(crate::balance::DEFAULT_BALANCE_FACTOR)
    }
}

/// Upstream timeouts in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time to establish the upstream connection.
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Time until the upstream's response headers.
    #[serde(default = "default_response_ms")]
    pub response_ms: u64,
    /// Longest silence between two chunks of a streamed response.
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_affinity_header() -> Option<String> {
    Some("x-session-id".into())
}
fn default_connect_ms() -> u64 {
    2_000
}
fn default_response_ms() -> u64 {
    300_000
}
fn default_idle_ms() -> u64 {
    120_000
}

impl Default for Auth {
    fn default() -> Self {
        Auth { required: true, groups: Vec::new() }
    }
}
impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            header: default_affinity_header(),
            cookie: None,
            fallback: None,
            balance_factor: None,
        }
    }
}
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect_ms: default_connect_ms(), response_ms: default_response_ms(), idle_ms: default_idle_ms() }
    }
}

/// True for a valid route name; `e` and `_`-prefixed names are reserved.
pub fn is_valid_route_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && name != "e"
        && name != "v1"
}

/// True for a valid endpoint id.
pub fn is_valid_endpoint_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn is_valid_group(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 64
        && g.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':'))
}

fn is_valid_header_name(h: &str) -> bool {
    !h.is_empty() && h.len() <= 64 && http::HeaderName::from_bytes(h.as_bytes()).is_ok()
}

/// Checks an endpoint URL: http or https, a host, no credentials, query or fragment.
pub fn validate_endpoint_url(url: &str) -> std::result::Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if url.len() > 2048 {
        return Err("too long");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters");
    }
    // Browsers' and fetch's URL parser reads `\` as `/` (`http://127.0.0.1\.x.com/` is 127.0.0.1).
    if url.contains('\\') {
        return Err("must not contain a backslash");
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("must name a host");
    }
    if authority.contains('@') {
        return Err("must not carry credentials; use upstream_api_key_secret");
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("must not have a query or fragment");
    }
    // Parse as an http URI to catch malformed ports and hosts.
    let uri: http::Uri = url.parse().map_err(|_| "is not a valid URL")?;
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    Ok(())
}

/// Host names that are the platform's metadata service (credentials live there).
const METADATA_HOSTS: &[&str] = &["metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"];

/// What upstreams an endpoint may name beyond its shape: the gateway's
/// surroundings (loopback, link-local, unspecified and metadata addresses)
/// only when `GATEWAY_ALLOW_LOCAL_UPSTREAMS=1`, and `via` only a binding
/// listed in `GATEWAY_VIA_BINDINGS`. Private ranges (10/8, 172.16/12,
/// 192.168/16) are always allowed: vLLM lives there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// Loopback, link-local, unspecified and metadata hosts allowed (local development, test suites).
    pub allow_local: bool,
    /// Workers VPC service bindings an endpoint's `via` may name; empty: none.
    pub via_bindings: Vec<String>,
}

impl UpstreamPolicy {
    /// Checks an endpoint URL's host; the reason it is refused (never the URL).
    pub fn check_url(&self, url: &str) -> std::result::Result<(), &'static str> {
        if self.allow_local {
            return Ok(());
        }
        validate_endpoint_url(url)?;
        let uri: http::Uri = url.parse().map_err(|_| "is not a valid URL")?;
        match uri.host().map(local_host_reason) {
            None => Err("must name a host"),
            Some(Some(why)) => Err(why),
            Some(None) => Ok(()),
        }
    }

    /// Checks an endpoint's `url` and `via`. `at` names its place (`endpoints[0]`), or is
    /// empty when the request body holds the endpoint's fields itself (`url`, `via`).
    pub fn check(&self, endpoint: &Endpoint, at: &str) -> Result<()> {
        let field = |f: &str| if at.is_empty() { f.to_string() } else { format!("{at}.{f}") };
        self.check_url(&endpoint.url).map_err(|why| Error::bad_request(field("url"), why))?;
        if let Some(via) = &endpoint.via {
            if !self.via_bindings.iter().any(|b| b == via) {
                return Err(Error::bad_request(field("via"), "must name a binding listed in GATEWAY_VIA_BINDINGS"));
            }
        }
        Ok(())
    }

    /// True when the endpoint may be used: how routes written to storage directly
    /// (by Terraform, past the admin API) are held to the same policy.
    pub fn allows(&self, endpoint: &Endpoint) -> bool {
        self.check(endpoint, "").is_ok()
    }
}

/// Why `host` (as `http::Uri` gives it) is one of the gateway's surroundings; `None` when it is not.
///
/// Hosts are read as browsers and fetch read them (WHATWG URL): case and a
/// trailing dot do not matter, and IPv4 may be written in decimal, hex or octal,
/// in one to four parts (`2130706433`, `0x7f.1`, `0177.0.0.1` are 127.0.0.1).
/// A name that resolves to such an address is not caught here (core does no DNS).
fn local_host_reason(host: &str) -> Option<&'static str> {
    if host.contains('%') {
        return Some("must not hold a percent-encoded host");
    }
    let lower = host.to_ascii_lowercase();
    let h = lower.trim_end_matches('.');
    if let Some(inner) = h.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => ipv6_reason(ip),
            Err(_) => Some("is not a valid IPv6 address"),
        };
    }
    if h.is_empty() {
        return Some("must name a host");
    }
    if h == "localhost" || h.ends_with(".localhost") {
        return Some("is loopback (allowed only with GATEWAY_ALLOW_LOCAL_UPSTREAMS=1)");
    }
    if METADATA_HOSTS.contains(&h) {
        return Some("is a cloud metadata service");
    }
    match whatwg_ipv4(h) {
        Ok(Some(ip)) => ipv4_reason(ip),
        Ok(None) => None,
        Err(()) => Some("is not a valid IPv4 address"),
    }
}

fn ipv4_reason(ip: std::net::Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if o[0] == 127 {
        Some("is loopback (allowed only with GATEWAY_ALLOW_LOCAL_UPSTREAMS=1)")
    } else if o[0] == 0 {
        Some("is an unspecified address")
    } else if o[0] == 169 && o[1] == 254 {
        Some("is link-local, where cloud metadata services live")
    } else {
        None
    }
}

fn ipv6_reason(ip: std::net::Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        return Some("is loopback (allowed only with GATEWAY_ALLOW_LOCAL_UPSTREAMS=1)");
    }
    if ip.is_unspecified() {
        return Some("is an unspecified address");
    }
    if seg[0] & 0xffc0 == 0xfe80 {
        return Some("is link-local, where cloud metadata services live");
    }
    if ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("is a cloud metadata service");
    }
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) forms.
    let embeds_v4 = (seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0)) || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if embeds_v4 {
        let v4 = std::net::Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
        return ipv4_reason(v4);
    }
    None
}

/// One part of a WHATWG IPv4 host: `0x`-prefixed hex, `0`-prefixed octal, else
/// decimal; `Err` for a part that is not a number, or too large.
fn ipv4_part(part: &str) -> std::result::Result<u64, ()> {
    if part.is_empty() {
        return Err(());
    }
    let (digits, radix) = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
        None => (part, 10),
    };
    if digits.is_empty() {
        return Ok(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(());
    }
    // Too large for any address (WHATWG fails these too).
    u64::from_str_radix(digits, radix).ok().filter(|&n| n <= u64::from(u32::MAX)).ok_or(())
}

/// The address the WHATWG URL parser reads in `host` (lowercase): `Ok(None)` for a
/// domain name, `Err` for a host that ends in a number but is not an address.
pub(crate) fn whatwg_ipv4(host: &str) -> std::result::Result<Option<std::net::Ipv4Addr>, ()> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or_default();
    // WHATWG's "ends in a number": digits only, or a valid hex/octal/decimal part.
    let syntactic = |p: &str| {
        let hex = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"));
        !p.is_empty() && (p.bytes().all(|b| b.is_ascii_digit()) || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
    };
    if !syntactic(last) {
        return Ok(None);
    }
    if parts.len() > 4 {
        return Err(());
    }
    let nums = parts.iter().map(|p| ipv4_part(p)).collect::<std::result::Result<Vec<u64>, ()>>()?;
    let (last, init) = nums.split_last().ok_or(())?;
    if init.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (5 - nums.len())) {
        return Err(());
    }
    let mut ip = *last;
    for (i, n) in init.iter().enumerate() {
        ip += n << (8 * (3 - i));
    }
    Ok(Some(std::net::Ipv4Addr::from(ip as u32)))
}

impl Endpoint {
    /// Validates one endpoint; `at` names its place for error messages.
    pub fn validate(&self, at: &str) -> Result<()> {
        if !is_valid_endpoint_id(&self.id) {
            return Err(Error::bad_request(format!("{at}.id"), "must match ^[A-Za-z0-9._-]{1,64}$"));
        }
        validate_endpoint_url(&self.url).map_err(|m| Error::bad_request(format!("{at}.url"), m))?;
        if !(1..=1000).contains(&self.weight) {
            return Err(Error::bad_request(format!("{at}.weight"), "must be between 1 and 1000"));
        }
        if let Some(via) = &self.via {
            let ok = !via.is_empty()
                && via.len() <= 64
                && via.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(Error::bad_request(format!("{at}.via"), "must be a binding name ([A-Za-z0-9_]{1,64})"));
            }
        }
        Ok(())
    }

    /// True while the endpoint is in service: static endpoints always, leased ones until the lease ends.
    pub fn is_live(&self, now: u64) -> bool {
        self.lease_expires_at.is_none_or(|end| now < end)
    }
}

impl Route {
    /// Validates every field; the error names the field at fault.
    pub fn validate(&self) -> Result<()> {
        if !is_valid_route_name(&self.name) {
            return Err(Error::bad_request(
                "name",
                "must match ^[a-z0-9][a-z0-9-]{0,62}$ and not be the reserved `e`",
            ));
        }
        if let Some(host) = &self.host {
            let ok = !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
                && !host.starts_with('.')
                && !host.ends_with('.');
            if !ok {
                return Err(Error::bad_request("host", "must be a lowercase DNS name"));
            }
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(Error::bad_request("endpoints", format!("at most {MAX_ENDPOINTS} endpoints")));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            ep.validate(&format!("endpoints[{i}]"))?;
            if !seen.insert(ep.id.as_str()) {
                return Err(Error::bad_request(format!("endpoints[{i}].id"), "duplicate endpoint id"));
            }
            // Ownership of leases is the gateway's record; a route's own endpoints have none.
            if ep.registered_by.is_some() {
                return Err(Error::bad_request(format!("endpoints[{i}].registered_by"), "is set by the gateway on leases, never in a route"));
            }
        }
        for (i, g) in self.auth.groups.iter().enumerate() {
            if !is_valid_group(g) {
                return Err(Error::bad_request(format!("auth.groups[{i}]"), "must match ^[A-Za-z0-9._:-]{1,64}$"));
            }
        }
        if self.auth.required && self.auth.groups.is_empty() {
            // Still valid: partners with an allow-list can reach it. Nothing to refuse.
        }
        if let Some(h) = &self.affinity.header {
            if !is_valid_header_name(h) {
                return Err(Error::bad_request("affinity.header", "must be a valid header name"));
            }
        }
        if let Some(c) = &self.affinity.cookie {
            if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(Error::bad_request("affinity.cookie", "must be a cookie name ([A-Za-z0-9._-]{1,64})"));
            }
        }
        if let Some(f) = self.affinity.balance_factor {
            if !(f == 0.0 || (1.0..=10.0).contains(&f)) {
                return Err(Error::bad_request(
                    "affinity.balance_factor",
                    "must be between 1 and 10, or 0 for no bound",
                ));
            }
        }
        if let Some(s) = &self.upstream_api_key_secret {
            let ok = is_secret_name(s);
            // The gateway's own settings (signing keys) and the platform's (a Lambda's role
            // credentials live in AWS_* variables) must never be sendable upstream.
            if RESERVED_SECRET_PREFIXES.iter().any(|p| s.starts_with(p)) {
                return Err(Error::bad_request(
                    "upstream_api_key_secret",
                    "must not name a GATEWAY_*, AWS_*, LAMBDA_*, CLOUDFLARE_* or _* variable (the gateway's or the platform's own)",
                ));
            }
            if !ok {
                return Err(Error::bad_request(
                    "upstream_api_key_secret",
                    "must name a secret ([A-Z0-9_]{1,128}), never hold its value",
                ));
            }
        }
        if !(1..=60_000).contains(&self.timeouts.connect_ms) {
            return Err(Error::bad_request("timeouts.connect_ms", "must be between 1 and 60000"));
        }
        if !(1..=3_600_000).contains(&self.timeouts.response_ms) {
            return Err(Error::bad_request("timeouts.response_ms", "must be between 1 and 3600000"));
        }
        if !(1_000..=3_600_000).contains(&self.timeouts.idle_ms) {
            return Err(Error::bad_request("timeouts.idle_ms", "must be between 1000 and 3600000"));
        }
        if self.rate_limit_rpm.is_some_and(|n| !(1..=crate::ratelimit::MAX_RPM).contains(&n)) {
            return Err(Error::bad_request("rate_limit_rpm", format!("must be between 1 and {}", crate::ratelimit::MAX_RPM)));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_LIMIT {
            return Err(Error::bad_request("max_body_bytes", format!("must be between 1 and {MAX_BODY_LIMIT}")));
        }
        if self.models.len() > MAX_MODELS {
            return Err(Error::bad_request("models", format!("at most {MAX_MODELS} model names per route")));
        }
        for (i, m) in self.models.iter().enumerate() {
            if !is_valid_model_name(m) {
                return Err(Error::bad_request(format!("models[{i}]"), "must be 1 to 256 visible ASCII characters"));
            }
            if self.models[..i].contains(m) {
                return Err(Error::bad_request(format!("models[{i}]"), "is listed twice"));
            }
        }
        if let Some(m) = &self.managed_by {
            if m.is_empty() || m.len() > 32 {
                return Err(Error::bad_request("managed_by", "must be a short owner name"));
            }
        }
        Ok(())
    }

    /// True when Terraform (or another owner) manages the route, so admin writes are refused.
    pub fn is_externally_managed(&self) -> bool {
        self.managed_by.as_deref().is_some_and(|m| m != "admin-api")
    }

    /// True when the route answers requests at `now` (enabled and not expired).
    pub fn is_active(&self, now: u64) -> bool {
        self.enabled && self.expires_at.is_none_or(|end| now < end)
    }

    /// A route with defaults for everything but name and endpoints; handy for tests and the CLI.
    pub fn new(name: impl Into<String>, endpoints: Vec<Endpoint>) -> Self {
        Route {
            name: name.into(),
            host: None,
            enabled: true,
            endpoints,
            auth: Auth::default(),
            affinity: Affinity::default(),
            upstream_api_key_secret: None,
            timeouts: Timeouts::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limit_rpm: None,
            sandbox: true,
            forward_set_cookie: false,
            usage: Default::default(),
            models: Vec::new(),
            managed_by: None,
            expires_at: None,
        }
    }
}

impl Endpoint {
    /// An endpoint of weight 1.
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Endpoint { id: id.into(), url: url.into(), weight: 1, via: None, lease_expires_at: None, registered_by: None }
    }
}

/// What a request path addresses, after decoding and normalising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/_gateway/...`: the admin API; the segments after `_gateway`.
    Admin(Vec<String>),
    /// `/{route}/{rest}`.
    Static { name: String, rest: String },
    /// `/e/{id}/{rest}`.
    Ephemeral { id: String, rest: String },
    /// Any path on a host route: the whole normalised path.
    Host { rest: String },
    /// `/v1/{rest}`: OpenAI's base URL, routed by the request's `model` ([`crate::models`]);
    /// `rest` is the whole normalised path, `v1/…`.
    Model { rest: String },
}

/// Characters re-encoded in forwarded path segments: everything outside RFC 3986 `pchar`.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Decodes a raw request path into segments, refusing every form of traversal.
///
/// Each segment is percent-decoded once; a decoded segment that is `.` or `..`,
/// or holds `/`, `\`, NUL or another control character, is refused, so neither
/// `..` nor `%2e%2e` nor `%2f` can step out of a route or reach `/_gateway/`.
/// Empty segments (`//`) collapse. Returned segments are decoded text.
pub fn normalise_path(raw: &str) -> Result<Vec<String>> {
    if !raw.starts_with('/') {
        return Err(Error::InvalidRequest("path must start with /".into()));
    }
    let mut out = Vec::new();
    for seg in raw.split('/').skip(1) {
        let decoded = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| Error::InvalidRequest("path is not valid UTF-8".into()))?;
        if decoded.is_empty() {
            continue;
        }
        if decoded == "." || decoded == ".." {
            return Err(Error::InvalidRequest("path must not contain . or .. segments".into()));
        }
        if decoded.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(Error::InvalidRequest("path segment holds an encoded separator or control character".into()));
        }
        out.push(decoded.into_owned());
    }
    Ok(out)
}

/// Re-encodes decoded segments into the path sent upstream (`a/b c` → `a/b%20c`).
pub fn encode_segments(segments: &[String]) -> String {
    let mut s = String::new();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.extend(utf8_percent_encode(seg, SEGMENT));
    }
    s
}

/// Maps a raw path to what it addresses. `host_route` says whether the request's
/// host belongs to a host route (then every path but `/_gateway/` goes to it).
pub fn parse_target(raw_path: &str, host_route: bool) -> Result<Target> {
    let segs = normalise_path(raw_path)?;
    let trailing_slash = raw_path.len() > 1 && raw_path.ends_with('/');
    let rest_of = |from: usize| {
        let mut r = encode_segments(&segs[from.min(segs.len())..]);
        if trailing_slash && !r.is_empty() {
            r.push('/');
        }
        r
    };
    match segs.first().map(String::as_str) {
        Some("_gateway") => Ok(Target::Admin(segs[1..].to_vec())),
        _ if host_route => Ok(Target::Host { rest: rest_of(0) }),
        Some("e") => match segs.get(1) {
            Some(id) if is_valid_ephemeral_id(id) => Ok(Target::Ephemeral { id: id.clone(), rest: rest_of(2) }),
            _ => Err(Error::NotFound("no such route".into())),
        },
        Some("v1") => Ok(Target::Model { rest: rest_of(0) }),
        Some(name) if is_valid_route_name(name) => Ok(Target::Static { name: name.to_string(), rest: rest_of(1) }),
        _ => Err(Error::NotFound("no such route".into())),
    }
}

/// Ephemeral ids are 16 lowercase base32 characters.
pub fn is_valid_ephemeral_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn route_names() {
        for ok in ["llama", "a", "llama-prod-2", &"a".repeat(63)] {
            assert!(is_valid_route_name(ok), "{ok}");
        }
        for bad in ["", "e", "_gateway", "-a", "Llama", "a_b", &"a".repeat(64), "a/b", "é"] {
            assert!(!is_valid_route_name(bad), "{bad}");
        }
    }

    #[test]
    fn route_json_defaults_require_auth() {
        let r: Route = serde_json::from_str(r#"{"name":"x","endpoints":[{"id":"a","url":"http://10.0.0.1:8000"}]}"#).unwrap();
        assert!(r.auth.required);
        assert_eq!(r.affinity.header.as_deref(), Some("x-session-id"));
        assert_eq!(r.endpoints[0].weight, 1);
        r.validate().unwrap();
    }

    #[test]
    fn sandbox_is_on_and_cookies_off_unless_the_route_says() {
        let r: Route = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert!(r.sandbox && !r.forward_set_cookie);
        assert_eq!(r, Route::new("x", vec![]));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!((v["sandbox"].as_bool(), v["forward_set_cookie"].as_bool()), (Some(true), Some(false)), "shown in the route JSON");
        let r: Route = serde_json::from_str(r#"{"name":"x","sandbox":false,"forward_set_cookie":true}"#).unwrap();
        assert!(!r.sandbox && r.forward_set_cookie);
    }

    #[test]
    fn api_md_example_decodes_and_validates() {
        let r: Route = serde_json::from_str(r#"{
          "name": "llama-prod", "host": null, "enabled": true,
          "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000", "weight": 1}],
          "auth": {"required": true, "groups": ["ml-team", "partner-acme"]},
          "affinity": {"header": "x-session-id", "cookie": null},
          "upstream_api_key_secret": "VLLM_API_KEY",
          "timeouts": {"connect_ms": 2000, "response_ms": 300000},
          "max_body_bytes": 10485760, "managed_by": "terraform"}"#).unwrap();
        r.validate().unwrap();
        assert!(r.is_externally_managed());
    }

    #[test]
    fn validation_names_the_field() {
        let mut r = Route::new("x", vec![Endpoint::new("a", "ftp://h")]);
        assert!(matches!(r.validate(), Err(Error::BadRequest { field, .. }) if field == "endpoints[0].url"));
        r.endpoints[0].url = "http://user:pw@h".into();
        assert!(r.validate().is_err());
        r.endpoints[0].url = "http://h:8000/v".into();
        r.endpoints[0].weight = 0;
        assert!(matches!(r.validate(), Err(Error::BadRequest { field, .. }) if field == "endpoints[0].weight"));
        r.endpoints[0].weight = 1;
        r.upstream_api_key_secret = Some("sk-live-123".into());
        assert!(matches!(r.validate(), Err(Error::BadRequest { field, .. }) if field == "upstream_api_key_secret"));
        for reserved in ["GATEWAY_SIGNING_KEYS", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "LAMBDA_TASK_ROOT", "CLOUDFLARE_API_TOKEN", "_HANDLER"] {
            r.upstream_api_key_secret = Some(reserved.into());
            assert!(matches!(r.validate(), Err(Error::BadRequest { ref field, .. }) if field == "upstream_api_key_secret"), "{reserved}");
        }
        r.upstream_api_key_secret = Some("VLLM_API_KEY".into());
        assert!(r.validate().is_ok());
    }

    #[test]
    fn upstreams_cannot_reach_the_gateways_surroundings_by_default() {
        let policy = UpstreamPolicy::default();
        for url in [
            "http://127.0.0.1:8000",
            "http://127.1/",
            "http://127.255.255.254/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://0177.1/",
            "http://017700000001/",
            "http://127.0.0.1./",
            "http://localhost:8000",
            "http://LOCALHOST/",
            "http://localhost./",
            "http://vllm.localhost/",
            "http://0.0.0.0:8000",
            "http://0/",
            "http://[::1]:8000",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::169.254.169.254]/",
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.1.1/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://2852039166/",
            "http://[fe80::1]/",
            "http://[FEBF::1]/",
            "http://[fd00:ec2::254]/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://Metadata.Google.Internal./",
            "http://metadata/",
            "http://127.0.0.1\\.example.com/",
            "http://1.2.3.256/",
            "http://99999999999/",
            "http://1.2.3.4.5/",
            "http://08.0.0.1/",
            "http://%31%32%37.0.0.1/",
        ] {
            assert!(policy.check_url(url).is_err(), "{url} must be refused");
        }
        for url in [
            "http://10.0.0.1:8000",
            "http://172.16.0.5:8000/v1",
            "http://192.168.1.10",
            "https://vllm.internal.example.com",
            "http://vllm-1:8000",
            "http://8.8.8.8",
            "http://[fd12::1]:8000",
            "http://127.example.com",
            "http://0x7f.example.com",
            "http://localhost.example.com",
            "http://metadata.example.com",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert_eq!(policy.check_url(url), Ok(()), "{url} must be allowed");
        }
        assert_eq!(UpstreamPolicy { allow_local: true, ..Default::default() }.check_url("http://127.0.0.1:8000"), Ok(()));
    }

    #[test]
    fn via_must_name_a_configured_binding() {
        let mut ep = Endpoint::new("a", "http://10.0.0.1:8000");
        ep.via = Some("VPC_PROD".into());
        let none = UpstreamPolicy::default();
        assert!(matches!(none.check(&ep, "endpoints[2]"), Err(Error::BadRequest { ref field, .. }) if field == "endpoints[2].via"));
        let some = UpstreamPolicy { allow_local: true, via_bindings: vec!["VPC_PROD".into()] };
        assert_eq!(some.check(&ep, "endpoints[2]"), Ok(()));
        ep.via = Some("VPC_OTHER".into());
        assert!(matches!(some.check(&ep, ""), Err(Error::BadRequest { ref field, .. }) if field == "via"));
        ep.via = None;
        ep.url = "http://127.0.0.1:1".into();
        assert!(matches!(none.check(&ep, ""), Err(Error::BadRequest { ref field, .. }) if field == "url"));
    }

    #[test]
    fn affinity_fallback_and_balance_factor() {
        use crate::token::TokenKind;
        let r: Route = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!(r.affinity.factor(), crate::balance::DEFAULT_BALANCE_FACTOR);
        assert_eq!(
            r.affinity.fallback_for(Some(TokenKind::User)),
            AffinityFallback::Token
        );
        for kind in [Some(TokenKind::Service), Some(TokenKind::Partner), None] {
            assert_eq!(r.affinity.fallback_for(kind), AffinityFallback::Spread);
        }
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["affinity"],
            serde_json::json!({"header": "x-session-id", "cookie": null}),
            "unset, the route JSON is as before"
        );
        let r: Route = serde_json::from_str(
            r#"{"name":"x","affinity":{"fallback":"prefix","balance_factor":1.5}}"#,
        )
        .unwrap();
        assert_eq!(
            r.affinity.fallback_for(Some(TokenKind::User)),
            AffinityFallback::Prefix
        );
        assert_eq!(r.affinity.factor(), 1.5);
        r.validate().unwrap();
        let none: Route = serde_json::from_str(
            r#"{"name":"x","affinity":{"fallback":"none","balance_factor":null}}"#,
        )
        .unwrap();
        assert_eq!(
            none.affinity.fallback_for(Some(TokenKind::User)),
            AffinityFallback::Spread
        );
        assert_eq!(
            none.affinity.factor(),
            crate::balance::DEFAULT_BALANCE_FACTOR
        );
        assert_eq!(
            serde_json::to_value(&none.affinity).unwrap()["fallback"],
            "none"
        );
        assert!(
            serde_json::from_str::<Route>(r#"{"name":"x","affinity":{"fallback":"session"}}"#)
                .is_err()
        );
        for (f, ok) in [
            (0.0, true),
            (1.0, true),
            (10.0, true),
            (0.5, false),
            (10.5, false),
            (-1.0, false),
        ] {
            let mut r = Route::new("x", vec![]);
            r.affinity.balance_factor = Some(f);
            assert_eq!(
                matches!(r.validate(), Err(Error::BadRequest { ref field, .. }) if field == "affinity.balance_factor"),
                !ok,
                "{f}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Route>(r#"{"name":"x","endpoint":[]}"#).is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/llama/v1/chat/completions", false).unwrap(),
            Target::Static { name: "llama".into(), rest: "v1/chat/completions".into() }
        );
        assert_eq!(
            parse_target("/e/abcdefghijklmnop/v1/models", false).unwrap(),
            Target::Ephemeral { id: "abcdefghijklmnop".into(), rest: "v1/models".into() }
        );
        assert_eq!(parse_target("/_gateway/routes/x", false).unwrap(), Target::Admin(vec!["routes".into(), "x".into()]));
        assert_eq!(parse_target("/v1/models", true).unwrap(), Target::Host { rest: "v1/models".into() });
        assert_eq!(parse_target("/_gateway/healthz", true).unwrap(), Target::Admin(vec!["healthz".into()]));
        assert_eq!(parse_target("/llama/a%20b/", false).unwrap(), Target::Static { name: "llama".into(), rest: "a%20b/".into() });
    }

    #[test]
    fn traversal_is_refused() {
        for p in [
            "/llama/../_gateway/routes",
            "/llama/%2e%2e/_gateway/routes",
            "/llama/%2E%2E/x",
            "/llama/.%2e/x",
            "/llama/a%2f..%2f..%2f_gateway",
            "/llama%2f..%2f_gateway/routes",
            "/llama/a%5c..",
            "/llama/%00",
            "/./_gateway/routes",
            "/llama/%ff",
        ] {
            assert!(parse_target(p, false).is_err(), "{p}");
        }
        assert!(matches!(parse_target("/_x/y", false), Err(Error::NotFound(_))));
        assert!(matches!(parse_target("/e/short/y", false), Err(Error::NotFound(_))));
    }

    proptest! {
        // Whatever the input, a path either fails or yields segments free of separators and dot segments,
        // and re-encoding then decoding gives the same segments back.
        #[test]
        fn normalised_segments_are_clean(raw in "/[a-z%./\\\\0-9A-F_]{0,40}") {
            if let Ok(segs) = normalise_path(&raw) {
                for s in &segs {
                    prop_assert!(!s.is_empty() && s != "." && s != "..");
                    prop_assert!(!s.contains('/') && !s.contains('\\'));
                }
                let again = normalise_path(&format!("/{}", encode_segments(&segs))).unwrap();
                prop_assert_eq!(again, segs);
            }
        }

        // No path reaches the admin API unless its first decoded segment is literally `_gateway`.
        #[test]
        fn admin_only_by_first_segment(tail in "[a-z%./0-9A-F_]{0,30}") {
            let raw = format!("/llama/{tail}");
            if let Ok(t) = parse_target(&raw, false) {
                prop_assert!(matches!(t, Target::Static { ref name, .. } if name == "llama"), "escaped the route: {:?}", t);
            }
        }
    }
}
