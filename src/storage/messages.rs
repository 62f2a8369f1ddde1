//! Messages: the idempotent insert, filtered listing, and the stats read.

use super::search::{self, SearchPlan};
use super::{first_value, lifecycle, Database, Rows, SqlValue, StorageError};
use crate::domain::NewMessage;
use crate::query::{Cursor, MessageQuery};

/// Whether an insert stored a new row or found the `message_id` already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    Duplicate,
}

/// Stores `msg` unless its `message_id` exists (first write wins), and tells whether it
/// was new. See [`store`].
pub fn insert_message(db: &dyn Database, msg: &NewMessage) -> Result<Inserted, StorageError> {
    store(db, msg, None, unix_now()).map(|(inserted, _)| inserted)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Stores `msg` unless its `message_id` exists (first write wins): one autocommit statement
/// that adds a row to `arrivals` (see `migrations.sql`), so the write lock is held only while
/// SQLite runs it, never across a round trip between the component and its host. Returns
/// the new row's `seq`, which tells when to fold ([`super::fold`]).
///
/// With `timing` the row also counts the storing request's metrics (see
/// [`super::counters`]).
///
/// No row back means the `message_id` is already stored, in `arrivals` or in `messages`, or
/// was removed and its tombstone has not expired by `now_unix` ([`super::lifecycle`]): a
/// duplicate, with no second statement to confirm it. The tables themselves are the schema
/// check: a database older than version 7 has no `tallies`, so there the insert fails with
/// [`super::ErrorKind::MissingSchema`], which the session answers by applying the schema and
/// inserting again. A 200 is never given for a message that was not stored.
pub(super) fn store(
    db: &dyn Database,
    msg: &NewMessage,
    timing: Option<RequestTiming>,
    now_unix: i64,
) -> Result<(Inserted, Option<i64>), StorageError> {
    Ok(match insert_if_new(db, msg, timing, now_unix)? {
        Some(seq) => (Inserted::Created, Some(seq)),
        None => (Inserted::Duplicate, None),
    })
}

/// When the storing request started, and how long it had taken by the time its storing
/// statement was sent, both in milliseconds by the component's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestTiming {
    pub started_unix_ms: f64,
    pub elapsed_ms: f64,
}

/// The new row's `seq`, or `None` when the `message_id` is already stored (or tombstoned).
/// The write takes SQLite's write lock before it reads, so the checks against `messages`
/// and `tombstones`, the new number and the insert see the same state: no fold, erasure or
/// other writer can slip between.
fn insert_if_new(
    db: &dyn Database,
    msg: &NewMessage,
    timing: Option<RequestTiming>,
    now_unix: i64,
) -> Result<Option<i64>, StorageError> {
    // The number: above every stored row and the count's watermark, so a message keeps it
    // for good and numbers only grow. The latency: 'now' is read when the statement runs,
    // after any wait for the write lock, on the database's clock (a server's may differ from
    // ours: never less than what the component measured before sending it).
    let returned = db.execute(
        "INSERT INTO arrivals \
         (seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded, latency_ms) \
         SELECT 1 + max(coalesce((SELECT max(seq) FROM arrivals), 0), \
                        coalesce((SELECT max(seq) FROM messages), 0), \
                        coalesce((SELECT n FROM tallies \
                                  WHERE kind = 'inbox' AND key = 'counted_through'), 0)), \
                ?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                max(?11, (julianday('now') - 2440587.5) * 86400000.0 - ?8) \
         WHERE NOT EXISTS (SELECT 1 FROM messages WHERE message_id = ?1) \
         AND NOT EXISTS (SELECT 1 FROM tombstones WHERE id_hash = ?9 AND expires_at > ?10) \
         ON CONFLICT (message_id) DO NOTHING RETURNING seq",
        &[
            SqlValue::text(msg.message_id.as_str()),
            SqlValue::text(msg.from.as_str()),
            SqlValue::text(msg.to.as_str()),
            SqlValue::text(msg.ts.as_str()),
            SqlValue::text(msg.ts_key.as_str()),
            msg.text.clone().map_or(SqlValue::Null, SqlValue::Text),
            msg.folded_text().map_or(SqlValue::Null, SqlValue::Text),
            timing.map_or(SqlValue::Null, |t| SqlValue::Real(t.started_unix_ms)),
            SqlValue::Text(lifecycle::tombstone_key(&msg.message_id)),
            SqlValue::Integer(now_unix),
            timing.map_or(SqlValue::Null, |t| SqlValue::Real(t.elapsed_ms.max(0.0))),
        ],
    )?;
    Ok(first_value(&returned).and_then(SqlValue::as_i64))
}

/// A message as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: String,
    pub text: Option<String>,
    /// Where this row sits in the order; becomes the next page's cursor.
    pub ts_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<StoredMessage>,
    /// Rows matching the filters, ignoring limit, offset and cursor.
    pub total: i64,
    /// A search that found rows outside the search index (they were scanned).
    pub unindexed: i64,
}

impl MessagePage {
    /// A cursor after the last row, when the page was full (more may follow).
    pub fn next_cursor(&self, limit: u32) -> Option<Cursor> {
        let last = self.messages.last()?;
        (self.messages.len() == limit as usize).then(|| Cursor {
            ts_key: last.ts_key.clone(),
            message_id: last.message_id.clone(),
        })
    }
}

/// The SQL for one `/messages` request: page and total in ONE statement, so both come from
/// the same snapshot of the database (no total smaller than the page it came with). Every
/// part reads `messages` and the rows of `arrivals` it lacks; with [`SearchPlan::Index`],
/// `messages` is read as the rows the search index names plus the rows not yet in it.
pub fn page_sql(query: &MessageQuery, plan: &SearchPlan) -> (String, Vec<SqlValue>) {
    rows_sql(query, plan, true)
}

/// The SQL for one page of the export: [`page_sql`] without the total, which the export
/// does not report (counting every match again for each page would make it quadratic).
/// `query` carries the page's size as `limit` and the previous page's last row as `cursor`;
/// its `offset` is always 0.
pub fn export_sql(query: &MessageQuery, plan: &SearchPlan) -> (String, Vec<SqlValue>) {
    rows_sql(query, plan, false)
}

fn rows_sql(query: &MessageQuery, plan: &SearchPlan, with_total: bool) -> (String, Vec<SqlValue>) {
    let (conditions, filter_params) = filters(query);
    let source = source(query);
    let (total_sql, total_params) = if with_total {
        total_sql(query, &conditions, &filter_params, source, plan)
    } else {
        ("NULL".to_owned(), Vec::new())
    };

    let mut page_conditions = conditions;
    let mut page_params = filter_params;
    if let Some(cursor) = &query.cursor {
        page_conditions.push(if query.descending {
            "(ts_key, message_id) < (?, ?)"
        } else {
            "(ts_key, message_id) > (?, ?)"
        });
        page_params.push(SqlValue::text(cursor.ts_key.as_str()));
        page_params.push(SqlValue::text(cursor.message_id.as_str()));
    }
    // In the order of the `?`s in the text: the search index's query (its hits are read once
    // for page and total), the page (each arm takes the same filters), then the total.
    let mut params = Vec::new();
    if let SearchPlan::Index(index_query) = plan {
        params.push(SqlValue::text(index_query.as_str()));
        params.extend(page_params.iter().cloned());
    }
    params.extend(page_params.iter().cloned());
    params.extend(page_params);
    params.extend(total_params);

    // The page's keys come first, from the index alone where the filters allow, merged in
    // order with the matching `arrivals` rows (SQLite merges the two sorted arms, so an
    // offset steps through index entries, not rows); then only the rows returned are read.
    // A plain OFFSET over the rows steps through each skipped row's table cursor: at offset
    // 900000, 65-115 ms against 36-78 ms this way.
    let where_clause = where_clause(&page_conditions);
    let uncopied_clause = where_clause_with(&page_conditions, UNCOPIED);
    let order = if query.descending {
        "ts_key DESC, message_id DESC"
    } else {
        "ts_key, message_id"
    };
    let outer_order = if query.descending {
        "p.ts_key DESC, p.message_id DESC"
    } else {
        "p.ts_key, p.message_id"
    };
    let stored = match plan {
        SearchPlan::Scan => {
            format!("SELECT ts_key, message_id, seq, 0 AS pending FROM {source} {where_clause}")
        }
        // Both arms by primary key: the rows the index names, and the rows above the
        // watermark (NOT INDEXED: left to itself, the planner walked the whole time index
        // for the second arm, to save sorting a few rows, or a `since` range for the first:
        // 45-70 ms at 1M rows instead of a few).
        SearchPlan::Index(_) => format!(
            "SELECT ts_key, message_id, seq, 0 AS pending FROM messages NOT INDEXED \
             {where_clause} AND seq IN ({INDEXED}) \
             UNION ALL \
             SELECT ts_key, message_id, seq, 0 FROM messages NOT INDEXED \
             {where_clause} AND seq > ({WATERMARK})"
        ),
    };
    let hits = match plan {
        SearchPlan::Scan => "",
        SearchPlan::Index(_) => {
            "hits AS MATERIALIZED (SELECT rowid FROM messages_search \
                                 WHERE messages_search MATCH ?), "
        }
    };
    let sql = format!(
        "WITH {hits}page AS MATERIALIZED ( \
             {stored} \
             UNION ALL \
             SELECT ts_key, message_id, seq, 1 FROM arrivals {uncopied_clause} \
             ORDER BY {order} LIMIT {limit} OFFSET {offset}) \
         SELECT t.total, p.message_id, p.sender, p.recipient, p.ts, p.body_text, p.ts_key \
         FROM (SELECT {total_sql} AS total) AS t \
         LEFT JOIN (SELECT m.message_id, m.sender, m.recipient, m.ts, m.body_text, m.ts_key \
                    FROM page JOIN messages AS m ON m.seq = page.seq WHERE page.pending = 0 \
                    UNION ALL \
                    SELECT i.message_id, i.sender, i.recipient, i.ts, i.body_text, i.ts_key \
                    FROM page JOIN arrivals AS i ON i.seq = page.seq WHERE page.pending = 1) AS p \
         ORDER BY {outer_order}",
        limit = query.limit,
        offset = query.offset,
    );
    (sql, params)
}

/// The query's filters as SQL conditions (each with one `?`) and their parameters.
fn filters(query: &MessageQuery) -> (Vec<&'static str>, Vec<SqlValue>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(from) = &query.from {
        conditions.push("sender = ?");
        params.push(SqlValue::text(from.as_str()));
    }
    if let Some(to) = &query.to {
        conditions.push("recipient = ?");
        params.push(SqlValue::text(to.as_str()));
    }
    if let Some(since) = &query.since_key {
        conditions.push("ts_key >= ?");
        params.push(SqlValue::text(since.as_str()));
    }
    if let Some(q) = &query.q_folded {
        // instr, not LIKE: `%` and `_` are plain characters, and NULL text never matches.
        conditions.push("instr(text_folded, ?) > 0");
        params.push(SqlValue::text(q.as_str()));
    }
    (conditions, params)
}

/// Which index serves a query. Fixed rather than left to the planner, which has no
/// statistics and, given both `from` and `to`, may pick the less selective index (at 1M
/// rows: 1.5 ms instead of 0.03 ms). A sender has fewer messages than a recipient in a
/// typical inbox (many customers, few business numbers), so `from` leads.
fn source(query: &MessageQuery) -> &'static str {
    if query.from.is_some() {
        "messages INDEXED BY messages_by_sender"
    } else if query.to.is_some() {
        "messages INDEXED BY messages_by_recipient"
    } else if query.since_key.is_none() && query.cursor.is_none() && query.q_folded.is_some() {
        // A text search with nothing to narrow it must look at every row. Walking the
        // (ts_key, message_id) index for it would fetch each row out of order (seconds at
        // 1M rows when few match); one sequential pass and a small sort is bounded.
        "messages NOT INDEXED"
    } else {
        "messages"
    }
}

/// The rows of `messages` the search index names (the `hits` of [`rows_sql`]), up to the
/// watermark: a batch is in the index a moment before the watermark moves past it, and
/// until then it is read as the rows above the watermark.
const INDEXED: &str = "SELECT rowid FROM hits WHERE rowid <= (SELECT n FROM tallies \
                       WHERE kind = 'search' AND key = 'indexed_through')";
/// The last row the search index holds: rows above it are searched without it.
const WATERMARK: &str = search::INDEXED_THROUGH;

/// The `total` expression and its parameters: the counts the fold maintains over
/// `messages` where they answer the filters, plus a count of the matching `arrivals` rows
/// (a few hundred at most, see [`super::fold`]).
fn total_sql(
    query: &MessageQuery,
    conditions: &[&str],
    filter_params: &[SqlValue],
    source: &str,
    plan: &SearchPlan,
) -> (String, Vec<SqlValue>) {
    // The rows the counts in `tallies` leave out, and the rows `messages` lacks.
    let uncounted = format!(
        "(SELECT count(*) FROM arrivals {})",
        where_clause_with(conditions, UNCOUNTED)
    );
    let uncopied = format!(
        "(SELECT count(*) FROM arrivals {})",
        where_clause_with(conditions, UNCOPIED)
    );
    let twice = || [filter_params, filter_params].concat();
    let only = |field: bool| field && conditions.len() == 1;
    if conditions.is_empty() {
        return (
            format!(
                "(SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'messages') + {uncounted}"
            ),
            Vec::new(),
        );
    }
    if only(query.from.is_some()) {
        return (
            format!(
                "coalesce((SELECT n FROM tallies WHERE kind = 'sender' AND key = ?), 0) \
                 + {uncounted}"
            ),
            twice(),
        );
    }
    if only(query.to.is_some()) {
        return (
            format!(
                "coalesce((SELECT n FROM tallies WHERE kind = 'recipient' AND key = ?), 0) \
                 + {uncounted}"
            ),
            twice(),
        );
    }
    if let Some(since) = query.since_key.as_deref().filter(|_| conditions.len() == 1) {
        if let Some(hour) = since.get(..HOUR_KEY_LEN) {
            // Whole hours after since's own hour (counted, or not yet), plus the rows of that
            // hour from since on (copied, or not yet). Every key of the hour starts with
            // `hour` and then ':', which sorts below ';'.
            let next_hour = SqlValue::text(format!("{hour};"));
            return (
                format!(
                    "(coalesce((SELECT sum(n) FROM tallies WHERE kind = 'hour' AND key > ?), 0) \
                     + (SELECT count(*) FROM messages WHERE ts_key >= ? AND ts_key < ?) \
                     + (SELECT count(*) FROM arrivals WHERE ts_key >= ? AND {UNCOUNTED}) \
                     + (SELECT count(*) FROM arrivals \
                        WHERE ts_key >= ? AND ts_key < ? AND {UNCOPIED}))"
                ),
                vec![
                    SqlValue::text(hour),
                    SqlValue::text(since),
                    next_hour.clone(),
                    next_hour.clone(),
                    SqlValue::text(since),
                    next_hour,
                ],
            );
        }
    }
    let filters = where_clause(conditions);
    match plan {
        SearchPlan::Scan => (
            format!("((SELECT count(*) FROM {source} {filters}) + {uncopied})"),
            twice(),
        ),
        // The index's hits are read once, into `hits`, for page and total.
        SearchPlan::Index(_) => {
            let mut params = filter_params.to_vec();
            params.extend(twice());
            (
                format!(
                    "((SELECT count(*) FROM messages NOT INDEXED {filters} AND seq IN ({INDEXED})) \
                     + (SELECT count(*) FROM messages NOT INDEXED {filters} \
                        AND seq > ({WATERMARK})) \
                     + {uncopied})"
                ),
                params,
            )
        }
    }
}

/// Length of the hour prefix of an instant key, "2025-01-15T10"; hour tallies are keyed by it.
const HOUR_KEY_LEN: usize = 13;

/// A row of `arrivals` the counts in `tallies` do not include yet (see [`super::fold`]).
const UNCOUNTED: &str =
    "seq > (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'counted_through')";
/// A row of `arrivals` that `messages` does not hold yet (see [`super::fold`]). A row the
/// copy has not reached is numbered above every row of `messages` (it was stored after the
/// last copy, and numbers only grow), so the comparison settles nearly every row; only a
/// row copied but not yet cleared, during a fold, is looked up.
const UNCOPIED: &str = "(seq > (SELECT coalesce(max(seq), 0) FROM messages) \
                        OR NOT EXISTS (SELECT 1 FROM messages AS c WHERE c.seq = arrivals.seq))";

/// [`where_clause`] with one more condition.
fn where_clause_with(conditions: &[&str], extra: &'static str) -> String {
    let mut all = conditions.to_vec();
    all.push(extra);
    where_clause(&all)
}

fn where_clause(conditions: &[&str]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// How `query` reads `messages`, and how many rows wait outside the search index: a text
/// search with no sender or recipient to narrow it asks the index ([`search::plan`]); a
/// sender's or recipient's few hundred rows are read through their own index instead.
fn search_plan(db: &dyn Database, query: &MessageQuery) -> Result<(SearchPlan, i64), StorageError> {
    match &query.q_folded {
        Some(term) if query.from.is_none() && query.to.is_none() => search::plan(db, term),
        _ => Ok((SearchPlan::Scan, 0)),
    }
}

/// One page of messages and the total (see [`search_plan`] for a text search).
pub fn list_messages(db: &dyn Database, query: &MessageQuery) -> Result<MessagePage, StorageError> {
    let (plan, unindexed) = search_plan(db, query)?;
    let (sql, params) = page_sql(query, &plan);
    let rows = db.execute(&sql, &params)?;
    let total = first_value(&rows).and_then(SqlValue::as_i64).unwrap_or(0);
    Ok(MessagePage {
        messages: stored_messages(&rows),
        total,
        unindexed,
    })
}

/// Rows per page of the export. A page is one statement and one host call; it is also what
/// the instance holds at once: typically 256 x ~200 bytes, at most 256 texts of 4096
/// characters (4 MiB of UTF-8), whatever the number of rows exported.
pub const EXPORT_PAGE_ROWS: u32 = 256;

/// The next page of an export: up to `query.limit` matching rows after `query.cursor`, in
/// the list order. Keyset paging, never `OFFSET`: each page costs the same at any depth.
/// Every page reads `messages` and `arrivals` in one statement, so a fold between two
/// pages moves rows from one table to the other without any row being lost or repeated.
pub fn export_page(
    db: &dyn Database,
    query: &MessageQuery,
) -> Result<Vec<StoredMessage>, StorageError> {
    let (plan, _) = search_plan(db, query)?;
    let (sql, params) = export_sql(query, &plan);
    Ok(stored_messages(&db.execute(&sql, &params)?))
}

/// Rows of [`rows_sql`]: the total in column 0 (ignored here), then the message.
fn stored_messages(rows: &Rows) -> Vec<StoredMessage> {
    rows.iter()
        .filter_map(|row| {
            let text = |i: usize| row.get(i).and_then(SqlValue::as_str).map(str::to_owned);
            Some(StoredMessage {
                message_id: text(1)?,
                from: text(2)?,
                to: text(3)?,
                ts: text(4)?,
                text: text(5),
                ts_key: text(6)?,
            })
        })
        .collect()
}

/// The message stored under `message_id`, wherever it sits (`messages` or `arrivals`, read
/// in one statement so a fold cannot hide it between two reads).
pub fn get_message(
    db: &dyn Database,
    message_id: &str,
) -> Result<Option<StoredMessage>, StorageError> {
    let rows = db.execute(
        "SELECT NULL, message_id, sender, recipient, ts, body_text, ts_key \
         FROM messages WHERE message_id = ?1 \
         UNION ALL \
         SELECT NULL, message_id, sender, recipient, ts, body_text, ts_key \
         FROM arrivals WHERE message_id = ?1 \
         LIMIT 1",
        &[SqlValue::text(message_id)],
    )?;
    Ok(stored_messages(&rows).into_iter().next())
}

/// Messages per hour, for the hours from `first_hour` to `last_hour` (hour keys,
/// `2025-01-15T10`, both included), oldest first; hours without messages are left out.
/// Counted messages are in the hour tallies; the rows the fold has not counted yet are
/// counted here and added, as every other read does.
pub fn hourly(
    db: &dyn Database,
    first_hour: &str,
    last_hour: &str,
) -> Result<Vec<(String, i64)>, StorageError> {
    // Every key of an hour starts with its hour key, then ':', which sorts below ';'.
    let rows = db.execute(
        &format!(
            "SELECT hour, sum(n) FROM ( \
             SELECT key AS hour, n FROM tallies WHERE kind = 'hour' AND key >= ?1 AND key <= ?2 \
             UNION ALL \
             SELECT substr(ts_key, 1, 13), count(*) FROM arrivals \
             WHERE ts_key >= ?1 AND ts_key < ?3 AND {UNCOUNTED} \
             GROUP BY substr(ts_key, 1, 13)) \
         GROUP BY hour HAVING sum(n) > 0 ORDER BY hour"
        ),
        &[
            SqlValue::text(first_hour),
            SqlValue::text(last_hour),
            SqlValue::text(format!("{last_hour};")),
        ],
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let hour = row.first().and_then(SqlValue::as_str)?;
            let count = row.get(1).and_then(SqlValue::as_i64)?;
            Some((hour.to_owned(), count))
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub total_messages: i64,
    pub senders_count: i64,
    /// Top senders: count descending, then `from` ascending.
    pub top_senders: Vec<(String, i64)>,
    pub first_message_ts: Option<String>,
    pub last_message_ts: Option<String>,
}

/// Number of senders `/stats` lists.
pub const TOP_SENDERS: u32 = 10;

/// Reads the counts in `tallies` and the rows of `arrivals` not counted yet, in one statement
/// (no scan of `messages`), and adds them up.
///
/// The statement returns rows of five kinds: the totals (pending messages and senders the
/// stored figures do not know yet included), the stored top ten, the pending senders that
/// can reach it, and the first and last messages. Counts only grow, so a sender whose count
/// stays below the stored tenth is behind all ten: only pending senders at or above it can
/// enter, and few rows cross from the host. First and last are the first and last messages
/// in the order of `GET /messages` (instant, then `message_id`): one index entry each, so
/// the fold need not keep them.
pub fn stats(db: &dyn Database) -> Result<Stats, StorageError> {
    let rows: Rows = db.execute(
        &format!(
            "WITH pending AS MATERIALIZED (SELECT sender FROM arrivals WHERE {UNCOUNTED}) \
         SELECT 0, NULL, \
             (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'messages') \
                 + (SELECT count(*) FROM pending), \
             (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'senders') \
                 + (SELECT count(*) FROM (SELECT DISTINCT sender FROM pending) AS p \
                    WHERE NOT EXISTS (SELECT 1 FROM tallies \
                                      WHERE kind = 'sender' AND key = p.sender)) \
         UNION ALL SELECT * FROM (SELECT 1, key, n, NULL FROM tallies INDEXED BY tallies_top_senders \
                                  WHERE kind = 'sender' ORDER BY n DESC, key LIMIT {TOP_SENDERS}) \
         UNION ALL SELECT 2, sender, n, NULL FROM ( \
             SELECT p.sender, count(*) + coalesce( \
                 (SELECT n FROM tallies WHERE kind = 'sender' AND key = p.sender), 0) AS n \
             FROM pending AS p GROUP BY p.sender) \
         WHERE n >= coalesce((SELECT n FROM tallies INDEXED BY tallies_top_senders \
                              WHERE kind = 'sender' \
                              ORDER BY n DESC, key LIMIT 1 OFFSET {tenth}), 0) \
         UNION ALL SELECT * FROM (SELECT 3, ts, NULL, NULL FROM ( \
             SELECT * FROM (SELECT ts, ts_key, message_id FROM messages INDEXED BY messages_by_ts \
                            ORDER BY ts_key, message_id LIMIT 1) \
             UNION ALL SELECT ts, ts_key, message_id FROM arrivals) \
             ORDER BY ts_key, message_id LIMIT 1) \
         UNION ALL SELECT * FROM (SELECT 4, ts, NULL, NULL FROM ( \
             SELECT * FROM (SELECT ts, ts_key, message_id FROM messages INDEXED BY messages_by_ts \
                            ORDER BY ts_key DESC, message_id DESC LIMIT 1) \
             UNION ALL SELECT ts, ts_key, message_id FROM arrivals) \
             ORDER BY ts_key DESC, message_id DESC LIMIT 1)",
            tenth = TOP_SENDERS - 1
        ),
        &[],
    )?;
    let mut stats = Stats {
        total_messages: 0,
        senders_count: 0,
        top_senders: Vec::new(),
        first_message_ts: None,
        last_message_ts: None,
    };
    let mut stored_top: Vec<(String, i64)> = Vec::new();
    let mut new_senders: Vec<(String, i64)> = Vec::new();
    for row in &rows {
        let text = |i: usize| row.get(i).and_then(SqlValue::as_str);
        let int = |i: usize| row.get(i).and_then(SqlValue::as_i64);
        match (int(0), text(1)) {
            (Some(0), _) => {
                stats.total_messages += int(2).unwrap_or(0);
                stats.senders_count += int(3).unwrap_or(0);
            }
            (Some(1), Some(sender)) => stored_top.push((sender.to_owned(), int(2).unwrap_or(0))),
            (Some(2), Some(sender)) => new_senders.push((sender.to_owned(), int(2).unwrap_or(0))),
            (Some(3), Some(ts)) => stats.first_message_ts = Some(ts.to_owned()),
            (Some(4), Some(ts)) => stats.last_message_ts = Some(ts.to_owned()),
            _ => {}
        }
    }
    stored_top.retain(|(sender, _)| !new_senders.iter().any(|(s, _)| s == sender));
    let mut counts = stored_top;
    counts.append(&mut new_senders);
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(TOP_SENDERS as usize);
    stats.top_senders = counts;
    Ok(stats)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::query;
    use crate::storage::testing::{
        check_reads, downgrade_to_version_2, ids, inserted, msg, store_as_version_2, TestDb,
    };
    use crate::storage::{fold, prepare, read_counters};

    fn store(db: &TestDb, m: &NewMessage) -> Inserted {
        insert_message(db, m).unwrap()
    }

    fn fresh() -> TestDb {
        let db = TestDb::new();
        prepare(&db).unwrap();
        db
    }

    /// Where stored messages sit when a read runs: still in `arrivals`, folded into
    /// `messages`, or some of each. Every read must give the same answer in all three.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Layout {
        Pending,
        Folded,
        Split,
    }
    const LAYOUTS: [Layout; 3] = [Layout::Pending, Layout::Folded, Layout::Split];

    /// A fresh database holding `messages`, laid out as `layout` says.
    fn stored(messages: &[NewMessage], layout: Layout) -> TestDb {
        let db = fresh();
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(store(&db, m), Inserted::Created, "{}", m.message_id);
            if layout == Layout::Split && i == messages.len() / 2 {
                fold::fold(&db).unwrap();
            }
        }
        if layout == Layout::Folded {
            fold::fold(&db).unwrap();
            assert_eq!(fold::pending(&db).unwrap(), 0);
        }
        db
    }

    #[test]
    fn first_write_wins_and_aggregates_count_once() {
        let db = fresh();
        let first = msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", Some("Hello"));
        let second = msg("m1", "+9", "+9", "2030-01-01T00:00:00Z", Some("changed"));
        assert_eq!(store(&db, &first), Inserted::Created);
        assert_eq!(store(&db, &second), Inserted::Duplicate);
        let page = list_messages(&db, &MessageQuery::default()).unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.messages[0].from, "+1");
        assert_eq!(page.messages[0].text.as_deref(), Some("Hello"));
        let s = stats(&db).unwrap();
        assert_eq!((s.total_messages, s.senders_count), (1, 1));
        assert_eq!(s.top_senders, [("+1".to_owned(), 1)]);
    }

    #[test]
    fn the_storing_statement_counts_created_once_per_row() {
        let db = fresh();
        let m = msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None);
        assert_eq!(insert_message(&db, &m).unwrap(), Inserted::Created);
        assert_eq!(insert_message(&db, &m).unwrap(), Inserted::Duplicate);
        let created = crate::metrics::WebhookResult::Created.labels();
        let counted: Vec<f64> = read_counters(&db)
            .unwrap()
            .into_iter()
            .filter(|r| r.name == crate::metrics::WEBHOOK_REQUESTS && r.labels == created)
            .map(|r| r.value)
            .collect();
        assert_eq!(counted, [1.0], "the trigger's labels must match metrics.rs");
        assert!(db.conn().is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_version_2_database_is_upgraded_by_an_insert_and_counts_every_message_once() {
        let db = fresh();
        store(&db, &msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None));
        downgrade_to_version_2(&db);
        store_as_version_2(&db, &msg("m2", "+3", "+2", "2025-01-15T11:00:00Z", None));

        let m3 = msg("m3", "+3", "+4", "2025-01-15T09:00:00Z", None);
        let path = db.path();
        let mut session = crate::storage::Session::new(move || {
            Ok(Box::new(TestDb::open(&path)) as Box<dyn Database>)
        });
        assert_eq!(inserted(&mut session, &m3), Inserted::Created);
        assert_eq!(inserted(&mut session, &m3), Inserted::Duplicate);
        assert_eq!(
            crate::storage::schema_version(&db).unwrap(),
            crate::storage::SCHEMA_VERSION
        );
        for _ in 0..2 {
            check_reads(
                &db,
                &[
                    msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None),
                    msg("m2", "+3", "+2", "2025-01-15T11:00:00Z", None),
                    m3.clone(),
                ],
                3,
            );
            fold::fold(&db).unwrap();
        }
    }

    /// A message keeps the number it was stored under, and no number is handed out twice,
    /// even once the highest stored row is gone.
    #[test]
    fn numbers_only_grow_and_a_message_keeps_its_own() {
        let db = fresh();
        let seq_of = |id: &str| -> i64 {
            db.conn()
                .query_row(
                    "SELECT seq FROM arrivals WHERE message_id = ?1 \
                     UNION ALL SELECT seq FROM messages WHERE message_id = ?1 LIMIT 1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        store(&db, &msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None));
        store(&db, &msg("m2", "+1", "+2", "2025-01-15T10:00:00Z", None));
        let (one, two) = (seq_of("m1"), seq_of("m2"));
        assert!(two > one);
        fold::fold(&db).unwrap();
        assert_eq!(
            (seq_of("m1"), seq_of("m2")),
            (one, two),
            "the fold keeps numbers"
        );
        db.conn()
            .execute_batch("DELETE FROM messages WHERE seq = (SELECT max(seq) FROM messages)")
            .unwrap();
        store(&db, &msg("m3", "+1", "+2", "2025-01-17T10:00:00Z", None));
        assert!(seq_of("m3") > two);
    }

    /// A database that fails its `n`th statement, as a server that goes away mid-fold.
    struct FailsAt {
        db: TestDb,
        left: std::cell::Cell<usize>,
    }
    impl Database for FailsAt {
        fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
            let left = self.left.get();
            self.left.set(left.wrapping_sub(1));
            if left == 0 {
                return Err(StorageError::from_text("connection reset"));
            }
            self.db.execute(sql, params)
        }
    }

    #[test]
    fn a_fold_stopped_at_any_statement_leaves_every_read_exact_and_the_next_completes_it() {
        let mut all = Vec::new();
        let db = fresh();
        for step in 0.. {
            for i in 0..5 {
                let m = msg(
                    &format!("s{step}m{i}"),
                    &format!("+{}", i % 3 + 1),
                    "+102",
                    &format!("2025-01-1{}T1{i}:00:00Z", 5 + step % 3),
                    Some("hello"),
                );
                store(&db, &m);
                all.push(m);
            }
            let failing = FailsAt {
                db: TestDb::open(&db.path()),
                left: std::cell::Cell::new(step),
            };
            if fold::fold(&failing).is_ok() {
                break;
            }
            check_reads(&db, &all, all.len());
        }
        fold::fold(&db).unwrap();
        check_reads(&db, &all, all.len());
        assert_eq!(fold::pending(&db).unwrap(), 0);
    }

    #[test]
    fn order_is_by_instant_then_id_and_filters_combine() {
        for layout in LAYOUTS {
            eprintln!("layout: {layout:?}");
            order_and_filters(layout);
        }
    }

    fn order_and_filters(layout: Layout) {
        let db = stored(
            &[
                msg(
                    "b",
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00.5Z",
                    Some("Fifty% OFF_today"),
                ),
                msg("a", "+1", "+3", "2025-01-15T10:00:00.5Z", Some("hello")),
                msg("c", "+4", "+2", "2025-01-15T10:00:00Z", None),
                msg(
                    "d",
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00.05Z",
                    Some("HÉLLO world"),
                ),
                msg("e", "+1", "+2", "2025-01-15T10:00:01Z", Some("50 percent")),
            ],
            layout,
        );
        assert_eq!(
            ids(&db, ""),
            (
                vec!["c".into(), "d".into(), "a".into(), "b".into(), "e".into()],
                5
            )
        );
        assert_eq!(ids(&db, "from=%2B1").1, 4);
        assert_eq!(ids(&db, "to=%2B2").1, 4);
        assert_eq!(
            ids(&db, "from=%2B1&to=%2B2"),
            (vec!["d".into(), "b".into(), "e".into()], 3)
        );
        assert_eq!(
            ids(&db, "since=2025-01-15T10:00:00.5Z"),
            (vec!["a".into(), "b".into(), "e".into()], 3)
        );
        assert_eq!(ids(&db, "q=h%C3%A9llo"), (vec!["d".into()], 1));
        assert_eq!(ids(&db, "q=hello"), (vec!["a".into()], 1));
        assert_eq!(ids(&db, "q=%25"), (vec!["b".into()], 1), "% is literal");
        assert_eq!(ids(&db, "q=fifty_"), (vec![], 0), "_ is literal");
        assert_eq!(ids(&db, "q=fifty%25%25"), (vec![], 0), "% is no wildcard");
        assert_eq!(ids(&db, "q=y%25+off_"), (vec!["b".into()], 1));
        assert_eq!(
            ids(&db, "from=%2B1&to=%2B2&since=2025-01-15T10:00:00.1Z&q=T"),
            (vec!["b".into(), "e".into()], 2)
        );
        assert_eq!(
            ids(&db, "limit=2&offset=1"),
            (vec!["d".into(), "a".into()], 5)
        );
        assert_eq!(ids(&db, "offset=50"), (vec![], 5));
        assert_eq!(ids(&db, "from=%2B999"), (vec![], 0));
    }

    #[test]
    fn since_totals_match_a_count_at_every_boundary() {
        for layout in LAYOUTS {
            eprintln!("layout: {layout:?}");
            since_totals(layout);
        }
    }

    fn since_totals(layout: Layout) {
        let stamps = [
            "2024-12-31T23:59:59.999Z",
            "2025-01-15T09:00:00Z",
            "2025-01-15T09:59:59.5Z",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.000Z",
            "2025-01-15T10:30:00Z",
            "2025-01-15T11:00:00Z",
            "2025-01-16T10:00:00Z",
        ];
        let messages: Vec<_> = stamps
            .iter()
            .enumerate()
            .map(|(i, ts)| msg(&format!("m{i}"), "+1", "+2", ts, Some("x")))
            .collect();
        let db = stored(&messages, layout);
        let probes = stamps.iter().copied().chain([
            "2000-01-01T00:00:00Z",
            "2025-01-15T10:00:00.0001Z",
            "2025-01-15T10:59:59.999999Z",
            "2099-01-01T00:00:00Z",
        ]);
        for since in probes {
            let key = crate::timestamp::instant_key(since).unwrap();
            let expected: i64 = db
                .conn()
                .query_row(
                    "SELECT count(*) FROM (SELECT ts_key FROM messages \
                     UNION ALL SELECT ts_key FROM arrivals) WHERE ts_key >= ?",
                    [&key],
                    |r| r.get(0),
                )
                .unwrap();
            let (_, total) = ids(&db, &format!("since={since}"));
            assert_eq!(total, expected, "since={since}");
            // The general count (another filter beside since) agrees.
            assert_eq!(ids(&db, &format!("since={since}&q=x")).1, expected);
        }
    }

    #[test]
    fn cursors_walk_every_row_once() {
        let db = fresh();
        for i in 0..25 {
            let ts = format!("2025-01-15T10:00:{:02}Z", i % 7);
            store(&db, &msg(&format!("m{i:02}"), "+1", "+2", &ts, None));
        }
        let mut seen = Vec::new();
        let mut q = query::parse("limit=4").unwrap();
        loop {
            let page = list_messages(&db, &q).unwrap();
            assert_eq!(page.total, 25);
            seen.extend(page.messages.iter().map(|m| m.message_id.clone()));
            match page.next_cursor(q.limit) {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let all = ids(&db, "limit=100").0;
        assert_eq!(seen, all);
    }

    /// Every row of a listing, read the way the export reads it: page after page by cursor.
    fn exported(db: &TestDb, raw_query: &str, page_rows: u32) -> Vec<String> {
        let mut query = query::parse_export(raw_query).unwrap();
        query.limit = page_rows;
        let mut out = Vec::new();
        loop {
            let page = export_page(db, &query).unwrap();
            out.extend(page.iter().map(|m| m.message_id.clone()));
            match page.last() {
                Some(last) if page.len() == page_rows as usize => {
                    query.cursor = Some(Cursor {
                        ts_key: last.ts_key.clone(),
                        message_id: last.message_id.clone(),
                    });
                }
                _ => return out,
            }
        }
    }

    #[test]
    fn export_pages_walk_every_match_once_in_either_order() {
        let mut all = Vec::new();
        for i in 0..40 {
            let ts = format!("2025-01-15T1{}:00:{:02}Z", i % 3, i % 7);
            let from = if i % 4 == 0 { "+1" } else { "+2" };
            let text = (i % 5 == 0).then_some("Hello");
            all.push(msg(&format!("m{i:02}"), from, "+9", &ts, text));
        }
        for layout in LAYOUTS {
            let db = stored(&all, layout);
            for raw in [
                "",
                "from=%2B1",
                "q=hello",
                "since=2025-01-15T11:00:00Z",
                "from=%2B2&q=x",
            ] {
                let want = ids(&db, &format!("{raw}&limit=100")).0;
                for rows in [1, 3, 7, 100] {
                    assert_eq!(exported(&db, raw, rows), want, "{layout:?} {raw} {rows}");
                    let mut newest_first = want.clone();
                    newest_first.reverse();
                    assert_eq!(
                        exported(&db, &format!("{raw}&order=desc"), rows),
                        newest_first,
                        "{layout:?} {raw} {rows} desc"
                    );
                }
            }
        }
    }

    #[test]
    fn a_fold_between_export_pages_loses_and_repeats_nothing() {
        let db = fresh();
        let mut query = query::parse_export("").unwrap();
        query.limit = 5;
        for i in 0..12 {
            store(
                &db,
                &msg(
                    &format!("m{i:02}"),
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00Z",
                    None,
                ),
            );
        }
        let first = export_page(&db, &query).unwrap();
        fold::fold(&db).unwrap();
        let last = first.last().unwrap();
        query.cursor = Some(Cursor {
            ts_key: last.ts_key.clone(),
            message_id: last.message_id.clone(),
        });
        let rest = export_page(&db, &query).unwrap();
        let got: Vec<_> = first
            .iter()
            .chain(&rest)
            .map(|m| m.message_id.as_str())
            .collect();
        assert_eq!(
            got,
            ["m00", "m01", "m02", "m03", "m04", "m05", "m06", "m07", "m08", "m09"]
        );
    }

    #[test]
    fn newest_first_pages_with_the_cursor_and_keeps_totals() {
        for layout in LAYOUTS {
            let mut all = Vec::new();
            for i in 0..9 {
                let ts = format!("2025-01-15T10:00:0{}Z", i % 4);
                all.push(msg(&format!("m{i}"), "+1", "+2", &ts, None));
            }
            let db = stored(&all, layout);
            let oldest_first = ids(&db, "").0;
            let mut seen = Vec::new();
            let mut q = query::parse("limit=4&order=desc").unwrap();
            loop {
                let page = list_messages(&db, &q).unwrap();
                assert_eq!(page.total, 9);
                seen.extend(page.messages.iter().map(|m| m.message_id.clone()));
                match page.next_cursor(q.limit) {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            seen.reverse();
            assert_eq!(seen, oldest_first, "{layout:?}");
        }
    }

    #[test]
    fn one_message_is_found_wherever_it_sits() {
        let odd = ["export", "a/b", "x' OR '1'='1", "%41", "\u{0}nul", "é \n"];
        let all: Vec<_> = odd
            .iter()
            .enumerate()
            .map(|(i, id)| {
                msg(
                    id,
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00Z",
                    Some(&format!("t{i}")),
                )
            })
            .collect();
        for layout in LAYOUTS {
            let db = stored(&all, layout);
            for (i, id) in odd.iter().enumerate() {
                let found = get_message(&db, id).unwrap().expect(id);
                assert_eq!(found.message_id, *id);
                assert_eq!(found.text.as_deref(), Some(format!("t{i}").as_str()));
                assert_eq!(found.ts, "2025-01-15T10:00:00Z");
            }
            assert_eq!(get_message(&db, "A").unwrap(), None);
            assert_eq!(get_message(&db, "").unwrap(), None);
        }
    }

    #[test]
    fn hourly_counts_match_a_scan_wherever_the_messages_sit() {
        let mut all = Vec::new();
        for i in 0..50 {
            let ts = format!(
                "2025-01-{:02}T{:02}:{:02}:00Z",
                14 + i % 3,
                (i * 7) % 24,
                i % 60
            );
            all.push(msg(&format!("m{i}"), "+1", "+2", &ts, None));
        }
        all.push(msg("edge", "+1", "+2", "2025-01-15T23:59:59.999999Z", None));
        for layout in LAYOUTS {
            let db = stored(&all, layout);
            for (first, last) in [
                ("2025-01-14T00", "2025-01-16T23"),
                ("2025-01-15T00", "2025-01-15T23"),
                ("2025-01-15T07", "2025-01-15T07"),
                ("2030-01-01T00", "2030-01-02T00"),
            ] {
                let mut want = std::collections::BTreeMap::new();
                for m in &all {
                    let hour = &m.ts_key[..13];
                    if hour >= first && hour <= last {
                        *want.entry(hour.to_owned()).or_insert(0i64) += 1;
                    }
                }
                let want: Vec<_> = want.into_iter().collect();
                assert_eq!(
                    hourly(&db, first, last).unwrap(),
                    want,
                    "{layout:?} {first}"
                );
            }
        }
    }

    #[test]
    fn stats_of_an_empty_inbox() {
        assert_eq!(
            stats(&fresh()).unwrap(),
            Stats {
                total_messages: 0,
                senders_count: 0,
                top_senders: vec![],
                first_message_ts: None,
                last_message_ts: None
            }
        );
    }

    #[test]
    fn stats_top_ten_with_ties_and_instants() {
        let mut messages = Vec::new();
        for sender in 1..=15 {
            for _ in 0..(sender % 4 + 1) {
                let n = messages.len() + 1;
                let ts = format!("2025-01-15T10:{:02}:00.{n}Z", n % 60);
                messages.push(msg(
                    &format!("m{n}"),
                    &format!("+{sender}"),
                    "+2",
                    &ts,
                    None,
                ));
            }
        }
        let n = messages.len() as i64;
        messages.push(msg("early", "+15", "+2", "2025-01-15T09:59:59.999Z", None));
        messages.push(msg("late", "+15", "+2", "2025-01-15T11:00:00.000Z", None));
        // The same instants written differently: first and last follow the list's order.
        messages.push(msg("early2", "+1", "+2", "2025-01-15T09:59:59.9990Z", None));
        messages.push(msg("late2", "+1", "+2", "2025-01-15T11:00:00Z", None));
        for layout in LAYOUTS {
            let s = stats(&stored(&messages, layout)).unwrap();
            assert_eq!(s.total_messages, n + 4, "{layout:?}");
            assert_eq!(s.senders_count, 15, "{layout:?}");
            assert_eq!(
                s.first_message_ts.as_deref(),
                Some("2025-01-15T09:59:59.999Z"),
                "{layout:?}"
            );
            assert_eq!(
                s.last_message_ts.as_deref(),
                Some("2025-01-15T11:00:00Z"),
                "{layout:?}: late2 sorts after late"
            );
            let top: Vec<_> = s
                .top_senders
                .iter()
                .map(|(f, c)| format!("{f}:{c}"))
                .collect();
            assert_eq!(
                top,
                [
                    "+15:6", "+1:4", "+11:4", "+3:4", "+7:4", "+10:3", "+14:3", "+2:3", "+6:3",
                    "+13:2"
                ],
                "{layout:?}"
            );
        }
    }

    /// A pending sender whose count only ties the stored tenth still enters the top ten
    /// when its number sorts first.
    #[test]
    fn a_pending_sender_tying_the_tenth_enters_the_top_ten_by_name() {
        let db = fresh();
        let mut all = Vec::new();
        for sender in 2..=12 {
            for n in 0..2 {
                let m = msg(
                    &format!("s{sender}-{n}"),
                    &format!("+{sender}"),
                    "+99",
                    "2025-01-15T10:00:00Z",
                    None,
                );
                store(&db, &m);
                all.push(m);
            }
        }
        fold::fold(&db).unwrap();
        for n in 0..2 {
            let m = msg(
                &format!("s1-{n}"),
                "+1",
                "+99",
                "2025-01-15T11:00:00Z",
                None,
            );
            store(&db, &m);
            all.push(m);
        }
        check_reads(&db, &all, all.len());
        let top = stats(&db).unwrap().top_senders;
        assert_eq!(top.first(), Some(&("+1".to_owned(), 2)));
    }

    /// Random messages, folded at random points: every list, total and stat must equal what
    /// a plain scan of all stored messages gives.
    #[test]
    fn every_read_matches_a_reference_wherever_the_messages_sit() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let db = fresh();
        let mut all: Vec<NewMessage> = Vec::new();
        for round in 0..6 {
            for _ in 0..next(60) + 1 {
                let id = format!("m{}", next(400));
                let from = format!("+{}", next(13) * next(3) + 1);
                let to = format!("+{}", next(5) + 100);
                let ts = format!(
                    "2025-01-{:02}T{:02}:{:02}:00{}Z",
                    next(2) + 15,
                    next(3) + 9,
                    next(60),
                    [".5", "", ".500"][next(3) as usize]
                );
                let text = ["Hello", "hello world", "other"]
                    .get(next(4) as usize)
                    .copied();
                let m = msg(&id, &from, &to, &ts, text);
                let known = all.iter().any(|s| s.message_id == id);
                let want = if known {
                    Inserted::Duplicate
                } else {
                    Inserted::Created
                };
                assert_eq!(store(&db, &m), want, "{id}");
                if !known {
                    all.push(m);
                }
            }
            if round % 2 == 1 || next(2) == 0 {
                fold::fold(&db).unwrap();
            }
            check_reads(&db, &all, all.len());
        }
    }
}
