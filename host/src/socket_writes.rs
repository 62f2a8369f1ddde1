//! An opt-in record of the server's writes to its client connections
//! ([`HostOptions::record_socket_writes`](crate::HostOptions::record_socket_writes), read with
//! [`Host::socket_writes`](crate::Host::socket_writes)).
//!
//! The host, like Spin, leaves Nagle's algorithm on. An answer whose head and body reach the
//! socket in separate writes can then hold its last segment until the client's delayed ACK
//! (40 ms on Linux). How many writes an answer took, and how many bytes each carried, is that
//! property itself, where the time an answer takes only hints at it (and varies with the
//! machine's load).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Every recorded connection's writes, by the client's address (the connection's peer).
#[derive(Debug, Default)]
pub struct SocketWrites {
    by_client: Mutex<HashMap<SocketAddr, Vec<usize>>>,
}

impl SocketWrites {
    /// Starts the record of a newly accepted connection (a connection from the same address
    /// before it is forgotten).
    pub fn connection(self: &Arc<Self>, client: SocketAddr) -> Recorder {
        self.lock().insert(client, Vec::new());
        Recorder {
            writes: self.clone(),
            client,
        }
    }

    /// The bytes the socket took from each write to the connection from `client`, in order;
    /// `None` if no connection from that address was accepted.
    pub fn of(&self, client: SocketAddr) -> Option<Vec<usize>> {
        self.lock().get(&client).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<usize>>> {
        // A panic elsewhere while holding the lock leaves the map itself intact.
        self.by_client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where one connection's writes are recorded.
#[derive(Debug)]
pub struct Recorder {
    writes: Arc<SocketWrites>,
    client: SocketAddr,
}

impl Recorder {
    fn record(&self, bytes: usize) {
        if let Some(writes) = self.writes.lock().get_mut(&self.client) {
            writes.push(bytes);
        }
    }
}

/// A connection's stream, recording each write that the socket took bytes from (a write
/// that had to wait, or failed, took none and is not recorded). Without a [`Recorder`] it
/// only passes everything through.
#[derive(Debug)]
pub struct Recorded<S> {
    inner: S,
    recorder: Option<Recorder>,
}

impl<S> Recorded<S> {
    pub fn new(inner: S, recorder: Option<Recorder>) -> Self {
        Recorded { inner, recorder }
    }

    fn record(&self, result: &Poll<io::Result<usize>>) {
        if let (Some(recorder), Poll::Ready(Ok(n))) = (&self.recorder, result) {
            if *n > 0 {
                recorder.record(*n);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.record(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.record(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn records_what_each_write_handed_over_per_connection() {
        let writes = Arc::new(SocketWrites::default());
        // A pipe that takes at most 8 bytes until they are read.
        let (near, mut far) = tokio::io::duplex(8);
        let mut stream = Recorded::new(near, Some(writes.connection(client(1))));
        assert_eq!(stream.write(b"head").await.unwrap(), 4);
        assert_eq!(
            stream.write(b"0123456789").await.unwrap(),
            4,
            "a partial write"
        );
        // The pipe is full: the next write waits (not a write yet) until the reader empties
        // it, then takes both slices at once.
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 12];
            far.read_exact(&mut got).await.unwrap();
            got
        });
        let vectored = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
        assert_eq!(stream.write_vectored(&vectored).await.unwrap(), 4);
        stream.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), b"head0123abcd");
        assert_eq!(writes.of(client(1)), Some(vec![4, 4, 4]));
        // Other clients have records of their own.
        assert_eq!(writes.of(client(2)), None);
        let _second = writes.connection(client(2));
        assert_eq!(writes.of(client(2)), Some(vec![]));
        assert_eq!(writes.of(client(1)), Some(vec![4, 4, 4]));
    }

    #[tokio::test]
    async fn a_new_connection_from_the_same_address_starts_a_new_record() {
        let writes = Arc::new(SocketWrites::default());
        let (near, _far) = tokio::io::duplex(64);
        let mut first = Recorded::new(near, Some(writes.connection(client(1))));
        first.write_all(b"first").await.unwrap();
        let (near, _far) = tokio::io::duplex(64);
        let mut second = Recorded::new(near, Some(writes.connection(client(1))));
        second.write_all(b"2nd").await.unwrap();
        assert_eq!(writes.of(client(1)), Some(vec![3]));
    }

    #[tokio::test]
    async fn without_a_recorder_it_only_passes_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Recorded::new(near, None);
        stream.write_all(b"hello").await.unwrap();
        let mut got = [0; 5];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
