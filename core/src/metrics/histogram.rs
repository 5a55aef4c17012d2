//! Latency histograms: fixed millisecond buckets, mergeable, stored as integers.

use super::*;

/// Inclusive upper bounds, in milliseconds, of the finite histogram buckets;
/// one more bucket (`+Inf`) takes everything above the last. Shared by every
/// histogram, so histograms merge by adding counts.
pub const BUCKET_BOUNDS_MS: [f64; 19] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0,
    120_000.0, 300_000.0,
];

/// Buckets in a histogram: the finite ones plus `+Inf`.
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// A latency histogram with fixed buckets ([`BUCKET_BOUNDS_MS`]): a count per
/// bucket and the sum of the recorded values.
///
/// Mergeable: two histograms combine by adding their counts, which is what
/// an adapter's atomic counters do. Serialised compactly as
/// `{"counts": [...], "sum_us": n}`, with trailing empty buckets left out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "HistogramRepr", into = "HistogramRepr")]
pub struct Histogram {
    counts: [u64; BUCKETS],
    sum_us: u64,
}

/// The serialised form of a [`Histogram`].
#[derive(Serialize, Deserialize)]
pub(crate) struct HistogramRepr {
    counts: Vec<u64>,
    #[serde(default)]
    sum_us: u64,
}

impl From<Histogram> for HistogramRepr {
    fn from(h: Histogram) -> Self {
        let used = h.counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        HistogramRepr { counts: h.counts[..used].to_vec(), sum_us: h.sum_us }
    }
}

impl TryFrom<HistogramRepr> for Histogram {
    type Error = String;
    fn try_from(r: HistogramRepr) -> Result<Self, String> {
        if r.counts.len() > BUCKETS {
            return Err(format!("a histogram has at most {BUCKETS} buckets, got {}", r.counts.len()));
        }
        let mut h = Histogram { sum_us: r.sum_us, ..Histogram::default() };
        h.counts[..r.counts.len()].copy_from_slice(&r.counts);
        Ok(h)
    }
}

/// Milliseconds as whole microseconds; negative and NaN count as 0, huge values saturate.
pub(crate) fn to_us(ms: f64) -> u64 {
    if ms > 0.0 {
        // `as` saturates at u64::MAX (and +inf becomes u64::MAX).
        (ms * 1000.0).round() as u64
    } else {
        0
    }
}

impl Histogram {
    /// The bucket a value falls in: the first whose bound is `>= ms`
    /// (Prometheus' `le`), the last (`+Inf`) above 300 s. Negative and NaN
    /// values go to the first bucket.
    pub fn bucket_index(ms: f64) -> usize {
        if ms.is_nan() {
            return 0;
        }
        BUCKET_BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(BUCKETS - 1)
    }

    /// Records one value, in milliseconds.
    pub fn record(&mut self, ms: f64) {
        self.add(Self::bucket_index(ms), 1);
        self.add_sum_us(to_us(ms));
    }

    /// Adds `n` to bucket `index` (as read back from a counter); false, and
    /// nothing changes, when there is no such bucket.
    pub fn add(&mut self, index: usize, n: u64) -> bool {
        match self.counts.get_mut(index) {
            Some(c) => {
                *c = c.saturating_add(n);
                true
            }
            None => false,
        }
    }

    /// Adds to the sum of recorded values, in microseconds.
    pub fn add_sum_us(&mut self, us: u64) {
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds `other`'s counts and sum to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        self.add_sum_us(other.sum_us);
    }

    /// The count in each bucket, in the order of [`BUCKET_BOUNDS_MS`], `+Inf` last.
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// The sum of the recorded values, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// The sum of the recorded values, in milliseconds.
    pub fn sum_ms(&self) -> f64 {
        self.sum_us as f64 / 1000.0
    }

    /// The estimated `q`-quantile (`0.0..=1.0`) in milliseconds; `None` when
    /// nothing was recorded or `q` is out of range.
    ///
    /// The bucket holding the value of rank `⌈q·count⌉` is found, and the
    /// estimate is interpolated linearly inside it (as Prometheus'
    /// `histogram_quantile` does), so the estimate and that true value lie in
    /// the same bucket: the error is less than the bucket's width, at most
    /// 0.25 ms below 0.5 ms and otherwise at most 2/3 of the bucket's upper
    /// bound (bounds grow by at most 3×; e.g. a true 120 ms may read as
    /// anything in 100–250 ms). Above 300 s the estimate is 300 000 ms, a
    /// lower bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let upto = below.saturating_add(c);
            if upto as f64 >= rank {
                let lower = i.checked_sub(1).and_then(|j| BUCKET_BOUNDS_MS.get(j)).copied().unwrap_or(0.0);
                let Some(&upper) = BUCKET_BOUNDS_MS.get(i) else { return Some(lower) };
                let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lower + frac * (upper - lower));
            }
            below = upto;
        }
        None
    }
}
