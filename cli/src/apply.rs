//! Routes as files: `routes diff -f DIR` and `routes apply -f DIR` compare the
//! `*.json` route files of a directory with the gateway's routes, field by
//! field, and say what to create, change and (with `--prune`) delete.
//!
//! Both sides pass through core's route type before comparing, so defaults the
//! gateway fills in (`enabled`, `timeouts`, …) are not reported as changes.
//! Planning does no I/O; the caller reads the directory and the gateway.

use crate::duration::printable;
use gateway_core::admin::AdminCommand;
use gateway_core::route::Route;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One route file.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteFile {
    /// Where it came from.
    pub path: PathBuf,
    /// The route's name (its `name` field).
    pub name: String,
    /// The body as written: what `apply` sends.
    pub body: Value,
    /// The route as the gateway would hold it.
    normal: Value,
}

/// Reads every `*.json` file of `dir` (not its subdirectories), sorted by file name.
/// Each must be a route object with a `name` that the gateway would accept.
pub fn read_dir(dir: &Path) -> Result<Vec<RouteFile>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "json") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files: Vec<RouteFile> = Vec::new();
    for path in paths {
        let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file = route_file(&path, &text)?;
        if let Some(other) = files.iter().find(|f| f.name == file.name) {
            return Err(format!("{} and {} both describe route `{}`", other.path.display(), path.display(), file.name));
        }
        files.push(file);
    }
    Ok(files)
}

/// Parses one route file, checked as `PUT /_gateway/routes/{name}` checks its body.
pub fn route_file(path: &Path, bytes: &[u8]) -> Result<RouteFile, String> {
    let at = path.display();
    let body: Value = serde_json::from_slice(bytes).map_err(|e| format!("{at} is not JSON (line {}, column {})", e.line(), e.column()))?;
    let name = match body.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(format!("{at}: `name` must be a string")),
        None => return Err(format!("{at}: a route file needs a `name`")),
    };
    let method = http::Method::PUT;
    let cmd = AdminCommand::parse(&method, &["routes".to_string(), name.clone()], None, bytes).map_err(|e| format!("{at}: {}", core_message(e)))?;
    let AdminCommand::PutRoute(route) = cmd else {
        return Err(format!("{at}: not a route"));
    };
    let normal = serde_json::to_value(&route).map_err(|e| format!("{at}: {e}"))?;
    Ok(RouteFile { path: path.to_path_buf(), name, body, normal })
}

fn core_message(e: gateway_core::Error) -> String {
    match e {
        gateway_core::Error::BadRequest { field, message } => format!("invalid `{field}`: {message}"),
        other => other.to_string(),
    }
}

/// A route as the gateway listed it, passed through core's type like the files
/// (kept as listed when it holds fields this build does not know).
fn normal_current(v: &Value) -> Value {
    serde_json::from_value::<Route>(v.clone()).ok().and_then(|r| serde_json::to_value(r).ok()).unwrap_or_else(|| v.clone())
}

/// One line of a field-level diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A field only the gateway has, or its old value.
    Removed(String, String),
    /// A field only the file has, or its new value.
    Added(String, String),
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Line::Removed(path, v) => write!(f, "- {path}: {v}"),
            Line::Added(path, v) => write!(f, "+ {path}: {v}"),
        }
    }
}

/// What to do with one route.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// In the directory, not on the gateway: PUT it.
    Create { name: String, body: Value, lines: Vec<Line> },
    /// In both and different: PUT it.
    Update { name: String, body: Value, lines: Vec<Line> },
    /// In both and the same.
    Unchanged { name: String },
    /// On the gateway only, and `--prune`: DELETE it.
    Delete { name: String },
    /// On the gateway only; kept (no `--prune`, or an owner other than the admin API).
    Kept { name: String, why: &'static str },
}

/// Every route's change, in name order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
}

/// Compares the directory's routes with the gateway's.
pub fn plan(files: &[RouteFile], current: &[Value], prune: bool) -> Plan {
    let current: BTreeMap<String, &Value> = current.iter().filter_map(|r| Some((r.get("name")?.as_str()?.to_string(), r))).collect();
    let mut changes = Vec::new();
    for f in files {
        let change = match current.get(&f.name) {
            None => Change::Create { name: f.name.clone(), body: f.body.clone(), lines: diff(&Value::Null, &f.body) },
            Some(cur) => {
                let lines = diff(&normal_current(cur), &f.normal);
                if lines.is_empty() {
                    Change::Unchanged { name: f.name.clone() }
                } else {
                    Change::Update { name: f.name.clone(), body: f.body.clone(), lines }
                }
            }
        };
        changes.push(change);
    }
    for (name, r) in &current {
        if files.iter().any(|f| &f.name == name) {
            continue;
        }
        let managed = r.get("managed_by").is_some_and(|m| !m.is_null());
        let ephemeral = r.get("expires_at").is_some_and(|m| !m.is_null());
        changes.push(match (prune, managed, ephemeral) {
            (_, true, _) => Change::Kept { name: name.clone(), why: "managed by its owner (managed_by)" },
            (_, _, true) => Change::Kept { name: name.clone(), why: "ephemeral" },
            (true, false, false) => Change::Delete { name: name.clone() },
            (false, false, false) => Change::Kept { name: name.clone(), why: "not in the directory; --prune deletes it" },
        });
    }
    changes.sort_by(|a, b| a.name().cmp(b.name()));
    Plan { changes }
}

impl Change {
    pub fn name(&self) -> &str {
        match self {
            Change::Create { name, .. } | Change::Update { name, .. } | Change::Unchanged { name } | Change::Delete { name } | Change::Kept { name, .. } => name,
        }
    }
}

impl Plan {
    /// True when applying would change the gateway.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| matches!(c, Change::Create { .. } | Change::Update { .. } | Change::Delete { .. }))
    }

    /// `N to create, N to change, N to delete, N unchanged`.
    pub fn summary(&self) -> String {
        let count = |f: fn(&Change) -> bool| self.changes.iter().filter(|c| f(c)).count();
        format!(
            "{} to create, {} to change, {} to delete, {} unchanged",
            count(|c| matches!(c, Change::Create { .. })),
            count(|c| matches!(c, Change::Update { .. })),
            count(|c| matches!(c, Change::Delete { .. })),
            count(|c| matches!(c, Change::Unchanged { .. })),
        )
    }

    /// What `routes diff` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let (head, lines) = match c {
                Change::Create { name, lines, .. } => (format!("+ route {} (new)", printable(name)), lines.as_slice()),
                Change::Update { name, lines, .. } => (format!("~ route {} (changed)", printable(name)), lines.as_slice()),
                Change::Delete { name } => (format!("- route {} (deleted: not in the directory)", printable(name)), &[][..]),
                Change::Kept { name, why } => (format!("  route {} kept: {why}", printable(name)), &[][..]),
                Change::Unchanged { .. } => continue,
            };
            out.push_str(&head);
            out.push('\n');
            for l in lines {
                out.push_str(&format!("    {l}\n"));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

/// Field-level differences from `old` to `new` (`Null` for nothing), in path order.
pub fn diff(old: &Value, new: &Value) -> Vec<Line> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut lines = Vec::new();
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for p in paths {
        match (a.get(p), b.get(p)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    lines.push(Line::Removed(p.clone(), x.to_string()));
                }
                if let Some(y) = y {
                    lines.push(Line::Added(p.clone(), y.to_string()));
                }
            }
        }
    }
    lines
}

/// Leaves of a JSON value by path (`auth.groups`, `endpoints[a].url`): objects are walked, lists of
/// objects with an `id` are keyed by it (so reordering is no change), other lists of objects by
/// index, and lists of plain values are one leaf. `null` leaves are left out: absent and `null` are
/// the same to the gateway.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Null => {}
        Value::Object(o) if !o.is_empty() => {
            for (k, x) in o {
                flatten(&join(k), x, out);
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object) => {
            let ids: Option<Vec<&str>> = a.iter().map(|x| x.get("id").and_then(Value::as_str)).collect();
            let unique = ids.as_ref().is_some_and(|ids| ids.iter().collect::<std::collections::BTreeSet<_>>().len() == ids.len());
            for (i, x) in a.iter().enumerate() {
                let key = match &ids {
                    Some(ids) if unique => format!("{prefix}[{}]", ids[i]),
                    _ => format!("{prefix}[{i}]"),
                };
                flatten(&key, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(body: Value) -> RouteFile {
        route_file(Path::new("r.json"), body.to_string().as_bytes()).unwrap()
    }

    fn route(name: &str, url: &str, groups: &[&str]) -> Value {
        json!({"name": name, "endpoints": [{"id": "a", "url": url}], "auth": {"required": true, "groups": groups}})
    }

    /// The route as the gateway lists it: every default filled in.
    fn listed(body: Value) -> Value {
        file(body).normal
    }

    #[test]
    fn defaults_the_gateway_fills_in_are_no_change() {
        let f = file(route("llama", "http://10.0.1.5:8000", &["ml-team"]));
        let p = plan(&[f], &[listed(route("llama", "http://10.0.1.5:8000", &["ml-team"]))], false);
        assert_eq!(p.changes, vec![Change::Unchanged { name: "llama".into() }]);
        assert!(!p.has_changes());
        assert_eq!(p.render(), "0 to create, 0 to change, 0 to delete, 1 unchanged\n");
    }

    #[test]
    fn changed_fields_are_minus_and_plus_lines() {
        let mut new = route("llama", "http://10.0.1.6:8000", &["ml-team", "partner"]);
        new["rate_limit_rpm"] = json!(60);
        let p = plan(&[file(new.clone())], &[listed(route("llama", "http://10.0.1.5:8000", &["ml-team"]))], false);
        let Change::Update { lines, body, .. } = &p.changes[0] else { panic!("{p:?}") };
        assert_eq!(body, &new, "apply sends the file as written");
        let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                r#"- auth.groups: ["ml-team"]"#,
                r#"+ auth.groups: ["ml-team","partner"]"#,
                r#"- endpoints[a].url: "http://10.0.1.5:8000""#,
                r#"+ endpoints[a].url: "http://10.0.1.6:8000""#,
                "+ rate_limit_rpm: 60",
            ]
        );
        assert!(p.render().starts_with("~ route llama (changed)\n    - auth.groups"), "{}", p.render());
    }

    #[test]
    fn new_routes_show_their_fields_and_others_are_pruned_only_when_asked() {
        let current = [listed(route("old", "http://h:1", &[])), listed(json!({"name": "tf", "endpoints": [{"id": "a", "url": "http://h:1"}], "managed_by": "terraform"}))];
        let files = [file(route("new", "http://h:2", &["g"]))];
        let p = plan(&files, &current, false);
        assert_eq!(p.summary(), "1 to create, 0 to change, 0 to delete, 0 unchanged");
        let text = p.render();
        assert!(text.contains("+ route new (new)\n    + auth.groups: [\"g\"]\n    + auth.required: true\n"), "{text}");
        assert!(text.contains("  route old kept: not in the directory; --prune deletes it"), "{text}");
        let p = plan(&files, &current, true);
        assert_eq!(p.summary(), "1 to create, 0 to change, 1 to delete, 0 unchanged");
        assert!(p.changes.contains(&Change::Delete { name: "old".into() }));
        assert!(p.changes.contains(&Change::Kept { name: "tf".into(), why: "managed by its owner (managed_by)" }), "Terraform's routes are never pruned");
    }

    #[test]
    fn endpoints_are_matched_by_id_not_position() {
        let two = |a: &str, b: &str| json!({"name": "r", "endpoints": [{"id": a, "url": format!("http://{a}:1")}, {"id": b, "url": format!("http://{b}:1")}]});
        assert!(diff(&listed(two("x", "y")), &listed(two("y", "x"))).is_empty());
    }

    #[test]
    fn bad_files_name_the_file_and_field() {
        let e = route_file(Path::new("d/a.json"), b"{\"endpoints\": []}").unwrap_err();
        assert!(e.contains("d/a.json") && e.contains("needs a `name`"), "{e}");
        let e = route_file(Path::new("d/a.json"), b"{\"name\": \"Bad Name\"}").unwrap_err();
        assert!(e.contains("invalid `name`"), "{e}");
        let e = route_file(Path::new("d/a.json"), b"{\"name\": \"ok\", \"colour\": 1}").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        assert!(route_file(Path::new("d/a.json"), b"{not json").unwrap_err().contains("not JSON"));
    }
}
