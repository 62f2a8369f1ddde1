//! Reads a Spin manifest (`spin.toml`, `spin_manifest_version = 2`).
//!
//! Only the parts that change what a component can observe: variables (and Spin's rule for
//! their names), HTTP triggers, component sources, SQLite grants, component variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// An application variable (`[variables]`).
#[derive(Debug, Clone)]
pub struct Variable {
    pub required: bool,
    pub default: Option<String>,
    pub secret: bool,
}

/// One `[[trigger.http]]` entry that routes to a component.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    /// The route exactly as written in the manifest.
    pub route: String,
    pub component: String,
}

/// One `[component.<id>]` table.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    /// The `.wasm` file, already resolved against the app directory.
    pub source: PathBuf,
    pub sqlite_databases: Vec<String>,
    /// Component variable name -> template over application variables.
    pub variables: BTreeMap<String, String>,
    /// `environment = { .. }`: WASI environment variables of the component.
    pub environment: BTreeMap<String, String>,
    /// `allowed_outbound_hosts`; the host only distinguishes "none" from "some".
    pub allowed_outbound_hosts: Vec<String>,
    /// `[component.<id>.build]`: commands and working directory (resolved).
    pub build: Option<Build>,
}

/// How `spin build` builds a component.
#[derive(Debug, Clone)]
pub struct Build {
    pub commands: Vec<String>,
    pub workdir: PathBuf,
}

/// The application as the host needs it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub app_name: String,
    pub app_version: Option<String>,
    pub app_dir: PathBuf,
    pub variables: BTreeMap<String, Variable>,
    pub http_triggers: Vec<HttpTrigger>,
    /// Components in manifest order.
    pub components: Vec<Component>,
}

impl Manifest {
    /// Reads `<app_dir>/spin.toml`.
    pub fn load(app_dir: &Path) -> Result<Self> {
        let path = app_dir.join("spin.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Self::parse(&text, app_dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses manifest text; relative component sources resolve against `app_dir`.
    pub fn parse(text: &str, app_dir: &Path) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version = {} is not supported (only 2)",
                raw.spin_manifest_version
            );
        }

        let variables = variables(raw.variables)?;
        let components = components(raw.component, text, app_dir)?;
        let http_triggers = http_triggers(raw.trigger.http, &components)?;

        Ok(Manifest {
            app_name: raw.application.name,
            app_version: raw.application.version,
            app_dir: app_dir.to_path_buf(),
            variables,
            http_triggers,
            components,
        })
    }

    pub fn component(&self, id: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.id == id)
    }
}

/// The application's variables, each required or with a default (Spin's rule).
fn variables(raw: BTreeMap<String, RawVariable>) -> Result<BTreeMap<String, Variable>> {
    let mut variables = BTreeMap::new();
    for (name, v) in raw {
        validate_variable_name(&name).map_err(|e| anyhow::anyhow!("application variable {e}"))?;
        // Spin's rule: a variable is either required or has a default, never both.
        match (v.required, &v.default) {
            (true, Some(_)) => bail!("variable {name:?} cannot be required and have a default"),
            (false, None) => bail!("variable {name:?} must be required or have a default"),
            _ => {}
        }
        variables.insert(
            name,
            Variable {
                required: v.required,
                default: v.default,
                secret: v.secret,
            },
        );
    }
    Ok(variables)
}

/// The components, in the order the manifest's text gives them.
fn components(
    raw: BTreeMap<String, RawComponent>,
    text: &str,
    app_dir: &Path,
) -> Result<Vec<Component>> {
    // A BTreeMap loses manifest order; recover it from the text so "first component" is the
    // one written first.
    let mut components = Vec::new();
    let mut ids: Vec<_> = raw.into_iter().collect();
    ids.sort_by_key(|(id, _)| {
        text.find(&format!("[component.{id}]"))
            .unwrap_or(usize::MAX)
    });
    for (id, c) in ids {
        let source = match c.source {
            RawSource::Local(s) => app_dir.join(s),
            RawSource::Other(_) => {
                bail!("component {id:?}: only local file sources are supported by the test host")
            }
        };
        if !c.files.is_empty() {
            bail!("component {id:?}: `files` is not supported by the test host");
        }
        for key in c.variables.keys() {
            validate_variable_name(key)
                .map_err(|e| anyhow::anyhow!("component {id:?} variable {e}"))?;
        }
        components.push(Component {
            id,
            source,
            sqlite_databases: c.sqlite_databases,
            variables: c.variables,
            environment: c.environment,
            allowed_outbound_hosts: c.allowed_outbound_hosts,
            build: c.build.map(|b| Build {
                commands: match b.command {
                    RawCommands::One(c) => vec![c],
                    RawCommands::Many(cs) => cs,
                },
                workdir: app_dir.join(b.workdir.unwrap_or_default()),
            }),
        });
    }
    Ok(components)
}

/// The HTTP triggers with a route, each naming a known component.
fn http_triggers(raw: Vec<RawHttpTrigger>, components: &[Component]) -> Result<Vec<HttpTrigger>> {
    let mut http_triggers = Vec::new();
    for t in raw {
        let route = match t.route {
            RawRoute::Route(r) => r,
            // Private endpoints are only reachable through service chaining.
            RawRoute::Private { .. } => continue,
        };
        let component = match t.component {
            Some(RawComponentRef::Id(id)) => id,
            Some(RawComponentRef::Inline(_)) => {
                bail!("trigger {route:?}: inline components are not supported by the test host")
            }
            None => {
                bail!("trigger {route:?}: static responses are not supported by the test host")
            }
        };
        if !components.iter().any(|c| c.id == component) {
            bail!("trigger {route:?} refers to unknown component {component:?}");
        }
        http_triggers.push(HttpTrigger { route, component });
    }
    Ok(http_triggers)
}

/// Spin's variable name rule, for application and component variables and the names in
/// templates. Returns a message naming the problem.
pub fn validate_variable_name(name: &str) -> Result<(), String> {
    let reason = if name.is_empty() {
        "must not be empty".to_string()
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        format!(
            "invalid character {c:?}: only lowercase letters, digits and underscores are allowed"
        )
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        "must start with a lowercase ASCII letter".to_string()
    } else if !name.as_bytes()[name.len() - 1].is_ascii_alphanumeric() {
        "must end with a lowercase ASCII letter or digit".to_string()
    } else if name.contains("__") {
        "must not contain two underscores in a row".to_string()
    } else {
        return Ok(());
    };
    Err(format!("{name:?}: {reason}"))
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: i64,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: RawRoute,
    #[serde(default)]
    component: Option<RawComponentRef>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Route(String),
    Private {
        #[allow(dead_code)]
        private: bool,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawComponentRef {
    Id(String),
    Inline(#[allow(dead_code)] toml::Value),
}

#[derive(Deserialize)]
struct RawComponent {
    source: RawSource,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    build: Option<RawBuild>,
}

#[derive(Deserialize)]
struct RawBuild {
    command: RawCommands,
    #[serde(default)]
    workdir: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCommands {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSource {
    Local(String),
    Other(#[allow(dead_code)] toml::Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
secret = { required = true, secret = true }
level = { default = "info" }
[[trigger.http]]
route = "/a"
component = "zed"
[[trigger.http]]
route = "/..."
component = "zed"
[[trigger.http]]
route = { private = true }
component = "alpha"
[component.zed]
source = "target/z.wasm"
sqlite_databases = ["default"]
[component.zed.variables]
level = "{{ level }}"
[component.alpha]
source = "a.wasm"
"#;

    #[test]
    fn names_follow_spin_rules() {
        for ok in ["a", "abc", "a1b2", "a_1", "a_1_b_3", "webhook_secret"] {
            assert!(validate_variable_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "aX", "1bc", "_x", "x.y", "x_", "a__b", "x-y", "É"] {
            assert!(validate_variable_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_triggers_components_and_variables() {
        let m = Manifest::parse(APP, Path::new("/app")).unwrap();
        assert_eq!(m.app_name, "demo");
        assert_eq!(m.http_triggers.len(), 2);
        assert_eq!(m.components[0].id, "zed");
        assert_eq!(m.components[0].source, Path::new("/app/target/z.wasm"));
        assert_eq!(m.components[0].sqlite_databases, ["default"]);
        assert!(m.variables["secret"].required);
        assert_eq!(m.variables["level"].default.as_deref(), Some("info"));
    }

    #[test]
    fn rejects_variable_without_default_or_required() {
        let text = APP.replace(r#"level = { default = "info" }"#, "level = {}");
        assert!(Manifest::parse(&text, Path::new("/app")).is_err());
    }

    #[test]
    fn rejects_unknown_component() {
        let text = APP.replace(r#"component = "zed""#, r#"component = "nope""#);
        assert!(Manifest::parse(&text, Path::new("/app")).is_err());
    }
}
