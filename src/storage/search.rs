//! Text search: the trigram index over `messages.text_folded`, how it is kept, and when a
//! search uses it.
//!
//! `q` is a case-insensitive substring. Without an index that is a pass over every text,
//! for page and total. With it, a search
//! asks the index for the rows that hold every trigram of the term, then checks each of
//! those against the text (`instr`), so the answer is the same as the scan's, just found
//! faster.
//!
//! **Off the write path.** The storing statement does not touch the index (an index written
//! per message capped ingestion). The fold adds each batch of new rows ([`index_batch`]),
//! where FTS5 takes a few hundred rows for little more than one. Rows above the
//! `('search', 'indexed_through')` tally are not in the index yet: a database upgraded from
//! an older version until the index catches up. A search scans them (a rowid range) and
//! adds them, with the rows of `received` not copied yet, so every search is exact whatever
//! the index holds. Each fold, and each search that finds such a tail, indexes at most
//! [`BACKFILL_ROWS`] more, so no request holds the write lock for long.
//!
//! **When the index is used.** A term of fewer than 3 characters has no trigram: those are
//! scanned. A very common term (more than [`INDEX_MAX_CANDIDATES`] rows hold its trigrams)
//! is scanned too: its first page is found in the first rows of the `(ts_key, message_id)`
//! order, and the index would only add work to its total.

use super::{Database, SqlValue, StorageError};
use crate::query::MessageQuery;

/// Most rows outside the index that one fold, or one search's after-answer work, adds to it.
/// Bounded so that no request holds the write lock long for it.
pub const BACKFILL_ROWS: i64 = 4096;

/// Above this many candidate rows, a term is scanned instead (see the module's doc).
pub const INDEX_MAX_CANDIDATES: i64 = 20_000;

/// Most trigrams one search asks the index for (see [`index_query`]).
const MAX_TRIGRAMS: usize = 64;

/// How a search reads `messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPlan {
    /// Every row's text, checked in turn.
    Scan,
    /// The rows the index names for this FTS5 query, plus the rows above the watermark.
    Index(String),
}

/// The FTS5 query for the rows that hold every trigram of `term`: each distinct trigram as
/// a quoted string, joined by AND. `None` for a term of fewer than 3 characters.
pub fn index_query(term: &str) -> Option<String> {
    let chars: Vec<char> = term.chars().collect();
    // An FTS5 string cannot hold a NUL; leaving such a trigram out only widens the rows
    // named, which `instr` then checks.
    let windows: Vec<&[char]> = chars.windows(3).filter(|w| !w.contains(&'\0')).collect();
    // A long term names its rows well enough by fewer trigrams: beyond 64, every third
    // (side by side, still covering the term), at most 64. Each is a lookup in the index.
    let step = if windows.len() > MAX_TRIGRAMS { 3 } else { 1 };
    let mut trigrams: Vec<String> = windows
        .iter()
        .step_by(step)
        .take(MAX_TRIGRAMS)
        .map(|w| w.iter().collect())
        .collect();
    trigrams.sort_unstable();
    trigrams.dedup();
    if trigrams.is_empty() {
        return None;
    }
    let quoted: Vec<String> = trigrams
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    Some(quoted.join(" AND "))
}

/// How `query` reads `messages`, and how many rows wait outside the search index: the one
/// place that decides whether a list uses the index. A text search with no sender or
/// recipient to narrow it asks the index ([`plan_term`]); a sender's or recipient's rows
/// are read through their own index instead.
pub fn plan(db: &dyn Database, query: &MessageQuery) -> Result<(SearchPlan, i64), StorageError> {
    match &query.q_folded {
        Some(term) if query.from.is_none() && query.to.is_none() => plan_term(db, term),
        _ => Ok((SearchPlan::Scan, 0)),
    }
}

/// Chooses how to search for `term` (folded), with one read of the index that stops at
/// [`INDEX_MAX_CANDIDATES`]. Also tells how many rows wait outside the index.
fn plan_term(db: &dyn Database, term: &str) -> Result<(SearchPlan, i64), StorageError> {
    let Some(query) = index_query(term) else {
        return Ok((SearchPlan::Scan, 0));
    };
    // The limit is written as a number, not bound (see the `storage` module's doc).
    let rows = db.execute(
        &format!(
            "SELECT (SELECT count(*) FROM (SELECT rowid FROM messages_search \
                                           WHERE messages_search MATCH ?1 LIMIT {})), \
                    coalesce((SELECT max(seq) FROM messages), 0) \
                        - ({INDEXED_THROUGH})",
            INDEX_MAX_CANDIDATES + 1
        ),
        &[SqlValue::Text(query.clone())],
    )?;
    let row = rows.first();
    let value = |i: usize| row.and_then(|r| r.get(i)).and_then(SqlValue::as_i64);
    let candidates = value(0).unwrap_or(0);
    let unindexed = value(1).unwrap_or(0).max(0);
    let plan = if candidates > INDEX_MAX_CANDIDATES {
        SearchPlan::Scan
    } else {
        SearchPlan::Index(query)
    };
    Ok((plan, unindexed))
}

/// The last row the search index has seen: rows above it are searched without it.
pub(super) const INDEXED_THROUGH: &str =
    "SELECT n FROM tallies WHERE kind = 'search' AND key = 'indexed_through'";

/// Adds the next rows above the watermark to the index, at most `max_rows` of them; how many
/// rows the watermark moved over. Three statements, none holding a transaction open: the
/// range is read, indexed, and then the watermark moves to its end. Writing a row the index
/// already holds replaces it (`contentless_delete`), so a batch indexed twice (two folds at
/// once, or one stopped before its last step) does no harm.
pub(super) fn index_batch(db: &dyn Database, max_rows: i64) -> Result<i64, StorageError> {
    let rows = db.execute(
        &format!(
            "SELECT w.n, max(b.seq), count(b.seq) \
             FROM ({INDEXED_THROUGH}) AS w \
             LEFT JOIN (SELECT seq FROM messages \
                        WHERE seq > ({INDEXED_THROUGH}) ORDER BY seq LIMIT {}) AS b",
            max_rows.max(0)
        ),
        &[],
    )?;
    let row = rows.first();
    let value = |i: usize| row.and_then(|r| r.get(i)).and_then(SqlValue::as_i64);
    let (Some(from), Some(through)) = (value(0), value(1)) else {
        return Ok(0);
    };
    db.execute(
        "INSERT OR REPLACE INTO messages_search (rowid, text_folded) \
         SELECT seq, text_folded FROM messages \
         WHERE seq > ?1 AND seq <= ?2 AND text_folded IS NOT NULL",
        &[SqlValue::Integer(from), SqlValue::Integer(through)],
    )?;
    db.execute(
        "UPDATE tallies SET n = max(n, ?1) WHERE kind = 'search' AND key = 'indexed_through'",
        &[SqlValue::Integer(through)],
    )?;
    Ok(value(2).unwrap_or(0))
}

/// Takes rows out of the index before they leave `messages` (`?1`: a JSON array of their
/// `seq`s). A row the index never held is no matter.
pub(super) const UNINDEX: &str =
    "DELETE FROM messages_search WHERE rowid IN (SELECT value FROM json_each(?1))";

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::domain::{fold_case, NewMessage};
    use crate::storage::testing::{check_reads, ids, msg, TestDb};
    use crate::storage::{fold, in_transaction, insert_message, prepare};

    const TEXTS: [Option<&str>; 8] = [
        Some("Hello world"),
        Some("say HELLO again"),
        Some("50%_off today"),
        Some("Größe zählt"),
        Some("hell no"),
        None,
        Some("o"),
        Some("\"quoted\" hello"),
    ];

    fn messages(n: usize) -> Vec<NewMessage> {
        (0..n)
            .map(|i| {
                msg(
                    &format!("m{i:03}"),
                    &format!("+{}", i % 5 + 1),
                    "+99",
                    &format!("2025-01-15T{:02}:{:02}:00Z", i % 24, i % 60),
                    TEXTS[i % TEXTS.len()],
                )
            })
            .collect()
    }

    /// Every term's page and total against a plain substring check of the folded text.
    fn check_terms(db: &TestDb, all: &[NewMessage]) {
        let mut sorted: Vec<&NewMessage> = all.iter().collect();
        sorted.sort_by(|a, b| (&a.ts_key, &a.message_id).cmp(&(&b.ts_key, &b.message_id)));
        for term in [
            "hello", "HELLO", "hell", "llo w", "%_o", "ö", "größe", "he", "o", "\"q",
        ] {
            let folded = fold_case(term);
            let want: Vec<String> = sorted
                .iter()
                .filter(|m| m.folded_text().is_some_and(|t| t.contains(&folded)))
                .map(|m| m.message_id.clone())
                .collect();
            let encoded: String = term.bytes().map(|b| format!("%{b:02X}")).collect();
            for extra in ["", "&since=2025-01-15T12:00:00Z"] {
                let want: Vec<String> = want
                    .iter()
                    .filter(|id| {
                        extra.is_empty()
                            || all.iter().any(|m| {
                                &m.message_id == *id && m.ts_key.as_str() >= "2025-01-15T12"
                            })
                    })
                    .cloned()
                    .collect();
                let (page, total) = ids(db, &format!("q={encoded}{extra}&limit=100"));
                assert_eq!(total, want.len() as i64, "{term}{extra}");
                assert_eq!(page, want[..want.len().min(100)], "{term}{extra}");
            }
        }
    }

    #[test]
    fn searches_are_exact_with_the_index_full_partial_or_behind() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let all = messages(120);
        for m in &all[..100] {
            insert_message(&db, m).unwrap();
        }
        fold::fold(&db).unwrap();
        for m in &all[100..] {
            insert_message(&db, m).unwrap();
        }
        // Indexed through the fold, 20 rows still pending.
        assert!(matches!(
            plan_term(&db, "hello").unwrap(),
            (SearchPlan::Index(_), 0)
        ));
        check_terms(&db, &all);
        check_reads(&db, &all, all.len());

        // As after an upgrade: the index empty, then caught up a batch at a time.
        db.conn()
            .execute_batch(
                "DELETE FROM messages_search;
                 UPDATE tallies SET n = 0 WHERE kind = 'search';",
            )
            .unwrap();
        assert_eq!(plan_term(&db, "hello").unwrap().1, 100);
        check_terms(&db, &all);
        let moved = in_transaction(&db, || index_batch(&db, 30)).unwrap();
        assert_eq!(moved, 30);
        assert_eq!(plan_term(&db, "hello").unwrap().1, 70);
        check_terms(&db, &all);
        while in_transaction(&db, || index_batch(&db, 30)).unwrap() > 0 {}
        assert_eq!(plan_term(&db, "hello").unwrap().1, 0);
        check_terms(&db, &all);
    }

    #[test]
    fn a_very_common_term_is_scanned_and_a_rare_one_uses_the_index() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let count = INDEX_MAX_CANDIDATES as usize + 10;
        db.conn().execute_batch("BEGIN").unwrap();
        for i in 0..count {
            let text = if i == 7 {
                "common and rare-needle"
            } else {
                "common words"
            };
            insert_message(
                &db,
                &msg(
                    &format!("m{i}"),
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00Z",
                    Some(text),
                ),
            )
            .unwrap();
            if (i + 1) % 256 == 0 {
                fold::fold(&db).unwrap();
            }
        }
        fold::fold(&db).unwrap();
        db.conn().execute_batch("COMMIT").unwrap();
        assert_eq!(plan_term(&db, "common").unwrap().0, SearchPlan::Scan);
        assert!(matches!(
            plan_term(&db, "rare-needle").unwrap().0,
            SearchPlan::Index(_)
        ));
        assert_eq!(ids(&db, "q=rare-needle").1, 1);
        assert_eq!(ids(&db, "q=common&limit=1").1, count as i64);
    }

    /// An indexed search reads rows by primary key only. Left to itself, the planner walked
    /// the whole time index for the rows above the watermark.
    #[test]
    fn an_indexed_search_never_walks_a_table_or_an_index() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for raw in [
            "q=abcd",
            "q=abcd&since=2025-01-15T10:00:00Z",
            "q=abcd&cursor=",
        ] {
            let raw = if raw.ends_with('=') {
                let cursor = crate::query::Cursor {
                    ts_key: "2025-01-15T10:00:00".into(),
                    message_id: "m1".into(),
                };
                format!("{raw}{}", cursor.encode())
            } else {
                raw.to_owned()
            };
            let query = crate::query::parse(&raw).unwrap();
            let plan = SearchPlan::Index(index_query("abcd").unwrap());
            let (sql, params) = crate::storage::listing::page_sql(&query, &plan);
            let params: Vec<_> = params
                .iter()
                .map(crate::storage::native::to_rusqlite)
                .collect();
            let lines = db.query_plan(&sql, rusqlite::params_from_iter(params));
            for line in &lines {
                let scans = line.starts_with("SCAN messages") && !line.contains("messages_search");
                let walks = scans || line.contains("messages_by");
                assert!(!walks, "{raw}: {line}\n{lines:#?}");
            }
        }
    }

    #[test]
    fn an_erased_message_leaves_nothing_in_the_index() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let all = messages(16);
        for m in &all {
            insert_message(&db, m).unwrap();
        }
        fold::fold(&db).unwrap();
        let matching = |term: &str| -> i64 {
            db.conn()
                .query_row(
                    "SELECT count(*) FROM messages_search WHERE messages_search MATCH ?",
                    [index_query(term).unwrap()],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(matching("größe"), 2);
        let removal = crate::storage::Removal {
            now_unix: 0,
            tombstone_until: 0,
            batch: 100,
        };
        for id in ["m003", "m011"] {
            assert!(crate::storage::lifecycle::erase_message(&db, id, &removal).unwrap());
        }
        assert_eq!(
            matching("größe"),
            0,
            "no trigram of erased text stays behind"
        );
        // The index is still consistent with its content table.
        db.conn()
            .execute(
                "INSERT INTO messages_search (messages_search) VALUES ('integrity-check')",
                [],
            )
            .unwrap();
    }

    #[test]
    fn a_term_becomes_its_distinct_trigrams() {
        assert_eq!(index_query("he"), None);
        assert_eq!(index_query(""), None);
        assert_eq!(index_query("abc").as_deref(), Some("\"abc\""));
        assert_eq!(
            index_query("aaaa").as_deref(),
            Some("\"aaa\""),
            "repeated trigrams once"
        );
        assert_eq!(
            index_query("a\"bc").as_deref(),
            Some("\"\"\"bc\" AND \"a\"\"b\"")
        );
        // Characters, not bytes.
        assert_eq!(index_query("größ").as_deref(), Some("\"grö\" AND \"röß\""));
        // A long term: at most 64 trigrams, side by side.
        let long: Vec<char> = (0..400)
            .map(|i| char::from_u32(0x4e00 + i).unwrap())
            .collect();
        let query = index_query(&long.iter().collect::<String>()).unwrap();
        assert_eq!(query.matches(" AND ").count(), 63);
        let side_by_side = [&long[0..3], &long[3..6]].map(|t| t.iter().collect::<String>());
        assert!(side_by_side
            .iter()
            .all(|t| query.contains(&format!("\"{t}\""))));
        assert_eq!(
            index_query("50%_x").as_deref(),
            Some("\"%_x\" AND \"0%_\" AND \"50%\"")
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod hostile_terms {
    use crate::storage::testing::{ids, msg, TestDb};
    use crate::storage::{fold, insert_message, prepare};

    /// Whatever a client puts in `q`, the index query is well formed and the answer the
    /// same as a plain substring check: never a storage error (a 503 to the client).
    #[test]
    fn any_term_is_answered_exactly() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let texts = [
            "a\0bc nul inside",
            "quote \" and '' and \"\"",
            "NEAR(a b) AND OR NOT * ^ : -x +y (z)",
            "emoji 😀😀😀 and e\u{301}clair",
            "tab\tnew\nline",
        ];
        for (i, text) in texts.iter().enumerate() {
            let m = msg(
                &format!("m{i}"),
                "+1",
                "+2",
                "2025-01-15T10:00:00Z",
                Some(text),
            );
            insert_message(&db, &m).unwrap();
        }
        fold::fold(&db).unwrap();
        for term in [
            "%00bc",
            "a%00b",
            "nul%20ins",
            "bc%20nul",
            "%22%22%22",
            "%22 and",
            "NEAR(a",
            "AND OR",
            "*%20%5E",
            ":%20-x",
            "%F0%9F%98%80%F0%9F%98%80",
            "e%CC%81c",
            "%09new%0Aline",
            "(z)",
            "%27%27 a",
        ]
        .into_iter()
        .map(str::to_owned)
        // The longest term allowed, with as many distinct trigrams as it can hold.
        .chain([(0..4096u32)
            .map(|i| char::from_u32(0x4e00 + i).unwrap().to_string())
            .collect::<String>()])
        {
            let term = term.as_str();
            let query = crate::query::parse(&format!("q={term}")).unwrap();
            let folded = query.q_folded.clone().unwrap();
            let want: Vec<String> = texts
                .iter()
                .enumerate()
                .filter(|(_, t)| crate::domain::fold_case(t).contains(&folded))
                .map(|(i, _)| format!("m{i}"))
                .collect();
            let (page, total) = ids(&db, &format!("q={term}"));
            assert_eq!((page, total), (want.clone(), want.len() as i64), "{term}");
        }
    }
}
