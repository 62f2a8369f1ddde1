//! The console page (`GET /ui`): one HTML document with its CSS and JavaScript inline, built
//! into the component. It reads only the public JSON API, from the same origin.
//!
//! The page's `Content-Security-Policy` allows nothing but its own inline style and script,
//! named by their SHA-256 hashes, and requests to this origin. The hashes are computed from
//! the very text that is served, so they cannot drift from it. Trusted Types are required
//! (no policy may be created), so the browser itself refuses any `innerHTML`-style sink:
//! message text can only ever reach the page as text.

use base64::Engine as _;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("console/index.html");
const STYLE: &str = include_str!("console/console.css");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE_SLOT: &str = "/*STYLE*/";
const SCRIPT_SLOT: &str = "/*SCRIPT*/";

pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The page and the headers it is served with.
pub struct Page {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

pub fn page() -> Page {
    let body = TEMPLATE
        .replacen(STYLE_SLOT, STYLE, 1)
        .replacen(SCRIPT_SLOT, SCRIPT, 1);
    Page {
        body,
        headers: vec![
            ("content-security-policy", content_security_policy()),
            ("referrer-policy", "no-referrer".to_owned()),
            ("x-frame-options", "DENY".to_owned()),
            // Always asked again, so a new component version shows at once; it holds no data.
            ("cache-control", "no-cache".to_owned()),
        ],
    }
}

/// `'sha256-<base64>'`, the CSP source that allows exactly `text` inline.
fn hash_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
         require-trusted-types-for 'script'; trusted-types 'none'",
        hash_source(SCRIPT),
        hash_source(STYLE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text between the first `open` tag and its closing tag.
    fn inline<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
        let start = html.find(open).expect(open) + open.len();
        let end = start + html[start..].find(close).expect(close);
        &html[start..end]
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script_served() {
        let page = page();
        let csp = &page
            .headers
            .iter()
            .find(|(n, _)| *n == "content-security-policy")
            .unwrap()
            .1;
        let script = inline(&page.body, "<script>", "</script>");
        let style = inline(&page.body, "<style>", "</style>");
        assert_eq!(script, SCRIPT);
        assert_eq!(style, STYLE);
        assert!(csp.contains(&format!("script-src {};", hash_source(script))));
        assert!(csp.contains(&format!("style-src {};", hash_source(style))));
        for directive in [
            "default-src 'none'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(csp.contains(directive), "{directive}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        // One script and one style element: nothing else would be allowed to run.
        assert_eq!(page.body.matches("<script").count(), 1);
        assert_eq!(page.body.matches("<style").count(), 1);
        assert!(!page.body.contains(STYLE_SLOT) && !page.body.contains(SCRIPT_SLOT));
    }

    #[test]
    fn no_external_assets_and_no_html_sinks() {
        let body = page().body;
        for external in ["http://", "https://", "src=", "@import", "url("] {
            // The SVG namespace is an identifier, not a request.
            let hits = body.matches(external).count()
                - body.matches("http://www.w3.org/2000/svg").count()
                    * usize::from(external == "http://");
            assert_eq!(hits, 0, "{external}");
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "{sink}");
        }
        // The token never goes into the address.
        assert!(SCRIPT.contains("sessionStorage"));
        assert!(!SCRIPT.contains("localStorage"));
    }
}
