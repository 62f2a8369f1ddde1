//! Lists of messages: the SQL of a `/messages` page (rows and exact total in one statement)
//! and of an export page, over `messages` and the rows of `received` not copied yet.

use super::fold::{HOUR_KEY_LEN, UNCOPIED, UNCOUNTED};
use super::messages::{stored_messages, StoredMessage};
use super::search::{self, SearchPlan};
use super::{first_value, Database, SqlValue, StorageError};
use crate::query::{Cursor, MessageQuery};

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
/// part reads `messages` and the rows of `received` it lacks; with [`SearchPlan::Index`],
/// `messages` is read as the rows the search index names plus the rows not yet in it.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(super) fn page_sql(query: &MessageQuery, plan: &SearchPlan) -> (String, Vec<SqlValue>) {
    rows_sql(query, plan, true, SKIP_HOURS_FROM_OFFSET)
}

/// From this offset on, a page with no filter and no cursor starts at the hour the offset
/// falls in, found by adding up the hour counts in `tallies`, and steps over only the rest
/// of the offset: a deep page costs the same as the first, instead of one index entry per
/// row skipped. Below it, stepping over the rows costs less than adding up every hour.
const SKIP_HOURS_FROM_OFFSET: u64 = 10_000;

/// The SQL for one page of the export: [`page_sql`] without the total, which the export
/// does not report (counting every match again for each page would make it quadratic).
/// `query` carries the page's size as `limit` and the previous page's last row as `cursor`;
/// its `offset` is always 0.
pub fn export_sql(query: &MessageQuery, plan: &SearchPlan) -> (String, Vec<SqlValue>) {
    rows_sql(query, plan, false, u64::MAX)
}

fn rows_sql(
    query: &MessageQuery,
    plan: &SearchPlan,
    with_total: bool,
    skip_hours_from: u64,
) -> (String, Vec<SqlValue>) {
    let (conditions, filter_params) = filters(query);
    let skip_hours = conditions.is_empty()
        && query.cursor.is_none()
        && *plan == SearchPlan::Scan
        && query.offset >= skip_hours_from;
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
    // A deep page starts at its hour (see [`SKIP_HOURS_FROM_OFFSET`]): `skip` names the hour
    // and how many rows come before it in the page's order.
    if skip_hours {
        page_conditions.push(if query.descending {
            "ts_key < (SELECT hour FROM skip) || ';'"
        } else {
            "ts_key >= (SELECT hour FROM skip)"
        });
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
    // order with the matching `received` rows (SQLite merges the two sorted arms, so an
    // offset steps through index entries, not rows); then only the rows returned are read.
    // A plain OFFSET over the rows would step through each skipped row's table cursor.
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
        // for the second arm, to save sorting a few rows, or a `since` range for the first).
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
    let (skip, offset) = if skip_hours {
        (
            skip_hours_sql(query.descending, query.offset),
            format!("{} - (SELECT before FROM skip)", query.offset),
        )
    } else {
        (String::new(), query.offset.to_string())
    };
    let sql = format!(
        "WITH {hits}{skip}page AS MATERIALIZED ( \
             {stored} \
             UNION ALL \
             SELECT ts_key, message_id, seq, 1 FROM received {uncopied_clause} \
             ORDER BY {order} LIMIT {limit} OFFSET {offset}) \
         SELECT t.total, p.message_id, p.sender, p.recipient, p.ts, p.body_text, p.ts_key \
         FROM (SELECT {total_sql} AS total) AS t \
         LEFT JOIN (SELECT m.message_id, m.sender, m.recipient, m.ts, m.body_text, m.ts_key \
                    FROM page JOIN messages AS m ON m.seq = page.seq WHERE page.pending = 0 \
                    UNION ALL \
                    SELECT i.message_id, i.sender, i.recipient, i.ts, i.body_text, i.ts_key \
                    FROM page JOIN received AS i ON i.seq = page.seq WHERE page.pending = 1) AS p \
         ORDER BY {outer_order}",
        limit = query.limit,
    );
    (sql, params)
}

/// The `skip` CTE of a deep page: the hour that the `offset`th row (in the page's order)
/// falls in, and how many rows come before that hour. Each hour's rows are its count in
/// `tallies` plus the rows of `received` not counted yet, exactly as `total` counts them,
/// so the page is the one the plain offset would give. With no hour at all (an empty
/// inbox) it names a key that leaves every row in.
fn skip_hours_sql(descending: bool, offset: u64) -> String {
    let (walk, last, nothing) = if descending {
        ("DESC", "", "'~'")
    } else {
        ("", "DESC", "''")
    };
    format!(
        "skip AS MATERIALIZED ( \
             SELECT hour, before FROM ( \
                 SELECT hour, coalesce(sum(n) OVER (ORDER BY hour {walk} \
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before \
                 FROM (SELECT hour, sum(n) AS n FROM ( \
                           SELECT key AS hour, n FROM tallies WHERE kind = 'hour' \
                           UNION ALL \
                           SELECT substr(ts_key, 1, {HOUR_KEY_LEN}), 1 FROM received \
                           WHERE {UNCOUNTED}) \
                       GROUP BY hour)) \
             WHERE before <= {offset} \
             UNION ALL SELECT {nothing}, 0 \
             ORDER BY hour {last} LIMIT 1), "
    )
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
/// statistics and, given both `from` and `to`, may pick the less selective index. A sender
/// has fewer messages than a recipient in a typical inbox (many customers, few business
/// numbers), so `from` leads; its index holds the recipient, so a `to` beside it is checked
/// in the index, without reading a row.
fn source(query: &MessageQuery) -> &'static str {
    if query.from.is_some() {
        "messages INDEXED BY messages_by_sender_with_recipient"
    } else if query.to.is_some() {
        "messages INDEXED BY messages_by_recipient"
    } else if query.since_key.is_none() && query.cursor.is_none() && query.q_folded.is_some() {
        // A text search with nothing to narrow it must look at every row. Walking the
        // (ts_key, message_id) index for it would fetch each row out of order (slowest when
        // few match); one sequential pass and a small sort is bounded.
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
/// `messages` where they answer the filters, plus a count of the matching `received` rows
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
        "(SELECT count(*) FROM received {})",
        where_clause_with(conditions, UNCOUNTED)
    );
    let uncopied = format!(
        "(SELECT count(*) FROM received {})",
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
                     + (SELECT count(*) FROM received WHERE ts_key >= ? AND {UNCOUNTED}) \
                     + (SELECT count(*) FROM received \
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

/// One page of messages and the total (see [`search::plan`] for a text search).
pub fn list_messages(db: &dyn Database, query: &MessageQuery) -> Result<MessagePage, StorageError> {
    list_skipping_hours_from(db, query, SKIP_HOURS_FROM_OFFSET)
}

/// [`list_messages`], with deep pages from `skip_hours_from` on (tests take every path).
pub(super) fn list_skipping_hours_from(
    db: &dyn Database,
    query: &MessageQuery,
    skip_hours_from: u64,
) -> Result<MessagePage, StorageError> {
    let (plan, unindexed) = search::plan(db, query)?;
    let (sql, params) = rows_sql(query, &plan, true, skip_hours_from);
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
/// Every page reads `messages` and `received` in one statement, so a fold between two
/// pages moves rows from one table to the other without any row being lost or repeated.
pub fn export_page(
    db: &dyn Database,
    query: &MessageQuery,
) -> Result<Vec<StoredMessage>, StorageError> {
    let (plan, _) = search::plan(db, query)?;
    let (sql, params) = export_sql(query, &plan);
    Ok(stored_messages(&db.execute(&sql, &params)?))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::domain::NewMessage;
    use crate::query;
    use crate::storage::fold;
    use crate::storage::messages::Inserted;
    use crate::storage::testing::{
        check_reads, fresh, ids, msg, store, stored, Layout, TestDb, LAYOUTS,
    };

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
                     UNION ALL SELECT ts_key FROM received) WHERE ts_key >= ?",
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

    /// Only a deep page with no filter, no cursor and no index to ask starts at its hour;
    /// every other page steps (both paths are checked against a reference by `check_reads`).
    #[test]
    fn only_a_deep_unfiltered_page_starts_at_its_hour() {
        let sql = |raw: &str| page_sql(&query::parse(raw).unwrap(), &SearchPlan::Scan).0;
        let deep = SKIP_HOURS_FROM_OFFSET;
        assert!(sql(&format!("offset={deep}")).contains("skip AS"));
        assert!(sql(&format!("offset={deep}&order=desc")).contains("skip AS"));
        assert!(!sql(&format!("offset={}", deep - 1)).contains("skip AS"));
        for filtered in [
            "from=%2B1",
            "to=%2B1",
            "since=2025-01-15T10:00:00Z",
            "q=hello",
        ] {
            assert!(!sql(&format!("offset={deep}&{filtered}")).contains("skip AS"));
        }
        let db = stored(
            &[
                msg("a", "+1", "+2", "2025-01-15T10:00:00Z", None),
                msg("b", "+1", "+2", "2025-01-15T11:00:00Z", None),
            ],
            Layout::Split,
        );
        assert_eq!(ids(&db, &format!("offset={deep}")), (vec![], 2));
    }
}
