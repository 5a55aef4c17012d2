//! The data plane's reads from Workers KV, with a short per-isolate cache so
//! the hot path does not wait on KV for every request.
//!
//! Keys (also written by Terraform for managed routes):
//! `route:{name}` route JSON · `host:{host}` route name · `leases:{name}` JSON
//! map of leased endpoints · `eph:{id}` ephemeral route JSON · `revoked:{jti}` ·
//! `revoked-subject:{subject}` unix seconds of a subject's revocation ·
//! `down:{route}` JSON list of endpoints health probes found down · `model:{model}` the
//! name of the route serving that model under `/v1/`.

use gateway_core::route::{Endpoint, Route};
use gateway_core::store::RouteSource;
use gateway_core::{Error, Result};
use std::collections::BTreeMap;
use worker::kv::KvStore;

/// Key of a static route.
pub fn route_key(name: &str) -> String {
    format!("route:{name}")
}
/// Key of a host binding.
pub fn host_key(host: &str) -> String {
    format!("host:{host}")
}
/// Key of a route's leases.
pub fn leases_key(name: &str) -> String {
    format!("leases:{name}")
}
/// Key of an ephemeral route.
pub fn ephemeral_key(id: &str) -> String {
    format!("eph:{id}")
}
/// Key of a revocation.
pub fn revoked_key(jti: &str) -> String {
    format!("revoked:{jti}")
}

/// Key of a subject's revocation (its value: when, in unix seconds).
pub fn revoked_subject_key(subject: &str) -> String {
    format!("revoked-subject:{subject}")
}

/// Key of a route's down endpoints.
pub fn down_key(route: &str) -> String {
    format!("down:{route}")
}

/// Key of a route's endpoint load readings (vLLM's `/metrics`, every few seconds).
pub fn load_key(route: &str) -> String {
    format!("load:{route}")
}

/// Key of a token budget (`{kind}/{id}`, [`gateway_core::budget`]).
pub fn budget_key(key: &str) -> String {
    format!("budget:{key}")
}

/// Key of a model's route (model routing under `/v1/`).
pub fn model_key(model: &str) -> String {
    format!("model:{model}")
}

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
    list_keys(kv, "model:").await
}

/// Raw KV values (or their absence) by key, each until a deadline in ms.
pub type Cache = gateway_core::cache::TtlCache<Option<String>>;

/// Reads routes and revocations from KV through the isolate cache.
pub struct KvReader<'a> {
    pub kv: KvStore,
    pub cache: &'a std::cell::RefCell<Cache>,
    pub cache_ms: u64,
    pub jwks: &'a std::cell::RefCell<gateway_core::oidc::JwksCache>,
}

fn kv_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("kv: {e}"))
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::Internal(format!("kv value {key} does not decode: {e}")))
}

impl KvReader<'_> {
    async fn text(&self, key: String) -> Result<Option<String>> {
        let now = js_sys::Date::now() as u64;
        if self.cache_ms > 0 {
            if let Some(hit) = self.cache.borrow().get(&key, now) {
                return Ok(hit);
            }
        }
        let v = self.kv.get(&key).text().await.map_err(kv_err)?;
        if self.cache_ms > 0 {
            self.cache.borrow_mut().put(key, v.clone(), now, now + self.cache_ms);
        }
        Ok(v)
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
        const LIST: &str = "\0models";
        let now = js_sys::Date::now() as u64;
        let cached = if self.cache_ms > 0 { self.cache.borrow().get(LIST, now) } else { None };
        let models: Vec<String> = match cached {
            Some(hit) => hit.unwrap_or_default().lines().map(str::to_string).collect(),
            None => {
                let listed = list_models(&self.kv).await?;
                if self.cache_ms > 0 {
                    self.cache.borrow_mut().put(LIST.to_string(), Some(listed.join("\n")), now, now + self.cache_ms);
                }
                listed
            }
        };
        let routes = futures_util::future::try_join_all(models.iter().map(|m| self.model_route(m))).await?;
        Ok(models.into_iter().zip(routes).filter_map(|(m, r)| r.map(|r| (m, r))).collect())
    }
}
