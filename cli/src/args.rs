//! Command-line parsing, by hand: the commands, their options, and the usage text.
//!
//! Parsing never does I/O and never panics on user input; every mistake is a
//! message for the operator, answered with the usage text and exit code 2.

use crate::duration::{parse_duration, printable};
use gateway_core::registrar::RegistrarScope;
use gateway_core::token::{TokenKind, TokenRequest};
use serde_json::{json, Map, Value};

/// The lease `endpoints register` takes when `--lease` is not given.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;

/// Printed on `--help` (stdout) and after a usage error (stderr).
pub const USAGE: &str = "\
gatewayctl: operator CLI of the AI gateway

USAGE
  gatewayctl [--url URL] [--token TOKEN] <command> [options]

OFFLINE (read the gateway's own settings from the environment: GATEWAY_SIGNING_KEYS,
GATEWAY_SIGNING_KID, GATEWAY_ALGORITHMS, GATEWAY_ISSUER, GATEWAY_AUDIENCE,
GATEWAY_MAX_TOKEN_TTL_SECONDS)
  token mint --subject S --groups a[,b] --ttl 1h [--kind user|service|partner] [--rpm N]
             [--routes r1,r2] [--description TEXT]
      Sign a token locally with the signing key, under the admin API's lifetime
      rules (60 s up to the configured maximum, 90 days by default). Prints only
      the token on stdout (TOKEN=$(gatewayctl token mint ...)); id and expiry go
      to stderr. For bootstrap only: an offline token has no record in the
      gateway's store, so GET /tokens does not list it; `tokens revoke ID` with
      the id printed on stderr still revokes it. Keep it short-lived (minutes to
      hours) and use it to issue recorded tokens with `tokens issue`.
  key generate [--kid K]
      Print a fresh GATEWAY_SIGNING_KEYS value: one HS256 key of 32 random bytes
      (default kid k-YYYY-MM). To rotate, put the new key first in the existing
      array and keep the old keys until the tokens they signed have expired.

ADMIN API (need the gateway URL and a token with group `admin`; `endpoints register` and
`endpoints deregister` also take a registrar token, see `tokens issue --kind registrar`)
  routes list
  routes get NAME
  routes put NAME --file route.json          (`--file -` reads stdin)
  routes put NAME [--endpoint id=url[,weight=N][,via=BINDING]]... [--groups a,b] [--public]
      Creates or replaces the whole route.
  routes delete NAME
  endpoints register ROUTE ID --url ENDPOINT_URL [--weight N] [--via BINDING] [--lease 60s] [--once]
      What a model server runs beside `vllm serve`: registers the endpoint with a
      lease (default 60 s), renews it every third of the lease (retrying failures
      with backoff, logged on stderr), and on SIGINT or SIGTERM deregisters it and
      exits 0. With --once, registers (or renews) once and exits.
  endpoints deregister ROUTE ID
  tokens issue --subject S --groups a,b --ttl 30d [--kind user|service|partner] [--rpm N]
               [--routes r1,r2] [--description TEXT] [--meta KEY=VALUE]... [--token-only]
      Prints the reply, which holds the token this once; with --token-only,
      prints only the token on stdout and its id and expiry on stderr.
  tokens issue --kind registrar --subject HOST --routes r1[,r2] --registrar-hosts NETS --ttl 30d
               [--max-weight N] [--max-lease 5m] [--max-endpoints N] [--token-only]
      A model server's own token: it may only register, renew and remove its own
      endpoints on the routes named, at URLs whose host is in NETS (addresses,
      CIDRs like 10.0.1.0/24, host names, or gpu-*.vllm.internal), with weight
      at most --max-weight (default 1), leases at most --max-lease (default 5m),
      and at most --max-endpoints live leases per route (default 1). No groups.
  tokens list [--q TEXT]
  tokens revoke ID
  ephemeral create --url ENDPOINT_URL --ttl 2h [--groups a,b]
  audit [--limit N] [--before SEQ]

CONNECTION
  --url URL        the gateway, e.g. https://gw.example.com (env GATEWAY_URL). After
                   `endpoints register` and `ephemeral create`, --url is the endpoint's
                   URL: put the gateway's --url before the command, or use --gateway URL.
  --gateway URL    the gateway, anywhere on the line.
  --token TOKEN    admin token (env GATEWAY_TOKEN; prefer the environment, since
                   arguments show in the process list and shell history).
  --token-file P   read the token from file P (re-read for every renewal, so a
                   rotated token is picked up).
  Tokens are sent only over https://, or plain http:// to localhost, 127.0.0.1 or [::1].

Durations: 90s, 15m, 1h, 7d, or plain seconds. Lists: comma-separated.
Exit status: 0 success, 1 failure (the gateway's error message on stderr), 2 usage error.
";

/// The lifetime and shape of a token to mint or issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Principal (`sub`).
    pub subject: String,
    /// user, service or partner.
    pub kind: TokenKind,
    /// Groups.
    pub groups: Vec<String>,
    /// Optional allow-list of routes.
    pub routes: Option<Vec<String>>,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
    /// What the token is for.
    pub description: String,
    /// Requests per minute, if the token carries its own limit.
    pub rate_limit_rpm: Option<u32>,
    /// `--kind registrar`: what the token may register.
    pub registrar: Option<RegistrarScope>,
}

impl TokenSpec {
    /// The core request the admin API would receive.
    pub fn to_request(&self) -> TokenRequest {
        TokenRequest {
            rate_limit_rpm: self.rate_limit_rpm,
            subject: self.subject.clone(),
            kind: self.kind,
            groups: self.groups.clone(),
            routes: self.routes.clone(),
            ttl_seconds: Some(self.ttl_seconds),
            description: self.description.clone(),
            metadata: Default::default(),
            registrar: self.registrar.clone(),
        }
    }
}

/// Where the gateway is and how to authenticate, as given on the command line.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Conn {
    /// Gateway base URL (else `GATEWAY_URL`).
    pub url: Option<String>,
    /// Admin token (else `token_file`, else `GATEWAY_TOKEN`).
    pub token: Option<String>,
    /// A file holding the token, read when a call is sent.
    pub token_file: Option<String>,
}

impl std::fmt::Debug for Conn {
    // Never print the token, not even in test failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// One endpoint of `routes put --endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Endpoint id.
    pub id: String,
    /// Upstream URL.
    pub url: String,
    /// Weight, if given.
    pub weight: Option<u32>,
    /// Workers VPC binding, if given.
    pub via: Option<String>,
}

impl EndpointSpec {
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        o.insert("url".into(), json!(self.url));
        if let Some(w) = self.weight {
            o.insert("weight".into(), json!(w));
        }
        if let Some(v) = &self.via {
            o.insert("via".into(), json!(v));
        }
        Value::Object(o)
    }
}

/// The body of `routes put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteBody {
    /// A route object in a file (`-` for stdin).
    File(String),
    /// A route built from options.
    Built { endpoints: Vec<EndpointSpec>, groups: Vec<String>, public: bool },
}

/// An admin API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    ListRoutes,
    GetRoute(String),
    PutRoute { name: String, body: RouteBody },
    DeleteRoute(String),
    RegisterEndpoint { route: String, endpoint: EndpointSpec, lease_seconds: u64 },
    DeregisterEndpoint { route: String, id: String },
    IssueToken { spec: TokenSpec, metadata: Vec<(String, String)>, token_only: bool },
    ListTokens { q: Option<String> },
    RevokeToken(String),
    CreateEphemeral { url: String, ttl_seconds: u64, groups: Vec<String> },
    Audit { limit: Option<u32>, before: Option<u64> },
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--help`.
    Help,
    /// `token mint`.
    Mint(TokenSpec),
    /// `key generate`.
    KeyGenerate { kid: Option<String> },
    /// An admin API call.
    Api { conn: Conn, call: ApiCall },
    /// `endpoints register` without `--once`: register, keep renewing, deregister on a signal.
    KeepRegistered { conn: Conn, route: String, endpoint: EndpointSpec, lease_seconds: u64 },
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

impl ApiCall {
    /// The HTTP request for this call. Reads the route file of `routes put --file`.
    pub fn plan(&self) -> Result<HttpCall, String> {
        let call = |method, path: String, body| Ok(HttpCall { method, path, body });
        match self {
            ApiCall::ListRoutes => call("GET", "/_gateway/routes".into(), None),
            ApiCall::GetRoute(n) => call("GET", format!("/_gateway/routes/{}", encode(n)), None),
            ApiCall::DeleteRoute(n) => call("DELETE", format!("/_gateway/routes/{}", encode(n)), None),
            ApiCall::PutRoute { name, body } => {
                let body = match body {
                    RouteBody::File(path) => read_route_file(path)?,
                    RouteBody::Built { endpoints, groups, public } => json!({
                        "endpoints": endpoints.iter().map(EndpointSpec::to_json).collect::<Vec<_>>(),
                        "auth": { "required": !public, "groups": groups },
                    }),
                };
                call("PUT", format!("/_gateway/routes/{}", encode(name)), Some(body))
            }
            ApiCall::RegisterEndpoint { route, endpoint, lease_seconds } => {
                let mut body = endpoint.to_json();
                if let Some(o) = body.as_object_mut() {
                    o.remove("id");
                    o.insert("lease_seconds".into(), json!(lease_seconds));
                }
                call("PUT", format!("/_gateway/routes/{}/endpoints/{}", encode(route), encode(&endpoint.id)), Some(body))
            }
            ApiCall::DeregisterEndpoint { route, id } => {
                call("DELETE", format!("/_gateway/routes/{}/endpoints/{}", encode(route), encode(id)), None)
            }
            ApiCall::IssueToken { spec, metadata, .. } => {
                let mut body = json!({
                    "subject": spec.subject,
                    "kind": spec.kind,
                    "groups": spec.groups,
                    "ttl_seconds": spec.ttl_seconds,
                    "description": spec.description,
                });
                if let Some(o) = body.as_object_mut() {
                    if let Some(r) = &spec.routes {
                        o.insert("routes".into(), json!(r));
                    }
                    if let Some(n) = spec.rate_limit_rpm {
                        o.insert("rate_limit_rpm".into(), json!(n));
                    }
                    if let Some(r) = &spec.registrar {
                        o.insert("registrar".into(), json!(r));
                    }
                    if !metadata.is_empty() {
                        let m: Map<String, Value> = metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        o.insert("metadata".into(), Value::Object(m));
                    }
                }
                call("POST", "/_gateway/tokens".into(), Some(body))
            }
            ApiCall::ListTokens { q: None } => call("GET", "/_gateway/tokens".into(), None),
            ApiCall::ListTokens { q: Some(q) } => call("GET", format!("/_gateway/tokens?q={}", encode(q)), None),
            ApiCall::RevokeToken(id) => call("DELETE", format!("/_gateway/tokens/{}", encode(id)), None),
            ApiCall::CreateEphemeral { url, ttl_seconds, groups } => {
                call("POST", "/_gateway/ephemeral".into(), Some(json!({ "url": url, "ttl_seconds": ttl_seconds, "groups": groups })))
            }
            ApiCall::Audit { limit, before } => {
                let mut q = Vec::new();
                if let Some(l) = limit {
                    q.push(format!("limit={l}"));
                }
                if let Some(b) = before {
                    q.push(format!("before={b}"));
                }
                let path = if q.is_empty() { "/_gateway/audit".to_string() } else { format!("/_gateway/audit?{}", q.join("&")) };
                call("GET", path, None)
            }
        }
    }
}

fn read_route_file(path: &str) -> Result<Value, String> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| format!("cannot read the route from stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", printable(path)))?
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON (line {}, column {})", printable(path), e.line(), e.column()))?;
    if !v.is_object() {
        return Err(format!("`{}` must hold a JSON object (a route)", printable(path)));
    }
    Ok(v)
}

/// Options and positional arguments of one command.
struct Opts {
    positionals: Vec<String>,
    values: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
}

/// Splits `args` into positionals, `--name value` / `--name=value` options and flags.
fn scan(args: &[String], valued: &[&'static str], flags: &[&'static str]) -> Result<Opts, String> {
    let mut o = Opts { positionals: Vec::new(), values: Vec::new(), flags: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            o.positionals.extend(it.by_ref().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            o.positionals.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if let Some(&n) = valued.iter().find(|&&n| n == name) {
            let v = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or_else(|| format!("{n} needs a value"))?,
            };
            o.values.push((n, v));
        } else if let Some(&n) = flags.iter().find(|&&n| n == name) {
            if inline.is_some() {
                return Err(format!("{n} takes no value"));
            }
            o.flags.push(n);
        } else {
            return Err(format!("unknown option `{}`", printable(name)));
        }
    }
    Ok(o)
}

impl Opts {
    /// The value of an option given at most once.
    fn one(&self, name: &str) -> Result<Option<String>, String> {
        let mut found = self.values.iter().filter(|(n, _)| *n == name);
        let first = found.next().map(|(_, v)| v.clone());
        if found.next().is_some() {
            return Err(format!("{name} is given more than once"));
        }
        Ok(first)
    }
    fn required(&self, name: &str) -> Result<String, String> {
        self.one(name)?.ok_or_else(|| format!("{name} is required"))
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.values.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.clone()).collect()
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }
    /// Exactly the named positionals.
    fn positionals(&self, names: &[&str]) -> Result<Vec<String>, String> {
        if self.positionals.len() < names.len() {
            return Err(format!("missing {}", names[self.positionals.len()..].join(" ")));
        }
        if let Some(extra) = self.positionals.get(names.len()) {
            return Err(format!("unexpected argument `{}`", printable(extra)));
        }
        for (v, n) in self.positionals.iter().zip(names) {
            if v.is_empty() {
                return Err(format!("{n} must not be empty"));
            }
        }
        Ok(self.positionals.clone())
    }
}

/// A comma-separated list; blanks around items and empty items are dropped.
fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn kind(s: &str) -> Result<TokenKind, String> {
    match s {
        "user" => Ok(TokenKind::User),
        "service" => Ok(TokenKind::Service),
        "partner" => Ok(TokenKind::Partner),
        "registrar" => Ok(TokenKind::Registrar),
        other => Err(format!("--kind must be user, service, partner or registrar, not `{}`", printable(other))),
    }
}

fn number<T: std::str::FromStr>(name: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{name} must be a whole number, not `{}`", printable(s)))
}

/// Options of a registrar token's scope.
const REGISTRAR_OPTS: [&str; 4] = ["--registrar-hosts", "--max-weight", "--max-lease", "--max-endpoints"];

const TOKEN_OPTS: [&str; 11] = [
    "--subject",
    "--kind",
    "--groups",
    "--routes",
    "--ttl",
    "--description",
    "--rpm",
    REGISTRAR_OPTS[0],
    REGISTRAR_OPTS[1],
    REGISTRAR_OPTS[2],
    REGISTRAR_OPTS[3],
];

/// The `registrar` object of a registrar token; what is not given takes the gateway's defaults.
fn registrar_scope(o: &Opts, kind: TokenKind) -> Result<Option<RegistrarScope>, String> {
    if kind != TokenKind::Registrar {
        if let Some(n) = REGISTRAR_OPTS.iter().find(|n| o.values.iter().any(|(v, _)| v == *n)) {
            return Err(format!("{n} is for --kind registrar"));
        }
        return Ok(None);
    }
    let hosts = o
        .required("--registrar-hosts")
        .map_err(|_| "--registrar-hosts is required for --kind registrar (e.g. 10.0.1.0/24,gpu-*.vllm.internal)".to_string())?;
    let mut scope = Map::new();
    scope.insert("hosts".into(), json!(list(&hosts)));
    if let Some(n) = o.one("--max-weight")? {
        scope.insert("max_weight".into(), json!(number::<u32>("--max-weight", &n)?));
    }
    if let Some(d) = o.one("--max-lease")? {
        scope.insert("max_lease_seconds".into(), json!(parse_duration(&d)?));
    }
    if let Some(n) = o.one("--max-endpoints")? {
        scope.insert("max_endpoints".into(), json!(number::<u32>("--max-endpoints", &n)?));
    }
    serde_json::from_value(Value::Object(scope)).map(Some).map_err(|e| format!("registrar options: {e}"))
}

fn token_spec(o: &Opts) -> Result<TokenSpec, String> {
    let kind = o.one("--kind")?.map(|k| kind(&k)).transpose()?.unwrap_or(TokenKind::User);
    let groups = match o.one("--groups")? {
        Some(g) => list(&g),
        // A registrar token carries no groups.
        None if kind == TokenKind::Registrar => Vec::new(),
        None => return Err("--groups is required".into()),
    };
    Ok(TokenSpec {
        subject: o.required("--subject")?,
        kind,
        groups,
        registrar: registrar_scope(o, kind)?,
        routes: o.one("--routes")?.map(|r| list(&r)),
        ttl_seconds: parse_duration(&o.required("--ttl").map_err(|_| "--ttl is required: there are no non-expiring tokens".to_string())?)?,
        description: o.one("--description")?.unwrap_or_default(),
        rate_limit_rpm: o.one("--rpm")?.map(|n| number("--rpm", &n)).transpose()?,
    })
}

fn endpoint_spec(s: &str) -> Result<EndpointSpec, String> {
    let bad = |why: &str| format!("--endpoint `{}`: {why} (expected id=url[,weight=N][,via=BINDING])", printable(s));
    let (id, rest) = s.split_once('=').ok_or_else(|| bad("missing `=`"))?;
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default();
    if id.is_empty() || url.is_empty() {
        return Err(bad("id and url must not be empty"));
    }
    let mut spec = EndpointSpec { id: id.to_string(), url: url.to_string(), weight: None, via: None };
    for p in parts {
        match p.split_once('=') {
            Some(("weight", w)) if spec.weight.is_none() => spec.weight = Some(number("weight", w).map_err(|e| bad(&e))?),
            Some(("via", v)) if spec.via.is_none() && !v.is_empty() => spec.via = Some(v.to_string()),
            _ => return Err(bad(&format!("unexpected `{}`", printable(p)))),
        }
    }
    Ok(spec)
}

fn is_help(a: &str) -> bool {
    matches!(a, "-h" | "--help" | "help")
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    // Help wins wherever it appears (before a `--`).
    if args.iter().take_while(|a| *a != "--").any(|a| a == "-h" || a == "--help") || args.first().is_some_and(|a| is_help(a)) {
        return Ok(Command::Help);
    }
    // Connection options before the command.
    let mut conn = Conn::default();
    let mut rest = args;
    while let Some(first) = rest.first().filter(|a| a.starts_with("--")) {
        let (name, inline) = match first.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (first.as_str(), None),
        };
        let slot = match name {
            "--url" | "--gateway" => &mut conn.url,
            "--token" => &mut conn.token,
            "--token-file" => &mut conn.token_file,
            other => return Err(format!("unknown option `{}` before the command", printable(other))),
        };
        let (value, used) = match inline {
            Some(v) => (v, 1),
            None => (rest.get(1).cloned().ok_or_else(|| format!("{name} needs a value"))?, 2),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} is given more than once"));
        }
        rest = &rest[used..];
    }
    let (group, sub, tail): (&str, &str, &[String]) = match rest {
        [] => return Err("no command given".into()),
        // `audit` has no subcommand.
        [g, tail @ ..] if g == "audit" => (g, "", tail),
        [g] => return Err(format!("`{}` needs a subcommand", printable(g))),
        [g, s, tail @ ..] => (g, s, tail),
    };
    let offline = |cmd: Command| {
        if conn.url.is_some() || conn.token.is_some() || conn.token_file.is_some() {
            Err("--url, --gateway, --token and --token-file are for admin API commands; this command works offline".to_string())
        } else {
            Ok(cmd)
        }
    };
    // Options every admin API command accepts; `--url` is the gateway's unless the command has its own.
    let api = |own: &[&'static str], flags: &[&'static str], own_url: bool| -> Result<(Opts, Conn), String> {
        let mut valued: Vec<&'static str> = vec!["--token", "--token-file", "--gateway"];
        if !own_url {
            valued.push("--url");
        }
        valued.extend_from_slice(own);
        let o = scan(tail, &valued, flags)?;
        let mut c = conn.clone();
        let local_url = match (o.one("--gateway")?, if own_url { None } else { o.one("--url")? }) {
            (Some(_), Some(_)) => return Err("give the gateway URL once, with --url or --gateway".into()),
            (a, b) => a.or(b),
        };
        for (slot, value, name) in
            [(&mut c.url, local_url, "the gateway URL"), (&mut c.token, o.one("--token")?, "--token"), (&mut c.token_file, o.one("--token-file")?, "--token-file")]
        {
            if let Some(v) = value {
                if slot.replace(v).is_some() {
                    return Err(format!("{name} is given more than once"));
                }
            }
        }
        Ok((o, c))
    };
    let cmd = match (group, sub) {
        ("token" | "tokens", "mint") => {
            let o = scan(tail, &TOKEN_OPTS, &[])?;
            o.positionals(&[])?;
            offline(Command::Mint(token_spec(&o)?))?
        }
        ("key" | "keys", "generate") => {
            let o = scan(tail, &["--kid"], &[])?;
            o.positionals(&[])?;
            offline(Command::KeyGenerate { kid: o.one("--kid")? })?
        }
        ("route" | "routes", "list") => {
            let (o, conn) = api(&[], &[], false)?;
            o.positionals(&[])?;
            Command::Api { conn, call: ApiCall::ListRoutes }
        }
        ("route" | "routes", "get" | "delete") => {
            let (o, conn) = api(&[], &[], false)?;
            let name = o.positionals(&["NAME"])?.remove(0);
            let call = if sub == "get" { ApiCall::GetRoute(name) } else { ApiCall::DeleteRoute(name) };
            Command::Api { conn, call }
        }
        ("route" | "routes", "put") => {
            let (o, conn) = api(&["--file", "--endpoint", "--groups"], &["--public"], false)?;
            let name = o.positionals(&["NAME"])?.remove(0);
            let endpoints = o.all("--endpoint");
            let groups = o.one("--groups")?;
            let body = match o.one("--file")? {
                Some(_) if !endpoints.is_empty() || groups.is_some() || o.flag("--public") => {
                    return Err("--file cannot be combined with --endpoint, --groups or --public".into())
                }
                Some(f) if f.is_empty() => return Err("--file needs a path (or - for stdin)".into()),
                Some(f) => RouteBody::File(f),
                None if endpoints.is_empty() && groups.is_none() && !o.flag("--public") => {
                    return Err("describe the route with --file, or with --endpoint, --groups and --public".into())
                }
                None => RouteBody::Built {
                    endpoints: endpoints.iter().map(|e| endpoint_spec(e)).collect::<Result<_, _>>()?,
                    groups: groups.as_deref().map(list).unwrap_or_default(),
                    public: o.flag("--public"),
                },
            };
            Command::Api { conn, call: ApiCall::PutRoute { name, body } }
        }
        ("endpoint" | "endpoints", "register") => {
            let (o, conn) = api(&["--url", "--weight", "--via", "--lease"], &["--once"], true)?;
            let mut p = o.positionals(&["ROUTE", "ID"])?;
            let id = p.remove(1);
            let route = p.remove(0);
            let weight = o.one("--weight")?.map(|w| number("--weight", &w)).transpose()?;
            let lease_seconds = match o.one("--lease")? {
                Some(l) => parse_duration(&l)?,
                None => DEFAULT_LEASE_SECONDS,
            };
            let (min, max) = (gateway_core::admin::MIN_LEASE_SECONDS, gateway_core::admin::MAX_LEASE_SECONDS);
            if !(min..=max).contains(&lease_seconds) {
                return Err(format!("--lease must be between {min} s and {max} s"));
            }
            let endpoint = EndpointSpec { id, url: o.required("--url")?, weight, via: o.one("--via")? };
            if o.flag("--once") {
                Command::Api { conn, call: ApiCall::RegisterEndpoint { route, endpoint, lease_seconds } }
            } else {
                Command::KeepRegistered { conn, route, endpoint, lease_seconds }
            }
        }
        ("endpoint" | "endpoints", "deregister") => {
            let (o, conn) = api(&[], &[], false)?;
            let mut p = o.positionals(&["ROUTE", "ID"])?;
            let id = p.remove(1);
            Command::Api { conn, call: ApiCall::DeregisterEndpoint { route: p.remove(0), id } }
        }
        ("token" | "tokens", "issue") => {
            let mut own = TOKEN_OPTS.to_vec();
            own.push("--meta");
            let (o, conn) = api(&own, &["--token-only"], false)?;
            o.positionals(&[])?;
            let metadata = o
                .all("--meta")
                .iter()
                .map(|m| m.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("--meta `{}` must be KEY=VALUE", printable(m))))
                .collect::<Result<_, _>>()?;
            Command::Api { conn, call: ApiCall::IssueToken { spec: token_spec(&o)?, metadata, token_only: o.flag("--token-only") } }
        }
        ("token" | "tokens", "list") => {
            let (o, conn) = api(&["--q"], &[], false)?;
            o.positionals(&[])?;
            Command::Api { conn, call: ApiCall::ListTokens { q: o.one("--q")?.filter(|q| !q.is_empty()) } }
        }
        ("token" | "tokens", "revoke") => {
            let (o, conn) = api(&[], &[], false)?;
            let id = o.positionals(&["ID"])?.remove(0);
            Command::Api { conn, call: ApiCall::RevokeToken(id) }
        }
        ("ephemeral", "create") => {
            let (o, conn) = api(&["--url", "--ttl", "--groups"], &[], true)?;
            o.positionals(&[])?;
            let call = ApiCall::CreateEphemeral {
                url: o.required("--url")?,
                ttl_seconds: parse_duration(&o.required("--ttl")?)?,
                groups: o.one("--groups")?.as_deref().map(list).unwrap_or_default(),
            };
            Command::Api { conn, call }
        }
        ("audit", "") => {
            let (o, conn) = api(&["--limit", "--before"], &[], false)?;
            o.positionals(&[])?;
            let limit = o.one("--limit")?.map(|l| number("--limit", &l)).transpose()?;
            let before = o.one("--before")?.map(|b| number("--before", &b)).transpose()?;
            Command::Api { conn, call: ApiCall::Audit { limit, before } }
        }
        (g, s) => return Err(format!("unknown command `{} {}`", printable(g), printable(s))),
    };
    Ok(cmd)
}
