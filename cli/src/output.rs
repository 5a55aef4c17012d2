//! How answers are printed: `-o json` is the API's body exactly, `-o yaml` the
//! same as YAML, and `-o table` (the default) aligned columns for people, one
//! table per kind of object.

use crate::cli::Format;
use crate::duration::format_unix;
use serde_json::Value;

/// Columns and rows, printed aligned with three spaces between columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |f: &mut std::fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| -> std::fmt::Result {
            let mut out = String::new();
            for (i, (c, w)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str("   ");
                }
                out.push_str(c);
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(c.chars().count())));
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &mut self.headers.iter().copied())?;
        for row in &self.rows {
            line(f, &mut row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// A value as a table cell: text without control characters, `-` for nothing,
/// lists comma-joined, objects as compact JSON.
pub fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    // Text from the network never drives the terminal.
    let clean: String = text.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    if clean.chars().count() > 60 {
        format!("{}…", clean.chars().take(59).collect::<String>())
    } else {
        clean
    }
}

/// Unix seconds as a UTC time, `-` when absent.
pub fn time(v: &Value) -> String {
    v.as_u64().map(format_unix).unwrap_or_else(|| "-".into())
}

/// Prints `value` in `format`; `table` builds the table view.
pub fn print(value: &Value, format: Format, table: impl FnOnce(&Value) -> Table) -> Result<(), String> {
    print!("{}", render(value, format, table)?);
    Ok(())
}

/// What [`print`] prints.
pub fn render(value: &Value, format: Format, table: impl FnOnce(&Value) -> Table) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| e.to_string()),
        Format::Yaml => serde_norway::to_string(value).map_err(|e| e.to_string()),
        Format::Table => Ok(table(value).to_string()),
    }
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// `routes list` (`{"routes": [...]}`) and `routes get` (one route).
pub fn routes(v: &Value) -> Table {
    let mut t = Table::new(&["NAME", "HOST", "ENABLED", "ENDPOINTS", "AUTH", "MANAGED_BY", "MODELS"]);
    let one = [v.clone()];
    let list = if v.get("routes").is_some() { items(v, "routes") } else { &one[..] };
    for r in list {
        let endpoints = r["endpoints"].as_array().map(Vec::len).unwrap_or(0);
        let leased = r["leased_endpoints"].as_array().map(Vec::len).unwrap_or(0);
        let endpoints = if leased > 0 { format!("{endpoints}+{leased} leased") } else { endpoints.to_string() };
        let auth = if r["auth"]["required"] == Value::Bool(false) { "public".to_string() } else { format!("groups: {}", cell(&r["auth"]["groups"])) };
        t.row(vec![cell(&r["name"]), cell(&r["host"]), cell(&r["enabled"]), endpoints, auth, cell(&r["managed_by"]), cell(&r["models"])]);
    }
    t
}

/// `tokens list`, `me tokens` (`{"tokens": [...]}`) and `me tokens get` (one token).
pub fn tokens(v: &Value) -> Table {
    let mut t = Table::new(&["ID", "SUBJECT", "KIND", "GROUPS", "ROUTES", "EXPIRES", "STATE", "REQUESTS", "LAST_USED", "DESCRIPTION"]);
    let one = [v.clone()];
    let list = if v.get("tokens").is_some() { items(v, "tokens") } else { &one[..] };
    for k in list {
        let state = if k["revoked"] == Value::Bool(true) {
            "revoked"
        } else if k["expired"] == Value::Bool(true) {
            "expired"
        } else {
            "active"
        };
        t.row(vec![
            cell(&k["id"]),
            cell(&k["subject"]),
            cell(&k["kind"]),
            cell(&k["groups"]),
            cell(&k["routes"]),
            time(&k["expires_at"]),
            state.into(),
            cell(&k["request_count"]),
            time(&k["last_used_at"]),
            cell(&k["description"]),
        ]);
    }
    t
}

/// `service-accounts list` and `service-accounts get`.
pub fn service_accounts(v: &Value) -> Table {
    let mut t = Table::new(&["NAME", "OWNER", "GROUPS", "TOKENS", "CREATED", "DESCRIPTION"]);
    let one = [v.clone()];
    let list = if v.get("service_accounts").is_some() { items(v, "service_accounts") } else { &one[..] };
    for a in list {
        let tokens = a["tokens"].as_array().map(|t| t.iter().filter(|t| t["revoked"] != Value::Bool(true) && t["expired"] != Value::Bool(true)).count().to_string());
        t.row(vec![cell(&a["name"]), cell(&a["owner"]), cell(&a["groups"]), tokens.unwrap_or_else(|| "-".into()), time(&a["created_at"]), cell(&a["description"])]);
    }
    t
}

/// `budgets list`: each budget's limits (`-` for none), the tokens used in each window now
/// (minute/day/month), the windows spent (use at or over the limit: refused with 429), and
/// who else owns it (Terraform's budgets are changed in Terraform).
pub fn budgets(v: &Value) -> Table {
    let mut t = Table::new(&["KIND", "ID", "PER_MINUTE", "PER_DAY", "PER_MONTH", "USED_MIN/DAY/MONTH", "SPENT", "MANAGED_BY"]);
    let windows = [("minute", "tokens_per_minute"), ("day", "tokens_per_day"), ("month", "tokens_per_month")];
    for b in items(v, "budgets") {
        let used = |w: &str| b["used"][w].as_u64().unwrap_or(0);
        let spent: Vec<&str> = windows.iter().filter(|(w, f)| b[*f].as_u64().is_some_and(|limit| used(w) >= limit)).map(|(w, _)| *w).collect();
        t.row(vec![
            cell(&b["kind"]),
            cell(&b["id"]),
            cell(&b["tokens_per_minute"]),
            cell(&b["tokens_per_day"]),
            cell(&b["tokens_per_month"]),
            windows.iter().map(|(w, _)| used(w).to_string()).collect::<Vec<_>>().join("/"),
            if spent.is_empty() { "-".into() } else { spent.join(",") },
            cell(&b["managed_by"]),
        ]);
    }
    t
}

/// `keys list`.
pub fn keys(v: &Value) -> Table {
    let mut t = Table::new(&["KID", "ALG", "SIGNING", "TOKENS_OUTSTANDING", "LAST_EXPIRY"]);
    for k in items(v, "keys") {
        t.row(vec![cell(&k["kid"]), cell(&k["alg"]), cell(&k["signing"]), cell(&k["tokens_outstanding"]), time(&k["last_expiry"])]);
    }
    t
}

/// `audit`.
pub fn audit(v: &Value) -> Table {
    let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "VERSION"]);
    for e in items(v, "entries") {
        // A change Terraform made outside the admin API carries its route versions.
        let version = match (e["old_version"].as_str(), e["new_version"].as_str()) {
            (None, None) => String::new(),
            (old, new) => format!("{}→{}", old.unwrap_or("∅"), new.unwrap_or("∅")),
        };
        t.row(vec![cell(&e["seq"]), time(&e["at"]), cell(&e["actor"]), cell(&e["action"]), cell(&e["object"]), cell(&e["outcome"]), version]);
    }
    t
}

/// `me`.
pub fn me(v: &Value) -> Table {
    let mut t = Table::new(&["SUBJECT", "KIND", "GROUPS", "PROVIDER", "TOKEN", "EXPIRES"]);
    t.row(vec![cell(&v["subject"]), cell(&v["kind"]), cell(&v["groups"]), cell(&v["provider"]), cell(&v["token_id"]), time(&v["expires_at"])]);
    t
}

/// `probes run`.
pub fn probes(v: &Value) -> Table {
    let mut t = Table::new(&["ROUTE", "ENDPOINT", "STATUS", "HEALTH", "CHANGED"]);
    for p in items(v, "probes") {
        t.row(vec![cell(&p["route"]), cell(&p["endpoint"]), cell(&p["status"]), cell(&p["health"]), cell(&p["changed"])]);
    }
    t
}

fn ms(v: &Value) -> String {
    v.as_f64().map(|x| format!("{}ms", x.round())).unwrap_or_else(|| "-".into())
}

/// `metrics`: one row per route.
pub fn metrics(v: &Value) -> Table {
    let mut t = Table::new(&["ROUTE", "REQUESTS", "LAST_HOUR", "2XX", "4XX", "5XX", "P50", "P95", "P99", "ENDPOINTS_UP"]);
    for (name, r) in v["routes"].as_object().into_iter().flatten() {
        let class = |c: &str| r["by_status_class"].get(c).map(cell).unwrap_or_else(|| "0".into());
        let eps = r["endpoints"].as_object();
        let up = eps.map(|e| format!("{}/{}", e.values().filter(|e| e["health"] == "up").count(), e.len())).unwrap_or_else(|| "-".into());
        let l = &r["latency_ms"];
        t.row(vec![
            cell(&Value::String(name.clone())),
            cell(&r["requests_total"]),
            cell(&r["requests_last_hour"]),
            class("2xx"),
            class("4xx"),
            class("5xx"),
            ms(&l["p50"]),
            ms(&l["p95"]),
            ms(&l["p99"]),
            up,
        ]);
    }
    t
}

/// `metrics --per-token`: one row per token.
pub fn token_metrics(v: &Value) -> Table {
    let mut t = Table::new(&["TOKEN", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "LAST_SEEN", "ROUTES"]);
    for (id, m) in v["tokens"].as_object().into_iter().flatten() {
        let routes = m["routes"].as_object().map(|r| r.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(",")).unwrap_or_default();
        t.row(vec![
            cell(&Value::String(id.clone())),
            cell(&m["requests"]),
            cell(&m["prompt_tokens"]),
            cell(&m["completion_tokens"]),
            time(&m["last_seen"]),
            cell(&Value::String(routes)),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_clean_cells() {
        let v = json!({"routes": [
            {"name": "llama", "host": null, "enabled": true, "endpoints": [{}, {}], "auth": {"required": true, "groups": ["ml-team", "x"]}, "managed_by": null},
            {"name": "docs\u{1b}[2J", "enabled": false, "endpoints": [], "auth": {"required": false, "groups": []}, "managed_by": "terraform", "models": ["mistral-7b", "mistral"]},
        ], "next_cursor": null});
        let text = routes(&v).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME       HOST   ENABLED   ENDPOINTS   AUTH                MANAGED_BY   MODELS");
        assert_eq!(lines[1], "llama      -      true      2           groups: ml-team,x   -            -");
        assert_eq!(lines[2], "docs?[2J   -      false     0           public              terraform    mistral-7b,mistral");
    }

    #[test]
    fn json_is_the_body_and_yaml_its_mirror() {
        let v = json!({"tokens": [{"id": "tok_1", "subject": "bob", "revoked": false, "expired": false, "expires_at": 1_800_000_000u64}], "next_cursor": null});
        let j = render(&v, Format::Json, tokens).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), v);
        let y = render(&v, Format::Yaml, tokens).unwrap();
        assert_eq!(serde_norway::from_str::<Value>(&y).unwrap(), v);
        let t = render(&v, Format::Table, tokens).unwrap();
        assert!(t.lines().nth(1).unwrap().starts_with("tok_1   bob "), "{t}");
        assert!(t.contains("2027-01-15T08:00:00Z") && t.contains("active"), "{t}");
    }
}
