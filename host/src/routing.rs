//! HTTP route matching with Spin's rules, and the `spin-*` request headers of a match.
//!
//! Exact routes beat wildcards, the longest wildcard prefix wins, `:name` matches one segment.
//! Matching is delegated to `routefinder`, the same matcher Spin uses, so edge cases such as
//! trailing slashes rank the same way.

use std::net::SocketAddr;

use anyhow::{anyhow, Result};

use crate::manifest::HttpTrigger;

/// Paths under this prefix are answered by the runtime itself, never by a component.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

#[derive(Debug, Clone)]
struct Entry {
    component: String,
    /// The route as written in the manifest.
    raw_route: String,
    /// The route with a leading slash and one trailing slash removed (Spin's "based" route).
    based_route: String,
}

/// The routing table of an app.
pub struct Router {
    inner: routefinder::Router<Entry>,
    /// (display route, component) in manifest order, for the startup banner.
    listing: Vec<(String, String)>,
}

/// The result of routing one request path.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub component: String,
    pub raw_route: String,
    pub based_route: String,
    /// The part of the path matched by a trailing `/...` ("" for exact routes).
    pub path_info: String,
    /// `:name` segment captures.
    pub named: Vec<(String, String)>,
}

impl Router {
    pub fn build(triggers: &[HttpTrigger]) -> Result<Self> {
        // A later trigger with the same route replaces an earlier one, as in Spin.
        let mut unique: Vec<&HttpTrigger> = Vec::new();
        for t in triggers {
            match unique.iter_mut().find(|u| u.route == t.route) {
                Some(slot) => *slot = t,
                None => unique.push(t),
            }
        }

        let mut inner = routefinder::Router::new();
        let mut listing = Vec::new();
        for t in unique {
            let based = based_route(&t.route);
            let (spec, display) = if let Some(prefix) = based.strip_suffix("/...") {
                (format!("{prefix}/*"), format!("{prefix} (wildcard)"))
            } else if let Some(prefix) = based.strip_suffix("/*") {
                (based.clone(), format!("{prefix} (wildcard)"))
            } else {
                (based.clone(), based.clone())
            };
            let entry = Entry {
                component: t.component.clone(),
                raw_route: t.route.clone(),
                based_route: based,
            };
            inner
                .add(spec.as_str(), entry)
                .map_err(|e| anyhow!("invalid route {:?}: {e}", t.route))?;
            listing.push((display, t.component.clone()));
        }
        Ok(Self { inner, listing })
    }

    /// (route as displayed, component) pairs, for the startup banner.
    pub fn routes(&self) -> &[(String, String)] {
        &self.listing
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let m = self.inner.best_match(path)?;
        let entry = m.handler();
        let captures = m.captures();
        let path_info = match captures.wildcard() {
            // Spin keeps a trailing slash that routefinder drops.
            Some(w) => match (w.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{w}"),
                (false, true) => format!("/{w}/"),
            },
            None => String::new(),
        };
        let named = captures
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Some(RouteMatch {
            component: entry.component.clone(),
            raw_route: entry.raw_route.clone(),
            based_route: entry.based_route.clone(),
            path_info,
            named,
        })
    }
}

fn based_route(route: &str) -> String {
    let abs = if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    };
    abs.strip_suffix('/').map(str::to_string).unwrap_or(abs)
}

impl RouteMatch {
    /// The `spin-*` headers Spin adds to a request, in Spin's order.
    pub fn spin_headers(
        &self,
        host: &str,
        path_and_query: &str,
        client: SocketAddr,
    ) -> Vec<(String, String)> {
        let component_route = self
            .raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
            .to_string();
        let mut h = vec![
            ("spin-path-info".to_string(), self.path_info.clone()),
            (
                "spin-full-url".to_string(),
                format!("http://{host}{path_and_query}"),
            ),
            ("spin-matched-route".to_string(), self.based_route.clone()),
            ("spin-base-path".to_string(), "/".to_string()),
            (
                "spin-raw-component-route".to_string(),
                self.raw_route.clone(),
            ),
            ("spin-component-route".to_string(), component_route),
            ("spin-client-addr".to_string(), client.to_string()),
        ];
        for (name, value) in &self.named {
            h.push((
                format!("spin-path-match-{}", name.to_ascii_lowercase()),
                value.clone(),
            ));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<_> = routes
            .iter()
            .map(|(r, c)| HttpTrigger {
                route: r.to_string(),
                component: c.to_string(),
            })
            .collect();
        Router::build(&triggers).unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = router(&[
            ("/...", "all"),
            ("/one", "one"),
            ("/one/...", "one-w"),
            ("/one/two/...", "two-w"),
        ]);
        assert_eq!(r.route("/one").unwrap().component, "one");
        assert_eq!(r.route("/one/x").unwrap().component, "one-w");
        assert_eq!(r.route("/one/two/three").unwrap().component, "two-w");
        assert_eq!(r.route("/zzz").unwrap().component, "all");
        assert_eq!(r.route("/").unwrap().component, "all");
    }

    #[test]
    fn no_match_without_wildcard() {
        let r = router(&[("/a", "a")]);
        assert!(r.route("/b").is_none());
        assert!(r.route("/a/b").is_none());
    }

    #[test]
    fn path_info_keeps_trailing_slash() {
        let r = router(&[("/foo/...", "f")]);
        assert_eq!(r.route("/foo").unwrap().path_info, "");
        assert_eq!(r.route("/foo/").unwrap().path_info, "/");
        assert_eq!(r.route("/foo/bar").unwrap().path_info, "/bar");
        assert_eq!(r.route("/foo/bar/").unwrap().path_info, "/bar/");
    }

    #[test]
    fn headers_match_spin() {
        let r = router(&[("/foo/...", "f")]);
        let m = r.route("/foo/bar").unwrap();
        let h = m.spin_headers(
            "fermyon.dev",
            "/foo/bar?k=v",
            "127.0.0.1:8777".parse().unwrap(),
        );
        let get = |k: &str| h.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("spin-full-url"), "http://fermyon.dev/foo/bar?k=v");
        assert_eq!(get("spin-path-info"), "/bar");
        assert_eq!(get("spin-matched-route"), "/foo/...");
        assert_eq!(get("spin-base-path"), "/");
        assert_eq!(get("spin-raw-component-route"), "/foo/...");
        assert_eq!(get("spin-component-route"), "/foo");
        assert_eq!(get("spin-client-addr"), "127.0.0.1:8777");
    }

    #[test]
    fn named_segments_become_headers() {
        let r = router(&[("/users/:userid/...", "u")]);
        let m = r.route("/users/42/edit").unwrap();
        let h = m.spin_headers("h", "/users/42/edit", "127.0.0.1:1".parse().unwrap());
        assert!(h.contains(&("spin-path-match-userid".into(), "42".into())));
        assert_eq!(m.path_info, "/edit");
    }

    #[test]
    fn duplicate_route_last_wins() {
        let r = router(&[("/a", "first"), ("/a", "second")]);
        assert_eq!(r.route("/a").unwrap().component, "second");
    }
}
