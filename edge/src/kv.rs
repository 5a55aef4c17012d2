//! The data plane's reads from Workers KV, with a short per-isolate cache so
//! the hot path does not wait on KV for every request: core's rules
//! ([`gateway_core::cache`]) decide fresh, stale (used, refreshed after the response
//! through `ctx.wait_until`, [`refresh_stale`]) and, while KV fails, stale-if-error up to
//! `GATEWAY_STALE_IF_ERROR_SECONDS`.
//!
//! Keys ([`gateway_core::schema::kv`]; Terraform writes the routes, hosts, models and budgets):
//! `route:{name}` route JSON · `host:{host}` route name · `leases:{name}` JSON
//! map of leased endpoints · `eph:{id}` ephemeral route JSON · `revoked:{jti}` ·
//! `revoked-subject:{subject}` unix seconds of a subject's revocation ·
//! `down:{route}` JSON list of endpoints health probes found down · `model:{model}` the
//! name of the route serving that model under `/v1/`.

use gateway_core::cache::{Freshness, Lookup};
use gateway_core::route::{Endpoint, Route};
use gateway_core::store::RouteSource;
use gateway_core::{Error, Result};
use std::collections::BTreeMap;
use worker::kv::KvStore;

// The key layout is core's ([`gateway_core::schema::kv`]), which Terraform's routes module is checked against.
pub use gateway_core::schema::kv::{budget_key, down_key, ephemeral_key, host_key, leases_key, load_key, model_key, revoked_key, revoked_subject_key, route_key};

/// Every key under `prefix`, without the prefix, listed page by page (a KV list page holds at
/// most 1000 keys).
pub async fn list_keys(kv: &KvStore, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = kv.list().prefix(prefix.into());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(kv_err)?;
        out.extend(page.keys.into_iter().map(|k| k.name.trim_start_matches(prefix).to_string()));
        match page.cursor {
            Some(c) if !page.list_complete => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Every `model:` key's model.
pub async fn list_models(kv: &KvStore) -> Result<Vec<String>> {
    list_keys(kv, gateway_core::schema::kv::MODEL_PREFIX).await
}

/// Raw KV values (or their absence) by key ([`gateway_core::cache::TtlCache`]).
pub type Cache = gateway_core::cache::TtlCache<Option<String>>;

/// The cache key of the model list (one entry: newline-separated model names).
const MODEL_LIST: &str = "\0models";

/// Reads routes and revocations from KV through the isolate cache.
pub struct KvReader<'a> {
    pub kv: KvStore,
    pub cache: &'a std::cell::RefCell<Cache>,
    pub cache_ms: u64,
    /// `GATEWAY_STALE_IF_ERROR_SECONDS` in ms.
    pub stale_if_error_ms: u64,
    pub jwks: &'a std::cell::RefCell<gateway_core::oidc::JwksCache>,
}

/// A KV call that failed: the store is unavailable (503 `store_unavailable` unless the cache
/// has an answer within its bounds).
fn kv_err(e: impl std::fmt::Display) -> Error {
    Error::StoreUnavailable(format!("kv: {e}"))
}

/// One cached raw read: the kept value while core's rules allow, else `read`'s (kept); when
/// `read` fails, the kept value within stale-if-error's bound, else the failure.
async fn through(cache: &std::cell::RefCell<Cache>, policy: Freshness, key: &str, read: impl std::future::Future<Output = Result<Option<String>>>) -> Result<Option<String>> {
    let now = js_sys::Date::now() as u64;
    if let Lookup::Fresh(v) | Lookup::Stale(v) = cache.borrow_mut().lookup(key, now, policy) {
        return Ok(v);
    }
    let read = read.await;
    let now = js_sys::Date::now() as u64;
    match read {
        Ok(v) => {
            cache.borrow_mut().fresh(key.to_string(), v.clone(), now, policy);
            Ok(v)
        }
        Err(e) => cache.borrow_mut().failed(key, now, policy).ok_or(e),
    }
}

/// The raw value of a cache key: a KV key's text, or the model list.
async fn read_raw(kv: &KvStore, key: &str) -> Result<Option<String>> {
    if key == MODEL_LIST {
        return Ok(Some(list_models(kv).await?.join("\n")));
    }
    kv.get(key).text().await.map_err(kv_err)
}

/// Reads again every key a request found stale, after its response (`ctx.wait_until`):
/// each is read at once, kept fresh, or marked failed (so kept answers stand in up to
/// `GATEWAY_STALE_IF_ERROR_SECONDS`).
pub(crate) async fn refresh_stale(kv: KvStore, iso: std::rc::Rc<crate::Isolate>, policy: Freshness) {
    let cache = &iso.kv_cache;
    let keys = cache.borrow_mut().take_stale();
    let reads = futures_util::future::join_all(keys.iter().map(|k| read_raw(&kv, k))).await;
    let now = js_sys::Date::now() as u64;
    let mut failed = None;
    for (key, read) in keys.into_iter().zip(reads) {
        match read {
            Ok(v) => cache.borrow_mut().fresh(key, v, now, policy),
            Err(e) => {
                cache.borrow_mut().failed(&key, now, policy);
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(Error::StoreUnavailable(detail) | Error::Internal(detail)) = failed {
        worker::console_warn!("{{\"level\":\"warn\",\"msg\":\"kv refresh failed; serving kept answers within GATEWAY_STALE_IF_ERROR_SECONDS\",\"detail\":{}}}", serde_json::Value::from(detail));
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::Internal(format!("kv value {key} does not decode: {e}")))
}

impl KvReader<'_> {
    /// The cache's rules for this isolate's settings.
    pub fn policy(&self) -> Freshness {
        Freshness { ttl_ms: self.cache_ms, stale_if_error_ms: self.stale_if_error_ms }
    }

    async fn text(&self, key: String) -> Result<Option<String>> {
        through(self.cache, self.policy(), &key, read_raw(&self.kv, &key)).await
    }
}

impl RouteSource for KvReader<'_> {
    async fn route(&self, name: &str) -> Result<Option<Route>> {
        let key = route_key(name);
        match self.text(key.clone()).await? {
            Some(raw) => Ok(Some(decode(&key, &raw)?)),
            None => Ok(None),
        }
    }
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
        let key = ephemeral_key(id);
        match self.text(key.clone()).await? {
            Some(raw) => Ok(Some(decode(&key, &raw)?)),
            None => Ok(None),
        }
    }
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
        match self.text(host_key(host)).await? {
            Some(name) => Ok(self.route(&name).await?.filter(|r| r.host.as_deref() == Some(host))),
            None => Ok(None),
        }
    }
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
        let key = leases_key(route);
        match self.text(key.clone()).await? {
            Some(raw) => Ok(decode::<BTreeMap<String, Endpoint>>(&key, &raw)?.into_values().collect()),
            None => Ok(Vec::new()),
        }
    }
    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self.text(revoked_key(token_id)).await?.is_some())
    }
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
        Ok(self.text(revoked_subject_key(subject)).await?.and_then(|v| v.trim().parse().ok()))
    }
    async fn jwks(&self, provider: &gateway_core::oidc::Provider, refresh: bool) -> Result<gateway_core::oidc::Jwks> {
        crate::jwks::jwks(&self.kv, self.jwks, provider, refresh, true).await
    }
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
        let key = down_key(route);
        match self.text(key.clone()).await? {
            Some(raw) => decode(&key, &raw),
            None => Ok(Vec::new()),
        }
    }
    async fn loads(&self, route: &str) -> Result<gateway_core::load::Loads> {
        let key = load_key(route);
        match self.text(key.clone()).await? {
            Some(raw) => decode(&key, &raw),
            None => Ok(Default::default()),
        }
    }
    async fn model_route(&self, model: &str) -> Result<Option<String>> {
        self.text(model_key(model)).await
    }
    async fn budget(&self, key: &str) -> Result<Option<gateway_core::budget::TokenBudget>> {
        let k = budget_key(key);
        match self.text(k.clone()).await? {
            Some(raw) => decode(&k, &raw).map(Some),
            None => Ok(None),
        }
    }
    async fn model_index(&self) -> Result<Vec<(String, String)>> {
        // The list itself is cached as one entry (newline-separated model names).
        let listed = self.text(MODEL_LIST.to_string()).await?;
        let models: Vec<String> = listed.unwrap_or_default().lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        let routes = futures_util::future::try_join_all(models.iter().map(|m| self.model_route(m))).await?;
        Ok(models.into_iter().zip(routes).filter_map(|(m, r)| r.map(|r| (m, r))).collect())
    }
}
