//! The load generator: `concurrency` tasks, each with one keep-alive HTTP/1.1 connection,
//! taking request numbers from a shared counter until `max_requests` or `max_time`.
//!
//! It runs on its own single-threaded tokio runtime, so the client never uses more than one
//! of the machine's cores; the host (in the same process) has its own runtime.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One request, fully built before the timed phase (bodies are already signed).
#[derive(Clone)]
pub struct Req {
    pub method: &'static str,
    pub target: String,
    pub body: Bytes,
    pub signature: Option<String>,
    /// An `Authorization` header (the admin routes).
    pub authorization: Option<String>,
}

impl Req {
    pub fn get(target: impl Into<String>) -> Req {
        Req {
            method: "GET",
            target: target.into(),
            body: Bytes::new(),
            signature: None,
            authorization: None,
        }
    }
}

/// Request `i` of a scenario.
pub type Source = Arc<dyn Fn(usize) -> Req + Send + Sync>;

#[derive(Clone)]
pub struct Plan {
    pub scenario: crate::scenarios::Scenario,
    pub name: String,
    pub concurrency: usize,
    pub max_requests: usize,
    pub max_time: Duration,
    /// Unmeasured requests first (cold caches, first instantiation), from the same source.
    pub warmup: usize,
    pub source: Source,
    /// A request with no complete answer by then is given up (a transport error, counted in
    /// `Measured::timeouts`) and its connection dropped. `None`: waits as long as it takes.
    pub request_timeout: Option<Duration>,
}

/// What one scenario measured.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    pub requests: usize,
    pub elapsed: Duration,
    /// Per-request latency, sorted ascending.
    pub latencies: Vec<Duration>,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, usize>,
    /// Connection or protocol failures (no status), timeouts included.
    pub transport_errors: usize,
    /// Requests given up after the plan's `request_timeout`.
    pub timeouts: usize,
    pub first_error: Option<String>,
    /// CPU time this process (host, instances, SQLite and the load generator) used during
    /// the timed phase; `None` where `/proc/self/stat` cannot be read.
    pub cpu: Option<Duration>,
}

impl Measured {
    pub fn non_200(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn errors(&self) -> usize {
        self.non_200() + self.transport_errors
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    /// Answered requests that took longer than `limit`.
    pub fn over(&self, limit: Duration) -> usize {
        self.latencies.len() - self.latencies.partition_point(|l| *l <= limit)
    }

    /// Adds `part`'s requests, answers and failures (not its elapsed time or CPU);
    /// latencies are left unsorted.
    fn absorb(&mut self, part: Measured) {
        self.requests += part.requests;
        self.latencies.extend(part.latencies);
        for (s, n) in part.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.transport_errors += part.transport_errors;
        self.timeouts += part.timeouts;
        self.first_error = self.first_error.take().or(part.first_error);
    }

    /// Runs that went on at the same time (e.g. against two hosts) as one: their requests
    /// over the longest one's time. No CPU figure (each run's would count the others').
    pub fn concurrent(parts: Vec<Measured>) -> Measured {
        let mut total = Measured::default();
        for part in parts {
            total.elapsed = total.elapsed.max(part.elapsed);
            total.absorb(part);
        }
        total.latencies.sort_unstable();
        total
    }

    /// This process's CPU time per answered request.
    pub fn cpu_per_request(&self) -> Option<Duration> {
        self.cpu
            .filter(|_| self.requests > 0)
            .map(|cpu| cpu / self.requests as u32)
    }
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux).
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are fields 14 and 15 of the line, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ: 100 on every Linux architecture Rust targets.
    Some(Duration::from_millis(ticks * 10))
}

pub struct LoadGen {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl LoadGen {
    pub fn new(addr: SocketAddr) -> Result<LoadGen> {
        assert!(
            addr.ip().is_loopback(),
            "the benchmark only talks to loopback"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(LoadGen { rt, addr })
    }

    pub fn run(&self, plan: &Plan) -> Measured {
        self.rt.block_on(run(self.addr, plan))
    }

    /// `plan`'s requests one after another on one keep-alive connection (its concurrency and
    /// warm-up are not used), until its caps or until `more` says the answer just read was
    /// the last one needed.
    pub fn run_until(&self, plan: &Plan, more: impl FnMut(u16, &Bytes) -> bool) -> Measured {
        self.rt.block_on(async {
            let started = Instant::now();
            let next = Arc::new(AtomicUsize::new(0));
            let deadline = started + plan.max_time;
            let source = plan.source.clone();
            let limits = Limits {
                max: plan.max_requests,
                deadline,
                timeout: plan.request_timeout,
            };
            let mut m = worker(self.addr, next, source, limits, more).await;
            m.elapsed = started.elapsed();
            m.latencies.sort_unstable();
            m
        })
    }

    /// One request on a fresh connection, for checks outside the timed phase.
    pub fn fetch(&self, req: Req) -> Result<(u16, Bytes)> {
        self.rt.block_on(async {
            let mut conn = connect(self.addr).await?;
            let (status, body, _) = send(&mut conn, self.addr, &req).await?;
            Ok((status, body))
        })
    }

    /// [`LoadGen::fetch`], given up after `timeout`: (status, body, time to the whole answer).
    pub fn fetch_within(&self, req: Req, timeout: Duration) -> Result<(u16, Bytes, Duration)> {
        self.rt.block_on(async {
            let started = Instant::now();
            let answer = tokio::time::timeout(timeout, async {
                let mut conn = connect(self.addr).await?;
                send(&mut conn, self.addr, &req).await
            })
            .await;
            match answer {
                Ok(Ok((status, body, _))) => Ok((status, body, started.elapsed())),
                Ok(Err(e)) => Err(e),
                Err(_) => anyhow::bail!(
                    "{} {}: no answer within {timeout:?}",
                    req.method,
                    req.target
                ),
            }
        })
    }
}

/// What one streamed GET delivered: its status, the lines of its body, its bytes, and how
/// long from sending the request to the end of the body.
pub struct Streamed {
    pub status: u16,
    pub lines: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl LoadGen {
    /// GET `target` and read its body frame by frame as it arrives, counting lines and
    /// keeping none of it (an export of 1M rows is ~150 MB). Fails if the body does not end
    /// properly (hyper reports a chunked body cut off without its terminating chunk).
    pub fn stream(&self, target: &str) -> Result<Streamed> {
        self.rt.block_on(async {
            let mut conn = connect(self.addr).await?;
            conn.ready().await?;
            let started = Instant::now();
            let request = hyper::Request::builder()
                .uri(target)
                .header("host", self.addr.to_string())
                .body(Full::new(Bytes::new()))?;
            let response = conn.send_request(request).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let (mut lines, mut bytes) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    bytes += data.len() as u64;
                    lines += data.iter().filter(|b| **b == b'\n').count() as u64;
                }
            }
            Ok(Streamed {
                status,
                lines,
                bytes,
                elapsed: started.elapsed(),
            })
        })
    }
}

/// What [`LoadGen::sequence`] tells its caller before each request.
pub enum Step<'a> {
    /// Nothing sent yet.
    Start,
    /// The previous request's whole answer, and how long it took.
    Answer {
        status: u16,
        body: &'a Bytes,
        latency: Duration,
    },
    /// The previous request failed without an answer (its connection is dropped).
    Failed(&'a str),
}

impl LoadGen {
    /// Requests one after another on one keep-alive connection, each chosen by `next` from
    /// the previous answer (a client whose requests depend on what it read, e.g. a feed
    /// consumer's pages and commits), until `next` returns `None`. The caller keeps its own
    /// figures from the answers; this returns the wall time of the whole sequence.
    pub fn sequence(&self, mut next: impl FnMut(Step) -> Option<Req>) -> Duration {
        self.rt.block_on(async {
            let started = Instant::now();
            let mut conn = None;
            let mut req = next(Step::Start);
            while let Some(r) = req.take() {
                let sent = Instant::now();
                let result = match conn.as_mut() {
                    Some(c) => send(c, self.addr, &r).await,
                    None => match connect(self.addr).await {
                        Ok(c) => send(conn.insert(c), self.addr, &r).await,
                        Err(e) => Err(e),
                    },
                };
                req = match result {
                    Ok((status, body, keep_alive)) => {
                        if !keep_alive {
                            conn = None;
                        }
                        next(Step::Answer {
                            status,
                            body: &body,
                            latency: sent.elapsed(),
                        })
                    }
                    Err(e) => {
                        conn = None;
                        next(Step::Failed(&format!("{} {}: {e:#}", r.method, r.target)))
                    }
                };
            }
            started.elapsed()
        })
    }
}

async fn run(addr: SocketAddr, plan: &Plan) -> Measured {
    if plan.warmup > 0 {
        if let Ok(mut conn) = connect(addr).await {
            for i in 0..plan.warmup {
                let _ = send(&mut conn, addr, &(plan.source)(i)).await;
            }
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + plan.max_time;
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|_| {
            let next = next.clone();
            let source = plan.source.clone();
            let limits = Limits {
                max: plan.max_requests,
                deadline,
                timeout: plan.request_timeout,
            };
            tokio::spawn(worker(addr, next, source, limits, |_, _: &Bytes| true))
        })
        .collect();
    let mut total = Measured::default();
    for w in workers {
        total.absorb(w.await.expect("worker task"));
    }
    total.elapsed = started.elapsed();
    total.cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    total.latencies.sort_unstable();
    total
}

/// When a worker stops: after `max` requests in all (a shared count), at `deadline`, and each
/// request after `timeout`.
struct Limits {
    max: usize,
    deadline: Instant,
    timeout: Option<Duration>,
}

async fn worker(
    addr: SocketAddr,
    next: Arc<AtomicUsize>,
    source: Source,
    limits: Limits,
    mut more: impl FnMut(u16, &Bytes) -> bool,
) -> Measured {
    let mut out = Measured::default();
    let mut conn = None;
    loop {
        if Instant::now() >= limits.deadline {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= limits.max {
            break;
        }
        let req = source(i);
        let started = Instant::now();
        // Connecting is part of the first request's latency, as it is for a real client.
        let request = async {
            match conn.as_mut() {
                Some(c) => send(c, addr, &req).await,
                None => match connect(addr).await {
                    Ok(c) => send(conn.insert(c), addr, &req).await,
                    Err(e) => Err(e),
                },
            }
        };
        let result = match limits.timeout {
            None => request.await,
            Some(limit) => match tokio::time::timeout(limit, request).await {
                Ok(result) => result,
                Err(_) => {
                    out.timeouts += 1;
                    Err(anyhow::anyhow!("no answer within {limit:?}"))
                }
            },
        };
        out.requests += 1;
        match result {
            Ok((status, body, keep_alive)) => {
                out.latencies.push(started.elapsed());
                *out.statuses.entry(status).or_default() += 1;
                if status != 200 && out.first_error.is_none() {
                    out.first_error = Some(format!(
                        "{} {} -> {status}: {}",
                        req.method,
                        req.target,
                        String::from_utf8_lossy(&body)
                    ));
                }
                if !keep_alive {
                    conn = None;
                }
                if !more(status, &body) {
                    break;
                }
            }
            Err(e) => {
                out.transport_errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("{} {}: {e:#}", req.method, req.target));
                conn = None;
            }
        }
    }
    out
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `req` and reads the whole answer: (status, body, connection still usable).
async fn send(
    conn: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    req: &Req,
) -> Result<(u16, Bytes, bool)> {
    conn.ready().await?;
    let mut builder = hyper::Request::builder()
        .method(req.method)
        .uri(req.target.as_str())
        .header("host", addr.to_string());
    if !req.body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    if let Some(sig) = &req.signature {
        builder = builder.header("x-signature", sig.as_str());
    }
    if let Some(authorization) = &req.authorization {
        builder = builder.header("authorization", authorization.as_str());
    }
    let response = conn
        .send_request(builder.body(Full::new(req.body.clone()))?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body, !conn.is_closed()))
}
