//! A short-lived cache of the data plane's reads, so the hot path does not
//! wait on the store for every request. Entries live `GATEWAY_CACHE_SECONDS`;
//! that is the bound on how stale a route, lease or revocation may be within
//! one isolate or Lambda instance (0 turns caching off).

use crate::error::Result;
use crate::route::{Endpoint, Route};
use crate::store::RouteSource;
use std::collections::HashMap;
use std::sync::Mutex;

/// Values by key, each until a deadline (ms). Bounded: when full, expired
/// entries go first, then everything.
#[derive(Debug)]
pub struct TtlCache<V> {
    entries: HashMap<String, (u64, V)>,
    max: usize,
}

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        TtlCache { entries: HashMap::new(), max: 4096 }
    }
}

impl<V: Clone> TtlCache<V> {
    /// The value under `key` if it has not expired at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<V> {
        self.entries.get(key).filter(|(until, _)| *until > now_ms).map(|(_, v)| v.clone())
    }

    /// Keeps `value` under `key` until `until_ms`.
    pub fn put(&mut self, key: String, value: V, now_ms: u64, until_ms: u64) {
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (until, _)| *until > now_ms);
            if self.entries.len() >= self.max {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (until_ms, value));
    }

    /// Number of entries held (expired or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Route(Option<Route>),
    Leases(Vec<Endpoint>),
    Revoked(bool),
    RevokedAt(Option<u64>),
    Ids(Vec<String>),
    Loads(crate::load::Loads),
    Name(Option<String>),
    Index(Vec<(String, String)>),
    Budget(Option<crate::budget::TokenBudget>),
}

/// A [`RouteSource`] that remembers what `inner` answered for `ttl_ms`.
pub struct CachedSource<S> {
    inner: S,
    cache: Mutex<TtlCache<Entry>>,
    ttl_ms: u64,
    clock: fn() -> u64,
}

impl<S> CachedSource<S> {
    /// Caches `inner`'s answers for `ttl_ms` by `clock` (unix ms).
    pub fn new(inner: S, ttl_ms: u64, clock: fn() -> u64) -> Self {
        CachedSource { inner, cache: Mutex::new(TtlCache::default()), ttl_ms, clock }
    }

    /// The source behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lookup(&self, key: &str) -> Option<Entry> {
        if self.ttl_ms == 0 {
            return None;
        }
        self.cache.lock().ok()?.get(key, (self.clock)())
    }

    fn keep(&self, key: String, entry: Entry) {
        if self.ttl_ms == 0 {
            return;
        }
        let now = (self.clock)();
        if let Ok(mut c) = self.cache.lock() {
            c.put(key, entry, now, now + self.ttl_ms);
        }
    }
}

impl<S> CachedSource<S> {
    /// The cached answer under `key`, or `fetch`'s, kept as `wrap` makes it.
    async fn through<T: Clone>(
        &self,
        key: String,
        unwrap: fn(Entry) -> Option<T>,
        wrap: fn(T) -> Entry,
        fetch: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if let Some(hit) = self.lookup(&key).and_then(unwrap) {
            return Ok(hit);
        }
        let v = fetch.await?;
        self.keep(key, wrap(v.clone()));
        Ok(v)
    }
}

fn as_route(e: Entry) -> Option<Option<Route>> {
    match e {
        Entry::Route(r) => Some(r),
        _ => None,
    }
}

impl<S: RouteSource> RouteSource for CachedSource<S> {
    async fn route(&self, name: &str) -> Result<Option<Route>> {
        self.through(format!("route\0{name}"), as_route, Entry::Route, self.inner.route(name)).await
    }
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
        self.through(format!("eph\0{id}"), as_route, Entry::Route, self.inner.ephemeral(id)).await
    }
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
        self.through(format!("host\0{host}"), as_route, Entry::Route, self.inner.route_for_host(host)).await
    }
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
        let unwrap = |e| match e {
            Entry::Leases(l) => Some(l),
            _ => None,
        };
        self.through(format!("leases\0{route}"), unwrap, Entry::Leases, self.inner.leases(route)).await
    }
    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let unwrap = |e| match e {
            Entry::Revoked(r) => Some(r),
            _ => None,
        };
        self.through(format!("revoked\0{token_id}"), unwrap, Entry::Revoked, self.inner.is_revoked(token_id)).await
    }
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
        let unwrap = |e| match e {
            Entry::RevokedAt(at) => Some(at),
            _ => None,
        };
        self.through(format!("revoked-subject\0{subject}"), unwrap, Entry::RevokedAt, self.inner.subject_revoked_at(subject)).await
    }
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
        let unwrap = |e| match e {
            Entry::Ids(ids) => Some(ids),
            _ => None,
        };
        self.through(format!("down\0{route}"), unwrap, Entry::Ids, self.inner.down_endpoints(route)).await
    }
    async fn loads(&self, route: &str) -> Result<crate::load::Loads> {
        let unwrap = |e| match e {
            Entry::Loads(l) => Some(l),
            _ => None,
        };
        self.through(format!("loads\0{route}"), unwrap, Entry::Loads, self.inner.loads(route)).await
    }
    async fn model_route(&self, model: &str) -> Result<Option<String>> {
        let unwrap = |e| match e {
            Entry::Name(n) => Some(n),
            _ => None,
        };
        self.through(format!("model\0{model}"), unwrap, Entry::Name, self.inner.model_route(model)).await
    }
    async fn model_index(&self) -> Result<Vec<(String, String)>> {
        let unwrap = |e| match e {
            Entry::Index(i) => Some(i),
            _ => None,
        };
        self.through("models\0".to_string(), unwrap, Entry::Index, self.inner.model_index()).await
    }
    async fn budget(&self, key: &str) -> Result<Option<crate::budget::TokenBudget>> {
        let unwrap = |e| match e {
            Entry::Budget(b) => Some(b),
            _ => None,
        };
        self.through(format!("budget\0{key}"), unwrap, Entry::Budget, self.inner.budget(key)).await
    }
    async fn jwks(&self, provider: &crate::oidc::Provider, refresh: bool) -> Result<crate::oidc::Jwks> {
        // The inner source keeps keys by their own rule (provider max age, refresh floor).
        self.inner.jwks(provider, refresh).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store, TokenRecord};
    use crate::token::TokenKind;
    use futures_executor::block_on;
    use std::sync::atomic::{AtomicU64, Ordering};

    static NOW: AtomicU64 = AtomicU64::new(1_000_000);
    fn clock() -> u64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn answers_are_reused_until_they_expire() {
        let store = MemoryStore::default();
        block_on(store.put_route(&Route::new("a", vec![]), None)).unwrap();
        let cached = CachedSource::new(store, 5_000, clock);
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        // Changes behind the cache are not seen until the entries expire.
        block_on(cached.inner().delete_route(&Route::new("a", vec![]))).unwrap();
        let rec = TokenRecord {
            id: "tok_x".into(), subject: "s".into(), kind: TokenKind::User, groups: vec![], routes: None,
            description: String::new(), metadata: Default::default(), created_by: "ops".into(), created_at: 0,
            expires_at: 10, revoked_at: Some(1), last_used_at: None, request_count: 0, rate_limit_rpm: None, owner: None, kid: None, registrar: None,
        };
        block_on(cached.inner().revoke(&rec)).unwrap();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        NOW.fetch_add(5_000, Ordering::SeqCst);
        assert!(block_on(cached.route("a")).unwrap().is_none());
        assert!(block_on(cached.is_revoked("tok_x")).unwrap());
    }

    #[test]
    fn zero_ttl_reads_through() {
        let store = MemoryStore::default();
        let cached = CachedSource::new(store, 0, clock);
        assert!(block_on(cached.route("a")).unwrap().is_none());
        block_on(cached.inner().put_route(&Route::new("a", vec![]), None)).unwrap();
        assert!(block_on(cached.route("a")).unwrap().is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c: TtlCache<u32> = TtlCache { entries: HashMap::new(), max: 3 };
        for i in 0..10 {
            c.put(format!("k{i}"), i, 0, 100);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.get("k9", 50), Some(9));
        assert_eq!(c.get("k9", 100), None);
    }
}
