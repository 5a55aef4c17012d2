//! CloudWatch Embedded Metric Format: one JSON line per recorded request on stdout, which
//! CloudWatch Logs turns into metrics as it ingests the function's log (no `PutMetricData`
//! call, no extra permission, nothing on the response path).
//!
//! Metrics `Requests`, `Latency`, and when known `GatewayOverhead`, `PromptTokens` and
//! `CompletionTokens`, by `route` and by `route` × `status_class`; `request_id`, `endpoint`,
//! `status` and `token_id` (never the token) ride along as properties for Logs Insights.

use gateway_core::metrics::{status_class, RequestSample};
use serde_json::{json, Map, Value};

/// Namespace when `GATEWAY_EMF_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "AIGateway";

/// The namespace from `GATEWAY_EMF_NAMESPACE` (default [`DEFAULT_NAMESPACE`]); `None`, and no
/// EMF lines, when it is set to the empty string.
pub fn namespace(lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match lookup("GATEWAY_EMF_NAMESPACE") {
        None => Some(DEFAULT_NAMESPACE.to_string()),
        Some(ns) if ns.trim().is_empty() => None,
        Some(ns) => Some(ns.trim().to_string()),
    }
}

/// The EMF line of one request, `timestamp_ms` being when it arrived (unix ms).
pub fn line(namespace: &str, sample: &RequestSample, request_id: &str, timestamp_ms: u64) -> String {
    let mut metrics = vec![json!({"Name": "Requests", "Unit": "Count"}), json!({"Name": "Latency", "Unit": "Milliseconds"})];
    let mut root = Map::new();
    root.insert("route".into(), json!(sample.route));
    root.insert("status_class".into(), json!(status_class(sample.status)));
    root.insert("Requests".into(), json!(1));
    root.insert("Latency".into(), json!(finite(sample.latency_ms)));
    let optional = [
        (
            "GatewayOverhead",
            "Milliseconds",
            sample.gateway_ms.map(finite),
        ),
        (
            "UpstreamFirstByte",
            "Milliseconds",
            sample.first_byte_ms.map(finite),
        ),
        (
            "PromptTokens",
            "Count",
            sample.prompt_tokens.map(|t| t as f64),
        ),
        (
            "CompletionTokens",
            "Count",
            sample.completion_tokens.map(|t| t as f64),
        ),
    ];
    for (name, unit, value) in optional {
        if let Some(v) = value {
            metrics.push(json!({"Name": name, "Unit": unit}));
            root.insert(name.into(), json!(v));
        }
    }
    root.insert("request_id".into(), json!(request_id));
    root.insert("status".into(), json!(sample.status));
    if let Some(e) = &sample.endpoint {
        root.insert("endpoint".into(), json!(e));
    }
    if let Some(t) = &sample.token_id {
        root.insert("token_id".into(), json!(t));
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["route"], ["route", "status_class"]],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(root).to_string()
}

/// JSON has no NaN or infinity; a metric value must be a number.
fn finite(ms: f64) -> f64 {
    if ms.is_finite() && ms > 0.0 {
        ms
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RequestSample {
        RequestSample {
            route: "llama".into(),
            endpoint: Some("gpu-a".into()),
            failed_endpoints: vec!["gpu-b".into()],
            status: 200,
            latency_ms: 812.5,
            gateway_ms: Some(1.25),
            first_byte_ms: Some(310.0),
            request_bytes: 120,
            response_bytes: 4_000,
            token_id: Some("tok_abc".into()),
            prompt_tokens: Some(12),
            completion_tokens: Some(34),
            partner: None,
            at: 1_700_000_000,
            budget_keys: Vec::new(),
        }
    }

    /// Checks a line against the EMF specification and returns it parsed.
    fn parse_emf(line: &str) -> Value {
        assert!(!line.contains('\n'), "one line");
        let v: Value = serde_json::from_str(line).expect("JSON");
        let root = v.as_object().expect("an object");
        let aws = root["_aws"].as_object().expect("_aws object");
        let ts = aws["Timestamp"].as_u64().expect("Timestamp is an integer");
        assert!(ts > 1_000_000_000_000, "Timestamp is in milliseconds: {ts}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics array");
        assert!(!directives.is_empty());
        for d in directives {
            let ns = d["Namespace"].as_str().expect("Namespace string");
            assert!(!ns.is_empty() && ns.len() <= 255);
            let sets = d["Dimensions"].as_array().expect("Dimensions array of arrays");
            for set in sets {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(set.len() <= 30);
                for dim in set {
                    let name = dim.as_str().expect("dimension names are strings");
                    assert!(root.get(name).is_some_and(Value::is_string), "dimension {name} is a top-level string");
                }
            }
            let metrics = d["Metrics"].as_array().expect("Metrics array");
            assert!(metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().expect("metric Name");
                assert!(!name.is_empty() && name.len() <= 255);
                if let Some(unit) = m.get("Unit") {
                    assert!(["Count", "Milliseconds"].contains(&unit.as_str().unwrap()), "{unit}");
                }
                assert!(root.get(name).is_some_and(Value::is_number), "metric {name} is a top-level number");
            }
        }
        v
    }

    fn metric_names(v: &Value) -> Vec<&str> {
        v["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_full_sample_has_every_metric_and_the_properties() {
        let v = parse_emf(&line("AIGateway", &sample(), "req_1", 1_700_000_000_123));
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_123u64);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "AIGateway");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["route"], ["route", "status_class"]])
        );
        assert_eq!(
            metric_names(&v),
            [
                "Requests",
                "Latency",
                "GatewayOverhead",
                "UpstreamFirstByte",
                "PromptTokens",
                "CompletionTokens"
            ]
        );
        assert_eq!(v["UpstreamFirstByte"].as_f64(), Some(310.0));
        assert_eq!(
            (v["route"].as_str(), v["status_class"].as_str()),
            (Some("llama"), Some("2xx"))
        );
        assert_eq!(
            (
                v["Requests"].as_f64(),
                v["Latency"].as_f64(),
                v["GatewayOverhead"].as_f64()
            ),
            (Some(1.0), Some(812.5), Some(1.25))
        );
        assert_eq!(
            (v["PromptTokens"].as_f64(), v["CompletionTokens"].as_f64()),
            (Some(12.0), Some(34.0))
        );
        assert_eq!(
            (
                v["request_id"].as_str(),
                v["endpoint"].as_str(),
                v["token_id"].as_str()
            ),
            (Some("req_1"), Some("gpu-a"), Some("tok_abc"))
        );
        assert_eq!(v["status"], 200);
    }

    #[test]
    fn unknown_values_are_left_out_not_zeroed() {
        let mut s = sample();
        s.gateway_ms = None;
        s.first_byte_ms = None;
        s.prompt_tokens = None;
        s.completion_tokens = None;
        s.endpoint = None;
        s.token_id = None;
        s.status = 429;
        s.latency_ms = f64::NAN;
        let v = parse_emf(&line("Team/Gateway", &s, "req_2", 1_700_000_000_000));
        assert_eq!(metric_names(&v), ["Requests", "Latency"]);
        for absent in [
            "GatewayOverhead",
            "UpstreamFirstByte",
            "PromptTokens",
            "CompletionTokens",
            "endpoint",
            "token_id",
        ] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
        assert_eq!(v["status_class"], "4xx");
        assert_eq!(v["Latency"].as_f64(), Some(0.0), "NaN is not JSON");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Team/Gateway");
    }

    #[test]
    fn odd_route_names_stay_strings_and_the_line_stays_one_line() {
        let mut s = sample();
        s.route = "we\"ird\nroute".into();
        let v = parse_emf(&line("AIGateway", &s, "req_3", 1_700_000_000_000));
        assert_eq!(v["route"], "we\"ird\nroute");
    }

    #[test]
    fn the_namespace_comes_from_the_environment() {
        assert_eq!(namespace(&|_| None).as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!(namespace(&|k| (k == "GATEWAY_EMF_NAMESPACE").then(|| "Acme/AI".into())).as_deref(), Some("Acme/AI"));
        assert_eq!(namespace(&|_| Some(String::new())), None, "empty turns EMF off");
    }
}
