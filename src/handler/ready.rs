//! `GET /health/ready`: the database, the schema, the secret and the configuration.

use super::*;

/// Ready when the database answers with our schema in place and a secret is configured.
/// The body also says whether reads need a token (`read_auth`, `metrics_auth`) and which
/// native sources are configured (`sources`); open reads and a provider left unset are a
/// deployment's choice, not a failure. A value that is set but unusable is (`config`).
pub(super) fn ready(context: &mut Context) -> Outcome {
    let mut failures = serde_json::Map::new();
    let mut errors = Vec::new();
    let secret = context.variable(config::WEBHOOK_SECRET).unwrap_or_default();
    if secret.is_empty() {
        failures.insert("secret".into(), "webhook secret not configured".into());
    } else if let Err(problem) = signature::secret_key(&secret) {
        failures.insert("secret".into(), format!("webhook_secret: {problem}").into());
    }
    let mut config_problems = Vec::new();
    let previous = context
        .variable(config::WEBHOOK_SECRET_PREVIOUS)
        .unwrap_or_default();
    if let Err(problem) = signature::secret_key(&previous) {
        config_problems.push(format!("webhook_secret_previous: {problem}"));
    }
    if let Err(problem) =
        config::max_body_bytes(context.variable(config::MAX_BODY_BYTES).as_deref())
    {
        config_problems.push(problem);
    }
    let tolerance = context.variable(config::SIGNATURE_TOLERANCE_SECONDS);
    if let Err(problem) = config::signature_tolerance_seconds(tolerance.as_deref()) {
        config_problems.push(problem);
    }
    let whatsapp_limit = context.variable(config::WHATSAPP_MAX_BODY_BYTES);
    if let Err(problem) = config::whatsapp_max_body_bytes(whatsapp_limit.as_deref()) {
        config_problems.push(problem);
    }
    if let Err(problem) =
        config::public_base_url(context.variable(config::PUBLIC_BASE_URL).as_deref())
    {
        config_problems.push(problem);
    }
    let log_size = context.variable(config::REJECTION_LOG_SIZE);
    if let Err(problem) = config::rejection_log_size(log_size.as_deref()) {
        config_problems.push(problem);
    }
    let feed_bound = context.variable(config::FEED_MAX_CONSUMERS);
    if let Err(problem) = config::feed_max_consumers(feed_bound.as_deref()) {
        config_problems.push(problem);
    }
    if let Err(problem) = config::lifecycle(|name| context.variable(name)) {
        config_problems.push(problem);
    }
    if !config_problems.is_empty() {
        failures.insert("config".into(), config_problems.join("; ").into());
    }
    match context.storage.ensure_schema() {
        Ok(version) if version >= SCHEMA_VERSION => {}
        Ok(_) => {
            failures.insert("schema".into(), "schema not applied".into());
        }
        Err(err) => {
            // The reason goes to the log, not to whoever can reach the probe.
            failures.insert("database".into(), "database unavailable".into());
            errors.push(format!("storage: {err}"));
        }
    }
    let read_auth = auth_state(context, config::READ_TOKENS);
    let metrics_auth = auth_state(context, config::METRICS_TOKENS);
    let sources = serde_json::json!({
        "whatsapp": source_state(context, &WHATSAPP_NEEDS),
        "twilio": source_state(context, &TWILIO_NEEDS),
    });
    if failures.is_empty() {
        let body = serde_json::json!({
            "status": "ready",
            "read_auth": read_auth,
            "metrics_auth": metrics_auth,
            "sources": sources,
        });
        return Outcome::json(StatusCode::OK, body.to_string());
    }
    let body = serde_json::json!({
        "status": "not ready",
        "checks": failures,
        "read_auth": read_auth,
        "metrics_auth": metrics_auth,
        "sources": sources,
    });
    let mut outcome = Outcome::json(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
    outcome.error = Some(anyhow::Error::msg(if errors.is_empty() {
        failures.keys().cloned().collect::<Vec<_>>().join(", ") + " check failed"
    } else {
        errors.join("; ")
    }));
    outcome
}

/// `"open"` or `"required"`: whether `tokens` guard their endpoints, for the readiness body.
fn auth_state(context: &Context, tokens: TokenPair) -> &'static str {
    match context.runtime.variable(tokens.current) {
        Ok(Some(token)) if !token.is_empty() => "required",
        Ok(_) => "open",
        // Reads then answer 503 until the provider answers.
        Err(_) => "unavailable",
    }
}

/// What `POST /webhook/whatsapp` (the app secret) and Meta's handshake (the verify token)
/// need.
const WHATSAPP_NEEDS: [&str; 2] = [config::WHATSAPP_APP_SECRET, config::WHATSAPP_VERIFY_TOKEN];
/// What `POST /webhook/twilio` needs: the auth token, and the URL Twilio calls.
const TWILIO_NEEDS: [&str; 2] = [config::TWILIO_AUTH_TOKEN, config::PUBLIC_BASE_URL];

/// A native source's configuration, for the readiness body: `{"status": …, "unset": […]}`
/// with `status` `"configured"` (every variable it needs is set), `"partial"` (its routes
/// answer 503 or 403 until `unset` are set), `"off"` (none set: the deployment does not use
/// it) or `"unavailable"` (the variables provider fails: its routes answer 503).
fn source_state(context: &Context, needs: &[&'static str]) -> serde_json::Value {
    let mut unset = Vec::new();
    for name in needs {
        match context.runtime.variable(name) {
            // Secrets are used byte for byte; the URL with blanks around it dropped.
            Ok(Some(value)) if *name == config::PUBLIC_BASE_URL && !value.trim().is_empty() => {}
            Ok(Some(value)) if *name != config::PUBLIC_BASE_URL && !value.is_empty() => {}
            Ok(_) => unset.push(*name),
            Err(_) => return serde_json::json!({"status": "unavailable", "unset": []}),
        }
    }
    let status = match unset.len() {
        0 => "configured",
        n if n == needs.len() => "off",
        _ => "partial",
    };
    serde_json::json!({"status": status, "unset": unset})
}
