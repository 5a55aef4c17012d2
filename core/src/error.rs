//! The failures a caller can see, and the one place that maps them to a status,
//! an OpenAI-shaped JSON body and a stable `code`.

use http::StatusCode;
use serde::Serialize;
use std::fmt;

/// Every failure the gateway reports to a client or an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A malformed admin request; `field` names what is wrong.
    BadRequest { field: String, message: String },
    /// A data-plane request the gateway will not interpret (bad path encoding, dot segments).
    InvalidRequest(String),
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// The token is not one the gateway accepts; the reason is kept short and generic.
    InvalidToken(&'static str),
    /// The token's `exp` has passed.
    TokenExpired,
    /// The token's `nbf` or `iat` is in the future.
    TokenNotYetValid,
    /// The token's `jti` was revoked.
    TokenRevoked,
    /// A valid token without access to this route or call.
    Forbidden(String),
    /// A browser registering a service worker from a proxied script (`Service-Worker: script`).
    ServiceWorkerRefused,
    /// No such route (also said to unauthenticated callers), or no such admin object.
    NotFound(String),
    /// Under `/v1/…`: no route serves this model, or the caller may not use it (the same
    /// answer, so a caller never learns that a model it may not use exists). OpenAI's shape.
    ModelNotFound(String),
    /// The object exists and the write would clobber what another owner manages.
    Conflict(String),
    /// Method not allowed on an admin path.
    MethodNotAllowed,
    /// The request body is over the route's limit.
    PayloadTooLarge { limit: u64 },
    /// Request headers over the limits.
    HeadersTooLarge(String),
    /// The URL (path and query) is over the limit.
    UriTooLong { limit: usize },
    /// The token (or token on this route) is over its requests-per-minute limit.
    RateLimited { limit: u32, retry_after: u64 },
    /// A token budget that applies ([`crate::budget`]) is spent for its `window` (`minute`,
    /// `day`, `month`) until `retry_after` seconds from now.
    TokenBudgetExceeded { limit: u64, window: &'static str, retry_after: u64 },
    /// A plain-HTTP request to a gateway that only answers HTTPS.
    HttpsRequired,
    /// Every endpoint failed to connect.
    BadGateway,
    /// The route has no live endpoint.
    NoLiveEndpoint,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// An identity provider's keys could not be fetched (and none are cached).
    IdentityProviderUnavailable(String),
    /// The gateway's store cannot be read (timed out, unreachable, throttled) and no answer
    /// kept within `GATEWAY_STALE_IF_ERROR_SECONDS` can stand in ([`crate::cache`]). The
    /// detail is logged, never shown.
    StoreUnavailable(String),
    /// Something in the gateway itself failed (misconfiguration, a value that does not decode).
    Internal(String),
}

/// `Retry-After` (seconds) of [`Error::StoreUnavailable`].
pub const STORE_RETRY_AFTER_SECONDS: u64 = 5;

/// The JSON body of every error response, in OpenAI's shape so SDK clients show the message.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The wrapped error.
    pub error: ErrorDetail<'a>,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error family (`authentication_error`, `invalid_request_error`, ...).
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Stable machine-readable code.
    pub code: &'a str,
    /// The request field at fault, for 400s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<&'a str>,
}

impl Error {
    /// Shorthand for a 400 naming the field at fault.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadRequest { field: field.into(), message: message.into() }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            BadRequest { .. } | InvalidRequest(_) => StatusCode::BAD_REQUEST,
            MissingToken | InvalidToken(_) | TokenExpired | TokenNotYetValid | TokenRevoked => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden(_) | ServiceWorkerRefused => StatusCode::FORBIDDEN,
            NotFound(_) | ModelNotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict(_) => StatusCode::CONFLICT,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            RateLimited { .. } | TokenBudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpsRequired => StatusCode::FORBIDDEN,
            BadGateway => StatusCode::BAD_GATEWAY,
            NoLiveEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            IdentityProviderUnavailable(_) | StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `code` of the JSON body.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BadRequest { .. } => "invalid_field",
            InvalidRequest(_) => "invalid_request",
            MissingToken => "missing_token",
            InvalidToken(_) => "invalid_token",
            TokenExpired => "token_expired",
            TokenNotYetValid => "token_not_yet_valid",
            TokenRevoked => "token_revoked",
            Forbidden(_) => "forbidden",
            ServiceWorkerRefused => "service_worker_refused",
            NotFound(_) => "not_found",
            // OpenAI's own code and type for an unknown or inaccessible model.
            ModelNotFound(_) => "model_not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict(_) => "conflict",
            PayloadTooLarge { .. } => "body_too_large",
            HeadersTooLarge(_) => "headers_too_large",
            UriTooLong { .. } => "url_too_long",
            // OpenAI's own code, so SDKs and dashboards recognise it.
            RateLimited { .. } | TokenBudgetExceeded { .. } => "rate_limit_exceeded",
            HttpsRequired => "https_required",
            BadGateway => "upstream_unreachable",
            NoLiveEndpoint => "no_live_endpoint",
            GatewayTimeout => "upstream_timeout",
            IdentityProviderUnavailable(_) => "identity_provider_unavailable",
            StoreUnavailable(_) => "store_unavailable",
            Internal(_) => "internal_error",
        }
    }

    fn kind(&self) -> &'static str {
        use Error::*;
        match self {
            MissingToken | InvalidToken(_) | TokenExpired | TokenNotYetValid | TokenRevoked => {
                "authentication_error"
            }
            Forbidden(_) | ServiceWorkerRefused => "permission_error",
            NotFound(_) => "not_found_error",
            BadRequest { .. } | InvalidRequest(_) | ModelNotFound(_) | MethodNotAllowed | PayloadTooLarge { .. }
            | HeadersTooLarge(_) | UriTooLong { .. } | HttpsRequired => "invalid_request_error",
            // OpenAI's types for request-rate and token limits.
            RateLimited { .. } => "requests",
            TokenBudgetExceeded { .. } => "tokens",
            Conflict(_) => "conflict_error",
            BadGateway | NoLiveEndpoint | GatewayTimeout | IdentityProviderUnavailable(_) | StoreUnavailable(_) | Internal(_) => "api_error",
        }
    }

    /// Headers that must accompany this error (`WWW-Authenticate` on 401s).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        if self.status() == StatusCode::UNAUTHORIZED {
            &[("www-authenticate", "Bearer error=\"invalid_token\"")]
        } else {
            &[]
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> Vec<u8> {
        let param = match self {
            Error::BadRequest { field, .. } => Some(field.as_str()),
            Error::ModelNotFound(_) => Some("model"),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail { message: self.to_string(), kind: self.kind(), code: self.code(), param },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
    }

    /// Status, headers and body, ready for an adapter to send.
    pub fn into_response(&self) -> http::Response<Vec<u8>> {
        let mut res = http::Response::new(self.body());
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        for (name, value) in self.extra_headers() {
            headers.insert(*name, http::HeaderValue::from_static(value));
        }
        if let Error::StoreUnavailable(_) = self {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(STORE_RETRY_AFTER_SECONDS));
        }
        if let Error::TokenBudgetExceeded { retry_after, limit, .. } = self {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(*retry_after));
            headers.insert("x-ratelimit-limit-tokens", http::HeaderValue::from(*limit));
            headers.insert("x-ratelimit-remaining-tokens", http::HeaderValue::from(0u32));
            if let Ok(v) = http::HeaderValue::from_str(&crate::ratelimit::duration(retry_after * 1000)) {
                headers.insert("x-ratelimit-reset-tokens", v);
            }
        }
        if let Error::RateLimited { retry_after, limit } = self {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(*retry_after));
            // OpenAI's rate-limit headers, on the refusal too: nothing left until `retry_after`.
            headers.insert("x-ratelimit-limit-requests", http::HeaderValue::from(*limit));
            headers.insert("x-ratelimit-remaining-requests", http::HeaderValue::from(0u32));
            if let Ok(v) = http::HeaderValue::from_str(&crate::ratelimit::duration(retry_after * 1000)) {
                headers.insert("x-ratelimit-reset-requests", v);
            }
        }
        res
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            BadRequest { field, message } => write!(f, "invalid `{field}`: {message}"),
            InvalidRequest(m) => write!(f, "invalid request: {m}"),
            MissingToken => f.write_str("missing bearer token"),
            InvalidToken(why) => write!(f, "invalid token: {why}"),
            TokenExpired => f.write_str("token expired"),
            TokenNotYetValid => f.write_str("token not yet valid"),
            TokenRevoked => f.write_str("token revoked"),
            Forbidden(m) => f.write_str(m),
            ServiceWorkerRefused => f.write_str("proxied content cannot register a service worker"),
            NotFound(m) => f.write_str(m),
            ModelNotFound(m) => write!(f, "The model `{m}` does not exist or you do not have access to it."),
            MethodNotAllowed => f.write_str("method not allowed"),
            Conflict(m) => f.write_str(m),
            PayloadTooLarge { limit } => write!(f, "request body over the route's limit of {limit} bytes"),
            HeadersTooLarge(m) => f.write_str(m),
            UriTooLong { limit } => write!(f, "URL (path and query) over {limit} bytes"),
            RateLimited { limit, retry_after } => {
                write!(f, "rate limit of {limit} requests per minute reached; retry in {retry_after} s")
            }
            TokenBudgetExceeded { limit, window, retry_after } => {
                write!(f, "token budget of {limit} tokens per {window} used up; retry in {retry_after} s")
            }
            HttpsRequired => f.write_str("this gateway only answers HTTPS"),
            BadGateway => f.write_str("no endpoint of this route could be reached"),
            NoLiveEndpoint => f.write_str("this route has no live endpoint"),
            GatewayTimeout => f.write_str("the upstream did not answer in time"),
            IdentityProviderUnavailable(name) => write!(f, "the keys of identity provider `{name}` cannot be fetched; try again shortly"),
            StoreUnavailable(_) => f.write_str("the gateway's state store cannot be reached; try again shortly"),
            // Internal details are logged by the adapter, not shown to callers.
            Internal(_) => f.write_str("internal gateway error"),
        }
    }
}

impl std::error::Error for Error {}

/// Result with the gateway's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_token_has_openai_shape_and_www_authenticate() {
        let res = Error::TokenExpired.into_response();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["error"]["message"], "token expired");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "token_expired");
    }

    #[test]
    fn bad_request_names_the_field() {
        let v: serde_json::Value =
            serde_json::from_slice(&Error::bad_request("ttl_seconds", "too long").body()).unwrap();
        assert_eq!(v["error"]["param"], "ttl_seconds");
        assert!(v["error"]["message"].as_str().unwrap().contains("ttl_seconds"));
    }

    #[test]
    fn rate_limited_is_429_with_retry_after_in_openai_shape() {
        let res = Error::RateLimited { limit: 10, retry_after: 7 }.into_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "7");
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert!(v["error"]["message"].as_str().unwrap().contains("10 requests per minute"));
    }

    #[test]
    fn internal_details_are_not_shown() {
        let body = String::from_utf8(Error::Internal("kv at 10.0.0.1 down".into()).body()).unwrap();
        assert!(!body.contains("10.0.0.1"));
    }

    #[test]
    fn store_unavailable_is_503_api_error_with_retry_after_and_no_detail() {
        let res = Error::StoreUnavailable("dynamodb get: TimeoutError at 10.0.0.1".into()).into_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], STORE_RETRY_AFTER_SECONDS.to_string().as_str());
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["error"]["code"], "store_unavailable");
        assert_eq!(v["error"]["type"], "api_error");
        assert!(!v.to_string().contains("10.0.0.1") && !v.to_string().contains("Timeout"));
    }
}
