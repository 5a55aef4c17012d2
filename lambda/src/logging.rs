//! The log level: Lambda's advanced logging controls set `AWS_LAMBDA_LOG_LEVEL`;
//! `RUST_LOG` (a `tracing` filter) applies where they do not; `info` otherwise.
//! Lines are always JSON, one per event, with the request's `request_id` and
//! `trace_id` from its span.

/// The `tracing` filter for the given `AWS_LAMBDA_LOG_LEVEL` and `RUST_LOG`.
pub fn filter(aws_level: Option<&str>, rust_log: Option<&str>) -> String {
    let aws = aws_level
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .and_then(|l| match l.to_ascii_uppercase().as_str() {
            "TRACE" => Some("trace"),
            "DEBUG" => Some("debug"),
            "INFO" => Some("info"),
            "WARN" => Some("warn"),
            // `tracing` has no FATAL: errors are the most severe it logs.
            "ERROR" | "FATAL" => Some("error"),
            _ => None,
        });
    match (aws, rust_log.map(str::trim).filter(|f| !f.is_empty())) {
        (Some(level), _) => level.to_string(),
        (None, Some(f)) if tracing_subscriber::EnvFilter::try_new(f).is_ok() => f.to_string(),
        _ => "info".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn lambdas_level_wins_then_rust_log_then_info() {
        assert_eq!(filter(Some("DEBUG"), Some("warn")), "debug");
        assert_eq!(filter(Some("FATAL"), None), "error");
        assert_eq!(filter(Some("warn"), None), "warn");
        assert_eq!(
            filter(None, Some("gateway_lambda=debug,info")),
            "gateway_lambda=debug,info"
        );
        assert_eq!(
            filter(Some("LOUD"), Some("error")),
            "error",
            "an unknown Lambda level falls to RUST_LOG"
        );
        assert_eq!(
            filter(None, Some("=[")),
            "info",
            "an unreadable RUST_LOG falls to info"
        );
        assert_eq!(filter(None, None), "info");
        assert_eq!(filter(Some(" "), Some("")), "info");
    }
}
