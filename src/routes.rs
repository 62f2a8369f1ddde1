//! Which endpoint a method and path reach.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Webhook,
    Messages,
    Stats,
    Live,
    Ready,
    Metrics,
    Rejections,
}

impl Endpoint {
    const ALL: [Endpoint; 7] = [
        Endpoint::Webhook,
        Endpoint::Messages,
        Endpoint::Stats,
        Endpoint::Live,
        Endpoint::Ready,
        Endpoint::Metrics,
        Endpoint::Rejections,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Webhook => "/webhook",
            Endpoint::Messages => "/messages",
            Endpoint::Stats => "/stats",
            Endpoint::Live => "/health/live",
            Endpoint::Ready => "/health/ready",
            Endpoint::Metrics => "/metrics",
            Endpoint::Rejections => "/rejections",
        }
    }

    /// The endpoints that serve stored data (messages, counts, counters): their answers must
    /// not be kept by caches (`Cache-Control: no-store`).
    pub fn serves_data(self) -> bool {
        matches!(
            self,
            Endpoint::Messages | Endpoint::Stats | Endpoint::Metrics | Endpoint::Rejections
        )
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::Webhook => "POST",
            _ => "GET",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Found(Endpoint),
    /// Known path, other method: 405 with `Allow: <method>`.
    WrongMethod(Endpoint),
    NotFound,
}

impl Route {
    /// The `path` label in metrics: the route, or `other`, never the raw path.
    pub fn label(self) -> &'static str {
        match self {
            Route::Found(e) | Route::WrongMethod(e) => e.path(),
            Route::NotFound => "other",
        }
    }
}

pub fn resolve(method: &str, path: &str) -> Route {
    match Endpoint::ALL.into_iter().find(|e| e.path() == path) {
        Some(endpoint) if endpoint.method() == method => Route::Found(endpoint),
        Some(endpoint) => Route::WrongMethod(endpoint),
        None => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_exact_paths_and_methods() {
        assert_eq!(resolve("POST", "/webhook"), Route::Found(Endpoint::Webhook));
        assert_eq!(
            resolve("GET", "/webhook"),
            Route::WrongMethod(Endpoint::Webhook)
        );
        assert_eq!(
            resolve("GET", "/health/ready"),
            Route::Found(Endpoint::Ready)
        );
        assert_eq!(
            resolve("DELETE", "/messages"),
            Route::WrongMethod(Endpoint::Messages)
        );
        assert_eq!(resolve("GET", "/messages/"), Route::NotFound);
        assert_eq!(resolve("GET", "/WEBHOOK"), Route::NotFound);
        assert_eq!(
            resolve("get", "/stats"),
            Route::WrongMethod(Endpoint::Stats)
        );
        assert_eq!(resolve("GET", "/../etc/passwd").label(), "other");
        assert_eq!(resolve("PUT", "/metrics").label(), "/metrics");
        assert_eq!(
            resolve("GET", "/rejections"),
            Route::Found(Endpoint::Rejections)
        );
    }

    #[test]
    fn data_endpoints() {
        let data: Vec<_> = Endpoint::ALL
            .into_iter()
            .filter(|e| e.serves_data())
            .collect();
        assert_eq!(
            data,
            [
                Endpoint::Messages,
                Endpoint::Stats,
                Endpoint::Metrics,
                Endpoint::Rejections
            ]
        );
    }
}
