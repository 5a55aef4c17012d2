use super::*;
use crate::route::Endpoint;
use proptest::prelude::*;

/// A minute boundary: 1_750_000_020 = 29_166_667 × 60.
const NOW: u64 = 1_750_000_020;
const MINUTE: &str = "0029166667";

use crate::fixtures::sample;

fn store_of(samples: &[RequestSample]) -> BTreeMap<String, u64> {
    let mut store = BTreeMap::new();
    for s in samples {
        updates(s).apply_to(&mut store);
    }
    store
}

fn snapshot_of(store: &BTreeMap<String, u64>, health: &[(&str, &str, Health)], now: u64) -> Snapshot {
    snapshot(now, store.iter().map(|(k, v)| (k.as_str(), *v)), health.iter().map(|(r, e, h)| (*r, *e, h)))
}

// --- histogram ---

#[test]
fn bucket_bounds_are_inclusive_and_cover_every_value() {
    assert_eq!(BUCKETS, 20);
    assert_eq!(Histogram::bucket_index(0.0), 0);
    assert_eq!(Histogram::bucket_index(0.25), 0);
    assert_eq!(Histogram::bucket_index(0.2501), 1);
    assert_eq!(Histogram::bucket_index(1.0), 2);
    assert_eq!(Histogram::bucket_index(120.0), 9);
    assert_eq!(Histogram::bucket_index(300_000.0), 18);
    assert_eq!(Histogram::bucket_index(300_000.1), 19);
    assert_eq!(Histogram::bucket_index(f64::INFINITY), 19);
    assert_eq!(Histogram::bucket_index(-5.0), 0);
    assert_eq!(Histogram::bucket_index(f64::NAN), 0);
    assert!(BUCKET_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn recording_counts_and_sums() {
    let mut h = Histogram::default();
    h.record(1.5);
    h.record(3.0);
    assert_eq!((h.count(), h.sum_us(), h.sum_ms()), (2, 4_500, 4.5));
    assert_eq!((h.counts()[3], h.counts()[4]), (1, 1));
    h.record(f64::NAN);
    h.record(-1.0);
    assert_eq!((h.count(), h.sum_us()), (4, 4_500), "odd values are counted, and add nothing to the sum");
    h.record(f64::INFINITY);
    assert_eq!(h.counts()[BUCKETS - 1], 1);
    assert_eq!(h.sum_us(), u64::MAX, "the sum saturates");
    assert!(!h.add(BUCKETS, 1), "no such bucket");
    assert_eq!(h.count(), 5);
}

#[test]
fn quantiles_interpolate_within_the_bucket() {
    let mut h = Histogram::default();
    assert_eq!(h.quantile(0.5), None);
    for _ in 0..100 {
        h.record(150.0);
    }
    // All in (100, 250]: the estimate moves linearly through the bucket.
    assert_eq!(h.quantile(0.5), Some(175.0));
    assert_eq!(h.quantile(0.99), Some(248.5));
    assert_eq!(h.quantile(0.0), Some(100.0));
    assert_eq!(h.quantile(1.0), Some(250.0));
    for bad in [-0.1, 1.1, f64::NAN] {
        assert_eq!(h.quantile(bad), None);
    }
    let mut h = Histogram::default();
    h.record(0.1);
    assert_eq!(h.quantile(1.0), Some(0.25), "the first bucket starts at 0");
    let mut slow = Histogram::default();
    slow.record(400_000.0);
    assert_eq!(slow.quantile(0.5), Some(300_000.0), "above the last bound: a lower bound");
}

#[test]
fn quantiles_of_a_mixed_distribution() {
    let mut h = Histogram::default();
    for _ in 0..90 {
        h.record(20.0); // (10, 25]
    }
    for _ in 0..10 {
        h.record(2_000.0); // (1000, 2500]
    }
    assert_eq!(h.quantile(0.5), Some(10.0 + 15.0 * 50.0 / 90.0));
    assert_eq!(h.quantile(0.95), Some(1_000.0 + 1_500.0 * 0.5));
}

/// Values spread over many decades, as latencies are.
fn latency() -> impl Strategy<Value = f64> {
    (-4.0f64..19.5).prop_map(f64::exp2)
}

proptest! {
    // The documented error bound: the estimate lies in the bucket of the true (nearest-rank) quantile.
    #[test]
    fn quantile_error_is_within_the_true_values_bucket(mut values in prop::collection::vec(latency(), 1..300), q in 0.0f64..=1.0) {
        let mut h = Histogram::default();
        for v in &values {
            h.record(*v);
        }
        values.sort_by(f64::total_cmp);
        let rank = ((q * values.len() as f64).ceil() as usize).max(1);
        let truth = values[rank - 1];
        let est = h.quantile(q).unwrap();
        let i = Histogram::bucket_index(truth);
        let lower = if i == 0 { 0.0 } else { BUCKET_BOUNDS_MS[i - 1] };
        match BUCKET_BOUNDS_MS.get(i) {
            Some(&upper) => {
                prop_assert!(lower <= est && est <= upper, "q={} truth={} est={}", q, truth, est);
                prop_assert!((est - truth).abs() <= upper - lower);
                prop_assert!(upper - lower <= upper * 2.0 / 3.0 || upper <= 0.5);
            }
            None => prop_assert_eq!(est, 300_000.0),
        }
    }

    // Merging is adding: the same as recording everything in one histogram, in any order.
    #[test]
    fn merge_equals_recording_everything(a in prop::collection::vec(latency(), 0..50), b in prop::collection::vec(latency(), 0..50)) {
        let hist = |vs: &[f64]| {
            let mut h = Histogram::default();
            vs.iter().for_each(|v| h.record(*v));
            h
        };
        let (ha, hb) = (hist(&a), hist(&b));
        let mut ab = ha.clone();
        ab.merge(&hb);
        let mut ba = hb.clone();
        ba.merge(&ha);
        let all: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
        prop_assert_eq!(&ab, &hist(&all));
        prop_assert_eq!(&ab, &ba);
        // And the serialised form round-trips.
        let back: Histogram = serde_json::from_str(&serde_json::to_string(&ab).unwrap()).unwrap();
        prop_assert_eq!(back, ab);
    }
}

#[test]
fn histograms_serialise_compactly() {
    let mut h = Histogram::default();
    assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"counts":[],"sum_us":0}"#);
    h.record(1.0);
    assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"counts":[0,0,1],"sum_us":1000}"#);
    let back: Histogram = serde_json::from_str(r#"{"counts":[0,0,1]}"#).unwrap();
    assert_eq!(back.count(), 1);
    assert_eq!(back.sum_us(), 0);
    let too_many = format!(r#"{{"counts":{:?},"sum_us":0}}"#, vec![1u64; BUCKETS + 1]);
    assert!(serde_json::from_str::<Histogram>(&too_many).is_err());
    assert!(serde_json::from_str::<Histogram>(r#"{"counts":[-1]}"#).is_err());
    assert!(serde_json::from_str::<Histogram>(r#"[1,2]"#).is_err());
}

// --- keys and updates ---

#[test]
fn status_classes() {
    for (status, class) in [(100, "1xx"), (199, "1xx"), (200, "2xx"), (302, "3xx"), (404, "4xx"), (503, "5xx"), (599, "5xx"), (0, "other"), (99, "other"), (600, "other")] {
        assert_eq!(status_class(status), class, "{status}");
        assert!(STATUS_CLASSES.contains(&class));
    }
}

#[test]
fn key_parts_keep_identifiers_and_escape_the_rest() {
    for id in ["llama-prod", "A.b_c-9", "tok_abcdefghijklmnopqrstuvwxyz234567", "abcdefghijklmnop"] {
        assert_eq!(key_part(id), id);
    }
    assert_eq!(key_part("a:b"), "a%3Ab");
    assert_eq!(key_part("%"), "%25");
    assert_eq!(key_part(""), "~");
    assert_eq!(key_part("~"), "%7E");
    assert_eq!(key_part("é"), "%C3%A9");
    assert_eq!(key_part(&"a".repeat(MAX_KEY_PART)), "a".repeat(MAX_KEY_PART), "kept whole up to the limit");
    let long = key_part(&"a".repeat(100));
    assert!(long.starts_with(&format!("{}~", "a".repeat(HASHED_PREFIX))) && long.len() == HASHED_PREFIX + 17, "{long}");
    // Cut on a character boundary: 40 two-byte characters keep 24.
    assert!(decode_part(&key_part(&"é".repeat(40))).unwrap().starts_with(&format!("{}~", "é".repeat(24))));
    for s in ["a:b", "%", "", "~", "é", "x y\"z\n"] {
        assert_eq!(decode_part(&key_part(s)).as_deref(), Some(s));
    }
    assert_eq!(decode_part("%FF"), None, "not UTF-8");
}

#[test]
fn long_names_sharing_a_prefix_never_share_a_counter() {
    let shared = format!("oidc:corp:{}", "x".repeat(70));
    let (a, b) = (format!("{shared}{}", "a".repeat(20)), format!("{shared}{}", "b".repeat(20)));
    assert_eq!((a.len(), b.len(), a[..80] == b[..80]), (100, 100, true));
    assert_ne!(token_item(&a), token_item(&b));
    assert_ne!(partner_item(&a), partner_item(&b));
    assert_ne!(endpoint_item(&a, "e"), endpoint_item(&b, "e"));
    assert_eq!(token_item(&a), token_item(&a.clone()), "stable");
    let mut samples = Vec::new();
    for t in [&a, &b, &b] {
        let mut s = sample("llama", 200, 1.0, NOW);
        s.token_id = Some(t.to_string());
        samples.push(s);
    }
    let snap = snapshot_of(&store_of(&samples), &[], NOW);
    let mut counts: Vec<u64> = snap.tokens.values().map(|t| t.requests).collect();
    counts.sort();
    assert_eq!(counts, [1, 2], "two principals, two counters");
    // A value kept whole never reads as a hashed one, whatever it holds.
    let shown = decode_part(&key_part(&a)).unwrap();
    assert!(shown.len() > MAX_KEY_PART);
    assert_ne!(key_part(&shown), key_part(&a));
    assert_ne!(decode_part(&key_part(&shown[..MAX_KEY_PART])).unwrap(), shown);
}

#[test]
fn partner_usage_is_counted_under_the_partner_too() {
    let s = RequestSample {
        route: "llama".into(),
        status: 200,
        token_id: Some("tok_p".into()),
        partner: Some("acme".into()),
        prompt_tokens: Some(3),
        completion_tokens: Some(4),
        at: NOW,
        ..RequestSample::default()
    };
    let mut store = BTreeMap::new();
    updates(&s).apply_to(&mut store);
    updates(&s).apply_to(&mut store);
    let snap = snapshot(NOW, store.iter().map(|(k, v)| (k.as_str(), *v)), std::iter::empty());
    for key in store.keys() {
        assert!(split_key(key).is_some(), "every key has an item and a field: {key}");
    }
    let p = &snap.partners["acme"];
    assert_eq!((p.requests, p.routes["llama"], p.prompt_tokens, p.completion_tokens, p.last_seen), (2, 2, 6, 8, Some(NOW)));
    assert_eq!(snap.tokens["tok_p"].requests, 2);
    let text = render_prometheus(&snap, true);
    let scrape = parse_with_prometheus_parse(&text);
    assert!(matches!(find(&scrape, "gateway_partner_requests_total", &[("partner", "acme")]), prometheus_parse::Value::Counter(n) if *n == 2.0));
}

#[test]
fn a_sample_makes_the_documented_updates() {
    let s = RequestSample {
        route: "llama".into(),
        endpoint: Some("a".into()),
        failed_endpoints: vec!["b".into()],
        status: 200,
        latency_ms: 120.0,
        gateway_ms: Some(0.8),
        first_byte_ms: Some(40.0),
        request_bytes: 300,
        response_bytes: 1_200,
        token_id: Some("tok_abc".into()),
        partner: None,
        prompt_tokens: Some(5),
        completion_tokens: Some(7),
        at: NOW,
        budget_keys: Vec::new(),
    };
    let u = updates(&s);
    let m = format!("m:{MINUTE}:route:llama");
    let mut want: Vec<(String, u64)> = vec![
        ("route:llama:req".into(), 1),
        ("route:llama:status:2xx".into(), 1),
        ("route:llama:lat:9".into(), 1),
        ("route:llama:lat:sum_us".into(), 120_000),
        ("route:llama:gw:2".into(), 1),
        ("route:llama:gw:sum_us".into(), 800),
        ("route:llama:fb:7".into(), 1),
        ("route:llama:fb:sum_us".into(), 40_000),
        ("route:llama:bytes_in".into(), 300),
        ("route:llama:bytes_out".into(), 1_200),
        ("route:llama:prompt".into(), 5),
        ("route:llama:completion".into(), 7),
        (format!("{m}:req"), 1),
        (format!("{m}:status:2xx"), 1),
        (format!("{m}:lat:9"), 1),
        ("ep:llama:a:req".into(), 1),
        ("ep:llama:b:req".into(), 1),
        ("ep:llama:b:fail".into(), 1),
        ("tok:tok_abc:req".into(), 1),
        ("tok:tok_abc:route:llama".into(), 1),
        ("tok:tok_abc:prompt".into(), 5),
        ("tok:tok_abc:completion".into(), 7),
    ];
    want.sort();
    assert_eq!(u.adds.into_iter().collect::<Vec<_>>(), want);
    assert_eq!(u.maxes.into_iter().collect::<Vec<_>>(), vec![("tok:tok_abc:last_seen".to_string(), NOW)]);
}

#[test]
fn nothing_is_written_for_zero_or_absent_values() {
    let u = updates(&sample("llama", 503, 0.0, NOW));
    let keys: Vec<&str> = u.adds.keys().map(String::as_str).collect();
    let m = format!("m:{MINUTE}:route:llama");
    let mut want = vec![
        "route:llama:req".to_string(),
        "route:llama:status:5xx".into(),
        "route:llama:lat:0".into(),
        format!("{m}:req"),
        format!("{m}:status:5xx"),
        format!("{m}:lat:0"),
    ];
    want.sort();
    assert_eq!(keys, want);
    assert!(u.maxes.is_empty());
    assert!(u.adds.values().all(|&d| d > 0));
}

#[test]
fn connection_failures_and_5xx_count_against_endpoints() {
    let mut s = sample("llama", 502, 10.0, NOW);
    s.failed_endpoints = vec!["a".into(), "b".into()];
    let store = store_of(&[s.clone()]);
    assert_eq!((store["ep:llama:a:req"], store["ep:llama:a:fail"]), (1, 1));
    assert_eq!((store["ep:llama:b:req"], store["ep:llama:b:fail"]), (1, 1));
    s.failed_endpoints.clear();
    s.endpoint = Some("c".into());
    let store = store_of(&[s.clone(), RequestSample { status: 200, ..s.clone() }, RequestSample { status: 504, ..s.clone() }]);
    assert_eq!((store["ep:llama:c:req"], store["ep:llama:c:fail"]), (3, 2));
    // A runaway list is bounded.
    s.failed_endpoints = (0..1000).map(|i| format!("e{i}")).collect();
    let u = updates(&s);
    assert_eq!(u.adds.keys().filter(|k| k.ends_with(":fail")).count(), MAX_FAILED_ENDPOINTS + 1);
}

#[test]
fn updates_merge_and_commute() {
    let mut a = sample("llama", 200, 5.0, NOW);
    a.token_id = Some("tok_a".into());
    let b = RequestSample { at: NOW + 30, status: 500, ..a.clone() };
    let (ua, ub) = (updates(&a), updates(&b));
    let mut merged = ub.clone();
    merged.merge(ua.clone());
    let mut one_by_one = BTreeMap::new();
    ua.apply_to(&mut one_by_one);
    ub.apply_to(&mut one_by_one);
    let mut reversed = BTreeMap::new();
    ub.apply_to(&mut reversed);
    ua.apply_to(&mut reversed);
    let mut batched = BTreeMap::new();
    merged.apply_to(&mut batched);
    assert_eq!(one_by_one, reversed);
    assert_eq!(one_by_one, batched);
    assert_eq!(batched["tok:tok_a:last_seen"], NOW + 30, "last seen is a max, not a sum");
    assert_eq!(batched["tok:tok_a:req"], 2);
    assert!(!merged.is_empty());
    assert_eq!(merged.len(), merged.adds.len() + 1);
    assert!(Updates::default().is_empty());
}

#[test]
fn keys_split_into_item_and_field() {
    let cases = [
        ("route:llama:req", "route:llama", "req"),
        ("route:llama:lat:sum_us", "route:llama", "lat:sum_us"),
        ("m:0029166667:route:llama:status:2xx", "m:0029166667:route:llama", "status:2xx"),
        ("ep:llama:a.b:fail", "ep:llama:a.b", "fail"),
        ("tok:tok_x:route:llama", "tok:tok_x", "route:llama"),
        ("tok:tok_x:last_seen", "tok:tok_x", "last_seen"),
    ];
    for (key, item, field) in cases {
        assert_eq!(split_key(key), Some((item, field)), "{key}");
    }
    for bad in ["", "route", "route:llama", "x:y:z", "m:1:route"] {
        assert_eq!(split_key(bad), None, "{bad}");
    }
    // Every key a sample makes splits, on its item builder's boundary.
    let mut s = sample("llama", 200, 5.0, NOW);
    s.endpoint = Some("a".into());
    s.token_id = Some("tok_a".into());
    let u = updates(&s);
    for key in u.adds.keys().chain(u.maxes.keys()) {
        let (item, _) = split_key(key).unwrap();
        assert!([route_item("llama"), minute_item(minute_of(NOW), "llama"), endpoint_item("llama", "a"), token_item("tok_a")].contains(&item.to_string()), "{key}");
    }
}

#[test]
fn minute_buckets_expire_and_sort_by_time() {
    let key = |m: u64| format!("{}:req", minute_item(m, "llama"));
    let now_m = minute_of(NOW);
    assert_eq!(expires_at(&key(now_m)), Some((now_m + 1) * 60 + RETENTION_SECS));
    assert_eq!(expires_at("route:llama:req"), None);
    assert_eq!(expires_at("m:zz:route:llama:req"), None);
    let (start, end) = recent_range(NOW);
    let inside = |k: &str| start.as_str() <= k && k < end.as_str();
    assert!(inside(&key(now_m)) && inside(&key(now_m - 59)));
    assert!(!inside(&key(now_m - 60)) && !inside(&key(now_m + 1)));
    assert!(!inside("route:llama:req") && !inside("tok:t:req") && !inside("ep:r:e:req"));
    let later = NOW + RETENTION_SECS + 120;
    let (start, end) = expired_range(later);
    let gone = |k: &str| start.as_str() <= k && k < end.as_str();
    assert!(gone(&key(now_m)));
    assert!(expires_at(&key(now_m)).unwrap() <= later);
    assert!(!gone(&key(minute_of(later) - 10)));
    assert!(!gone("route:llama:req") && !gone("tok:t:req"));
}

proptest! {
    // Whatever the names, every key parses back to the (cut) names, and no part spills into another.
    #[test]
    fn keys_round_trip_any_name(route in "\\PC{0,80}", endpoint in "[:%~a-z\\PC]{0,70}", token in "\\PC{0,70}", status in 0u16..1000) {
        let cut = |s: &str| decode_part(&key_part(s)).unwrap();
        let mut s = sample(&route, status, 42.0, NOW);
        s.endpoint = Some(endpoint.clone());
        s.token_id = Some(token.clone());
        let u = updates(&s);
        for key in u.adds.keys().chain(u.maxes.keys()) {
            prop_assert!(split_key(key).is_some(), "{}", key);
            prop_assert!(parse_key(key).is_some(), "{}", key);
        }
        let store = store_of(&[s]);
        let snap = snapshot_of(&store, &[], NOW);
        prop_assert_eq!(snap.routes.keys().cloned().collect::<Vec<_>>(), vec![cut(&route)]);
        let r = &snap.routes[&cut(&route)];
        prop_assert_eq!(r.requests_total, 1);
        prop_assert_eq!(r.requests_last_hour, 1);
        prop_assert_eq!(r.endpoints.keys().cloned().collect::<Vec<_>>(), vec![cut(&endpoint)]);
        let t = &snap.tokens[&cut(&token)];
        prop_assert_eq!(t.routes.get(&cut(&route)).copied(), Some(1));
        prop_assert_eq!(t.last_seen, Some(NOW));
    }
}

// --- snapshot ---

fn traffic() -> Vec<RequestSample> {
    let tok = |mut s: RequestSample, t: &str| {
        s.token_id = Some(t.into());
        s
    };
    let mut ok = sample("llama", 200, 80.0, NOW - 10);
    ok.endpoint = Some("a".into());
    ok.gateway_ms = Some(0.4);
    ok.request_bytes = 100;
    ok.response_bytes = 1_000;
    ok.prompt_tokens = Some(5);
    ok.completion_tokens = Some(7);
    let mut failed = sample("llama", 502, 3_000.0, NOW - 5);
    failed.failed_endpoints = vec!["b".into()];
    let mut err = sample("llama", 500, 40.0, NOW);
    err.endpoint = Some("b".into());
    vec![
        tok(ok.clone(), "tok_a"),
        tok(RequestSample { at: NOW - 70, latency_ms: 120.0, ..ok.clone() }, "tok_a"),
        tok(failed, "tok_b"),
        err,
        // Two hours ago: in the totals, not in the last hour.
        tok(RequestSample { at: NOW - 7_200, status: 404, ..ok.clone() }, "tok_a"),
        tok(sample("mistral", 200, 10.0, NOW - 300), "tok_a"),
    ]
}

#[test]
fn snapshot_from_stored_counters() {
    let samples = traffic();
    let store = store_of(&samples);
    let mut a = Health::default();
    a.observe(NOW - 60, true);
    let snap = snapshot_of(&store, &[("llama", "a", a)], NOW);

    let llama = &snap.routes["llama"];
    assert_eq!(llama.requests_total, 5);
    assert_eq!(llama.requests_last_hour, 4);
    let classes: Vec<(&str, u64)> = llama.by_status_class.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(classes, vec![("2xx", 2), ("4xx", 1), ("5xx", 2)]);
    assert_eq!((llama.bytes_in, llama.bytes_out), (300, 3_000));
    assert_eq!((llama.prompt_tokens, llama.completion_tokens), (15, 21));

    // Percentiles come from the merged histogram of everything recorded.
    let mut h = Histogram::default();
    samples.iter().filter(|s| s.route == "llama").for_each(|s| h.record(s.latency_ms));
    assert_eq!(llama.latency_ms.histogram, h);
    assert_eq!(llama.latency_ms.p50, h.quantile(0.5).map(|v| (v * 1000.0).round() / 1000.0));
    assert!(llama.latency_ms.p99 >= llama.latency_ms.p95 && llama.latency_ms.p95 >= llama.latency_ms.p50);
    assert_eq!(llama.latency_ms_last_hour.histogram.count(), 4);
    assert_eq!(llama.gateway_overhead_ms.histogram.count(), 3);
    assert_eq!(llama.gateway_overhead_ms.p50, Some(0.375));

    // One point per minute of the last hour, oldest first, ending with the current minute.
    assert_eq!(llama.series.len(), 60);
    assert_eq!(llama.series[59].at, NOW);
    assert_eq!(llama.series[0].at, NOW - 59 * 60);
    assert!(llama.series.windows(2).all(|w| w[1].at == w[0].at + 60));
    assert_eq!(llama.series.iter().map(|p| p.requests).sum::<u64>(), llama.requests_last_hour);
    assert_eq!((llama.series[59].requests, llama.series[59].errors), (1, 1));
    assert_eq!((llama.series[58].requests, llama.series[58].errors), (2, 1), "NOW-10 and NOW-5 fall in the minute before");
    assert_eq!(llama.series[57].requests, 1);
    assert_eq!(snap.routes["mistral"].series[54].requests, 1);

    let ep_a = &llama.endpoints["a"];
    assert_eq!((ep_a.requests, ep_a.failures, ep_a.health), (3, 0, HealthState::Up));
    assert_eq!((ep_a.uptime_24h, ep_a.uptime_7d, ep_a.last_probe_at), (Some(1.0), Some(1.0), Some(NOW - 60)));
    let ep_b = &llama.endpoints["b"];
    assert_eq!((ep_b.requests, ep_b.failures, ep_b.health, ep_b.uptime_24h), (2, 2, HealthState::Unknown, None));

    let ta = &snap.tokens["tok_a"];
    assert_eq!(ta.requests, 4);
    assert_eq!(ta.routes.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), vec![("llama", 3), ("mistral", 1)]);
    assert_eq!(ta.last_seen, Some(NOW - 10), "the latest, not the last applied");
    assert_eq!((ta.prompt_tokens, ta.completion_tokens), (15, 21));
    assert_eq!(snap.tokens["tok_b"].requests, 1);
    assert_eq!(snap.tokens.len(), 2);
}

#[test]
fn foreign_malformed_and_out_of_window_keys_are_ignored() {
    let mut b = SnapshotBuilder::new(NOW);
    let old = format!("{}:req", minute_item(minute_of(NOW) - 60, "x"));
    let future = format!("{}:req", minute_item(minute_of(NOW) + 1, "x"));
    for key in [
        "", "foo", "route", "route:x", "route:x:unknown", "route:x:lat:20", "route:x:lat:-1", "route:x:status:6xx",
        "route:x:req:extra", "m:abc:route:x:req", "m:+29166667:route:x:req", &old, &future, "ep:x:y", "ep:x:y:z",
        "tok:t:route", "tok:t:bogus", "route:%FF:req", "health:x:y",
    ] {
        assert!(!b.counter(key, 7), "{key}");
    }
    let snap = b.build();
    assert!(snap.routes.is_empty() && snap.tokens.is_empty());
    // Saturation instead of overflow.
    let snap = snapshot(NOW, [("route:x:req", u64::MAX), ("route:x:req", 5)], []);
    assert_eq!(snap.routes["x"].requests_total, u64::MAX);
}

#[test]
fn snapshot_json_shape() {
    let store = store_of(&traffic());
    let mut a = Health::default();
    a.observe(NOW - 60, true);
    let snap = snapshot_of(&store, &[("llama", "a", a), ("idle", "z", Health::default())], NOW);
    let v = serde_json::to_value(&snap).unwrap();
    assert_eq!(v["generated_at"], NOW);
    assert_eq!(v["histogram_bounds_ms"].as_array().unwrap().len(), BUCKETS - 1);
    let llama = &v["routes"]["llama"];
    assert_eq!(llama["requests_total"], 5);
    assert_eq!(llama["by_status_class"]["5xx"], 2);
    assert!(llama["latency_ms"]["p50"].is_f64());
    assert!(llama["latency_ms"]["histogram"]["counts"].is_array());
    assert!(llama["gateway_overhead_ms"]["p99"].is_f64());
    assert_eq!(llama["series"].as_array().unwrap().len(), 60);
    assert_eq!(llama["series"][59], serde_json::json!({"at": NOW, "requests": 1, "errors": 1}));
    assert_eq!(llama["endpoints"]["a"]["health"], "up");
    assert_eq!(llama["endpoints"]["a"]["uptime_24h"], 1.0);
    // A route known only from health has endpoints and empty numbers; nulls where nothing is known.
    let idle = &v["routes"]["idle"];
    assert_eq!(idle["endpoints"]["z"]["health"], "unknown");
    assert!(idle["endpoints"]["z"]["uptime_7d"].is_null());
    assert!(idle["latency_ms"]["p50"].is_null());
    assert_eq!(v["tokens"]["tok_a"]["last_seen"], NOW - 10);
    assert_eq!(v["tokens"]["tok_a"]["routes"]["mistral"], 1);
    let back: Snapshot = serde_json::from_value(v).unwrap();
    assert_eq!(back, snap);
}

// --- health ---

#[test]
fn down_after_two_failures_up_after_one_success() {
    let mut h = Health::default();
    assert_eq!(h.state(0), HealthState::Unknown);
    assert_eq!(h.observe(100, false), None);
    assert_eq!(h.state(100), HealthState::Unknown, "one failure decides nothing");
    assert_eq!(h.observe(130, false), Some(Transition { at: 130, up: false }));
    assert!(h.is_down(130));
    assert_eq!(h.observe(160, false), None);
    assert_eq!(h.observe(190, true), Some(Transition { at: 190, up: true }));
    assert_eq!(h.observe(220, false), None);
    assert_eq!(h.state(220), HealthState::Up, "a single lost probe keeps it up");
    assert_eq!(h.observe(250, true), None);
    assert_eq!(h.observe(280, false), None, "the success reset the count");
    assert_eq!(h.observe(310, false), Some(Transition { at: 310, up: false }));
    assert_eq!(h.transitions().len(), 3);
    let mut fresh = Health::default();
    assert_eq!(fresh.observe(5, true), Some(Transition { at: 5, up: true }));
}

#[test]
fn stale_and_out_of_order_probes() {
    let mut h = Health::default();
    h.observe(200, true);
    assert_eq!(h.observe(100, false), None);
    assert_eq!(h.observe(150, false), None, "older than the latest: ignored, not counted");
    assert_eq!(h.last_probe_at(), Some(200));
    assert_eq!(h.observe(210, false), None, "only one failure since the success at 200");
    assert_eq!(h.state(200 + HEALTH_STALE_SECS), HealthState::Up);
    let mut down = Health::default();
    down.observe(100, false);
    down.observe(110, false);
    assert!(down.is_down(110 + HEALTH_STALE_SECS));
    assert!(!down.is_down(111 + HEALTH_STALE_SECS), "no probe for too long: unknown, not down");
    assert_eq!(down.state(111 + HEALTH_STALE_SECS), HealthState::Unknown);
    let json = serde_json::to_string(&down).unwrap();
    assert_eq!(serde_json::from_str::<Health>(&json).unwrap(), down);
    assert_eq!(serde_json::from_str::<Health>("{}").unwrap(), Health::default());
}

#[test]
fn old_transitions_are_pruned_but_the_state_at_the_window_start_is_kept() {
    let day = 24 * 3600;
    let mut h = Health::default();
    h.observe(0, true);
    h.observe(10, false);
    h.observe(20, false); // down at 20
    h.observe(30, true); // up at 30
    let probe = 8 * day;
    h.observe(probe, true);
    assert_eq!(h.transitions(), &[Transition { at: 30, up: true }]);
    assert_eq!(h.uptime(probe - 7 * day, probe), Some(1.0));
    // Flapping is bounded.
    let mut f = Health::default();
    for i in 0..(3 * MAX_TRANSITIONS as u64 + 30) {
        f.observe(i, i % 3 == 0);
    }
    assert_eq!(f.transitions().len(), MAX_TRANSITIONS);
    assert!(f.transitions().windows(2).all(|w| w[0].at < w[1].at && w[0].up != w[1].up));
}

#[test]
fn uptime_is_the_up_share_of_known_time() {
    let t = [Transition { at: 100, up: true }, Transition { at: 200, up: false }, Transition { at: 300, up: true }];
    assert_eq!(uptime(&t, 0, 400), Some(200.0 / 300.0), "0..100 is unknown and left out");
    assert_eq!(uptime(&t, 150, 250), Some(0.5));
    assert_eq!(uptime(&t, 200, 300), Some(0.0));
    assert_eq!(uptime(&t, 0, 100), None);
    assert_eq!(uptime(&t, 300, 300), None);
    assert_eq!(uptime(&t, 400, 300), None);
    assert_eq!(uptime(&[], 0, 1_000), None);
    // Out of order input gives some answer in range, never a panic.
    let shuffled = [t[2], t[0], t[1]];
    assert!(uptime(&shuffled, 0, 400).is_none_or(|u| (0.0..=1.0).contains(&u)));

    let mut h = Health::default();
    h.observe(100, true);
    h.observe(200, false);
    h.observe(300, false);
    // Known from 100 until the state goes stale 600 s after the last probe.
    assert_eq!(h.uptime(0, 10_000), Some(200.0 / 800.0));
    assert_eq!(Health::default().uptime(0, 10_000), None);
}

proptest! {
    // Uptime is a fraction, and known time splits: the parts' up time adds up to the whole's.
    #[test]
    fn uptime_is_additive(probes in prop::collection::vec(any::<bool>(), 1..60), split in 0u64..2_000) {
        let mut h = Health::default();
        for (i, ok) in probes.iter().enumerate() {
            h.observe(i as u64 * 30, *ok);
        }
        let t = h.transitions();
        let (from, to) = (0u64, 2_000u64);
        let known = |a: u64, b: u64| -> f64 {
            let first = t.first().map_or(b, |f| f.at.max(a));
            b.saturating_sub(first).min(b.saturating_sub(a)) as f64
        };
        if let Some(u) = uptime(t, from, to) {
            prop_assert!((0.0..=1.0).contains(&u));
            let parts = uptime(t, from, split).unwrap_or(0.0) * known(from, split) + uptime(t, split, to).unwrap_or(0.0) * known(split, to);
            prop_assert!((parts - u * known(from, to)).abs() < 1e-6);
        }
    }
}

#[test]
fn down_endpoints_are_left_out_unless_all_are_down() {
    let ep = |id: &str, lease: Option<u64>| Endpoint { id: id.into(), url: "http://10.0.0.1:8000".into(), weight: 1, via: None, lease_expires_at: lease, registered_by: None };
    let all = vec![ep("a", None), ep("b", None), ep("c", Some(NOW + 60)), ep("gone", Some(NOW - 1))];
    let ids = |v: Vec<Endpoint>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(exclude_down(&all, NOW, |id| id == "b")), vec!["a", "c"]);
    assert_eq!(ids(exclude_down(&all, NOW, |_| false)), vec!["a", "b", "c"]);
    assert_eq!(ids(exclude_down(&all, NOW, |_| true)), vec!["a", "b", "c"], "all down: all tried");
    assert_eq!(ids(exclude_down(&all, NOW, |id| id != "gone")), vec!["a", "b", "c"], "an expired lease is no way out");
    assert!(exclude_down(&[], NOW, |_| false).is_empty());
    assert_eq!(health_key("llama", "a.b"), "health:llama:a.b");
    assert_eq!(parse_health_key(&health_key("we:ird", "")), Some(("we:ird".into(), "".into())));
    assert_eq!(parse_health_key("route:llama:req"), None);
    assert_eq!(parse_health_key("health:a:b:c"), None);
    assert!(!SnapshotBuilder::new(NOW).counter(&health_key("llama", "a"), 1));
    assert!(probe_ok(Some(200)) && probe_ok(Some(204)));
    assert!(!probe_ok(Some(503)) && !probe_ok(Some(302)) && !probe_ok(None));
}

// --- Prometheus ---

/// A strict reading of the text format: HELP and TYPE before a family's
/// samples, families contiguous, label values unescaped, no duplicate series.
fn strict_parse(text: &str) -> Vec<(String, Vec<(String, String)>, String)> {
    assert!(text.ends_with('\n'));
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut done = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    let valid_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') && !n.starts_with(|c: char| c.is_ascii_digit());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name) && helped.insert(name.to_string()), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "HELP before TYPE: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "{line}");
            if let Some(prev) = current.replace(name.to_string()) {
                done.insert(prev);
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        let family = match types.get(name) {
            Some(_) => name.to_string(),
            None => {
                let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or_else(|| panic!("untyped {line}"));
                assert_eq!(types[base], "histogram", "{line}");
                base.to_string()
            }
        };
        assert_eq!(current.as_deref(), Some(family.as_str()), "families are contiguous: {line}");
        assert!(!done.contains(&family));
        let mut rest = &line[name_end..];
        let mut labels = vec![];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices();
            loop {
                let (start, c) = chars.next().unwrap();
                if c == '}' {
                    rest = &r[start + 1..];
                    break;
                }
                let eq = r[start..].find('=').unwrap() + start;
                let key = r[start..eq].to_string();
                assert!(valid_name(&key), "{line}");
                while chars.next().unwrap().0 < eq {}
                assert_eq!(chars.next().unwrap().1, '"', "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '\\' => match chars.next().unwrap().1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline"),
                        c => value.push(c),
                    }
                }
                labels.push((key, value));
                match chars.clone().next().unwrap().1 {
                    ',' => {
                        chars.next();
                    }
                    '}' => {}
                    other => panic!("unexpected {other} in {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap();
        assert!(value == "+Inf" || value == "-Inf" || value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
        assert!(seen.insert(format!("{name}{labels:?}")), "duplicate series {line}");
        out.push((name.to_string(), labels, value.to_string()));
    }
    out
}

fn parse_with_prometheus_parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn find<'a>(scrape: &'a prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a prometheus_parse::Value {
    let hits: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(hits.len(), 1, "{metric} {labels:?}");
    &hits[0].value
}

#[test]
fn prometheus_exposition_parses_with_the_values() {
    use prometheus_parse::Value;
    let store = store_of(&traffic());
    let mut a = Health::default();
    a.observe(NOW - 600, true);
    let mut b = Health::default();
    b.observe(NOW - 60, false);
    b.observe(NOW - 30, false);
    let snap = snapshot_of(&store, &[("llama", "a", a), ("llama", "b", b)], NOW);
    let text = render_prometheus(&snap, true);
    strict_parse(&text);
    let scrape = parse_with_prometheus_parse(&text);

    assert_eq!(find(&scrape, "gateway_requests_total", &[("route", "llama"), ("status_class", "2xx")]), &Value::Counter(2.0));
    assert_eq!(find(&scrape, "gateway_requests_total", &[("route", "llama"), ("status_class", "5xx")]), &Value::Counter(2.0));
    assert_eq!(find(&scrape, "gateway_requests_total", &[("route", "mistral"), ("status_class", "2xx")]), &Value::Counter(1.0));

    let Value::Histogram(buckets) = find(&scrape, "gateway_request_duration_ms", &[("route", "llama")]) else { panic!("not a histogram") };
    assert_eq!(buckets.len(), BUCKETS);
    assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count), "cumulative");
    assert_eq!(buckets[BUCKETS - 1].less_than, f64::INFINITY);
    assert_eq!(buckets[BUCKETS - 1].count, 5.0);
    let le_100 = buckets.iter().find(|b| b.less_than == 100.0).unwrap();
    assert_eq!(le_100.count, 3.0, "40 ms and 80 ms twice");
    assert_eq!(find(&scrape, "gateway_request_duration_ms_count", &[("route", "llama")]), &Value::Untyped(5.0));
    assert_eq!(find(&scrape, "gateway_request_duration_ms_sum", &[("route", "llama")]), &Value::Untyped(80.0 * 2.0 + 120.0 + 3_000.0 + 40.0));
    let Value::Histogram(gw) = find(&scrape, "gateway_overhead_duration_ms", &[("route", "llama")]) else { panic!() };
    assert_eq!(gw.last().unwrap().count, 3.0);
    assert_eq!(find(&scrape, "gateway_overhead_duration_ms_sum", &[("route", "llama")]), &Value::Untyped(1.2));

    assert_eq!(find(&scrape, "gateway_request_bytes_total", &[("route", "llama")]), &Value::Counter(300.0));
    assert_eq!(find(&scrape, "gateway_response_bytes_total", &[("route", "llama")]), &Value::Counter(3_000.0));
    assert_eq!(find(&scrape, "gateway_route_llm_tokens_total", &[("route", "llama"), ("kind", "completion")]), &Value::Counter(21.0));
    assert_eq!(find(&scrape, "gateway_endpoint_requests_total", &[("route", "llama"), ("endpoint", "b")]), &Value::Counter(2.0));
    assert_eq!(find(&scrape, "gateway_endpoint_failures_total", &[("route", "llama"), ("endpoint", "b")]), &Value::Counter(2.0));
    assert_eq!(find(&scrape, "gateway_endpoint_up", &[("route", "llama"), ("endpoint", "a")]), &Value::Gauge(1.0));
    assert_eq!(find(&scrape, "gateway_endpoint_up", &[("route", "llama"), ("endpoint", "b")]), &Value::Gauge(0.0));
    assert_eq!(find(&scrape, "gateway_endpoint_uptime_ratio", &[("route", "llama"), ("endpoint", "a"), ("window", "24h")]), &Value::Gauge(1.0));
    assert_eq!(find(&scrape, "gateway_endpoint_uptime_ratio", &[("route", "llama"), ("endpoint", "b"), ("window", "7d")]), &Value::Gauge(0.0));
    assert_eq!(find(&scrape, "gateway_token_requests_total", &[("token", "tok_a")]), &Value::Counter(4.0));
    assert_eq!(find(&scrape, "gateway_token_route_requests_total", &[("token", "tok_a"), ("route", "mistral")]), &Value::Counter(1.0));
    assert_eq!(find(&scrape, "gateway_token_last_seen_seconds", &[("token", "tok_a")]), &Value::Gauge((NOW - 10) as f64));
    assert_eq!(find(&scrape, "gateway_llm_tokens_total", &[("token", "tok_a"), ("kind", "prompt")]), &Value::Counter(15.0));
    assert_eq!(find(&scrape, "gateway_llm_tokens_total", &[("token", "tok_b"), ("kind", "completion")]), &Value::Counter(0.0));
    for family in ["gateway_requests_total", "gateway_request_duration_ms", "gateway_endpoint_up", "gateway_llm_tokens_total"] {
        assert!(scrape.docs.contains_key(family), "{family}");
    }
    assert!(text.contains("gateway_request_duration_ms_bucket{route=\"llama\",le=\"0.25\"} 0\n"));
    assert!(text.contains("gateway_request_duration_ms_bucket{route=\"llama\",le=\"300000\"} 5\n"));
    assert!(text.contains("gateway_request_duration_ms_bucket{route=\"llama\",le=\"+Inf\"} 5\n"));
}

#[test]
fn unknown_health_is_left_out_of_the_exposition() {
    let snap = snapshot_of(
        &store_of(&traffic()),
        &[("llama", "a", Health::default())],
        NOW,
    );
    let text = render_prometheus(&snap, true);
    assert!(!text.contains("gateway_endpoint_up{"));
    assert!(!text.contains("gateway_endpoint_uptime_ratio{"));
    // An empty snapshot is still a valid exposition: families with no samples, but for
    // the expiring tokens' zeros (an alert on them needs the series to exist).
    let empty = render_prometheus(&SnapshotBuilder::new(NOW).build(), true);
    let samples = strict_parse(&empty);
    assert_eq!(samples.len(), 8);
    assert!(samples
        .iter()
        .all(|(name, _, v)| name == "gateway_tokens_expiring" && v == "0"));
    assert_eq!(parse_with_prometheus_parse(&empty).samples.len(), 8);
}

#[test]
fn prometheus_names_follow_the_conventions() {
    use prometheus_parse::Value;
    let mut traffic = traffic();
    for (s, fb) in traffic.iter_mut().zip([30.0, 30.0, 700.0, 0.4, 12.0]) {
        s.first_byte_ms = Some(fb);
    }
    let store = store_of(&traffic);
    let mut a = Health::default();
    a.observe(NOW - 600, true);
    a.observe(NOW - 45, true);
    let mut b = Health::default();
    b.observe(NOW - 90, true);
    let snap = snapshot_of(&store, &[("llama", "a", a), ("mistral", "b", b)], NOW);
    let text = render_prometheus(&snap, false);
    let scrape = parse_with_prometheus_parse(&text);

    // Durations in seconds, with the same buckets as the deprecated milliseconds.
    let Value::Histogram(secs) = find(
        &scrape,
        "gateway_request_duration_seconds",
        &[("route", "llama")],
    ) else {
        panic!("not a histogram")
    };
    let Value::Histogram(ms) = find(
        &scrape,
        "gateway_request_duration_ms",
        &[("route", "llama")],
    ) else {
        panic!("not a histogram")
    };
    assert_eq!(secs.len(), ms.len());
    for (s, m) in secs.iter().zip(ms) {
        assert_eq!(s.count, m.count);
        assert!(
            s.less_than == m.less_than / 1000.0 || s.less_than.is_infinite(),
            "{} vs {}",
            s.less_than,
            m.less_than
        );
    }
    assert!(
        text.contains(
            "gateway_request_duration_seconds_bucket{route=\"llama\",le=\"0.00025\"} 0\n"
        ),
        "{text}"
    );
    assert!(text
        .contains("gateway_request_duration_seconds_bucket{route=\"llama\",le=\"300\"} 5\n"));
    assert_eq!(
        find(
            &scrape,
            "gateway_request_duration_seconds_sum",
            &[("route", "llama")]
        ),
        &Value::Untyped(3.32)
    );
    assert_eq!(
        find(
            &scrape,
            "gateway_overhead_duration_seconds_sum",
            &[("route", "llama")]
        ),
        &Value::Untyped(0.0012)
    );
    assert!(scrape.docs["gateway_request_duration_ms"]
        .starts_with("Deprecated: use gateway_request_duration_seconds"));
    assert!(scrape.docs["gateway_overhead_duration_ms"]
        .starts_with("Deprecated: use gateway_overhead_duration_seconds"));

    // Time to first byte, per route.
    let Value::Histogram(fb) = find(
        &scrape,
        "gateway_upstream_first_byte_seconds",
        &[("route", "llama")],
    ) else {
        panic!("not a histogram")
    };
    assert_eq!(
        fb.iter().find(|b| b.less_than == 0.05).unwrap().count,
        4.0,
        "30 ms twice, 0.4 ms and 12 ms"
    );
    assert_eq!(fb.last().unwrap().count, 5.0);
    assert_eq!(
        find(
            &scrape,
            "gateway_upstream_first_byte_seconds_sum",
            &[("route", "llama")]
        ),
        &Value::Untyped(0.7724)
    );

    // Timestamps are `_timestamp_seconds`; the latest probe stands for the probe rounds.
    assert_eq!(
        find(
            &scrape,
            "gateway_endpoint_last_probe_timestamp_seconds",
            &[("route", "llama"), ("endpoint", "a")]
        ),
        &Value::Gauge((NOW - 45) as f64)
    );
    assert_eq!(
        find(&scrape, "gateway_probe_last_round_timestamp_seconds", &[]),
        &Value::Gauge((NOW - 45) as f64)
    );

    // No label per token unless asked for; per partner and per route are always there.
    assert!(!text.contains("token=\""), "{text}");
    assert!(!text.contains("gateway_token_"));
    assert!(text.contains("gateway_partner_requests_total"));
    let per_token = render_prometheus(&snap, true);
    let scrape_all = parse_with_prometheus_parse(&per_token);
    assert_eq!(
        find(
            &scrape_all,
            "gateway_token_last_seen_timestamp_seconds",
            &[("token", "tok_a")]
        ),
        &Value::Gauge((NOW - 10) as f64)
    );
    assert!(scrape_all.docs["gateway_token_last_seen_seconds"].starts_with("Deprecated"));

    // Every family: counters end in `_total`; a unit suffix is a base unit, but for the deprecated.
    for line in per_token.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        let deprecated = scrape_all.docs[name].starts_with("Deprecated");
        assert_eq!(
            name.contains("_ms") || name.ends_with("last_seen_seconds"),
            deprecated,
            "{name}"
        );
    }
}

#[test]
fn tokens_about_to_expire_are_counted_by_kind() {
    use crate::store::TokenRecord;
    use crate::token::TokenKind;
    let record = |id: &str, kind: TokenKind, left: i64, revoked: bool| TokenRecord {
        kind,
        created_at: NOW - 10,
        revoked_at: revoked.then_some(NOW - 5),
        ..crate::fixtures::token_record(id, (NOW as i64 + left) as u64)
    };
    let records = [
        record("a", TokenKind::Service, 3_600, false),
        record("b", TokenKind::Service, 3 * 86_400, false),
        record("c", TokenKind::Service, 30 * 86_400, false),
        record("d", TokenKind::Service, 3_600, true),
        record("e", TokenKind::Partner, 86_400, false),
        record("f", TokenKind::User, -60, false),
    ];
    let mut b = SnapshotBuilder::new(NOW);
    b.tokens(&records);
    let snap = b.build();
    assert_eq!(
        snap.tokens_expiring["service"],
        Expiring {
            within_24h: 1,
            within_7d: 2
        }
    );
    assert_eq!(
        snap.tokens_expiring["partner"],
        Expiring {
            within_24h: 1,
            within_7d: 1
        }
    );
    assert!(
        !snap.tokens_expiring.contains_key("user"),
        "expired tokens no longer expire"
    );
    let scrape = parse_with_prometheus_parse(&render_prometheus(&snap, false));
    assert_eq!(
        find(
            &scrape,
            "gateway_tokens_expiring",
            &[("kind", "service"), ("within", "7d")]
        ),
        &prometheus_parse::Value::Gauge(2.0)
    );
    assert_eq!(
        find(
            &scrape,
            "gateway_tokens_expiring",
            &[("kind", "user"), ("within", "24h")]
        ),
        &prometheus_parse::Value::Gauge(0.0)
    );
}

#[test]
fn label_values_are_escaped() {
    let odd = "we\"ird\\route\nx,y=z}";
    let mut snap = SnapshotBuilder::new(NOW).build();
    let mut r = RouteMetrics::default();
    r.by_status_class.insert("2xx".into(), 3);
    r.latency_ms.histogram.record(1.0);
    snap.routes.insert(odd.into(), r);
    snap.tokens.insert(
        "tok_\"\n".into(),
        TokenMetrics {
            requests: 2,
            ..TokenMetrics::default()
        },
    );
    let text = render_prometheus(&snap, true);
    assert!(
        text.contains(
            r#"gateway_requests_total{route="we\"ird\\route\nx,y=z}",status_class="2xx"} 3"#
        ),
        "{text}"
    );
    let samples = strict_parse(&text);
    let hit = samples.iter().find(|(n, _, _)| n == "gateway_requests_total").unwrap();
    assert_eq!(hit.1, vec![("route".to_string(), odd.to_string()), ("status_class".to_string(), "2xx".to_string())]);
    let tok = samples.iter().find(|(n, _, _)| n == "gateway_token_requests_total").unwrap();
    assert_eq!((tok.1[0].1.as_str(), tok.2.as_str()), ("tok_\"\n", "2"));
}

#[test]
fn floats_are_written_as_prometheus_reads_them() {
    assert_eq!(format_float(0.25), "0.25");
    assert_eq!(format_float(1.0), "1");
    assert_eq!(format_float(300_000.0), "300000");
    assert_eq!(format_float(1e21), "1000000000000000000000");
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_float(f64::NAN), "NaN");
    assert_eq!(PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}
