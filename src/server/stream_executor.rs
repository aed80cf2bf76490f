//! One task per connection, h2 streams included. hyper runs every h2 stream of a connection as a
//! future it hands to the server's executor (`H2Stream`: the handler's future, then the pipe
//! from the response body to h2's send stream); with `TokioExecutor` each becomes a task of its
//! own, so every delivery to a multiplexed subscriber costs a wake-up and poll of the stream's
//! task, then another of the connection's task to flush, and the two tasks contend for h2's
//! connection lock from both worker threads. [`StreamExecutor`] keeps those futures in the
//! connection's own task instead ([`Streams`]): a topic event wakes that one task however many
//! of its streams watch the topic, every ready stream hands h2 its frames, and then the
//! connection is polled, which writes them all before one flush. (h2 wakes the connection's
//! waker when a stream hands it data; that is this same task, so each round ends with one more,
//! idle poll of it.)
//!
//! Everything else stays hyper's: the h2 protocol, flow control, reset-flood and header limits,
//! keep-alive PINGs, GOAWAY. This module owns only where the stream futures run. A panic while
//! a stream's future is polled ends that stream only, as it would in a task of its own (one
//! while it is dropped is not caught, as tokio's task harness would: it ends the connection).
//! All streams of a connection now share its task, and so one core at a time: a slow poll of
//! one (a handler's first poll, a large passthrough body) delays the others and the
//! connection's PING answers, as it would delay an HTTP/1.1 connection's next request.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tracing::error;

/// A stream future of one connection, boxed (its size is hyper's `H2Stream`'s).
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

tokio::task_local! {
    /// Stream futures hyper handed over while [`Drive`] polls its connection.
    static HANDED_OVER: RefCell<Vec<StreamFuture>>;
}

/// The executor of the server's hyper builder. Called while a connection is being polled by
/// [`Streams::drive`] (hyper starts h2 streams only then), it queues the stream future for that
/// connection's task; called anywhere else (an h2 CONNECT tunnel that hyper starts from a
/// stream), it spawns a tokio task, like hyper's `TokioExecutor`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let mut future = Some(future);
        let queued = HANDED_OVER.try_with(|handed_over| {
            if let Some(future) = future.take() {
                handed_over.borrow_mut().push(isolated(future));
            }
        });
        if queued.is_err() {
            if let Some(future) = future {
                tokio::spawn(future);
            }
        }
    }
}

/// The stream futures of one connection, polled in the connection's task.
#[derive(Default)]
pub struct Streams {
    /// Made at the first stream (an HTTP/1.1 connection never has one): a `FuturesUnordered`
    /// allocates its ready queue when made.
    running: Option<FuturesUnordered<StreamFuture>>,
}

impl Streams {
    /// A future that drives `connection` and this connection's streams together and resolves
    /// with the connection's output. Streams still running then (the connection is gone, so
    /// they can only fail) end when `self` is dropped; streams hyper started in the very poll
    /// in which the connection ended are dropped unpolled (their handler never runs).
    pub fn drive<'a, C: Future>(&'a mut self, connection: Pin<&'a mut C>) -> Drive<'a, C> {
        Drive {
            streams: self,
            connection,
        }
    }

    fn start(&mut self, future: StreamFuture) {
        self.running
            .get_or_insert_with(FuturesUnordered::new)
            .push(future);
    }
}

/// `future`, boxed once, with a panic in its poll ending it alone (the connection and its other
/// streams go on), as with a task per stream; the panic hook has printed it already.
fn isolated<F: Future<Output = ()> + Send + 'static>(future: F) -> StreamFuture {
    Box::pin(AssertUnwindSafe(future).catch_unwind().map(|outcome| {
        if outcome.is_err() {
            error!("an h2 stream's future panicked; that stream is gone");
        }
    }))
}

/// See [`Streams::drive`].
pub struct Drive<'a, C> {
    streams: &'a mut Streams,
    connection: Pin<&'a mut C>,
}

impl<C: Future> Future for Drive<'_, C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        loop {
            // Streams first: each ready one hands h2 its frames (FuturesUnordered polls only
            // those whose waker fired, and yields to the runtime after a full round) ...
            if let Some(running) = &mut this.streams.running {
                while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
            }
            // ... then the connection: reads, starts new streams, writes every frame handed
            // over and flushes.
            let connection = this.connection.as_mut();
            let (poll, started) = HANDED_OVER.sync_scope(RefCell::new(Vec::new()), || {
                let poll = connection.poll(cx);
                (poll, HANDED_OVER.with(RefCell::take))
            });
            if poll.is_ready() || started.is_empty() {
                return poll;
            }
            // New streams run their first poll (the handler) before the task rests.
            for future in started {
                this.streams.start(future);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    /// A stand-in for hyper's connection future: hands `streams` to the executor on its first
    /// poll (as hyper does when requests arrive), then resolves once `done` fires.
    async fn connection(streams: Vec<StreamFuture>, done: oneshot::Receiver<()>) {
        for stream in streams {
            StreamExecutor.execute(stream);
        }
        let _ = done.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_handed_over_while_driving_run_in_the_connections_task() {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = oneshot::channel();
        let mut done_tx = Some(done_tx);
        let mut streams: Vec<StreamFuture> = Vec::new();
        for i in 0..3 {
            let ids = ids.clone();
            let last = if i == 2 { done_tx.take() } else { None };
            streams.push(Box::pin(async move {
                tokio::task::yield_now().await;
                ids.lock().unwrap().push(tokio::task::id());
                if let Some(last) = last {
                    let _ = last.send(());
                }
            }));
        }
        let task = tokio::spawn(async move {
            let connection = connection(streams, done);
            tokio::pin!(connection);
            Streams::default().drive(connection).await;
            tokio::task::id()
        });
        let connection_task = task.await.unwrap();
        let ids = ids.lock().unwrap();
        assert_eq!(ids.len(), 3, "every stream ran");
        assert!(
            ids.iter().all(|id| *id == connection_task),
            "stream tasks {ids:?}, connection task {connection_task:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_stream_ends_alone() {
        let (done_tx, done) = oneshot::channel();
        let streams: Vec<StreamFuture> = vec![
            Box::pin(async { panic!("a stream's bug") }),
            Box::pin(async move {
                tokio::task::yield_now().await;
                let _ = done_tx.send(());
            }),
        ];
        let connection = connection(streams, done);
        tokio::pin!(connection);
        // Resolves only if the second stream ran after the first panicked.
        Streams::default().drive(connection).await;
    }

    #[tokio::test]
    async fn outside_a_connection_the_executor_spawns_a_task() {
        let (id_tx, id_rx) = oneshot::channel();
        StreamExecutor.execute(async move {
            let _ = id_tx.send(tokio::task::id());
        });
        let spawned = id_rx.await.expect("the future ran");
        assert_ne!(tokio::task::try_id(), Some(spawned));
    }
}
