//! Session affinity by weighted rendezvous hashing, with bounded loads.
//!
//! The order of endpoints for a key is a pure function of the key, the live
//! endpoint set and the endpoints' loads, so every isolate or Lambda instance
//! that sees the same loads agrees with no shared state. When an endpoint
//! joins or leaves, only the keys whose first choice was that endpoint move.
//!
//! Bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
//! Bounded Loads", 2016; HAProxy's `hash-balance-factor`): an endpoint whose
//! load reaches `max(1, ceil(c × (total + 1) × weight / total_weight))` is
//! saturated, and a key whose first choice is saturated goes to the next
//! endpoint of its own rendezvous order that is not. Only keys of a saturated
//! endpoint move, and they come back as its load falls.

use crate::route::Endpoint;

/// Default bound factor `c` of a route's `affinity.balance_factor`: an endpoint
/// takes up to 25 % over its weighted share of the load before keys spill.
/// HAProxy suggests 125 to 150; lower spreads more, higher keeps more keys in place.
pub const DEFAULT_BALANCE_FACTOR: f64 = 1.25;

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

/// Below this load (requests running, queued or in flight) an endpoint is never saturated:
/// a vLLM server batches far more requests than this at once, so moving a session off it
/// would cost the session its prefix cache and buy nothing. (Seen on real vLLM: eight
/// callers sharing one system prompt at once were split over two servers by the relative
/// bound alone, and the hit ratio fell from 94 % to 90 %.)
pub const BOUND_FLOOR: f64 = 8.0;

/// The load an endpoint may hold before it is saturated:
/// `max(BOUND_FLOOR, ceil(factor × (total_load + 1) × weight / total_weight))`. The `+ 1`
/// counts the request being placed, and with `factor ≥ 1` the bounds add up to
/// more than the total load, so some endpoint is always under its bound.
pub fn bound(factor: f64, total_load: f64, weight: u32, total_weight: f64) -> f64 {
    (factor * (total_load + 1.0) * weight as f64 / total_weight)
        .ceil()
        .max(BOUND_FLOOR)
}

/// A load as the balancer reads it: unknown, negative or not finite is 0.
fn sane(load: f64) -> f64 {
    if load.is_finite() && load > 0.0 {
        load
    } else {
        0.0
    }
}

/// One live endpoint, placed for a key.
struct Placed<'a> {
    ep: &'a Endpoint,
    avoided: bool,
    saturated: bool,
    score: f64,
    load: f64,
}

/// Ranks endpoints for requests.
pub struct Balancer;

impl Balancer {
    /// Orders the live endpoints for `key`: best first. Endpoints for which
    /// `avoid` is true (failed recently) go last, in their own rendezvous
    /// order, so they are still tried when nothing else answers.
    pub fn rank<'a>(
        key: &str,
        endpoints: &'a [Endpoint],
        now: u64,
        avoid: &dyn Fn(&str) -> bool,
    ) -> Vec<&'a Endpoint> {
        Self::rank_bounded(key, endpoints, now, avoid, &|_| 0.0, 0.0)
    }

    /// [`Balancer::rank`] with bounded loads: `load` gives each endpoint's
    /// current load by id ([`crate::load::estimate`]; 0 when unknown) and
    /// `factor` is the bound factor `c` (≥ 1; 0 turns bounding off). The key's
    /// rendezvous order is kept, except that saturated endpoints ([`bound`])
    /// follow the others (still in rendezvous order, still tried on failover),
    /// and avoided ones go last as in [`Balancer::rank`]. Bounds are computed
    /// over the endpoints not avoided (all of them when every one is), the
    /// ones expected to take the traffic. With no load, the order is
    /// [`Balancer::rank`]'s.
    pub fn rank_bounded<'a>(
        key: &str,
        endpoints: &'a [Endpoint],
        now: u64,
        avoid: &dyn Fn(&str) -> bool,
        load: &dyn Fn(&str) -> f64,
        factor: f64,
    ) -> Vec<&'a Endpoint> {
        Self::place(key, endpoints, now, avoid, load, factor)
            .into_iter()
            .map(|p| p.ep)
            .collect()
    }

    /// The order for a request without a session key (`key` is per request,
    /// e.g. its id): [`Balancer::rank_bounded`], then the power of two
    /// choices. Of the first two endpoints (a weighted random pair, as the key
    /// is random), the one with the lower load per unit of weight goes first,
    /// when both are under their bound and not avoided; ties keep the
    /// rendezvous order, so with no load this is [`Balancer::rank`].
    ///
    /// Why not simply the least loaded: loads are readings seconds old, and
    /// every gateway instance would send its requests to the same least-loaded
    /// endpoint until the next reading (herding). Two random choices need no
    /// coordination, tolerate stale loads, and still cut the worst queue
    /// exponentially against one random choice (Mitzenmacher, 2001).
    pub fn spread<'a>(
        key: &str,
        endpoints: &'a [Endpoint],
        now: u64,
        avoid: &dyn Fn(&str) -> bool,
        load: &dyn Fn(&str) -> f64,
        factor: f64,
    ) -> Vec<&'a Endpoint> {
        let mut placed = Self::place(key, endpoints, now, avoid, load, factor);
        if let [a, b, ..] = placed.as_slice() {
            let open = |p: &Placed| !p.avoided && !p.saturated;
            let per_weight = |p: &Placed| p.load / p.ep.weight.max(1) as f64;
            if open(a) && open(b) && per_weight(b) < per_weight(a) {
                placed.swap(0, 1);
            }
        }
        placed.into_iter().map(|p| p.ep).collect()
    }

    fn place<'a>(
        key: &str,
        endpoints: &'a [Endpoint],
        now: u64,
        avoid: &dyn Fn(&str) -> bool,
        load: &dyn Fn(&str) -> f64,
        factor: f64,
    ) -> Vec<Placed<'a>> {
        let mut placed: Vec<Placed> = endpoints
            .iter()
            .filter(|e| e.is_live(now))
            .map(|e| Placed {
                ep: e,
                avoided: avoid(&e.id),
                saturated: false,
                score: score(key, e),
                load: sane(load(&e.id)),
            })
            .collect();
        if factor > 0.0 && factor.is_finite() {
            let everyone = placed.iter().all(|p| p.avoided);
            let (total_load, total_weight) = placed
                .iter()
                .filter(|p| everyone || !p.avoided)
                .fold((0.0, 0.0), |(l, w), p| (l + p.load, w + p.ep.weight as f64));
            if total_weight > 0.0 {
                for p in &mut placed {
                    p.saturated = p.load >= bound(factor, total_load, p.ep.weight, total_weight);
                }
            }
        }
        // Not avoided first, then not saturated, then higher score; ties broken by id for determinism.
        placed.sort_by(|a, b| {
            a.avoided
                .cmp(&b.avoided)
                .then(a.saturated.cmp(&b.saturated))
                .then(b.score.total_cmp(&a.score))
                .then_with(|| a.ep.id.cmp(&b.ep.id))
        });
        placed
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
            .map(|(i, w)| Endpoint {
                id: format!("ep{i}"),
                url: format!("http://10.0.0.{i}:8000"),
                weight: *w,
                via: None,
                lease_expires_at: None,
                registered_by: None,
            })
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
            *counts
                .entry(first(&format!("session-{i}"), &e))
                .or_default() += 1;
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

    fn ids(v: Vec<&Endpoint>) -> Vec<String> {
        v.into_iter().map(|e| e.id.clone()).collect()
    }

    fn index(id: &str) -> usize {
        id[2..].parse().unwrap()
    }

    /// Which endpoints are saturated, recomputed from the definition.
    fn saturated(e: &[Endpoint], loads: &[f64], factor: f64) -> Vec<bool> {
        let total: f64 = loads[..e.len()].iter().sum();
        let weight: f64 = e.iter().map(|x| x.weight as f64).sum();
        e.iter()
            .enumerate()
            .map(|(i, x)| {
                // The definition, written out again: the relative bound, never under the floor.
                let b = (factor * (total + 1.0) * x.weight as f64 / weight)
                    .ceil()
                    .max(BOUND_FLOOR);
                loads[i] >= b
            })
            .collect()
    }

    #[test]
    fn weights_are_respected_with_bounding_on_and_no_load() {
        let e = eps(&[1, 2, 3, 4]);
        let n = 50_000;
        let mut counts = [0u32; 4];
        for i in 0..n {
            let key = format!("session-{i}");
            let r =
                Balancer::rank_bounded(&key, &e, 0, &|_| false, &|_| 0.0, DEFAULT_BALANCE_FACTOR);
            counts[index(&r[0].id)] += 1;
            let s = Balancer::spread(&key, &e, 0, &|_| false, &|_| 0.0, DEFAULT_BALANCE_FACTOR);
            assert_eq!(s[0].id, r[0].id);
        }
        for (i, w) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
            let share = counts[i] as f64 / n as f64;
            assert!((share - w / 10.0).abs() < 0.02, "ep{i}: {share}");
        }
    }

    #[test]
    fn a_hot_key_fills_its_endpoints_in_rendezvous_order_up_to_the_bound() {
        let e = eps(&[1, 1, 1, 1]);
        let plain = ids(Balancer::rank("hot", &e, 0, &|_| false));
        let mut loads = [0.0f64; 4];
        for _ in 0..200 {
            let l = loads;
            let r = Balancer::rank_bounded("hot", &e, 0, &|_| false, &|id| l[index(id)], 1.25);
            let sat = saturated(&e, &l, 1.25);
            assert!(!sat[index(&r[0].id)], "placed on a saturated endpoint");
            loads[index(&r[0].id)] += 1.0;
        }
        // Each endpoint holds at most its bound; the key's first choice holds the most.
        let max = loads.iter().cloned().fold(0.0, f64::max);
        assert!(max <= (1.25f64 * 200.0 / 4.0).ceil(), "{loads:?}");
        assert_eq!(loads[index(&plain[0])], max);
        assert!(
            loads.iter().all(|&l| l > 0.0),
            "it spilled to every endpoint: {loads:?}"
        );
        // When the load is gone, the key is back on its first choice.
        assert_eq!(
            ids(Balancer::rank_bounded(
                "hot",
                &e,
                0,
                &|_| false,
                &|_| 0.0,
                1.25
            )),
            plain
        );
    }

    #[test]
    fn saturated_endpoints_follow_and_avoided_go_last() {
        let e = eps(&[1, 1, 1]);
        let plain = ids(Balancer::rank("k", &e, 0, &|_| false));
        let (first, second, third) = (plain[0].clone(), plain[1].clone(), plain[2].clone());
        let heavy = |id: &str| if id == first { 10.0 } else { 0.0 };
        let r = ids(Balancer::rank_bounded("k", &e, 0, &|_| false, &heavy, 1.25));
        // Under the floor nothing is saturated, however uneven.
        let light = |id: &str| if id == first { BOUND_FLOOR - 1.0 } else { 0.0 };
        assert_eq!(ids(Balancer::rank_bounded("k", &e, 0, &|_| false, &light, 1.25)), plain);
        assert_eq!(r, [second.clone(), third.clone(), first.clone()]);
        let r = ids(Balancer::rank_bounded(
            "k",
            &e,
            0,
            &|id| id == second,
            &heavy,
            1.25,
        ));
        assert_eq!(r, [third.clone(), first.clone(), second.clone()]);
        let off = ids(Balancer::rank_bounded("k", &e, 0, &|_| false, &heavy, 0.0));
        assert_eq!(off, plain, "factor 0: plain rendezvous");
        let junk = |_: &str| f64::NAN;
        assert_eq!(
            ids(Balancer::rank_bounded("k", &e, 0, &|_| false, &junk, 1.25)),
            plain
        );
    }

    #[test]
    fn keyless_requests_take_the_less_loaded_of_two() {
        let e = eps(&[1, 1, 1, 1]);
        for i in 0..200 {
            let key = format!("req-{i}");
            let plain = ids(Balancer::rank(&key, &e, 0, &|_| false));
            // The second choice is less loaded, neither is saturated (total 8, bound 3).
            let l = |id: &str| {
                if id == plain[0] {
                    2.0
                } else if id == plain[1] {
                    1.0
                } else {
                    2.5
                }
            };
            let s = ids(Balancer::spread(&key, &e, 0, &|_| false, &l, 1.25));
            assert_eq!(s[..2], [plain[1].clone(), plain[0].clone()]);
            // Bound off: the same choice between the two.
            assert_eq!(
                ids(Balancer::spread(&key, &e, 0, &|_| false, &l, 0.0))[0],
                plain[1]
            );
            // An avoided second choice is not taken.
            let s = ids(Balancer::spread(
                &key,
                &e,
                0,
                &|id| id == plain[1],
                &l,
                1.25,
            ));
            assert_eq!(s[0], plain[0]);
        }
    }

    proptest! {
        // With no load, or with loads in proportion to weights (no endpoint over its bound),
        // placement is plain rendezvous, for sticky and keyless requests alike.
        #[test]
        fn no_overload_is_plain_rendezvous(key in "[a-z0-9]{0,16}", weights in proptest::collection::vec(1u32..20, 1..10), avoided in proptest::collection::vec(any::<bool>(), 10), per in 0u32..50, factor in 1.0f64..10.0) {
            let e = eps(&weights);
            let avoid = |id: &str| avoided[index(id)];
            let plain = ids(Balancer::rank(&key, &e, 0, &avoid));
            prop_assert_eq!(&ids(Balancer::rank_bounded(&key, &e, 0, &avoid, &|_| 0.0, factor)), &plain);
            prop_assert_eq!(&ids(Balancer::spread(&key, &e, 0, &avoid, &|_| 0.0, factor)), &plain);
            let proportional = |id: &str| (weights[index(id)] * per) as f64;
            prop_assert_eq!(&ids(Balancer::rank_bounded(&key, &e, 0, &|_| false, &proportional, factor)), &ids(Balancer::rank(&key, &e, 0, &|_| false)));
        }

        // Only keys whose first choice is saturated move, and they move to the first endpoint
        // of their own rendezvous order that is under its bound: never to a saturated one.
        #[test]
        fn only_keys_of_saturated_endpoints_move(weights in proptest::collection::vec(1u32..10, 1..10), loads in proptest::collection::vec(0.0f64..40.0, 10), factor in 1.0f64..3.0, keys in proptest::collection::vec("[a-z0-9]{1,12}", 30)) {
            let e = eps(&weights);
            let sat = saturated(&e, &loads, factor);
            prop_assert!(sat.iter().any(|s| !s), "some endpoint is always under its bound");
            for k in &keys {
                let plain = ids(Balancer::rank(k, &e, 0, &|_| false));
                let bounded = ids(Balancer::rank_bounded(k, &e, 0, &|_| false, &|id| loads[index(id)], factor));
                let first_open = plain.iter().find(|id| !sat[index(id)]).unwrap();
                prop_assert_eq!(&bounded[0], first_open);
                prop_assert!(!sat[index(&bounded[0])]);
                if !sat[index(&plain[0])] {
                    prop_assert_eq!(&bounded[0], &plain[0]);
                }
                // Every endpoint is still there for failover: open ones, then saturated, each in rendezvous order.
                let (open, full): (Vec<_>, Vec<_>) = plain.iter().cloned().partition(|id| !sat[index(id)]);
                prop_assert_eq!(bounded, [open, full].concat());
            }
        }

        // Placement is a pure function of key, endpoints and loads: the endpoints' order does not
        // matter, and when the load falls the key is back where rendezvous puts it.
        #[test]
        fn placement_is_a_pure_function_of_key_endpoints_and_loads(key in "[a-z0-9]{1,12}", weights in proptest::collection::vec(1u32..10, 1..10), loads in proptest::collection::vec(0.0f64..40.0, 10)) {
            let e = eps(&weights);
            let l = |id: &str| loads[index(id)];
            let a = ids(Balancer::rank_bounded(&key, &e, 0, &|_| false, &l, 1.25));
            let mut reversed = e.clone();
            reversed.reverse();
            prop_assert_eq!(&a, &ids(Balancer::rank_bounded(&key, &reversed, 0, &|_| false, &l, 1.25)));
            prop_assert_eq!(ids(Balancer::spread(&key, &e, 0, &|_| false, &l, 1.25)), ids(Balancer::spread(&key, &reversed, 0, &|_| false, &l, 1.25)));
            prop_assert_eq!(ids(Balancer::rank_bounded(&key, &e, 0, &|_| false, &|_| 0.0, 1.25)), ids(Balancer::rank(&key, &e, 0, &|_| false)));
        }

        // A keyless request never goes to a saturated endpoint while one is under its bound.
        #[test]
        fn keyless_requests_avoid_saturated_endpoints(key in "[a-z0-9]{1,12}", weights in proptest::collection::vec(1u32..10, 1..10), loads in proptest::collection::vec(0.0f64..40.0, 10), factor in 1.0f64..3.0) {
            let e = eps(&weights);
            let sat = saturated(&e, &loads, factor);
            let s = ids(Balancer::spread(&key, &e, 0, &|_| false, &|id| loads[index(id)], factor));
            prop_assert!(!sat[index(&s[0])]);
            prop_assert_eq!(s.len(), e.len());
        }

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
