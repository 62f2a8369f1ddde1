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
    /// `POST /admin/purge`: one retention batch, on demand.
    Purge,
    /// `DELETE /messages?from=…`: a batch of one sender's messages.
    EraseSender,
    /// `DELETE /messages/{message_id}`.
    EraseMessage,
}

/// Where `/messages/{message_id}` starts.
pub const MESSAGE_PREFIX: &str = "/messages/";

impl Endpoint {
    const ALL: [Endpoint; 10] = [
        Endpoint::Webhook,
        Endpoint::Messages,
        Endpoint::Stats,
        Endpoint::Live,
        Endpoint::Ready,
        Endpoint::Metrics,
        Endpoint::Rejections,
        Endpoint::Purge,
        Endpoint::EraseSender,
        Endpoint::EraseMessage,
    ];

    /// The route: the path, or its pattern. Also the `path` label of the metrics, so the
    /// labels stay a fixed set whatever the paths requested.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Webhook => "/webhook",
            Endpoint::Messages | Endpoint::EraseSender => "/messages",
            Endpoint::Stats => "/stats",
            Endpoint::Live => "/health/live",
            Endpoint::Ready => "/health/ready",
            Endpoint::Metrics => "/metrics",
            Endpoint::Rejections => "/rejections",
            Endpoint::Purge => "/admin/purge",
            Endpoint::EraseMessage => "/messages/{message_id}",
        }
    }

    fn matches(self, path: &str) -> bool {
        match self {
            Endpoint::EraseMessage => path
                .strip_prefix(MESSAGE_PREFIX)
                .is_some_and(|id| !id.is_empty()),
            _ => path == self.path(),
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

    /// The routes that change or remove stored data on an operator's behalf: they need the
    /// admin token, and are closed when none is configured.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Endpoint::Purge | Endpoint::EraseSender | Endpoint::EraseMessage
        )
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::Webhook | Endpoint::Purge => "POST",
            Endpoint::EraseSender | Endpoint::EraseMessage => "DELETE",
            _ => "GET",
        }
    }

    /// The `Allow` header for this endpoint's route: every method some endpoint takes there.
    pub fn allow(self) -> String {
        let methods: Vec<&str> = Endpoint::ALL
            .into_iter()
            .filter(|e| e.path() == self.path())
            .map(Endpoint::method)
            .collect();
        methods.join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Found(Endpoint),
    /// Known path, other method: 405 with `Allow` (see [`Endpoint::allow`]).
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
    let mut on_path = Endpoint::ALL.into_iter().filter(|e| e.matches(path));
    let Some(first) = on_path.next() else {
        return Route::NotFound;
    };
    match std::iter::once(first)
        .chain(on_path)
        .find(|e| e.method() == method)
    {
        Some(endpoint) => Route::Found(endpoint),
        None => Route::WrongMethod(first),
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
            resolve("PUT", "/messages"),
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
    fn admin_routes() {
        assert_eq!(
            resolve("POST", "/admin/purge"),
            Route::Found(Endpoint::Purge)
        );
        assert_eq!(
            resolve("DELETE", "/messages"),
            Route::Found(Endpoint::EraseSender)
        );
        assert_eq!(
            resolve("GET", "/messages"),
            Route::Found(Endpoint::Messages)
        );
        assert_eq!(
            resolve("DELETE", "/messages/m%201"),
            Route::Found(Endpoint::EraseMessage)
        );
        let wrong = resolve("POST", "/messages/m1");
        assert_eq!(wrong, Route::WrongMethod(Endpoint::EraseMessage));
        assert_eq!(wrong.label(), "/messages/{message_id}");
        assert_eq!(
            resolve("PATCH", "/messages/x/y").label(),
            "/messages/{message_id}"
        );
        assert_eq!(Endpoint::Messages.allow(), "GET, DELETE");
        assert_eq!(Endpoint::EraseMessage.allow(), "DELETE");
        assert_eq!(Endpoint::Purge.allow(), "POST");
        let admin: Vec<_> = Endpoint::ALL.into_iter().filter(|e| e.is_admin()).collect();
        assert_eq!(
            admin,
            [
                Endpoint::Purge,
                Endpoint::EraseSender,
                Endpoint::EraseMessage
            ]
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
