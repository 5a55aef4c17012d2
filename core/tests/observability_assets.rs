//! The files under `infra/observability` checked against the gateway itself:
//! every metric the Grafana dashboard and the alert rules query is one that
//! `render_prometheus` writes (and not a deprecated one), matched only on labels
//! it has, every expression is PromQL a real parser accepts, and each file has
//! the shape its loader needs. promtool's own checks are in
//! `scripts/check-observability.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use gateway_core::admin::AdminCommand;
use gateway_core::health::HealthState;
use gateway_core::metrics::{render_prometheus, EndpointMetrics, RouteMetrics, Snapshot, TokenMetrics};
use http::Method;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// The datasource every panel must use: the dashboard's own variable, so one
/// import works against any Prometheus.
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";
/// Metrics that are Prometheus's own, not the gateway's.
const PROMETHEUS_OWN: &[&str] = &["up"];
/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn asset(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/observability").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn dashboard() -> Json {
    serde_json::from_str(&asset("grafana/ai-gateway.json")).expect("the dashboard is JSON")
}

fn yaml(path: &str) -> Yaml {
    serde_norway::from_str(&asset(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What one exposition declares: family names with the series names a
/// histogram adds, the label names of each series name, and the families
/// whose HELP says they are deprecated.
#[derive(Default)]
struct Exposed {
    names: BTreeSet<String>,
    labels: BTreeMap<String, BTreeSet<String>>,
    deprecated: BTreeSet<String>,
}

/// A snapshot with one of everything, so every family has a sample to show its labels.
fn one_of_everything() -> Snapshot {
    let endpoint =
        EndpointMetrics { requests: 3, failures: 1, health: HealthState::Up, uptime_24h: Some(1.0), uptime_7d: Some(0.9), last_probe_at: Some(60), load: Some(gateway_core::load::EndpointLoad { at: 60, running: Some(2.0), waiting: Some(1.0), kv_cache_usage: Some(0.3), prefix_cache_hit_rate: Some(0.5), ..Default::default() }) };
    let route = RouteMetrics {
        by_status_class: [("2xx".to_string(), 3), ("5xx".to_string(), 1)].into(),
        endpoints: [("a".to_string(), endpoint)].into(),
        ..RouteMetrics::default()
    };
    let usage = TokenMetrics { requests: 1, routes: [("llama".to_string(), 1)].into(), last_seen: Some(60), prompt_tokens: 1, completion_tokens: 1 };
    Snapshot {
        generated_at: 120,
        routes: [("llama".to_string(), route)].into(),
        tokens: [("tok_a".to_string(), usage.clone())].into(),
        partners: [("acme".to_string(), usage)].into(),
        ..Snapshot::default()
    }
}

impl Exposed {
    fn render(per_token: bool) -> Exposed {
        let text = render_prometheus(&one_of_everything(), per_token);
        let mut out = Exposed::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                out.names.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        out.names.insert(format!("{name}{suffix}"));
                    }
                }
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("# HELP name text");
                if help.starts_with("Deprecated") {
                    out.deprecated.insert(name.to_string());
                }
            } else if !line.starts_with('#') {
                // name{k="v",…} value; the values here hold no `,`, `=` or `}`.
                let (series, _) = line.rsplit_once(' ').expect("a sample");
                let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                let labels = labels.strip_suffix('}').expect("labels end with }");
                let names = labels.split(',').filter(|l| !l.is_empty()).map(|l| l.split_once('=').expect("k=\"v\"").0.to_string());
                out.labels.entry(name.to_string()).or_default().extend(names);
            }
        }
        out
    }

    fn is_deprecated(&self, name: &str) -> bool {
        self.deprecated.iter().any(|d| name == d || ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{d}{s}")))
    }
}

/// A PromQL expression and where it was found, for messages.
struct Query {
    at: String,
    expr: String,
}

/// Every non-row panel, rows' nested panels (collapsed rows keep theirs) included.
fn panels(dash: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

fn dashboard_queries(dash: &Json) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                at: format!("panel `{}` target {}", p["title"].as_str().unwrap_or("?"), t["refId"]),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    out
}

fn alert_rules() -> Vec<Yaml> {
    let rules = yaml("prometheus/alerts.yml");
    rules["groups"].as_sequence().expect("groups").iter().flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default()).collect()
}

fn alert_queries() -> Vec<Query> {
    alert_rules()
        .iter()
        .map(|r| Query { at: format!("alert {}", r["alert"].as_str().unwrap_or("?")), expr: r["expr"].as_str().unwrap_or_default().to_string() })
        .collect()
}

/// Grafana's variables replaced by values Prometheus would accept: built-in
/// intervals by a duration, the dashboard's own variables (all multi-value,
/// used in `=~` matchers) by what "All" sends.
fn substitute(expr: &str, variables: &[String]) -> String {
    let mut out = expr.to_string();
    for builtin in ["$__rate_interval", "$__interval", "$__range"] {
        out = out.replace(builtin, "5m");
    }
    for v in variables {
        out = out.replace(&format!("${{{v}}}"), ".*").replace(&format!("${v}"), ".*");
    }
    out
}

fn variables(dash: &Json) -> Vec<String> {
    let mut names: Vec<String> =
        dash["templating"]["list"].as_array().expect("templating.list").iter().map(|v| v["name"].as_str().expect("variable name").to_string()).collect();
    // Longest first, so `$route` never eats the start of a `$routes`.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names
}

/// Metric names in a parsed expression: the names of its vector and range selectors.
fn selector_names(expr: &Expr) -> BTreeSet<String> {
    selectors(expr).into_keys().collect()
}

/// The vector and range selectors in a parsed expression: metric name, and the
/// label names their matchers use.
fn selectors(expr: &Expr) -> BTreeMap<String, BTreeSet<String>> {
    struct Names(BTreeMap<String, BTreeSet<String>>);
    impl ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            // `{__name__="x"}` is written `x` here; a selector without a name would match anything.
            let name = vs.name.clone().or_else(|| vs.matchers.find_matchers("__name__").into_iter().next().map(|m| m.value));
            let labels = vs.matchers.matchers.iter().chain(vs.matchers.or_matchers.iter().flatten()).map(|m| m.name.clone()).filter(|l| l != "__name__");
            self.0.entry(name.unwrap_or_default()).or_default().extend(labels);
            Ok(true)
        }
    }
    let mut names = Names(BTreeMap::new());
    walk_expr(&mut names, expr).expect("the walk has no errors");
    names.0
}

/// Every `gateway_…` identifier in the text, wherever it stands: a second
/// net under the parser's, for names in strings or functions' arguments.
fn gateway_identifiers(text: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("gateway_") {
        if text[..i].chars().next_back().is_some_and(ident) {
            continue;
        }
        let end = text[i..].find(|c: char| !ident(c)).map_or(text.len(), |n| i + n);
        out.insert(text[i..end].to_string());
    }
    out
}

/// Parses each query as PromQL and returns the metric names each one uses,
/// with the label names it matches them on.
fn parse_all(queries: &[Query], variables: &[String]) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for q in queries {
        let expr = substitute(&q.expr, variables);
        if expr.trim().is_empty() {
            errors.push(format!("{}: no expression", q.at));
            continue;
        }
        if expr.contains('$') {
            errors.push(format!("{}: a variable the dashboard does not define: {expr}", q.at));
            continue;
        }
        match parser::parse(&expr) {
            Ok(ast) => {
                let mut names = selectors(&ast);
                for name in gateway_identifiers(&expr) {
                    names.entry(name).or_default();
                }
                out.insert(format!("{}: {}", q.at, q.expr.trim()), names);
            }
            Err(e) => errors.push(format!("{}: {e}\n    {expr}", q.at)),
        }
    }
    assert!(errors.is_empty(), "PromQL that does not parse:\n  {}", errors.join("\n  "));
    out
}

fn check_names(used: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>, exposed: &Exposed) {
    let mut errors = Vec::new();
    for (at, names) in used {
        for (name, labels) in names {
            if name.is_empty() {
                errors.push(format!("{at}: a selector without a metric name"));
            } else if PROMETHEUS_OWN.contains(&name.as_str()) {
            } else if !exposed.names.contains(name) {
                errors.push(format!("{at}: `{name}` is not in the exposition"));
            } else if exposed.is_deprecated(name) || name.ends_with("_ms") || name.contains("_ms_") {
                errors.push(format!("{at}: `{name}` is deprecated"));
            } else {
                let known = exposed.labels.get(name).cloned().unwrap_or_default();
                for l in labels.iter().filter(|l| !known.contains(*l) && !TARGET_LABELS.contains(&l.as_str())) {
                    errors.push(format!("{at}: `{name}` has no label `{l}` (it has {known:?})"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}\nexposed: {:?}", errors.join("\n"), exposed.names);
}

#[test]
fn the_exposition_read_here_has_the_families_the_assets_are_written_against() {
    let all = Exposed::render(true);
    for name in [
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_overhead_duration_seconds_bucket",
        "gateway_upstream_first_byte_seconds_bucket",
        "gateway_endpoint_up",
        "gateway_tokens_expiring",
        "gateway_probe_last_round_timestamp_seconds",
        "gateway_token_requests_total",
    ] {
        assert!(all.names.contains(name), "{name} missing from {:?}", all.names);
    }
    // The deprecated check below relies on the HELP text naming them.
    assert!(all.deprecated.contains("gateway_request_duration_ms") && all.deprecated.contains("gateway_overhead_duration_ms"), "{:?}", all.deprecated);
    assert!(all.is_deprecated("gateway_overhead_duration_ms_bucket"));
}

#[test]
fn dashboard_queries_parse_as_promql_and_use_only_exposed_current_metrics() {
    let dash = dashboard();
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 15, "{} queries", queries.len());
    let used = parse_all(&queries, &variables(&dash));
    check_names(&used, &Exposed::render(true));

    // The variables' `label_values(metric, label)` name metrics too.
    let exposed = Exposed::render(false);
    for v in dash["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("a variable's query");
        let args = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).unwrap_or_else(|| panic!("{q}: label_values(metric, label) expected"));
        let (metric, label) = args.split_once(',').unwrap_or_else(|| panic!("{q}: name the metric, or every series is searched"));
        assert!(exposed.names.contains(metric.trim()), "variable {}: {metric} is not exposed", v["name"]);
        assert!(!label.trim().is_empty());
        assert_eq!(v["definition"].as_str(), Some(q), "definition and query differ");
    }
}

#[test]
fn per_token_series_are_only_in_the_panels_that_say_they_need_them() {
    let (all, default) = (Exposed::render(true), Exposed::render(false));
    let per_token: BTreeSet<&String> = all.names.difference(&default.names).collect();
    assert!(per_token.contains(&"gateway_llm_tokens_total".to_string()), "{per_token:?}");

    let dash = dashboard();
    let vars = variables(&dash);
    let mut seen = 0;
    for row in dash["panels"].as_array().unwrap() {
        let in_row: Vec<&Json> = if row["type"] == "row" { row["panels"].as_array().into_iter().flatten().collect() } else { vec![row] };
        for p in in_row {
            for t in p["targets"].as_array().into_iter().flatten() {
                let ast = parser::parse(&substitute(t["expr"].as_str().unwrap(), &vars)).unwrap_or_else(|e| panic!("panel `{}`: {e}", p["title"]));
                if selector_names(&ast).iter().any(|n| per_token.contains(n)) {
                    seen += 1;
                    let desc = p["description"].as_str().unwrap_or_default();
                    assert!(desc.contains("per_token"), "panel `{}` needs per_token=1 and should say so", p["title"]);
                    assert!(row["type"] == "row" && row["collapsed"] == true, "panel `{}` belongs in the collapsed per-token row", p["title"]);
                }
            }
        }
    }
    assert!(seen > 0, "the optional per-token row is there");
}

#[test]
fn alert_expressions_parse_as_promql_and_use_only_exposed_current_metrics() {
    let queries = alert_queries();
    let used = parse_all(&queries, &[]);
    check_names(&used, &Exposed::render(false));
    let all: BTreeSet<&String> = used.values().flat_map(|m| m.keys()).collect();
    for needed in
        ["gateway_endpoint_up", "gateway_requests_total", "gateway_overhead_duration_seconds_bucket", "gateway_tokens_expiring", "gateway_probe_last_round_timestamp_seconds"]
    {
        assert!(all.contains(&needed.to_string()), "no alert on {needed}");
    }
    // Per-token series are optional: an alert on them would fire, or stay silent, by scrape setting.
    let per_token: BTreeSet<String> = Exposed::render(true).names.difference(&Exposed::render(false).names).cloned().collect();
    assert!(all.iter().all(|n| !per_token.contains(*n)));
}

#[test]
fn alert_unit_tests_feed_series_the_gateway_exposes() {
    // promtool runs them (scripts/check-observability.sh); here their input
    // series are held to the same names, so the tests cannot drift from the exposition.
    let tests = yaml("prometheus/alerts.test.yml");
    assert_eq!(tests["rule_files"][0].as_str(), Some("alerts.yml"));
    let mut series = Vec::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for s in t["input_series"].as_sequence().expect("input_series") {
            series.push(Query { at: format!("unit test `{}`", t["name"].as_str().unwrap_or("?")), expr: s["series"].as_str().expect("series").to_string() });
        }
    }
    check_names(&parse_all(&series, &[]), &Exposed::render(false));
    let tested: BTreeSet<String> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|a| a["alertname"].as_str().map(str::to_string))
        .collect();
    for r in alert_rules() {
        let alert = r["alert"].as_str().unwrap();
        assert!(tested.contains(alert), "{alert} has no promtool unit test in alerts.test.yml");
    }
}

#[test]
fn alert_rules_have_what_prometheus_and_alertmanager_need() {
    let file = yaml("prometheus/alerts.yml");
    let groups = file["groups"].as_sequence().expect("a `groups` list");
    assert!(!groups.is_empty());
    let mut group_names = BTreeSet::new();
    let mut alert_names = BTreeSet::new();
    for g in groups {
        let name = g["name"].as_str().expect("each group has a name");
        assert!(group_names.insert(name), "group {name} twice");
        let rules = g["rules"].as_sequence().unwrap_or_else(|| panic!("group {name} has a `rules` list"));
        assert!(!rules.is_empty(), "group {name} has no rule");
        for r in rules {
            let map = r.as_mapping().expect("a rule is a mapping");
            let alert = r["alert"].as_str().unwrap_or_else(|| panic!("every rule is an alert (no recording rules here): {r:?}"));
            assert!(alert_names.insert(alert), "alert {alert} twice");
            for key in map.keys() {
                let key = key.as_str().unwrap();
                assert!(["alert", "expr", "for", "keep_firing_for", "labels", "annotations"].contains(&key), "{alert}: unknown key `{key}`");
            }
            assert!(r["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "{alert}: expr");
            let for_ = r["for"].as_str().unwrap_or_else(|| panic!("{alert}: `for` is required here, so one bad scrape never pages"));
            let (n, unit) = for_.split_at(for_.len() - 1);
            assert!(n.parse::<u32>().is_ok_and(|n| n > 0) && "smhd".contains(unit), "{alert}: for: {for_}");
            let severity = r["labels"]["severity"].as_str().unwrap_or_else(|| panic!("{alert}: labels.severity"));
            assert!(["critical", "warning"].contains(&severity), "{alert}: severity {severity}");
            for a in ["summary", "description"] {
                assert!(r["annotations"][a].as_str().is_some_and(|s| !s.trim().is_empty()), "{alert}: annotations.{a}");
            }
        }
    }
}

#[test]
fn dashboard_is_a_grafana_dashboard_whose_every_panel_queries_the_chosen_prometheus() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", dash["schemaVersion"]);
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(dash["title"].as_str().is_some());

    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("variable {name}"));
    let ds = var("DS_PROMETHEUS");
    assert_eq!((ds["type"].as_str(), ds["query"].as_str()), (Some("datasource"), Some("prometheus")));
    for name in ["route", "partner"] {
        let v = var(name);
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"]["uid"], DATASOURCE_UID);
        assert!(v["definition"].as_str().unwrap().starts_with("label_values("));
        assert_eq!((&v["multi"], &v["includeAll"], v["allValue"].as_str()), (&Json::Bool(true), &Json::Bool(true), Some(".*")));
    }

    let mut ids = BTreeSet::new();
    let top = dash["panels"].as_array().unwrap();
    let nested = top.iter().flat_map(|r| r["panels"].as_array().into_iter().flatten());
    for p in top.iter().chain(nested) {
        assert!(p["id"].as_u64().is_some_and(|id| ids.insert(id)), "panel `{}`: a unique id", p["title"]);
        let g = &p["gridPos"];
        assert!(["h", "w", "x", "y"].iter().all(|k| g[k].is_u64()) && g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "panel `{}`: gridPos {g}", p["title"]);
    }
    let all = panels(&dash);
    assert!(all.len() >= 14, "{} panels", all.len());
    for p in all {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(p["type"].is_string(), "{title}: type");
        assert_eq!(p["datasource"]["uid"], DATASOURCE_UID, "{title}: datasource");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}: datasource type");
        assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{title}: say what it shows");
        let targets = p["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("{title}: no targets"));
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(t["refId"].as_str().is_some_and(|r| refs.insert(r)), "{title}: unique refIds");
            assert_eq!(t["datasource"]["uid"], DATASOURCE_UID, "{title}: target datasource");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}: expr");
        }
    }
}

#[test]
fn scrape_job_reads_the_admin_exposition_with_a_token_file_over_https() {
    let config = yaml("prometheus/scrape.yml");
    let jobs = config["scrape_configs"].as_sequence().expect("scrape_configs");
    let job = jobs.iter().find(|j| j["job_name"] == "ai-gateway").expect("job ai-gateway");
    assert_eq!(job["scheme"].as_str(), Some("https"));
    assert_eq!(job["authorization"]["type"].as_str(), Some("Bearer"));
    assert!(job["authorization"]["credentials_file"].as_str().is_some_and(|f| f.starts_with('/')));
    assert!(job["authorization"].get("credentials").is_none() && job.get("bearer_token").is_none(), "no token in the file itself");
    assert!(job["scrape_interval"].as_str().is_some());

    // The path and query are the ones the gateway's admin API answers.
    let path = job["metrics_path"].as_str().expect("metrics_path");
    let segs: Vec<String> = path.strip_prefix("/_gateway/").expect("an admin path").split('/').map(String::from).collect();
    let per_token = job["params"]["per_token"][0].as_str().unwrap_or("0");
    let parsed = AdminCommand::parse(&Method::GET, &segs, Some(&format!("per_token={per_token}")), b"");
    assert!(matches!(parsed, Ok(AdminCommand::MetricsPrometheus { .. })), "{path}?per_token={per_token}: {parsed:?}");

    // The scrape-failure alert watches this job, and the rule file is the one beside it.
    assert!(asset("prometheus/alerts.yml").contains(r#"up{job="ai-gateway"}"#));
    let rule_files: Vec<&str> = config["rule_files"].as_sequence().unwrap().iter().filter_map(Yaml::as_str).collect();
    assert_eq!(rule_files, ["alerts.yml"]);
}
