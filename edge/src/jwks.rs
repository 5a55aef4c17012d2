//! Identity providers' keys at the edge ([`gateway_core::jwks::keys`] is the
//! policy): kept in the isolate's memory, and in Workers KV so a new isolate
//! starts from what another fetched.

use crate::json_str;
use gateway_core::jwks::{KeyPlace, Shelved, FETCH_TIMEOUT_MS};
use gateway_core::oidc::{Jwks, JwksCache, Provider, MAX_STALE_SECS};
use gateway_core::schema::kv::jwks_key;
use gateway_core::Result;
use std::cell::RefCell;
use std::time::Duration;
use worker::kv::KvStore;
use worker::{console_warn, Delay};

thread_local! {
    /// Providers whose keys are being looked up beyond memory (KV, then the provider) in this isolate.
    static FLIGHTS: RefCell<std::collections::HashSet<String>> = RefCell::default();
}

/// How often a request waiting for another's lookup looks again.
const FLIGHT_POLL_MS: u64 = 10;

/// A provider's lookup in flight; ends when dropped.
struct Flight(String);

impl Flight {
    fn start(provider: &str) -> Option<Flight> {
        FLIGHTS.with(|f| f.borrow_mut().insert(provider.to_string())).then(|| Flight(provider.to_string()))
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        FLIGHTS.with(|f| f.borrow_mut().remove(&self.0));
    }
}

/// The isolate's memory of keys and the KV namespace they are shared through.
struct Place<'a> {
    kv: &'a KvStore,
    cache: &'a RefCell<JwksCache>,
}

impl KeyPlace for Place<'_> {
    type Turn = Flight;

    fn with_cache<T>(&self, f: impl FnOnce(&mut JwksCache) -> T) -> T {
        f(&mut self.cache.borrow_mut())
    }

    /// A request may not wait on another request's I/O in workerd: a burst of unknown
    /// `kid`s polls on its own timer until the first lookup ends.
    async fn turn(&self, provider: &str) -> Option<Flight> {
        let mut waited = 0;
        loop {
            if let Some(flight) = Flight::start(provider) {
                return Some(flight);
            }
            if waited >= FETCH_TIMEOUT_MS + 500 {
                return None;
            }
            Delay::from(Duration::from_millis(FLIGHT_POLL_MS)).await;
            waited += FLIGHT_POLL_MS;
        }
    }

    async fn shelved(&self, provider: &Provider) -> Option<Shelved> {
        self.kv.get(&jwks_key(&provider.name)).json::<Shelved>().await.ok().flatten()
    }

    async fn shelve(&self, provider: &Provider, keys: &Shelved) {
        let Ok(doc) = serde_json::to_string(keys) else { return };
        // Another isolate may be writing the same key; losing that race loses nothing.
        if let Ok(put) = self.kv.put(&jwks_key(&provider.name), doc) {
            let _ = put.expiration_ttl(MAX_STALE_SECS).execute().await;
        }
    }

    fn fetch_failed(&self, provider: &Provider, why: &str) {
        console_warn!(
            "{{\"level\":\"warn\",\"msg\":\"identity provider keys not fetched\",\"provider\":{},\"url\":{},\"detail\":{}}}",
            json_str(&provider.name),
            json_str(&provider.jwks_url),
            json_str(why)
        );
    }
}

/// The provider's keys: memory, then KV, then (when `may_fetch`) the provider; stale keys
/// when it is unreachable. The state object passes `may_fetch = false`: it never waits on
/// an identity provider while it holds its lock; the Worker fetched just before calling it.
pub(crate) async fn jwks(kv: &KvStore, cache: &RefCell<JwksCache>, provider: &Provider, refresh: bool, may_fetch: bool) -> Result<Jwks> {
    let web = crate::web::Web { env: None };
    gateway_core::jwks::keys(&Place { kv, cache }, &web, provider, crate::now_secs(), refresh, may_fetch).await
}
