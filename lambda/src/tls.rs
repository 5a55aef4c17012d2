//! TLS to the model servers: a private CA and a client certificate.
//!
//! Model servers on a private network usually present certificates from an internal CA, and
//! often ask for a client certificate. `GATEWAY_UPSTREAM_CA_BUNDLE` (PEM, one or more CA
//! certificates) is trusted besides the public roots; `GATEWAY_UPSTREAM_CLIENT_CERT` and
//! `GATEWAY_UPSTREAM_CLIENT_KEY` (PEM) are presented when a server asks. On AWS all three
//! come from the Secrets Manager secret ([`crate::secrets`]). They apply to every upstream
//! the Lambda reaches: proxied requests, health probes and `/metrics` readings.

/// The CA bundle setting.
pub const CA_BUNDLE: &str = "GATEWAY_UPSTREAM_CA_BUNDLE";
/// The client certificate setting (PEM; the chain, leaf first).
pub const CLIENT_CERT: &str = "GATEWAY_UPSTREAM_CLIENT_CERT";
/// The client key setting (PEM; PKCS#8, PKCS#1 or SEC1).
pub const CLIENT_KEY: &str = "GATEWAY_UPSTREAM_CLIENT_KEY";

/// What the upstream clients trust and present beyond the defaults.
#[derive(Clone, Default)]
pub struct UpstreamTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").field("extra_roots", &self.roots.len()).field("client_certificate", &self.identity.is_some()).finish()
    }
}

/// A setting that is wrong, by name; never its value (core's configuration error).
pub type TlsSettingError = gateway_core::config::ConfigError;

fn err(setting: &'static str, message: &str) -> TlsSettingError {
    TlsSettingError { setting, message: message.to_string() }
}

impl UpstreamTls {
    /// Reads the three settings; each must be valid PEM, and the certificate and key come
    /// together or not at all.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<UpstreamTls, TlsSettingError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let roots = match get(CA_BUNDLE) {
            None => Vec::new(),
            Some(pem) => {
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(err(CA_BUNDLE, "must hold PEM certificates (-----BEGIN CERTIFICATE-----)"));
                }
                let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|_| err(CA_BUNDLE, "is not valid PEM"))?;
                // Each must also be a certificate rustls accepts as a trust anchor.
                for root in &roots {
                    reqwest::Client::builder()
                        .add_root_certificate(root.clone())
                        .build()
                        .map_err(|_| err(CA_BUNDLE, "holds a certificate that cannot be a trust anchor"))?;
                }
                roots
            }
        };
        let identity = match (get(CLIENT_CERT), get(CLIENT_KEY)) {
            (None, None) => None,
            (Some(_), None) => return Err(err(CLIENT_KEY, "is required with GATEWAY_UPSTREAM_CLIENT_CERT")),
            (None, Some(_)) => return Err(err(CLIENT_CERT, "is required with GATEWAY_UPSTREAM_CLIENT_KEY")),
            (Some(cert), Some(key)) => {
                if !cert.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(err(CLIENT_CERT, "must hold a PEM certificate chain"));
                }
                let both = format!("{}\n{}\n", cert.trim(), key.trim());
                let id = reqwest::Identity::from_pem(both.as_bytes()).map_err(|_| err(CLIENT_KEY, "is not a PEM private key matching the certificate"))?;
                reqwest::Client::builder()
                    .identity(id.clone())
                    .build()
                    .map_err(|_| err(CLIENT_KEY, "is not a PEM private key matching the certificate"))?;
                Some(id)
            }
        };
        Ok(UpstreamTls { roots, identity })
    }

    /// True when nothing beyond the defaults is set.
    pub fn is_default(&self) -> bool {
        self.roots.is_empty() && self.identity.is_none()
    }

    /// The builder trusting the extra roots and presenting the client certificate.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if let Some(id) = &self.identity {
            builder = builder.identity(id.clone());
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn nothing_set_is_the_default() {
        let tls = UpstreamTls::from_lookup(&|_| None).expect("default");
        assert!(tls.is_default());
    }

    #[test]
    fn bad_values_name_the_setting_and_never_echo_it() {
        let cases: [(&[(&str, String)], &str); 4] = [
            (&[(CA_BUNDLE, "not pem sk-secret".into())], CA_BUNDLE),
            (&[(CLIENT_CERT, "-----BEGIN CERTIFICATE-----".into())], CLIENT_KEY),
            (&[(CLIENT_KEY, "sk-secret".into())], CLIENT_CERT),
            (&[(CLIENT_CERT, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----".into()), (CLIENT_KEY, "sk-secret".into())], CLIENT_KEY),
        ];
        for (pairs, setting) in cases {
            let e = UpstreamTls::from_lookup(&lookup(pairs)).expect_err(setting);
            assert_eq!(e.setting, setting);
            assert!(!e.to_string().contains("sk-secret"), "{e}");
        }
    }
}
