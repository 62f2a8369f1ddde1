//! Metric counters: rows of `tallies` (kind `metric`), one multi-row upsert per request,
//! one read per scrape.
//!
//! A request that stores a message writes no counters of its own: its row in `received`
//! carries its latency, and that row stands for the request's counters (`/webhook` 200,
//! `created`, its latency bucket and sum). Reads add the rows the fold has not counted yet;
//! the fold counts them into `tallies` (src/storage/fold.rs). That saves every stored
//! message a second write: on a libSQL server, a second network round trip holding the
//! server's write slot.

use super::{Database, SqlValue, StorageError};
use crate::metrics::{self, CounterRow, Delta, Increment, WebhookResult};
use crate::routes::Endpoint;
use crate::sources::Source;

/// The upsert adding `increments` to their rows, as one statement.
pub(super) fn upsert(increments: &[Increment]) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("INSERT INTO tallies (kind, key, n) VALUES ");
    let mut params = Vec::with_capacity(increments.len() * 2);
    for (i, inc) in increments.iter().enumerate() {
        sql.push_str(if i == 0 {
            "('metric', ?, ?)"
        } else {
            ", ('metric', ?, ?)"
        });
        params.push(SqlValue::Text(metrics::series_key(inc.name, &inc.labels)));
        params.push(match inc.delta {
            Delta::Count(n) => SqlValue::Integer(n),
            Delta::Amount(x) => SqlValue::Real(x),
        });
    }
    sql.push_str(" ON CONFLICT (kind, key) DO UPDATE SET n = n + excluded.n");
    (sql, params)
}

/// SQL for the `created` series key a stored row counts in, from its `column` of sources
/// (see [`metrics::stored_row_series`]). The keys hold no `'`, so they sit in the text.
pub(super) fn stored_row_series_sql(column: &str) -> String {
    let mut sql = format!("CASE {column}");
    for source in Source::ALL.into_iter().filter(|s| *s != Source::Webhook) {
        let key = metrics::stored_row_series(source);
        sql.push_str(&format!(" WHEN '{}' THEN '{key}'", source.as_str()));
    }
    let key = metrics::stored_row_series(Source::Webhook);
    sql.push_str(&format!(" ELSE '{key}' END"));
    sql
}

/// Adds a finished request's increments.
pub fn record(db: &dyn Database, increments: &[Increment]) -> Result<(), StorageError> {
    if increments.is_empty() {
        return Ok(());
    }
    let (sql, params) = upsert(increments);
    db.execute(&sql, &params).map(drop)
}

/// Every counter, including what the rows the fold has not counted yet stand for: their
/// `created`, and the requests that stored them; and each feed consumer's lag (a gauge,
/// [`super::feed::lag_series_sql`]), from the same snapshot. One statement.
pub fn read_counters(db: &dyn Database) -> Result<Vec<CounterRow>, StorageError> {
    let rows = db.execute(
        &format!(
            "WITH pending AS MATERIALIZED ( \
                 SELECT latency_ms, received_at, source FROM received \
                 WHERE seq > (SELECT n FROM tallies \
                              WHERE kind = 'inbox' AND key = 'counted_through')) \
             SELECT key, n FROM tallies WHERE kind = 'metric' \
             UNION ALL SELECT {created}, count(*) FROM pending GROUP BY 1 \
             UNION ALL SELECT NULL, latency_ms FROM pending WHERE latency_ms IS NOT NULL \
             UNION ALL {lags} \
             UNION ALL SELECT '{stored} ', \
                 (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'messages') \
                 + (SELECT count(*) FROM pending) \
             UNION ALL SELECT '{received} ', r / 1000.0 FROM ( \
                 SELECT max(r) AS r FROM ( \
                     SELECT n AS r FROM tallies \
                     WHERE kind = 'inbox' AND key = 'last_received_ms' \
                     UNION ALL SELECT max(received_at) FROM pending)) \
             WHERE r IS NOT NULL \
             UNION ALL SELECT '{newest} ', ( \
                 SELECT ts_key FROM ( \
                     SELECT * FROM (SELECT ts_key FROM messages INDEXED BY messages_by_ts \
                                    ORDER BY ts_key DESC LIMIT 1) \
                     UNION ALL SELECT ts_key FROM received) \
                 ORDER BY ts_key DESC LIMIT 1)",
            created = stored_row_series_sql("source"),
            lags = super::feed::lag_series_sql(),
            stored = metrics::MESSAGES_STORED,
            received = metrics::LAST_RECEIVED,
            newest = metrics::LAST_MESSAGE_TS,
        ),
        &[],
    )?;
    let mut counters: Vec<CounterRow> = Vec::new();
    let mut latencies = Vec::new();
    for row in &rows {
        match row.as_slice() {
            [SqlValue::Null, latency] => latencies.extend(latency.as_f64()),
            // The newest message's own instant, as its key: the gauge wants Unix seconds.
            [key, SqlValue::Text(ts_key)] => {
                let seconds = crate::timestamp::unix_seconds_of_key(ts_key);
                if let (Some(key), Some(seconds)) = (key.as_str(), seconds) {
                    let (name, labels) = metrics::split_series_key(key);
                    add(&mut counters, name, labels, seconds);
                }
            }
            [key, value] => {
                let (Some(key), Some(value)) = (key.as_str(), value.as_f64()) else {
                    continue;
                };
                let (name, labels) = metrics::split_series_key(key);
                add(&mut counters, name, labels, value);
            }
            _ => {}
        }
    }
    for inc in stored_requests(latencies) {
        add(&mut counters, inc.name, &inc.labels, inc.delta.value());
    }
    Ok(counters)
}

fn add(counters: &mut Vec<CounterRow>, name: &str, labels: &str, value: f64) {
    match counters
        .iter_mut()
        .find(|c| c.name == name && c.labels == labels)
    {
        Some(row) => row.value += value,
        None => counters.push(CounterRow {
            name: name.to_owned(),
            labels: labels.to_owned(),
            value,
        }),
    }
}

/// What the requests that stored messages with these latencies add to the counters, summed
/// per series. `created` is not among them: it is counted from the rows themselves.
fn stored_requests(latencies: impl IntoIterator<Item = f64>) -> Vec<Increment> {
    let mut sums: Vec<Increment> = Vec::new();
    for latency in latencies {
        let route = Endpoint::Webhook.path();
        for inc in metrics::increments(route, 200, latency, Some(WebhookResult::Created)) {
            match sums
                .iter_mut()
                .find(|s| s.name == inc.name && s.labels == inc.labels)
            {
                Some(sum) => sum.delta = sum.delta.plus(inc.delta),
                None => sums.push(inc),
            }
        }
    }
    sums
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::metrics::{increments, WebhookResult};
    use crate::storage::{prepare, testing::TestDb};

    #[test]
    fn increments_accumulate_and_keep_integer_counts() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        record(
            &db,
            &increments("/webhook", 200, 1.5, Some(WebhookResult::Duplicate)),
        )
        .unwrap();
        record(
            &db,
            &increments("/webhook", 200, 2.0, Some(WebhookResult::Duplicate)),
        )
        .unwrap();
        let rows = read_counters(&db).unwrap();
        let get = |name: &str, labels: &str| {
            rows.iter()
                .find(|r| r.name == name && r.labels == labels)
                .map(|r| r.value)
        };
        assert_eq!(
            get("http_requests_total", "path=\"/webhook\",status=\"200\""),
            Some(2.0)
        );
        assert_eq!(
            get(
                "webhook_requests_total",
                "source=\"webhook\",result=\"duplicate\""
            ),
            Some(2.0)
        );
        assert_eq!(get("request_latency_ms_sum", ""), Some(3.5));
        let stored: String = db
            .conn()
            .query_row(
                "SELECT typeof(n) FROM tallies WHERE key LIKE 'http_requests_total %'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, "integer");
    }

    /// The freshness and size gauges: absent on an empty inbox; then the stored total, when
    /// the newest message was received and its own instant, exact before and after a fold,
    /// and the total down after an erasure.
    #[test]
    fn the_gauges_follow_what_is_stored_wherever_it_sits() {
        use crate::sources::{Source, SourcedMessage};
        use crate::storage::testing::msg;
        use crate::storage::{fold, lifecycle, Removal, Session};
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let db = TestDb::new();
        prepare(&db).unwrap();
        let gauge = |name: &str| {
            read_counters(&db)
                .unwrap()
                .into_iter()
                .find(|r| r.name == name)
                .map(|r| r.value)
        };
        assert_eq!(gauge(metrics::MESSAGES_STORED), Some(0.0));
        assert_eq!(gauge(metrics::LAST_RECEIVED), None);
        assert_eq!(gauge(metrics::LAST_MESSAGE_TS), None);

        let mut session = Session::new(|| Ok(Box::new(TestDb::open(&db.path())) as _));
        let first = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let newest = msg("b", "+1", "+2", "2025-01-15T11:00:00.5Z", None);
        session
            .insert_message(&msg("a", "+1", "+2", "2025-01-15T10:00:00Z", None), first)
            .unwrap();
        session.insert_message(&newest, first).unwrap();
        let later = first + Duration::from_millis(2_500);
        let delivery = [SourcedMessage {
            message: msg("c", "+3", "+2", "2025-01-15T09:00:00Z", None),
            kind: "text".to_owned(),
        }];
        session
            .insert_batch(Source::WhatsApp, &delivery, later)
            .unwrap();
        let received = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        for folded in [false, true] {
            assert_eq!(
                gauge(metrics::MESSAGES_STORED),
                Some(3.0),
                "folded {folded}"
            );
            assert_eq!(gauge(metrics::LAST_RECEIVED), Some(received(later)));
            assert_eq!(gauge(metrics::LAST_MESSAGE_TS), Some(1_736_938_800.5));
            fold::fold(&db).unwrap();
        }
        let removal = Removal {
            now_unix: 0,
            tombstone_until: 0,
            batch: 10,
        };
        assert!(lifecycle::erase_message(&db, "b", &removal).unwrap());
        assert_eq!(gauge(metrics::MESSAGES_STORED), Some(2.0));
        assert_eq!(gauge(metrics::LAST_MESSAGE_TS), Some(1_736_935_200.0));
        assert_eq!(
            gauge(metrics::LAST_RECEIVED),
            Some(received(later)),
            "when, not what"
        );
    }
}
