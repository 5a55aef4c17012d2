//! `report.md` from `results.json`, criterion's estimates and the facts `scripts/bench.sh`
//! gathered (machine, sizes, start-up, how long each step took).

use crate::results::{Point, Results};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Cloudflare's free plan: 10 ms of CPU per request.
const FREE_PLAN_CPU_MS: f64 = 10.0;

/// One criterion benchmark.
#[derive(Debug, Clone)]
pub struct Micro {
    pub id: String,
    pub median_ns: f64,
    pub mean_ns: f64,
    pub mean_lo_ns: f64,
    pub mean_hi_ns: f64,
}

/// Reads every `*/new/benchmark.json` + `estimates.json` under criterion's directory.
pub fn read_criterion(dir: &Path) -> Vec<Micro> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some(m) = read_one(&p) {
                        out.push(m);
                    }
                } else if p.file_name().is_some_and(|n| n != "base" && n != "change" && n != "report") {
                    stack.push(p);
                }
            }
        }
    }
    // token, hmac, route, balance (by endpoint count), then the whole decision.
    let rank = |id: &str| {
        let group = ["token/", "hmac_sha256/", "route/", "balance/", "gateway/"].iter().position(|p| id.starts_with(p)).unwrap_or(9);
        let n = id.rsplit('/').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        (group, n, id.to_string())
    };
    out.sort_by_key(|m| rank(&m.id));
    out
}

fn read_one(new_dir: &Path) -> Option<Micro> {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(new_dir.join("benchmark.json")).ok()?).ok()?;
    let est: Value = serde_json::from_str(&std::fs::read_to_string(new_dir.join("estimates.json")).ok()?).ok()?;
    Some(Micro {
        id: meta["full_id"].as_str()?.to_string(),
        median_ns: est["median"]["point_estimate"].as_f64()?,
        mean_ns: est["mean"]["point_estimate"].as_f64()?,
        mean_lo_ns: est["mean"]["confidence_interval"]["lower_bound"].as_f64()?,
        mean_hi_ns: est["mean"]["confidence_interval"]["upper_bound"].as_f64()?,
    })
}

/// `key=value` lines; later lines win.
pub fn read_facts(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

fn ms(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", ms(v))
    } else {
        format!("−{}", ms(-v))
    }
}

struct Ctx<'a> {
    r: &'a Results,
}

impl<'a> Ctx<'a> {
    fn point(&self, system: &str, scenario: &str, c: usize) -> Option<&'a Point> {
        self.r.points.iter().find(|p| p.system == system && p.scenario == scenario && p.concurrency == c)
    }

    fn label(&self, key: &str) -> String {
        self.r.systems.iter().find(|s| s.key == key).map(|s| s.label.clone()).unwrap_or_else(|| key.to_string())
    }

    /// (added p50, added p99) of whole-request latency over direct.
    fn added(&self, system: &str, scenario: &str, c: usize) -> Option<(f64, f64)> {
        let p = self.point(system, scenario, c)?.latency.as_ref()?;
        let d = self.point("direct", scenario, c)?.latency.as_ref()?;
        Some((p.p50_ms - d.p50_ms, p.p99_ms - d.p99_ms))
    }

    fn added_ttfc(&self, system: &str, c: usize) -> Option<(f64, f64)> {
        let p = self.point(system, "stream", c)?.ttfc.as_ref()?;
        let d = self.point("direct", "stream", c)?.ttfc.as_ref()?;
        Some((p.p50_ms - d.p50_ms, p.p99_ms - d.p99_ms))
    }

    /// Spacing preserved: median gap within 10% of the spacing of direct's, and under 1% of gaps bunched.
    fn spacing_preserved(&self, system: &str, c: usize) -> Option<bool> {
        let g = self.point(system, "stream", c)?.gaps.as_ref()?;
        let d = self.point("direct", "stream", c)?.gaps.as_ref()?;
        let tol = self.r.settings.interval_ms as f64 * 0.1;
        Some((g.p50_ms - d.p50_ms).abs() <= tol && g.bunched_share <= 0.01)
    }
}

const ORDER: [&str; 9] = ["direct", "nginx", "edge", "edge-mf", "edge-dev", "lambda-native", "lambda-emulator", "lambda-noop", "litellm"];

fn cpu_cell(p: &Point) -> String {
    if p.cpu_ms_per_req.is_empty() {
        return "–".into();
    }
    p.cpu_ms_per_req.iter().map(|(k, v)| format!("{k} {}", ms(*v))).collect::<Vec<_>>().join(", ")
}

fn errors_cell(p: &Point) -> String {
    let n = p.error_count();
    if n == 0 {
        "0".into()
    } else {
        format!("{n} ({})", p.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
    }
}

fn latency_table(out: &mut String, cx: &Ctx, scenario: &str) {
    let _ = writeln!(out, "| system | conc. | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | errors | server CPU ms/req |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for sys in ORDER {
        for &c in &cx.r.settings.concurrency {
            let Some(p) = cx.point(sys, scenario, c) else { continue };
            let Some(l) = &p.latency else {
                let _ = writeln!(out, "| {} | {c} | – | – | – | – | 0 | {} | – |", cx.label(sys), errors_cell(p));
                continue;
            };
            let (a50, a99) = if sys == "direct" { ("–".to_string(), "–".to_string()) } else { cx.added(sys, scenario, c).map(|(a, b)| (signed(a), signed(b))).unwrap_or(("?".into(), "?".into())) };
            let inst = if p.instances > 0 { format!(" ({} inst.)", p.instances) } else { String::new() };
            let _ = writeln!(out, "| {}{inst} | {c} | {} | {} | {a50} | {a99} | {:.0} | {} | {} |", short(sys), ms(l.p50_ms), ms(l.p99_ms), p.rps, errors_cell(p), cpu_cell(p));
        }
    }
}

fn short(sys: &str) -> &str {
    match sys {
        "direct" => "direct (floor)",
        "nginx" => "nginx",
        "edge" => "edge (workerd)",
        "edge-dev" => "edge via wrangler dev port",
        "edge-mf" => "edge (workerd, no wrangler)",
        "lambda-native" => "Lambda, native",
        "lambda-emulator" => "Lambda, emulator",
        "lambda-noop" => "no-op fn, emulator",
        "litellm" => "LiteLLM",
        other => other,
    }
}

fn stream_table(out: &mut String, cx: &Ctx) {
    let _ = writeln!(out, "| system | conc. | TTFC p50 ms | TTFC p99 ms | added TTFC p50 | added TTFC p99 | gap p50 ms | gap p99 ms | bunched | spacing preserved | streams/s | errors |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: |");
    for sys in ORDER {
        for &c in &cx.r.settings.concurrency {
            let Some(p) = cx.point(sys, "stream", c) else { continue };
            let (Some(t), Some(g)) = (&p.ttfc, &p.gaps) else {
                let _ = writeln!(out, "| {} | {c} | – | – | – | – | – | – | – | – | 0 | {} |", short(sys), errors_cell(p));
                continue;
            };
            let (a50, a99) = if sys == "direct" { ("–".to_string(), "–".to_string()) } else { cx.added_ttfc(sys, c).map(|(a, b)| (signed(a), signed(b))).unwrap_or(("?".into(), "?".into())) };
            let kept = match cx.spacing_preserved(sys, c) {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "?",
            };
            let inst = if p.instances > 0 { format!(" ({} inst.)", p.instances) } else { String::new() };
            let _ = writeln!(
                out,
                "| {}{inst} | {c} | {} | {} | {a50} | {a99} | {} | {} | {:.1}% | {kept} | {:.0} | {} |",
                short(sys),
                ms(t.p50_ms),
                ms(t.p99_ms),
                ms(g.p50_ms),
                ms(g.p99_ms),
                g.bunched_share * 100.0,
                p.rps,
                errors_cell(p)
            );
        }
    }
}

struct Check {
    what: String,
    before: String,
    measured: String,
    met: Option<bool>,
    why: String,
}

fn verdict(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The "before" column: what `scripts/bench.sh` measured on this machine on 2026-11-26
/// (commit 8dac9ef, the release before the hot-path work), from that run's tables.
mod before {
    /// workerd CPU ms per request, Miniflare without inspector, c=16: healthz, models (token), chat, stream.
    pub const MF_CPU: (f64, f64, f64, f64) = (0.483, 2.15, 2.51, 6.25);
    /// Edge (Miniflare) added latency, chat: (c, p50, p99).
    pub const EDGE_CHAT: [(usize, f64, f64); 2] = [(1, 3.06, 4.30), (16, 29.2, 121.0)];
    /// LiteLLM added latency, chat: (c, p50, p99).
    pub const LITELLM_CHAT: [(usize, f64, f64); 2] = [(1, 20.5, 24.6), (16, 140.0, 598.0)];
    /// Lambda native added latency: (scenario, c, p50, p99).
    pub const LAMBDA: [(&str, usize, f64, f64); 4] = [("models", 1, 0.615, 5.17), ("models", 16, 5.75, 36.5), ("chat", 1, 0.541, 4.27), ("chat", 16, 4.41, 96.3)];
    /// nginx added latency: (scenario, c, p50, p99).
    pub const NGINX: [(&str, usize, f64, f64); 4] = [("models", 1, 0.022, 0.026), ("models", 16, 0.104, 0.360), ("chat", 1, 0.019, 0.030), ("chat", 16, 0.096, 0.395)];
    /// Added TTFC p50 at c=1: edge (Miniflare), Lambda native.
    pub const TTFC_C1: (f64, f64) = (3.67, 0.858);
    /// Gap p99 at c=16: direct, edge (Miniflare), Lambda native.
    pub const GAP_P99_C16: (f64, f64, f64) = (22.0, 29.4, 24.2);
    /// The whole decision (criterion `gateway/route_request`, no token cache then), ns.
    pub const DECISION_NS: f64 = 10_010.0;
}

fn find4(t: &[(&str, usize, f64, f64)], scen: &str, c: usize) -> Option<(f64, f64)> {
    t.iter().find(|x| x.0 == scen && x.1 == c).map(|x| (x.2, x.3))
}

fn find3(t: &[(usize, f64, f64)], c: usize) -> Option<(f64, f64)> {
    t.iter().find(|x| x.0 == c).map(|x| (x.1, x.2))
}

fn checks(cx: &Ctx, micro: &[Micro]) -> Vec<Check> {
    let mut v = Vec::new();
    let cpu = |sys: &str, scen: &str| cx.r.cpu_runs.iter().find(|r| r.system == sys && r.scenario == scen).and_then(|r| r.ms_per_request.get("workerd").copied());
    let chunks = cx.r.settings.chunks.max(1) as f64;

    // workerd CPU per proxied request with a token <= 2.5x healthz.
    let (h, m) = (cpu("edge-mf", "healthz"), cpu("edge-mf", "models"));
    let (bh, bm, bc, bs) = before::MF_CPU;
    let ratio = h.zip(m).map(|(h, m)| m / h);
    v.push(Check {
        what: "workerd CPU per proxied request with a token ≤ 2.5 × the same run's `healthz` (Miniflare, c=16)".into(),
        before: format!("{} / {} ms = ×{:.1}", ms(bm), ms(bh), bm / bh),
        measured: match (h, m) {
            (Some(h), Some(m)) => format!("{} / {} ms = ×{:.1}", ms(m), ms(h), m / h),
            _ => "–".into(),
        },
        met: ratio.map(|r| r <= 2.5),
        why: match (ratio, cpu("edge-mf", "401 (no token)"), cpu("edge-mf", "models, public route")) {
            (Some(r), Some(refused), Some(public)) if r > 2.5 => format!(
                "profile (same run): healthz {}, a refused request {} (route lookup, refusal, log line), a proxied GET on a public route {} (the upstream fetch and the pass-through), with a token {} ms (token check from the isolate's cache, revocation lookup, the sample into the batch). The fetch through workerd's HTTP stack is most of the gap",
                ms(h.unwrap_or(0.0)), ms(refused), ms(public), ms(m.unwrap_or(0.0))
            ),
            _ => String::new(),
        },
    });
    // CPU per streamed chunk <= 0.05 ms.
    let per_chunk = cpu("edge-mf", "stream").zip(cpu("edge-mf", "chat")).map(|(s, c)| (s - c) / chunks);
    v.push(Check {
        what: "workerd CPU per streamed chunk ≤ 0.05 ms ((stream − chat) / chunks, Miniflare)".into(),
        before: format!("({} − {}) / {chunks} = {} ms", ms(bs), ms(bc), ms((bs - bc) / chunks)),
        measured: per_chunk.map(|p| format!("({} − {}) / {chunks} = {} ms", ms(cpu("edge-mf", "stream").unwrap_or(0.0)), ms(cpu("edge-mf", "chat").unwrap_or(0.0)), ms(p))).unwrap_or("–".into()),
        met: per_chunk.map(|p| p <= 0.05),
        why: if per_chunk.is_some_and(|p| p > 0.05) {
            "each chunk is still read and enqueued by a JavaScript pull stream (body.js), which counts it and keeps the usage tap's tail; workerd charges that JS per chunk. The runtime's own pipe (tee / pipeTo) would cost less but drops the closing error event of a broken stream (see Hot-path changes below)".into()
        } else {
            String::new()
        },
    });
    // LiteLLM >= 10x the edge's added latency (chat), p50 and p99, c=1 and 16.
    for c in [1usize, 16] {
        let (e, l) = (cx.added("edge-mf", "chat", c), cx.added("litellm", "chat", c));
        let (be, bl) = (find3(&before::EDGE_CHAT, c), find3(&before::LITELLM_CHAT, c));
        v.push(Check {
            what: format!("LiteLLM's added latency ≥ 10 × the edge's (Miniflare; chat, c={c}, p50 and p99)"),
            before: match (be, bl) {
                (Some(e), Some(l)) => format!("edge {} / {} ms, LiteLLM {} / {} ms: ×{:.1} / ×{:.1}", signed(e.0), signed(e.1), signed(l.0), signed(l.1), l.0 / e.0, l.1 / e.1),
                _ => "–".into(),
            },
            measured: match (e, l) {
                (Some(e), Some(l)) => format!("edge {} / {} ms, LiteLLM {} / {} ms: ×{:.1} / ×{:.1}", signed(e.0), signed(e.1), signed(l.0), signed(l.1), l.0 / e.0, l.1 / e.1),
                _ => "–".into(),
            },
            met: e.zip(l).map(|(e, l)| l.0 >= 10.0 * e.0 && l.1 >= 10.0 * e.1),
            why: if e.zip(l).is_some_and(|(e, l)| l.0 < 10.0 * e.0 || l.1 < 10.0 * e.1) {
                let c16 = cx.point("edge-mf", "chat", c).and_then(|p| p.cpu_ms_per_req.get("workerd").copied());
                format!("the edge's added latency is workerd's CPU per request ({} ms here) plus, at c=16, queueing on a machine whose 2 cores also run the stand-in and the load generator", c16.map(ms).unwrap_or("?".into()))
            } else {
                String::new()
            },
        });
    }
    // Lambda native <= 5x nginx's added latency, p50 and p99, c=1 and 16.
    for scen in ["models", "chat"] {
        for c in [1usize, 16] {
            let (l, n) = (cx.added("lambda-native", scen, c), cx.added("nginx", scen, c));
            let (bl, bn) = (find4(&before::LAMBDA, scen, c), find4(&before::NGINX, scen, c));
            let cell = |l: (f64, f64), n: (f64, f64)| format!("Lambda {} / {} ms, nginx {} / {} ms: ×{:.0} / ×{:.0}", signed(l.0), signed(l.1), signed(n.0), signed(n.1), l.0 / n.0, l.1 / n.1);
            let met = l.zip(n).map(|(l, n)| l.0 <= 5.0 * n.0.max(0.0) && l.1 <= 5.0 * n.1.max(0.0));
            v.push(Check {
                what: format!("Lambda handler served natively: added latency ≤ 5 × nginx's ({scen}, c={c}, p50 and p99)"),
                before: bl.zip(bn).map(|(l, n)| cell(l, n)).unwrap_or("–".into()),
                measured: l.zip(n).map(|(l, n)| cell(l, n)).unwrap_or("–".into()),
                met,
                why: if met == Some(false) {
                    let native = cx.point("lambda-native", scen, c).and_then(|p| p.cpu_ms_per_req.get("native").copied());
                    let ng = cx.point("nginx", scen, c).and_then(|p| p.cpu_ms_per_req.get("nginx").copied());
                    format!(
                        "CPU per request: the gateway {} ms, nginx {} ms. The gateway does what nginx does not (a token check, RBAC, the balancer, its log line and the sample) and does it in a tokio/hyper stack with a second HTTP client hop; nginx is a C relay",
                        native.map(ms).unwrap_or("?".into()),
                        ng.map(ms).unwrap_or("?".into())
                    )
                } else {
                    String::new()
                },
            });
        }
    }
    // Streams: TTFC <= direct + 1 ms at c=1.
    for (sys, b) in [("edge-mf", before::TTFC_C1.0), ("lambda-native", before::TTFC_C1.1)] {
        let t = cx.added_ttfc(sys, 1);
        v.push(Check {
            what: format!("{}: time to first chunk ≤ direct + 1 ms (c=1, p50)", short(sys)),
            before: format!("{} ms", signed(b)),
            measured: t.map(|t| format!("{} ms (p99 {})", signed(t.0), signed(t.1))).unwrap_or("–".into()),
            met: t.map(|t| t.0 <= 1.0),
            why: if t.is_some_and(|t| t.0 > 1.0) { "the first chunk waits on the whole request path (token, route, upstream connect) plus workerd's own relay".into() } else { String::new() },
        });
    }
    // Gaps at c=16, next to direct's.
    let gap = |sys: &str| cx.point(sys, "stream", 16).and_then(|p| p.gaps.as_ref()).map(|g| g.p99_ms);
    for (sys, b) in [("edge-mf", before::GAP_P99_C16.1), ("lambda-native", before::GAP_P99_C16.2)] {
        let kept = cx.spacing_preserved(sys, 16);
        v.push(Check {
            what: format!("{}: inter-chunk gaps preserved at c=16 (gap p99 next to direct's)", short(sys)),
            before: format!("{} ms vs direct {} ms", ms(b), ms(before::GAP_P99_C16.0)),
            measured: match (gap(sys), gap("direct")) {
                (Some(g), Some(d)) => format!("{} ms vs direct {} ms", ms(g), ms(d)),
                _ => "–".into(),
            },
            met: kept,
            why: if kept == Some(false) { "chunks bunched or spacing changed; see the streaming table".into() } else { String::new() },
        });
    }
    // State-store writes per proxied request <= 0.05.
    for (sys, label, b) in [("edge-mf", "edge: Durable Object calls", "1 (a call to the one GatewayState object per request)"), ("lambda-native", "Lambda: DynamoDB write requests", "4–6 (UpdateItems per request, the issue's count)")] {
        let w = cx.r.store_writes.iter().find(|w| w.system == sys);
        let per = w.map(|w| w.writes as f64 / w.requests.max(1) as f64);
        v.push(Check {
            what: format!("State-store writes per proxied request ≤ 0.05 ({label})"),
            before: b.into(),
            measured: w.map(|w| format!("{} writes / {} requests = {:.4}", w.writes, w.requests, w.writes as f64 / w.requests.max(1) as f64)).unwrap_or("–".into()),
            met: per.map(|p| p <= 0.05),
            why: String::new(),
        });
    }
    // The core decision: warm <= 2 us, cold <= 8 us.
    for (id, limit) in [("gateway/route_request_warm_token", 2_000.0), ("gateway/route_request_cold_token", 8_000.0)] {
        let m = micro.iter().find(|m| m.id == id);
        v.push(Check {
            what: format!("Core decision, `{id}` ≤ {} (criterion, host)", ns(limit)),
            before: format!("{} (`gateway/route_request`, no cache)", ns(before::DECISION_NS)),
            measured: m.map(|m| format!("{} median", ns(m.median_ns))).unwrap_or("–".into()),
            met: m.map(|m| m.median_ns <= limit),
            why: String::new(),
        });
    }
    v
}

/// Writes `report.md` next to `results.json`; returns its path.
pub fn write(out_dir: &Path, criterion_dir: &Path, facts_path: &Path) -> Result<PathBuf, String> {
    let results_path = out_dir.join("results.json");
    let r: Results = serde_json::from_str(&std::fs::read_to_string(&results_path).map_err(|e| format!("{}: {e}", results_path.display()))?).map_err(|e| format!("results.json: {e}"))?;
    let facts = read_facts(facts_path);
    let micro = read_criterion(criterion_dir);
    let cx = Ctx { r: &r };
    let f = |k: &str| facts.get(k).cloned().unwrap_or_else(|| "?".into());
    let mut o = String::new();
    let s = &r.settings;

    let _ = writeln!(o, "_Generated by `scripts/bench.sh` on {} UTC; do not edit by hand between the markers._\n", f("date"));
    let _ = writeln!(o, "### Machine and run\n");
    let _ = writeln!(o, "| | |\n| --- | --- |");
    let _ = writeln!(o, "| CPU | {} ({} cores, {}) |", f("cpu_model"), f("cores"), f("virtualization"));
    let _ = writeln!(o, "| memory | {} |", f("memory"));
    let _ = writeln!(o, "| kernel | {} |", f("kernel"));
    let _ = writeln!(o, "| toolchain | {}; node {}; {} |", f("rustc"), f("node"), f("cargo_lambda"));
    let _ = writeln!(o, "| load per point | {} s warm-up, then {} s measured; concurrency {}; timeout {} s |", s.warmup_s, s.duration_s, s.concurrency.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "), s.timeout_s);
    let _ = writeln!(o, "| streaming | {} chunks, {} ms apart (`x-standin-chunks`, `x-standin-interval-ms`) |", s.chunks, s.interval_ms);
    let _ = writeln!(o, "| wall time (timed part) | {} s in all: criterion {} s, load {:.0} s, sizes and start-up {} s |", f("timed_s"), f("criterion_s"), r.wall_s, f("sizes_s"));
    let _ = writeln!(o, "| before the timed part | waited {} s for an idle machine; setup {} s, nginx install {} s, LiteLLM install {} s, Worker bundle {} s, release build of gateway-lambda {} s, of gateway-bench {} s, criterion build {} s, Lambda zip {} s |", f("idle_wait_s"), f("setup_s"), f("nginx_install_s"), f("litellm_install_s"), f("build_edge_s"), f("build_lambda_s"), f("build_bench_s"), f("build_criterion_s"), f("lambda_zip_s"));
    let _ = writeln!(o);

    let _ = writeln!(o, "### Targets\n");
    let _ = writeln!(o, "Before: the run of 2026-11-26 on this machine (commit 8dac9ef, before the hot-path work). After: this run.\n");
    let _ = writeln!(o, "| target | before | after | verdict | why, when not met |\n| --- | --- | --- | --- | --- |");
    for c in checks(&cx, &micro) {
        let _ = writeln!(o, "| {} | {} | {} | {} | {} |", c.what, c.before, c.measured, verdict(c.met), c.why);
    }
    let lit = cx.added("litellm", "chat", 16);
    let _ = writeln!(
        o,
        "\nPublished figures for context (other machines and loads, not re-measured here): TensorZero added p99 0.94 ms at 10k QPS; LiteLLM's own overhead 12 ms median / 43 ms p99 at ~1k RPS. LiteLLM measured here (chat, c=16): added {} ms p50 / {} ms p99.\n",
        lit.map(|x| signed(x.0)).unwrap_or("–".into()),
        lit.map(|x| signed(x.1)).unwrap_or("–".into())
    );

    let _ = writeln!(o, "### GET /v1/models (the stand-in answers at once)\n");
    latency_table(&mut o, &cx, "models");
    let _ = writeln!(o, "\n### POST /v1/chat/completions, not streamed (the same request through every system, LiteLLM included)\n");
    latency_table(&mut o, &cx, "chat");
    let _ = writeln!(o, "\n### POST /v1/chat/completions, streamed ({} chunks {} ms apart)\n", s.chunks, s.interval_ms);
    let _ = writeln!(o, "TTFC: time to the first content chunk. Gap: time between consecutive content chunks as received. Bunched: gaps under half the spacing (chunks held back and released together). Spacing preserved: median gap within 10% of the spacing of direct's median, and under 1% bunched.\n");
    stream_table(&mut o, &cx);

    let _ = writeln!(o, "\n### Edge: workerd CPU per proxied request\n");
    let _ = writeln!(o, "utime+stime (from /proc/<pid>/stat) of the workerd process that runs the Worker, around a known number of requests sent to its own socket after warm-up, minus its idle rate. It is an upper bound of the Worker's billed CPU: it also holds the Durable Objects (the batched metrics writes, about one a second per isolate), Miniflare's local KV and Durable Object storage simulators and the HTTP work of the runtime. `healthz` (no store read, no upstream, no log line) is the runtime's own floor per request; `401 (no token)` adds the cached route lookup, the refusal and one console log line, but no upstream fetch; `models, public route` is a proxied GET on a route without auth (no token to verify), so `models` minus it is the cost of the token check (from the isolate's cache of verified tokens once warm) and the revocation lookup, and it minus `401` is the cost of the upstream fetch and of passing the response through. `stream` is a streamed answer of the configured chunk count, so (stream − chat) / chunks is the cost per chunk. Rows under `wrangler dev` (when measured) exclude wrangler's node process and its dev-proxy workerd, shown for information. The Miniflare rows run the same bundle and bindings on the same workerd without wrangler and without an inspector (`bench/edge-miniflare.mjs`).\n");
    let _ = writeln!(o, "| setup | scenario | conc. | requests (ok) | **workerd running the Worker**, CPU ms/request | share of the free plan's 10 ms | other processes, CPU ms/request |\n| --- | --- | ---: | ---: | ---: | ---: | --- |");
    for run in r.cpu_runs.iter().filter(|r| r.system == "edge" || r.system == "edge-mf") {
        let w = run.ms_per_request.get("workerd").copied().unwrap_or(f64::NAN);
        let others: Vec<String> = run.ms_per_request.iter().filter(|(k, _)| k.as_str() != "workerd").map(|(k, v)| format!("{k} {}", ms(*v))).collect();
        let setup = if run.system == "edge" { "wrangler dev" } else { "Miniflare, no inspector" };
        let _ = writeln!(o, "| {setup} | {} | {} | {} ({}) | {} | {:.1}% | {} |", run.scenario, run.concurrency, run.requests, run.ok, ms(w), w / FREE_PLAN_CPU_MS * 100.0, others.join(", "));
    }
    let _ = writeln!(o, "\n### Lambda: the emulator's own overhead\n");
    let _ = writeln!(o, "`cargo lambda watch --only-lambda-apis` relays each Function URL request to a function process through the Runtime API. The no-op function answers 200 \"ok\" at once, so its rows are the emulator's cost; the gateway's own cost under the emulator is roughly the difference.\n");
    let _ = writeln!(o, "| scenario | conc. | direct p50 / p99 | no-op via emulator p50 / p99 | emulator adds p50 / p99 | gateway via emulator p50 / p99 | gateway over no-op p50 / p99 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for scen in ["models", "chat"] {
        for &c in &s.concurrency {
            let q = |sys: &str| cx.point(sys, scen, c).and_then(|p| p.latency.clone());
            let (Some(d), Some(n)) = (q("direct"), q("lambda-noop")) else { continue };
            let g = q("lambda-emulator");
            let _ = writeln!(
                o,
                "| {scen} | {c} | {} / {} | {} / {} | {} / {} | {} | {} |",
                ms(d.p50_ms),
                ms(d.p99_ms),
                ms(n.p50_ms),
                ms(n.p99_ms),
                signed(n.p50_ms - d.p50_ms),
                signed(n.p99_ms - d.p99_ms),
                g.as_ref().map(|g| format!("{} / {}", ms(g.p50_ms), ms(g.p99_ms))).unwrap_or("–".into()),
                g.as_ref().map(|g| format!("{} / {}", signed(g.p50_ms - n.p50_ms), signed(g.p99_ms - n.p99_ms))).unwrap_or("–".into()),
            );
        }
    }

    let _ = writeln!(o, "\n### Core microbenchmarks (criterion, host, release profile)\n");
    let _ = writeln!(o, "| benchmark | median | mean [95% CI] |\n| --- | ---: | ---: |");
    for m in &micro {
        let _ = writeln!(o, "| `{}` | {} | {} [{} – {}] |", m.id, ns(m.median_ns), ns(m.mean_ns), ns(m.mean_lo_ns), ns(m.mean_hi_ns));
    }
    let wasm = |sys: &str, scen: &str| r.cpu_runs.iter().find(|r| r.system == sys && r.scenario == scen).and_then(|r| r.ms_per_request.get("workerd").copied()).map(ms).unwrap_or("–".into());
    let _ = writeln!(
        o,
        "\nThe same decision inside the Worker (wasm, under workerd) is part of the workerd CPU figures above: a proxied GET costs workerd {} ms under wrangler dev (– when not measured) and {} ms without wrangler's inspector ({} ms on a public route, no token; {} ms for healthz, the runtime's floor), which also pays for workerd's HTTP handling and KV reads.",
        wasm("edge", "models"),
        wasm("edge-mf", "models"),
        wasm("edge-mf", "models, public route"),
        wasm("edge-mf", "healthz"),
    );

    let _ = writeln!(o, "\n### Sizes and start-up\n");
    let _ = writeln!(o, "| artifact | size |\n| --- | ---: |");
    let _ = writeln!(o, "| Worker bundle (`wrangler deploy --dry-run`) | {} KiB, **{} KiB gzip** |", f("worker_total_kib"), f("worker_gzip_kib"));
    let _ = writeln!(o, "| Lambda release binary (`bootstrap`) | {} |", bytes_cell(&f("lambda_binary_bytes")));
    let _ = writeln!(o, "| Lambda deployable zip (`cargo lambda build --release --output-format zip`) | **{}** |", bytes_cell(&f("lambda_zip_bytes")));
    let _ = writeln!(o, "\nLambda start to first request served (`scripts/lambda-startup.sh`, healthz through the emulator, no DynamoDB): {} ms best, {} ms median of {} runs.\n", f("lambda_start_min_ms"), f("lambda_start_median_ms"), f("lambda_start_runs"));
    let _ = writeln!(o, "| system | start to ready (s) | version | notes |\n| --- | ---: | --- | --- |");
    for sys in ORDER {
        if let Some(info) = r.systems.iter().find(|s| s.key == sys) {
            let st = if info.status == "ok" { String::new() } else { format!("**{}** ", info.status) };
            let _ = writeln!(o, "| {} | {:.1} | {} | {st}{} |", info.label, info.startup_s, info.version, info.notes.join("; "));
        }
    }
    if !r.store_writes.is_empty() {
        let _ = writeln!(o, "\nState-store writes per proxied request, counted by the instance at each write call (`x-gateway-instance-store-writes` on an admin's metrics read before and after the system's load; edge: the Worker's Durable Object calls; Lambda: DynamoDB write requests, retries included, by an SDK interceptor):\n");
        for w in &r.store_writes {
            let _ = writeln!(o, "- {}: {} writes for {} proxied requests = {:.4} per request", short(&w.system), w.writes, w.requests, w.writes as f64 / w.requests.max(1) as f64);
        }
    }
    if !r.usage.is_empty() {
        let _ = writeln!(o, "\nUsage counting was on: the benchmark token's `request_count` (read back through `GET /_gateway/tokens`) against the requests sent with it:\n");
        for u in &r.usage {
            let _ = writeln!(o, "- {}: {} counted of {} sent", u.system, u.counted, u.sent);
        }
    }
    let path = out_dir.join("report.md");
    std::fs::write(&path, o).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn bytes_cell(v: &str) -> String {
    match v.parse::<f64>() {
        Ok(b) => format!("{:.1} MiB ({} bytes)", b / 1048576.0, v),
        Err(_) => v.to_string(),
    }
}
