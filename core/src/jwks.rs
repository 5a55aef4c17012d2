//! Where an identity provider's keys come from, once for both platforms: this
//! instance's memory ([`JwksCache`]), then a shelf shared between instances
//! (Workers KV at the edge; none on Lambda), then the provider's configured
//! `jwks_url` (within [`FETCH_TIMEOUT_MS`], at most [`MAX_JWKS_BYTES`], status
//! 200 only), and stale keys up to [`MAX_STALE_SECS`] when the provider cannot
//! be reached. One lookup beyond memory at a time per provider; after a failed
//! fetch none is tried for [`crate::oidc::MIN_REFRESH_SECS`].
//!
//! A platform says how it keeps and shares keys ([`KeyPlace`]) and how it
//! makes a GET ([`Fetcher`]); [`keys`] is the policy.

use crate::error::{Error, Result};
use crate::fetch::{Fetcher, Get};
use crate::oidc::{usable, Jwks, JwksCache, Provider, MAX_JWKS_BYTES, MAX_STALE_SECS};
use serde::{Deserialize, Serialize};

/// How long a fetch of a JWKS may take, ms.
pub const FETCH_TIMEOUT_MS: u64 = 3_000;

/// A key set as kept on a shelf shared between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shelved {
    /// Where it was fetched from: a provider whose `jwks_url` changed never reuses the old keys.
    pub url: String,
    pub raw: String,
    pub fetched_at: u64,
}

/// How a platform keeps identity providers' keys between requests.
#[allow(async_fn_in_trait)]
pub trait KeyPlace {
    /// Held while this request looks beyond memory for a provider's keys.
    type Turn;
    /// This instance's memory of key sets.
    fn with_cache<T>(&self, f: impl FnOnce(&mut JwksCache) -> T) -> T;
    /// Waits until no other request of this instance looks beyond memory for
    /// `provider`; `None` when it waited longer than a fetch may take.
    async fn turn(&self, provider: &str) -> Option<Self::Turn>;
    /// What another instance fetched, if the platform shares keys between instances.
    async fn shelved(&self, _provider: &Provider) -> Option<Shelved> {
        None
    }
    /// Shares what this instance fetched; losing a race with another instance loses nothing.
    async fn shelve(&self, _provider: &Provider, _keys: &Shelved) {}
    /// A fetch failed (a warning line in the platform's log; the URL is the configured one).
    fn fetch_failed(&self, provider: &Provider, why: &str);
}

/// A provider's keys at `now` (`refresh`: a token named a `kid` the keys held
/// do not have). `may_fetch = false` stops at the shelf: the edge's state object
/// never waits on an identity provider while it holds its lock (the Worker
/// fetched just before calling it).
pub async fn keys(place: &impl KeyPlace, web: &impl Fetcher, provider: &Provider, now: u64, refresh: bool, may_fetch: bool) -> Result<Jwks> {
    let unavailable = || Error::IdentityProviderUnavailable(provider.name.clone());
    if let Some(set) = place.with_cache(|k| k.get(provider, now, refresh)) {
        return Ok(set);
    }
    let Some(_turn) = place.turn(&provider.name).await else {
        return place.with_cache(|k| k.stale(provider, now)).ok_or_else(unavailable);
    };
    // A lookup that ended while this one waited may have brought the keys.
    if let Some(set) = place.with_cache(|k| k.get(provider, now, refresh)) {
        return Ok(set);
    }
    let shelved = place.shelved(provider).await.filter(|s| s.url == provider.jwks_url);
    if let Some(s) = shelved.as_ref().filter(|s| usable(s.fetched_at, now, provider.jwks_max_age, refresh)) {
        if let Ok(set) = Jwks::parse(&s.raw, s.fetched_at) {
            place.with_cache(|k| k.put(provider, set.clone()));
            return Ok(set);
        }
    }
    let stale = || {
        place
            .with_cache(|k| k.stale(provider, now))
            .or_else(|| shelved.as_ref().filter(|s| now < s.fetched_at.saturating_add(MAX_STALE_SECS)).and_then(|s| Jwks::parse(&s.raw, s.fetched_at).ok()))
            .ok_or_else(unavailable)
    };
    if !may_fetch || place.with_cache(|k| k.backing_off(provider, now)) {
        return stale();
    }
    match fetch(web, &provider.jwks_url, now).await {
        Ok((raw, set)) => {
            place.with_cache(|k| k.put(provider, set.clone()));
            place.shelve(provider, &Shelved { url: provider.jwks_url.clone(), raw, fetched_at: now }).await;
            Ok(set)
        }
        Err(why) => {
            place.fetch_failed(provider, &why);
            place.with_cache(|k| k.failed(provider, now));
            stale()
        }
    }
}

/// Fetches and parses the JWKS at `url`: status 200 only, UTF-8, at most
/// [`MAX_JWKS_BYTES`], within [`FETCH_TIMEOUT_MS`]. The error says why, for the log.
pub async fn fetch(web: &impl Fetcher, url: &str, now: u64) -> std::result::Result<(String, Jwks), String> {
    let answer = web.get(&Get { url, via: None, timeout_ms: FETCH_TIMEOUT_MS, max_bytes: MAX_JWKS_BYTES }).await.map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("answered {}", answer.status));
    }
    let raw = String::from_utf8(answer.body).map_err(|_| "document is not UTF-8".to_string())?;
    let set = Jwks::parse(&raw, now).map_err(|e| match e {
        Error::Internal(why) => why,
        other => other.to_string(),
    })?;
    Ok((raw, set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{Answer, FetchError};
    use crate::oidc::MIN_REFRESH_SECS;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "https://idp.test/keys";

    fn doc(kid: &str) -> String {
        // An Ed25519 public key (the one of `oidc`'s tests), under `kid`.
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","use":"sig","x":"JLXY79kcgV0acye6SAqdZF3hKwZETrIwTGZJP9slul8"}}]}}"#)
    }

    fn provider() -> Provider {
        Provider {
            name: "corp".into(),
            issuer: "https://idp.test".into(),
            audience: "ai-gateway".into(),
            jwks_url: URL.into(),
            algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
            groups_claim: "groups".into(),
            group_map: None,
            group_prefix: Some("gw-".into()),
            subject_claim: "sub".into(),
            jwks_max_age: 300,
            max_token_lifetime: 3600,
            require_typ: None,
            allowed_azp: None,
        }
    }

    /// A platform in memory: its cache, an optional shelf, a turn that may be refused, and what it logged.
    #[derive(Default)]
    struct Place {
        cache: RefCell<JwksCache>,
        shelf: RefCell<Option<Shelved>>,
        busy: Cell<bool>,
        warned: RefCell<Vec<String>>,
    }

    impl KeyPlace for Place {
        type Turn = ();
        fn with_cache<T>(&self, f: impl FnOnce(&mut JwksCache) -> T) -> T {
            f(&mut self.cache.borrow_mut())
        }
        async fn turn(&self, _provider: &str) -> Option<()> {
            (!self.busy.get()).then_some(())
        }
        async fn shelved(&self, _provider: &Provider) -> Option<Shelved> {
            self.shelf.borrow().clone()
        }
        async fn shelve(&self, _provider: &Provider, keys: &Shelved) {
            *self.shelf.borrow_mut() = Some(keys.clone());
        }
        fn fetch_failed(&self, provider: &Provider, why: &str) {
            self.warned.borrow_mut().push(format!("{}: {why}", provider.name));
        }
    }

    /// The provider's side: what each GET answers, and how many were made.
    #[derive(Default)]
    struct Web {
        answers: RefCell<BTreeMap<String, std::result::Result<Answer, FetchError>>>,
        gets: Cell<usize>,
    }

    impl Web {
        fn serving(raw: &str) -> Web {
            let web = Web::default();
            web.answer(Ok(Answer { status: 200, body: raw.as_bytes().to_vec() }));
            web
        }
        fn answer(&self, a: std::result::Result<Answer, FetchError>) {
            self.answers.borrow_mut().insert(URL.into(), a);
        }
    }

    impl Fetcher for Web {
        async fn get(&self, get: &Get<'_>) -> std::result::Result<Answer, FetchError> {
            assert_eq!((get.timeout_ms, get.max_bytes, get.via), (FETCH_TIMEOUT_MS, MAX_JWKS_BYTES, None));
            self.gets.set(self.gets.get() + 1);
            self.answers.borrow().get(get.url).cloned().unwrap_or(Err(FetchError::Failed("no route".into())))
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_executor::block_on(f)
    }

    #[test]
    fn keys_are_fetched_once_then_answered_from_memory_until_their_max_age() {
        let (place, web, p) = (Place::default(), Web::serving(&doc("k1")), provider());
        assert_eq!(run(keys(&place, &web, &p, NOW, false, true)).unwrap().kids(), ["k1"]);
        assert_eq!(run(keys(&place, &web, &p, NOW + 299, false, true)).unwrap().kids(), ["k1"]);
        assert_eq!(web.gets.get(), 1, "memory answers within max age");
        // Shared with other instances, from the configured URL.
        assert_eq!(place.shelf.borrow().as_ref().map(|s| (s.url.as_str(), s.fetched_at)), Some((URL, NOW)));
        web.answer(Ok(Answer { status: 200, body: doc("k2").into_bytes() }));
        assert_eq!(run(keys(&place, &web, &p, NOW + 300, false, true)).unwrap().kids(), ["k2"]);
        assert_eq!(web.gets.get(), 2);
    }

    #[test]
    fn an_unknown_kid_refetches_at_most_once_per_refresh_floor() {
        let (place, web, p) = (Place::default(), Web::serving(&doc("k1")), provider());
        run(keys(&place, &web, &p, NOW, false, true)).unwrap();
        run(keys(&place, &web, &p, NOW + MIN_REFRESH_SECS - 1, true, true)).unwrap();
        assert_eq!(web.gets.get(), 1);
        run(keys(&place, &web, &p, NOW + MIN_REFRESH_SECS, true, true)).unwrap();
        assert_eq!(web.gets.get(), 2);
    }

    #[test]
    fn a_new_instance_starts_from_the_shelf_unless_the_url_changed() {
        let (first, web, p) = (Place::default(), Web::serving(&doc("k1")), provider());
        run(keys(&first, &web, &p, NOW, false, true)).unwrap();
        let second = Place { shelf: RefCell::new(first.shelf.borrow().clone()), ..Place::default() };
        assert_eq!(run(keys(&second, &web, &p, NOW + 10, false, true)).unwrap().kids(), ["k1"]);
        assert_eq!(web.gets.get(), 1, "the shelf answered");
        // A provider moved to another URL never reuses what the old one published.
        let moved = Provider { jwks_url: "https://idp.test/other".into(), ..p };
        let third = Place { shelf: RefCell::new(first.shelf.borrow().clone()), ..Place::default() };
        assert!(matches!(run(keys(&third, &web, &moved, NOW + 10, false, false)), Err(Error::IdentityProviderUnavailable(_))));
        assert_eq!(web.gets.get(), 1);
    }

    #[test]
    fn without_leave_to_fetch_the_shelf_is_the_last_place_looked() {
        let (place, web, p) = (Place::default(), Web::serving(&doc("k1")), provider());
        assert!(matches!(run(keys(&place, &web, &p, NOW, false, false)), Err(Error::IdentityProviderUnavailable(_))));
        assert_eq!(web.gets.get(), 0);
        assert!(place.warned.borrow().is_empty(), "not fetching is not a failure");
    }

    #[test]
    fn an_unreachable_provider_leaves_stale_keys_for_a_day_and_is_not_asked_again_for_seconds() {
        let (place, web, p) = (Place::default(), Web::serving(&doc("k1")), provider());
        run(keys(&place, &web, &p, NOW, false, true)).unwrap();
        web.answer(Err(FetchError::TimedOut));
        let later = NOW + 3600;
        assert_eq!(run(keys(&place, &web, &p, later, false, true)).unwrap().kids(), ["k1"], "stale keys answer");
        assert_eq!(place.warned.borrow().as_slice(), ["corp: timed out"]);
        run(keys(&place, &web, &p, later + MIN_REFRESH_SECS - 1, false, true)).unwrap();
        assert_eq!(web.gets.get(), 2, "backing off after a failure");
        run(keys(&place, &web, &p, later + MIN_REFRESH_SECS, false, true)).unwrap();
        assert_eq!(web.gets.get(), 3);
        // Past a day nothing stale answers.
        let shelfless = Place { cache: RefCell::new(std::mem::take(&mut place.cache.borrow_mut())), ..Place::default() };
        assert!(matches!(run(keys(&shelfless, &web, &p, NOW + MAX_STALE_SECS, false, true)), Err(Error::IdentityProviderUnavailable(_))));
    }

    #[test]
    fn only_a_200_with_a_jwks_is_taken() {
        let p = provider();
        for (answer, why) in [
            (Ok(Answer { status: 302, body: vec![] }), "answered 302"),
            (Ok(Answer { status: 200, body: b"<html>".to_vec() }), "JWKS is not JSON"),
            (Ok(Answer { status: 200, body: vec![0xff, 0xfe] }), "document is not UTF-8"),
            (Err(FetchError::TooLarge), "answer too large"),
        ] {
            let (place, web) = (Place::default(), Web::default());
            web.answer(answer);
            assert!(matches!(run(keys(&place, &web, &p, NOW, false, true)), Err(Error::IdentityProviderUnavailable(_))));
            assert_eq!(place.warned.borrow().as_slice(), [format!("corp: {why}")]);
        }
    }

    #[test]
    fn a_request_that_waited_too_long_for_its_turn_gets_stale_keys_or_unavailable() {
        let (place, web, p) = (Place::default(), Web::serving(&doc("k1")), provider());
        place.busy.set(true);
        assert!(matches!(run(keys(&place, &web, &p, NOW, false, true)), Err(Error::IdentityProviderUnavailable(_))));
        place.busy.set(false);
        run(keys(&place, &web, &p, NOW, false, true)).unwrap();
        place.busy.set(true);
        assert_eq!(run(keys(&place, &web, &p, NOW + 600, false, true)).unwrap().kids(), ["k1"]);
        assert_eq!(web.gets.get(), 1);
    }
}
