//! Session affinity by weighted rendezvous hashing.
//!
//! The order of endpoints for a key is a pure function of the key and the live
//! endpoint set, so every isolate or Lambda instance agrees with no shared
//! state. When an endpoint joins or leaves, only the keys whose first choice
//! was that endpoint move.

use crate::route::Endpoint;

/// 64-bit FNV-1a followed by a SplitMix64 finaliser: stable across platforms
/// and releases (unlike `std`'s hasher), and well mixed for rendezvous scores.
fn hash(key: &str, endpoint_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0xff]).chain(endpoint_id.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Weighted rendezvous score: `-w / ln(u)` with `u` uniform in (0, 1).
fn score(key: &str, ep: &Endpoint) -> f64 {
    let u = ((hash(key, &ep.id) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(ep.weight as f64) / u.ln()
}

/// Ranks endpoints for requests.
pub struct Balancer;

impl Balancer {
    /// Orders the live endpoints for `key`: best first. Endpoints for which
    /// `avoid` is true (failed recently) go last, in their own rendezvous
    /// order, so they are still tried when nothing else answers.
    pub fn rank<'a>(key: &str, endpoints: &'a [Endpoint], now: u64, avoid: &dyn Fn(&str) -> bool) -> Vec<&'a Endpoint> {
        let mut scored: Vec<(bool, f64, &Endpoint)> = endpoints
            .iter()
            .filter(|e| e.is_live(now))
            .map(|e| (avoid(&e.id), score(key, e), e))
            .collect();
        // Not avoided first, then higher score; ties broken by id for determinism.
        scored.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then_with(|| a.2.id.cmp(&b.2.id)));
        scored.into_iter().map(|(_, _, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint { id: format!("ep{i}"), url: format!("http://10.0.0.{i}:8000"), weight: *w, via: None, lease_expires_at: None, registered_by: None })
            .collect()
    }

    fn first(key: &str, e: &[Endpoint]) -> String {
        Balancer::rank(key, e, 0, &|_| false)[0].id.clone()
    }

    #[test]
    fn weights_are_respected_within_a_few_percent() {
        let e = eps(&[1, 2, 3, 4]);
        let n = 100_000;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for i in 0..n {
            *counts.entry(first(&format!("session-{i}"), &e)).or_default() += 1;
        }
        for (i, w) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
            let share = counts[&format!("ep{i}")] as f64 / n as f64;
            let want = w / 10.0;
            assert!((share - want).abs() < 0.02, "ep{i}: {share} vs {want}");
        }
    }

    #[test]
    fn expired_leases_are_not_live_and_avoided_go_last() {
        let mut e = eps(&[1, 1, 1]);
        e[0].lease_expires_at = Some(100);
        let r = Balancer::rank("k", &e, 100, &|_| false);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|x| x.id != "ep0"));
        let best = r[0].id.clone();
        let r = Balancer::rank("k", &e, 100, &|id| id == best);
        assert_eq!(r.last().unwrap().id, best);
        assert_eq!(r.len(), 2);
    }

    proptest! {
        // Same key and set, same order: a pure function.
        #[test]
        fn stable(key in ".{0,40}", n in 1usize..20) {
            let e = eps(&vec![1; n]);
            let a: Vec<_> = Balancer::rank(&key, &e, 0, &|_| false).iter().map(|e| e.id.clone()).collect();
            let mut shuffled = e.clone();
            shuffled.reverse();
            let b: Vec<_> = Balancer::rank(&key, &shuffled, 0, &|_| false).iter().map(|e| e.id.clone()).collect();
            prop_assert_eq!(a, b);
        }

        // Removing an endpoint moves only the keys that were on it.
        #[test]
        fn minimal_movement_on_removal(n in 2usize..12, removed in 0usize..12, keys in proptest::collection::vec("[a-z0-9]{1,12}", 50)) {
            let removed = removed % n;
            let all = eps(&(1..=n as u32).collect::<Vec<_>>());
            let mut fewer = all.clone();
            let gone = fewer.remove(removed).id;
            for k in &keys {
                let before = first(k, &all);
                let after = first(k, &fewer);
                if before != gone {
                    prop_assert_eq!(before, after);
                }
            }
        }

        // Adding an endpoint moves keys only onto the new endpoint.
        #[test]
        fn minimal_movement_on_addition(n in 1usize..12, keys in proptest::collection::vec("[a-z0-9]{1,12}", 50)) {
            let before_set = eps(&vec![1; n]);
            let after_set = eps(&vec![1; n + 1]);
            let new_id = after_set[n].id.clone();
            for k in &keys {
                let before = first(k, &before_set);
                let after = first(k, &after_set);
                prop_assert!(after == before || after == new_id);
            }
        }
    }
}
