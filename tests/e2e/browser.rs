//! The console in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/console.mjs`), against the built component on the test host.
//!
//! Never skipped: without Chromium (`apt-get install chromium`) or without
//! `tests/browser/node_modules` (`npm ci` there; `.ci/setup` does both) this test fails and
//! says what is missing. Its screenshot goes to `target/console.png`, never into the tracked
//! tree: the README's picture (`docs/console.png`) is replaced on purpose, by copying it.

use crate::support::{App, Req, SECRET};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const TOKEN: &str = "console-read-token";
const INJECTION: &str =
    r#"<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">"#;

fn ago(minutes: u64) -> String {
    let t = SystemTime::now() - Duration::from_secs(minutes * 60);
    let stamp = webhook_inbox::timestamp::format_utc(t);
    format!("{}Z", &stamp[..19])
}

#[test]
fn the_console_works_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` (bash .ci/setup does)"
    );
    let script_dir = root.join("tests/browser");
    assert!(
        script_dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (bash .ci/setup does)"
    );

    let app = App::with_vars(&[("webhook_secret", SECRET), ("read_token", TOKEN)]);
    let texts = [
        "Your invoice #{n} is ready",
        "Delivery window confirmed for {n}",
        "OTP {n} — do not share",
        "Thanks! Reply STOP to opt out",
    ];
    for n in 0..64u64 {
        let text = texts[(n % 4) as usize].replace("{n}", &(1000 + n).to_string());
        let m = json!({"message_id": format!("msg-{n:03}"), "from": format!("+1555000000{}", 1 + n % 3 + n % 2),
                       "to": "+14155550100", "ts": ago(n * 9 + n % 5), "text": text});
        assert_eq!(app.deliver(&m).status, 200);
    }
    let xss = json!({"message_id": "xss-1", "from": "+15550000009", "to": "+14155550100",
                     "ts": ago(200), "text": INJECTION});
    assert_eq!(app.deliver(&xss).status, 200);
    for _ in 0..2 {
        let refused = app.send(
            &Req::new("POST", "/webhook")
                .header("X-Signature", "00")
                .body(b"{}"),
        );
        assert_eq!(refused.status, 401);
    }

    let screenshot = root.join("target/console.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let base = format!("http://{}", app.addr());
    let mut child = Command::new("node")
        .arg(script_dir.join("console.mjs"))
        .arg(&base)
        .arg(&screenshot)
        .env("CONSOLE_TOKEN", TOKEN)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (Node 20 or later)");
    // Bounded: a hung browser fails the test instead of holding CI.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "browser checks failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(screenshot.is_file());
    println!("console screenshot written to {}", screenshot.display());
}
