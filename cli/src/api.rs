//! The admin API over HTTP: where to send, refusing to send a token in clear,
//! and turning the gateway's OpenAI-shaped errors into operator messages.

use crate::duration::printable;
use serde_json::Value;
use std::time::Duration;

/// Where the token comes from, once the flags, the environment and the contexts are resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given on the command line, in the environment, or in a context.
    Given(String),
    /// A file, read for every call (so a rotated token is picked up).
    File(String),
}

/// The gateway and the token source, resolved but not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The gateway's base URL as given.
    pub server: String,
    /// The token.
    pub token: TokenSource,
}

impl std::fmt::Debug for TokenSource {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Given(_) => f.write_str("Given(<redacted>)"),
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// The gateway URL and admin token, checked.
pub struct Target {
    /// Base URL without a trailing `/`.
    pub base: String,
    token: String,
}

impl std::fmt::Debug for Target {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("base", &self.base).field("token", &"<redacted>").finish()
    }
}

/// Checks the URL and reads the token (from its file, if it has one: each call sees the file as it is now).
pub fn target(conn: &Conn) -> Result<Target, String> {
    let base = check_base_url(conn.server.trim())?;
    let token = match &conn.token {
        TokenSource::Given(t) => t.clone(),
        TokenSource::File(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file `{}`: {e}", printable(path)))?,
    };
    Ok(Target { base, token: check_token(&token)? })
}

/// An HTTP request to the admin API, before the base URL and token are added.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    /// `GET`, `PUT`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path and query after the base URL, starting with `/_gateway/`.
    pub path: String,
    /// JSON body, if any.
    pub body: Option<Value>,
}

impl HttpCall {
    pub fn get(path: impl Into<String>) -> HttpCall {
        HttpCall { method: "GET", path: path.into(), body: None }
    }
    pub fn delete(path: impl Into<String>) -> HttpCall {
        HttpCall { method: "DELETE", path: path.into(), body: None }
    }
    pub fn put(path: impl Into<String>, body: Value) -> HttpCall {
        HttpCall { method: "PUT", path: path.into(), body: Some(body) }
    }
    pub fn post(path: impl Into<String>, body: Option<Value>) -> HttpCall {
        HttpCall { method: "POST", path: path.into(), body }
    }
}

/// Percent-encodes a path segment or query value: everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path with a query of the given pairs (values encoded), `?` only when there are any.
pub fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// True for the hosts a token may reach over plain http.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]"
}

/// Checks the gateway URL; plain `http://` only to this machine, since the token would cross the network in clear.
pub fn check_base_url(url: &str) -> Result<String, String> {
    let shown = printable(url);
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("gateway URL `{shown}` must not contain spaces or control characters"));
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("gateway URL `{shown}` must start with https://"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("gateway URL `{shown}` must start with https://"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!("gateway URL `{shown}` must not have a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("the gateway URL must not carry credentials; the token goes in --token or GATEWAY_TOKEN".into());
    }
    let host = if authority.starts_with('[') {
        authority.find(']').map(|i| &authority[..=i]).unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("gateway URL `{shown}` must name a host"));
    }
    if scheme == "http" && !is_loopback(host) {
        return Err(format!(
            "refusing to send the admin token to `{}` over plain http://: it would cross the network in clear. \
             Use https:// (plain http is allowed only for localhost, 127.0.0.1 and [::1])",
            printable(host)
        ));
    }
    Ok(format!("{scheme}://{}", rest.trim_end_matches('/')))
}

/// Checks a token's shape without ever echoing it.
fn check_token(token: &str) -> Result<String, String> {
    let t = token.trim();
    let t = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => t[7..].trim_start(),
        _ => t,
    };
    if t.is_empty() || t.len() > gateway_core::token::MAX_TOKEN_BYTES || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the admin token is malformed (expected a JWT: printable ASCII, no spaces)".into());
    }
    Ok(t.to_string())
}

/// Why a call failed.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// The gateway answered with an error status.
    Status { status: u16, message: String, param: Option<String> },
    /// No answer, or one that is not the API's.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status { status, message, param } => {
                write!(f, "the gateway answered {status}: {message}")?;
                if let Some(p) = param {
                    write!(f, " (param: {p})")?;
                }
                if *status == 401 {
                    f.write_str("\nhint: the admin token was refused (expired, revoked, or signed with a key the gateway does not hold)")?;
                } else if *status == 403 {
                    f.write_str("\nhint: the admin API needs a token with group `admin`; a registrar token only registers its own endpoints, within its routes, hosts and limits")?;
                }
                Ok(())
            }
            Failure::Other(m) => f.write_str(m),
        }
    }
}

/// Sanitises text from the network before it reaches a terminal.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() && c != '\n' { '?' } else { c }).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// Reads the message and param out of an OpenAI-shaped error body.
pub fn error_from_body(status: u16, body: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    match err.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => Failure::Status {
            status,
            message: clean(m, 1000),
            param: err.and_then(|e| e.get("param")).and_then(Value::as_str).map(|p| clean(p, 200)),
        },
        None if body.trim().is_empty() => Failure::Status { status, message: "(empty body)".into(), param: None },
        None => Failure::Status { status, message: format!("(not an API error) {}", clean(body.trim(), 300)), param: None },
    }
}

/// Sends one call and returns the reply's body as text.
pub fn send_text(target: &Target, call: &HttpCall, accept: &str) -> Result<String, Failure> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        // A redirect could lead the token elsewhere; the admin API never redirects.
        .redirects(0)
        .user_agent(concat!("gatewayctl/", env!("CARGO_PKG_VERSION")))
        .build();
    let url = format!("{}{}", target.base, call.path);
    let req = agent.request(call.method, &url).set("Authorization", &format!("Bearer {}", target.token)).set("Accept", accept);
    let result = match &call.body {
        Some(body) => req.send_json(body),
        None => req.call(),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::Status(status, resp)) => {
            let body = resp.into_string().unwrap_or_default();
            return Err(error_from_body(status, &body));
        }
        Err(ureq::Error::Transport(t)) => return Err(Failure::Other(format!("cannot reach the gateway: {t}"))),
    };
    let status = resp.status();
    if !(200..300).contains(&status) {
        let location = resp.header("location").map(|l| format!(" to `{}`", clean(l, 200))).unwrap_or_default();
        return Err(Failure::Other(format!("the gateway answered {status}{location}; not following it with the token (check --server)")));
    }
    resp.into_string().map_err(|e| Failure::Other(format!("cannot read the reply: {e}")))
}

/// Sends one call and returns the JSON reply (`null` for an empty body).
pub fn send(target: &Target, call: &HttpCall) -> Result<Value, Failure> {
    let body = send_text(target, call, "application/json")?;
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).map_err(|_| Failure::Other(format!("the reply is not JSON: {}", clean(body.trim(), 300))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_this_machine() {
        assert_eq!(check_base_url("https://gw.example.com/").unwrap(), "https://gw.example.com");
        assert_eq!(check_base_url("HTTPS://gw.example.com:8443").unwrap(), "https://gw.example.com:8443");
        assert_eq!(check_base_url("http://localhost:8787").unwrap(), "http://localhost:8787");
        assert!(check_base_url("http://127.0.0.1:8787").is_ok());
        assert!(check_base_url("http://[::1]:8787/").is_ok());
        for bad in [
            "http://gw.example.com",
            "http://10.0.0.5:8080",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1@evil.example",
            "https://user:pw@gw.example.com",
            "gw.example.com",
            "ftp://gw.example.com",
            "https://",
            "https://gw.example.com/?x=1",
            "https://gw example.com",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
        assert!(check_base_url("http://gw.example.com").unwrap_err().contains("in clear"));
    }

    #[test]
    fn the_token_file_is_read_for_each_call() {
        let path = std::env::temp_dir().join(format!("gatewayctl-token-{}", std::process::id()));
        std::fs::write(&path, "a.b.c\n").unwrap();
        let conn = Conn { server: "https://gw".into(), token: TokenSource::File(path.to_string_lossy().into_owned()) };
        assert_eq!(target(&conn).unwrap().token, "a.b.c");
        std::fs::write(&path, "d.e.f").unwrap();
        assert_eq!(target(&conn).unwrap().token, "d.e.f", "re-read: a rotated token is picked up");
        std::fs::remove_file(&path).unwrap();
        let e = target(&conn).unwrap_err();
        assert!(e.contains("cannot read the token file") && !e.contains("d.e.f"), "{e}");
        assert!(!format!("{conn:?}").contains("d.e.f"));
        let given = Conn { server: "https://gw/".into(), token: TokenSource::Given("Bearer x.y.z".into()) };
        let t = target(&given).unwrap();
        assert_eq!((t.base.as_str(), t.token.as_str()), ("https://gw", "x.y.z"));
        assert!(!format!("{given:?}{t:?}").contains("x.y.z"));
    }

    #[test]
    fn malformed_tokens_are_refused_without_echo() {
        let conn = Conn { server: "https://gw".into(), token: TokenSource::Given("secret part\r\nX-Injected: 1".into()) };
        let e = target(&conn).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(with_query("/_gateway/tokens", &[("q", Some("a b&c/d".into())), ("limit", None)]), "/_gateway/tokens?q=a%20b%26c%2Fd");
        assert_eq!(with_query("/_gateway/tokens", &[("q", None)]), "/_gateway/tokens");
        assert_eq!(encode("../routes"), "..%2Froutes");
    }

    #[test]
    fn openai_errors_give_message_and_param() {
        let body = r#"{"error":{"message":"invalid `ttl_seconds`: must be between 60 and 7776000 seconds","type":"invalid_request_error","code":"invalid_request","param":"ttl_seconds"}}"#;
        let f = error_from_body(400, body);
        assert_eq!(
            f,
            Failure::Status { status: 400, message: "invalid `ttl_seconds`: must be between 60 and 7776000 seconds".into(), param: Some("ttl_seconds".into()) }
        );
        assert!(f.to_string().contains("(param: ttl_seconds)"));
        let f = error_from_body(401, r#"{"error":{"message":"token expired","type":"authentication_error","code":"token_expired"}}"#);
        assert!(f.to_string().starts_with("the gateway answered 401: token expired\nhint"));
        assert!(error_from_body(502, "<html>\x1b[31mbad</html>").to_string().contains("?[31m"));
    }
}
