//! What a run measured, as written to `target/bench/results.json` and read by the report.

use crate::load::Outcome;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub settings: Settings,
    pub systems: Vec<SystemInfo>,
    pub points: Vec<Point>,
    pub cpu_runs: Vec<CpuRun>,
    pub usage: Vec<UsageCheck>,
    /// State-store writes per proxied request, by system.
    #[serde(default)]
    pub store_writes: Vec<StoreWrites>,
    /// Wall time of the load part, seconds.
    pub wall_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub warmup_s: f64,
    pub duration_s: f64,
    pub concurrency: Vec<usize>,
    pub chunks: usize,
    pub interval_ms: u64,
    pub timeout_s: u64,
    pub clk_tck: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Short key: direct, nginx, edge, lambda-emulator, lambda-noop, lambda-native, litellm.
    pub key: String,
    /// What it is, for the tables.
    pub label: String,
    /// `ok`, or why it was not measured.
    pub status: String,
    /// Seconds from start to ready (routes and token created).
    pub startup_s: f64,
    pub version: String,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Quantiles {
    pub fn of(h: &Histogram<u64>) -> Option<Quantiles> {
        if h.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(Quantiles {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Gaps {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p1_ms: f64,
    /// Share of gaps shorter than half the upstream's spacing (chunks bunched together).
    pub bunched_share: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Point {
    pub system: String,
    pub scenario: String,
    pub concurrency: usize,
    pub ok: u64,
    /// Every request sent, warm-up included.
    #[serde(default)]
    pub sent: u64,
    pub errors: BTreeMap<String, u64>,
    pub warmup_errors: u64,
    pub reconnects: u64,
    /// Requests that started in the window and ended after it.
    #[serde(default)]
    pub late: u64,
    pub elapsed_s: f64,
    pub rps: f64,
    pub latency: Option<Quantiles>,
    pub ttfc: Option<Quantiles>,
    pub gaps: Option<Gaps>,
    /// Server-side CPU per successful request, ms, by process set.
    pub cpu_ms_per_req: BTreeMap<String, f64>,
    /// Function instances running (Lambda under the emulator).
    #[serde(default)]
    pub instances: usize,
}

impl Point {
    pub fn from_outcome(system: &str, scenario: &str, o: &Outcome, interval_ms: u64) -> Point {
        let gaps = if o.gaps.is_empty() {
            None
        } else {
            let half = interval_ms * 1_000_000 / 2;
            let bunched = o.gaps.iter_recorded().filter(|v| v.value_iterated_to() < half).map(|v| v.count_at_value()).sum::<u64>();
            Some(Gaps {
                p50_ms: o.gaps.value_at_quantile(0.5) as f64 / 1e6,
                p99_ms: o.gaps.value_at_quantile(0.99) as f64 / 1e6,
                p1_ms: o.gaps.value_at_quantile(0.01) as f64 / 1e6,
                bunched_share: bunched as f64 / o.gaps.len() as f64,
                count: o.gaps.len(),
            })
        };
        Point {
            system: system.into(),
            scenario: scenario.into(),
            concurrency: o.concurrency,
            ok: o.ok,
            sent: o.sent,
            errors: o.errors.clone(),
            warmup_errors: o.warmup_errors,
            reconnects: o.reconnects,
            late: o.late,
            elapsed_s: o.elapsed.as_secs_f64(),
            rps: o.rps(),
            latency: Quantiles::of(&o.latency),
            ttfc: Quantiles::of(&o.ttfc),
            gaps,
            cpu_ms_per_req: BTreeMap::new(),
            instances: 0,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// CPU accounting around a known number of requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuRun {
    pub system: String,
    pub scenario: String,
    pub concurrency: usize,
    pub requests: u64,
    pub ok: u64,
    pub wall_s: f64,
    /// CPU ms over the run, by process set.
    pub cpu_ms: BTreeMap<String, f64>,
    /// CPU ms per second when idle, measured just before, by process set.
    pub idle_ms_per_s: BTreeMap<String, f64>,
    /// (cpu_ms - idle share) / requests.
    pub ms_per_request: BTreeMap<String, f64>,
}

/// State-store writes (edge: Durable Object calls; Lambda: DynamoDB write requests) an
/// instance sent while it served `requests` proxied requests of the load, as the instance
/// counts them (`x-gateway-instance-store-writes` on an admin's metrics read, before and after).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreWrites {
    pub system: String,
    pub requests: u64,
    pub writes: u64,
}

/// Did the gateway count the benchmark token's requests?
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageCheck {
    pub system: String,
    pub sent: u64,
    pub counted: u64,
}
