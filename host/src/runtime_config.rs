//! Reads the runtime config file (`--runtime-config-file`): where each database lives.
//!
//! Only `[sqlite_database.<label>]` matters to this host, with `type = "spin"` (a local file)
//! or `type = "libsql"` (`url`, `token`); other sections are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Where one SQLite database lives.
#[derive(Debug, Clone, PartialEq)]
pub enum DbLocation {
    /// `type = "spin"` without `path`: every connection gets its own empty in-memory database,
    /// as in Spin.
    InMemory,
    Path(PathBuf),
    /// A libSQL server (sqld, Turso) at `url`, authenticated with `token`.
    Libsql {
        url: String,
        token: String,
    },
}

/// Database label -> location, as configured by the runtime config file.
pub type SqliteDatabases = BTreeMap<String, DbLocation>;

/// Reads the runtime config file. Relative database paths resolve against `base_dir` (Spin
/// uses the directory `spin up` runs in).
pub fn load(path: &Path, base_dir: &Path) -> Result<SqliteDatabases> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read runtime config {}", path.display()))?;
    parse(&text, base_dir).with_context(|| format!("invalid runtime config {}", path.display()))
}

pub fn parse(text: &str, base_dir: &Path) -> Result<SqliteDatabases> {
    let raw: RawRuntimeConfig = toml::from_str(text)?;
    let mut out = BTreeMap::new();
    for (label, db) in raw.sqlite_database {
        let location = match (db.kind.as_str(), db.path, db.url, db.token) {
            ("spin", Some(p), None, None) => DbLocation::Path(base_dir.join(p)),
            ("spin", None, None, None) => DbLocation::InMemory,
            ("libsql", None, Some(url), Some(token)) => DbLocation::Libsql { url, token },
            ("spin" | "libsql", ..) => bail!(
                "sqlite_database.{label}: type \"spin\" takes an optional `path`; \
                 type \"libsql\" takes `url` and `token`"
            ),
            (other, ..) => bail!(
                "sqlite_database.{label}: type = {other:?} is not supported by the test host \
                 (\"spin\" or \"libsql\")"
            ),
        };
        out.insert(label, location);
    }
    Ok(out)
}

/// The databases an app gets: `default` at `<app_dir>/.spin/sqlite_db.db` unless the runtime
/// config says otherwise, plus every label the runtime config defines.
pub fn sqlite_databases(app_dir: &Path, configured: SqliteDatabases) -> SqliteDatabases {
    let mut out = BTreeMap::new();
    out.insert(
        "default".to_string(),
        DbLocation::Path(app_dir.join(".spin").join("sqlite_db.db")),
    );
    out.extend(configured);
    out
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawSqliteDatabase>,
}

#[derive(Deserialize)]
struct RawSqliteDatabase {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_databases_resolve_against_base() {
        let dbs = parse(
            "[sqlite_database.default]\ntype = \"spin\"\npath = \"x.db\"\n[sqlite_database.mem]\ntype = \"spin\"\n[key_value_store.default]\ntype = \"spin\"\n",
            Path::new("/base"),
        )
        .unwrap();
        assert_eq!(dbs["default"], DbLocation::Path("/base/x.db".into()));
        assert_eq!(dbs["mem"], DbLocation::InMemory);
    }

    #[test]
    fn libsql_databases_take_url_and_token() {
        let dbs = parse(
            "[sqlite_database.default]\ntype = \"libsql\"\nurl = \"http://127.0.0.1:8080\"\ntoken = \"t\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            dbs["default"],
            DbLocation::Libsql {
                url: "http://127.0.0.1:8080".into(),
                token: "t".into()
            }
        );
        let missing_token = "[sqlite_database.default]\ntype = \"libsql\"\nurl = \"x\"\n";
        assert!(parse(missing_token, Path::new("/")).is_err());
    }

    #[test]
    fn other_types_are_refused() {
        assert!(parse(
            "[sqlite_database.default]\ntype = \"postgres\"\n",
            Path::new("/")
        )
        .is_err());
    }

    #[test]
    fn default_database_lives_in_state_dir() {
        let dbs = sqlite_databases(Path::new("/app"), BTreeMap::new());
        assert_eq!(
            dbs["default"],
            DbLocation::Path("/app/.spin/sqlite_db.db".into())
        );
    }
}
