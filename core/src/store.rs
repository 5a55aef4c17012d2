//! What the gateway keeps, and the seam to where it is kept: `RouteSource`
//! for the data plane's reads, `Store` for the admin API. Each platform
//! implements them (Workers KV and Durable Objects; DynamoDB); `MemoryStore`
//! serves tests.

use crate::error::Result;
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
}

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
}

/// Everything the admin API reads and writes.
#[allow(async_fn_in_trait)]
pub trait Store: RouteSource {
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
    /// Appends to the audit log, assigning `seq`.
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    /// Audit entries newest first, strictly below `before` when given.
    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>>;
}

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
    audit: Vec<AuditEntry>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Mem) -> T) -> T {
        // A poisoned lock only means another test panicked; the data is still usable.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
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
}

impl Store for MemoryStore {
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
}
