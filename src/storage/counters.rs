//! Metric counters: one multi-row upsert per request, one read per scrape.
//!
//! A request that stores a message on a local file writes no counters of its own: its row
//! in `incoming` carries its latency, measured by SQLite's clock when the storing statement
//! ran (after any wait for the write lock), and that row stands for the request's counters
//! (`/webhook` 200, `created`, its latency bucket and sum). Reads add those rows; the fold
//! adds them to the stored counters. That saves every stored message a second write
//! transaction. On a libSQL server, whose clock is not the component's, the request writes
//! its counters after the answer, as every other request does.

use super::{Database, SqlValue, StorageError};
use crate::metrics::{self, CounterRow, Delta, Increment, WebhookResult, WEBHOOK_REQUESTS};
use crate::routes::Endpoint;

/// The upsert adding `increments` to their rows, as one statement (one transaction when
/// run on its own, or part of the caller's).
pub(super) fn upsert(increments: &[Increment]) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("INSERT INTO metric_counters (name, labels, value) VALUES ");
    let mut params = Vec::with_capacity(increments.len() * 3);
    for (i, inc) in increments.iter().enumerate() {
        sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
        params.push(SqlValue::text(inc.name));
        params.push(SqlValue::text(inc.labels.as_str()));
        params.push(match inc.delta {
            Delta::Count(n) => SqlValue::Integer(n),
            Delta::Amount(x) => SqlValue::Real(x),
        });
    }
    sql.push_str(" ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value");
    (sql, params)
}

/// Adds a finished request's increments.
pub fn record(db: &dyn Database, increments: &[Increment]) -> Result<(), StorageError> {
    if increments.is_empty() {
        return Ok(());
    }
    let (sql, params) = upsert(increments);
    db.execute(&sql, &params).map(drop)
}

/// Every counter row, including what the rows waiting in `incoming` stand for: `created` is
/// counted as messages reach `messages` (the fold), so the rows still in `incoming` are
/// added here, and so are the requests they carry (see the module's doc). One statement.
pub fn read_counters(db: &dyn Database) -> Result<Vec<CounterRow>, StorageError> {
    let created = WebhookResult::Created;
    let rows = db.execute(
        "SELECT * FROM (SELECT name, labels, sum(value) FROM ( \
             SELECT name, labels, value FROM metric_counters \
             UNION ALL SELECT ?, ?, count(*) FROM incoming) \
         GROUP BY name, labels) \
         UNION ALL SELECT NULL, NULL, latency_ms FROM incoming WHERE latency_ms IS NOT NULL",
        &[
            SqlValue::text(WEBHOOK_REQUESTS),
            SqlValue::text(created.labels()),
        ],
    )?;
    let mut counters = Vec::new();
    let mut latencies = Vec::new();
    for row in &rows {
        match row.as_slice() {
            [SqlValue::Null, SqlValue::Null, latency] => latencies.extend(latency.as_f64()),
            [name, labels, value] => counters.extend((|| {
                Some(CounterRow {
                    name: name.as_str()?.to_owned(),
                    labels: labels.as_str()?.to_owned(),
                    value: value.as_f64()?,
                })
            })()),
            _ => {}
        }
    }
    for inc in stored_requests(latencies) {
        let value = inc.delta.value();
        match counters
            .iter_mut()
            .find(|c| c.name == inc.name && c.labels == inc.labels)
        {
            Some(row) => row.value += value,
            None => counters.push(CounterRow {
                name: inc.name.to_owned(),
                labels: inc.labels,
                value,
            }),
        }
    }
    Ok(counters)
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

/// Adds the requests carried by the rows in `incoming` to the stored counters; part of the
/// fold, before it empties `incoming`.
pub(super) fn fold_stored_requests(db: &dyn Database) -> Result<(), StorageError> {
    let rows = db.execute(
        "SELECT latency_ms FROM incoming WHERE latency_ms IS NOT NULL",
        &[],
    )?;
    let latencies = rows
        .iter()
        .filter_map(|row| row.first().and_then(SqlValue::as_f64));
    record(db, &stored_requests(latencies))
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
            get("webhook_requests_total", "result=\"duplicate\""),
            Some(2.0)
        );
        assert_eq!(get("request_latency_ms_sum", ""), Some(3.5));
        let stored: String = db
            .conn()
            .query_row(
                "SELECT typeof(value) FROM metric_counters WHERE name = 'http_requests_total'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, "integer");
    }
}
