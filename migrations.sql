-- webhook-inbox schema, version 8 (upgrades a version 1 to 7 database in place).
--
-- Idempotent: safe to run any number of times, e.g. `spin up --sqlite @migrations.sql` or a
-- separate migration step. The component applies this same file itself on first use, one
-- statement at a time, guarded by `PRAGMA user_version`, so running it is optional.
--
-- It runs unchanged on a local SQLite file and on a libSQL server, so it holds no setting
-- that only a local file understands (libSQL refuses `PRAGMA journal_mode`, `synchronous`
-- and `busy_timeout`). The component sets those itself on a local file, before each write
-- (src/storage/session.rs).
--
-- How a message is stored (src/storage/fold.rs says why):
-- 1. The webhook writes one row into `received`: a small table with no index but its
--    idempotency key, so the write touches two B-tree pages and holds the lock briefly.
--    The row gets its final number (`seq`) there, above every number handed out before.
-- 2. Every few hundred messages, the fold copies `received` into `messages` (where the
--    filter indexes take the batch at once), adds the batch to `tallies` with ONE
--    statement, indexes it for search, and clears the copied rows. Each step is one
--    statement, atomic on its own and safe to run again: no transaction spans two of them,
--    which on a libSQL server would hold its only write slot across network round trips.
-- 3. Reads add the rows `tallies` has not counted yet (`received` above the watermark), so
--    every list, count and aggregate is exact at all times, between any two fold steps too.
-- The schema has no triggers: every request opens a new connection, which parses the whole
-- schema before its first statement, and a trigger costs more to parse than a table.

-- Everything counted, in one table, so that one statement adds a whole batch to every
-- count together with the watermark that says which rows are counted (kind, key):
--   ('sender', "from") / ('recipient', "to") / ('hour', "2025-01-15T10"): messages;
--   ('inbox', 'messages'), ('inbox', 'senders'): the totals;
--   ('inbox', 'counted_through'): the highest `seq` the counts include;
--   ('inbox', 'last_received_ms'): when the newest counted message was received (Unix ms);
--   ('search', 'indexed_through'): the highest `seq` the search index has seen;
--   ('metric', '<name> <labels>'): a Prometheus counter, e.g.
--     'http_requests_total path="/webhook",status="200"'. Histogram buckets are stored per
--     bucket, not cumulative, so a request touches one bucket row.
-- `n` has no declared type: counts stay integers and the latency sum stays real.
CREATE TABLE IF NOT EXISTS tallies (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    n    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
-- /stats' top senders, read off the front of this index.
CREATE INDEX IF NOT EXISTS tallies_top_senders ON tallies (n DESC, key) WHERE kind = 'sender';

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
-- only the rows it returns. The sender's index also holds the recipient, so `from` and `to`
-- together are answered from the index alone, however many messages the sender has
-- (version 7 and older had `messages_by_sender` without it; the upgrade drops that one).
CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts_key, message_id);
CREATE INDEX IF NOT EXISTS messages_by_sender_with_recipient
    ON messages (sender, ts_key, message_id, recipient);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, ts_key, message_id);

-- New messages, until the fold copies them into `messages` (versions 3 to 6 called it
-- `incoming`, version 7 `arrivals`; each new name keeps instances of older versions from
-- writing rows this version would miscount). Same columns, plus the storing request's
-- latency (a `/webhook` row also stands for that request's counters,
-- src/storage/counters.rs) and, for a provider's message, where it came from. `seq` is the message's number for good: the storing statement picks the next one
-- above every row of both tables and the watermark, and the fold copies it unchanged.
CREATE TABLE IF NOT EXISTS received (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    ts_key      TEXT NOT NULL,
    body_text   TEXT,
    text_folded TEXT,
    latency_ms  REAL,
    received_at REAL,              -- when the storing request started, Unix ms (its clock)
    source      TEXT,              -- 'whatsapp', 'twilio'; NULL for POST /webhook
    kind        TEXT               -- the provider's message type ('text', 'image', 'sms')
);

-- Where a provider's message came from, and its type, shown with the message; `POST
-- /webhook` messages have no row here. Apart from `messages` so that a million stored rows
-- need no new column (SQLite cannot add one idempotently), and filled by the fold.
CREATE TABLE IF NOT EXISTS message_sources (
    seq    INTEGER PRIMARY KEY,    -- messages.seq
    source TEXT NOT NULL,
    kind   TEXT NOT NULL
);

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
-- the write path. The fold adds each batch of new rows; rows above the ('search',
-- 'indexed_through') watermark (a database upgraded from an older version, until the index
-- catches up) are searched by a scan, so every search is exact whatever the index holds.
-- Contentless (the text is in `messages`), no positions (`detail = 'none'`: a search is a
-- set of trigrams, then checked against the text), and rows can be deleted and written
-- again (`contentless_delete`), so indexing a batch twice does no harm.
CREATE VIRTUAL TABLE IF NOT EXISTS messages_search USING fts5(
    text_folded,
    content = '', contentless_delete = 1,
    tokenize = 'trigram case_sensitive 1', detail = 'none'
);

-- Upgrading a version 1 to 6 database. Those versions kept their counts in one table each
-- and `incoming` numbered its rows from 1 after each fold. The statements below move the
-- counts into `tallies`, move waiting rows into `received` with numbers above every stored
-- one, and drop the old tables. Each runs only while `tallies` has no ('inbox', ...) row
-- yet, i.e. once; on a new database they create and drop empty tables.
CREATE TABLE IF NOT EXISTS sender_counts (sender TEXT PRIMARY KEY, messages INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recipient_counts (recipient TEXT PRIMARY KEY, messages INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_counts (hour TEXT PRIMARY KEY, messages INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1), messages INTEGER NOT NULL, senders INTEGER NOT NULL,
    first_key TEXT, first_ts TEXT, last_key TEXT, last_ts TEXT);
CREATE TABLE IF NOT EXISTS metric_counters (
    name TEXT NOT NULL, labels TEXT NOT NULL, value NOT NULL, PRIMARY KEY (name, labels))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fold_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), counted_through INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS incoming (
    seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
    recipient TEXT NOT NULL, ts TEXT NOT NULL, ts_key TEXT NOT NULL, body_text TEXT,
    text_folded TEXT, latency_ms REAL);
-- Versions 1 and 2 kept the counts with a trigger (dropped below), and version 1 had no
-- hour counts: they are counted from its rows. Rows stored before version 3 are counted.
INSERT OR IGNORE INTO inbox_totals (id, messages, senders)
    SELECT 1, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM tallies WHERE kind = 'inbox');
INSERT INTO hour_counts (hour, messages)
    SELECT substr(ts_key, 1, 13), count(*) FROM messages
    WHERE NOT EXISTS (SELECT 1 FROM hour_counts)
    AND NOT EXISTS (SELECT 1 FROM tallies WHERE kind = 'inbox')
    GROUP BY substr(ts_key, 1, 13);
INSERT OR IGNORE INTO fold_state (id, counted_through)
    SELECT 1, coalesce(max(seq), 0) FROM messages
    WHERE NOT EXISTS (SELECT 1 FROM tallies WHERE kind = 'inbox');
DROP TRIGGER IF EXISTS messages_aggregate;
INSERT INTO received (seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded,
        latency_ms)
    SELECT seq + (SELECT max(coalesce((SELECT max(seq) FROM messages), 0),
                             coalesce((SELECT counted_through FROM fold_state), 0))),
           message_id, sender, recipient, ts, ts_key, body_text, text_folded, latency_ms
    FROM incoming WHERE NOT EXISTS (SELECT 1 FROM tallies WHERE kind = 'inbox') ORDER BY seq;
INSERT INTO tallies (kind, key, n)
    SELECT 'sender', sender, messages FROM sender_counts
    UNION ALL SELECT 'recipient', recipient, messages FROM recipient_counts
    UNION ALL SELECT 'hour', hour, messages FROM hour_counts
    UNION ALL SELECT 'metric', name || ' ' || labels, value FROM metric_counters
    UNION ALL SELECT 'inbox', 'messages', messages FROM inbox_totals
    UNION ALL SELECT 'inbox', 'senders', senders FROM inbox_totals
    UNION ALL SELECT 'inbox', 'counted_through', counted_through FROM fold_state
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
DROP TABLE sender_counts;
DROP TABLE recipient_counts;
DROP TABLE hour_counts;
DROP TABLE inbox_totals;
DROP TABLE metric_counters;
DROP TABLE fold_state;
DROP TABLE incoming;
DROP TABLE IF EXISTS search_state;
DROP TABLE IF EXISTS messages_fts;
DROP INDEX IF EXISTS sender_counts_top;

-- Upgrading a version 7 database: its sender index lacked the recipient; its `arrivals`
-- (the waiting rows, with their numbers for good) lacked `source` and `kind`, so the rows
-- move into `received`; its `/webhook` counters had no `source` label. On a current
-- database these create and drop an empty table and move nothing.
DROP INDEX IF EXISTS messages_by_sender;
CREATE TABLE IF NOT EXISTS arrivals (
    seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
    recipient TEXT NOT NULL, ts TEXT NOT NULL, ts_key TEXT NOT NULL, body_text TEXT,
    text_folded TEXT, latency_ms REAL);
INSERT INTO received (seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded,
        latency_ms)
    SELECT seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded, latency_ms
    FROM arrivals ORDER BY seq;
DROP TABLE arrivals;
INSERT INTO tallies (kind, key, n)
    SELECT 'metric', 'webhook_requests_total source="webhook",' || substr(key, 24), n
    FROM tallies WHERE kind = 'metric' AND key LIKE 'webhook_requests_total result=%'
    UNION ALL
    SELECT 'metric', 'webhook_rejections_total source="webhook",' || substr(key, 26), n
    FROM tallies WHERE kind = 'metric' AND key LIKE 'webhook_rejections_total reason=%'
    ORDER BY 1, 2
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
DELETE FROM tallies WHERE kind = 'metric' AND (key LIKE 'webhook_requests_total result=%'
    OR key LIKE 'webhook_rejections_total reason=%');

-- A new database starts with every count at zero.
INSERT INTO tallies (kind, key, n) VALUES
    ('inbox', 'messages', 0), ('inbox', 'senders', 0), ('inbox', 'counted_through', 0),
    ('search', 'indexed_through', 0)
    ON CONFLICT DO NOTHING;

PRAGMA user_version = 8;
