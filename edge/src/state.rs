//! The `GatewayState` Durable Object: one instance serialises every admin
//! write, keeps what must not be lost or reordered (token records and their
//! usage counters, the audit log, leases, revocations) in its transactional
//! storage, and mirrors what the data plane reads into Workers KV.

use crate::kv::{budget_key, down_key, ephemeral_key, host_key, leases_key, load_key, model_key, revoked_key, revoked_subject_key, route_key};
use std::time::Duration;
use gateway_core::admin::{self, AdminRequest, MAX_ADMIN_BODY};
use gateway_core::health::{self, Health};
use gateway_core::metrics::{self, RequestSample, Updates};
use gateway_core::route::{Endpoint, Route};
use gateway_core::fetch::{Answer, FetchError, Fetcher, Get};
use gateway_core::store::{AdminStore, AuditEntry, MetricsSink, RouteSource, ServiceAccount, TokenRecord};
use gateway_core::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use worker::kv::KvStore;
use worker::wasm_bindgen::JsValue;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, ListOptions, Request, Response, State, Storage};

/// The origin of the Worker's calls to the object; an admin call keeps the client's path
/// (`/_gateway/…`) and query after it.
pub const STATE_ORIGIN: &str = "https://gateway-state";

const TOKEN_PREFIX: &str = "tok:";
const ACCOUNT_PREFIX: &str = "svc:";
/// What `gateway_core::managed::sync` last saw of each route.
const SEEN_PREFIX: &str = "seen:";
const AUDIT_PREFIX: &str = "audit:";
const AUDIT_SEQ: &str = "audit-seq";
/// Metric counters live under `c:{metrics key}`, one number each.
const COUNTER_PREFIX: &str = "c:";
/// A counter shard's record of a batch part it applied: `b:{part id}` → unix seconds.
const BATCH_PREFIX: &str = "b:";
/// Storage takes at most 128 keys per multi-key call.
const MAX_KEYS_PER_CALL: usize = 128;

/// The name of the object holding counter shard `shard` ([`gateway_core::batch`]): the
/// same class as the global object, which merges the shards when metrics are read.
pub(crate) fn shard_name(shard: u32) -> String {
    format!("metrics-{shard}")
}

fn audit_key(seq: u64) -> String {
    format!("{AUDIT_PREFIX}{seq:020}")
}

fn store_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what}: {e}"))
}

/// The Durable Object class.
#[durable_object]
pub struct GatewayState {
    state: State,
    env: Env,
}

/// `Store` over the object's storage, mirroring data-plane keys into KV.
pub struct DoStore {
    storage: Storage,
    kv: KvStore,
    env: Env,
}

impl DoStore {
    async fn get_text(&self, key: &str) -> Result<Option<String>> {
        self.storage.get::<String>(key).await.map_err(|e| store_err("storage get", e))
    }
    async fn put_text(&self, key: &str, value: String) -> Result<()> {
        self.storage.put(key, value).await.map_err(|e| store_err("storage put", e))
    }
    async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<String> {
        let raw = serde_json::to_string(value).map_err(|e| store_err("encode", e))?;
        self.put_text(key, raw.clone()).await?;
        Ok(raw)
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.storage.delete(key).await.map(|_| ()).map_err(|e| store_err("storage delete", e))
    }
    async fn kv_put(&self, key: &str, value: String, expiration: Option<u64>) -> Result<()> {
        let mut put = self.kv.put(key, value).map_err(|e| store_err("kv put", e))?;
        if let Some(at) = expiration {
            put = put.expiration(at);
        }
        put.execute().await.map_err(|e| store_err("kv put", e))
    }
    async fn kv_delete(&self, key: &str) -> Result<()> {
        self.kv.delete(key).await.map_err(|e| store_err("kv delete", e))
    }
    async fn list_values(&self, prefix: &str, reverse: bool, end: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        let mut opts = ListOptions::new().prefix(prefix).reverse(reverse);
        if let Some(end) = end {
            opts = opts.end(end);
        }
        if let Some(limit) = limit {
            opts = opts.limit(limit);
        }
        let map = self.storage.list_with_options(opts).await.map_err(|e| store_err("storage list", e))?;
        Ok(map.values().into_iter().filter_map(|v| v.ok().and_then(|v| v.as_string())).collect())
    }
    /// Keys and values under `prefix` (or in `[start, end)` when `start` is given).
    async fn list_entries(&self, prefix: &str, start: Option<&str>, end: Option<&str>) -> Result<Vec<(String, JsValue)>> {
        let mut opts = ListOptions::new();
        opts = match start {
            Some(start) => opts.start(start),
            None => opts.prefix(prefix),
        };
        if let Some(end) = end {
            opts = opts.end(end);
        }
        let map = self.storage.list_with_options(opts).await.map_err(|e| store_err("storage list", e))?;
        let mut out = Vec::with_capacity(map.size() as usize);
        map.for_each(&mut |value, key| {
            if let Some(k) = key.as_string() {
                out.push((k, value));
            }
        });
        Ok(out)
    }
    /// Deletes the minute buckets past retention (called once a minute by the probe job).
    async fn prune_minutes(&self, now: u64) -> Result<usize> {
        let (start, end) = metrics::expired_range(now);
        let (start, end) = (format!("{COUNTER_PREFIX}{start}"), format!("{COUNTER_PREFIX}{end}"));
        let keys: Vec<String> = self.list_entries("", Some(&start), Some(&end)).await?.into_iter().map(|(k, _)| k).collect();
        for chunk in keys.chunks(MAX_KEYS_PER_CALL) {
            self.storage.delete_multiple(chunk.to_vec()).await.map_err(|e| store_err("storage delete", e))?;
        }
        Ok(keys.len())
    }
    /// The counters in this object's own storage (a shard's, or the global object's).
    async fn own_counters(&self, now: u64) -> Result<Vec<(String, u64)>> {
        let (from, to) = metrics::recent_range(now);

        let mut out = Vec::new();
        for prefix in ["route:", "ep:", "tok:", "ptn:"] {
            out.extend(self.list_entries(&format!("{COUNTER_PREFIX}{prefix}"), None, None).await?);
        }
        out.extend(self.list_entries("", Some(&format!("{COUNTER_PREFIX}{from}")), Some(&format!("{COUNTER_PREFIX}{to}"))).await?);
        Ok(out.into_iter().filter_map(|(k, v)| Some((k.strip_prefix(COUNTER_PREFIX)?.to_string(), v.as_f64()? as u64))).collect())
    }
    /// One counter shard's counters, read from its object.
    async fn shard_counters(&self, shard: u32, now: u64) -> Result<Vec<(String, u64)>> {
        let stub = self.env.durable_object(crate::DO_BINDING).and_then(|ns| ns.get_by_name(&shard_name(shard))).map_err(|e| store_err("counter shard", e))?;
        let url = format!("https://gateway-state/counters?now={now}");
        let mut res = stub.fetch_with_str(&url).await.map_err(|e| store_err("counter shard", e))?;
        if res.status_code() != 200 {
            return Err(store_err("counter shard", format!("answered {}", res.status_code())));
        }
        res.json().await.map_err(|e| store_err("counter shard", e))
    }
    /// Forgets batch ids older than [`gateway_core::batch::BATCH_ID_SECONDS`].
    async fn prune_batch_ids(&self, now: u64) -> Result<usize> {
        let cutoff = now.saturating_sub(gateway_core::batch::BATCH_ID_SECONDS) as f64;
        let old: Vec<String> = self.list_entries(BATCH_PREFIX, None, None).await?.into_iter().filter(|(_, v)| v.as_f64().is_none_or(|at| at < cutoff)).map(|(k, _)| k).collect();
        for chunk in old.chunks(MAX_KEYS_PER_CALL) {
            self.storage.delete_multiple(chunk.to_vec()).await.map_err(|e| store_err("storage delete", e))?;
        }
        Ok(old.len())
    }
    /// A route's copy in KV, where Terraform writes.
    async fn kv_route(&self, name: &str) -> Result<Option<Route>> {
        let key = route_key(name);
        self.kv.get(&key).text().await.map_err(|e| store_err("kv get", e))?.map(|r| decode(&r)).transpose()
    }
    /// Removes `model` from the index where it still names `route` (another route, Terraform's
    /// say, may have taken it since).
    async fn forget_model(&self, model: &str, route: &str) -> Result<()> {
        let key = model_key(model);
        if self.get_text(&key).await?.as_deref() == Some(route) {
            self.delete(&key).await?;
        }
        if self.kv.get(&key).text().await.map_err(|e| store_err("kv get", e))?.as_deref() == Some(route) {
            self.kv_delete(&key).await?;
        }
        Ok(())
    }
    /// Removes the admin copy of a route Terraform took over: the object's record and host
    /// binding, and the KV host binding when Terraform's route has another host. Leases stay.
    async fn drop_admin_copy(&self, admin: &Route, managed: &Route) -> Result<()> {
        self.delete(&route_key(&admin.name)).await?;
        if let Some(host) = &admin.host {
            self.delete(&host_key(host)).await?;
            if managed.host.as_deref() != Some(host) {
                self.kv_delete(&host_key(host)).await?;
            }
        }
        Ok(())
    }
    async fn lease_map(&self, route: &str) -> Result<BTreeMap<String, Endpoint>> {
        match self.get_text(&leases_key(route)).await? {
            Some(raw) => serde_json::from_str(&raw).map_err(|e| store_err("leases decode", e)),
            None => Ok(BTreeMap::new()),
        }
    }
    async fn write_leases(&self, route: &str, mut map: BTreeMap<String, Endpoint>) -> Result<()> {
        let now = crate::now_secs();
        map.retain(|_, e| e.is_live(now));
        let key = leases_key(route);
        if map.is_empty() {
            self.delete(&key).await?;
            return self.kv_delete(&key).await;
        }
        let raw = self.put_json(&key, &map).await?;
        self.kv_put(&key, raw, None).await
    }
}

fn decode<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| store_err("decode", e))
}

impl RouteSource for DoStore {
    async fn route(&self, name: &str) -> Result<Option<Route>> {
        let key = route_key(name);
        // Admin-written routes live here (mirrored into KV); Terraform writes only KV, and its
        // copy is the one source of truth for the name (gateway_core::managed).
        let (local, shared) = futures_util::future::join(self.get_text(&key), self.kv_route(name)).await;
        let shared = shared?;
        if let Some(r) = shared.as_ref().filter(|r| r.is_externally_managed()) {
            return Ok(Some(r.clone()));
        }
        match local? {
            Some(raw) => decode(&raw).map(Some),
            None => Ok(shared),
        }
    }
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
        self.get_text(&ephemeral_key(id)).await?.map(|r| decode(&r)).transpose()
    }
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
        let name = match self.get_text(&host_key(host)).await? {
            Some(n) => Some(n),
            None => self.kv.get(&host_key(host)).text().await.map_err(|e| store_err("kv get", e))?,
        };
        match name {
            Some(n) => Ok(self.route(&n).await?.filter(|r| r.host.as_deref() == Some(host))),
            None => Ok(None),
        }
    }
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
        Ok(self.lease_map(route).await?.into_values().collect())
    }
    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self.get_text(&revoked_key(token_id)).await?.is_some())
    }
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
        Ok(self.get_text(&revoked_subject_key(subject)).await?.and_then(|v| v.trim().parse().ok()))
    }
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
        self.get_text(&down_key(route)).await?.map(|r| decode(&r)).transpose().map(Option::unwrap_or_default)
    }
    async fn loads(&self, route: &str) -> Result<gateway_core::load::Loads> {
        self.get_text(&load_key(route)).await?.map(|r| decode(&r)).transpose().map(Option::unwrap_or_default)
    }
    async fn model_route(&self, model: &str) -> Result<Option<String>> {
        // Admin-written routes' models live here; Terraform's only in KV, and win.
        let key = model_key(model);
        match self.kv.get(&key).text().await.map_err(|e| store_err("kv get", e))? {
            Some(name) => Ok(Some(name)),
            None => self.get_text(&key).await,
        }
    }
    async fn model_index(&self) -> Result<Vec<(String, String)>> {
        Ok(self.list_routes().await?.into_iter().flat_map(|r| r.models.into_iter().map(move |m| (m, r.name.clone()))).collect())
    }
    async fn budget(&self, key: &str) -> Result<Option<gateway_core::budget::TokenBudget>> {
        // Admin-set budgets live here (mirrored into KV); Terraform's only in KV, and win.
        let shared: Option<gateway_core::budget::TokenBudget> =
            self.kv.get(&budget_key(key)).text().await.map_err(|e| store_err("kv get", e))?.map(|r| decode(&r)).transpose()?;
        if shared.is_some_and(|b| b.managed_by.is_some()) {
            return Ok(shared);
        }
        match self.get_text(&budget_key(key)).await? {
            Some(raw) => decode(&raw).map(Some),
            None => Ok(shared),
        }
    }
    async fn jwks(&self, provider: &gateway_core::oidc::Provider, refresh: bool) -> Result<gateway_core::oidc::Jwks> {
        let iso = crate::isolate(&self.env);
        crate::jwks::jwks(&self.kv, &iso.jwks, provider, refresh, false).await
    }
}

impl AdminStore for DoStore {
    async fn list_routes(&self) -> Result<Vec<Route>> {
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        for raw in self.list_values(gateway_core::schema::kv::ROUTE_PREFIX, false, None, None).await? {
            let r: Route = decode(&raw)?;
            routes.insert(r.name.clone(), r);
        }
        // Terraform-managed routes exist only in KV, and win over an admin copy of the same name.
        let names = crate::kv::list_keys(&self.kv, gateway_core::schema::kv::ROUTE_PREFIX).await?;
        let shared = futures_util::future::join_all(names.iter().map(|n| self.kv_route(n))).await;
        for (name, r) in names.into_iter().zip(shared) {
            match r? {
                Some(r) if r.is_externally_managed() => {
                    if let Some(admin) = routes.insert(name, r.clone()).filter(|a| !a.is_externally_managed()) {
                        self.drop_admin_copy(&admin, &r).await?;
                    }
                }
                Some(r) => {
                    routes.entry(name).or_insert(r);
                }
                None => {}
            }
        }
        Ok(routes.into_values().collect())
    }

    async fn put_route(&self, route: &Route, previous: Option<&Route>) -> Result<()> {
        let key = route_key(&route.name);
        let raw = self.put_json(&key, route).await?;
        // Model routing's index: `model:{model}` → route name, here and in KV.
        for gone in previous.map(|p| &p.models[..]).unwrap_or_default().iter().filter(|m| !route.models.contains(m)) {
            self.forget_model(gone, &route.name).await?;
        }
        for model in &route.models {
            self.put_text(&model_key(model), route.name.clone()).await?;
            self.kv_put(&model_key(model), route.name.clone(), None).await?;
        }
        if let Some(old_host) = previous.and_then(|p| p.host.as_deref()) {
            if route.host.as_deref() != Some(old_host) {
                self.delete(&host_key(old_host)).await?;
                self.kv_delete(&host_key(old_host)).await?;
            }
        }
        if let Some(host) = &route.host {
            self.put_text(&host_key(host), route.name.clone()).await?;
            self.kv_put(&host_key(host), route.name.clone(), None).await?;
        }
        self.kv_put(&key, raw, None).await
    }

    async fn delete_route(&self, route: &Route) -> Result<()> {
        for model in &route.models {
            self.forget_model(model, &route.name).await?;
        }
        for key in [route_key(&route.name), leases_key(&route.name)] {
            self.delete(&key).await?;
            self.kv_delete(&key).await?;
        }
        if let Some(host) = &route.host {
            self.delete(&host_key(host)).await?;
            self.kv_delete(&host_key(host)).await?;
        }
        Ok(())
    }

    async fn put_lease(&self, route: &str, endpoint: &Endpoint) -> Result<()> {
        let mut map = self.lease_map(route).await?;
        map.insert(endpoint.id.clone(), endpoint.clone());
        self.write_leases(route, map).await
    }

    async fn delete_lease(&self, route: &str, id: &str) -> Result<bool> {
        let mut map = self.lease_map(route).await?;
        let had = map.remove(id).is_some();
        if had {
            self.write_leases(route, map).await?;
        }
        Ok(had)
    }

    async fn put_ephemeral(&self, route: &Route) -> Result<()> {
        let key = ephemeral_key(&route.name);
        let raw = self.put_json(&key, route).await?;
        // KV expirations must be at least 60 s ahead; reads check `expires_at` themselves.
        let expiration = route.expires_at.map(|at| at.max(crate::now_secs() + 60));
        self.kv_put(&key, raw, expiration).await
    }

    async fn put_token(&self, record: &TokenRecord) -> Result<()> {
        self.put_json(&format!("{TOKEN_PREFIX}{}", record.id), record).await.map(|_| ())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get_text(&format!("{TOKEN_PREFIX}{id}")).await?.map(|r| decode(&r)).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.list_values(TOKEN_PREFIX, false, None, None).await?.iter().map(|r| decode(r)).collect()
    }

    async fn revoke(&self, record: &TokenRecord) -> Result<()> {
        self.put_token(record).await?;
        let key = revoked_key(&record.id);
        self.put_text(&key, "1".into()).await?;
        // KV needs an expiration at least 60 s ahead; the entry outlives the token it refuses.
        let until = record.expires_at.max(crate::now_secs()) + 120;
        self.kv_put(&key, "1".into(), Some(until)).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        self.delete(&format!("{TOKEN_PREFIX}{id}")).await
    }

    async fn revoke_subject(&self, subject: &str, at: u64) -> Result<()> {
        let key = revoked_subject_key(subject);
        // Strongly consistent here (admin calls), and in KV for the data plane.
        self.put_text(&key, at.to_string()).await?;
        self.kv_put(&key, at.to_string(), Some(at + gateway_core::store::SUBJECT_REVOCATION_SECONDS)).await
    }

    async fn append_audit(&self, mut entry: AuditEntry) -> Result<()> {
        let written = async {
            let seq = self.get_text(AUDIT_SEQ).await?.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
            entry.seq = seq;
            self.put_json(&audit_key(seq), &entry).await?;
            self.put_text(AUDIT_SEQ, seq.to_string()).await
        }
        .await;
        // Core does not fail the admin call over a lost audit line; it must not be lost silently.
        if let Err(e) = &written {
            let line = serde_json::json!({"level": "error", "msg": "audit entry not written", "detail": e.to_string(), "entry": &entry});
            worker::console_error!("{}", line);
        }
        written
    }

    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let end = before.map(audit_key);
        self.list_values(AUDIT_PREFIX, true, end.as_deref(), Some(limit)).await?.iter().map(|r| decode(r)).collect()
    }

    async fn create_service_account(&self, account: &ServiceAccount) -> Result<()> {
        let key = format!("{ACCOUNT_PREFIX}{}", account.name);
        // Admin calls run one at a time (block_concurrency_while), so check-then-put is atomic.
        if self.get_text(&key).await?.is_some() {
            return Err(Error::Conflict(format!("service account `{}` exists", account.name)));
        }
        self.put_json(&key, account).await.map(|_| ())
    }

    async fn service_account(&self, name: &str) -> Result<Option<ServiceAccount>> {
        self.get_text(&format!("{ACCOUNT_PREFIX}{name}")).await?.map(|r| decode(&r)).transpose()
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>> {
        self.list_values(ACCOUNT_PREFIX, false, None, None).await?.iter().map(|r| decode(r)).collect()
    }

    async fn delete_service_account(&self, name: &str) -> Result<()> {
        self.delete(&format!("{ACCOUNT_PREFIX}{name}")).await
    }

    async fn put_budget(&self, key: &str, budget: &gateway_core::budget::TokenBudget) -> Result<()> {
        // Kept here for the admin API, mirrored into KV where the data plane reads it.
        let raw = self.put_json(&budget_key(key), budget).await?;
        self.kv_put(&budget_key(key), raw, None).await
    }

    async fn delete_budget(&self, key: &str) -> Result<bool> {
        let existed = self.get_text(&budget_key(key)).await?.is_some();
        self.delete(&budget_key(key)).await?;
        self.kv_delete(&budget_key(key)).await?;
        Ok(existed)
    }

    async fn list_budgets(&self) -> Result<Vec<(String, gateway_core::budget::TokenBudget)>> {
        let mut out: BTreeMap<String, gateway_core::budget::TokenBudget> = BTreeMap::new();
        for (key, value) in self.list_entries(gateway_core::schema::kv::BUDGET_PREFIX, None, None).await? {
            if let Some(b) = value.as_string().and_then(|v| serde_json::from_str(&v).ok()) {
                out.insert(key.trim_start_matches(gateway_core::schema::kv::BUDGET_PREFIX).to_string(), b);
            }
        }
        // Terraform's budgets exist only in KV, and win over an admin copy (which goes).
        for key in crate::kv::list_keys(&self.kv, gateway_core::schema::kv::BUDGET_PREFIX).await? {
            let shared: Option<gateway_core::budget::TokenBudget> =
                self.kv.get(&budget_key(&key)).text().await.map_err(|e| store_err("kv get", e))?.map(|r| decode(&r)).transpose()?;
            match shared {
                Some(b) if b.managed_by.is_some() => {
                    if out.insert(key.clone(), b).is_some_and(|a| a.managed_by.is_none()) {
                        self.delete(&budget_key(&key)).await?;
                    }
                }
                Some(b) => {
                    out.entry(key).or_insert(b);
                }
                None => {}
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn budget_use(&self, key: &str, now: u64) -> Result<gateway_core::budget::BudgetUse> {
        crate::ratelimit::budget_use(&self.env, key, now).await.map_err(|e| store_err("budget counter", e))
    }

    async fn seen_routes(&self) -> Result<BTreeMap<String, gateway_core::managed::Seen>> {
        let mut out = BTreeMap::new();
        for (key, value) in self.list_entries(SEEN_PREFIX, None, None).await? {
            // An unreadable record is treated as unseen: the route is audited again, not lost.
            if let Some(seen) = value.as_string().and_then(|v| serde_json::from_str(&v).ok()) {
                out.insert(key.trim_start_matches(SEEN_PREFIX).to_string(), seen);
            }
        }
        Ok(out)
    }

    async fn put_seen_route(&self, name: &str, seen: Option<&gateway_core::managed::Seen>) -> Result<()> {
        let key = format!("{SEEN_PREFIX}{name}");
        match seen {
            Some(s) => self.put_json(&key, s).await.map(|_| ()),
            None => self.delete(&key).await,
        }
    }
}

impl MetricsSink for DoStore {
    /// Callers run this inside `block_concurrency_while`, so the reads and writes of one batch
    /// are not interleaved with another's: nothing is lost under concurrency.
    async fn record(&self, updates: &Updates) -> Result<()> {
        let keys: Vec<String> = updates.adds.keys().chain(updates.maxes.keys()).map(|k| format!("{COUNTER_PREFIX}{k}")).collect();
        for chunk in keys.chunks(MAX_KEYS_PER_CALL) {
            let current = self.storage.get_multiple(chunk.to_vec()).await.map_err(|e| store_err("storage get", e))?;
            let next = js_sys::Object::new();
            for key in chunk {
                let name = &key[COUNTER_PREFIX.len()..];
                let old = current.get(&JsValue::from_str(key)).as_f64().unwrap_or(0.0) as u64;
                let new = match (updates.adds.get(name), updates.maxes.get(name)) {
                    (Some(add), _) => old.saturating_add(*add),
                    (None, Some(max)) => old.max(*max),
                    (None, None) => continue,
                };
                js_sys::Reflect::set(&next, &JsValue::from_str(key), &JsValue::from_f64(new as f64)).map_err(|e| store_err("counter", format!("{e:?}")))?;
            }
            self.storage.put_multiple_raw(next).await.map_err(|e| store_err("storage put", e))?;
        }
        Ok(())
    }

    async fn counters(&self, now: u64) -> Result<Vec<(String, u64)>> {
        // This object's own counters (what samples wrote before counters were sharded), and
        // every shard's.
        let own = self.own_counters(now).await?;
        let shards = (0..gateway_core::batch::SHARDS).map(|shard| self.shard_counters(shard, now));
        let shards = futures_util::future::try_join_all(shards).await?;
        Ok(gateway_core::batch::merge_counters(std::iter::once(own).chain(shards)))
    }

    async fn health(&self) -> Result<Vec<(String, String, Health)>> {
        let mut out = Vec::new();
        for (key, value) in self.list_entries("health:", None, None).await? {
            let (Some((route, endpoint)), Some(raw)) = (health::parse_health_key(&key), value.as_string()) else { continue };
            out.push((route, endpoint, decode(&raw)?));
        }
        Ok(out)
    }

    async fn put_health(&self, route: &str, endpoint: &str, health: &Health) -> Result<()> {
        self.put_json(&health::health_key(route, endpoint), health).await.map(|_| ())
    }

    async fn put_down(&self, route: &str, down: &[String]) -> Result<()> {
        let key = down_key(route);
        if down.is_empty() {
            self.delete(&key).await?;
            return self.kv_delete(&key).await;
        }
        let raw = self.put_json(&key, &down).await?;
        self.kv_put(&key, raw, None).await
    }

    async fn put_loads(&self, route: &str, loads: &gateway_core::load::Loads) -> Result<()> {
        let key = load_key(route);
        if loads.is_empty() {
            self.delete(&key).await?;
            return self.kv_delete(&key).await;
        }
        let raw = self.put_json(&key, loads).await?;
        self.kv_put(&key, raw, None).await
    }
}

impl Fetcher for DoStore {
    async fn get(&self, get: &Get<'_>) -> std::result::Result<Answer, FetchError> {
        crate::web::Web { env: Some(&self.env) }.get(get).await
    }
}

impl GatewayState {
    fn store(&self) -> worker::Result<DoStore> {
        Ok(DoStore { storage: self.state.storage(), kv: self.env.kv(crate::KV_BINDING)?, env: self.env.clone() })
    }

    async fn admin(&self, mut req: Request) -> worker::Result<Response> {
        let request_id = req.headers().get("x-request-id")?.unwrap_or_default();
        let iso = crate::isolate(&self.env);
        if iso.cfg.is_err() {
            return crate::error_response(&Error::Internal("configuration".into()), &request_id);
        }
        // The client's call as the Worker passed it on: its method, path, query and
        // authorization, with the Worker's request id and the call's trace.
        let (parts, _) = match crate::request_parts(&req) {
            Ok(p) => p,
            Err(e) => return crate::error_response(&e, &request_id),
        };
        let segments = match gateway_core::route::parse_target(parts.uri.path(), false) {
            Ok(gateway_core::route::Target::Admin(segments)) => segments,
            _ => return crate::error_response(&Error::NotFound("no such admin path".into()), &request_id),
        };
        // Owned: the write below runs in a future of its own.
        let method = parts.method.clone();
        let query = parts.uri.query().filter(|q| !q.is_empty()).map(str::to_string);
        let authorization = parts.headers.get(http::header::AUTHORIZATION).cloned();
        let trace_id = parts.headers.get(gateway_core::trace::TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(gateway_core::trace::trace_id_of);
        let body = req.bytes().await.unwrap_or_default();
        if body.len() > MAX_ADMIN_BODY {
            return crate::error_response(&Error::PayloadTooLarge { limit: MAX_ADMIN_BODY as u64 }, &request_id);
        }
        let store = self.store()?;
        let now = crate::now_secs();
        // No other event may interleave with a write (KV calls would otherwise open the input gate).
        let reply = self
            .state
            .block_concurrency_while(async move {
                let Ok(cfg) = &iso.cfg else {
                    return Ok(Err(Error::Internal("configuration".into())));
                };
                let areq = AdminRequest {
                    method: &method,
                    segments: &segments,
                    query: query.as_deref(),
                    authorization: authorization.as_ref(),
                    body: &body,
                    trace_id: trace_id.as_deref(),
                    ids: &gateway_core::token::OsRandom,
                };
                Ok(admin::handle(cfg, &store, now, areq).await)
            })
            .await?;
        match reply {
            Ok(reply) => crate::to_worker(reply.into_response(), &request_id),
            Err(e) => {
                if let Error::Internal(detail) = &e {
                    worker::console_error!("{{\"level\":\"error\",\"request_id\":{},\"msg\":\"admin store\",\"detail\":{}}}", crate::json_str(&request_id), crate::json_str(detail));
                }
                crate::error_response(&e, &request_id)
            }
        }
    }

    /// Applies one request's sample: its metric counters (the token's use among them).
    async fn record_sample(&self, mut req: Request) -> worker::Result<Response> {
        let sample: RequestSample = req.json().await?;
        let updates = metrics::updates(&sample);
        let store = self.store()?;
        let recorded = self
            .state
            .block_concurrency_while(async move {
                Ok(store.record(&updates).await)
            })
            .await?;
        match recorded {
            Ok(()) => Response::empty().map(|r| r.with_status(204)),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }

    /// Applies one part of an isolate's batch ([`gateway_core::batch`]) once: a part sent
    /// again under the same id (its first answer was lost) is acknowledged and skipped.
    async fn record_batch(&self, mut req: Request) -> worker::Result<Response> {
        let part: gateway_core::batch::Part = match req.json().await {
            Ok(p) => p,
            Err(e) => return Response::error(format!("bad batch: {e}"), 400),
        };
        let store = self.store()?;
        let storage = self.state.storage();
        let marker = format!("{BATCH_PREFIX}{}", part.id);
        let recorded = self
            .state
            .block_concurrency_while(async move {
                if storage.get::<f64>(&marker).await.ok().flatten().is_some() {
                    return Ok(Ok(()));
                }
                let applied = store.record(&part.updates).await;
                if applied.is_ok() {
                    storage.put(&marker, crate::now_secs() as f64).await?;
                }
                Ok(applied)
            })
            .await?;
        match recorded {
            Ok(()) => Response::empty().map(|r| r.with_status(204)),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }

    /// A shard's counters, for the global object's metrics read.
    async fn shard_counters(&self, req: Request) -> worker::Result<Response> {
        let now = req.url()?.query_pairs().find(|(k, _)| k == "now").and_then(|(_, v)| v.parse().ok()).unwrap_or_else(crate::now_secs);
        match self.store()?.own_counters(now).await {
            Ok(counters) => Response::from_json(&counters),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }

    /// A shard's housekeeping, from the global object's scheduled round: minute buckets
    /// past retention and batch ids past keeping.
    async fn prune_shard(&self) -> worker::Result<Response> {
        let store = self.store()?;
        let now = crate::now_secs();
        match futures_util::future::try_join(store.prune_minutes(now), store.prune_batch_ids(now)).await {
            Ok(_) => Response::empty().map(|r| r.with_status(204)),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }

    /// Keeps the load alarm running: one round of `/metrics` readings every
    /// [`gateway_core::probe::LOAD_INTERVAL_SECS`] (cron triggers fire once a minute at most).
    async fn ensure_load_alarm(&self) {
        let storage = self.state.storage();
        if matches!(storage.get_alarm().await, Ok(None)) {
            let _ = storage.set_alarm(Duration::from_secs(gateway_core::probe::LOAD_INTERVAL_SECS)).await;
        }
    }

    /// The scheduled round: probe every endpoint, then drop minute buckets past retention.
    /// Probes wait on the network, so this does not block other events; only the probe
    /// job writes health records.
    async fn probe_round(&self) -> worker::Result<Response> {
        let store = self.store()?;
        let now = crate::now_secs();
        let report = gateway_core::probe::run(&store, now).await;
        self.ensure_load_alarm().await;
        let pruned = store.prune_minutes(now).await;
        for shard in 0..gateway_core::batch::SHARDS {
            let pruned = async {
                let stub = self.env.durable_object(crate::DO_BINDING)?.get_by_name(&shard_name(shard))?;
                let res = stub.fetch_with_str("https://gateway-state/prune").await?;
                if res.status_code() >= 300 {
                    return Err(worker::Error::RustError(format!("answered {}", res.status_code())));
                }
                Ok::<(), worker::Error>(())
            };
            if let Err(e) = pruned.await {
                worker::console_error!("{{\"level\":\"error\",\"msg\":\"counter shard not pruned\",\"shard\":{},\"detail\":{}}}", shard, crate::json_str(&e.to_string()));
            }
        }
        // Token records past keeping (expired a month ago, revoked two days ago) go too.
        if let Err(e) = gateway_core::admin::prune_tokens(&store, now).await {
            worker::console_error!("{{\"level\":\"error\",\"msg\":\"token records not pruned\",\"detail\":{}}}", crate::json_str(&e.to_string()));
        }
        match report {
            Ok(report) => {
                for p in report.probes.iter().filter(|p| p.changed) {
                    let line = serde_json::json!({"level": "warn", "msg": "endpoint health changed", "route": p.route, "endpoint": p.endpoint, "health": p.health, "status": p.status});
                    worker::console_warn!("{}", line);
                }
                if let Err(e) = pruned {
                    worker::console_error!("{{\"level\":\"error\",\"msg\":\"minute buckets not pruned\",\"detail\":{}}}", crate::json_str(&e.to_string()));
                }
                Response::from_json(&report)
            }
            Err(e) => {
                worker::console_error!("{{\"level\":\"error\",\"msg\":\"probe round failed\",\"detail\":{}}}", crate::json_str(&e.to_string()));
                Response::error(e.to_string(), 500)
            }
        }
    }
}

impl DurableObject for GatewayState {
    fn new(state: State, env: Env) -> Self {
        GatewayState { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let path = req.path();
        if path == "/batch" {
            self.record_batch(req).await
        } else if path == "/counters" {
            self.shard_counters(req).await
        } else if path == "/prune" {
            self.prune_shard().await
        } else if path == "/record" {
            // One sample at a time, from isolates of the previous release during a deploy.
            self.record_sample(req).await
        } else if path == "/probe" {
            self.probe_round().await
        } else {
            // Routes come through here: from the first one on, loads are read.
            self.ensure_load_alarm().await;
            self.admin(req).await
        }
    }

    /// One round of load readings, then the next alarm. Reading waits on the network, so
    /// other events go on meanwhile; only this alarm writes load readings.
    async fn alarm(&self) -> worker::Result<Response> {
        let store = self.store()?;
        if let Err(e) = gateway_core::probe::load_round(&store, crate::now_secs()).await {
            worker::console_error!("{{\"level\":\"error\",\"msg\":\"load round failed\",\"detail\":{}}}", crate::json_str(&e.to_string()));
        }
        self.state.storage().set_alarm(Duration::from_secs(gateway_core::probe::LOAD_INTERVAL_SECS)).await?;
        Response::empty()
    }
}
