//! The Model Endpoints dashboard: one page, its script (an entry module and the
//! modules it imports) and its style sheet, compiled into the gateway so it works
//! offline and needs no CDN. The files are public (the page asks for an admin
//! token and sends it with each call to the admin API); a strict
//! Content-Security-Policy allows nothing but these files and same-origin calls.

use crate::admin::Document;

/// The dashboard's policy: no inline script or style, no other origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HEADERS: &[(&str, &str)] =
    &[("content-security-policy", CSP), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer"), ("cross-origin-opener-policy", "same-origin")];

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const INDEX: &str = include_str!("dashboard/index.html");
/// The entry module, which imports the modules below by relative path (`./js/dom.js`).
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// The script's modules, by name: `{name}` is served at `/_gateway/dashboard/js/{name}.js`.
const MODULES: &[(&str, &str)] = &[
    ("accounts", include_str!("dashboard/js/accounts.js")),
    ("api", include_str!("dashboard/js/api.js")),
    ("audit", include_str!("dashboard/js/audit.js")),
    ("budgets", include_str!("dashboard/js/budgets.js")),
    ("charts", include_str!("dashboard/js/charts.js")),
    ("csv", include_str!("dashboard/js/csv.js")),
    ("dom", include_str!("dashboard/js/dom.js")),
    ("format", include_str!("dashboard/js/format.js")),
    ("models", include_str!("dashboard/js/models.js")),
    ("partners", include_str!("dashboard/js/partners.js")),
    ("principals", include_str!("dashboard/js/principals.js")),
    ("render", include_str!("dashboard/js/render.js")),
    ("routes", include_str!("dashboard/js/routes.js")),
    ("session", include_str!("dashboard/js/session.js")),
    ("state", include_str!("dashboard/js/state.js")),
    ("tokens", include_str!("dashboard/js/tokens.js")),
];

/// The file at `/_gateway/{segments}`, if it is one of the dashboard's.
pub fn file(segments: &[&str]) -> Option<Document> {
    let (content_type, text) = match segments {
        ["dashboard"] => ("text/html; charset=utf-8", INDEX),
        ["dashboard", "app.js"] => (JAVASCRIPT, SCRIPT),
        ["dashboard", "app.css"] => ("text/css; charset=utf-8", STYLE),
        ["dashboard", "js", file_name] => (JAVASCRIPT, module(file_name)?),
        _ => return None,
    };
    Some(Document { content_type, bytes: text.as_bytes().to_vec(), headers: HEADERS })
}

/// The module whose file name is `file_name` (`dom.js`), if it is one of the dashboard's.
fn module(file_name: &str) -> Option<&'static str> {
    let name = file_name.strip_suffix(".js")?;
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script: the entry module, then every module it can import.
    fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
        [("app", SCRIPT)].into_iter().chain(MODULES.iter().copied())
    }

    #[test]
    fn the_page_and_its_files_are_served_with_a_strict_policy() {
        for (segs, ty) in [(&["dashboard"][..], "text/html"), (&["dashboard", "app.js"][..], "text/javascript"), (&["dashboard", "app.css"][..], "text/css")] {
            let d = file(segs).expect("served");
            assert!(d.content_type.starts_with(ty));
            assert!(d.headers.iter().any(|(n, v)| *n == "content-security-policy" && v.contains("script-src 'self'") && !v.contains("unsafe")));
        }
        for (name, text) in MODULES {
            let file_name = format!("{name}.js");
            let d = file(&["dashboard", "js", file_name.as_str()]).expect("module served");
            assert!(d.content_type.starts_with("text/javascript"), "{file_name}: {}", d.content_type);
            assert_eq!(d.bytes, text.as_bytes());
            assert!(d.headers.iter().any(|(n, v)| *n == "content-security-policy" && v.contains("script-src 'self'") && !v.contains("unsafe")));
        }
        assert!(file(&["dashboard", "..", "admin"]).is_none());
        assert!(file(&["dashboard", "other.js"]).is_none());
        assert!(file(&["dashboard", "js", "..", "app.js"]).is_none());
        assert!(file(&["dashboard", "js", ".."]).is_none());
        assert!(file(&["dashboard", "js", "app.js"]).is_none());
        assert!(file(&["dashboard", "js", "other.js"]).is_none());
        assert!(file(&["dashboard", "js", "dom"]).is_none(), "a module only by its file name");
        assert!(file(&["dashboard", "js", "dom.js", "x"]).is_none());
        assert!(file(&["dashboard", "js"]).is_none());
    }

    #[test]
    fn every_module_file_is_served_and_every_import_names_one() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard/js");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("the modules' folder")
            .map(|e| e.expect("folder entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".js"))
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = MODULES.iter().map(|(n, _)| format!("{n}.js")).collect();
        served.sort();
        assert_eq!(on_disk, served, "MODULES lists every file in src/dashboard/js");
        // A module the browser cannot fetch breaks the whole page: every import must name one served.
        for (name, text) in scripts() {
            let prefix = if name == "app" { "./js/" } else { "./" };
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line.split_once(" from '").and_then(|(_, rest)| rest.split_once('\'')).map(|(spec, _)| spec).unwrap_or(line);
                let known = spec.strip_prefix(prefix).and_then(module).is_some();
                assert!(known, "{name}.js: {line:?} imports no served module");
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_no_other_origin() {
        let lower = INDEX.to_ascii_lowercase();
        assert!(!lower.contains("<script>") && !lower.contains("style="), "inline code is blocked by the CSP");
        let handler = lower.split(|c: char| c.is_ascii_whitespace()).any(|w| {
            w.strip_prefix("on").and_then(|rest| rest.split_once('=')).is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()))
        });
        assert!(!handler, "no inline event handlers");
        for text in [INDEX, STYLE].into_iter().chain(scripts().map(|(_, text)| text)) {
            // XML namespace names (SVG) are identifiers, not fetched.
            let text = text.replace("http://www.w3.org/", "");
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"), "no other origin");
        }
        for (name, text) in scripts() {
            assert!(!text.contains("innerHTML") && !text.contains("eval("), "{name}.js: DOM is built from text, never parsed from data");
        }
    }
}
