//! Metering off the request path: each isolate (edge) or instance (Lambda)
//! adds its requests' samples up in a [`Batch`] of mergeable [`Updates`] and
//! writes the batch at most about once a second ([`FLUSH_MS`]), sooner when it
//! grows large ([`MAX_SAMPLES`]). No request waits on the write.
//!
//! A batch is split into [`SHARDS`] parts by route, so no single stored object
//! receives more than (isolates × flushes per second) writes, and the metrics
//! read merges the parts ([`merge_counters`]). Every part carries a batch id,
//! so a write retried after a lost answer is applied once.

use crate::metrics::{RequestSample, Updates};
use std::collections::BTreeMap;

/// The longest a sample waits in its batch before the batch is written, ms.
pub const FLUSH_MS: u64 = 1000;

/// A batch holding this many samples is written at once.
pub const MAX_SAMPLES: u64 = 256;

/// Into how many parts a batch is split, by route (the edge's counter objects).
pub const SHARDS: u32 = 8;

/// How long a written batch's id is remembered, so a retry is applied once, s.
pub const BATCH_ID_SECONDS: u64 = 3600;

/// When a batch should be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing to do now: nothing to write, or a write is already set for later.
    Idle,
    /// Write now.
    Now,
    /// Write in this many ms (the oldest sample's [`FLUSH_MS`] is not up yet).
    In(u64),
}

/// One part of a batch, ready to write: its id (unique per instance and write),
/// the shard it belongs to, and the updates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// Unique per write: `{instance}-{sequence}-{shard}`. A part sent twice under one id is applied once.
    pub id: String,
    /// The shard, `0..SHARDS`.
    pub shard: u32,
    /// What to apply.
    pub updates: Updates,
}

/// Samples added up since the last write.
#[derive(Debug)]
pub struct Batch {
    instance: String,
    sequence: u64,
    parts: BTreeMap<u32, Updates>,
    samples: u64,
    /// When the oldest sample in the batch was added, ms.
    oldest_ms: Option<u64>,
    /// Parts whose write failed, kept with their ids to be sent again as they were.
    unsent: Vec<Part>,
    /// A later write is set ([`Flush::In`] was returned and nothing was taken since).
    timer_set: bool,
}

impl Batch {
    /// An empty batch for the instance named `instance` (random per isolate / instance:
    /// it makes part ids unique across instances).
    pub fn new(instance: impl Into<String>) -> Self {
        Batch { instance: instance.into(), sequence: 0, parts: BTreeMap::new(), samples: 0, oldest_ms: None, unsent: Vec::new(), timer_set: false }
    }

    /// Adds one request's sample at `now_ms`; says what the caller does: write now, set a
    /// timer ([`Flush::In`], returned once until the batch is taken, so one timer is set per
    /// write however many requests end meanwhile), or nothing.
    pub fn add(&mut self, sample: &RequestSample, now_ms: u64) -> Flush {
        self.parts.entry(shard_of(&sample.route)).or_default().merge(crate::metrics::updates(sample));
        self.samples += 1;
        self.oldest_ms.get_or_insert(now_ms);
        match self.due(now_ms) {
            Flush::In(_) if self.timer_set => Flush::Idle,
            Flush::In(ms) => {
                self.timer_set = true;
                Flush::In(ms)
            }
            other => other,
        }
    }

    /// When the batch should be written, at `now_ms`.
    pub fn due(&self, now_ms: u64) -> Flush {
        match self.oldest_ms {
            None if self.unsent.is_empty() => Flush::Idle,
            None => Flush::In(FLUSH_MS),
            Some(_) if self.samples >= MAX_SAMPLES => Flush::Now,
            Some(oldest) => match (oldest + FLUSH_MS).checked_sub(now_ms) {
                Some(wait) if wait > 0 => Flush::In(wait),
                _ => Flush::Now,
            },
        }
    }

    /// Samples waiting to be written.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Takes what is to be written: the parts of earlier failed writes (same ids), then
    /// this batch's parts under new ids. The batch is empty after.
    pub fn take(&mut self) -> Vec<Part> {
        let mut out = std::mem::take(&mut self.unsent);
        if !self.parts.is_empty() {
            self.sequence += 1;
            for (shard, updates) in std::mem::take(&mut self.parts) {
                out.push(Part { id: format!("{}-{}-{shard}", self.instance, self.sequence), shard, updates });
            }
        }
        self.samples = 0;
        self.oldest_ms = None;
        self.timer_set = false;
        out
    }

    /// A part whose write failed (or whose outcome is unknown): it is sent again, under
    /// the same id, with the next write.
    pub fn failed(&mut self, part: Part) {
        self.unsent.push(part);
    }
}

/// The shard of a route's counters (FNV-1a of its name).
pub fn shard_of(route: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in route.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// True for a counter that holds a high-water mark (merged by max, not by sum).
pub fn is_max_key(key: &str) -> bool {
    key.ends_with(":last_seen")
}

/// Merges counters read from several places (shards, or an older single store):
/// sums, except high-water marks, which take the largest.
pub fn merge_counters(lists: impl IntoIterator<Item = Vec<(String, u64)>>) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in lists.into_iter().flatten() {
        let max = is_max_key(&k);
        let e = out.entry(k).or_insert(0);
        *e = if max { (*e).max(v) } else { e.saturating_add(v) };
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(route: &str, at: u64, token: Option<&str>) -> RequestSample {
        RequestSample { route: route.into(), status: 200, latency_ms: 3.0, at, token_id: token.map(String::from), ..RequestSample::default() }
    }

    #[test]
    fn a_batch_is_due_a_second_after_its_oldest_sample_or_when_large() {
        let mut b = Batch::new("i");
        assert_eq!(b.due(0), Flush::Idle);
        assert_eq!(b.add(&sample("a", 60, None), 10_000), Flush::In(FLUSH_MS));
        assert_eq!(b.add(&sample("a", 60, None), 10_400), Flush::Idle, "one timer per write: it is set already");
        assert_eq!(b.due(10_400), Flush::In(600));
        assert_eq!(b.due(11_000), Flush::Now);
        b.take();
        assert_eq!(b.due(11_000), Flush::Idle);
        assert_eq!(b.add(&sample("a", 60, None), 11_500), Flush::In(FLUSH_MS), "taken: the next sample sets a timer again");
        b.take();
        for i in 0..MAX_SAMPLES - 1 {
            assert_ne!(b.add(&sample("a", 60, None), 20_000 + i), Flush::Now);
        }
        assert_eq!(b.add(&sample("a", 60, None), 20_300), Flush::Now);
    }

    #[test]
    fn parts_are_split_by_route_with_ids_unique_per_write() {
        let mut b = Batch::new("iso1");
        b.add(&sample("alpha", 60, Some("t1")), 0);
        b.add(&sample("alpha", 60, Some("t1")), 0);
        let first = b.take();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].shard, shard_of("alpha"));
        assert_eq!(first[0].updates.adds.get("route:alpha:req"), Some(&2));
        b.add(&sample("alpha", 60, None), 0);
        let second = b.take();
        assert_ne!(first[0].id, second[0].id);
        assert!(b.take().is_empty());
    }

    #[test]
    fn a_failed_part_is_sent_again_under_its_own_id() {
        let mut b = Batch::new("i");
        b.add(&sample("a", 60, None), 0);
        let part = b.take().remove(0);
        b.failed(part.clone());
        assert_eq!(b.due(5), Flush::In(FLUSH_MS));
        b.add(&sample("a", 60, None), 5);
        let again = b.take();
        assert_eq!(again[0], part);
        assert_eq!(again.len(), 2);
        assert_ne!(again[1].id, part.id);
    }

    #[test]
    fn merging_sums_counters_and_keeps_the_latest_last_seen() {
        let merged = merge_counters([
            vec![("route:a:req".to_string(), 2), ("tok:t:last_seen".to_string(), 100)],
            vec![("route:a:req".to_string(), 3), ("tok:t:last_seen".to_string(), 90)],
        ]);
        assert_eq!(merged, vec![("route:a:req".to_string(), 5), ("tok:t:last_seen".to_string(), 100)]);
    }

    proptest! {
        /// However samples are batched and sharded, applying the parts and merging gives
        /// the counters of applying every sample on its own.
        #[test]
        fn batched_and_sharded_counts_equal_one_by_one(
            reqs in proptest::collection::vec((0usize..5, 0u64..4, 0usize..3, 0u64..3000), 1..80),
        ) {
            let routes = ["a", "b", "c/d", "ephemeral-1", "zz"];
            let tokens = [None, Some("t1"), Some("t2")];
            let mut direct = BTreeMap::new();
            let mut shards: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
            let mut b = Batch::new("p");
            let mut now = 0;
            for (r, minute, t, gap) in reqs {
                let s = sample(routes[r], 60 * minute + 1_000_000, tokens[t]);
                crate::metrics::updates(&s).apply_to(&mut direct);
                now += gap;
                if b.add(&s, now) == Flush::Now || gap > 2000 {
                    for p in b.take() {
                        p.updates.apply_to(shards.entry(p.shard).or_default());
                    }
                }
            }
            for p in b.take() {
                p.updates.apply_to(shards.entry(p.shard).or_default());
            }
            let merged = merge_counters(shards.into_values().map(|m| m.into_iter().collect()));
            prop_assert_eq!(merged, direct.into_iter().collect::<Vec<_>>());
        }
    }
}
