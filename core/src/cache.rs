//! A short-lived cache of the data plane's reads, so the hot path does not
//! wait on the store for every request, and a store outage does not take the
//! data plane down.
//!
//! The rules, decided here from the `now` the caller passes in (no I/O, no clock):
//!
//! - **Fresh** for the first half of `GATEWAY_CACHE_SECONDS`: the kept answer is used.
//! - **Stale** in the second half: the kept answer is still used, and the key is noted so the
//!   adapter refreshes it off the request path (stale-while-revalidate). A key in use at
//!   least once per half period is never read on a request's time, and while the store
//!   answers no answer older than `GATEWAY_CACHE_SECONDS` is used.
//! - **Expired** past `GATEWAY_CACHE_SECONDS`: the request reads the store. If that read (or
//!   any refresh) fails, the store is taken as failing, and until a read succeeds again a kept
//!   answer is used for at most `GATEWAY_STALE_IF_ERROR_SECONDS` past its expiry
//!   (stale-if-error), refreshed off the request path; past that bound the read's error
//!   ([`crate::Error::StoreUnavailable`], a 503) is the answer. 0 turns stale-if-error off.
//!
//! `GATEWAY_CACHE_SECONDS=0` keeps nothing: every request reads the store.

use crate::error::Result;
use crate::route::{Endpoint, Route};
use crate::store::RouteSource;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// How long a kept answer may be used ([`TtlCache::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freshness {
    /// `GATEWAY_CACHE_SECONDS` in ms: fresh for the first half, stale (used, refreshed
    /// behind) for the second; 0 keeps nothing.
    pub ttl_ms: u64,
    /// `GATEWAY_STALE_IF_ERROR_SECONDS` in ms: how long past `ttl_ms` an answer is still
    /// used while the store cannot be read; 0 never uses one past `ttl_ms`.
    pub stale_if_error_ms: u64,
}

impl Freshness {
    /// Age (ms) from which a kept answer is refreshed behind the request.
    pub fn refresh_after_ms(&self) -> u64 {
        self.ttl_ms / 2
    }

    /// Age (ms) from which a kept answer is never used.
    pub fn usable_until_ms(&self) -> u64 {
        self.ttl_ms.saturating_add(self.stale_if_error_ms)
    }
}

/// What [`TtlCache::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V> {
    /// Use it; nothing else to do.
    Fresh(V),
    /// Use it; the key is noted for a refresh off the request path ([`TtlCache::take_stale`]).
    Stale(V),
    /// Nothing usable: read the store now, then [`TtlCache::fresh`] or [`TtlCache::failed`].
    Miss,
}

/// A refresh claimed this long ago and neither finished nor failed was dropped: claim it again.
const CLAIM_MS: u64 = 10_000;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    /// When the store gave it (unix ms).
    read_at: u64,
    /// When a refresh of it was handed out, until it succeeds or fails.
    claimed_at: Option<u64>,
}

/// Values by key with the rules of this module. Bounded: when full, entries past any use go
/// first, then everything.
#[derive(Debug)]
pub struct TtlCache<V> {
    entries: HashMap<String, Slot<V>>,
    max: usize,
    /// Keys to refresh off the request path.
    stale: HashSet<String>,
    /// Since when reads have been failing (no read succeeded since), if they are.
    failing_since: Option<u64>,
}

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        TtlCache {
            entries: HashMap::new(),
            max: 4096,
            stale: HashSet::new(),
            failing_since: None,
        }
    }
}

impl<V: Clone> TtlCache<V> {
    /// The value under `key` at `now_ms` by `policy`; a stale one's key is noted for refresh
    /// (once per refresh under way).
    pub fn lookup(&mut self, key: &str, now_ms: u64, policy: Freshness) -> Lookup<V> {
        if policy.ttl_ms == 0 {
            return Lookup::Miss;
        }
        let failing = self.failing_since.is_some();
        let Some(slot) = self.entries.get_mut(key) else {
            return Lookup::Miss;
        };
        let age = now_ms.saturating_sub(slot.read_at);
        if age < policy.refresh_after_ms() {
            return Lookup::Fresh(slot.value.clone());
        }
        let usable = age < policy.ttl_ms || (failing && age < policy.usable_until_ms());
        if !usable {
            return Lookup::Miss;
        }
        if slot
            .claimed_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= CLAIM_MS)
        {
            slot.claimed_at = Some(now_ms);
            self.stale.insert(key.to_string());
        }
        Lookup::Stale(slot.value.clone())
    }

    /// A read of `key` gave `value` at `now_ms`: kept (unless caching is off), and reads are
    /// no longer failing.
    pub fn fresh(&mut self, key: String, value: V, now_ms: u64, policy: Freshness) {
        self.failing_since = None;
        if policy.ttl_ms == 0 {
            return;
        }
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            let until = policy.usable_until_ms();
            self.entries
                .retain(|_, s| now_ms.saturating_sub(s.read_at) < until);
            if self.entries.len() >= self.max {
                self.entries.clear();
            }
            self.stale.retain(|k| self.entries.contains_key(k));
        }
        self.stale.remove(&key);
        self.entries.insert(
            key,
            Slot {
                value,
                read_at: now_ms,
                claimed_at: None,
            },
        );
    }

    /// A read of `key` failed at `now_ms`: reads are failing from now on (until one
    /// succeeds), and the kept value is the answer while it is within stale-if-error's bound.
    pub fn failed(&mut self, key: &str, now_ms: u64, policy: Freshness) -> Option<V> {
        self.failing_since.get_or_insert(now_ms);
        if policy.ttl_ms == 0 {
            return None;
        }
        let slot = self.entries.get_mut(key)?;
        slot.claimed_at = None;
        (now_ms.saturating_sub(slot.read_at) < policy.usable_until_ms()).then(|| slot.value.clone())
    }

    /// The keys [`lookup`](Self::lookup) found stale since the last call: refresh each, then
    /// call [`fresh`](Self::fresh) or [`failed`](Self::failed).
    pub fn take_stale(&mut self) -> Vec<String> {
        let mut keys: Vec<String> = self.stale.drain().collect();
        keys.sort();
        keys
    }

    /// True when some key waits for a refresh.
    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// Since when reads have been failing, if they are (unix ms).
    pub fn failing_since(&self) -> Option<u64> {
        self.failing_since
    }

    /// Number of entries held (usable or not).
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

/// What one [`CachedSource::refresh_stale`] did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Keys read again.
    pub refreshed: usize,
    /// Keys whose read failed, and the first failure.
    pub failed: usize,
    pub first_error: Option<crate::Error>,
}

/// A [`RouteSource`] that keeps what `inner` answered by this module's rules.
pub struct CachedSource<S> {
    inner: S,
    cache: Mutex<TtlCache<Entry>>,
    policy: Freshness,
    clock: fn() -> u64,
}

impl<S> CachedSource<S> {
    /// Keeps `inner`'s answers for `ttl_ms` by `clock` (unix ms); no stale-if-error
    /// ([`Self::with_stale_if_error`]).
    pub fn new(inner: S, ttl_ms: u64, clock: fn() -> u64) -> Self {
        CachedSource {
            inner,
            cache: Mutex::new(TtlCache::default()),
            policy: Freshness {
                ttl_ms,
                stale_if_error_ms: 0,
            },
            clock,
        }
    }

    /// The same, using a kept answer up to `ms` past its expiry while the store fails.
    pub fn with_stale_if_error(mut self, ms: u64) -> Self {
        self.policy.stale_if_error_ms = ms;
        self
    }

    /// The source behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// True when some kept answer waits for a refresh ([`Self::refresh_stale`]).
    pub fn has_stale(&self) -> bool {
        self.cache.lock().map(|c| c.has_stale()).unwrap_or(false)
    }

    /// Since when the store's reads have been failing, if they are (unix ms).
    pub fn failing_since(&self) -> Option<u64> {
        self.cache.lock().ok().and_then(|c| c.failing_since())
    }

    fn lookup(&self, key: &str) -> Lookup<Entry> {
        if self.policy.ttl_ms == 0 {
            return Lookup::Miss;
        }
        let now = (self.clock)();
        match self.cache.lock() {
            Ok(mut c) => c.lookup(key, now, self.policy),
            Err(_) => Lookup::Miss,
        }
    }

    fn keep(&self, key: String, entry: Entry) {
        let now = (self.clock)();
        if let Ok(mut c) = self.cache.lock() {
            c.fresh(key, entry, now, self.policy);
        }
    }

    fn failed(&self, key: &str) -> Option<Entry> {
        let now = (self.clock)();
        self.cache.lock().ok()?.failed(key, now, self.policy)
    }

    /// The kept answer under `key`, or `fetch`'s (kept as `wrap` makes it); when `fetch`
    /// fails, the kept answer still within stale-if-error's bound, else the failure.
    async fn through<T: Clone>(
        &self,
        key: String,
        unwrap: fn(Entry) -> Option<T>,
        wrap: fn(T) -> Entry,
        fetch: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if let Lookup::Fresh(e) | Lookup::Stale(e) = self.lookup(&key) {
            if let Some(hit) = unwrap(e) {
                return Ok(hit);
            }
        }
        match fetch.await {
            Ok(v) => {
                self.keep(key, wrap(v.clone()));
                Ok(v)
            }
            Err(e) => self.failed(&key).and_then(unwrap).ok_or(e),
        }
    }
}

impl<S: RouteSource> CachedSource<S> {
    /// Reads again every key a request found stale (all at once), off the request path: the
    /// adapter runs it after, or beside, the request that noticed ([`Self::has_stale`]).
    pub async fn refresh_stale(&self) -> Refreshed {
        let keys = match self.cache.lock() {
            Ok(mut c) => c.take_stale(),
            Err(_) => Vec::new(),
        };
        let reads = keys.into_iter().map(|key| async move {
            let read = self.read(&key).await;
            (key, read)
        });
        let mut out = Refreshed::default();
        for (key, read) in futures_util::future::join_all(reads).await {
            match read {
                Ok(entry) => {
                    self.keep(key, entry);
                    out.refreshed += 1;
                }
                Err(e) => {
                    self.failed(&key);
                    out.failed += 1;
                    out.first_error.get_or_insert(e);
                }
            }
        }
        out
    }

    /// The inner source's answer for a cache key (`kind\0argument`).
    async fn read(&self, key: &str) -> Result<Entry> {
        let (kind, arg) = key.split_once('\0').unwrap_or((key, ""));
        Ok(match kind {
            "route" => Entry::Route(self.inner.route(arg).await?),
            "eph" => Entry::Route(self.inner.ephemeral(arg).await?),
            "host" => Entry::Route(self.inner.route_for_host(arg).await?),
            "leases" => Entry::Leases(self.inner.leases(arg).await?),
            "revoked" => Entry::Revoked(self.inner.is_revoked(arg).await?),
            "revoked-subject" => Entry::RevokedAt(self.inner.subject_revoked_at(arg).await?),
            "down" => Entry::Ids(self.inner.down_endpoints(arg).await?),
            "loads" => Entry::Loads(self.inner.loads(arg).await?),
            "model" => Entry::Name(self.inner.model_route(arg).await?),
            "models" => Entry::Index(self.inner.model_index().await?),
            "budget" => Entry::Budget(self.inner.budget(arg).await?),
            _ => {
                return Err(crate::Error::Internal(format!(
                    "no read for cache key kind `{kind}`"
                )))
            }
        })
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
        self.through(
            format!("route\0{name}"),
            as_route,
            Entry::Route,
            self.inner.route(name),
        )
        .await
    }
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
        self.through(
            format!("eph\0{id}"),
            as_route,
            Entry::Route,
            self.inner.ephemeral(id),
        )
        .await
    }
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
        self.through(
            format!("host\0{host}"),
            as_route,
            Entry::Route,
            self.inner.route_for_host(host),
        )
        .await
    }
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
        let unwrap = |e| match e {
            Entry::Leases(l) => Some(l),
            _ => None,
        };
        self.through(
            format!("leases\0{route}"),
            unwrap,
            Entry::Leases,
            self.inner.leases(route),
        )
        .await
    }
    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let unwrap = |e| match e {
            Entry::Revoked(r) => Some(r),
            _ => None,
        };
        self.through(
            format!("revoked\0{token_id}"),
            unwrap,
            Entry::Revoked,
            self.inner.is_revoked(token_id),
        )
        .await
    }
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
        let unwrap = |e| match e {
            Entry::RevokedAt(at) => Some(at),
            _ => None,
        };
        self.through(
            format!("revoked-subject\0{subject}"),
            unwrap,
            Entry::RevokedAt,
            self.inner.subject_revoked_at(subject),
        )
        .await
    }
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
        let unwrap = |e| match e {
            Entry::Ids(ids) => Some(ids),
            _ => None,
        };
        self.through(
            format!("down\0{route}"),
            unwrap,
            Entry::Ids,
            self.inner.down_endpoints(route),
        )
        .await
    }
    async fn loads(&self, route: &str) -> Result<crate::load::Loads> {
        let unwrap = |e| match e {
            Entry::Loads(l) => Some(l),
            _ => None,
        };
        self.through(
            format!("loads\0{route}"),
            unwrap,
            Entry::Loads,
            self.inner.loads(route),
        )
        .await
    }
    async fn model_route(&self, model: &str) -> Result<Option<String>> {
        let unwrap = |e| match e {
            Entry::Name(n) => Some(n),
            _ => None,
        };
        self.through(
            format!("model\0{model}"),
            unwrap,
            Entry::Name,
            self.inner.model_route(model),
        )
        .await
    }
    async fn model_index(&self) -> Result<Vec<(String, String)>> {
        let unwrap = |e| match e {
            Entry::Index(i) => Some(i),
            _ => None,
        };
        self.through(
            "models\0".to_string(),
            unwrap,
            Entry::Index,
            self.inner.model_index(),
        )
        .await
    }
    async fn budget(&self, key: &str) -> Result<Option<crate::budget::TokenBudget>> {
        let unwrap = |e| match e {
            Entry::Budget(b) => Some(b),
            _ => None,
        };
        self.through(
            format!("budget\0{key}"),
            unwrap,
            Entry::Budget,
            self.inner.budget(key),
        )
        .await
    }
    async fn jwks(
        &self,
        provider: &crate::oidc::Provider,
        refresh: bool,
    ) -> Result<crate::oidc::Jwks> {
        // The inner source keeps keys by their own rule (provider max age, refresh floor).
        self.inner.jwks(provider, refresh).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AdminStore, MemoryStore, TokenRecord};
    use crate::Error;
    use futures_executor::block_on;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    // A fake clock per test thread (tests run side by side).
    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(1_000_000) };
    }
    fn clock() -> u64 {
        NOW.with(Cell::get)
    }
    fn advance(ms: u64) {
        NOW.with(|n| n.set(n.get() + ms));
    }

    const POLICY: Freshness = Freshness {
        ttl_ms: 1_000,
        stale_if_error_ms: 6_000,
    };

    #[test]
    fn an_entry_is_fresh_then_stale_and_refreshed_once_then_expired() {
        let mut c: TtlCache<u32> = TtlCache::default();
        assert_eq!(c.lookup("k", 0, POLICY), Lookup::Miss);
        c.fresh("k".into(), 1, 0, POLICY);
        assert_eq!(c.lookup("k", 499, POLICY), Lookup::Fresh(1));
        assert!(!c.has_stale());
        // The second half of the cache period: used, and noted for a refresh only once.
        assert_eq!(c.lookup("k", 500, POLICY), Lookup::Stale(1));
        assert_eq!(c.lookup("k", 600, POLICY), Lookup::Stale(1));
        assert_eq!(c.take_stale(), vec!["k".to_string()]);
        assert_eq!(c.lookup("k", 700, POLICY), Lookup::Stale(1));
        assert!(
            c.take_stale().is_empty(),
            "a refresh under way is not handed out twice"
        );
        // While the store answers, never used at or past GATEWAY_CACHE_SECONDS.
        assert_eq!(c.lookup("k", 1_000, POLICY), Lookup::Miss);
        c.fresh("k".into(), 2, 1_000, POLICY);
        assert_eq!(c.lookup("k", 1_400, POLICY), Lookup::Fresh(2));
    }

    #[test]
    fn a_refresh_never_finished_is_handed_out_again() {
        let long = Freshness {
            ttl_ms: 4 * CLAIM_MS,
            stale_if_error_ms: 0,
        };
        let mut c: TtlCache<u32> = TtlCache::default();
        c.fresh("k".into(), 1, 0, long);
        assert_eq!(c.lookup("k", 2 * CLAIM_MS, long), Lookup::Stale(1));
        assert_eq!(c.take_stale().len(), 1);
        assert_eq!(c.lookup("k", 3 * CLAIM_MS - 1, long), Lookup::Stale(1));
        assert!(!c.has_stale());
        assert_eq!(c.lookup("k", 3 * CLAIM_MS, long), Lookup::Stale(1));
        assert_eq!(c.take_stale().len(), 1);
    }

    #[test]
    fn a_failing_store_gets_the_stale_entry_until_the_bound_then_nothing() {
        let mut c: TtlCache<u32> = TtlCache::default();
        c.fresh("k".into(), 1, 0, POLICY);
        c.fresh("j".into(), 7, 0, POLICY);
        assert_eq!(c.lookup("k", 600, POLICY), Lookup::Stale(1));
        assert_eq!(c.take_stale(), vec!["k".to_string()]);
        // The refresh fails: the store is failing from then on.
        assert_eq!(c.failed("k", 650, POLICY), Some(1));
        assert_eq!(c.failing_since(), Some(650));
        // Past the cache period, while failing: used without a read, refreshed behind.
        assert_eq!(c.lookup("k", 1_200, POLICY), Lookup::Stale(1));
        assert_eq!(
            c.lookup("j", 1_200, POLICY),
            Lookup::Stale(7),
            "every kept answer, not only the one that failed"
        );
        assert_eq!(c.take_stale(), vec!["j".to_string(), "k".to_string()]);
        assert_eq!(c.failed("k", 1_300, POLICY), Some(1));
        assert_eq!(c.lookup("k", 6_999, POLICY), Lookup::Stale(1));
        // Past GATEWAY_CACHE_SECONDS + GATEWAY_STALE_IF_ERROR_SECONDS: never used again.
        assert_eq!(c.lookup("k", 7_000, POLICY), Lookup::Miss);
        assert_eq!(c.failed("k", 7_000, POLICY), None);
        assert_eq!(
            c.failing_since(),
            Some(650),
            "failing since the first failure"
        );
        // The store answers again: fresh, and the store is no longer failing.
        c.fresh("k".into(), 3, 7_100, POLICY);
        assert_eq!(c.failing_since(), None);
        assert_eq!(c.lookup("k", 7_200, POLICY), Lookup::Fresh(3));
        assert_eq!(
            c.lookup("j", 7_200, POLICY),
            Lookup::Miss,
            "j is past its bound"
        );
    }

    #[test]
    fn a_read_that_fails_past_expiry_falls_back_to_the_kept_answer_within_the_bound() {
        let mut c: TtlCache<u32> = TtlCache::default();
        c.fresh("k".into(), 1, 0, POLICY);
        // Expired and not yet known to be failing: the request reads; the read fails.
        assert_eq!(c.lookup("k", 2_000, POLICY), Lookup::Miss);
        assert_eq!(c.failed("k", 2_500, POLICY), Some(1));
        // From then on no request waits: the kept answer until the bound.
        assert_eq!(c.lookup("k", 2_600, POLICY), Lookup::Stale(1));
    }

    #[test]
    fn zero_stale_if_error_fails_closed_and_zero_ttl_keeps_nothing() {
        let closed = Freshness {
            ttl_ms: 1_000,
            stale_if_error_ms: 0,
        };
        let mut c: TtlCache<u32> = TtlCache::default();
        c.fresh("k".into(), 1, 0, closed);
        assert_eq!(
            c.failed("k", 900, closed),
            Some(1),
            "within the cache period, as without a failure"
        );
        assert_eq!(c.lookup("k", 1_000, closed), Lookup::Miss);
        assert_eq!(c.failed("k", 1_000, closed), None);

        let off = Freshness {
            ttl_ms: 0,
            stale_if_error_ms: 60_000,
        };
        let mut c: TtlCache<u32> = TtlCache::default();
        c.fresh("k".into(), 1, 0, off);
        assert!(c.is_empty());
        assert_eq!(c.lookup("k", 0, off), Lookup::Miss);
        assert_eq!(c.failed("k", 1, off), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c: TtlCache<u32> = TtlCache {
            max: 3,
            ..TtlCache::default()
        };
        for i in 0..10 {
            c.fresh(format!("k{i}"), i, 0, POLICY);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.lookup("k9", 400, POLICY), Lookup::Fresh(9));
        assert_eq!(c.lookup("k9", 1_000, POLICY), Lookup::Miss);
        // Entries past any use go first.
        let mut c: TtlCache<u32> = TtlCache {
            max: 2,
            ..TtlCache::default()
        };
        c.fresh("old".into(), 0, 0, POLICY);
        c.fresh("new".into(), 1, 7_000, POLICY);
        c.fresh("newer".into(), 2, 7_001, POLICY);
        assert_eq!(c.len(), 2);
        assert_eq!(c.lookup("new", 7_002, POLICY), Lookup::Fresh(1));
    }

    /// A store that can be taken down, counting its reads.
    #[derive(Default)]
    struct Flaky {
        store: MemoryStore,
        down: AtomicBool,
        reads: AtomicUsize,
    }

    impl Flaky {
        fn read(&self) -> Result<()> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::StoreUnavailable("down".into()));
            }
            Ok(())
        }
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl RouteSource for Flaky {
        async fn route(&self, name: &str) -> Result<Option<Route>> {
            self.read()?;
            self.store.route(name).await
        }
        async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
            self.read()?;
            self.store.ephemeral(id).await
        }
        async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
            self.read()?;
            self.store.route_for_host(host).await
        }
        async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
            self.read()?;
            self.store.leases(route).await
        }
        async fn is_revoked(&self, token_id: &str) -> Result<bool> {
            self.read()?;
            self.store.is_revoked(token_id).await
        }
        async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
            self.read()?;
            self.store.subject_revoked_at(subject).await
        }
        async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
            self.read()?;
            self.store.down_endpoints(route).await
        }
        async fn loads(&self, route: &str) -> Result<crate::load::Loads> {
            self.read()?;
            self.store.loads(route).await
        }
        async fn model_route(&self, model: &str) -> Result<Option<String>> {
            self.read()?;
            self.store.model_route(model).await
        }
        async fn model_index(&self) -> Result<Vec<(String, String)>> {
            self.read()?;
            self.store.model_index().await
        }
        async fn budget(&self, key: &str) -> Result<Option<crate::budget::TokenBudget>> {
            self.read()?;
            self.store.budget(key).await
        }
        async fn jwks(
            &self,
            provider: &crate::oidc::Provider,
            refresh: bool,
        ) -> Result<crate::oidc::Jwks> {
            self.store.jwks(provider, refresh).await
        }
    }

    fn record(id: &str) -> TokenRecord {
        TokenRecord { revoked_at: Some(1), ..crate::fixtures::token_record(id, u64::MAX / 2) }
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
        block_on(cached.inner().revoke(&record("tok_x"))).unwrap();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        advance(5_000);
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
    fn a_warm_source_never_reads_on_the_request_and_refreshes_behind_it() {
        let cached = CachedSource::new(Flaky::default(), 1_000, clock).with_stale_if_error(6_000);
        block_on(
            cached
                .inner()
                .store
                .put_route(&Route::new("a", vec![]), None),
        )
        .unwrap();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        assert_eq!(cached.inner().reads(), 2, "cold: read");
        block_on(cached.inner().store.revoke(&record("tok_x"))).unwrap();
        advance(600);
        // Stale: the kept answers, no read; both noted.
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert_eq!(cached.inner().reads(), 2);
        assert!(cached.has_stale());
        // Off the request path: both read again at once.
        let done = block_on(cached.refresh_stale());
        assert_eq!((done.refreshed, done.failed), (2, 0));
        assert!(!cached.has_stale());
        assert_eq!(cached.inner().reads(), 4);
        assert!(
            block_on(cached.is_revoked("tok_x")).unwrap(),
            "the refresh brought the revocation"
        );
        assert_eq!(cached.inner().reads(), 4, "and is fresh again");
        // Idle past the cache period: a request reads (the propagation bound holds).
        advance(1_000);
        block_on(cached.route("a")).unwrap();
        assert_eq!(cached.inner().reads(), 5);
    }

    #[test]
    fn a_store_outage_is_served_from_the_kept_answers_for_the_bound_then_503_then_recovers() {
        let cached = CachedSource::new(Flaky::default(), 1_000, clock).with_stale_if_error(6_000);
        block_on(
            cached
                .inner()
                .store
                .put_route(&Route::new("a", vec![]), None),
        )
        .unwrap();
        let read_at = clock();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        cached.inner().down.store(true, Ordering::SeqCst);

        // Stale, refreshed behind: the refresh fails.
        advance(600);
        assert!(block_on(cached.route("a")).unwrap().is_some());
        let done = block_on(cached.refresh_stale());
        assert_eq!(done.failed, 1);
        assert_eq!(
            done.first_error,
            Some(Error::StoreUnavailable("down".into()))
        );
        assert!(cached.failing_since().is_some());

        // Past the cache period: every kept answer is used without a read, up to the bound.
        advance(1_000);
        let reads = cached.inner().reads();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(!block_on(cached.is_revoked("tok_x")).unwrap());
        assert_eq!(
            cached.inner().reads(),
            reads,
            "no request waits on the failing store"
        );
        block_on(cached.refresh_stale());
        NOW.with(|n| n.set(read_at + 6_999));
        assert!(block_on(cached.route("a")).unwrap().is_some());

        // Past the bound: the read's error, at once.
        NOW.with(|n| n.set(read_at + 7_000));
        assert_eq!(
            block_on(cached.route("a")),
            Err(Error::StoreUnavailable("down".into()))
        );
        assert!(block_on(cached.is_revoked("tok_x")).is_err());
        // A key never read while the store is down: the error too.
        assert!(block_on(cached.route("b")).is_err());

        // The store is back: answered and kept again.
        cached.inner().down.store(false, Ordering::SeqCst);
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert_eq!(cached.failing_since(), None);
        let reads = cached.inner().reads();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert_eq!(cached.inner().reads(), reads);
    }

    #[test]
    fn a_read_failing_past_expiry_falls_back_and_later_reads_do_not_wait() {
        let cached = CachedSource::new(Flaky::default(), 1_000, clock).with_stale_if_error(6_000);
        block_on(
            cached
                .inner()
                .store
                .put_route(&Route::new("a", vec![]), None),
        )
        .unwrap();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert!(block_on(cached.leases("a")).unwrap().is_empty());
        cached.inner().down.store(true, Ordering::SeqCst);
        advance(2_000);
        // The first expired read fails and falls back; the next key is not read on this request.
        let reads = cached.inner().reads();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        assert_eq!(cached.inner().reads(), reads + 1);
        assert!(block_on(cached.leases("a")).unwrap().is_empty());
        assert_eq!(cached.inner().reads(), reads + 1);
    }

    #[test]
    fn with_stale_if_error_off_an_outage_fails_closed_at_expiry() {
        let cached = CachedSource::new(Flaky::default(), 1_000, clock);
        block_on(
            cached
                .inner()
                .store
                .put_route(&Route::new("a", vec![]), None),
        )
        .unwrap();
        assert!(block_on(cached.route("a")).unwrap().is_some());
        cached.inner().down.store(true, Ordering::SeqCst);
        advance(1_000);
        assert_eq!(
            block_on(cached.route("a")),
            Err(Error::StoreUnavailable("down".into()))
        );
    }
}
