//! The Model Endpoints dashboard: one page and its script and style sheet,
//! compiled into the gateway so it works offline and needs no CDN. The files
//! are public (the page asks for an admin token and sends it with each call
//! to the admin API); a strict Content-Security-Policy allows nothing but
//! these files and same-origin calls.

use crate::admin::Document;

/// The dashboard's policy: no inline script or style, no other origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HEADERS: &[(&str, &str)] =
    &[("content-security-policy", CSP), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer"), ("cross-origin-opener-policy", "same-origin")];

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// The file at `/_gateway/{segments}`, if it is one of the dashboard's.
pub fn file(segments: &[&str]) -> Option<Document> {
    let (content_type, text) = match segments {
        ["dashboard"] => ("text/html; charset=utf-8", INDEX),
        ["dashboard", "app.js"] => ("text/javascript; charset=utf-8", SCRIPT),
        ["dashboard", "app.css"] => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(Document { content_type, bytes: text.as_bytes().to_vec(), headers: HEADERS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_with_a_strict_policy() {
        for (segs, ty) in [(&["dashboard"][..], "text/html"), (&["dashboard", "app.js"][..], "text/javascript"), (&["dashboard", "app.css"][..], "text/css")] {
            let d = file(segs).expect("served");
            assert!(d.content_type.starts_with(ty));
            assert!(d.headers.iter().any(|(n, v)| *n == "content-security-policy" && v.contains("script-src 'self'") && !v.contains("unsafe")));
        }
        assert!(file(&["dashboard", "..", "admin"]).is_none());
        assert!(file(&["dashboard", "other.js"]).is_none());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_no_other_origin() {
        let lower = INDEX.to_ascii_lowercase();
        assert!(!lower.contains("<script>") && !lower.contains("style="), "inline code is blocked by the CSP");
        let handler = lower.split(|c: char| c.is_ascii_whitespace()).any(|w| {
            w.strip_prefix("on").and_then(|rest| rest.split_once('=')).is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()))
        });
        assert!(!handler, "no inline event handlers");
        for text in [INDEX, SCRIPT, STYLE] {
            // XML namespace names (SVG) are identifiers, not fetched.
            let text = text.replace("http://www.w3.org/", "");
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"), "no other origin");
        }
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("eval("), "DOM is built from text, never parsed from data");
    }
}
