//! Error answers: `{"detail": "..."}` and the 422 list `{"detail": [{loc, msg, type}]}`.

use serde::Serialize;

/// One validation problem, in the shape FastAPI/pydantic clients already parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl FieldError {
    /// A problem with a body field (`loc` = `["body", field]`), or the whole body when
    /// `field` is `None`.
    pub fn body(field: Option<&str>, kind: &'static str, msg: impl Into<String>) -> Self {
        let mut loc = vec!["body".to_owned()];
        loc.extend(field.map(str::to_owned));
        FieldError {
            loc,
            msg: msg.into(),
            kind,
        }
    }

    /// A problem with a query parameter (`loc` = `["query", param]`).
    pub fn query(param: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        FieldError {
            loc: vec!["query".to_owned(), param.to_owned()],
            msg: msg.into(),
            kind,
        }
    }
}

/// `{"detail":"<text>"}`.
pub fn detail(text: &str) -> String {
    serde_json::json!({ "detail": text }).to_string()
}

/// `{"detail":[...]}` for a 422.
pub fn validation(errors: &[FieldError]) -> String {
    serde_json::json!({ "detail": errors }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(detail("not found"), r#"{"detail":"not found"}"#);
        let body = validation(&[
            FieldError::body(Some("from"), "missing", "Field required"),
            FieldError::query("limit", "int_parsing", "x"),
        ]);
        assert_eq!(
            body,
            r#"{"detail":[{"loc":["body","from"],"msg":"Field required","type":"missing"},{"loc":["query","limit"],"msg":"x","type":"int_parsing"}]}"#
        );
    }
}
