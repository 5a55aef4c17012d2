//! Registrar credentials: the token a model server holds to register itself.
//! It may only register, renew and remove its own leases, on the routes it
//! names, at URLs on the hosts it was issued for, within a weight cap, a
//! longest lease and a number of live leases per route. The limits are signed
//! into the token (claim `reg`), so checking a lease needs no token record.

use crate::error::{Error, Result};
use crate::route::{whatwg_ipv4, Endpoint};
use crate::token::{Principal, TokenKind};
use http::Method;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest lease a registrar is issued for when the request does not say.
pub const DEFAULT_MAX_LEASE_SECONDS: u64 = 300;
/// Most host patterns one registrar may name.
pub const MAX_HOSTS: usize = 64;

/// What a registrar token may register, as issued (`registrar` in `POST /_gateway/tokens`)
/// and signed (claim `reg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarScope {
    /// Hosts an endpoint URL may name: IPv4 or IPv6 addresses and CIDRs (`10.0.1.0/24`),
    /// exact host names, or names with one `*` in their first label (`gpu-*.vllm.internal`).
    pub hosts: Vec<String>,
    /// Largest `weight` a lease may take, 1 to 1000 (default 1).
    #[serde(default = "one")]
    pub max_weight: u32,
    /// Longest `lease_seconds`, 5 to [`crate::admin::MAX_LEASE_SECONDS`] (default 300).
    #[serde(default = "default_max_lease")]
    pub max_lease_seconds: u64,
    /// Live leases the registrar's subject may hold on one route, 1 to
    /// [`crate::route::MAX_ENDPOINTS`] (default 1), so many small leases cannot add up to a large one.
    #[serde(default = "one")]
    pub max_endpoints: u32,
}

fn one() -> u32 {
    1
}
fn default_max_lease() -> u64 {
    DEFAULT_MAX_LEASE_SECONDS
}

/// One entry of [`RegistrarScope::hosts`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    V4 { net: u32, prefix: u8 },
    V6 { net: u128, prefix: u8 },
    /// An exact host name, lowercase, without a trailing dot.
    Name(String),
    /// `{head}*{tail}{rest}`: the first label starts with `head` and ends with `tail`, with at
    /// least one character between; the other labels are exactly `rest` (which starts with `.`).
    Wildcard { head: String, tail: String, rest: String },
}

fn is_label(l: &str) -> bool {
    !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn v4_bits(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

fn v6_bits(ip: Ipv6Addr) -> u128 {
    u128::from(ip)
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl HostPattern {
    /// Parses one pattern; the reason it is refused otherwise.
    fn parse(s: &str) -> std::result::Result<HostPattern, &'static str> {
        if s.is_empty() || s.len() > 253 {
            return Err("must be 1 to 253 characters");
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let p: u8 = p.parse().map_err(|_| "has a prefix length that is not a number")?;
                (a, Some(p))
            }
            None => (s, None),
        };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        if let Ok(ip) = addr.parse::<Ipv4Addr>() {
            let prefix = prefix.unwrap_or(32);
            if prefix > 32 {
                return Err("has an IPv4 prefix length over 32");
            }
            if v4_bits(ip) & !mask32(prefix) != 0 {
                return Err("has host bits set after the prefix (write the network, e.g. 10.0.1.0/24)");
            }
            return Ok(HostPattern::V4 { net: v4_bits(ip), prefix });
        }
        if let Ok(ip) = addr.parse::<Ipv6Addr>() {
            let prefix = prefix.unwrap_or(128);
            if prefix > 128 {
                return Err("has an IPv6 prefix length over 128");
            }
            if v6_bits(ip) & !mask128(prefix) != 0 {
                return Err("has host bits set after the prefix (write the network, e.g. fd00:1::/64)");
            }
            return Ok(HostPattern::V6 { net: v6_bits(ip), prefix });
        }
        if prefix.is_some() {
            return Err("is not an IPv4 or IPv6 network");
        }
        let name = s.to_ascii_lowercase();
        // A name the URL parser would read as an address (`10.1`, `0x0a000001`) is written as one.
        if !matches!(whatwg_ipv4(&name), Ok(None)) {
            return Err("is neither a dotted IPv4 address, a CIDR, nor a host name");
        }
        let (first, rest) = match name.split_once('.') {
            Some((f, r)) => (f, format!(".{r}")),
            None => (name.as_str(), String::new()),
        };
        if !rest.split('.').skip(1).all(is_label) {
            return Err("must be a host name of labels [a-z0-9-], an address or a CIDR");
        }
        match first.split_once('*') {
            None if is_label(first) => Ok(HostPattern::Name(name.clone())),
            None => Err("must be a host name of labels [a-z0-9-], an address or a CIDR"),
            Some((head, tail)) => {
                if tail.contains('*') || !(head.is_empty() || is_label(head)) || !(tail.is_empty() || is_label(tail)) {
                    return Err("may hold one `*`, in its first label only");
                }
                if rest.is_empty() {
                    return Err("needs a domain after the wildcard label (e.g. *.vllm.internal)");
                }
                Ok(HostPattern::Wildcard { head: head.to_string(), tail: tail.to_string(), rest })
            }
        }
    }

    fn matches(&self, host: &UrlHost) -> bool {
        match (self, host) {
            (HostPattern::V4 { net, prefix }, UrlHost::V4(ip)) => v4_bits(*ip) & mask32(*prefix) == *net,
            (HostPattern::V6 { net, prefix }, UrlHost::V6(ip)) => v6_bits(*ip) & mask128(*prefix) == *net,
            (HostPattern::Name(n), UrlHost::Name(h)) => n == h,
            (HostPattern::Wildcard { head, tail, rest }, UrlHost::Name(h)) => match h.find('.') {
                Some(dot) => {
                    let (label, others) = h.split_at(dot);
                    others == rest && label.len() > head.len() + tail.len() && label.starts_with(head.as_str()) && label.ends_with(tail.as_str())
                }
                None => false,
            },
            _ => false,
        }
    }
}

/// An endpoint URL's host, read as the platform's fetch reads it.
enum UrlHost {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// Lowercase, without a trailing dot.
    Name(String),
}

impl UrlHost {
    /// `None` for a URL without a host, or one no pattern should ever match (percent-encoded,
    /// an invalid address, a name with characters outside a DNS label's).
    fn of(url: &str) -> Option<UrlHost> {
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?.to_ascii_lowercase();
        if host.contains('%') {
            return None;
        }
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return inner.parse().ok().map(UrlHost::V6);
        }
        let host = host.strip_suffix('.').unwrap_or(&host);
        match whatwg_ipv4(host) {
            Ok(Some(ip)) => Some(UrlHost::V4(ip)),
            Ok(None) if host.split('.').all(is_label) => Some(UrlHost::Name(host.to_string())),
            _ => None,
        }
    }
}

impl RegistrarScope {
    /// Checks the scope as issued; errors name the field (`registrar.hosts[0]`, …).
    pub fn validate(&self) -> Result<()> {
        if self.hosts.is_empty() || self.hosts.len() > MAX_HOSTS {
            return Err(Error::bad_request("registrar.hosts", format!("must list 1 to {MAX_HOSTS} hosts or networks")));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            HostPattern::parse(h).map_err(|why| Error::bad_request(format!("registrar.hosts[{i}]"), why))?;
        }
        if !(1..=1000).contains(&self.max_weight) {
            return Err(Error::bad_request("registrar.max_weight", "must be between 1 and 1000"));
        }
        let (min, max) = (crate::admin::MIN_LEASE_SECONDS, crate::admin::MAX_LEASE_SECONDS);
        if !(min..=max).contains(&self.max_lease_seconds) {
            return Err(Error::bad_request("registrar.max_lease_seconds", format!("must be between {min} and {max}")));
        }
        if !(1..=crate::route::MAX_ENDPOINTS as u32).contains(&self.max_endpoints) {
            return Err(Error::bad_request("registrar.max_endpoints", format!("must be between 1 and {}", crate::route::MAX_ENDPOINTS)));
        }
        Ok(())
    }

    /// True when the URL's host is one of [`Self::hosts`]. IPv4 hosts are read as browsers and
    /// fetch read them (`167772161` is 10.0.0.1), so no spelling of an address escapes its network.
    pub fn allows_url(&self, url: &str) -> bool {
        let Some(host) = UrlHost::of(url) else { return false };
        self.hosts.iter().filter_map(|h| HostPattern::parse(h).ok()).any(|p| p.matches(&host))
    }

    /// Checks a lease request's URL, weight and length against the scope.
    pub fn check_lease(&self, endpoint: &Endpoint, lease_seconds: u64) -> Result<()> {
        if !self.allows_url(&endpoint.url) {
            return Err(Error::Forbidden("`url`: its host is not one this registrar token may register".into()));
        }
        if endpoint.weight > self.max_weight {
            return Err(Error::bad_request("weight", format!("this registrar token may register weight at most {}", self.max_weight)));
        }
        if lease_seconds > self.max_lease_seconds {
            return Err(Error::bad_request("lease_seconds", format!("this registrar token may take leases of at most {} seconds", self.max_lease_seconds)));
        }
        Ok(())
    }
}

/// True for a registrar's token.
pub fn is_registrar(p: &Principal) -> bool {
    p.kind == TokenKind::Registrar
}

/// The admin calls a registrar may make: `PUT` and `DELETE /_gateway/routes/{name}/endpoints/{id}`.
pub fn authorize_call(method: &Method, segments: &[String]) -> Result<()> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, s.as_slice()) {
        (&Method::PUT | &Method::DELETE, ["routes", _, "endpoints", _]) => Ok(()),
        _ => Err(Error::Forbidden(
            "a registrar token may only register, renew and remove its own endpoints (PUT and DELETE /_gateway/routes/{name}/endpoints/{id})".into(),
        )),
    }
}

/// The registrar's scope, if the route is one it names; [`Error::Forbidden`] otherwise.
pub fn scope_for<'a>(p: &'a Principal, route: &str) -> Result<&'a RegistrarScope> {
    let scope = p.registrar.as_ref().ok_or_else(|| Error::Forbidden("this registrar token carries no registrar scope".into()))?;
    if !p.routes.as_ref().is_some_and(|r| r.iter().any(|n| n == route)) {
        return Err(Error::Forbidden(format!("this registrar token may not register endpoints on route `{route}`")));
    }
    Ok(scope)
}

/// Whether `subject` may write over `existing` (a lease stored under the same id): only its own,
/// or one whose lease has ended. An admin's lease (no `registered_by`) is never a registrar's.
pub fn may_replace(subject: &str, existing: &Endpoint, now: u64) -> bool {
    existing.registered_by.as_deref() == Some(subject) || !existing.is_live(now)
}

/// Whether `subject` may remove `existing`: only its own.
pub fn may_remove(subject: &str, existing: &Endpoint) -> bool {
    existing.registered_by.as_deref() == Some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(hosts: &[&str]) -> RegistrarScope {
        RegistrarScope { hosts: hosts.iter().map(|s| s.to_string()).collect(), max_weight: 4, max_lease_seconds: 300, max_endpoints: 1 }
    }

    #[test]
    fn patterns_parse_or_name_the_entry() {
        for ok in ["10.0.1.0/24", "10.0.2.7", "0.0.0.0/0", "fd00:1::/64", "[fd00::7]", "fd00::7/128", "vllm-1", "gpu-1.vllm.internal", "gpu-*.vllm.internal", "*.vllm.internal", "*-a.x", "GPU-1.Example.COM"] {
            assert!(scope(&[ok]).validate().is_ok(), "{ok}");
        }
        for (i, bad) in ["", "10.0.1.5/24", "10.0.1.0/33", "fd00::1/64", "10.0.1/24", "10.1", "167772161", "0x0a000001", "*", "gpu-*", "*.*.x", "a*b*.x", "gpu_1.x", "a..b", "a.b.", "x/8", "http://10.0.0.1", "10.0.0.1:8000"].iter().enumerate() {
            let mut s = scope(&["10.9.9.9"]);
            s.hosts.push(bad.to_string());
            let e = s.validate().unwrap_err();
            assert!(matches!(&e, Error::BadRequest { field, .. } if field == "registrar.hosts[1]"), "{i} {bad}: {e:?}");
        }
        assert!(matches!(scope(&[]).validate(), Err(Error::BadRequest { field, .. }) if field == "registrar.hosts"));
    }

    #[test]
    fn limits_are_bounded() {
        let field = |s: RegistrarScope| match s.validate() {
            Err(Error::BadRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(RegistrarScope { max_weight: 0, ..scope(&["10.0.0.1"]) }), "registrar.max_weight");
        assert_eq!(field(RegistrarScope { max_weight: 1001, ..scope(&["10.0.0.1"]) }), "registrar.max_weight");
        assert_eq!(field(RegistrarScope { max_lease_seconds: 4, ..scope(&["10.0.0.1"]) }), "registrar.max_lease_seconds");
        assert_eq!(field(RegistrarScope { max_lease_seconds: crate::admin::MAX_LEASE_SECONDS + 1, ..scope(&["10.0.0.1"]) }), "registrar.max_lease_seconds");
        assert_eq!(field(RegistrarScope { max_endpoints: 0, ..scope(&["10.0.0.1"]) }), "registrar.max_endpoints");
        let defaults: RegistrarScope = serde_json::from_str(r#"{"hosts": ["10.0.0.1"]}"#).unwrap();
        assert_eq!((defaults.max_weight, defaults.max_lease_seconds, defaults.max_endpoints), (1, 300, 1));
        assert!(serde_json::from_str::<RegistrarScope>(r#"{"hosts": ["10.0.0.1"], "admin": true}"#).is_err());
    }

    #[test]
    fn urls_match_only_the_listed_hosts() {
        let s = scope(&["10.0.1.0/24", "10.0.2.7", "gpu-*.vllm.internal", "*.pool.internal", "vllm-a", "fd00:1::/64"]);
        for ok in [
            "http://10.0.1.5:8000",
            "https://10.0.1.255/v1",
            "http://10.0.2.7:8000",
            "http://167772421:8000", // 10.0.1.5 written as one number
            "http://0x0a.0.1.9/",
            "http://gpu-7.vllm.internal:8000",
            "http://GPU-7.VLLM.internal.:8000",
            "http://a.pool.internal",
            "http://vllm-a:8000",
            "http://[fd00:1::5]:8000",
        ] {
            assert!(s.allows_url(ok), "{ok} must be allowed");
        }
        for bad in [
            "http://10.0.2.8:8000",
            "http://10.0.3.1/",
            "http://gpu-.vllm.internal/",
            "http://gpu-7.vllm.internal.evil.example/",
            "http://x.gpu-7.vllm.internal/",
            "http://cpu-7.vllm.internal/",
            "http://a.b.pool.internal/",
            "http://pool.internal/",
            "http://vllm-a.evil.example/",
            "http://[fd00:2::5]/",
            "http://[::ffff:10.0.1.5]/",
            "http://%31%30.0.1.5/",
            "http://10.0.1.256/",
            "http://evil.example/@10.0.1.5",
            "not a url",
        ] {
            assert!(!s.allows_url(bad), "{bad} must be refused");
        }
    }

    #[test]
    fn leases_are_held_to_the_scope() {
        let s = scope(&["10.0.1.0/24"]);
        let mut ep = Endpoint::new("a", "http://10.0.1.5:8000");
        ep.weight = 4;
        assert_eq!(s.check_lease(&ep, 300), Ok(()));
        assert!(matches!(s.check_lease(&ep, 301), Err(Error::BadRequest { field, .. }) if field == "lease_seconds"));
        ep.weight = 5;
        assert!(matches!(s.check_lease(&ep, 60), Err(Error::BadRequest { field, .. }) if field == "weight"));
        ep.weight = 1;
        ep.url = "http://10.0.2.5:8000".into();
        assert!(matches!(s.check_lease(&ep, 60), Err(Error::Forbidden(m)) if m.contains("`url`")));
    }

    #[test]
    fn only_the_endpoints_calls_are_a_registrars() {
        let segs = |p: &str| p.split('/').map(String::from).collect::<Vec<_>>();
        assert!(authorize_call(&Method::PUT, &segs("routes/llama/endpoints/gpu-1")).is_ok());
        assert!(authorize_call(&Method::DELETE, &segs("routes/llama/endpoints/gpu-1")).is_ok());
        for (m, p) in [(Method::GET, "routes/llama/endpoints/gpu-1"), (Method::GET, "routes"), (Method::PUT, "routes/llama"), (Method::POST, "tokens"), (Method::GET, "me"), (Method::GET, "audit")] {
            assert!(matches!(authorize_call(&m, &segs(p)), Err(Error::Forbidden(_))), "{m} {p}");
        }
    }

    #[test]
    fn ownership() {
        let mut ep = Endpoint::new("a", "http://10.0.1.5:8000");
        ep.lease_expires_at = Some(100);
        assert!(!may_replace("gpu-1", &ep, 50), "an admin's live lease");
        assert!(may_replace("gpu-1", &ep, 100), "an ended lease is free");
        ep.registered_by = Some("gpu-2".into());
        assert!(!may_replace("gpu-1", &ep, 50) && !may_remove("gpu-1", &ep));
        ep.registered_by = Some("gpu-1".into());
        assert!(may_replace("gpu-1", &ep, 50) && may_remove("gpu-1", &ep));
    }
}
