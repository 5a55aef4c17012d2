//! `Store` over one DynamoDB table.
//!
//! Items (partition key `entity`, sort key `item`, TTL attribute `ttl`):
//!
//! | entity | item | attributes |
//! | --- | --- | --- |
//! | `route#{name}` | `def` | `route` (JSON; Terraform writes these too) |
//! | `route#{name}` | `lease#{id}` | `endpoint` (JSON), `expires_at`, `ttl` |
//! | `host#{host}` | `def` | `route_name` |
//! | `eph#{id}` | `def` | `route` (JSON), `ttl` |
//! | `token#{id}` | `def` | `record` (JSON), `request_count`, `last_used_at`, `ttl` |
//! | `token#{id}` | `revoked` | `ttl` |
//! | `subject#{subject}` | `revoked` | `revoked_at`, `ttl` |
//! | `audit` | `counter` | `seq` |
//! | `audit` | `seq#{seq:020}` | `entry` (JSON) |
//! | `metric` | `{item}` of a total (`route:…`, `ep:…`, `tok:…`) | one number per field ([`gateway_core::metrics`]'s key scheme) |
//! | `metric-m` | `{item}` of a minute bucket (`m:{minute}:route:…`) | one number per field, `ttl` |
//! | `health` | `health:{route}:{endpoint}` ([`health::health_key`]) | `health` (JSON) |
//! | `down` | `{route}` | `endpoints` (JSON list) |
//! | `load` | `{route}` | `loads` (JSON: endpoint id → vLLM's latest reading) |
//! | `svc` | `{name}` | `account` (JSON) |
//!
//! DynamoDB's TTL deletes items up to days late, so expiry is always checked in
//! code on read; `ttl` only lets old items go eventually.
//!
//! Identity providers' keys (JWKS) are not kept in the table: each instance fetches
//! them from the provider's `jwks_url` and keeps them in memory across warm
//! invocations ([`RouteSource::jwks`]).

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use futures_util::future::join_all;
use gateway_core::health::{self, Health};
use gateway_core::metrics::{self, Updates};
// The layout is core's ([`gateway_core::schema::dynamo`]), which Terraform's routes module is checked against.
use gateway_core::schema::dynamo::{
    budget_use_entity, ephemeral_entity, host_entity, lease_item, route_entity, subject_entity, token_entity, BUDGETS, DEF, METRIC, METRIC_MINUTE, MODELS, SEEN, SERVICE_ACCOUNT,
};
use gateway_core::fetch::{self, Answer, FetchError, Fetcher, Get};
use gateway_core::jwks::KeyPlace;
use gateway_core::oidc::{Jwks, JwksCache, Provider};
use gateway_core::ratelimit::{self, RateLimit};
use gateway_core::route::{Endpoint, Route};
use gateway_core::store::{AdminStore, AuditEntry, MetricsSink, RouteSource, ServiceAccount, TokenRecord};
use gateway_core::{Error, Result};
use gateway_core::budget::{BudgetUse, TokenBudget, Window};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attribute names of the key schema (core's; Terraform's infra/modules/lambda declares the same).
pub use gateway_core::schema::dynamo::{PK, SK, TTL};
/// Partition of the markers of batch parts already applied ([`DynamoStore::record_part`]).
const BATCH: &str = "batch";

type Item = HashMap<String, AttributeValue>;

/// The gateway's state in DynamoDB.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// The HTTP client of health probes and JWKS fetches, built on first use.
    prober: Arc<OnceLock<reqwest::Client>>,
    /// Identity providers' keys, shared by every clone (the data plane's `CachedSource`
    /// and the admin API read the same cache). Never locked across an `await`.
    keys: Arc<Mutex<JwksCache>>,
    /// One JWKS fetch in flight per provider: a burst of unknown `kid`s makes one fetch, and
    /// the others wait for it and read what it brought.
    flights: Arc<Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Unix seconds; the system clock except in tests ([`DynamoStore::with_clock`]).
    clock: fn() -> u64,
    /// What probes trust and present to endpoints ([`crate::tls`]).
    tls: Arc<crate::tls::UpstreamTls>,
}


fn system_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Attributes of a metric item that are not counters.
const NOT_COUNTERS: [&str; 3] = [PK, SK, TTL];

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(entity: &str, item: &str) -> Item {
    HashMap::from([(PK.to_string(), s(entity)), (SK.to_string(), s(item))])
}

fn db_err<E: std::fmt::Debug>(what: &str, e: E) -> Error {
    Error::Internal(format!("dynamodb {what}: {e:?}"))
}

/// A call's failure: [`Error::StoreUnavailable`] (503, and what the data plane's cache stands
/// in for) when DynamoDB could not be reached or answer in time, was throttled or failed on
/// its side; otherwise [`db_err`]'s.
fn store_err<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    if is_unavailable(&e) {
        Error::StoreUnavailable(format!("dynamodb {what}: {e:?}"))
    } else {
        db_err(what, e)
    }
}

/// True for a timeout, a connection or response failure, throttling or a DynamoDB-side error.
fn is_unavailable<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(se) => matches!(
            se.err().code(),
            Some("ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" | "InternalServerError" | "ServiceUnavailable")
        ),
        _ => false,
    }
}

/// DynamoDB write requests this instance sent (every attempt, retries included), shown to
/// admins as `x-gateway-instance-store-writes` on `GET /_gateway/metrics`: what the benchmark
/// divides by the requests it proxied.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// DynamoDB write requests this instance has sent since it started.
pub fn writes_sent() -> u64 {
    WRITES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts every write request as it goes out, whatever called it: the count cannot miss a
/// call site.
#[derive(Debug)]
struct CountWrites;

impl aws_sdk_dynamodb::config::Intercept for CountWrites {
    fn name(&self) -> &'static str {
        "CountWrites"
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let op = ctx.request().headers().get("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or("");
        if matches!(op, "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems") {
            WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A DynamoDB client whose every operation, retries included, is bounded by `timeout`
/// (`GATEWAY_STORE_TIMEOUT_MS`): an unreachable store fails fast instead of hanging a request.
pub fn client_with_timeout(aws: &aws_config::SdkConfig, timeout: Duration) -> Client {
    Client::from_conf(aws_sdk_dynamodb::config::Builder::from(aws).timeout_config(timeouts(timeout)).build())
}

/// Every operation, retries included, and every connection within `timeout`.
fn timeouts(timeout: Duration) -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder().operation_timeout(timeout).operation_attempt_timeout(timeout).connect_timeout(timeout).build()
}

fn is_condition_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e.as_service_error().and_then(|se| se.code()), Some("ConditionalCheckFailedException" | "TransactionCanceledException"))
}

fn text<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    item.get(attr).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn number(item: &Item, attr: &str) -> Option<u64> {
    item.get(attr).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn decode<T: serde::de::DeserializeOwned>(item: &Item, attr: &str) -> Result<T> {
    let raw = text(item, attr).ok_or_else(|| Error::Internal(format!("item lacks `{attr}`")))?;
    serde_json::from_str(raw).map_err(|e| Error::Internal(format!("`{attr}` does not decode: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<AttributeValue> {
    serde_json::to_string(v).map(s).map_err(|e| Error::Internal(format!("encode: {e}")))
}

/// The item of a token record; its counters live in their own attributes so `ADD` can update them.
fn token_item(record: &TokenRecord) -> Result<Item> {
    let mut item = key(&token_entity(&record.id), DEF);
    item.insert("record".into(), encode(record)?);
    item.insert("request_count".into(), n(record.request_count));
    if let Some(t) = record.last_used_at {
        item.insert("last_used_at".into(), n(t));
    }
    item.insert(TTL.into(), n(record.expires_at + TOKEN_RECORD_GRACE));
    Ok(item)
}

/// A token record with its counters, which live in their own attributes so `ADD` can update them.
fn token_record(item: &Item) -> Result<TokenRecord> {
    let mut rec: TokenRecord = decode(item, "record")?;
    rec.request_count = number(item, "request_count").unwrap_or(0);
    rec.last_used_at = number(item, "last_used_at");
    if let Some(at) = number(item, "revoked_at") {
        rec.revoked_at = Some(at);
    }
    Ok(rec)
}


/// Token records are kept a month past their expiry, so listings still show recently expired ones.
const TOKEN_RECORD_GRACE: u64 = gateway_core::admin::TOKEN_RECORD_GRACE;

impl DynamoStore {
    /// A store over `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let client = Client::from_conf(client.config().to_builder().interceptor(CountWrites).build());
        DynamoStore { client, table: table.into(), prober: Arc::default(), keys: Arc::default(), flights: Arc::default(), clock: system_now, tls: Arc::default() }
    }

    /// The same store (its key cache and probe client shared) with every DynamoDB call
    /// bounded by `timeout` instead ([`client_with_timeout`]): the data plane's, whose reads
    /// have a cache to fall back on and whose limiter lets a request through when it fails.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client = Client::from_conf(self.client.config().to_builder().timeout_config(timeouts(timeout)).build());
        self
    }

    /// The same store probing endpoints with `tls` (a private CA, a client certificate).
    pub fn with_tls(mut self, tls: crate::tls::UpstreamTls) -> Self {
        self.tls = Arc::new(tls);
        self
    }

    /// The same store reading time (unix seconds) from `clock`, for tests of key caching.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// The client for probes and JWKS fetches: no redirects followed, no proxy, and no
    /// kept-alive connections (uses are minutes apart, the instance frozen in between, and
    /// a connection the server closed meanwhile would count as a failure).
    fn http(&self) -> Option<reqwest::Client> {
        if let Some(c) = self.prober.get() {
            return Some(c.clone());
        }
        let built = self
            .tls
            .apply(reqwest::Client::builder())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| tracing::error!(error = %e, "HTTP client not built"))
            .ok()?;
        Some(self.prober.get_or_init(|| built).clone())
    }

    async fn get(&self, entity: &str, item: &str, consistent: bool) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(entity, item)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| store_err("get", e))?;
        Ok(out.item)
    }

    /// Every item of a partition whose sort key starts with `prefix` (all of them for ""), or
    /// with `prefix <= key <= below` when `below` is given, in key order.
    async fn query_prefix(&self, entity: &str, prefix: &str, newest_first: bool, limit: Option<i32>, below: Option<String>) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(entity))
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start.take());
            // DynamoDB refuses an empty key value and unused placeholders, so an empty prefix
            // reads the whole partition without a sort key condition.
            q = match &below {
                Some(hi) => q
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":lo", s(prefix))
                    .expression_attribute_values(":hi", s(hi.clone())),
                None if prefix.is_empty() => q.key_condition_expression("#pk = :pk"),
                None => q
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :p)")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":p", s(prefix)),
            };
            if let Some(l) = limit {
                q = q.limit(l);
            }
            let page = q.send().await.map_err(|e| store_err("query", e))?;
            out.extend(page.items.unwrap_or_default());
            if limit.is_some_and(|l| out.len() >= l as usize) {
                break;
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every `def` item whose partition starts with `prefix` (admin listings only).
    async fn scan_defs(&self, prefix: &str) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#pk, :p) AND #sk = :d")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":p", s(prefix))
                .expression_attribute_values(":d", s(DEF))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err("scan", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Writes an item that must not exist yet; a duplicate is a conflict, never an overwrite.
    async fn put_new(&self, item: Item, what: &str, conflict: impl FnOnce() -> String) -> Result<()> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(Error::Conflict(conflict())),
            Err(e) => Err(db_err(what, e)),
        }
    }

    async fn delete(&self, entity: &str, item: &str) -> Result<()> {
        self.client.delete_item().table_name(&self.table).set_key(Some(key(entity, item))).send().await.map_err(|e| db_err("delete", e))?;
        Ok(())
    }

    /// The tokens counted against each budget `key` in the windows of `now` (one consistent
    /// batch read: the answer that crossed a limit was counted before its stream ended).
    pub async fn budget_uses(&self, keys: &[&str], now: u64) -> Result<Vec<BudgetUse>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted = Vec::new();
        for k in keys {
            for w in Window::ALL {
                wanted.push(key(&budget_use_entity(k), &w.counter(now)));
            }
        }
        let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder().set_keys(Some(wanted)).consistent_read(true).build().map_err(|e| db_err("build", e))?;
        let mut found: HashMap<(String, String), u64> = HashMap::new();
        let mut pending = Some(HashMap::from([(self.table.clone(), request)]));
        // Unprocessed keys (throttling) are asked for again, a few times at most.
        for _ in 0..4 {
            let Some(items) = pending.take().filter(|p| !p.is_empty()) else { break };
            let out = self.client.batch_get_item().set_request_items(Some(items)).send().await.map_err(|e| store_err("budget use", e))?;
            for item in out.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                if let (Some(pk), Some(sk)) = (text(item, PK), text(item, SK)) {
                    found.insert((pk.to_string(), sk.to_string()), number(item, "tokens").unwrap_or(0));
                }
            }
            pending = out.unprocessed_keys().cloned();
        }
        Ok(keys
            .iter()
            .map(|k| {
                let get = |w: Window| found.get(&(budget_use_entity(k), w.counter(now))).copied().unwrap_or(0);
                BudgetUse { minute: get(Window::Minute), day: get(Window::Day), month: get(Window::Month) }
            })
            .collect())
    }

    /// Adds an answer's `tokens` to each budget `key`'s windows of `at` (`ADD`, kept a day past
    /// each window's end).
    pub async fn add_budget_use(&self, keys: &[String], tokens: u64, at: u64) -> Result<()> {
        for k in keys {
            for w in Window::ALL {
                let (_, end) = w.bounds(at);
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&budget_use_entity(k), &w.counter(at))))
                    .update_expression("ADD #t :n SET #ttl = :ttl")
                    .expression_attribute_names("#t", "tokens")
                    .expression_attribute_names("#ttl", TTL)
                    .expression_attribute_values(":n", n(tokens))
                    .expression_attribute_values(":ttl", n(end + 86_400))
                    .send()
                    .await
                    .map_err(|e| db_err("budget use", e))?;
            }
        }
        Ok(())
    }

    /// Counts one request against `limit`, or refuses it with `Err(RateLimited)`.
    ///
    /// Each minute of each limiter key is one item. The previous minute's count
    /// no longer changes, so an eventually consistent read is enough; the current
    /// minute's count is incremented only while under core's threshold (a
    /// conditional `ADD`), so instances running in parallel never admit more than
    /// the window allows, and refused requests are not counted.
    pub async fn rate_hit(&self, limit: &RateLimit, now_ms: u64) -> Result<ratelimit::Allowance> {
        let (start, elapsed) = ratelimit::window_of(now_ms);
        let entity = format!("rate#{}", limit.key);
        let previous = match start.checked_sub(ratelimit::WINDOW_MS) {
            Some(p) => self.get(&entity, &p.to_string(), false).await?.and_then(|i| number(&i, "count")).unwrap_or(0),
            None => 0,
        };
        let threshold = ratelimit::threshold(limit.per_minute, previous, elapsed);
        let refuse = |current: u64| Error::RateLimited {
            limit: limit.per_minute,
            retry_after: ratelimit::retry_after(limit.per_minute, previous, current, now_ms),
        };
        if threshold == 0 {
            let current = self.get(&entity, &start.to_string(), false).await?.and_then(|i| number(&i, "count")).unwrap_or(0);
            return Err(refuse(current));
        }
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&entity, &start.to_string())))
            .update_expression("ADD #c :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#c) OR #c < :threshold")
            .expression_attribute_names("#c", "count")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":threshold", n(threshold))
            .expression_attribute_values(":ttl", n(start / 1000 + 3 * ratelimit::WINDOW_MS / 1000))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match r {
            Ok(out) => {
                let current = out.attributes().and_then(|a| number(a, "count")).unwrap_or(1);
                Ok(ratelimit::Allowance::after(limit.per_minute, previous, current, now_ms))
            }
            Err(e) if is_condition_failure(&e) => {
                let current = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().and_then(|i| number(i, "count")),
                    _ => None,
                };
                Err(refuse(current.unwrap_or(threshold)))
            }
            Err(e) => Err(store_err("rate limit", e)),
        }
    }
}

impl RouteSource for DynamoStore {
    async fn route(&self, name: &str) -> Result<Option<Route>> {
        self.get(&route_entity(name), DEF, false).await?.map(|i| decode(&i, "route")).transpose()
    }
    async fn ephemeral(&self, id: &str) -> Result<Option<Route>> {
        self.get(&ephemeral_entity(id), DEF, false).await?.map(|i| decode(&i, "route")).transpose()
    }
    async fn route_for_host(&self, host: &str) -> Result<Option<Route>> {
        let Some(item) = self.get(&host_entity(host), DEF, false).await? else { return Ok(None) };
        let Some(name) = text(&item, "route_name") else { return Ok(None) };
        Ok(self.route(name).await?.filter(|r| r.host.as_deref() == Some(host)))
    }
    async fn leases(&self, route: &str) -> Result<Vec<Endpoint>> {
        self.query_prefix(&route_entity(route), "lease#", false, None, None).await?.iter().map(|i| decode(i, "endpoint")).collect()
    }
    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        // Strongly consistent: a stale read here would let a revoked token through.
        Ok(self.get(&token_entity(token_id), "revoked", true).await?.is_some())
    }
    async fn subject_revoked_at(&self, subject: &str) -> Result<Option<u64>> {
        Ok(self.get(&subject_entity(subject), "revoked", true).await?.and_then(|i| number(&i, "revoked_at")))
    }
    async fn down_endpoints(&self, route: &str) -> Result<Vec<String>> {
        // Eventually consistent: the data plane caches this per instance anyway.
        self.get("down", route, false).await?.map(|i| decode(&i, "endpoints")).transpose().map(Option::unwrap_or_default)
    }
    async fn model_route(&self, model: &str) -> Result<Option<String>> {
        Ok(self.get(MODELS, model, false).await?.and_then(|i| text(&i, "route_name").map(str::to_string)))
    }
    async fn budget(&self, key: &str) -> Result<Option<TokenBudget>> {
        self.get(BUDGETS, key, false).await?.map(|i| decode(&i, "budget")).transpose()
    }
    async fn model_index(&self) -> Result<Vec<(String, String)>> {
        let items = self.query_prefix(MODELS, "", false, None, None).await?;
        Ok(items.iter().filter_map(|i| Some((text(i, SK)?.to_string(), text(i, "route_name")?.to_string()))).collect())
    }
    async fn loads(&self, route: &str) -> Result<gateway_core::load::Loads> {
        // Eventually consistent, like the down set: readings are seconds old anyway.
        self.get("load", route, false).await?.map(|i| decode(&i, "loads")).transpose().map(Option::unwrap_or_default)
    }
    async fn jwks(&self, provider: &Provider, refresh: bool) -> Result<Jwks> {
        gateway_core::jwks::keys(self, self, provider, (self.clock)(), refresh, true).await
    }
}

/// Each instance keeps keys in memory across warm invocations; no shelf between instances.
impl KeyPlace for DynamoStore {
    type Turn = tokio::sync::OwnedMutexGuard<()>;

    fn with_cache<T>(&self, f: impl FnOnce(&mut JwksCache) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the cached keys are still sound.
        let mut g = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    async fn turn(&self, provider: &str) -> Option<Self::Turn> {
        let flight = {
            let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            f.entry(provider.to_string()).or_default().clone()
        };
        Some(flight.lock_owned().await)
    }

    fn fetch_failed(&self, provider: &Provider, why: &str) {
        tracing::warn!(provider = provider.name.as_str(), url = provider.jwks_url.as_str(), error = why, "identity provider keys not fetched");
    }
}

impl AdminStore for DynamoStore {
    async fn list_routes(&self) -> Result<Vec<Route>> {
        let mut routes: Vec<Route> = self.scan_defs("route#").await?.iter().map(|i| decode(i, "route")).collect::<Result<_>>()?;
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(routes)
    }

    async fn put_route(&self, route: &Route, previous: Option<&Route>) -> Result<()> {
        let mut item = key(&route_entity(&route.name), DEF);
        item.insert("route".into(), encode(route)?);
        // Optimistic concurrency: create only if absent, replace only what we read.
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match previous {
            None => put.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", PK),
            Some(p) => put.condition_expression("#r = :prev").expression_attribute_names("#r", "route").expression_attribute_values(":prev", encode(p)?),
        };
        let mut writes = vec![TransactWriteItem::builder().put(put.build().map_err(|e| db_err("build", e))?).build()];
        if let Some(old) = previous.and_then(|p| p.host.as_deref()).filter(|h| route.host.as_deref() != Some(*h)) {
            writes.push(
                TransactWriteItem::builder()
                    .delete(aws_sdk_dynamodb::types::Delete::builder().table_name(&self.table).set_key(Some(key(&host_entity(old), DEF))).build().map_err(|e| db_err("build", e))?)
                    .build(),
            );
        }
        if let Some(host) = &route.host {
            let mut h = key(&host_entity(host), DEF);
            h.insert("route_name".into(), s(&route.name));
            writes.push(TransactWriteItem::builder().put(Put::builder().table_name(&self.table).set_item(Some(h)).build().map_err(|e| db_err("build", e))?).build());
        }
        // Model routing's index, in one partition (`models`/{model} → route name): a model
        // another route holds is refused in the same transaction, so two writers cannot both
        // take it.
        for gone in previous.map(|p| &p.models[..]).unwrap_or_default().iter().filter(|m| !route.models.contains(m)) {
            // Another route (Terraform's, say) may have taken the name since: leave its entry.
            let ours = self.get(MODELS, gone, true).await?.is_some_and(|i| text(&i, "route_name") == Some(route.name.as_str()));
            if !ours {
                continue;
            }
            let del = aws_sdk_dynamodb::types::Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(MODELS, gone)))
                .condition_expression("attribute_not_exists(#pk) OR route_name = :name")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":name", s(&route.name))
                .build()
                .map_err(|e| db_err("build", e))?;
            writes.push(TransactWriteItem::builder().delete(del).build());
        }
        for model in &route.models {
            let mut m = key(MODELS, model);
            m.insert("route_name".into(), s(&route.name));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(m))
                .condition_expression("attribute_not_exists(#pk) OR route_name = :name")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":name", s(&route.name))
                .build()
                .map_err(|e| db_err("build", e))?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                Err(Error::Conflict(format!("route `{}` was changed by another writer meanwhile; read it again and retry", route.name)))
            }
            Err(e) => Err(db_err("put route", e)),
        }
    }

    async fn delete_route(&self, route: &Route) -> Result<()> {
        for lease in self.query_prefix(&route_entity(&route.name), "lease#", false, None, None).await? {
            if let Some(sk) = text(&lease, SK) {
                self.delete(&route_entity(&route.name), sk).await?;
            }
        }
        if let Some(host) = &route.host {
            self.delete(&host_entity(host), DEF).await?;
        }
        for model in &route.models {
            // Only where the index still names this route (another route may have taken it).
            let r = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(MODELS, model)))
                .condition_expression("route_name = :name")
                .expression_attribute_values(":name", s(&route.name))
                .send()
                .await;
            match r {
                Ok(_) => {}
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(db_err("delete model", e)),
            }
        }
        self.delete(&route_entity(&route.name), DEF).await
    }

    async fn put_lease(&self, route: &str, endpoint: &Endpoint) -> Result<()> {
        let expires = endpoint.lease_expires_at.unwrap_or(0);
        let mut item = key(&route_entity(route), &lease_item(&endpoint.id));
        item.insert("endpoint".into(), encode(endpoint)?);
        item.insert("expires_at".into(), n(expires));
        item.insert(TTL.into(), n(expires + 3600));
        // The route must still exist when the lease lands (no lease on a route deleted meanwhile).
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(&route_entity(route), DEF)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| db_err("build", e))?;
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(|e| db_err("build", e))?;
        let writes = vec![TransactWriteItem::builder().condition_check(check).build(), TransactWriteItem::builder().put(put).build()];
        match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(Error::Conflict(format!("route `{route}` was deleted meanwhile; the lease was not registered"))),
            Err(e) => Err(db_err("put lease", e)),
        }
    }

    async fn delete_lease(&self, route: &str, id: &str) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&route_entity(route), &lease_item(id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| db_err("delete lease", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn put_ephemeral(&self, route: &Route) -> Result<()> {
        let mut item = key(&ephemeral_entity(&route.name), DEF);
        item.insert("route".into(), encode(route)?);
        item.insert(TTL.into(), n(route.expires_at.unwrap_or(0)));
        self.put_new(item, "put ephemeral", || "ephemeral id collision; retry".into()).await
    }

    async fn put_token(&self, record: &TokenRecord) -> Result<()> {
        self.put_new(token_item(record)?, "put token", || format!("token `{}` already exists", record.id)).await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get(&token_entity(id), DEF, true).await?.map(|i| token_record(&i)).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.scan_defs("token#").await?.iter().map(token_record).collect()
    }

    async fn revoke(&self, record: &TokenRecord) -> Result<()> {
        let at = record.revoked_at.unwrap_or(0);
        let mut revoked = key(&token_entity(&record.id), "revoked");
        revoked.insert(TTL.into(), n(record.expires_at + 3600));
        // The revocation is written once; a second revoke is a conflict, not a silent success.
        let put_revoked = Put::builder()
            .table_name(&self.table)
            .set_item(Some(revoked))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| db_err("build", e))?;
        let mut rec_item = token_item(record)?;
        rec_item.insert("revoked_at".into(), n(at));
        let put_record = Put::builder().table_name(&self.table).set_item(Some(rec_item)).build().map_err(|e| db_err("build", e))?;
        let writes = vec![TransactWriteItem::builder().put(put_revoked).build(), TransactWriteItem::builder().put(put_record).build()];
        match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(Error::Conflict(format!("token `{}` is already revoked", record.id))),
            Err(e) => Err(db_err("revoke", e)),
        }
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        let written = self.write_audit(entry.clone()).await;
        // Core does not fail the admin call over a lost audit line; it must not be lost silently.
        if let Err(e) = &written {
            tracing::error!(error = %e, entry = %serde_json::to_string(&entry).unwrap_or_default(), "audit entry not written");
        }
        written
    }

    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let below = before.map(|b| format!("seq#{:020}", b.saturating_sub(1)));
        let items = self.query_prefix("audit", "seq#", true, Some(limit as i32), below).await?;
        items.iter().take(limit).map(|i| decode(i, "entry")).collect()
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        self.delete(&token_entity(id), DEF).await
    }

    async fn revoke_subject(&self, subject: &str, at: u64) -> Result<()> {
        let mut item = key(&subject_entity(subject), "revoked");
        item.insert("revoked_at".into(), n(at));
        item.insert(TTL.into(), n(at + gateway_core::store::SUBJECT_REVOCATION_SECONDS));
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("revoke subject", e))?;
        Ok(())
    }

    async fn create_service_account(&self, account: &ServiceAccount) -> Result<()> {
        let mut item = key(SERVICE_ACCOUNT, &account.name);
        item.insert("account".into(), encode(account)?);
        self.put_new(item, "create service account", || format!("service account `{}` exists", account.name)).await
    }

    async fn service_account(&self, name: &str) -> Result<Option<ServiceAccount>> {
        self.get(SERVICE_ACCOUNT, name, true).await?.map(|i| decode(&i, "account")).transpose()
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>> {
        self.query_prefix(SERVICE_ACCOUNT, "", false, None, None).await?.iter().map(|i| decode(i, "account")).collect()
    }

    async fn delete_service_account(&self, name: &str) -> Result<()> {
        self.delete(SERVICE_ACCOUNT, name).await
    }

    async fn put_budget(&self, key: &str, budget: &TokenBudget) -> Result<()> {
        let mut item = self::key(BUDGETS, key);
        item.insert("budget".into(), encode(budget)?);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("put budget", e))?;
        Ok(())
    }

    async fn delete_budget(&self, key: &str) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self::key(BUDGETS, key)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| db_err("delete budget", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn list_budgets(&self) -> Result<Vec<(String, TokenBudget)>> {
        let items = self.query_prefix(BUDGETS, "", false, None, None).await?;
        Ok(items.iter().filter_map(|i| Some((text(i, SK)?.to_string(), decode(i, "budget").ok()?))).collect())
    }

    async fn budget_use(&self, key: &str, now: u64) -> Result<BudgetUse> {
        Ok(self.budget_uses(&[key], now).await?.pop().unwrap_or_default())
    }

    async fn seen_routes(&self) -> Result<BTreeMap<String, gateway_core::managed::Seen>> {
        let mut out = BTreeMap::new();
        for item in self.query_prefix(SEEN, "", false, None, None).await? {
            // An unreadable record is treated as unseen: the route is audited again, not lost.
            if let (Some(name), Ok(seen)) = (text(&item, SK), decode(&item, "seen")) {
                out.insert(name.to_string(), seen);
            }
        }
        Ok(out)
    }

    async fn put_seen_route(&self, name: &str, seen: Option<&gateway_core::managed::Seen>) -> Result<()> {
        let Some(seen) = seen else {
            return self.delete(SEEN, name).await;
        };
        let mut item = key(SEEN, name);
        item.insert("seen".into(), encode(seen)?);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("put seen", e))?;
        Ok(())
    }
}

impl MetricsSink for DynamoStore {
    async fn record(&self, updates: &Updates) -> Result<()> {
        let writes = metric_writes(updates);
        // Items are independent (every update is atomic on its own), so they go out together.
        let results = join_all(writes.iter().map(|w| self.write_metric(w))).await;
        results.into_iter().collect()
    }

    async fn counters(&self, now: u64) -> Result<Vec<(String, u64)>> {
        let (from, to) = metrics::recent_range(now);
        let totals = self.query_prefix(METRIC, "", false, None, None);
        // BETWEEN is inclusive; `to` is exclusive, so items at or past it are dropped below.
        let minutes = self.query_prefix(METRIC_MINUTE, &from, false, None, Some(to.clone()));
        let (totals, minutes) = futures_util::future::try_join(totals, minutes).await?;
        let minutes = minutes.into_iter().filter(|i| text(i, SK).is_some_and(|k| k >= from.as_str() && k < to.as_str()));
        let mut out = Vec::new();
        for item in totals.into_iter().chain(minutes) {
            let Some(name) = text(&item, SK) else { continue };
            for (field, value) in &item {
                if NOT_COUNTERS.contains(&field.as_str()) {
                    continue;
                }
                if let Some(v) = value.as_n().ok().and_then(|v| v.parse::<u64>().ok()) {
                    out.push((format!("{name}:{field}"), v));
                }
            }
        }
        Ok(out)
    }

    async fn health(&self) -> Result<Vec<(String, String, Health)>> {
        let mut out = Vec::new();
        for item in self.query_prefix("health", "", false, None, None).await? {
            let Some((route, endpoint)) = text(&item, SK).and_then(health::parse_health_key) else { continue };
            // One unreadable record must not stop every probe round: it starts afresh instead.
            match decode(&item, "health") {
                Ok(h) => out.push((route, endpoint, h)),
                Err(e) => tracing::warn!(route, endpoint, error = %e, "health record ignored"),
            }
        }
        Ok(out)
    }

    async fn put_health(&self, route: &str, endpoint: &str, health: &Health) -> Result<()> {
        let mut item = key("health", &health::health_key(route, endpoint));
        item.insert("health".into(), encode(health)?);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("put health", e))?;
        Ok(())
    }

    async fn put_down(&self, route: &str, down: &[String]) -> Result<()> {
        if down.is_empty() {
            return self.delete("down", route).await;
        }
        let mut item = key("down", route);
        item.insert("endpoints".into(), encode(&down)?);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("put down", e))?;
        Ok(())
    }

    async fn put_loads(&self, route: &str, loads: &gateway_core::load::Loads) -> Result<()> {
        if loads.is_empty() {
            return self.delete("load", route).await;
        }
        let mut item = key("load", route);
        item.insert("loads".into(), encode(loads)?);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("put loads", e))?;
        Ok(())
    }
}

impl Fetcher for DynamoStore {
    async fn get(&self, get: &Get<'_>) -> std::result::Result<Answer, FetchError> {
        let client = self.http().ok_or_else(|| FetchError::Failed("no HTTP client".into()))?;
        let exchange = async {
            let failed = |e: reqwest::Error| FetchError::Failed(e.without_url().to_string());
            let mut resp = client.get(get.url).send().await.map_err(failed)?;
            let mut body = Vec::new();
            if get.max_bytes > 0 && resp.status().is_success() {
                if fetch::declared_too_large(resp.content_length(), get.max_bytes) {
                    return Err(FetchError::TooLarge);
                }
                // Capped while reading: a body past the cap is dropped, never held whole.
                while let Some(chunk) = resp.chunk().await.map_err(failed)? {
                    fetch::append_capped(&mut body, &chunk, get.max_bytes)?;
                }
            }
            Ok(Answer { status: resp.status().as_u16(), body })
        };
        // The timeout covers the whole exchange, connecting included.
        tokio::time::timeout(Duration::from_millis(get.timeout_ms), exchange).await.map_err(|_| FetchError::TimedOut)?
    }
}

/// One metric item's share of an [`Updates`]: fields to add to, or raise.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetricWrite {
    entity: &'static str,
    item: String,
    /// `ADD` these fields.
    adds: Vec<(String, u64)>,
    /// Raise each of these fields to at least the value (one conditional `SET` each).
    maxes: Vec<(String, u64)>,
    /// For minute buckets, when DynamoDB may drop the item.
    ttl: Option<u64>,
}

/// Groups `updates` by item; keys of no known kind are logged and skipped.
fn metric_writes(updates: &Updates) -> Vec<MetricWrite> {
    let mut by_item: BTreeMap<&str, MetricWrite> = BTreeMap::new();
    let adds = updates.adds.iter().map(|(k, v)| (k, *v, false));
    let maxes = updates.maxes.iter().map(|(k, v)| (k, *v, true));
    for (key, v, is_max) in adds.chain(maxes) {
        let Some((item, field)) = metrics::split_key(key) else {
            tracing::warn!(key = key.as_str(), "metric key of no known kind; not recorded");
            continue;
        };
        let w = by_item.entry(item).or_insert_with(|| MetricWrite {
            entity: if item.starts_with("m:") { METRIC_MINUTE } else { METRIC },
            item: item.to_string(),
            adds: Vec::new(),
            maxes: Vec::new(),
            ttl: metrics::expires_at(key),
        });
        let list = if is_max { &mut w.maxes } else { &mut w.adds };
        list.push((field.to_string(), v));
    }
    by_item.into_values().collect()
}

/// The `ADD` (and `ttl` `SET`) of one item's metric write: expression, names, values.
fn add_expression(w: &MetricWrite) -> (String, HashMap<String, String>, HashMap<String, AttributeValue>) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    for (i, (field, v)) in w.adds.iter().enumerate() {
        // Field names hold `:`, so they always go through placeholders.
        names.insert(format!("#f{i}"), field.clone());
        values.insert(format!(":v{i}"), n(*v));
        adds.push(format!("#f{i} :v{i}"));
    }
    let mut expr = String::new();
    if !adds.is_empty() {
        expr = format!("ADD {}", adds.join(", "));
    }
    if let Some(ttl) = w.ttl {
        names.insert("#ttl".into(), TTL.into());
        values.insert(":ttl".into(), n(ttl));
        expr = format!("{expr} SET #ttl = :ttl").trim_start().to_string();
    }
    (expr, names, values)
}

/// Retries for metric writes: the SDK's standard mode (throttling, 5xx and transient I/O
/// errors, jittered exponential backoff) with short waits, so a request's whole recording
/// fits in the handler's 2 s budget.
fn metric_retry() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::default().retry_config(
        RetryConfig::standard().with_max_attempts(4).with_initial_backoff(Duration::from_millis(25)).with_max_backoff(Duration::from_millis(400)),
    )
}

/// Items of a batch part written per transaction (DynamoDB takes 100, one is the marker).
const PART_ITEMS_PER_TRANSACTION: usize = 99;

impl DynamoStore {
    /// Applies one part of an instance's batch ([`gateway_core::batch`]) exactly once: its
    /// `ADD`s go in transactions of at most 99 items, each with a marker item
    /// (`batch#{part id}#{n}`, kept [`gateway_core::batch::BATCH_ID_SECONDS`]) that must not
    /// exist yet, so a transaction sent again after a lost answer changes nothing. The
    /// high-water marks (`last_seen`) go after: a conditional `SET` is idempotent on its own.
    pub async fn record_part(&self, part: &gateway_core::batch::Part, now: u64) -> Result<()> {
        let writes = metric_writes(&part.updates);
        let with_adds: Vec<&MetricWrite> = writes.iter().filter(|w| !w.adds.is_empty() || w.ttl.is_some()).collect();
        for (n_chunk, chunk) in with_adds.chunks(PART_ITEMS_PER_TRANSACTION).enumerate() {
            let marker_id = format!("{}#{n_chunk}", part.id);
            // One partition per marker: markers never make a hot key.
            let marker_entity = format!("{BATCH}#{marker_id}");
            let mut marker = key(&marker_entity, "applied");
            marker.insert(TTL.into(), n(now + gateway_core::batch::BATCH_ID_SECONDS));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(marker))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(|e| db_err("build", e))?;
            let mut items = vec![TransactWriteItem::builder().put(put).build()];
            for w in chunk {
                let (expr, names, values) = add_expression(w);
                let update = aws_sdk_dynamodb::types::Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(w.entity, &w.item)))
                    .update_expression(expr)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .build()
                    .map_err(|e| db_err("build", e))?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            let sent = self.client.transact_write_items().set_transact_items(Some(items)).customize().config_override(metric_retry()).send().await;
            match sent {
                Ok(_) => {}
                // Cancelled: applied before (its marker is there), or a conflict to retry later.
                Err(e) if is_condition_failure(&e) => {
                    if self.get(&marker_entity, "applied", true).await?.is_none() {
                        return Err(db_err("record metrics", e));
                    }
                }
                Err(e) => return Err(db_err("record metrics", e)),
            }
        }
        for w in writes.iter().filter(|w| !w.maxes.is_empty()) {
            let maxes_only = MetricWrite { entity: w.entity, item: w.item.clone(), adds: Vec::new(), maxes: w.maxes.clone(), ttl: None };
            self.write_metric(&maxes_only).await?;
        }
        Ok(())
    }

    /// Applies one item's share of the metric updates: one `ADD` of every field (and the
    /// item's `ttl`), then one conditional `SET` per maximum.
    async fn write_metric(&self, w: &MetricWrite) -> Result<()> {
        if !w.adds.is_empty() || w.ttl.is_some() {
            let (expr, names, values) = add_expression(w);
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(w.entity, &w.item)))
                .update_expression(expr)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .customize()
                .config_override(metric_retry())
                .send()
                .await
                .map_err(|e| db_err("record metrics", e))?;
        }
        for (field, v) in &w.maxes {
            let r = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(w.entity, &w.item)))
                .update_expression("SET #f = :v")
                .condition_expression("attribute_not_exists(#f) OR #f < :v")
                .expression_attribute_names("#f", field)
                .expression_attribute_values(":v", n(*v))
                .customize()
                .config_override(metric_retry())
                .send()
                .await;
            match r {
                // Already at least as high: nothing to do.
                Ok(_) => {}
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(db_err("record metric maximum", e)),
            }
        }
        Ok(())
    }

    /// Appends one audit entry at the next place of the total order.
    async fn write_audit(&self, mut entry: AuditEntry) -> Result<()> {
        // An atomic counter gives every entry its own place in a total order.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key("audit", "counter")))
            .update_expression("ADD seq :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| db_err("audit counter", e))?;
        entry.seq = out.attributes.as_ref().and_then(|a| number(a, "seq")).ok_or_else(|| Error::Internal("audit counter missing".into()))?;
        let mut item = key("audit", &format!("seq#{:020}", entry.seq));
        item.insert("entry".into(), encode(&entry)?);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|e| db_err("audit", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::metrics::RequestSample;

    #[test]
    fn updates_become_one_write_per_item_with_ttl_only_on_minute_buckets() {
        let sample = RequestSample {
            route: "llama".into(),
            endpoint: Some("a".into()),
            failed_endpoints: vec!["b".into()],
            status: 200,
            latency_ms: 12.0,
            gateway_ms: Some(0.5),
            token_id: Some("tok_1".into()),
            at: 1_700_000_000,
            ..RequestSample::default()
        };
        let updates = metrics::updates(&sample);
        let writes = metric_writes(&updates);
        let items: Vec<(&str, &str)> = writes.iter().map(|w| (w.entity, w.item.as_str())).collect();
        let minute = metrics::minute_item(metrics::minute_of(sample.at), "llama");
        assert_eq!(
            items,
            vec![(METRIC, "ep:llama:a"), (METRIC, "ep:llama:b"), (METRIC_MINUTE, minute.as_str()), (METRIC, "route:llama"), (METRIC, "tok:tok_1")]
        );
        for w in &writes {
            assert_eq!(w.ttl, (w.entity == METRIC_MINUTE).then(|| metrics::expires_at(&format!("{}:req", w.item)).unwrap()), "{}", w.item);
            // Every field of every key is written exactly once, with its amount.
            for (field, v) in &w.adds {
                assert_eq!(updates.adds.get(&format!("{}:{field}", w.item)), Some(v));
            }
        }
        assert_eq!(writes.iter().map(|w| w.adds.len()).sum::<usize>(), updates.adds.len());
        let tok = writes.iter().find(|w| w.item == "tok:tok_1").unwrap();
        assert_eq!(tok.maxes, vec![("last_seen".to_string(), sample.at)]);
        assert!(writes.iter().filter(|w| w.item != "tok:tok_1").all(|w| w.maxes.is_empty()));
    }

    #[test]
    fn keys_of_no_known_kind_are_skipped() {
        let mut u = Updates::default();
        u.add("bogus:x".into(), 1);
        u.add("route:a:req".into(), 2);
        let writes = metric_writes(&u);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].adds, vec![("req".to_string(), 2)]);
    }
}
