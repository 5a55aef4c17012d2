//! Contexts: named gateways, each with where its token comes from, kept in a
//! YAML file (`~/.config/gatewayctl/config.yaml`, or `GATEWAYCTL_CONFIG`), and
//! the resolution of flags, environment and contexts into one connection.
//!
//! A context names a token file rather than holding a token; a token is stored
//! only when the operator passes one explicitly with `--token`.

use crate::api::{check_base_url, Conn, TokenSource};
use crate::cli::ConnArgs;
use crate::duration::printable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    /// The context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One gateway and its token source.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    /// The gateway's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// A file holding the token (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// A token, only when given explicitly with `config set-context --token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for Context {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("server", &self.server)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Context {
    fn token_source(&self) -> Option<TokenSource> {
        match (&self.token_file, &self.token) {
            (Some(f), _) => Some(TokenSource::File(f.clone())),
            (None, Some(t)) => Some(TokenSource::Given(t.clone())),
            (None, None) => None,
        }
    }
}

/// Where the config file is: `GATEWAYCTL_CONFIG`, else `$XDG_CONFIG_HOME/gatewayctl/config.yaml`,
/// else `$HOME/.config/gatewayctl/config.yaml`.
pub fn path(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = set("GATEWAYCTL_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match (set("XDG_CONFIG_HOME"), set("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => Path::new(&h).join(".config"),
        (None, None) => return Err("no config file: set GATEWAYCTL_CONFIG or HOME".into()),
    };
    Ok(base.join("gatewayctl").join("config.yaml"))
}

/// Reads the config file; a missing file is an empty config.
pub fn load(path: &Path) -> Result<ConfigFile, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_norway::from_str(&text).map_err(|e| format!("{} is not a gatewayctl config: {e}", path.display()))
}

/// Writes the config file readable by its owner only, replacing it whole.
pub fn save(path: &Path, config: &ConfigFile) -> Result<(), String> {
    let text = serde_norway::to_string(config).map_err(|e| format!("cannot write the config: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("yaml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |file: &mut std::fs::File| std::io::Write::write_all(file, text.as_bytes());
    options
        .open(&tmp)
        .and_then(|mut f| write(&mut f))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl ConfigFile {
    /// Creates or updates a context from the command line's `--server`, `--token-file` and `--token`.
    /// Returns warnings for the operator.
    pub fn set_context(&mut self, name: &str, flags: &ConnArgs, cwd: &Path) -> Result<Vec<String>, String> {
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("context name `{}` must be non-empty, without spaces", printable(name)));
        }
        if flags.server.is_none() && flags.token_file.is_none() && flags.token.is_none() {
            return Err("give the context --server URL and --token-file PATH (or --token TOKEN)".into());
        }
        let mut warnings = Vec::new();
        let ctx = self.contexts.entry(name.to_string()).or_default();
        if let Some(s) = &flags.server {
            ctx.server = Some(check_base_url(s.trim())?);
        }
        if let Some(f) = &flags.token_file {
            // Relative paths would change meaning with the working directory.
            let p = cwd.join(f);
            if !p.is_file() {
                warnings.push(format!("{} does not exist yet", p.display()));
            }
            ctx.token_file = Some(p.to_string_lossy().into_owned());
            ctx.token = None;
        }
        if let Some(t) = &flags.token {
            ctx.token = Some(t.trim().to_string());
            ctx.token_file = None;
            warnings.push("the token is stored in plain form in the config file; prefer --token-file".into());
        }
        if self.current_context.is_none() {
            self.current_context = Some(name.to_string());
        }
        Ok(warnings)
    }

    /// Makes `name` the current context.
    pub fn use_context(&mut self, name: &str) -> Result<(), String> {
        if !self.contexts.contains_key(name) {
            return Err(self.no_such(name));
        }
        self.current_context = Some(name.to_string());
        Ok(())
    }

    /// Removes a context (and its being current).
    pub fn delete_context(&mut self, name: &str) -> Result<(), String> {
        self.contexts.remove(name).ok_or_else(|| self.no_such(name))?;
        if self.current_context.as_deref() == Some(name) {
            self.current_context = None;
        }
        Ok(())
    }

    fn no_such(&self, name: &str) -> String {
        let known: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
        if known.is_empty() {
            format!("no context `{}`: there are none yet (gatewayctl config set-context NAME --server URL --token-file PATH)", printable(name))
        } else {
            format!("no context `{}` (contexts: {})", printable(name), known.join(", "))
        }
    }

    fn context(&self, name: &str) -> Result<&Context, String> {
        self.contexts.get(name).ok_or_else(|| self.no_such(name))
    }
}

/// The same gateway, whatever the spelling (`https://GW/` and `https://gw`).
fn same_server(a: &str, b: &str) -> bool {
    match (check_base_url(a.trim()), check_base_url(b.trim())) {
        (Ok(a), Ok(b)) => a.eq_ignore_ascii_case(&b),
        _ => false,
    }
}

/// Resolves where to connect, first found wins:
/// server: `--server`, the `--context`'s, `GATEWAY_URL`, the current context's;
/// token: `--token`/`--token-file`, the `--context`'s, `GATEWAY_TOKEN`, the current context's.
/// The current context's token is sent only to that context's own server, so a `--server`
/// or `GATEWAY_URL` pointing elsewhere never receives it. The config file is read only when needed.
pub fn resolve(flags: &ConnArgs, env: &dyn Fn(&str) -> Option<String>, config: &dyn Fn() -> Result<ConfigFile, String>) -> Result<Conn, String> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let flag_token = match (&flags.token, &flags.token_file) {
        (Some(_), Some(_)) => return Err("give the token once: --token or --token-file".into()),
        (Some(t), None) => Some(TokenSource::Given(t.clone())),
        (None, Some(f)) => Some(TokenSource::File(f.clone())),
        (None, None) => None,
    };
    let env_server = set("GATEWAY_URL");
    let env_token = set("GATEWAY_TOKEN").map(TokenSource::Given);
    let needs_file = flags.context.is_some() || (flags.server.is_none() && env_server.is_none()) || (flag_token.is_none() && env_token.is_none());
    let file = if needs_file { config()? } else { ConfigFile::default() };
    let explicit = flags.context.as_deref().map(|n| file.context(n)).transpose()?;
    let current = match (&flags.context, &file.current_context) {
        (None, Some(n)) => Some((n.as_str(), file.context(n).map_err(|e| format!("the current context: {e}"))?)),
        _ => None,
    };
    let server = flags
        .server
        .clone()
        .or_else(|| explicit.and_then(|c| c.server.clone()))
        .or(env_server)
        .or_else(|| current.and_then(|(_, c)| c.server.clone()))
        .ok_or("no gateway URL: pass --server https://…, set GATEWAY_URL, or make a context (gatewayctl config set-context NAME --server URL --token-file PATH)")?;
    let from_current = || -> Result<Option<TokenSource>, String> {
        let Some((name, ctx)) = current else { return Ok(None) };
        let Some(source) = ctx.token_source() else { return Ok(None) };
        match &ctx.server {
            Some(own) if same_server(own, &server) => Ok(Some(source)),
            _ => Err(format!(
                "no token for {}: the current context `{}` holds a token for {}, not this server; pass --token-file (or set GATEWAY_TOKEN)",
                printable(&server),
                printable(name),
                ctx.server.as_deref().map(printable).unwrap_or_else(|| "no server".into())
            )),
        }
    };
    let token = match flag_token.or_else(|| explicit.and_then(Context::token_source)).or(env_token) {
        Some(t) => t,
        None => from_current()?.ok_or("no token: pass --token-file (or --token), set GATEWAY_TOKEN, or give the context a --token-file")?,
    };
    Ok(Conn { server, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn flags(server: Option<&str>, token_file: Option<&str>, context: Option<&str>) -> ConnArgs {
        ConnArgs { server: server.map(String::from), token: None, token_file: token_file.map(String::from), context: context.map(String::from) }
    }

    fn file() -> ConfigFile {
        let mut f = ConfigFile::default();
        f.set_context("prod", &flags(Some("https://gw.example.com/"), Some("/etc/prod.token"), None), Path::new("/")).unwrap();
        f.set_context("dev", &flags(Some("http://localhost:8787"), Some("dev.token"), None), Path::new("/home/me")).unwrap();
        f
    }

    #[test]
    fn contexts_are_set_used_and_deleted() {
        let mut f = file();
        assert_eq!(f.current_context.as_deref(), Some("prod"), "the first context becomes current");
        assert_eq!(f.contexts["prod"].server.as_deref(), Some("https://gw.example.com"));
        assert_eq!(f.contexts["dev"].token_file.as_deref(), Some("/home/me/dev.token"), "token files are kept as absolute paths");
        f.use_context("dev").unwrap();
        assert_eq!(f.current_context.as_deref(), Some("dev"));
        assert!(f.use_context("staging").unwrap_err().contains("contexts: dev, prod"));
        // An explicit token replaces the file, with a warning.
        let w = f.set_context("dev", &ConnArgs { token: Some("a.b.c".into()), ..Default::default() }, Path::new("/")).unwrap();
        assert!(w.iter().any(|w| w.contains("plain form")));
        assert_eq!((f.contexts["dev"].token_file.as_deref(), f.contexts["dev"].token.as_deref()), (None, Some("a.b.c")));
        assert!(!format!("{f:?}").contains("a.b.c"));
        assert!(f.set_context("x", &ConnArgs::default(), Path::new("/")).is_err());
        assert!(f.set_context("y", &flags(Some("http://gw.example.com"), None, None), Path::new("/")).unwrap_err().contains("in clear"));
        f.delete_context("dev").unwrap();
        assert_eq!(f.current_context, None);
    }

    #[test]
    fn the_file_round_trips_and_is_private() {
        let dir = std::env::temp_dir().join(format!("gatewayctl-config-{}", std::process::id()));
        let p = dir.join("sub").join("config.yaml");
        assert_eq!(load(&p).unwrap(), ConfigFile::default(), "a missing file is an empty config");
        save(&p, &file()).unwrap();
        assert_eq!(load(&p).unwrap(), file());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("current-context: prod") && text.contains("token-file: /etc/prod.token"), "{text}");
        #[cfg(unix)]
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions()) & 0o777, 0o600);
        std::fs::write(&p, "contexts: [1, 2]").unwrap();
        assert!(load(&p).unwrap_err().contains("is not a gatewayctl config"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_then_context_then_environment_then_current_context() {
        let env_map = HashMap::from([("GATEWAY_URL", "https://env.example.com"), ("GATEWAY_TOKEN", "env.tok.en")]);
        let env = |k: &str| env_map.get(k).map(|s| s.to_string());
        let none = |_: &str| None;
        let cfg = || Ok(file());
        let given = |t: &str| TokenSource::Given(t.into());
        // The environment beats the current context.
        let c = resolve(&ConnArgs::default(), &env, &cfg).unwrap();
        assert_eq!((c.server.as_str(), &c.token), ("https://env.example.com", &given("env.tok.en")));
        // The current context when nothing else is set.
        let c = resolve(&ConnArgs::default(), &none, &cfg).unwrap();
        assert_eq!((c.server.as_str(), &c.token), ("https://gw.example.com", &TokenSource::File("/etc/prod.token".into())));
        // An explicit context beats the environment.
        let c = resolve(&flags(None, None, Some("dev")), &env, &cfg).unwrap();
        assert_eq!((c.server.as_str(), &c.token), ("http://localhost:8787", &TokenSource::File("/home/me/dev.token".into())));
        // Flags beat everything.
        let c = resolve(&flags(Some("https://flag.example.com"), Some("/f"), Some("dev")), &env, &cfg).unwrap();
        assert_eq!((c.server.as_str(), &c.token), ("https://flag.example.com", &TokenSource::File("/f".into())));
        assert!(resolve(&flags(None, None, Some("nope")), &env, &cfg).unwrap_err().contains("no context `nope`"));
    }

    #[test]
    fn the_current_contexts_token_goes_only_to_its_server() {
        let cfg = || Ok(file());
        let e = resolve(&flags(Some("https://elsewhere.example.com"), None, None), &|_| None, &cfg).unwrap_err();
        assert!(e.contains("holds a token for https://gw.example.com"), "{e}");
        // The same server spelt differently is the same.
        assert!(resolve(&flags(Some("HTTPS://gw.example.com/"), None, None), &|_| None, &cfg).is_ok());
        let empty = || Ok(ConfigFile::default());
        assert!(resolve(&ConnArgs::default(), &|_| None, &empty).unwrap_err().contains("no gateway URL"));
        assert!(resolve(&flags(Some("https://gw"), None, None), &|_| None, &empty).unwrap_err().contains("no token"));
    }

    #[test]
    fn the_file_is_not_read_when_flags_and_environment_say_it_all() {
        let broken = || Err("broken".to_string());
        let c = resolve(&ConnArgs { server: Some("https://gw".into()), token: Some("a.b.c".into()), ..Default::default() }, &|_| None, &broken).unwrap();
        assert_eq!(c.server, "https://gw");
        assert!(resolve(&ConnArgs::default(), &|_| None, &broken).unwrap_err().contains("broken"));
        assert_eq!(path(&|k| (k == "GATEWAYCTL_CONFIG").then(|| "/x/c.yaml".into())).unwrap(), PathBuf::from("/x/c.yaml"));
        assert_eq!(path(&|k| (k == "HOME").then(|| "/home/me".into())).unwrap(), PathBuf::from("/home/me/.config/gatewayctl/config.yaml"));
    }
}
