//! The HTTP/1.1 front end: serves requests, each on a fresh component instance.
//!
//! Also Spin's well-known paths, routing, and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::WasiHttpView;

use crate::instance::{ComponentConfig, InstanceState};
use crate::logs::{InstanceOutput, Sink};
use crate::routing::{RouteMatch, Router, WELL_KNOWN_PREFIX};
use crate::socket_writes::{Recorded, SocketWrites};

/// How long shutdown waits for in-flight requests before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// One component, ready to instantiate.
pub struct ComponentRuntime {
    pub pre: ProxyPre<InstanceState>,
    pub config: ComponentConfig,
    pub stdout: Arc<Sink>,
    pub stderr: Arc<Sink>,
}

/// Everything the server needs to answer requests.
pub struct App {
    /// See `HostOptions::hold_responses_until_instance_ends`.
    pub hold_responses_until_instance_ends: bool,
    pub router: Router,
    pub components: HashMap<String, ComponentRuntime>,
    /// Body of `/.well-known/spin/info`.
    pub info_json: String,
    /// See `HostOptions::record_socket_writes`.
    pub socket_writes: Option<Arc<SocketWrites>>,
}

/// Binds with a large backlog so bursts of hundreds of connections are not dropped.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until `shutdown` flips, then lets open connections finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Usually fd exhaustion; back off instead of spinning.
                        eprintln!("spin-test-host: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                // No TCP_NODELAY: Spin's HTTP trigger leaves Nagle's algorithm on (v4.0.2,
                // crates/trigger-http/src/server.rs), and a component that writes its answer
                // in small flushed pieces stalls there. The host must show that, not hide it.
                let recorder = app.socket_writes.as_ref().map(|w| w.connection(client));
                let stream = Recorded::new(stream, recorder);
                let app = app.clone();
                let shutdown = shutdown.clone();
                connections.spawn(serve_connection(stream, client, app, shutdown));
                while connections.try_join_next().is_some() {}
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        eprintln!(
            "spin-test-host: requests still running after shutdown grace period; dropping them"
        );
    }
}

async fn serve_connection(
    stream: Recorded<tokio::net::TcpStream>,
    client: SocketAddr,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| handle(app.clone(), req, client));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if !e.is_incomplete_message() {
            eprintln!("spin-test-host: connection from {client}: {e}");
        }
    }
}

fn simple(status: StatusCode, body: impl Into<Bytes>) -> Response<HyperOutgoingBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    client: SocketAddr,
) -> Result<Response<HyperOutgoingBody>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix(WELL_KNOWN_PREFIX) {
        return Ok(match rest {
            "health" => simple(StatusCode::OK, "OK"),
            "info" => {
                let mut r = simple(StatusCode::OK, app.info_json.clone());
                r.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                r
            }
            _ => simple(StatusCode::NOT_FOUND, ""),
        });
    }
    let Some(route) = app.router.route(&path) else {
        return Ok(simple(StatusCode::NOT_FOUND, ""));
    };
    match run_component(&app, req, &route, client).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            eprintln!("spin-test-host: error processing {path}: {e:?}");
            Ok(simple(StatusCode::INTERNAL_SERVER_ERROR, ""))
        }
    }
}

/// Gives the request an absolute URI from the `Host` header and adds the `spin-*` headers,
/// as Spin does before handing it to the guest.
fn prepare_request(
    req: Request<Incoming>,
    route: &RouteMatch,
    client: SocketAddr,
) -> anyhow::Result<Request<Incoming>> {
    let (mut parts, body) = req.into_parts();
    // Spin refuses (500) a request whose header values are not UTF-8.
    for (name, value) in &parts.headers {
        if std::str::from_utf8(value.as_bytes()).is_err() {
            anyhow::bail!("header {name} is not valid UTF-8");
        }
    }
    let host_header = parts
        .headers
        .get(hyper::header::HOST)
        .map(|h| -> anyhow::Result<http::uri::Authority> { Ok(h.to_str()?.parse()?) })
        .transpose()?;
    let authority = match (host_header, parts.uri.authority().cloned()) {
        (Some(h), Some(u)) if h != u => {
            anyhow::bail!("authority in 'Host' header does not match authority in URI")
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => anyhow::bail!("no 'Host' header present in request"),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    parts.uri = http::Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path_and_query.as_str())
        .build()?;
    for (name, value) in route.spin_headers(authority.as_str(), &path_and_query, client) {
        // Appended after the client's own headers, like Spin.
        parts.headers.append(
            http::HeaderName::from_bytes(name.as_bytes())?,
            http::HeaderValue::from_str(&value)?,
        );
    }
    Ok(Request::from_parts(parts, body))
}

async fn run_component(
    app: &App,
    req: Request<Incoming>,
    route: &RouteMatch,
    client: SocketAddr,
) -> anyhow::Result<Response<HyperOutgoingBody>> {
    let component = app
        .components
        .get(&route.component)
        .ok_or_else(|| anyhow::anyhow!("unknown component {:?}", route.component))?;
    let req = prepare_request(req, route, client)?;

    component.config.calls.count(crate::calls::Call::Instance);
    let state = InstanceState::new(
        &component.config,
        InstanceOutput::new(component.stdout.clone()),
        InstanceOutput::new(component.stderr.clone()),
    );
    let mut store = Store::new(component.pre.engine(), state);
    store.limiter(|state| &mut state.memory);
    let wasm_req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .map_err(wt)?;
    let (tx, rx) = oneshot::channel();
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(tx)
        .map_err(wt)?;
    let pre = component.pre.clone();
    // The instance runs in its own task so it can keep streaming the body after the response
    // head is sent; the store (and with it every connection and buffered log line) is dropped
    // when the task ends.
    let task: JoinHandle<anyhow::Result<()>> = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await.map_err(wt)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, wasm_req, out)
            .await
            .map_err(wt)?;
        drop(store);
        Ok(())
    });

    match rx.await {
        Ok(Ok(mut resp)) if app.hold_responses_until_instance_ends => {
            // Without a length, hyper must wait for the body's end (the instance's end)
            // before it can finish the response or close the connection.
            resp.headers_mut().remove(http::header::CONTENT_LENGTH);
            Ok(resp.map(|body| {
                UntilInstanceEnds {
                    body,
                    task: Some(task),
                }
                .boxed_unsync()
            }))
        }
        Ok(Ok(resp)) => {
            // Like Spin: the response ends with the guest's body; the instance may run on.
            tokio::spawn(async move { report_late_failure(task.await) });
            Ok(resp.map(|body| body.boxed_unsync()))
        }
        Ok(Err(code)) => {
            anyhow::bail!("guest failed to produce a response: {code:?}")
        }
        Err(_) => {
            task.await??;
            anyhow::bail!("guest returned without setting a response")
        }
    }
}

/// Reports how an instance ended after its response had started.
fn report_late_failure(result: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("spin-test-host: component error after response started: {e:?}"),
        Err(e) if e.is_cancelled() => {}
        Err(e) => eprintln!("spin-test-host: component task failed: {e}"),
    }
}

/// Converts wasmtime's error type into anyhow with its full context chain.
fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// The guest's response body, held open until the instance has finished, so that by the time
/// a client has read the whole response the instance's log lines are captured and its SQLite
/// connections closed.
struct UntilInstanceEnds {
    body: HyperOutgoingBody,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Body for UntilInstanceEnds {
    type Data = Bytes;
    type Error = ErrorCode;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        if let Some(frame) = ready!(Pin::new(&mut self.body).poll_frame(cx)) {
            return Poll::Ready(Some(frame));
        }
        if let Some(task) = self.task.as_mut() {
            let result = ready!(Pin::new(task).poll(cx));
            self.task = None;
            report_late_failure(result);
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.task.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UntilInstanceEnds {
    fn drop(&mut self) {
        // Like Spin, a client that goes away does not cut the instance short: it runs to the
        // end of its handler (its writes to the body just fail).
        if let Some(task) = self.task.take() {
            tokio::spawn(async move { report_late_failure(task.await) });
        }
    }
}
