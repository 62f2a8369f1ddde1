//! Component stdout/stderr capture.
//!
//! Each instance collects its output in its own buffer and hands over only complete lines, so a
//! line can never be interleaved with another instance's output even when the guest writes it
//! in several chunks. Lines go to an in-memory log (read by tests), optionally to the terminal,
//! and to `<app_dir>/.spin/logs/<component>_{stdout,stderr}.txt` like Spin.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Which terminal stream to echo to.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Everything all instances of the app wrote to one stream, in order.
#[derive(Default)]
pub struct Captured {
    bytes: Mutex<Vec<u8>>,
    /// Keep nothing (`HostOptions::capture_logs` off): `text()` stays empty.
    discard: bool,
}

impl Captured {
    /// A capture that keeps every line (`keep`), or none.
    pub fn new(keep: bool) -> Self {
        Self {
            bytes: Mutex::default(),
            discard: !keep,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// One stream of one component: the shared capture, its log file, and terminal echo.
pub struct Sink {
    captured: Arc<Captured>,
    file: Option<Mutex<File>>,
    echo: Option<Stream>,
}

impl Sink {
    pub fn new(
        captured: Arc<Captured>,
        log_file: Option<&Path>,
        echo: Option<Stream>,
    ) -> Arc<Self> {
        // The file is a convenience (Spin writes one too); failing to open it is not fatal.
        let file = log_file.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
                .map(Mutex::new)
        });
        Arc::new(Self {
            captured,
            file,
            echo,
        })
    }

    /// Appends whole lines atomically with respect to other instances.
    fn append(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // Holding the capture lock while writing the file and terminal keeps all three in the
        // same order.
        let mut captured = self.captured.bytes.lock().unwrap();
        if !self.captured.discard {
            captured.extend_from_slice(bytes);
        }
        if let Some(f) = &self.file {
            let _ = f.lock().unwrap().write_all(bytes);
        }
        match self.echo {
            Some(Stream::Stdout) => {
                let _ = std::io::stdout().lock().write_all(bytes);
            }
            Some(Stream::Stderr) => {
                let _ = std::io::stderr().lock().write_all(bytes);
            }
            None => {}
        }
    }
}

/// The per-instance end of a sink: buffers a partial line until it is complete or the instance
/// ends.
struct Pending {
    sink: Arc<Sink>,
    partial: Mutex<Vec<u8>>,
}

impl Pending {
    fn write(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap();
        partial.extend_from_slice(bytes);
        if let Some(last_nl) = partial.iter().rposition(|b| *b == b'\n') {
            let rest = partial.split_off(last_nl + 1);
            let lines = std::mem::replace(&mut *partial, rest);
            self.sink.append(&lines);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let partial = std::mem::take(self.partial.get_mut().unwrap());
        self.sink.append(&partial);
    }
}

/// A guest stdout/stderr for one instance. Clones share the partial-line buffer.
#[derive(Clone)]
pub struct InstanceOutput(Arc<Pending>);

impl InstanceOutput {
    pub fn new(sink: Arc<Sink>) -> Self {
        Self(Arc::new(Pending {
            sink,
            partial: Mutex::new(Vec::new()),
        }))
    }
}

impl IsTerminal for InstanceOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for InstanceOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for InstanceOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Memory-backed: always ready, no practical limit per write.
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for InstanceOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for InstanceOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_published_until_instance_ends() {
        let captured = Arc::new(Captured::default());
        let sink = Sink::new(captured.clone(), None, None);
        let a = InstanceOutput::new(sink.clone());
        let b = InstanceOutput::new(sink);
        a.0.write(b"{\"a\":");
        b.0.write(b"{\"b\":1}\n");
        a.0.write(b"1}\npart");
        assert_eq!(captured.text(), "{\"b\":1}\n{\"a\":1}\n");
        drop(a);
        assert_eq!(captured.text(), "{\"b\":1}\n{\"a\":1}\npart");
    }
}
