//! What the gateway keeps, and the seam to where it is kept: `RouteSource`
//! for the data plane's reads, `AdminStore` for the admin API, `MetricsSink`
//! for counters; `Store` is those with a [`Fetcher`] (the scheduled rounds'
//! probes). Each platform implements them (Workers KV and Durable Objects;
//! DynamoDB); `MemoryStore` serves tests, and answers GETs from what a test set.

use crate::error::Result;
use crate::health::Health;
use crate::metrics::Updates;
use crate::oidc::{Jwks, Provider};
use crate::fetch::{Answer, FetchError, Fetcher, Get};
use crate::route::{Endpoint, Route};
use crate::token::TokenKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A token as listed by the admin API; never holds the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `jti`.
    pub id: String,
    /// Principal.
    pub subject: String,
    /// Token kind.
    pub kind: TokenKind,
    /// Groups.
    pub groups: Vec<String>,
    /// Allow-list.
    pub routes: Option<Vec<String>>,
    /// What it is for.
    pub description: String,
    /// Small string map.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Subject of the admin who issued it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
    /// Last request seen with it.
    #[serde(default)]
    pub last_used_at: Option<u64>,
    /// Requests seen with it.
    #[serde(default)]
    pub request_count: u64,
    /// Requests per minute set at issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_rpm: Option<u32>,
    /// Self-service tokens: the identity that owns it (`{provider}:{subject}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The signing key's id (for key rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Registrar tokens: the hosts, weight cap and longest lease they were issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrar: Option<crate::registrar::RegistrarScope>,
}

/// A named non-human principal; tokens issued for it are `kind: service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Name, like a route name; the subject of its tokens.
    pub name: String,
    /// Groups its tokens carry.
    pub groups: Vec<String>,
    /// The person or team answerable for it.
    pub owner: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Subject of the admin who created it.
    pub created_by: String,
}

/// One admin action, kept in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, assigned by the store; newest is highest.
    #[serde(default)]
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// Subject of the caller (or `anonymous`).
    pub actor: String,
    /// Token id of the caller.
    pub actor_token: Option<String>,
    /// e.g. `route.put`, `token.issue`.
    pub action: String,
    /// e.g. `route/llama`, `token/tok_…`.
    pub object: String,
    /// `ok`, or the error code.
    pub outcome: String,
    /// The W3C trace the call belonged to ([`crate::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// For a route changed outside the admin API ([`crate::managed`]): its version before
    /// (none when it is new) and after (none when it was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<String>,
}

/// How long a subject's revocation is kept: past the longest lifetime any token may have.
pub const SUBJECT_REVOCATION_SECONDS: u64 = 400 * 24 * 3600;

/// The reads the data plane needs for one request.
#[allow(async_fn_in_trait)]
pub trait RouteSource {
    /// A static route by name.
    async fn route(&self, name: &str) -> Result<Option<Route>>;
    /// An ephemeral route by id.
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>>;
    /// The route bound to a host, if any.
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>>;
    /// Endpoints registered with leases on a route.
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>>;
    /// True when the token id was revoked.
    async fn is_revoked(&self, token_id: &str) -> Result<bool>;
    /// When an admin revoked a subject (unix seconds), if one did: every token of that
    /// subject issued at or before then is refused ([`AdminStore::revoke_subject`]).
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>>;
    /// Endpoints of a route (by route key) that health probes found down ([`MetricsSink::put_down`]).
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>>;
    /// The latest load readings of a route's endpoints ([`MetricsSink::put_loads`]); empty when none.
    async fn loads(&self, route: &str) -> Result<crate::load::Loads>;
    /// The name of the route serving `model` under `/v1/` ([`crate::models`]), if any.
    async fn model_route(&self, model: &str) -> Result<Option<String>>;
    /// Every model a route serves, with that route's name.
    async fn model_index(&self) -> Result<Vec<(String, String)>>;
    /// The token budget stored under `key` ([`crate::budget::BudgetKind::key`]), if any.
    async fn budget(&self, key: &str) -> Result<Option<crate::budget::TokenBudget>>;
    /// An identity provider's keys: cached ones while [`crate::oidc::usable`] says so
    /// (`refresh` on an unknown `kid`), else fetched from `provider.jwks_url` (never any
    /// other URL); stale ones up to [`crate::oidc::MAX_STALE_SECS`] when the fetch fails;
    /// otherwise [`crate::Error::IdentityProviderUnavailable`].
    async fn jwks(&self, provider: &Provider, refresh: bool) -> Result<Jwks>;
}

/// What the admin API reads and writes: routes and leases, tokens and revocations, the
/// audit log, service accounts, budgets, and what Terraform last wrote.
#[allow(async_fn_in_trait)]
pub trait AdminStore: RouteSource {
    /// All static routes.
    async fn list_routes(&self) -> Result<Vec<Route>>;
    /// Creates or replaces a static route; `previous` lets the store drop a stale host binding.
    async fn put_route(&self, route: &Route, previous: Option<&Route>) -> Result<()>;
    /// Deletes a static route (and its host binding and leases).
    async fn delete_route(&self, route: &Route) -> Result<()>;
    /// Registers or renews a leased endpoint.
    async fn put_lease(&self, route: &str, endpoint: &Endpoint) -> Result<()>;
    /// Removes a leased endpoint; false when there was none.
    async fn delete_lease(&self, route: &str, id: &str) -> Result<bool>;
    /// Stores an ephemeral route until its `expires_at`.
    async fn put_ephemeral(&self, route: &Route) -> Result<()>;
    /// Stores a token record.
    async fn put_token(&self, record: &TokenRecord) -> Result<()>;
    /// A token record by id.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// All token records.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Marks a token revoked (record and revocation list, the latter kept until `expires_at`).
    async fn revoke(&self, record: &TokenRecord) -> Result<()>;
    /// Records that `subject` was revoked at `at`; kept at least [`SUBJECT_REVOCATION_SECONDS`].
    async fn revoke_subject(&self, subject: &str, at: u64) -> Result<()>;
    /// Removes a token record (not its revocation) ([`crate::admin::prune_tokens`]).
    async fn delete_token(&self, id: &str) -> Result<()>;
    /// Appends to the audit log, assigning `seq`.
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    /// Audit entries newest first, strictly below `before` when given.
    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>>;
    /// Creates a service account; [`crate::Error::Conflict`] if the name is taken.
    async fn create_service_account(&self, account: &ServiceAccount) -> Result<()>;
    /// A service account by name.
    async fn service_account(&self, name: &str) -> Result<Option<ServiceAccount>>;
    /// All service accounts.
    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>>;
    /// Deletes a service account (its tokens are revoked by the caller first).
    async fn delete_service_account(&self, name: &str) -> Result<()>;
    /// Sets the token budget under `key`.
    async fn put_budget(&self, key: &str, budget: &crate::budget::TokenBudget) -> Result<()>;
    /// Removes the budget under `key`; false when there was none.
    async fn delete_budget(&self, key: &str) -> Result<bool>;
    /// Every budget, by key.
    async fn list_budgets(&self) -> Result<Vec<(String, crate::budget::TokenBudget)>>;
    /// The tokens counted against `key` in the windows of `now` (unix seconds).
    async fn budget_use(&self, key: &str, now: u64) -> Result<crate::budget::BudgetUse>;
    /// What [`crate::managed::sync`] last saw of each route, by name.
    async fn seen_routes(&self) -> Result<BTreeMap<String, crate::managed::Seen>>;
    /// Replaces (or with `None` forgets) what was seen of one route.
    async fn put_seen_route(&self, name: &str, seen: Option<&crate::managed::Seen>) -> Result<()>;
}

/// Where request metrics and endpoint health are kept: counters applied atomically, health
/// records, and the down and load sets the data plane reads back ([`RouteSource`]).
#[allow(async_fn_in_trait)]
pub trait MetricsSink {
    /// Applies metric counter updates atomically per counter (nothing lost under concurrency).
    async fn record(&self, updates: &Updates) -> Result<()>;
    /// The counters a metrics snapshot at `now` reads: every total, and the minute
    /// buckets in [`crate::metrics::recent_range`].
    async fn counters(&self, now: u64) -> Result<Vec<(String, u64)>>;
    /// Every endpoint's health record: route key, endpoint id, health.
    async fn health(&self) -> Result<Vec<(String, String, Health)>>;
    /// Replaces one endpoint's health record.
    async fn put_health(&self, route: &str, endpoint: &str, health: &Health) -> Result<()>;
    /// Replaces the set of a route's endpoints the data plane avoids ([`RouteSource::down_endpoints`]).
    async fn put_down(&self, route: &str, down: &[String]) -> Result<()>;
    /// Replaces a route's load readings ([`crate::probe::load_round`]).
    async fn put_loads(&self, route: &str, loads: &crate::load::Loads) -> Result<()>;
}

/// Everything the admin API and the scheduled rounds use: each platform's state store is all
/// three; core functions that need less ask for less.
pub trait Store: AdminStore + MetricsSink + Fetcher {}

impl<T: AdminStore + MetricsSink + Fetcher> Store for T {}

/// An in-memory store for tests and the CLI's dry runs.
#[derive(Default)]
pub struct MemoryStore {
    inner: std::sync::Mutex<Mem>,
}

#[derive(Default)]
struct Mem {
    routes: BTreeMap<String, Route>,
    ephemeral: BTreeMap<String, Route>,
    leases: BTreeMap<String, BTreeMap<String, Endpoint>>,
    tokens: BTreeMap<String, TokenRecord>,
    revoked: std::collections::BTreeSet<String>,
    revoked_subjects: BTreeMap<String, u64>,
    audit: Vec<AuditEntry>,
    counters: BTreeMap<String, u64>,
    health: BTreeMap<(String, String), Health>,
    down: BTreeMap<String, Vec<String>>,
    loads: BTreeMap<String, crate::load::Loads>,
    probe_status: BTreeMap<String, u16>,
    metrics_text: BTreeMap<String, String>,
    jwks: BTreeMap<String, String>,
    accounts: BTreeMap<String, ServiceAccount>,
    seen: BTreeMap<String, crate::managed::Seen>,
    budgets: BTreeMap<String, crate::budget::TokenBudget>,
    budget_counters: BTreeMap<String, crate::budget::BudgetCounter>,
    now: u64,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Mem) -> T) -> T {
        // A poisoned lock only means another test panicked; the data is still usable.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Publishes a provider's JWKS document at its URL (tests); `now` is the clock of fetches.
    pub fn set_jwks(&self, url: &str, raw: &str, now: u64) {
        self.with(|m| {
            m.jwks.insert(url.to_string(), raw.to_string());
            m.now = now;
        });
    }

    /// Sets what `url` (an endpoint's `/metrics`) answers (tests); `None`: no answer.
    pub fn set_metrics(&self, url: &str, text: Option<&str>) {
        self.with(|m| match text {
            Some(t) => m.metrics_text.insert(url.to_string(), t.to_string()),
            None => m.metrics_text.remove(url),
        });
    }

    /// Counts `tokens` against the budget `key` at `now` (tests; the adapters count in their stores).
    pub fn add_budget_use(&self, key: &str, tokens: u64, now: u64) {
        self.with(|m| m.budget_counters.entry(key.to_string()).or_default().add(tokens, now));
    }

    /// Sets what a probe of `url` answers (tests); unset URLs do not answer.
    pub fn set_probe_status(&self, url: &str, status: Option<u16>) {
        self.with(|m| match status {
            Some(s) => m.probe_status.insert(url.to_string(), s),
            None => m.probe_status.remove(url),
        });
    }
}

impl RouteSource for MemoryStore {
    async fn route(&self, name: &str) -> Result<Option<Route>> {
        Ok(self.with(|m| m.routes.get(name).cloned()))
    }
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
        Ok(self.with(|m| m.ephemeral.get(id).cloned()))
    }
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
        Ok(self.with(|m| m.routes.values().find(|r| r.host.as_deref() == Some(host)).cloned()))
    }
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
        Ok(self.with(|m| m.leases.get(route).map(|l| l.values().cloned().collect()).unwrap_or_default()))
    }
    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self.with(|m| m.revoked.contains(token_id)))
    }
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
        Ok(self.with(|m| m.revoked_subjects.get(subject).copied()))
    }
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
        Ok(self.with(|m| m.down.get(route).cloned().unwrap_or_default()))
    }
    async fn loads(&self, route: &str) -> Result<crate::load::Loads> {
        Ok(self.with(|m| m.loads.get(route).cloned().unwrap_or_default()))
    }
    async fn model_route(&self, model: &str) -> Result<Option<String>> {
        Ok(self.with(|m| m.routes.values().find(|r| r.models.iter().any(|x| x == model)).map(|r| r.name.clone())))
    }
    async fn model_index(&self) -> Result<Vec<(String, String)>> {
        Ok(self.with(|m| m.routes.values().flat_map(|r| r.models.iter().map(|x| (x.clone(), r.name.clone()))).collect()))
    }
    async fn budget(&self, key: &str) -> Result<Option<crate::budget::TokenBudget>> {
        Ok(self.with(|m| m.budgets.get(key).copied()))
    }
    /// Fetched on every call (no cache: tests change keys at will), the way [`crate::jwks::fetch`] fetches.
    async fn jwks(&self, provider: &Provider, _refresh: bool) -> Result<Jwks> {
        let now = self.with(|m| m.now);
        crate::jwks::fetch(self, &provider.jwks_url, now).await.map(|(_, set)| set).map_err(|_| crate::Error::IdentityProviderUnavailable(provider.name.clone()))
    }
}

impl AdminStore for MemoryStore {
    async fn list_routes(&self) -> Result<Vec<Route>> {
        Ok(self.with(|m| m.routes.values().cloned().collect()))
    }

    async fn put_route(&self, route: &Route, _previous: Option<&Route>) -> Result<()> {
        self.with(|m| m.routes.insert(route.name.clone(), route.clone()));
        Ok(())
    }

    async fn delete_route(&self, route: &Route) -> Result<()> {
        self.with(|m| {
            m.routes.remove(&route.name);
            m.leases.remove(&route.name);
        });
        Ok(())
    }

    async fn put_lease(&self, route: &str, endpoint: &Endpoint) -> Result<()> {
        self.with(|m| m.leases.entry(route.to_string()).or_default().insert(endpoint.id.clone(), endpoint.clone()));
        Ok(())
    }

    async fn delete_lease(&self, route: &str, id: &str) -> Result<bool> {
        Ok(self.with(|m| m.leases.get_mut(route).and_then(|l| l.remove(id)).is_some()))
    }

    async fn put_ephemeral(&self, route: &Route) -> Result<()> {
        self.with(|m| m.ephemeral.insert(route.name.clone(), route.clone()));
        Ok(())
    }

    async fn put_token(&self, record: &TokenRecord) -> Result<()> {
        self.with(|m| m.tokens.insert(record.id.clone(), record.clone()));
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        Ok(self.with(|m| m.tokens.get(id).cloned()))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.with(|m| m.tokens.values().cloned().collect()))
    }

    async fn revoke(&self, record: &TokenRecord) -> Result<()> {
        self.with(|m| {
            m.tokens.insert(record.id.clone(), record.clone());
            m.revoked.insert(record.id.clone());
        });
        Ok(())
    }

    async fn revoke_subject(&self, subject: &str, at: u64) -> Result<()> {
        self.with(|m| m.revoked_subjects.insert(subject.to_string(), at));
        Ok(())
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        self.with(|m| m.tokens.remove(id));
        Ok(())
    }

    async fn append_audit(&self, mut entry: AuditEntry) -> Result<()> {
        self.with(|m| {
            entry.seq = m.audit.len() as u64 + 1;
            m.audit.push(entry);
        });
        Ok(())
    }

    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        Ok(self.with(|m| {
            m.audit.iter().rev().filter(|e| before.is_none_or(|b| e.seq < b)).take(limit).cloned().collect()
        }))
    }

    async fn create_service_account(&self, account: &ServiceAccount) -> Result<()> {
        self.with(|m| {
            if m.accounts.contains_key(&account.name) {
                return Err(crate::Error::Conflict(format!("service account `{}` exists", account.name)));
            }
            m.accounts.insert(account.name.clone(), account.clone());
            Ok(())
        })
    }

    async fn service_account(&self, name: &str) -> Result<Option<ServiceAccount>> {
        Ok(self.with(|m| m.accounts.get(name).cloned()))
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>> {
        Ok(self.with(|m| m.accounts.values().cloned().collect()))
    }

    async fn delete_service_account(&self, name: &str) -> Result<()> {
        self.with(|m| m.accounts.remove(name));
        Ok(())
    }

    async fn put_budget(&self, key: &str, budget: &crate::budget::TokenBudget) -> Result<()> {
        self.with(|m| m.budgets.insert(key.to_string(), *budget));
        Ok(())
    }

    async fn delete_budget(&self, key: &str) -> Result<bool> {
        Ok(self.with(|m| m.budgets.remove(key).is_some()))
    }

    async fn list_budgets(&self) -> Result<Vec<(String, crate::budget::TokenBudget)>> {
        Ok(self.with(|m| m.budgets.iter().map(|(k, b)| (k.clone(), *b)).collect()))
    }

    async fn budget_use(&self, key: &str, now: u64) -> Result<crate::budget::BudgetUse> {
        Ok(self.with(|m| m.budget_counters.get(key).copied().unwrap_or_default().use_at(now)))
    }

    async fn seen_routes(&self) -> Result<BTreeMap<String, crate::managed::Seen>> {
        Ok(self.with(|m| m.seen.clone()))
    }

    async fn put_seen_route(&self, name: &str, seen: Option<&crate::managed::Seen>) -> Result<()> {
        self.with(|m| match seen {
            Some(s) => m.seen.insert(name.to_string(), s.clone()),
            None => m.seen.remove(name),
        });
        Ok(())
    }
}

impl MetricsSink for MemoryStore {
    async fn record(&self, updates: &Updates) -> Result<()> {
        self.with(|m| updates.apply_to(&mut m.counters));
        Ok(())
    }

    async fn counters(&self, now: u64) -> Result<Vec<(String, u64)>> {
        let (from, to) = crate::metrics::recent_range(now);
        Ok(self.with(|m| {
            m.counters.iter().filter(|(k, _)| !k.starts_with("m:") || (k.as_str() >= from.as_str() && k.as_str() < to.as_str())).map(|(k, v)| (k.clone(), *v)).collect()
        }))
    }

    async fn health(&self) -> Result<Vec<(String, String, Health)>> {
        Ok(self.with(|m| m.health.iter().map(|((r, e), h)| (r.clone(), e.clone(), h.clone())).collect()))
    }

    async fn put_health(&self, route: &str, endpoint: &str, health: &Health) -> Result<()> {
        self.with(|m| m.health.insert((route.to_string(), endpoint.to_string()), health.clone()));
        Ok(())
    }

    async fn put_down(&self, route: &str, down: &[String]) -> Result<()> {
        self.with(|m| m.down.insert(route.to_string(), down.to_vec()));
        Ok(())
    }

    async fn put_loads(&self, route: &str, loads: &crate::load::Loads) -> Result<()> {
        self.with(|m| m.loads.insert(route.to_string(), loads.clone()));
        Ok(())
    }
}

/// The web as the tests set it up: each URL answers what `set_jwks`, `set_metrics` or
/// `set_probe_status` said, others not at all.
impl Fetcher for MemoryStore {
    async fn get(&self, get: &Get<'_>) -> std::result::Result<Answer, FetchError> {
        self.with(|m| {
            let body = m.jwks.get(get.url).or_else(|| m.metrics_text.get(get.url));
            match (body, m.probe_status.get(get.url)) {
                (Some(b), _) if b.len() > get.max_bytes => Err(FetchError::TooLarge),
                (Some(b), _) => Ok(Answer { status: 200, body: b.clone().into_bytes() }),
                (None, Some(&status)) => Ok(Answer { status, body: Vec::new() }),
                (None, None) => Err(FetchError::Failed("nothing answers there".into())),
            }
        })
    }
}
