//! How answers travel: head and body leave in one write. Spin leaves Nagle's algorithm on (no
//! `TCP_NODELAY`), and so does the host; an answer whose head leaves alone, or whose body
//! leaves in several flushed pieces, holds its last segment until the client's delayed ACK,
//! about 40 ms on Linux (pages over 8 KB took 44 ms before the edge queued the body ahead of
//! the head, `src/edge.rs`). The host records each write it makes to a connection, so the
//! test checks the writes themselves, not how long an answer took.

use crate::support::{sign, App, Backend, SECRET};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` on an open keep-alive connection and reads its answer, whose length
/// comes from its `Content-Length`; returns (status, whole answer in bytes, body in bytes).
fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, usize, usize) {
    stream.write_all(request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let text = String::from_utf8(head.clone()).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("every answer here has a length: {text}"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, head.len() + length, length)
}

fn get(target: &str, close: bool) -> Vec<u8> {
    let close = if close { "Connection: close\r\n" } else { "" };
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{close}\r\n").into_bytes()
}

#[test]
fn every_answer_leaves_in_one_write_head_and_body_together() {
    let app = App::start_on(Backend::LocalFile);
    let text = "x".repeat(200);
    for i in 0..100 {
        let m = json!({"message_id": format!("m{i:03}"), "from": "+14155550100",
                       "to": "+14155550101", "ts": "2025-01-15T10:00:00Z", "text": text});
        assert_eq!(app.deliver(&m).status, 200);
    }
    // As Spin answers: the response ends with the component's body. (Held until its instance
    // ends, the body would lose its length and end with a chunk of its own, in a later write:
    // the test host's doing, not the component's.)
    let app = app.answering_like_spin().recording_socket_writes();

    let duplicate = json!({"message_id": "m000", "from": "+14155550100", "to": "+14155550101",
                           "ts": "2025-01-15T10:00:00Z", "text": text})
    .to_string();
    let mut post = format!(
        "POST /webhook HTTP/1.1\r\nHost: localhost\r\nX-Signature: {}\r\n\
         Content-Length: {}\r\n\r\n",
        sign(SECRET, duplicate.as_bytes()),
        duplicate.len()
    )
    .into_bytes();
    post.extend_from_slice(duplicate.as_bytes());
    // (request, expected status, smallest body): a 22 KB page (where the stall showed), a
    // 7 KB one, the console, small answers and a 404; all on one keep-alive connection,
    // the way a client that keeps its connection meets the stall.
    let requests: Vec<(Vec<u8>, u16, usize)> = vec![
        (get("/messages?limit=100", false), 200, 20_000),
        (get("/messages?limit=30", false), 200, 6_000),
        (get("/ui", false), 200, 8_000),
        (get("/stats", false), 200, 1),
        (get("/messages/m042", false), 200, 200),
        (get("/messages/no-such-id", false), 404, 1),
        (post, 200, 1),
        (get("/messages?limit=100", false), 200, 20_000),
        (get("/health/live", true), 200, 1),
    ];

    let mut stream = TcpStream::connect(app.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let client = stream.local_addr().unwrap();
    let mut answers = Vec::new();
    for (request, status, smallest_body) in &requests {
        let (got, whole, body) = exchange(&mut stream, request);
        let target = String::from_utf8_lossy(&request[..request.len().min(40)]).into_owned();
        assert_eq!(got, *status, "{target}");
        assert!(body >= *smallest_body, "{target}: a body of {body} bytes");
        // Well under what Spin takes in one write before anyone reads (1 MiB) and what a
        // loopback socket takes at once, so one write can carry all of it.
        assert!(whole < 256 * 1024, "{target}: {whole} bytes");
        answers.push(whole);
    }
    // The last answer closed the connection; once the client sees that, every write the host
    // made to it is recorded.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes past the last answer", rest.len());

    assert_eq!(
        app.socket_writes(client),
        answers,
        "one write per answer, each the whole answer (head and body)"
    );
}
