//! Secrets from AWS Secrets Manager, read once per cold start.
//!
//! `GATEWAY_SECRETS_ARN` names one secret whose value is a JSON object of setting names to
//! string values: `GATEWAY_SIGNING_KEYS`, the upstream API keys routes name in
//! `upstream_api_key_secret`, `GATEWAY_ORIGIN_SECRET`, `GATEWAY_UPSTREAM_CA_BUNDLE`,
//! `GATEWAY_UPSTREAM_CLIENT_CERT`, `GATEWAY_UPSTREAM_CLIENT_KEY`. They are read like
//! environment variables and win over them, so none of them needs to be in the function's
//! environment or in Terraform state (`infra/modules/lambda` writes the secret write-only).
//! Values are never logged; names are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The setting that names the secret.
pub const SECRETS_ARN: &str = "GATEWAY_SECRETS_ARN";
/// How long a cold start waits for Secrets Manager.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A secret value is at most 64 KiB (Secrets Manager's own limit).
const MAX_SECRET_BYTES: usize = 65_536;

/// Settings from the secret, by name; `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets(Arc<HashMap<String, String>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Secrets").field(&names).finish()
    }
}

impl Secrets {
    /// The secret's value: a JSON object whose keys are setting names (`[A-Z0-9_]{1,128}`)
    /// and whose values are strings. The error never contains a value.
    pub fn parse(raw: &str) -> Result<Secrets, String> {
        if raw.len() > MAX_SECRET_BYTES {
            return Err("the secret is larger than 64 KiB".into());
        }
        let map: HashMap<String, serde_json::Value> =
            serde_json::from_str(raw).map_err(|e| format!("the secret is not a JSON object of names to strings (line {}, column {})", e.line(), e.column()))?;
        let mut out = HashMap::with_capacity(map.len());
        for (name, value) in map {
            let valid = !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err("the secret's keys must be setting names ([A-Z0-9_]{1,128})".into());
            }
            match value {
                serde_json::Value::String(s) => out.insert(name, s),
                _ => return Err(format!("the secret's `{name}` must be a string")),
            };
        }
        Ok(Secrets(Arc::new(out)))
    }

    /// The setting `name`: the secret's value, else the environment's.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned().or_else(|| std::env::var(name).ok())
    }

    /// Every setting this instance has, as (name, value): the environment's, then the
    /// secret's, which win ([`gateway_core::config::UpstreamSecrets::from_settings`]).
    pub fn all_settings(&self) -> impl Iterator<Item = (String, String)> + '_ {
        // `vars_os`: a variable that is not UTF-8 is skipped (`vars` would panic on it).
        let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        env.chain(self.0.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    /// The names the secret holds.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Reads the secret `GATEWAY_SECRETS_ARN` names, when it names one (`GetSecretValue`, within
/// 10 s); no secret when it is unset. A failure is fatal to the cold start: serving without
/// the signing keys or the upstream CA would only fail later, request by request.
pub async fn load(aws: &aws_config::SdkConfig) -> Result<Secrets, String> {
    let Some(id) = std::env::var(SECRETS_ARN).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
        return Ok(Secrets::default());
    };
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = tokio::time::timeout(FETCH_TIMEOUT, client.get_secret_value().secret_id(&id).send())
        .await
        .map_err(|_| format!("{SECRETS_ARN}: GetSecretValue did not answer in {FETCH_TIMEOUT:?}"))?
        .map_err(|e| format!("{SECRETS_ARN}: GetSecretValue failed: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))?;
    let raw = out.secret_string().ok_or_else(|| format!("{SECRETS_ARN}: the secret has no SecretString"))?;
    Secrets::parse(raw).map_err(|e| format!("{SECRETS_ARN}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_of_names_to_strings() {
        let s = Secrets::parse(r#"{"GATEWAY_SIGNING_KEYS": "[]", "VLLM_API_KEY": "sk-test-value"}"#).expect("parse");
        assert_eq!(s.names(), ["GATEWAY_SIGNING_KEYS", "VLLM_API_KEY"]);
        assert_eq!(s.get("VLLM_API_KEY").as_deref(), Some("sk-test-value"));
        assert!(!format!("{s:?}").contains("sk-test-value"), "Debug shows names only");
    }

    #[test]
    fn anything_else_is_refused_without_echoing_values() {
        for raw in [r#"["x"]"#, r#"{"lower": "sk-leak"}"#, r#"{"A": 1}"#, r#"{"A": {"b": "sk-leak"}}"#, "sk-leak", r#"{"": "sk-leak"}"#] {
            let e = Secrets::parse(raw).expect_err(raw);
            assert!(!e.contains("sk-leak"), "{e}");
        }
        assert!(Secrets::parse(&format!(r#"{{"A": "{}"}}"#, "x".repeat(70_000))).is_err());
    }
}
