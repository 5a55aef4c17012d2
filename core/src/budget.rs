//! Compute governance: limits in LLM tokens, not only requests.
//!
//! A token, a service account (every token of that service subject) and a partner contract
//! (every partner token issued under that `contract_id`) can each carry a [`TokenBudget`]:
//! tokens per minute, per day and per month (UTC calendar windows). A request is admitted while
//! every budget that applies to it is under its limit in every window; the answer that crosses
//! a limit completes (its usage is only known at its end), and the next request is refused with
//! 429 and OpenAI's `tokens` type until the window turns. Usage is what the gateway counted
//! from the answers (prompt plus completion tokens, [`crate::usage`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::token::{Principal, TokenKind};

/// Largest limit a budget may set (10^12 tokens).
pub const MAX_TOKENS: u64 = 1_000_000_000_000;

/// Limits in LLM tokens; at least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBudget {
    /// Tokens per minute (the UTC minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Tokens per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Tokens per UTC calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<u64>,
    /// `"terraform"` when `infra/modules/routes` (its `budgets`) owns it: the admin API then
    /// refuses to change it (409), as for routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<Owner>,
}

/// Who else may own a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Terraform,
}

impl TokenBudget {
    /// Each limit from 1 to [`MAX_TOKENS`], and at least one.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("tokens_per_minute", self.tokens_per_minute), ("tokens_per_day", self.tokens_per_day), ("tokens_per_month", self.tokens_per_month)] {
            if v.is_some_and(|n| !(1..=MAX_TOKENS).contains(&n)) {
                return Err(Error::bad_request(field, format!("must be between 1 and {MAX_TOKENS}")));
            }
        }
        if self.limits().next().is_none() {
            return Err(Error::bad_request("tokens_per_minute", "a budget sets tokens_per_minute, tokens_per_day or tokens_per_month"));
        }
        Ok(())
    }

    /// The limits set, with their windows.
    pub fn limits(&self) -> impl Iterator<Item = (Window, u64)> {
        [(Window::Minute, self.tokens_per_minute), (Window::Day, self.tokens_per_day), (Window::Month, self.tokens_per_month)].into_iter().filter_map(|(w, l)| l.map(|l| (w, l)))
    }
}

/// What a budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetKind {
    /// One token, by id.
    Tokens,
    /// Every service token of one subject (a service account's name).
    ServiceAccounts,
    /// Every partner token issued under one contract id.
    Contracts,
}

impl BudgetKind {
    /// The path segment of the admin API (`tokens`, `service-accounts`, `contracts`).
    pub fn segment(&self) -> &'static str {
        match self {
            BudgetKind::Tokens => "tokens",
            BudgetKind::ServiceAccounts => "service-accounts",
            BudgetKind::Contracts => "contracts",
        }
    }

    /// The kind named by a path segment.
    pub fn parse(segment: &str) -> Option<BudgetKind> {
        [BudgetKind::Tokens, BudgetKind::ServiceAccounts, BudgetKind::Contracts].into_iter().find(|k| k.segment() == segment)
    }

    /// The store key of the budget of `id`: `{kind}/{id}`.
    pub fn key(&self, id: &str) -> String {
        format!("{}/{id}", self.segment())
    }
}

/// An id a budget may be set for: 1 to 128 visible ASCII characters without `/`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// The budgets that may apply to a request by `principal`, as store keys: its token's, its
/// service subject's, its contract's. Anonymous requests have none.
pub fn keys_for(principal: Option<&Principal>) -> Vec<String> {
    let Some(p) = principal else { return Vec::new() };
    let mut keys = vec![BudgetKind::Tokens.key(&p.token_id)];
    if p.kind == TokenKind::Service {
        keys.push(BudgetKind::ServiceAccounts.key(&p.subject));
    }
    if let Some(contract) = p.contract.as_deref().filter(|_| p.kind == TokenKind::Partner) {
        keys.push(BudgetKind::Contracts.key(contract));
    }
    keys
}

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Minute,
    Day,
    Month,
}

impl Window {
    /// The windows, shortest first.
    pub const ALL: [Window; 3] = [Window::Minute, Window::Day, Window::Month];

    /// Start and end (unix seconds) of this window at `now`.
    pub fn bounds(&self, now: u64) -> (u64, u64) {
        match self {
            Window::Minute => (now - now % 60, now - now % 60 + 60),
            Window::Day => (now - now % 86_400, now - now % 86_400 + 86_400),
            Window::Month => {
                let (y, m, _) = civil_from_days((now / 86_400) as i64);
                let start = days_from_civil(y, m, 1) as u64 * 86_400;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (start, days_from_civil(ny, nm, 1) as u64 * 86_400)
            }
        }
    }

    /// The name of the window's counter at `now`: `m{start}`, `d{start}`, `M{start}`.
    pub fn counter(&self, now: u64) -> String {
        let (start, _) = self.bounds(now);
        match self {
            Window::Minute => format!("m{start}"),
            Window::Day => format!("d{start}"),
            Window::Month => format!("M{start}"),
        }
    }

    /// The word in messages and `per` of listings.
    pub fn name(&self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Day => "day",
            Window::Month => "month",
        }
    }
}

/// Tokens used in the current windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BudgetUse {
    pub minute: u64,
    pub day: u64,
    pub month: u64,
}

impl BudgetUse {
    /// Tokens used in `window`.
    pub fn get(&self, window: Window) -> u64 {
        match window {
            Window::Minute => self.minute,
            Window::Day => self.day,
            Window::Month => self.month,
        }
    }
}

/// A budget's counters as one object keeps them (the edge's limiter object): the current
/// windows' starts and counts, rolled forward as time passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BudgetCounter {
    pub minute_start: u64,
    pub minute: u64,
    pub day_start: u64,
    pub day: u64,
    pub month_start: u64,
    pub month: u64,
}

impl BudgetCounter {
    /// Moves each window forward to `now`'s; never back (a late add of an earlier request
    /// must not rewind a window and lose what later requests counted).
    fn roll(&mut self, now: u64) {
        let (m, d, mo) = (Window::Minute.bounds(now).0, Window::Day.bounds(now).0, Window::Month.bounds(now).0);
        if m > self.minute_start {
            (self.minute_start, self.minute) = (m, 0);
        }
        if d > self.day_start {
            (self.day_start, self.day) = (d, 0);
        }
        if mo > self.month_start {
            (self.month_start, self.month) = (mo, 0);
        }
    }

    /// Use in the windows of `now`.
    pub fn use_at(&mut self, now: u64) -> BudgetUse {
        self.roll(now);
        BudgetUse { minute: self.minute, day: self.day, month: self.month }
    }

    /// Adds `tokens` to every window of `at` (when the request arrived) that is still the
    /// current one; a window that has already moved on keeps its count.
    pub fn add(&mut self, tokens: u64, at: u64) {
        self.roll(at);
        let (m, d, mo) = (Window::Minute.bounds(at).0, Window::Day.bounds(at).0, Window::Month.bounds(at).0);
        if m == self.minute_start {
            self.minute = self.minute.saturating_add(tokens);
        }
        if d == self.day_start {
            self.day = self.day.saturating_add(tokens);
        }
        if mo == self.month_start {
            self.month = self.month.saturating_add(tokens);
        }
    }
}

/// What a budgeted request's answer says about its tokens, as OpenAI's
/// `x-ratelimit-limit-tokens`, `x-ratelimit-remaining-tokens`, `x-ratelimit-reset-tokens`:
/// the window with the least left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAllowance {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

impl TokenAllowance {
    /// The three headers.
    pub fn insert_into(&self, headers: &mut http::HeaderMap) {
        for (name, value) in [
            ("x-ratelimit-limit-tokens", self.limit.to_string()),
            ("x-ratelimit-remaining-tokens", self.remaining.to_string()),
            ("x-ratelimit-reset-tokens", crate::ratelimit::duration(self.reset_ms)),
        ] {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }

    /// The tighter of two allowances.
    pub fn tighter(a: Option<TokenAllowance>, b: TokenAllowance) -> TokenAllowance {
        match a {
            Some(a) if a.remaining <= b.remaining => a,
            _ => b,
        }
    }
}

/// Admits a request under `budget` given its use, or refuses it (429, type `tokens`) naming
/// the window that is spent and when it turns.
pub fn check(budget: &TokenBudget, used: &BudgetUse, now_ms: u64) -> Result<TokenAllowance> {
    let now = now_ms / 1000;
    let mut tightest: Option<TokenAllowance> = None;
    for (window, limit) in budget.limits() {
        let (_, end) = window.bounds(now);
        let reset_ms = (end * 1000).saturating_sub(now_ms);
        let spent = used.get(window);
        if spent >= limit {
            return Err(Error::TokenBudgetExceeded { limit, window: window.name(), retry_after: reset_ms.div_ceil(1000).max(1) });
        }
        tightest = Some(TokenAllowance::tighter(tightest, TokenAllowance { limit, remaining: limit - spent, reset_ms }));
    }
    tightest.ok_or_else(|| Error::Internal("a budget without limits".into()))
}

/// [`check`] for every budget of a request (`uses` in the same order): the tightest allowance,
/// or the first refusal.
pub fn check_all(budgets: &[(String, TokenBudget)], uses: &[BudgetUse], now_ms: u64) -> Result<Option<TokenAllowance>> {
    let mut tightest = None;
    for ((_, budget), used) in budgets.iter().zip(uses) {
        tightest = Some(TokenAllowance::tighter(tightest, check(budget, used, now_ms)?));
    }
    Ok(tightest)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 2026-12-02T06:00:30Z
    const NOW: u64 = 1_796_191_230;

    #[test]
    fn windows_are_utc_minutes_days_and_calendar_months() {
        assert_eq!(Window::Minute.bounds(NOW), (NOW - 30, NOW + 30));
        let day = NOW - NOW % 86_400;
        assert_eq!(Window::Day.bounds(NOW), (day, day + 86_400));
        // December 2026: 1 Dec to 1 Jan.
        assert_eq!(Window::Month.bounds(NOW), (days_from_civil(2026, 12, 1) as u64 * 86_400, days_from_civil(2027, 1, 1) as u64 * 86_400));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(Window::Month.counter(NOW), format!("M{}", days_from_civil(2026, 12, 1) * 86_400));
    }

    #[test]
    fn admitted_under_every_limit_refused_once_one_is_spent() {
        let b = TokenBudget { tokens_per_minute: Some(100), tokens_per_day: Some(1_000), tokens_per_month: None, managed_by: None };
        let ok = check(&b, &BudgetUse { minute: 40, day: 950, month: 5_000 }, NOW * 1000).unwrap();
        assert_eq!((ok.limit, ok.remaining), (1_000, 50), "the day has the least left");
        let e = check(&b, &BudgetUse { minute: 100, day: 100, month: 0 }, NOW * 1000).unwrap_err();
        assert_eq!(e, Error::TokenBudgetExceeded { limit: 100, window: "minute", retry_after: 30 });
        assert_eq!(e.status().as_u16(), 429);
        let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!((body["error"]["type"].as_str(), body["error"]["code"].as_str()), (Some("tokens"), Some("rate_limit_exceeded")));
        let res = e.into_response();
        assert_eq!(res.headers()["x-ratelimit-remaining-tokens"], "0");
        assert_eq!(res.headers()["x-ratelimit-limit-tokens"], "100");
        assert_eq!(res.headers()["retry-after"], "30");
        // The answer that crossed it completed: use past the limit is still a refusal.
        assert!(check(&b, &BudgetUse { minute: 180, day: 180, month: 0 }, NOW * 1000).is_err());
    }

    #[test]
    fn budgets_are_validated() {
        assert!(TokenBudget::default().validate().is_err());
        assert!(TokenBudget { tokens_per_day: Some(0), ..Default::default() }.validate().is_err());
        assert!(TokenBudget { tokens_per_month: Some(MAX_TOKENS + 1), ..Default::default() }.validate().is_err());
        assert!(TokenBudget { tokens_per_minute: Some(1), ..Default::default() }.validate().is_ok());
        assert!(serde_json::from_str::<TokenBudget>(r#"{"tokens_per_hour": 5}"#).is_err());
    }

    #[test]
    fn the_counter_rolls_each_window_on_its_own() {
        let mut c = BudgetCounter::default();
        c.add(10, NOW);
        c.add(5, NOW + 10);
        assert_eq!(c.use_at(NOW + 20), BudgetUse { minute: 15, day: 15, month: 15 });
        assert_eq!(c.use_at(NOW + 40), BudgetUse { minute: 0, day: 15, month: 15 }, "a new minute");
        c.add(1, NOW + 86_400);
        assert_eq!(c.use_at(NOW + 86_400), BudgetUse { minute: 1, day: 1, month: 16 }, "a new day, same month");
    }

    #[test]
    fn a_late_add_never_rewinds_a_window() {
        // A long stream that arrived in the previous minute ends after a newer request counted.
        let mut c = BudgetCounter::default();
        c.add(7, NOW + 40); // the next minute (NOW is 30 s into its minute)
        c.add(5, NOW); // arrived earlier, counted later
        assert_eq!(c.use_at(NOW + 45), BudgetUse { minute: 7, day: 12, month: 12 }, "the minute keeps its 7; day and month count both");
    }

    proptest! {
        #[test]
        fn days_and_dates_round_trip(z in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(z);
            prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), z);
        }

        #[test]
        fn now_is_always_inside_its_windows(now in 0u64..4_000_000_000) {
            for w in Window::ALL {
                let (start, end) = w.bounds(now);
                prop_assert!(start <= now && now < end);
            }
        }
    }
}
