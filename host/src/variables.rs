//! Spin variables: resolved once at start, then served through `fermyon:spin/variables`.
//!
//! As in `spin up`, an application variable takes its value from the environment
//! (`SPIN_VARIABLE_<NAME>`), then `<app_dir>/.env`, then its default, and a required variable
//! without one stops the start. Component variables are templates over them
//! (`"a-{{ name }}-b"`), and each component sees only its own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::bindings::fermyon::spin::variables as wit;
use crate::manifest::{validate_variable_name, Manifest};

/// One piece of a component variable template.
#[derive(Debug, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

/// Splits `"a-{{ b }}-c"` into literal and variable parts.
fn parse_template(template: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Lit(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unterminated '{{{{' in template {template:?}");
        };
        let name = after[..end].trim();
        validate_variable_name(name).map_err(|e| anyhow::anyhow!("template {template:?}: {e}"))?;
        parts.push(Part::Var(name.to_string()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(parts)
}

/// Where application variable values come from, highest priority first: the environment
/// (`SPIN_VARIABLE_<NAME>`, real or given), then `<app_dir>/.env` as Spin's env provider reads
/// it, then the manifest default.
pub struct EnvSource {
    env: Option<HashMap<String, String>>,
    dotenv: HashMap<String, String>,
}

impl EnvSource {
    pub fn new(env: Option<HashMap<String, String>>, app_dir: &Path) -> Self {
        let dotenv = std::fs::read_to_string(app_dir.join(".env"))
            .map(|text| parse_dotenv(&text))
            .unwrap_or_default();
        Self { env, dotenv }
    }

    fn lookup(&self, var: &str) -> Option<String> {
        let key = format!("SPIN_VARIABLE_{}", var.to_ascii_uppercase());
        let from_env = match &self.env {
            Some(map) => map.get(&key).cloned(),
            None => std::env::var(&key).ok(),
        };
        from_env.or_else(|| self.dotenv.get(&key).cloned())
    }
}

fn parse_dotenv(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Component id -> (component variable -> final value).
pub type ComponentVariables = HashMap<String, Arc<BTreeMap<String, String>>>;

/// Resolves every application variable and every component's variables, failing like
/// `spin up` does when a required variable has no value or a template is invalid.
pub fn resolve(manifest: &Manifest, source: &EnvSource) -> Result<ComponentVariables> {
    let mut app_values = HashMap::new();
    for (name, var) in &manifest.variables {
        let value = source.lookup(name).or_else(|| var.default.clone());
        match value {
            Some(v) => {
                app_values.insert(name.as_str(), v);
            }
            None => bail!(
                "required variable {name:?} has no value: set SPIN_VARIABLE_{}",
                name.to_ascii_uppercase()
            ),
        }
    }

    let mut out = HashMap::new();
    for component in &manifest.components {
        let mut values = BTreeMap::new();
        for (key, template) in &component.variables {
            let mut value = String::new();
            for part in parse_template(template)? {
                match part {
                    Part::Lit(l) => value.push_str(&l),
                    Part::Var(v) => match app_values.get(v.as_str()) {
                        Some(x) => value.push_str(x),
                        None => bail!(
                            "component {:?} variable {key:?} refers to unknown application variable {v:?}",
                            component.id
                        ),
                    },
                }
            }
            values.insert(key.clone(), value);
        }
        out.insert(component.id.clone(), Arc::new(values));
    }
    Ok(out)
}

/// Per-instance state behind `fermyon:spin/variables`.
pub struct VariablesState {
    pub component: String,
    pub values: Arc<BTreeMap<String, String>>,
    /// The host's tally of guest -> host calls (`get` counts as `variables_get`).
    pub calls: Arc<crate::calls::Calls>,
}

impl VariablesState {
    pub fn get(&self, name: &str) -> Result<String, wit::Error> {
        validate_variable_name(name).map_err(wit::Error::InvalidName)?;
        self.values.get(name).cloned().ok_or_else(|| {
            wit::Error::Undefined(format!(
                "no variable {name:?} for component {:?}",
                self.component
            ))
        })
    }
}

impl wit::Host for VariablesState {
    async fn get(&mut self, name: String) -> Result<String, wit::Error> {
        self.calls.count(crate::calls::Call::VariablesGet);
        VariablesState::get(self, &name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_parts() {
        assert_eq!(
            parse_template("p-{{ a }}-{{b}}").unwrap(),
            vec![
                Part::Lit("p-".into()),
                Part::Var("a".into()),
                Part::Lit("-".into()),
                Part::Var("b".into())
            ]
        );
        assert!(parse_template("{{ a").is_err());
        assert!(parse_template("{{ A }}").is_err());
    }

    #[test]
    fn dotenv_lines() {
        let m = parse_dotenv("# c\nA=1\nexport B = \"two\"\n\nC='3'\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two");
        assert_eq!(m["C"], "3");
    }
}
