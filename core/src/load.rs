//! What the balancer knows besides the endpoint set: how busy each vLLM
//! instance is (parsed from its Prometheus `/metrics`), and which prompt
//! prefix a request shares with others (so requests that vLLM's prefix cache
//! could serve land together).
//!
//! Everything here is a pure function of bytes the adapter hands in: the
//! adapter scrapes `/metrics` and peeks at the request body.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The path an adapter scrapes on an endpoint for [`parse_vllm_metrics`].
pub const METRICS_PATH: &str = "metrics";

/// A reading older than this is ignored by [`estimate`]: vLLM's queues change
/// in seconds, and a stale "idle" would herd traffic onto a busy instance.
pub const LOAD_STALE_SECS: u64 = 30;

/// The most of a request body an adapter should peek at for [`prompt_prefix_key`].
pub const BODY_PEEK_BYTES: usize = 64 * 1024;

/// Bytes of the prompt's leading part that make a [`prompt_prefix_key`]
/// (about 500 tokens: a few dozen vLLM KV blocks).
pub const PREFIX_KEY_BYTES: usize = 2048;

/// A route's latest readings, by endpoint id ([`crate::store::RouteSource::loads`]).
pub type Loads = std::collections::BTreeMap<String, EndpointLoad>;

/// Largest `/metrics` body read (vLLM's, histograms included, is tens of KiB).
pub const MAX_METRICS_BYTES: usize = 1024 * 1024;

/// Requests one isolate or Lambda instance has in flight, by endpoint: the fresh half of an
/// endpoint's load ([`estimate`]). The adapter counts an attempt from when it goes out until
/// it fails or its response body ends (or the client leaves).
#[derive(Debug, Default)]
pub struct InFlight {
    counts: std::collections::HashMap<String, u64>,
}

impl InFlight {
    fn key(route: &str, endpoint: &str) -> String {
        format!("{route}\0{endpoint}")
    }

    /// Requests in flight to `endpoint` of `route`.
    pub fn get(&self, route: &str, endpoint: &str) -> u64 {
        // Asked for every endpoint of every request: an idle instance builds no key.
        if self.counts.is_empty() {
            return 0;
        }
        self.counts.get(&Self::key(route, endpoint)).copied().unwrap_or(0)
    }

    /// One more; returns the key [`InFlight::end`] takes.
    pub fn start(&mut self, route: &str, endpoint: &str) -> String {
        let key = Self::key(route, endpoint);
        *self.counts.entry(key.clone()).or_default() += 1;
        key
    }

    /// One fewer (entries at zero are dropped, so the table holds only busy endpoints).
    pub fn end(&mut self, key: &str) {
        if let Some(n) = self.counts.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }
}

/// One reading of an endpoint's load, as vLLM reports it. `None`: the metric
/// was absent (another vLLM version, or not a vLLM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointLoad {
    /// When the reading was taken, unix seconds; [`parse_vllm_metrics`] leaves
    /// it 0 and the adapter sets it.
    #[serde(default)]
    pub at: u64,
    /// Requests in the running batch (`vllm:num_requests_running`), summed over engines and models.
    #[serde(default)]
    pub running: Option<f64>,
    /// Requests queued (`vllm:num_requests_waiting`), summed likewise.
    #[serde(default)]
    pub waiting: Option<f64>,
    /// Fraction of the KV cache in use, 0..=1 (`vllm:kv_cache_usage_perc`, older
    /// `vllm:gpu_cache_usage_perc`); the mean over engines.
    #[serde(default)]
    pub kv_cache_usage: Option<f64>,
    /// Prefix cache hit rate, 0..=1: vLLM v0's `vllm:gpu_prefix_cache_hit_rate`
    /// gauge, else hits / queries since the server started (see [`EndpointLoad::hit_rate_since`]).
    #[serde(default)]
    pub prefix_cache_hit_rate: Option<f64>,
    /// Tokens looked up in the prefix cache since start (`vllm:prefix_cache_queries_total`).
    #[serde(default)]
    pub prefix_cache_queries: Option<f64>,
    /// Tokens found in the prefix cache since start (`vllm:prefix_cache_hits_total`).
    #[serde(default)]
    pub prefix_cache_hits: Option<f64>,
}

impl EndpointLoad {
    /// True while the reading is recent enough to steer traffic ([`LOAD_STALE_SECS`]).
    pub fn is_fresh(&self, now: u64) -> bool {
        now <= self.at.saturating_add(LOAD_STALE_SECS)
    }

    /// The prefix cache hit rate between `earlier` and this reading, from the
    /// v1 counters; `None` without both readings, without queries in between,
    /// or when the counters went back (the server restarted).
    pub fn hit_rate_since(&self, earlier: &EndpointLoad) -> Option<f64> {
        let q = self.prefix_cache_queries? - earlier.prefix_cache_queries?;
        let h = self.prefix_cache_hits? - earlier.prefix_cache_hits?;
        (q > 0.0 && h >= 0.0).then(|| (h / q).min(1.0))
    }
}

/// Sum and count of one metric's samples over its label sets.
#[derive(Default, Clone, Copy)]
struct Acc {
    sum: f64,
    n: u32,
}

impl Acc {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }
    fn sum(self) -> Option<f64> {
        (self.n > 0).then_some(self.sum)
    }
    fn mean(self) -> Option<f64> {
        (self.n > 0).then(|| (self.sum / self.n as f64).clamp(0.0, 1.0))
    }
}

/// Reads the load signals from a vLLM `/metrics` page (Prometheus text format).
///
/// Tolerant by design: comments, unknown metrics, malformed lines and values
/// that are not finite and non-negative are skipped, and nothing panics.
/// Counts are summed over label sets (several models or engines behind one
/// URL); ratios are averaged. Both the v1 names (`vllm:kv_cache_usage_perc`,
/// the `vllm:prefix_cache_{hits,queries}` counters, with or without `_total`)
/// and the v0 ones (`vllm:gpu_cache_usage_perc`, `vllm:gpu_prefix_cache_hit_rate`)
/// are read; the newer wins when a page has both.
pub fn parse_vllm_metrics(text: &str) -> EndpointLoad {
    let [mut running, mut waiting, mut kv, mut kv_old, mut rate_old, mut hits, mut hits_bare, mut queries, mut queries_bare] =
        [Acc::default(); 9];
    for line in text.lines() {
        let Some((name, value)) = sample(line) else {
            continue;
        };
        let acc = match name {
            "vllm:num_requests_running" => &mut running,
            "vllm:num_requests_waiting" => &mut waiting,
            "vllm:kv_cache_usage_perc" => &mut kv,
            "vllm:gpu_cache_usage_perc" => &mut kv_old,
            "vllm:gpu_prefix_cache_hit_rate" => &mut rate_old,
            "vllm:prefix_cache_hits_total" => &mut hits,
            "vllm:prefix_cache_hits" => &mut hits_bare,
            "vllm:prefix_cache_queries_total" => &mut queries,
            "vllm:prefix_cache_queries" => &mut queries_bare,
            _ => continue,
        };
        acc.add(value);
    }
    let prefix_cache_hits = hits.sum().or(hits_bare.sum());
    let prefix_cache_queries = queries.sum().or(queries_bare.sum());
    let lifetime_rate = match (prefix_cache_hits, prefix_cache_queries) {
        (Some(h), Some(q)) if q > 0.0 => Some((h / q).clamp(0.0, 1.0)),
        _ => None,
    };
    EndpointLoad {
        at: 0,
        running: running.sum(),
        waiting: waiting.sum(),
        kv_cache_usage: kv.mean().or(kv_old.mean()),
        prefix_cache_hit_rate: rate_old.mean().or(lifetime_rate),
        prefix_cache_queries,
        prefix_cache_hits,
    }
}

/// One sample line's metric name and value; `None` for comments, blank or
/// malformed lines and unusable values. Labels are skipped (a `}` inside a
/// quoted label value does not end them); a trailing timestamp is ignored.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if rest.starts_with('{') {
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end? + 1..];
    }
    let value: f64 = rest.split_ascii_whitespace().next()?.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((name, value))
}

/// An endpoint's load for the balancer: what this gateway instance has in
/// flight to it, plus the queue vLLM last reported (`waiting`).
///
/// Requests vLLM is running are not counted from the reading: running is what
/// it batches without delay, and a reading is up to a probe interval old, so a
/// burst that has long finished would still weigh on the endpoint (seen on real
/// vLLM: eight requests running in one reading pushed the next callers of the
/// same prompt off their server). A queue is the sign of overload, from every
/// gateway instance at once; this instance's own requests in flight are exact
/// and fresh, so a burst from here counts at once. The two overlap only while
/// this instance's requests wait in vLLM's queue, which overstates a load that
/// is high anyway. KV-cache usage is left out: when the cache fills, vLLM
/// queues, and `waiting` shows it.
pub fn load(l: &EndpointLoad, local_in_flight: u64) -> f64 {
    local_in_flight as f64 + l.waiting.unwrap_or(0.0)
}

/// [`load`] with the reading only when it is fresh at `now`; with none (or a
/// stale one), the local count alone.
pub fn estimate(reading: Option<&EndpointLoad>, local_in_flight: u64, now: u64) -> f64 {
    match reading.filter(|l| l.is_fresh(now)) {
        Some(l) => load(l, local_in_flight),
        None => local_in_flight as f64,
    }
}

// ---------------------------------------------------------------------------
// Prompt prefix
// ---------------------------------------------------------------------------

/// A key for the leading part of the prompt in an OpenAI-style request body,
/// so requests that share it (one system prompt from many callers, or the
/// turns of one conversation) go where vLLM's prefix cache already holds it.
///
/// `body` is a peek at the body (at most [`BODY_PEEK_BYTES`]); `complete` says
/// whether it is the whole body. The leading part is, for chat completions
/// (`messages`), every message up to and including the first `user` message
/// (so the system prompt and the first turn; later turns never change it),
/// and for completions the `prompt` (a string, the first of several strings,
/// or token ids). Each message counts as its role and its text (a string
/// content, or the `text` of each part of an array content; other parts count
/// by their `type` only). The first [`PREFIX_KEY_BYTES`] of that text are
/// hashed (SHA-256, 128 bits in hex), so the key depends neither on JSON key
/// order, whitespace nor any other field (`model`, `stream`, sampling).
///
/// A truncated peek is scanned for the top-level `messages` (or `prompt`)
/// without parsing the rest: messages are read one element at a time, and the
/// key is made when the leading part (or the byte budget) is complete within
/// the peek, giving the same key as the whole body would. `None` when the
/// body is not JSON of that shape, or when the peek ends first: the caller
/// then spreads the request by load.
pub fn prompt_prefix_key(body: &[u8], complete: bool) -> Option<String> {
    // More than a peek's worth is read as a peek: the cost stays bounded.
    let (body, complete) = if body.len() > BODY_PEEK_BYTES {
        (&body[..BODY_PEEK_BYTES], false)
    } else {
        (body, complete)
    };
    let mut text = Leading::default();
    if complete {
        let v: Value = serde_json::from_slice(body).ok()?;
        let obj = v.as_object()?;
        if let Some(messages) = obj.get("messages") {
            for m in messages.as_array()? {
                if text.message(m)? {
                    break;
                }
            }
        } else {
            text.prompt(obj.get("prompt")?)?;
        }
    } else if let Some(raw) = top_level_member(body, b"messages") {
        let mut elements = Elements::new(raw)?;
        loop {
            match elements.next() {
                Some(Some(el)) => {
                    let m: Value = serde_json::from_slice(el).ok()?;
                    if text.message(&m)? {
                        break;
                    }
                }
                // The array ended within the peek.
                Some(None) => break,
                // The peek ended first: enough only when the budget is full.
                None if text.full() => break,
                None => return None,
            }
        }
    } else {
        let raw = top_level_member(body, b"prompt")?;
        let end = value_end(raw, 0)?;
        text.prompt(&serde_json::from_slice(&raw[..end]).ok()?)?;
    }
    Some(text.key())
}

/// The canonical text of a prompt's leading part, capped at [`PREFIX_KEY_BYTES`].
#[derive(Default)]
struct Leading {
    bytes: Vec<u8>,
}

impl Leading {
    fn push(&mut self, b: &[u8]) {
        let room = PREFIX_KEY_BYTES - self.bytes.len();
        self.bytes.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn full(&self) -> bool {
        self.bytes.len() >= PREFIX_KEY_BYTES
    }

    /// Adds one chat message; `Some(true)` once the leading part is complete,
    /// `None` when the message is not an object.
    fn message(&mut self, m: &Value) -> Option<bool> {
        let m = m.as_object()?;
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        self.push(role.as_bytes());
        self.push(b"\x00");
        match m.get("content") {
            Some(Value::String(s)) => self.push(s.as_bytes()),
            Some(Value::Array(parts)) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        self.push(b"\n");
                    }
                    match p.get("text").and_then(Value::as_str) {
                        Some(t) => self.push(t.as_bytes()),
                        None => {
                            let kind = p.get("type").and_then(Value::as_str).unwrap_or("?");
                            self.push(format!("\x00{kind}\x00").as_bytes());
                        }
                    }
                }
            }
            _ => {}
        }
        self.push(b"\x1e");
        Some(role == "user" || self.full())
    }

    /// Adds a completions `prompt`; `None` for a shape that is not one.
    fn prompt(&mut self, p: &Value) -> Option<()> {
        match p {
            Value::String(s) => self.push(s.as_bytes()),
            Value::Array(items) => match items.first()? {
                Value::String(s) => self.push(s.as_bytes()),
                Value::Number(_) => {
                    for t in items {
                        self.push(format!("{},", t.as_u64()?).as_bytes());
                        if self.full() {
                            break;
                        }
                    }
                }
                _ => return None,
            },
            _ => return None,
        }
        Some(())
    }

    fn key(&self) -> String {
        let digest = Sha256::digest(&self.bytes);
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The index just past the JSON value starting at `i` (after whitespace), or
/// `None` when the bytes end before it does or it is not well formed enough to skip.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match *b.get(i)? {
        b'"' => {
            let mut j = i + 1;
            loop {
                match *b.get(j)? {
                    b'\\' => j += 2,
                    b'"' => return Some(j + 1),
                    _ => j += 1,
                }
            }
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = value_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // A number, true, false or null: ends at a delimiter, which must be within the peek.
            let end = (i..b.len())
                .find(|&j| matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
            (end > i).then_some(end)
        }
    }
}

/// The raw bytes from the value of the top-level object's member `name` to the
/// end of the peek (the value may be cut short). `None` when the peek is not
/// an object or ends before the member.
fn top_level_member<'a>(b: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut i = skip_ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if *b.get(i)? != b'"' {
            return None;
        }
        let key_end = value_end(b, i)?;
        let key: String = serde_json::from_slice(&b[i..key_end]).ok()?;
        i = skip_ws(b, key_end);
        if *b.get(i)? != b':' {
            return None;
        }
        i = skip_ws(b, i + 1);
        if key.as_bytes() == name {
            return Some(&b[i..]);
        }
        i = skip_ws(b, value_end(b, i)?);
        match *b.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

/// The elements of a JSON array whose bytes may be cut short.
struct Elements<'a> {
    b: &'a [u8],
    i: usize,
    done: bool,
}

impl<'a> Elements<'a> {
    fn new(b: &'a [u8]) -> Option<Self> {
        (b.first() == Some(&b'[')).then_some(Elements {
            b,
            i: 1,
            done: false,
        })
    }

    /// `Some(Some(element))`; `Some(None)` at the array's end; `None` when the
    /// bytes end first or are malformed.
    fn next(&mut self) -> Option<Option<&'a [u8]>> {
        if self.done {
            return Some(None);
        }
        let i = skip_ws(self.b, self.i);
        if *self.b.get(i)? == b']' {
            self.done = true;
            return Some(None);
        }
        let end = value_end(self.b, i)?;
        let after = skip_ws(self.b, end);
        match *self.b.get(after)? {
            b',' => self.i = after + 1,
            b']' => self.done = true,
            _ => return None,
        }
        Some(Some(&self.b[i..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_per_endpoint_and_forgets_idle_ones() {
        let mut t = InFlight::default();
        let a1 = t.start("llama", "a");
        let a2 = t.start("llama", "a");
        let b = t.start("llama", "b");
        assert_eq!((t.get("llama", "a"), t.get("llama", "b"), t.get("other", "a")), (2, 1, 0));
        t.end(&a1);
        t.end(&b);
        t.end(&b);
        assert_eq!((t.get("llama", "a"), t.get("llama", "b")), (1, 0));
        t.end(&a2);
        assert!(t.counts.is_empty());
    }
    use proptest::prelude::*;

    const SAMPLE_V1: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 3.0
vllm:num_requests_running{engine="1",model_name="tiny"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 4.0
vllm:num_requests_waiting{engine="1",model_name="tiny"} NaN
vllm:num_requests_waiting_by_reason{engine="0",model_name="tiny",reason="capacity"} 99.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="tiny"} 0.25
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="tiny"} 1000.0
vllm:prefix_cache_queries_created{engine="0",model_name="tiny"} 1.7e9
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 250.0
vllm:prefix_cache_hits_created{engine="0",model_name="tiny"} 1.7e9
http_requests_total{handler="/v1/chat/completions",method="POST",status="2xx"} 12.0
"#;

    #[test]
    fn v1_metrics_are_summed_over_engines() {
        let l = parse_vllm_metrics(SAMPLE_V1);
        assert_eq!(l.running, Some(5.0));
        assert_eq!(
            l.waiting,
            Some(4.0),
            "NaN skipped, _by_reason is another metric"
        );
        assert_eq!(l.kv_cache_usage, Some(0.375), "ratios are averaged");
        assert_eq!(l.prefix_cache_queries, Some(1000.0));
        assert_eq!(l.prefix_cache_hits, Some(250.0));
        assert_eq!(l.prefix_cache_hit_rate, Some(0.25));
        assert_eq!(l.at, 0);
    }

    #[test]
    fn v0_names_and_bare_counters_are_read() {
        let l = parse_vllm_metrics(
            "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n\
             vllm:gpu_prefix_cache_hit_rate{model_name=\"m\"} 0.4 1700000000000\n\
             vllm:num_requests_running{model_name=\"a}b\\\"c\"} 7\n\
             vllm:prefix_cache_hits 5\nvllm:prefix_cache_queries 10\n",
        );
        assert_eq!(l.kv_cache_usage, Some(0.9));
        assert_eq!(
            l.prefix_cache_hit_rate,
            Some(0.4),
            "the v0 gauge, timestamp ignored"
        );
        assert_eq!(l.running, Some(7.0), "a brace inside a quoted label value");
        assert_eq!(l.waiting, None);
        assert_eq!(
            (l.prefix_cache_hits, l.prefix_cache_queries),
            (Some(5.0), Some(10.0))
        );
        let both =
            parse_vllm_metrics("vllm:kv_cache_usage_perc 0.1\nvllm:gpu_cache_usage_perc 0.9\n");
        assert_eq!(both.kv_cache_usage, Some(0.1), "the newer name wins");
        assert_eq!(
            parse_vllm_metrics("<html>not metrics</html>"),
            EndpointLoad::default()
        );
    }

    #[test]
    fn load_is_the_local_requests_plus_vllms_queue() {
        let l = EndpointLoad {
            at: 100,
            running: Some(3.0),
            waiting: Some(2.0),
            ..Default::default()
        };
        assert_eq!(load(&l, 1), 3.0, "running requests are not a load");
        assert_eq!(load(&l, 9), 11.0);
        assert_eq!(load(&EndpointLoad::default(), 2), 2.0);
        assert_eq!(estimate(Some(&l), 1, 100 + LOAD_STALE_SECS), 3.0);
        assert_eq!(estimate(Some(&l), 1, 101 + LOAD_STALE_SECS), 1.0, "stale");
        assert_eq!(estimate(None, 0, 0), 0.0);
    }

    #[test]
    fn hit_rate_since_an_earlier_reading() {
        let r = |h, q| EndpointLoad {
            prefix_cache_hits: Some(h),
            prefix_cache_queries: Some(q),
            ..Default::default()
        };
        assert_eq!(r(150.0, 300.0).hit_rate_since(&r(50.0, 100.0)), Some(0.5));
        assert_eq!(
            r(10.0, 20.0).hit_rate_since(&r(50.0, 100.0)),
            None,
            "restarted"
        );
        assert_eq!(r(50.0, 100.0).hit_rate_since(&r(50.0, 100.0)), None);
    }

    fn chat(system: &str, turns: &[(&str, &str)]) -> serde_json::Value {
        let mut messages = vec![serde_json::json!({"role": "system", "content": system})];
        for (role, content) in turns {
            messages.push(serde_json::json!({"role": role, "content": content}));
        }
        serde_json::json!({"model": "m", "messages": messages})
    }

    fn key(v: &serde_json::Value) -> Option<String> {
        prompt_prefix_key(&serde_json::to_vec(v).unwrap(), true)
    }

    #[test]
    fn prefix_key_ignores_key_order_whitespace_and_other_fields() {
        let a = br#"{"model":"a","stream":true,"temperature":0.2,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi"}]}"#;
        let b = br#"{
            "messages": [ { "content": "You are terse.", "role": "system" },
                          { "content": [{"type": "text", "text": "Hi"}], "role": "user" } ],
            "model": "b", "max_tokens": 5 }"#;
        let ka = prompt_prefix_key(a, true).unwrap();
        assert_eq!(Some(&ka), prompt_prefix_key(b, true).as_ref());
        assert_eq!(ka.len(), 32);
        let other = br#"{"messages":[{"role":"system","content":"You are verbose."},{"role":"user","content":"Hi"}]}"#;
        assert_ne!(
            Some(ka),
            prompt_prefix_key(other, true),
            "another system prompt"
        );
    }

    #[test]
    fn later_turns_keep_the_key() {
        let first = chat("sys", &[("user", "What is Rust?")]);
        let later = chat(
            "sys",
            &[
                ("user", "What is Rust?"),
                ("assistant", "A language."),
                ("user", "Tell me more."),
            ],
        );
        assert_eq!(key(&first), key(&later));
        assert!(key(&first).is_some());
        assert_ne!(key(&first), key(&chat("sys", &[("user", "What is Go?")])));
    }

    #[test]
    fn a_truncated_peek_gives_the_whole_bodys_key() {
        let mut v = chat("system prompt", &[("user", "Q1")]);
        let filler = "y".repeat(2000);
        for _ in 0..60 {
            v["messages"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"role": "assistant", "content": filler}));
        }
        // Other members first, so the scanner has to skip them.
        let body = format!(
            r#"{{ "tools": [{{"type":"function","function":{{"name":"f","description":"a \"quoted\" ]}} brace"}}}}], "n": 1, "messages": {} }}"#,
            v["messages"]
        );
        assert!(body.len() > BODY_PEEK_BYTES);
        let peek = &body.as_bytes()[..BODY_PEEK_BYTES];
        let whole = prompt_prefix_key(body.as_bytes(), true);
        assert_eq!(whole, key(&v), "over a peek's worth is read as a peek");
        assert!(whole.is_some());
        assert_eq!(prompt_prefix_key(peek, false), whole);
        // Cut inside the first user message: not enough to decide.
        let cut = body.find("Q1").unwrap();
        assert_eq!(prompt_prefix_key(&body.as_bytes()[..cut], false), None);
        // A system prompt over the budget decides alone, even cut short afterwards.
        let huge = chat(&"s".repeat(3 * PREFIX_KEY_BYTES), &[("user", "a")]);
        let bytes = serde_json::to_string(&huge).unwrap();
        let mid = bytes.find(r#""user""#).unwrap() + 3;
        assert_eq!(
            prompt_prefix_key(&bytes.as_bytes()[..mid], false),
            key(&huge)
        );
        assert_eq!(
            key(&huge),
            key(&chat(&"s".repeat(3 * PREFIX_KEY_BYTES), &[("user", "b")]))
        );
    }

    #[test]
    fn completions_prompts_are_keyed() {
        let a = br#"{"prompt":"Once upon a time","model":"m"}"#;
        let b = br#"{"model":"x", "prompt": ["Once upon a time", "other"]}"#;
        assert_eq!(prompt_prefix_key(a, true), prompt_prefix_key(b, true));
        assert_eq!(
            prompt_prefix_key(a, true),
            prompt_prefix_key(&a[..a.len() - 2], false),
            "the prompt is whole within the peek"
        );
        assert!(prompt_prefix_key(br#"{"prompt":[1,2,3]}"#, true).is_some());
        assert_ne!(
            prompt_prefix_key(br#"{"prompt":[1,2,3]}"#, true),
            prompt_prefix_key(br#"{"prompt":[1,2,4]}"#, true)
        );
    }

    #[test]
    fn malformed_bodies_have_no_key() {
        for b in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"{\"messages\": 3}",
            b"{\"messages\": [1]}",
            b"{\"prompt\": {}}",
            b"{\"model\": \"m\"}",
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}] trailing",
        ] {
            assert_eq!(
                prompt_prefix_key(b, true),
                None,
                "{:?}",
                String::from_utf8_lossy(b)
            );
            let _ = prompt_prefix_key(b, false);
        }
        assert_eq!(prompt_prefix_key(b"{\"model\": \"m\", \"mess", false), None);
    }

    proptest! {
        // Junk never panics.
        #[test]
        fn metrics_parser_takes_any_text(text in ".{0,400}", tail in "(vllm:num_requests_running|vllm:kv_cache_usage_perc)[ {}\"a-z=,0-9.eE+-]{0,30}") {
            let l = parse_vllm_metrics(&format!("{text}\n{tail}"));
            for v in [l.running, l.waiting, l.kv_cache_usage, l.prefix_cache_hit_rate].into_iter().flatten() {
                prop_assert!(v.is_finite() && v >= 0.0);
            }
            prop_assert!(l.kv_cache_usage.is_none_or(|k| k <= 1.0));
        }

        #[test]
        fn prefix_key_takes_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..300), complete in any::<bool>()) {
            let _ = prompt_prefix_key(&b, complete);
        }

        // Near-JSON junk reaches the scanner's corners.
        #[test]
        fn prefix_key_takes_any_near_json(s in r#"\{("(messages|prompt|x)"|[\[\]{}:, "\\0-9a-z])*"#, complete in any::<bool>()) {
            let _ = prompt_prefix_key(s.as_bytes(), complete);
        }

        // Any cut of a body gives the whole body's key or none, never another.
        #[test]
        fn a_cut_never_gives_a_wrong_key(system in "[a-z \"\\\\]{0,40}", user in "[a-z]{0,40}", cut in 0usize..400) {
            let body = serde_json::to_vec(&serde_json::json!({"x": [1, {"y": "]"}], "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": user},
                {"role": "assistant", "content": "later"}]})).unwrap();
            let whole = prompt_prefix_key(&body, true);
            prop_assert!(whole.is_some());
            let cut = cut.min(body.len());
            if let Some(k) = prompt_prefix_key(&body[..cut], false) {
                prop_assert_eq!(Some(k), whole);
            }
        }
    }
}
