//! The Lambda's own settings, read once at start in one place: what the function is
//! (`GATEWAY_MODE`), where its state is (`GATEWAY_TABLE`), its CloudWatch namespace
//! (`GATEWAY_EMF_NAMESPACE`) and whether it hooks the runtime's shutdown
//! (`GATEWAY_NO_SHUTDOWN_HOOK`). The gateway's rules are in [`gateway_core::Config`];
//! these only say how this deployment runs. A bad one is fatal at start, with its name.

use gateway_core::config::ConfigError;

/// What one instance of the function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The gateway (unset `GATEWAY_MODE`).
    Gateway,
    /// One round of health probes per scheduled event (`GATEWAY_MODE=probe`).
    Probe,
}

/// The Lambda adapter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `GATEWAY_MODE`.
    pub mode: Mode,
    /// `GATEWAY_TABLE`: the DynamoDB table; required by every mode ([`Settings::table`]).
    pub table: Option<String>,
    /// `GATEWAY_EMF_NAMESPACE` ([`crate::emf::namespace`]); `None` writes no EMF lines.
    pub emf_namespace: Option<String>,
    /// False when `GATEWAY_NO_SHUTDOWN_HOOK` is set (runtimes without the Extensions API).
    pub shutdown_hook: bool,
}

impl Settings {
    /// Reads the settings through `lookup` (the environment).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mode = match lookup("GATEWAY_MODE").as_deref() {
            None | Some("") => Mode::Gateway,
            Some("probe") => Mode::Probe,
            Some(_) => return Err(ConfigError { setting: "GATEWAY_MODE", message: "must be `probe` or unset".into() }),
        };
        Ok(Settings {
            mode,
            table: lookup("GATEWAY_TABLE").filter(|t| !t.is_empty()),
            emf_namespace: crate::emf::namespace(lookup),
            shutdown_hook: lookup("GATEWAY_NO_SHUTDOWN_HOOK").is_none(),
        })
    }

    /// The same, from the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(&|k| std::env::var(k).ok())
    }

    /// `GATEWAY_TABLE`, which every mode needs.
    pub fn table(&self) -> Result<String, ConfigError> {
        self.table.clone().ok_or_else(|| ConfigError { setting: "GATEWAY_TABLE", message: "is required".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(&|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn each_setting_is_read_and_a_bad_one_is_named() {
        let s = from(&[("GATEWAY_TABLE", "gw"), ("GATEWAY_MODE", "probe"), ("GATEWAY_NO_SHUTDOWN_HOOK", "1")]).unwrap();
        assert_eq!((s.mode, s.table(), s.shutdown_hook), (Mode::Probe, Ok("gw".to_string()), false));
        assert_eq!(s.emf_namespace.as_deref(), Some(crate::emf::DEFAULT_NAMESPACE));
        let d = from(&[("GATEWAY_EMF_NAMESPACE", "")]).unwrap();
        assert_eq!((d.mode, d.emf_namespace.clone(), d.shutdown_hook), (Mode::Gateway, None, true));
        assert_eq!(d.table().unwrap_err().setting, "GATEWAY_TABLE");
        let bad = from(&[("GATEWAY_MODE", "prober")]).unwrap_err();
        assert_eq!(bad.setting, "GATEWAY_MODE");
    }
}
