//! The `RateLimiter` Durable Object: one instance per limiter key (a token id,
//! or token id and route), so every request of a token is counted in one place
//! in the order it arrives. The decision is core's sliding window; the object
//! only keeps the two window counts, in memory and in its storage, so eviction
//! loses nothing.
//!
//! The same class keeps token budgets ([`gateway_core::budget`]): one instance per budget
//! (`budget:{kind}/{id}`) holds its minute, day and month counts; requests check it before
//! they are forwarded and add their usage after the answer.

use crate::{json_str, DO_RATE_BINDING};
use gateway_core::budget::{BudgetCounter, BudgetUse, TokenAllowance, TokenBudget};
use gateway_core::ratelimit::{Allowance, Counter, RateLimit};
use gateway_core::Error;
use std::cell::RefCell;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Request, Response, State};

const COUNTER_KEY: &str = "counter";
const BUDGET_KEY: &str = "budget";

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
        if req.path().starts_with("/budget/") {
            return self.budget(req).await;
        }
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

impl RateLimiter {
    /// A budget's counts: `GET /budget/check` with the budget as JSON in `b` (200 with the
    /// allowance, 429 with the refusal), `POST /budget/add?tokens=N&at=S`, `GET /budget/use?at=S`.
    async fn budget(&self, req: Request) -> worker::Result<Response> {
        let url = req.url()?;
        let q = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        let now_ms = js_sys::Date::now() as u64;
        let at = q("at").and_then(|v| v.parse::<u64>().ok()).unwrap_or(now_ms / 1000);
        let storage = self.state.storage();
        let mut counter = storage.get::<BudgetCounter>(BUDGET_KEY).await.ok().flatten().unwrap_or_default();
        match req.path().as_str() {
            "/budget/check" => {
                let Some(budget) = q("b").and_then(|b| serde_json::from_str::<TokenBudget>(&b).ok()) else {
                    return Response::error("budget required", 400);
                };
                match gateway_core::budget::check(&budget, &counter.use_at(now_ms / 1000), now_ms) {
                    Ok(allowance) => Response::from_json(&allowance),
                    Err(Error::TokenBudgetExceeded { limit, window, retry_after }) => {
                        Ok(Response::from_json(&serde_json::json!({"limit": limit, "window": window, "retry_after": retry_after}))?.with_status(429))
                    }
                    Err(e) => Response::error(e.to_string(), 500),
                }
            }
            "/budget/add" => {
                let tokens = q("tokens").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                counter.add(tokens, at);
                storage.put(BUDGET_KEY, counter).await?;
                Ok(Response::empty()?.with_status(204))
            }
            "/budget/use" => Response::from_json(&counter.use_at(at)),
            _ => Response::error("not found", 404),
        }
    }
}

/// A budget's object, for one call (counted: every caller fetches on it once).
fn budget_stub(env: &Env, key: &str) -> worker::Result<worker::Stub> {
    crate::do_call();
    env.durable_object(DO_RATE_BINDING)?.get_by_name(&format!("budget:{key}"))
}

/// Checks every budget of a request: the tightest allowance, or the refusal. A budget object
/// that cannot be reached lets the request through (logged), as the rate limiter does.
pub async fn check_budgets(env: &Env, budgets: &[(String, TokenBudget)], request_id: &str) -> Result<Option<TokenAllowance>, Error> {
    let mut tightest = None;
    for (key, budget) in budgets {
        let run = async {
            let b = serde_json::to_string(budget).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let url = format!("https://budget/budget/check?b={}", js_sys::encode_uri_component(&b));
            let mut res = budget_stub(env, key)?.fetch_with_str(&url).await?;
            let status = res.status_code();
            Ok::<_, worker::Error>((status, res.json::<serde_json::Value>().await.ok()))
        };
        match run.await {
            Ok((200, Some(v))) => {
                if let Ok(a) = serde_json::from_value::<TokenAllowance>(v) {
                    tightest = Some(TokenAllowance::tighter(tightest, a));
                }
            }
            Ok((429, Some(v))) => {
                let window = match v["window"].as_str() {
                    Some("day") => "day",
                    Some("month") => "month",
                    _ => "minute",
                };
                return Err(Error::TokenBudgetExceeded { limit: v["limit"].as_u64().unwrap_or(0), window, retry_after: v["retry_after"].as_u64().unwrap_or(60) });
            }
            Ok((status, _)) => {
                worker::console_error!("{{\"level\":\"error\",\"request_id\":{},\"msg\":\"budget {key} answered {status}; request let through\"}}", json_str(request_id));
            }
            Err(e) => {
                worker::console_error!("{{\"level\":\"error\",\"request_id\":{},\"msg\":\"budget unreachable; request let through\",\"detail\":{}}}", json_str(request_id), json_str(&e.to_string()));
            }
        }
    }
    Ok(tightest)
}

/// Adds an answer's tokens to each of its budgets (after the answer, off the client's time).
pub async fn add_budget_use(env: &Env, keys: &[String], tokens: u64, at: u64) -> worker::Result<()> {
    for key in keys {
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::Post);
        let req = Request::new_with_init(&format!("https://budget/budget/add?tokens={tokens}&at={at}"), &init)?;
        budget_stub(env, key)?.fetch_with_request(req).await?;
    }
    Ok(())
}

/// A budget's use in the windows of `at` (for the admin API's listing).
pub async fn budget_use(env: &Env, key: &str, at: u64) -> worker::Result<BudgetUse> {
    budget_stub(env, key)?.fetch_with_str(&format!("https://budget/budget/use?at={at}")).await?.json().await
}

/// Counts one request against `limit`: what is left of it, `Err(RateLimited)` when over it.
/// When the limiter cannot be reached the request is let through (without an allowance) and
/// the failure logged: a rate limit protects capacity, not access, which RBAC guards.
pub async fn check(env: &Env, limit: &RateLimit, request_id: &str) -> Result<Option<Allowance>, Error> {
    let run = async {
        let stub = env.durable_object(DO_RATE_BINDING)?.get_by_name(&limit.key)?;
        crate::do_call();
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
