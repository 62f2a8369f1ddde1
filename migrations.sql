-- webhook-inbox schema, version 6 (upgrades a version 1 to 5 database in place).
--
-- Idempotent: safe to run any number of times, e.g. `spin up --sqlite @migrations.sql` or a
-- separate migration step. The component applies this same file itself on first use, one
-- statement at a time, guarded by `PRAGMA user_version`, so running it is optional.
--
-- It runs unchanged on a local SQLite file and on a libSQL server, so it holds no setting
-- that only a local file understands (libSQL refuses `PRAGMA journal_mode`, `synchronous`
-- and `busy_timeout`). The component sets those itself on a local file, before each write
-- (src/storage/session.rs).

-- How a message is stored (src/storage/fold.rs says why):
-- 1. The webhook writes one row into `incoming`: a small table with no index but its
--    idempotency key, so the write touches two B-tree pages and holds the lock briefly.
-- 2. Every few hundred messages, one transaction (the fold) moves `incoming` into
--    `messages`, where the filter indexes do their work for the batch at once, and adds
--    the batch to the aggregates with one statement per table.
-- 3. Reads see both tables, so every list, count and aggregate is exact at all times.
-- The schema has no triggers: every request opens a new connection, which parses the whole
-- schema before its first statement, and a trigger costs more to parse than a table.

-- One row per message, exactly as sent, plus derived columns for ordering and search.
CREATE TABLE IF NOT EXISTS messages (
    seq         INTEGER PRIMARY KEY,   -- rowid: compact, append-ordered storage
    message_id  TEXT NOT NULL UNIQUE,  -- idempotency key: first write wins
    sender      TEXT NOT NULL,         -- "from"
    recipient   TEXT NOT NULL,         -- "to"
    ts          TEXT NOT NULL,         -- as sent
    ts_key      TEXT NOT NULL,         -- the instant, sortable as text (see src/timestamp.rs)
    body_text   TEXT,                  -- "text" as sent; NULL when absent
    text_folded TEXT                   -- body_text lower-cased, for case-insensitive search
);

-- Each /messages filter, with the (ts, message_id) order behind it, so a first page reads
-- only the rows it returns.
CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts_key, message_id);
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (sender, ts_key, message_id);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, ts_key, message_id);

-- Aggregates over `messages`, kept by the fold, so /stats and unfiltered counts never scan
-- the messages. Reads add what is still in `incoming`.
CREATE TABLE IF NOT EXISTS sender_counts (
    sender   TEXT PRIMARY KEY,
    messages INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sender_counts_top ON sender_counts (messages DESC, sender);

CREATE TABLE IF NOT EXISTS recipient_counts (
    recipient TEXT PRIMARY KEY,
    messages  INTEGER NOT NULL
) WITHOUT ROWID;

-- `senders` and the first/last columns were kept by versions 1 and 2; since version 3 the
-- reads take them from sender_counts and the (ts_key, message_id) index, and they are unused.
CREATE TABLE IF NOT EXISTS inbox_totals (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    messages  INTEGER NOT NULL,
    senders   INTEGER NOT NULL,
    first_key TEXT,
    first_ts  TEXT,
    last_key  TEXT,
    last_ts   TEXT
);
INSERT OR IGNORE INTO inbox_totals (id, messages, senders) VALUES (1, 0, 0);

-- Prometheus counters: one row per series. `value` has no declared type so counts stay
-- integers and the latency sum stays real. Histogram buckets are stored per bucket, not
-- cumulative, so a request touches one bucket row.
CREATE TABLE IF NOT EXISTS metric_counters (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,
    value  NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;

-- Messages per hour of `ts`: the first 13 characters of ts_key ("2025-01-15T10"). A `since`
-- total sums the whole hours after `since` and counts index entries only within its own
-- hour, instead of counting every matching row.
CREATE TABLE IF NOT EXISTS hour_counts (
    hour     TEXT PRIMARY KEY,
    messages INTEGER NOT NULL
) WITHOUT ROWID;
-- Fills the table for a version 1 database (a no-op once it has rows or without messages).
INSERT INTO hour_counts (hour, messages)
    SELECT substr(ts_key, 1, 13), count(*) FROM messages
    WHERE NOT EXISTS (SELECT 1 FROM hour_counts)
    GROUP BY substr(ts_key, 1, 13);

-- Versions 1 and 2 kept the aggregates with a trigger on each insert.
DROP TRIGGER IF EXISTS messages_aggregate;

-- New messages, until the next fold moves them into `messages`. Same columns, plus the
-- storing request's latency when the row also counts that request's metrics (on a local
-- file; see src/storage/counters.rs). `seq` counts up from 1 after each fold empties the
-- table, which is what tells a writer it is time to fold again.
CREATE TABLE IF NOT EXISTS incoming (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    ts_key      TEXT NOT NULL,
    body_text   TEXT,
    text_folded TEXT,
    latency_ms  REAL
);

-- The highest `messages.seq` the aggregates count. The fold counts every row above it, so
-- a row stored straight into `messages` (by an older version of the component, still
-- running during a rolling upgrade) is counted by the next fold, not missed. A database
-- upgraded from version 1 or 2 starts with every existing row counted (by the old trigger).
CREATE TABLE IF NOT EXISTS fold_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    counted_through INTEGER NOT NULL
);
INSERT OR IGNORE INTO fold_state (id, counted_through)
    SELECT 1, coalesce(max(seq), 0) FROM messages;

-- The rejection log (src/rejections.rs): the newest `rejection_log_size` refused deliveries,
-- written after their answers. `seq` is the rowid, so entries count up and the oldest go
-- first (src/storage/rejections.rs). No text, signature, secret or token is kept.
CREATE TABLE IF NOT EXISTS rejections (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,     -- when the request started, RFC 3339 UTC
    route       TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,     -- invalid_signature, timestamp_out_of_tolerance, ...
    detail      TEXT NOT NULL,     -- the narrower reason, a fixed word
    locs        TEXT,              -- a 422's field locations, as JSON
    request_id  TEXT NOT NULL,
    body_bytes  INTEGER,           -- NULL when the body was refused part way through
    body_sha256 TEXT               -- hex; NULL when the body was not read in full
);

-- Messages erased or purged (src/storage/lifecycle.rs) leave a tombstone: a hash of their
-- `message_id` (never the id itself) until `expires_at` (Unix seconds), so that a sender's
-- re-delivery within the window is answered as a duplicate and stored nothing.
CREATE TABLE IF NOT EXISTS tombstones (
    id_hash    TEXT PRIMARY KEY,     -- hex of the first 16 bytes of SHA-256(message_id)
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_by_expiry ON tombstones (expires_at);

-- Text search (src/storage/search.rs): a trigram index over `messages.text_folded`, kept off
-- the write path. The fold adds each batch of new rows; rows above `indexed_through` (a
-- database upgraded from an older version, until the index catches up) are searched by a
-- scan, so every search is exact whatever the index holds. The index stores no text of its
-- own (`content = 'messages'`), no positions (`detail = 'none'`: a search is a set of
-- trigrams, then checked against the text) and no column sizes.
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    text_folded,
    content = 'messages', content_rowid = 'seq',
    tokenize = 'trigram case_sensitive 1', detail = 'none', columnsize = 0
);
CREATE TABLE IF NOT EXISTS search_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL
);
INSERT OR IGNORE INTO search_state (id, indexed_through) VALUES (1, 0);

PRAGMA user_version = 6;
