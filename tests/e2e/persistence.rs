//! Stop the host, start it again on the same file: nothing is lost.

use crate::support::{message, parse_prometheus, App};

on_each_backend! {
fn messages_stats_and_metrics_survive_a_restart(backend: Backend) {
    let mut app = App::start_on(backend);
    for i in 0..5 {
        assert_eq!(app.deliver(&message(&format!("m{i}"))).status, 200);
    }
    let before_messages = app.get("/messages").json();
    let before_stats = app.get("/stats").json();
    app.restart();
    assert_eq!(app.get("/messages").json(), before_messages);
    assert_eq!(app.get("/stats").json(), before_stats);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="created"}"#], 5.0);
    // One read of each before the restart, one after: the counters kept the first.
    assert_eq!(
        m[r#"http_requests_total{path="/messages",status="200"}"#],
        2.0
    );
    assert_eq!(m[r#"http_requests_total{path="/stats",status="200"}"#], 2.0);
    assert_eq!(app.deliver(&message("m0")).status, 200);
    assert_eq!(app.total(""), 5, "still idempotent after a restart");
}
}
