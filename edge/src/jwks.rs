//! Identity providers' keys at the edge: kept in the isolate's memory, and in
//! Workers KV so a new isolate starts from what another fetched; fetched from
//! the provider's configured URL only when neither may answer
//! ([`gateway_core::oidc::usable`]).

use crate::{json_str, now_secs};
use futures_util::future::{select, Either};
use gateway_core::oidc::{usable, Jwks, JwksCache, Provider, MAX_JWKS_BYTES, MAX_STALE_SECS};
use gateway_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::time::Duration;
use worker::kv::KvStore;
use worker::{console_warn, Delay, Fetch};

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

/// How long a fetch of a JWKS may take.
const FETCH_TIMEOUT_MS: u64 = 3_000;

/// A JWKS document as kept in KV.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// Where it was fetched from: a provider whose `jwks_url` changed never reuses the old keys.
    url: String,
    raw: String,
    fetched_at: u64,
}

fn kv_key(provider: &Provider) -> String {
    format!("jwks:{}", provider.name)
}

/// The provider's keys: memory, then KV, then (when `may_fetch`) the provider; stale keys
/// when it is unreachable. The state object passes `may_fetch = false`: it never waits on
/// an identity provider while it holds its lock; the Worker fetched just before calling it.
pub(crate) async fn jwks(kv: &KvStore, cache: &RefCell<JwksCache>, provider: &Provider, refresh: bool, may_fetch: bool) -> Result<Jwks> {
    let now = now_secs();
    let cached = cache.borrow().get(provider, now, refresh);
    if let Some(j) = cached {
        return Ok(j);
    }
    // One lookup beyond memory in flight per provider in this isolate: a burst of unknown
    // `kid`s waits for the first (polling on its own timer: a request may not wait on another
    // request's I/O in workerd), then reads what it brought.
    let mut waited = 0;
    let _flight = loop {
        if let Some(flight) = Flight::start(&provider.name) {
            break flight;
        }
        if waited >= FETCH_TIMEOUT_MS + 500 {
            return cache.borrow().stale(provider, now).ok_or_else(|| Error::IdentityProviderUnavailable(provider.name.clone()));
        }
        Delay::from(Duration::from_millis(FLIGHT_POLL_MS)).await;
        waited += FLIGHT_POLL_MS;
        let cached = cache.borrow().get(provider, now_secs(), refresh);
        if let Some(j) = cached {
            return Ok(j);
        }
    };
    let stored = kv.get(&kv_key(provider)).json::<Stored>().await.ok().flatten().filter(|s| s.url == provider.jwks_url);
    if let Some(s) = stored.as_ref().filter(|s| usable(s.fetched_at, now, provider.jwks_max_age, refresh)) {
        if let Ok(j) = Jwks::parse(&s.raw, s.fetched_at) {
            cache.borrow_mut().put(provider, j.clone());
            return Ok(j);
        }
    }
    let backing_off = !may_fetch || cache.borrow().backing_off(provider, now);
    let fetched = if backing_off {
        Err(Error::Internal("a fetch failed moments ago".into()))
    } else {
        fetch(&provider.jwks_url).await.and_then(|raw| Jwks::parse(&raw, now).map(|j| (raw, j)))
    };
    match fetched {
        Ok((raw, j)) => {
            cache.borrow_mut().put(provider, j.clone());
            let doc = serde_json::to_string(&Stored { url: provider.jwks_url.clone(), raw, fetched_at: now }).unwrap_or_default();
            // Another isolate may be writing the same key; losing that race loses nothing.
            if let Ok(put) = kv.put(&kv_key(provider), doc) {
                let _ = put.expiration_ttl(MAX_STALE_SECS).execute().await;
            }
            Ok(j)
        }
        Err(e) => {
            if !backing_off {
                cache.borrow_mut().failed(provider, now);
                console_warn!(
                    "{{\"level\":\"warn\",\"msg\":\"identity provider keys not fetched\",\"provider\":{},\"url\":{},\"detail\":{}}}",
                    json_str(&provider.name),
                    json_str(&provider.jwks_url),
                    json_str(&e.to_string())
                );
            }
            let stale = cache.borrow().stale(provider, now);
            stale
                .or_else(|| stored.filter(|s| now < s.fetched_at + MAX_STALE_SECS).and_then(|s| Jwks::parse(&s.raw, s.fetched_at).ok()))
                .ok_or_else(|| Error::IdentityProviderUnavailable(provider.name.clone()))
        }
    }
}

async fn fetch(url: &str) -> Result<String> {
    let err = |what: String| Error::Internal(format!("jwks fetch: {what}"));
    let controller = web_sys::AbortController::new().map_err(|e| err(format!("{e:?}")))?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| err(format!("{e:?}")))?;
    let fetch = Fetch::Request(worker::Request::from(req));
    let sent = Box::pin(fetch.send());
    let mut res = match select(sent, Delay::from(Duration::from_millis(FETCH_TIMEOUT_MS))).await {
        Either::Left((r, _)) => r.map_err(|e| err(e.to_string()))?,
        Either::Right(_) => {
            controller.abort();
            return Err(err("timed out".into()));
        }
    };
    if res.status_code() != 200 {
        return Err(err(format!("status {}", res.status_code())));
    }
    let declared = res.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_JWKS_BYTES) {
        return Err(err("document too large".into()));
    }
    // Capped while reading, also when no Content-Length was given.
    let body = crate::read_capped(res.stream(), MAX_JWKS_BYTES).await.map_err(|e| err(e.to_string()))?.ok_or_else(|| err("document too large".into()))?;
    String::from_utf8(body).map_err(|_| err("not UTF-8".into()))
}
