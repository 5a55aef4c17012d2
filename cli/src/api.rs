//! The admin API over HTTP: where to send, refusing to send a token in clear,
//! and turning the gateway's OpenAI-shaped errors into operator messages.

use crate::args::{Conn, HttpCall};
use crate::duration::printable;
use serde_json::Value;
use std::time::Duration;

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

/// Resolves the flags, then the environment (`GATEWAY_URL`, `GATEWAY_TOKEN`), into a checked
/// target. `--token-file` is read here, so each call sees the file as it is now.
pub fn resolve(conn: &Conn, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, String> {
    let url = conn
        .url
        .clone()
        .or_else(|| env("GATEWAY_URL").filter(|s| !s.trim().is_empty()))
        .ok_or("no gateway URL: pass --url https://… or set GATEWAY_URL")?;
    let base = check_base_url(url.trim())?;
    let token = match (&conn.token, &conn.token_file) {
        (Some(_), Some(_)) => return Err("give the token once: --token or --token-file".into()),
        (Some(t), None) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file `{}`: {e}", printable(path)))?,
        (None, None) => env("GATEWAY_TOKEN")
            .filter(|s| !s.trim().is_empty())
            .ok_or("no token: set GATEWAY_TOKEN (or pass --token-file or --token)")?,
    };
    Ok(Target { base, token: check_token(&token)? })
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

/// Sends one call and returns the JSON reply.
pub fn send(target: &Target, call: &HttpCall) -> Result<Value, Failure> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        // A redirect could lead the token elsewhere; the admin API never redirects.
        .redirects(0)
        .user_agent(concat!("gatewayctl/", env!("CARGO_PKG_VERSION")))
        .build();
    let url = format!("{}{}", target.base, call.path);
    let req = agent
        .request(call.method, &url)
        .set("Authorization", &format!("Bearer {}", target.token))
        .set("Accept", "application/json");
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
        return Err(Failure::Other(format!("the gateway answered {status}{location}; not following it with the token (check --url)")));
    }
    let body = resp.into_string().map_err(|e| Failure::Other(format!("cannot read the reply: {e}")))?;
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).map_err(|_| Failure::Other(format!("the reply is not JSON: {}", clean(body.trim(), 300))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
    fn flags_win_over_the_environment() {
        let env = HashMap::from([("GATEWAY_URL", "https://env.example.com"), ("GATEWAY_TOKEN", "env.tok.en")]);
        let lookup = |k: &str| env.get(k).map(|s| s.to_string());
        let t = resolve(&Conn::default(), &lookup).unwrap();
        assert_eq!((t.base.as_str(), t.token.as_str()), ("https://env.example.com", "env.tok.en"));
        let conn = Conn { url: Some("https://flag.example.com".into()), token: Some("Bearer a.b.c".into()), token_file: None };
        let t = resolve(&conn, &lookup).unwrap();
        assert_eq!((t.base.as_str(), t.token.as_str()), ("https://flag.example.com", "a.b.c"));
        assert!(resolve(&Conn::default(), &|_| None).unwrap_err().contains("GATEWAY_URL"));
        let no_token = resolve(&Conn { url: Some("https://gw".into()), token: None, token_file: None }, &|_| None).unwrap_err();
        assert!(no_token.contains("GATEWAY_TOKEN"));
    }

    #[test]
    fn the_token_file_is_read_when_resolving() {
        let path = std::env::temp_dir().join(format!("gatewayctl-token-{}", std::process::id()));
        std::fs::write(&path, "a.b.c\n").unwrap();
        let file = Some(path.to_string_lossy().into_owned());
        let env = |k: &str| (k == "GATEWAY_TOKEN").then(|| "env.tok.en".to_string());
        let conn = Conn { url: Some("https://gw".into()), token: None, token_file: file.clone() };
        assert_eq!(resolve(&conn, &env).unwrap().token, "a.b.c", "the file wins over the environment");
        std::fs::write(&path, "d.e.f").unwrap();
        assert_eq!(resolve(&conn, &env).unwrap().token, "d.e.f", "re-read: a rotated token is picked up");
        let both = Conn { token: Some("x.y.z".into()), ..conn.clone() };
        assert!(resolve(&both, &env).unwrap_err().contains("once"));
        std::fs::remove_file(&path).unwrap();
        let e = resolve(&conn, &env).unwrap_err();
        assert!(e.contains("cannot read the token file") && !e.contains("d.e.f"), "{e}");
    }

    #[test]
    fn malformed_tokens_are_refused_without_echo() {
        let conn = Conn { url: Some("https://gw".into()), token: Some("secret part\r\nX-Injected: 1".into()), token_file: None };
        let e = resolve(&conn, &|_| None).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
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
