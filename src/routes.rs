//! Which endpoint a method and path reach.
//!
//! Paths are matched as sent, before any percent-decoding: `/messages/export` is the export,
//! and every other path below `/messages/` names one message, whose id is the rest of the
//! path percent-decoded ([`message_id`]). So the message whose id is `export` is reachable as
//! `/messages/%65xport` (or `/messages/%65%78%70%6F%72%74`), and a decoded `/` never moves a
//! request to another endpoint.

use crate::sources::Source;
use http::Method;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Webhook,
    /// `GET /webhook/whatsapp`: Meta's verification handshake.
    WhatsAppVerify,
    /// `POST /webhook/whatsapp`: Meta's WhatsApp Cloud API deliveries.
    WhatsApp,
    /// `POST /webhook/twilio`: Twilio's WhatsApp and SMS deliveries.
    Twilio,
    Messages,
    /// `GET /messages/{message_id}`.
    Message,
    /// `GET /messages/export`: every matching message as NDJSON.
    Export,
    Stats,
    /// `GET /stats/hourly`: messages per hour over the last days.
    Hourly,
    Live,
    Ready,
    Metrics,
    Rejections,
    /// `GET /ui`: the console page.
    Console,
    /// `POST /admin/purge`: one retention batch, on demand.
    Purge,
    /// `DELETE /messages?from=…`: a batch of one sender's messages.
    EraseSender,
    /// `DELETE /messages/{message_id}`.
    EraseMessage,
    /// `GET /feed`: the messages after a consumer's committed offset.
    Feed,
    /// `POST /feed/commit`: a consumer's offset, moved forward.
    FeedCommit,
    /// `GET /feed/consumers`: every consumer, its offset and lag.
    FeedConsumers,
    /// `DELETE /feed/consumers/{name}`: forgets a consumer (admin).
    ForgetConsumer,
}

/// Where one message's path starts; what follows is its percent-encoded id.
const MESSAGE_PREFIX: &str = "/messages/";
/// Where one feed consumer's path starts; what follows is its name.
const CONSUMER_PREFIX: &str = "/feed/consumers/";

impl Endpoint {
    const ALL: [Endpoint; 21] = [
        Endpoint::Webhook,
        Endpoint::WhatsAppVerify,
        Endpoint::WhatsApp,
        Endpoint::Twilio,
        Endpoint::Messages,
        Endpoint::Message,
        Endpoint::Export,
        Endpoint::Stats,
        Endpoint::Hourly,
        Endpoint::Live,
        Endpoint::Ready,
        Endpoint::Metrics,
        Endpoint::Rejections,
        Endpoint::Console,
        Endpoint::Purge,
        Endpoint::EraseSender,
        Endpoint::EraseMessage,
        Endpoint::Feed,
        Endpoint::FeedCommit,
        Endpoint::FeedConsumers,
        Endpoint::ForgetConsumer,
    ];

    /// The route as a fixed string: the path itself, or `/messages/{message_id}` for the
    /// one path pattern. Also the `path` label in metrics, so the labels are a bounded set.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Webhook => "/webhook",
            Endpoint::WhatsAppVerify | Endpoint::WhatsApp => "/webhook/whatsapp",
            Endpoint::Twilio => "/webhook/twilio",
            Endpoint::Messages | Endpoint::EraseSender => "/messages",
            Endpoint::Message | Endpoint::EraseMessage => "/messages/{message_id}",
            Endpoint::Export => "/messages/export",
            Endpoint::Stats => "/stats",
            Endpoint::Hourly => "/stats/hourly",
            Endpoint::Live => "/health/live",
            Endpoint::Ready => "/health/ready",
            Endpoint::Metrics => "/metrics",
            Endpoint::Rejections => "/rejections",
            Endpoint::Console => "/ui",
            Endpoint::Purge => "/admin/purge",
            Endpoint::Feed => "/feed",
            Endpoint::FeedCommit => "/feed/commit",
            Endpoint::FeedConsumers => "/feed/consumers",
            Endpoint::ForgetConsumer => "/feed/consumers/{name}",
        }
    }

    /// The source whose deliveries (or handshake) the endpoint takes; `None` for the rest.
    pub fn source(self) -> Option<Source> {
        match self {
            Endpoint::Webhook => Some(Source::Webhook),
            Endpoint::WhatsAppVerify | Endpoint::WhatsApp => Some(Source::WhatsApp),
            Endpoint::Twilio => Some(Source::Twilio),
            _ => None,
        }
    }

    /// The routes that change or remove stored data on an operator's behalf: they need the
    /// admin token, and are closed when none is configured.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Endpoint::Purge
                | Endpoint::EraseSender
                | Endpoint::EraseMessage
                | Endpoint::ForgetConsumer
        )
    }

    /// The `Allow` header for this endpoint's route: every method some endpoint takes there.
    pub fn allow(self) -> String {
        let methods: Vec<String> = Endpoint::ALL
            .into_iter()
            .filter(|e| e.path() == self.path())
            .map(|e| e.method().to_string())
            .collect();
        methods.join(", ")
    }

    /// The endpoints that serve stored data (messages, counts, counters): their answers must
    /// not be kept by caches (`Cache-Control: no-store`).
    pub fn serves_data(self) -> bool {
        matches!(
            self,
            Endpoint::Messages
                | Endpoint::Message
                | Endpoint::Export
                | Endpoint::Stats
                | Endpoint::Hourly
                | Endpoint::Metrics
                | Endpoint::Rejections
                | Endpoint::Feed
                | Endpoint::FeedCommit
                | Endpoint::FeedConsumers
        )
    }

    pub fn method(self) -> Method {
        match self {
            Endpoint::Webhook
            | Endpoint::WhatsApp
            | Endpoint::Twilio
            | Endpoint::Purge
            | Endpoint::FeedCommit => Method::POST,
            Endpoint::EraseSender | Endpoint::EraseMessage | Endpoint::ForgetConsumer => {
                Method::DELETE
            }
            _ => Method::GET,
        }
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

pub fn resolve(method: &Method, path: &str) -> Route {
    // The route first (an exact path, else the one pattern), then the method among the
    // endpoints that share it.
    let exact = Endpoint::ALL.into_iter().find(|e| e.path() == path);
    let pattern = || {
        [
            (MESSAGE_PREFIX, Endpoint::Message),
            (CONSUMER_PREFIX, Endpoint::ForgetConsumer),
        ]
        .into_iter()
        .find(|(prefix, _)| path.strip_prefix(prefix).is_some_and(|r| !r.is_empty()))
        .map(|(_, endpoint)| endpoint.path())
    };
    let Some(route) = exact.map(Endpoint::path).or_else(pattern) else {
        return Route::NotFound;
    };
    let mut on_route = Endpoint::ALL.into_iter().filter(|e| e.path() == route);
    let first = on_route.next().expect("a route has an endpoint");
    match std::iter::once(first)
        .chain(on_route)
        .find(|e| e.method() == *method)
    {
        Some(endpoint) => Route::Found(endpoint),
        None => Route::WrongMethod(first),
    }
}

/// The source a stored route label names (a rejection log entry's `route`): the delivery
/// route's source, `None` for any other.
pub fn source_of_route(route: &str) -> Option<Source> {
    Endpoint::ALL
        .into_iter()
        .find(|endpoint| endpoint.path() == route)
        .and_then(Endpoint::source)
}

/// The name a `/feed/consumers/{name}` path names, percent-decoded; `None` when the path
/// names none or the bytes are not UTF-8 (no consumer can have such a name).
pub fn consumer_name(path: &str) -> Option<Cow<'_, str>> {
    let raw = path
        .strip_prefix(CONSUMER_PREFIX)
        .filter(|r| !r.is_empty())?;
    percent_encoding::percent_decode_str(raw).decode_utf8().ok()
}

/// The id a `/messages/{message_id}` path names: the rest of the path, percent-decoded
/// (`+` stays `+`: this is a path, not a form). `None` when the path names no message or the
/// decoded bytes are not UTF-8 (no stored id can be; the answer is the usual 404).
pub fn message_id(path: &str) -> Option<Cow<'_, str>> {
    let raw = path
        .strip_prefix(MESSAGE_PREFIX)
        .filter(|r| !r.is_empty())?;
    percent_encoding::percent_decode_str(raw).decode_utf8().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: &str) -> Method {
        Method::from_bytes(method.as_bytes()).unwrap()
    }

    #[test]
    fn resolves_exact_paths_and_methods() {
        assert_eq!(
            resolve(&m("POST"), "/webhook"),
            Route::Found(Endpoint::Webhook)
        );
        assert_eq!(
            resolve(&m("GET"), "/webhook"),
            Route::WrongMethod(Endpoint::Webhook)
        );
        assert_eq!(
            resolve(&m("GET"), "/health/ready"),
            Route::Found(Endpoint::Ready)
        );
        assert_eq!(
            resolve(&m("PUT"), "/messages"),
            Route::WrongMethod(Endpoint::Messages)
        );
        assert_eq!(resolve(&m("GET"), "/messages/"), Route::NotFound);
        assert_eq!(
            resolve(&m("GET"), "/messages"),
            Route::Found(Endpoint::Messages)
        );
        assert_eq!(resolve(&m("GET"), "/WEBHOOK"), Route::NotFound);
        assert_eq!(
            resolve(&m("get"), "/stats"),
            Route::WrongMethod(Endpoint::Stats)
        );
        assert_eq!(resolve(&m("GET"), "/../etc/passwd").label(), "other");
        assert_eq!(resolve(&m("PUT"), "/metrics").label(), "/metrics");
        assert_eq!(
            resolve(&m("GET"), "/rejections"),
            Route::Found(Endpoint::Rejections)
        );
    }

    #[test]
    fn provider_routes_and_their_sources() {
        assert_eq!(
            resolve(&m("GET"), "/webhook/whatsapp"),
            Route::Found(Endpoint::WhatsAppVerify)
        );
        assert_eq!(
            resolve(&m("POST"), "/webhook/whatsapp"),
            Route::Found(Endpoint::WhatsApp)
        );
        assert_eq!(
            resolve(&m("POST"), "/webhook/twilio"),
            Route::Found(Endpoint::Twilio)
        );
        let wrong = resolve(&m("PUT"), "/webhook/whatsapp");
        assert_eq!(wrong, Route::WrongMethod(Endpoint::WhatsAppVerify));
        assert_eq!(wrong.label(), "/webhook/whatsapp");
        assert_eq!(Endpoint::WhatsApp.allow(), "GET, POST");
        assert_eq!(
            resolve(&m("GET"), "/webhook/twilio"),
            Route::WrongMethod(Endpoint::Twilio)
        );
        assert_eq!(Endpoint::Twilio.allow(), "POST");
        assert_eq!(Endpoint::Webhook.allow(), "POST");
        assert_eq!(resolve(&m("POST"), "/webhook/other"), Route::NotFound);
        assert_eq!(resolve(&m("POST"), "/webhook/whatsapp/"), Route::NotFound);

        assert_eq!(Endpoint::Webhook.source(), Some(Source::Webhook));
        assert_eq!(Endpoint::WhatsAppVerify.source(), Some(Source::WhatsApp));
        assert_eq!(Endpoint::Twilio.source(), Some(Source::Twilio));
        assert_eq!(Endpoint::Messages.source(), None);
        assert_eq!(source_of_route("/webhook"), Some(Source::Webhook));
        assert_eq!(source_of_route("/webhook/whatsapp"), Some(Source::WhatsApp));
        assert_eq!(source_of_route("/webhook/twilio"), Some(Source::Twilio));
        assert_eq!(source_of_route("/stats"), None);
        assert_eq!(source_of_route("other"), None);
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
                Endpoint::Message,
                Endpoint::Export,
                Endpoint::Stats,
                Endpoint::Hourly,
                Endpoint::Metrics,
                Endpoint::Rejections,
                Endpoint::Feed,
                Endpoint::FeedCommit,
                Endpoint::FeedConsumers
            ]
        );
    }

    #[test]
    fn feed_routes() {
        assert_eq!(resolve(&m("GET"), "/feed"), Route::Found(Endpoint::Feed));
        assert_eq!(
            resolve(&m("POST"), "/feed/commit"),
            Route::Found(Endpoint::FeedCommit)
        );
        assert_eq!(
            resolve(&m("GET"), "/feed/commit"),
            Route::WrongMethod(Endpoint::FeedCommit)
        );
        assert_eq!(
            resolve(&m("GET"), "/feed/consumers"),
            Route::Found(Endpoint::FeedConsumers)
        );
        assert_eq!(
            resolve(&m("DELETE"), "/feed/consumers/crm"),
            Route::Found(Endpoint::ForgetConsumer)
        );
        let wrong = resolve(&m("GET"), "/feed/consumers/crm");
        assert_eq!(wrong, Route::WrongMethod(Endpoint::ForgetConsumer));
        assert_eq!(wrong.label(), "/feed/consumers/{name}");
        assert_eq!(Endpoint::ForgetConsumer.allow(), "DELETE");
        assert_eq!(Endpoint::Feed.allow(), "GET");
        assert_eq!(resolve(&m("GET"), "/feed/consumers/"), Route::NotFound);
        assert_eq!(resolve(&m("GET"), "/feed/"), Route::NotFound);
        assert_eq!(resolve(&m("GET"), "/feed/other"), Route::NotFound);
        let name = |p: &str| consumer_name(p).map(|c| c.into_owned());
        assert_eq!(name("/feed/consumers/crm").as_deref(), Some("crm"));
        assert_eq!(name("/feed/consumers/a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(name("/feed/consumers/%ff"), None);
        assert_eq!(name("/feed/consumers/"), None);
    }

    #[test]
    fn one_message_export_hourly_and_the_console() {
        assert_eq!(
            resolve(&m("GET"), "/messages/export"),
            Route::Found(Endpoint::Export)
        );
        for path in [
            "/messages/m1",
            "/messages/%65xport",
            "/messages/export/",
            "/messages/a/b",
            "/messages/%ff",
            "/messages/..",
        ] {
            assert_eq!(
                resolve(&m("GET"), path),
                Route::Found(Endpoint::Message),
                "{path}"
            );
        }
        assert_eq!(
            resolve(&m("PUT"), "/messages/m1"),
            Route::WrongMethod(Endpoint::Message)
        );
        assert_eq!(
            resolve(&m("POST"), "/messages/export"),
            Route::WrongMethod(Endpoint::Export)
        );
        assert_eq!(
            resolve(&m("GET"), "/stats/hourly"),
            Route::Found(Endpoint::Hourly)
        );
        assert_eq!(resolve(&m("GET"), "/ui"), Route::Found(Endpoint::Console));
        assert_eq!(resolve(&m("GET"), "/ui/"), Route::NotFound);
        assert_eq!(resolve(&m("GET"), "/stats/hourly/x"), Route::NotFound);
        // Labels stay a fixed set whatever the id.
        assert_eq!(
            resolve(&m("GET"), "/messages/anything-at-all").label(),
            "/messages/{message_id}"
        );
        assert_eq!(
            resolve(&m("PUT"), "/messages/x").label(),
            "/messages/{message_id}"
        );
    }

    #[test]
    fn admin_routes() {
        assert_eq!(
            resolve(&m("POST"), "/admin/purge"),
            Route::Found(Endpoint::Purge)
        );
        assert_eq!(
            resolve(&m("DELETE"), "/messages"),
            Route::Found(Endpoint::EraseSender)
        );
        assert_eq!(
            resolve(&m("DELETE"), "/messages/m%201"),
            Route::Found(Endpoint::EraseMessage)
        );
        assert_eq!(
            resolve(&m("GET"), "/messages/m1"),
            Route::Found(Endpoint::Message)
        );
        // The export's path is the export's: the message `export` is `/messages/%65xport`.
        assert_eq!(
            resolve(&m("DELETE"), "/messages/export"),
            Route::WrongMethod(Endpoint::Export)
        );
        assert_eq!(
            resolve(&m("DELETE"), "/messages/%65xport"),
            Route::Found(Endpoint::EraseMessage)
        );
        let wrong = resolve(&m("POST"), "/messages/m1");
        assert_eq!(wrong, Route::WrongMethod(Endpoint::Message));
        assert_eq!(wrong.label(), "/messages/{message_id}");
        assert_eq!(Endpoint::Messages.allow(), "GET, DELETE");
        assert_eq!(Endpoint::Message.allow(), "GET, DELETE");
        assert_eq!(Endpoint::Export.allow(), "GET");
        assert_eq!(Endpoint::Purge.allow(), "POST");
        let admin: Vec<_> = Endpoint::ALL.into_iter().filter(|e| e.is_admin()).collect();
        assert_eq!(
            admin,
            [
                Endpoint::Purge,
                Endpoint::EraseSender,
                Endpoint::EraseMessage,
                Endpoint::ForgetConsumer
            ]
        );
    }

    #[test]
    fn message_ids_are_percent_decoded_after_matching() {
        let id = |p: &str| message_id(p).map(|c| c.into_owned());
        assert_eq!(id("/messages/m1").as_deref(), Some("m1"));
        assert_eq!(id("/messages/%65xport").as_deref(), Some("export"));
        assert_eq!(id("/messages/a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(id("/messages/a/b").as_deref(), Some("a/b"));
        assert_eq!(id("/messages/a+b%20c").as_deref(), Some("a+b c"));
        assert_eq!(id("/messages/%C3%A9t%C3%A9").as_deref(), Some("été"));
        assert_eq!(id("/messages/%zz%").as_deref(), Some("%zz%"));
        assert_eq!(id("/messages/%00").as_deref(), Some("\0"));
        assert_eq!(id("/messages/%ff"), None, "not UTF-8");
        assert_eq!(id("/messages/"), None);
        assert_eq!(id("/messages"), None);
    }
}
