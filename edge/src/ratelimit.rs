//! The `RateLimiter` Durable Object: one instance per limiter key (a token id,
//! or token id and route), so every request of a token is counted in one place
//! in the order it arrives. The decision is core's sliding window; the object
//! only keeps the two window counts, in memory and in its storage, so eviction
//! loses nothing.

use crate::{json_str, DO_RATE_BINDING};
use gateway_core::ratelimit::{Allowance, Counter, RateLimit};
use gateway_core::Error;
use std::cell::RefCell;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Request, Response, State};

const COUNTER_KEY: &str = "counter";

/// The Durable Object class.
#[durable_object]
pub struct RateLimiter {
    state: State,
    counter: RefCell<Option<Counter>>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter { state, counter: RefCell::new(None) }
    }

    /// `GET /hit?limit=N`: 200 with the [`Allowance`] when admitted (and counted), 429
    /// `{retry_after}` when not.
    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let limit = req.url()?.query_pairs().find(|(k, _)| k == "limit").and_then(|(_, v)| v.parse::<u32>().ok());
        let Some(limit) = limit else { return Response::error("limit required", 400) };
        let now_ms = js_sys::Date::now() as u64;
        let loaded = self.counter.borrow().is_some();
        if !loaded {
            let stored = self.state.storage().get::<Counter>(COUNTER_KEY).await.ok().flatten().unwrap_or_default();
            self.counter.borrow_mut().get_or_insert(stored);
        }
        // No await between reading and updating the count: the object runs one event at a time.
        let outcome = {
            let mut guard = self.counter.borrow_mut();
            let counter = guard.get_or_insert_with(Counter::default);
            counter.hit(limit, now_ms).map(|a| (*counter, a))
        };
        match outcome {
            Ok((counter, allowance)) => {
                // Output gates hold the response until the write is durable.
                self.state.storage().put(COUNTER_KEY, counter).await?;
                Response::from_json(&allowance)
            }
            Err(Error::RateLimited { retry_after, .. }) => {
                Ok(Response::from_json(&serde_json::json!({ "retry_after": retry_after }))?.with_status(429))
            }
            Err(e) => Response::error(e.to_string(), 500),
        }
    }
}

/// Counts one request against `limit`: what is left of it, `Err(RateLimited)` when over it.
/// When the limiter cannot be reached the request is let through (without an allowance) and
/// the failure logged: a rate limit protects capacity, not access, which RBAC guards.
pub async fn check(env: &Env, limit: &RateLimit, request_id: &str) -> Result<Option<Allowance>, Error> {
    let run = async {
        let stub = env.durable_object(DO_RATE_BINDING)?.get_by_name(&limit.key)?;
        let mut res = stub.fetch_with_str(&format!("https://rate-limiter/hit?limit={}", limit.per_minute)).await?;
        let status = res.status_code();
        let body = if matches!(status, 200 | 429) { Some(res.json::<serde_json::Value>().await?) } else { None };
        Ok::<_, worker::Error>((status, body))
    };
    match run.await {
        Ok((429, body)) => Err(Error::RateLimited { limit: limit.per_minute, retry_after: body.and_then(|b| b["retry_after"].as_u64()).unwrap_or(60) }),
        Ok((200, Some(body))) => Ok(serde_json::from_value(body).ok()),
        Ok((status, _)) => {
            worker::console_error!("{{\"level\":\"error\",\"request_id\":{},\"msg\":\"rate limiter answered {status}; request let through\"}}", json_str(request_id));
            Ok(None)
        }
        Err(e) => {
            worker::console_error!("{{\"level\":\"error\",\"request_id\":{},\"msg\":\"rate limiter unreachable; request let through\",\"detail\":{}}}", json_str(request_id), json_str(&e.to_string()));
            Ok(None)
        }
    }
}
