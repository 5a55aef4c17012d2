//! The command line, declared with clap: nouns and verbs as kubectl and gh
//! shape them (`gatewayctl routes list -o yaml`), help on every subcommand,
//! and the conversion of options into what the admin API takes.
//!
//! Parsing never does I/O and never panics on user input; clap answers a
//! mistake with a message and exit code 2.

use crate::duration::{parse_duration, printable};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use gateway_core::registrar::RegistrarScope;
use gateway_core::token::{TokenKind, TokenRequest};
use serde_json::{json, Map, Value};

/// The lease `endpoints register` takes when `--lease` is not given.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;

const AFTER_HELP: &str = "\
Where the gateway is and which token to send, first found wins:
  server: --server, the --context's server, GATEWAY_URL, the current context's server
  token:  --token or --token-file, the --context's token, GATEWAY_TOKEN, the current
          context's token (only when the server is that context's own)
Contexts live in ~/.config/gatewayctl/config.yaml (GATEWAYCTL_CONFIG points elsewhere).
Tokens are sent only over https://, or plain http:// to localhost, 127.0.0.1 or [::1].

Durations: 90s, 15m, 1h, 7d, or plain seconds. Lists: comma-separated.
Exit status: 0 success, 1 failure (the gateway's message on stderr), 2 usage error,
3 `routes diff --exit-code` found changes.";

/// Operator CLI of the AI gateway: wraps the admin API (/_gateway/...), mints the first
/// admin token offline, generates signing keys, and keeps a model server's lease.
#[derive(Parser, Debug)]
#[command(name = "gatewayctl", version, after_help = AFTER_HELP, arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the gateway is and how to authenticate; accepted before or after the command.
#[derive(Args, Clone, Default, PartialEq, Eq)]
pub struct ConnArgs {
    /// The gateway's base URL, e.g. https://gw.example.com (env GATEWAY_URL)
    #[arg(long, global = true, value_name = "URL", alias = "gateway", help_heading = "Connection")]
    pub server: Option<String>,
    /// The token to send (env GATEWAY_TOKEN; prefer it or --token-file: arguments show in the process list)
    #[arg(long, global = true, value_name = "TOKEN", conflicts_with = "token_file", help_heading = "Connection")]
    pub token: Option<String>,
    /// Read the token from this file (re-read for every call, so a rotated token is picked up)
    #[arg(long, global = true, value_name = "PATH", help_heading = "Connection")]
    pub token_file: Option<String>,
    /// Use this context of the config file instead of the current one
    #[arg(long, global = true, value_name = "NAME", help_heading = "Connection")]
    pub context: Option<String>,
}

impl ConnArgs {
    /// True when any connection option was given on the command line.
    pub fn any(&self) -> bool {
        self.server.is_some() || self.token.is_some() || self.token_file.is_some() || self.context.is_some()
    }
}

impl std::fmt::Debug for ConnArgs {
    // Never print the token, not even in test failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("context", &self.context)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Static routes: list, get, put, delete, and declarative diff / apply of a directory
    #[command(subcommand, alias = "route")]
    Routes(RoutesCmd),
    /// Leased endpoints: what a model server runs beside `vllm serve`
    #[command(subcommand, alias = "endpoint")]
    Endpoints(EndpointsCmd),
    /// Gateway tokens: issue, list, revoke; mint offline
    #[command(subcommand, alias = "token")]
    Tokens(TokensCmd),
    /// Service accounts (named non-human principals) and their tokens
    #[command(subcommand, name = "service-accounts", aliases = ["service-account", "sa"])]
    ServiceAccounts(ServiceAccountsCmd),
    /// Revoke everything a subject holds
    #[command(subcommand, alias = "subject")]
    Subjects(SubjectsCmd),
    /// Token budgets: LLM tokens per minute, day and month of a token, a service account or a contract
    #[command(subcommand, alias = "budget")]
    Budgets(BudgetsCmd),
    /// Ephemeral routes (a developer's machine for a while)
    #[command(subcommand)]
    Ephemeral(EphemeralCmd),
    /// Who the token is; `me tokens` for self-service tokens
    Me(MeArgs),
    /// Signing keys: list the gateway's, generate a new one offline
    #[command(subcommand, alias = "key")]
    Keys(KeysCmd),
    /// The metrics snapshot (per route; --per-token for tokens), or Prometheus text
    Metrics(MetricsArgs),
    /// Health probes
    #[command(subcommand, alias = "probe")]
    Probes(ProbesCmd),
    /// The audit log of admin writes, newest first
    Audit(AuditArgs),
    /// Contexts: named gateways with their token files
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script: `source <(gatewayctl completion bash)`
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How a listing or a read is printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns for people
    #[default]
    Table,
    /// The API's answer exactly, pretty-printed
    Json,
    /// The API's answer as YAML
    Yaml,
}

#[derive(Args, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputArgs {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Paging of a listing; without --limit every page is fetched.
#[derive(Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct PageArgs {
    /// Fetch one page of at most N items (1 to 1000); its next_cursor is printed on stderr
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Start after this cursor (the next_cursor of a previous page)
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RoutesCmd {
    /// List routes
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one route, with its live leased endpoints
    Get {
        name: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create or replace a whole route, from a file or from options
    #[command(group(ArgGroup::new("what").required(true).multiple(true).args(["file", "endpoint", "groups", "public"])))]
    Put {
        name: String,
        /// The route object as JSON (`-` reads stdin)
        #[arg(long, value_name = "PATH", conflicts_with_all = ["endpoint", "groups", "public"])]
        file: Option<String>,
        /// An endpoint: id=url[,weight=N][,via=BINDING]; repeat for more
        #[arg(long, value_name = "SPEC", value_parser = endpoint_spec)]
        endpoint: Vec<EndpointSpec>,
        /// Groups allowed to call it (comma-separated)
        #[arg(long, value_name = "GROUPS")]
        groups: Option<String>,
        /// No token needed
        #[arg(long)]
        public: bool,
        /// A model name clients may ask for under /v1/ (model routing); repeat for more, at most 32
        #[arg(long = "model", value_name = "NAME", conflicts_with = "file")]
        models: Vec<String>,
        /// `always`: ask the model server for usage on every stream, so per-token usage and budgets are complete
        #[arg(long, value_enum, value_name = "MODE", conflicts_with = "file")]
        usage: Option<Usage>,
    },
    /// Delete a route
    #[command(alias = "rm")]
    Delete { name: String },
    /// Show what `apply -f DIR` would change, field by field
    Diff {
        #[command(flatten)]
        dir: RouteDir,
        /// Exit 3 when there are changes
        #[arg(long)]
        exit_code: bool,
    },
    /// Make the gateway's routes match the *.json files of DIR (PUT the new and changed ones)
    Apply {
        #[command(flatten)]
        dir: RouteDir,
    },
}

/// A route's `usage`: when streams report token usage.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Only when the client asks (stream_options.include_usage); the gateway's default
    Client,
    /// On every stream; the extra usage event is removed for clients that did not ask
    Always,
}

impl Usage {
    /// The route object's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Client => "client",
            Usage::Always => "always",
        }
    }
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RouteDir {
    /// Directory of route files: every *.json in it is one route object with a `name`
    #[arg(short = 'f', long = "filename", value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// Also delete routes the directory does not hold (never Terraform's)
    #[arg(long)]
    pub prune: bool,
}

#[derive(Subcommand, Debug)]
pub enum EndpointsCmd {
    /// Register an endpoint with a lease and keep renewing it until SIGINT or SIGTERM, then deregister
    Register {
        route: String,
        id: String,
        /// The endpoint's own URL (the model server)
        #[arg(long, value_name = "ENDPOINT_URL")]
        url: String,
        /// Relative share of sessions
        #[arg(long, value_name = "N")]
        weight: Option<u32>,
        /// Workers VPC service binding to reach it through
        #[arg(long, value_name = "BINDING")]
        via: Option<String>,
        /// Lease length; renewed every third of it
        #[arg(long, value_name = "DURATION", value_parser = lease, default_value = "60s")]
        lease: u64,
        /// Register (or renew) once and exit
        #[arg(long)]
        once: bool,
    },
    /// Remove a lease
    Deregister { route: String, id: String },
}

/// The kind of a token.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    User,
    Service,
    Partner,
    Registrar,
}

impl From<Kind> for TokenKind {
    fn from(k: Kind) -> TokenKind {
        match k {
            Kind::User => TokenKind::User,
            Kind::Service => TokenKind::Service,
            Kind::Partner => TokenKind::Partner,
            Kind::Registrar => TokenKind::Registrar,
        }
    }
}

/// Who a token is for and what it may do, as `tokens issue` and `tokens mint` take it.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TokenArgs {
    /// Principal (`sub`)
    #[arg(long, value_name = "S")]
    pub subject: String,
    /// Kind of token
    #[arg(long, value_enum, default_value_t = Kind::User)]
    pub kind: Kind,
    /// Groups (comma-separated; `''` for none); required but for --kind registrar
    #[arg(long, value_name = "GROUPS")]
    pub groups: Option<String>,
    /// Allow-list of routes (comma-separated)
    #[arg(long, value_name = "ROUTES")]
    pub routes: Option<String>,
    /// Lifetime: there are no non-expiring tokens
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub ttl: u64,
    /// What the token is for
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
    /// The token's own requests-per-minute limit, across routes
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,
    /// --kind registrar: hosts its endpoints may be on (addresses, CIDRs, names, gpu-*.vllm.internal)
    #[arg(long, value_name = "NETS", help_heading = "Registrar tokens")]
    pub registrar_hosts: Option<String>,
    /// --kind registrar: highest weight it may register (default 1)
    #[arg(long, value_name = "N", help_heading = "Registrar tokens")]
    pub max_weight: Option<u32>,
    /// --kind registrar: longest lease (default 5m)
    #[arg(long, value_name = "DURATION", value_parser = duration, help_heading = "Registrar tokens")]
    pub max_lease: Option<u64>,
    /// --kind registrar: live leases per route (default 1)
    #[arg(long, value_name = "N", help_heading = "Registrar tokens")]
    pub max_endpoints: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Issue a recorded token through the admin API; the reply shows it this once
    Issue {
        #[command(flatten)]
        spec: TokenArgs,
        /// Metadata kept with the record, KEY=VALUE (partner tokens need partner= and contract_id=)
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        meta: Vec<(String, String)>,
        /// Print only the token on stdout (id and expiry on stderr)
        #[arg(long)]
        token_only: bool,
    },
    /// List tokens (never their secrets)
    #[command(alias = "ls")]
    List {
        /// Filter by subject or description
        #[arg(long, value_name = "TEXT")]
        q: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke a token by id (offline-minted ones too)
    Revoke { id: String },
    /// Offline: sign a token with the signing key from the environment (bootstrap only)
    ///
    /// Reads GATEWAY_SIGNING_KEYS, GATEWAY_SIGNING_KID, GATEWAY_ALGORITHMS, GATEWAY_ISSUER,
    /// GATEWAY_AUDIENCE and GATEWAY_MAX_TOKEN_TTL_SECONDS as the gateway does. Prints only the
    /// token on stdout; id and expiry go to stderr. An offline token has no record in the
    /// gateway (it is not listed, though `tokens revoke ID` revokes it): keep it short-lived
    /// and use it to issue recorded tokens with `tokens issue`.
    Mint {
        #[command(flatten)]
        spec: TokenArgs,
    },
}

/// Options of a token issued for an existing principal (a service account, or yourself).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ScopedTokenArgs {
    /// Lifetime
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub ttl: u64,
    /// Allow-list of routes (comma-separated)
    #[arg(long, value_name = "ROUTES")]
    pub routes: Option<String>,
    /// What the token is for
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
    /// Print only the token on stdout (id and expiry on stderr)
    #[arg(long)]
    pub token_only: bool,
}

#[derive(Subcommand, Debug)]
pub enum ServiceAccountsCmd {
    /// List service accounts
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create a service account
    Create {
        name: String,
        /// The person or team answerable for it
        #[arg(long, value_name = "WHO")]
        owner: String,
        /// Groups its tokens carry (comma-separated)
        #[arg(long, value_name = "GROUPS", default_value = "")]
        groups: String,
        /// What it is for
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// Show a service account and its tokens
    Get {
        name: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke every token of the account, then delete it
    #[command(alias = "rm")]
    Delete { name: String },
    /// Issue a `kind: service` token with the account's groups
    IssueToken {
        name: String,
        #[command(flatten)]
        token: ScopedTokenArgs,
        /// Requests-per-minute limit of the token
        #[arg(long, value_name = "N")]
        rpm: Option<u32>,
    },
}

/// What a token budget is for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetKind {
    /// One token, by id
    #[value(alias = "token")]
    Tokens,
    /// Every service token of one subject (a service account's name)
    #[value(alias = "service-account")]
    ServiceAccounts,
    /// Every partner token issued under one contract id
    #[value(alias = "contract")]
    Contracts,
}

impl From<BudgetKind> for gateway_core::budget::BudgetKind {
    fn from(k: BudgetKind) -> gateway_core::budget::BudgetKind {
        match k {
            BudgetKind::Tokens => gateway_core::budget::BudgetKind::Tokens,
            BudgetKind::ServiceAccounts => gateway_core::budget::BudgetKind::ServiceAccounts,
            BudgetKind::Contracts => gateway_core::budget::BudgetKind::Contracts,
        }
    }
}

impl BudgetKind {
    /// The admin API's path segment: tokens, service-accounts or contracts.
    pub fn segment(self) -> &'static str {
        gateway_core::budget::BudgetKind::from(self).segment()
    }
}

/// The limits of `budgets set`, in LLM tokens (prompt plus completion); at least one.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[group(id = "limits", required = true, multiple = true)]
pub struct BudgetLimits {
    /// Tokens per minute (the UTC minute)
    #[arg(long, value_name = "N", value_parser = budget_limit)]
    pub per_minute: Option<u64>,
    /// Tokens per UTC day
    #[arg(long, value_name = "N", value_parser = budget_limit)]
    pub per_day: Option<u64>,
    /// Tokens per UTC calendar month
    #[arg(long, value_name = "N", value_parser = budget_limit)]
    pub per_month: Option<u64>,
}

impl BudgetLimits {
    /// The body of `PUT /_gateway/budgets/{kind}/{id}`: the limits given, no others.
    pub fn to_body(&self) -> Value {
        let mut o = Map::new();
        for (field, v) in [("tokens_per_minute", self.per_minute), ("tokens_per_day", self.per_day), ("tokens_per_month", self.per_month)] {
            if let Some(n) = v {
                o.insert(field.into(), json!(n));
            }
        }
        Value::Object(o)
    }
}

#[derive(Subcommand, Debug)]
pub enum BudgetsCmd {
    /// Every budget, with the tokens used in each window now
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Set the budget of a token, a service account or a partner contract
    ///
    /// Replaces the whole budget: a limit not given is removed. A request is refused with
    /// 429 (type tokens) once a window's use has reached its limit, until the window turns.
    Set {
        /// What the budget is for
        #[arg(value_enum)]
        kind: BudgetKind,
        /// The token's id, the service account's name or the contract id
        #[arg(value_parser = budget_id)]
        id: String,
        #[command(flatten)]
        limits: BudgetLimits,
    },
    /// Remove a budget
    #[command(alias = "rm")]
    Delete {
        /// What the budget is for
        #[arg(value_enum)]
        kind: BudgetKind,
        /// The token's id, the service account's name or the contract id
        #[arg(value_parser = budget_id)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SubjectsCmd {
    /// Refuse every token the subject holds now (sign-ins, self-service and issued tokens)
    Revoke { subject: String },
}

#[derive(Subcommand, Debug)]
pub enum EphemeralCmd {
    /// Create an ephemeral route to one URL
    Create {
        /// The endpoint's own URL
        #[arg(long, value_name = "ENDPOINT_URL")]
        url: String,
        /// How long it lives
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        ttl: u64,
        /// Groups allowed to call it (comma-separated)
        #[arg(long, value_name = "GROUPS", default_value = "")]
        groups: String,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MeArgs {
    #[command(subcommand)]
    pub cmd: Option<MeCmd>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum MeCmd {
    /// Your self-service tokens (IdP sign-in): list, or issue / get / revoke
    Tokens(MeTokensArgs),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MeTokensArgs {
    #[command(subcommand)]
    pub cmd: Option<MeTokensCmd>,
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum MeTokensCmd {
    /// Issue a token for yourself (at most your own groups, never admin)
    Issue {
        #[command(flatten)]
        token: ScopedTokenArgs,
        /// A subset of your groups (comma-separated; default all)
        #[arg(long, value_name = "GROUPS")]
        groups: Option<String>,
    },
    /// Show one of your tokens
    Get {
        id: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke one of your tokens
    Revoke { id: String },
}

/// Signing-key algorithms `keys generate` makes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Alg {
    /// HMAC-SHA256, 32 random bytes
    #[default]
    #[value(name = "HS256")]
    Hs256,
    /// Ed25519
    #[value(name = "EdDSA")]
    EdDsa,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// The gateway's signing keys, which one signs, and the tokens each still has to verify
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Offline: print a fresh GATEWAY_SIGNING_KEYS value with one new key
    Generate {
        /// Key id (default k-YYYY-MM)
        #[arg(long, value_name = "KID")]
        kid: Option<String>,
        /// Algorithm
        #[arg(long, value_enum, ignore_case = true, default_value_t = Alg::Hs256)]
        alg: Alg,
    },
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// The Prometheus text exposition instead of the JSON snapshot
    #[arg(long, conflicts_with_all = ["output", "per_token"])]
    pub prometheus: bool,
    /// Per-token usage (asks the gateway with ?per_token=1; the table shows tokens)
    #[arg(long)]
    pub per_token: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum ProbesCmd {
    /// Run one round of health probes now and show what it found
    Run {
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// How many entries (1 to 1000; the gateway's default is 100)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Entries older than this sequence number (the next_before of a previous page)
    #[arg(long, value_name = "SEQ")]
    pub before: Option<u64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Create or update a context from --server and --token-file (or --token, stored as given)
    SetContext { name: String },
    /// Make a context the current one
    UseContext { name: String },
    /// List contexts
    GetContexts {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print the current context's name
    CurrentContext,
    /// Remove a context
    DeleteContext { name: String },
}

/// The lifetime and shape of a token to mint or issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Principal (`sub`).
    pub subject: String,
    /// user, service, partner or registrar.
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

    /// The body of `POST /_gateway/tokens`.
    pub fn to_body(&self, metadata: &[(String, String)]) -> Value {
        let mut o = Map::new();
        o.insert("subject".into(), json!(self.subject));
        o.insert("kind".into(), json!(self.kind));
        o.insert("groups".into(), json!(self.groups));
        o.insert("ttl_seconds".into(), json!(self.ttl_seconds));
        o.insert("description".into(), json!(self.description));
        if let Some(r) = &self.routes {
            o.insert("routes".into(), json!(r));
        }
        if let Some(n) = self.rate_limit_rpm {
            o.insert("rate_limit_rpm".into(), json!(n));
        }
        if let Some(r) = &self.registrar {
            o.insert("registrar".into(), json!(r));
        }
        if !metadata.is_empty() {
            o.insert("metadata".into(), Value::Object(metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect()));
        }
        Value::Object(o)
    }
}

impl TokenArgs {
    /// Checks what clap cannot (options that belong together) and builds the spec.
    pub fn spec(&self) -> Result<TokenSpec, String> {
        let kind = TokenKind::from(self.kind);
        let groups = match &self.groups {
            Some(g) => list(g),
            // A registrar token carries no groups.
            None if kind == TokenKind::Registrar => Vec::new(),
            None => return Err("--groups is required (`--groups ''` for none)".into()),
        };
        Ok(TokenSpec {
            subject: self.subject.clone(),
            kind,
            groups,
            routes: self.routes.as_deref().map(list),
            ttl_seconds: self.ttl,
            description: self.description.clone(),
            rate_limit_rpm: self.rpm,
            registrar: self.registrar_scope(kind)?,
        })
    }

    /// The `registrar` object of a registrar token; what is not given takes the gateway's defaults.
    fn registrar_scope(&self, kind: TokenKind) -> Result<Option<RegistrarScope>, String> {
        let given = [
            ("--registrar-hosts", self.registrar_hosts.is_some()),
            ("--max-weight", self.max_weight.is_some()),
            ("--max-lease", self.max_lease.is_some()),
            ("--max-endpoints", self.max_endpoints.is_some()),
        ];
        if kind != TokenKind::Registrar {
            return match given.iter().find(|(_, g)| *g) {
                Some((n, _)) => Err(format!("{n} is for --kind registrar")),
                None => Ok(None),
            };
        }
        let hosts = self
            .registrar_hosts
            .as_deref()
            .ok_or("--registrar-hosts is required for --kind registrar (e.g. 10.0.1.0/24,gpu-*.vllm.internal)")?;
        let mut scope = Map::new();
        scope.insert("hosts".into(), json!(list(hosts)));
        if let Some(n) = self.max_weight {
            scope.insert("max_weight".into(), json!(n));
        }
        if let Some(d) = self.max_lease {
            scope.insert("max_lease_seconds".into(), json!(d));
        }
        if let Some(n) = self.max_endpoints {
            scope.insert("max_endpoints".into(), json!(n));
        }
        serde_json::from_value(Value::Object(scope)).map(Some).map_err(|e| format!("registrar options: {e}"))
    }
}

impl ScopedTokenArgs {
    /// The body of `POST /me/tokens` or `POST /service-accounts/{name}/tokens`.
    pub fn to_body(&self) -> Value {
        let mut o = Map::new();
        o.insert("ttl_seconds".into(), json!(self.ttl));
        o.insert("description".into(), json!(self.description));
        if let Some(r) = &self.routes {
            o.insert("routes".into(), json!(list(r)));
        }
        Value::Object(o)
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
    /// The endpoint as the route object holds it.
    pub fn to_json(&self) -> Value {
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

/// A comma-separated list; blanks around items and empty items are dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn duration(s: &str) -> Result<u64, String> {
    parse_duration(s)
}

fn lease(s: &str) -> Result<u64, String> {
    let secs = parse_duration(s)?;
    let (min, max) = (gateway_core::admin::MIN_LEASE_SECONDS, gateway_core::admin::MAX_LEASE_SECONDS);
    if (min..=max).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("a lease must be between {min} s and {max} s"))
    }
}

fn budget_limit(s: &str) -> Result<u64, String> {
    let max = gateway_core::budget::MAX_TOKENS;
    match s.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("a limit is a whole number of tokens from 1 to {max}")),
    }
}

fn budget_id(s: &str) -> Result<String, String> {
    if gateway_core::budget::is_valid_id(s) {
        Ok(s.to_string())
    } else {
        Err("an id is 1 to 128 visible ASCII characters, without spaces or `/`".into())
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{}` must be KEY=VALUE", printable(s)))
}

fn endpoint_spec(s: &str) -> Result<EndpointSpec, String> {
    let bad = |why: &str| format!("`{}`: {why} (expected id=url[,weight=N][,via=BINDING])", printable(s));
    let (id, rest) = s.split_once('=').ok_or_else(|| bad("missing `=`"))?;
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default();
    if id.is_empty() || url.is_empty() {
        return Err(bad("id and url must not be empty"));
    }
    let mut spec = EndpointSpec { id: id.to_string(), url: url.to_string(), weight: None, via: None };
    for p in parts {
        match p.split_once('=') {
            Some(("weight", w)) if spec.weight.is_none() => {
                spec.weight = Some(w.parse().map_err(|_| bad(&format!("weight must be a whole number, not `{}`", printable(w))))?)
            }
            Some(("via", v)) if spec.via.is_none() && !v.is_empty() => spec.via = Some(v.to_string()),
            _ => return Err(bad(&format!("unexpected `{}`", printable(p)))),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("gatewayctl").chain(line.split_whitespace())).map_err(|e| e.to_string())
    }

    fn ok(line: &str) -> Cli {
        parse(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_noun_parses() {
        for line in [
            "routes list",
            "routes ls -o yaml --limit 10 --cursor abc",
            "route get llama -o json",
            "routes put llama --file r.json",
            "routes put llama --endpoint a=http://h:1 --groups ml",
            "routes delete llama",
            "routes diff -f dir",
            "routes diff --filename dir --prune --exit-code",
            "routes apply -f dir --prune",
            "endpoints register llama gpu-1 --url http://h:1 --lease 5m --weight 2 --via VPC --once",
            "endpoints deregister llama gpu-1",
            "tokens issue --subject s --groups g --ttl 1h --meta a=b --token-only",
            "tokens list --q bob -o table",
            "tokens revoke tok_1",
            "token mint --subject ops --groups admin --ttl 1h",
            "service-accounts list -o json",
            "sa create evals --owner me@corp --groups ml",
            "service-accounts get evals -o yaml",
            "service-accounts delete evals",
            "service-accounts issue-token evals --ttl 30d --token-only",
            "subjects revoke alice@corp.example",
            "routes put llama --endpoint a=http://h:1 --groups ml --model llama --model meta-llama/Llama-3.1-8B-Instruct --usage always",
            "budgets list",
            "budgets ls -o yaml",
            "budgets set tokens tok_1 --per-minute 20000",
            "budget set service-accounts evals --per-day 1000000 --per-month 20000000",
            "budgets set contract C-2025-031 --per-month 5000000",
            "budgets delete contracts C-2025-031",
            "budgets rm token tok_1",
            "ephemeral create --url http://h:1 --ttl 2h --groups dev",
            "me",
            "me -o json",
            "me tokens",
            "me tokens -o yaml --limit 5",
            "me tokens issue --ttl 7d --groups ml --description nb",
            "me tokens get tok_1 -o json",
            "me tokens revoke tok_1",
            "keys list -o json",
            "keys generate --alg EdDSA --kid k-1",
            "key generate --kid k-1",
            "metrics",
            "metrics --prometheus",
            "metrics --per-token -o yaml",
            "probes run -o json",
            "audit --limit 20 --before 99 -o json",
            "config set-context prod --server https://gw --token-file /t",
            "config use-context prod",
            "config get-contexts -o yaml",
            "config current-context",
            "config delete-context prod",
            "completion bash",
            "completion zsh",
            "completion fish",
        ] {
            ok(line);
        }
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for (line, says) in [
            ("routes", "Usage"),
            ("routes frobnicate", "unrecognized subcommand"),
            ("routes list --verbose", "unexpected argument"),
            ("routes put llama", "required"),
            ("routes put llama --file r.json --public", "cannot be used with"),
            ("routes put llama --endpoint a", "missing `=`"),
            ("routes put llama --endpoint a=http://h,weight=x", "weight"),
            ("routes put llama --endpoint a=http://h,colour=red", "colour"),
            ("routes diff", "--filename"),
            ("endpoints register llama gpu-1", "--url"),
            ("endpoints register llama gpu-1 --url http://h --lease 4s", "between 5"),
            ("endpoints register llama gpu-1 --url http://h --lease 2d", "between"),
            ("endpoints register llama --url http://h", "<ID>"),
            ("tokens issue --subject s --groups g", "--ttl"),
            ("tokens issue --subject s --groups g --ttl forever", "duration"),
            ("tokens issue --subject s --groups g --ttl 1h --kind root", "root"),
            ("tokens issue --subject s --subject x --groups g --ttl 1h", "cannot be used multiple times"),
            ("tokens issue --subject s --groups g --ttl 1h --meta nokey", "KEY=VALUE"),
            ("routes put llama --file r.json --model llama", "cannot be used with"),
            ("routes put llama --endpoint a=http://h:1 --usage sometimes", "sometimes"),
            ("budgets set tokens tok_1", "--per-minute"),
            ("budgets set teams t --per-day 1", "teams"),
            ("budgets set tokens tok_1 --per-day 0", "from 1 to 1000000000000"),
            ("budgets set tokens tok_1 --per-day 1000000000001", "from 1 to"),
            ("budgets set tokens tok_1 --per-day 1e6", "whole number"),
            ("budgets set contracts a/b --per-day 1", "without spaces or `/`"),
            ("budgets delete tokens", "<ID>"),
            ("audit --limit many", "many"),
            ("audit --limit 0", "0"),
            ("audit extra", "unexpected"),
            ("metrics --prometheus -o json", "cannot be used with"),
            ("keys generate --alg RS256", "RS256"),
            ("completion tcsh", "tcsh"),
            ("--server a --server b routes list", "cannot be used multiple times"),
            ("--token a --token-file b routes list", "cannot be used with"),
            // The gateway's URL is --server; --url is an endpoint's own.
            ("--url https://gw routes list", "--url"),
        ] {
            let e = parse(line).err().unwrap_or_else(|| panic!("{line} parsed"));
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn connection_options_go_before_or_after_the_command() {
        let cli = ok("--server https://gw --token a.b.c routes list");
        assert_eq!((cli.conn.server.as_deref(), cli.conn.token.as_deref()), (Some("https://gw"), Some("a.b.c")));
        let cli = ok("routes get llama --server https://gw --context prod");
        assert_eq!((cli.conn.server.as_deref(), cli.conn.context.as_deref()), (Some("https://gw"), Some("prod")));
        // `--gateway` is the old spelling, kept for scripts.
        let cli = ok("--gateway https://gw endpoints register llama gpu-1 --url http://10.0.1.7:8000 --token-file /t");
        assert_eq!((cli.conn.server.as_deref(), cli.conn.token_file.as_deref()), (Some("https://gw"), Some("/t")));
        let Command::Endpoints(EndpointsCmd::Register { url, lease, once, .. }) = cli.command else { panic!() };
        assert_eq!((url.as_str(), lease, once), ("http://10.0.1.7:8000", DEFAULT_LEASE_SECONDS, false));
        // The token never shows in debug output.
        assert!(!format!("{:?}", ok("--token a.b.c routes list")).contains("a.b.c"));
    }

    #[test]
    fn token_options_become_the_api_body() {
        let Command::Tokens(TokensCmd::Issue { spec, meta, token_only }) =
            ok("tokens issue --subject bob --kind service --groups ml-team --routes llama --ttl 30d --description nb --meta team=ml").command
        else {
            panic!()
        };
        assert!(!token_only);
        assert_eq!(
            spec.spec().unwrap().to_body(&meta),
            json!({"subject": "bob", "kind": "service", "groups": ["ml-team"], "routes": ["llama"], "ttl_seconds": 2_592_000, "description": "nb", "metadata": {"team": "ml"}})
        );
        let Command::Tokens(TokensCmd::Issue { spec, .. }) = ok("tokens issue --kind registrar --subject gpu-host-7 --routes llama,qwen --registrar-hosts 10.0.1.0/24,gpu-*.vllm.internal --max-weight 4 --max-lease 5m --ttl 30d").command
        else {
            panic!()
        };
        assert_eq!(
            spec.spec().unwrap().to_body(&[]),
            json!({
                "subject": "gpu-host-7", "kind": "registrar", "groups": [], "routes": ["llama", "qwen"], "ttl_seconds": 2_592_000, "description": "",
                "registrar": {"hosts": ["10.0.1.0/24", "gpu-*.vllm.internal"], "max_weight": 4, "max_lease_seconds": 300, "max_endpoints": 1},
            })
        );
        let spec_of = |line: &str| match ok(line).command {
            Command::Tokens(TokensCmd::Issue { spec, .. } | TokensCmd::Mint { spec }) => spec.spec(),
            other => panic!("{other:?}"),
        };
        assert!(spec_of("tokens issue --kind registrar --subject h --routes llama --ttl 1d").unwrap_err().contains("--registrar-hosts is required"));
        assert!(spec_of("tokens issue --subject h --groups g --registrar-hosts 10.0.0.7 --ttl 1d").unwrap_err().contains("--registrar-hosts is for --kind registrar"));
        assert!(spec_of("tokens issue --subject h --ttl 1d").unwrap_err().contains("--groups is required"));
        let s = spec_of("token mint --subject=acme --kind partner --routes llama,qwen --groups= --ttl=900 --description bootstrap").unwrap();
        assert_eq!((s.kind, s.routes, s.groups.len(), s.ttl_seconds), (TokenKind::Partner, Some(vec!["llama".into(), "qwen".into()]), 0, 900));
    }

    #[test]
    fn budget_options_become_the_api_body() {
        let Command::Budgets(BudgetsCmd::Set { kind, id, limits }) = ok("budgets set service-account evals --per-day 1000000 --per-minute 20000").command else { panic!() };
        assert_eq!((kind.segment(), id.as_str()), ("service-accounts", "evals"));
        assert_eq!(limits.to_body(), json!({"tokens_per_minute": 20_000, "tokens_per_day": 1_000_000}));
        let Command::Budgets(BudgetsCmd::Set { kind, limits, .. }) = ok("budgets set contracts C-1 --per-month 1000000000000").command else { panic!() };
        assert_eq!((kind.segment(), limits.to_body()), ("contracts", json!({"tokens_per_month": 1_000_000_000_000u64})));
        // The body is what core's PUT accepts.
        let budget: gateway_core::budget::TokenBudget = serde_json::from_value(limits.to_body()).unwrap();
        budget.validate().unwrap();
    }
}
