//! Metric counters: one multi-row upsert per request, one read per scrape.

use super::{Database, SqlValue, StorageError};
use crate::metrics::{CounterRow, Delta, Increment, WebhookResult, WEBHOOK_REQUESTS};

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

/// Every counter row. `created` is counted by the aggregate trigger as messages reach
/// `messages`; those still in `incoming` are added here, so it always equals the rows stored.
pub fn read_counters(db: &dyn Database) -> Result<Vec<CounterRow>, StorageError> {
    let created = WebhookResult::Created;
    let rows = db.execute(
        "SELECT name, labels, sum(value) FROM ( \
             SELECT name, labels, value FROM metric_counters \
             UNION ALL SELECT ?, ?, count(*) FROM incoming) \
         GROUP BY name, labels",
        &[
            SqlValue::text(WEBHOOK_REQUESTS),
            SqlValue::text(created.labels()),
        ],
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| match row.as_slice() {
            [name, labels, value] => Some(CounterRow {
                name: name.as_str()?.to_owned(),
                labels: labels.as_str()?.to_owned(),
                value: value.as_f64()?,
            }),
            _ => None,
        })
        .collect())
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
