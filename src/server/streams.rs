//! The streams of one h2 connection, run in the connection's own task: a topic event wakes
//! that one task however many of its streams watch the topic, every ready stream hands h2 its
//! frames, and the connection then writes them together, in one write or a few (it yields
//! while its streams keep handing frames: [`super::connection`]'s h2 module). With a task per
//! stream, each delivery would cost a wake-up and poll of the stream's task, then another of
//! the connection's task, and the two would contend for h2's connection lock from both worker
//! threads (the difference is measured in benches/RESULTS.md).
//!
//! This module owns only where the stream futures run; it must never look into a stream (its
//! request, its frames) nor hold one back from its poll. A panic while a stream's future is
//! polled ends that stream only, as it would in a task of its own (one while it is dropped is
//! not caught, as tokio's task harness would: it ends the connection). All streams of a
//! connection share its task, and so one core at a time: a slow poll of one (a handler's first
//! poll, a large passthrough body) delays the others and the connection's PING answers, as it
//! would delay an HTTP/1.1 connection's next request.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Context;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tracing::error;

/// A stream future of one connection, boxed (each is sized for its own handler's state).
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The stream futures of one connection, polled in the connection's task.
#[derive(Default)]
pub struct Streams {
    /// Made at the first stream: a `FuturesUnordered` allocates its ready queue when made.
    running: Option<FuturesUnordered<StreamFuture>>,
}

impl Streams {
    /// Runs `future` among this connection's streams (first polled at the next
    /// [`Streams::poll`]).
    pub fn start<F: Future<Output = ()> + Send + 'static>(&mut self, future: F) {
        self.running
            .get_or_insert_with(FuturesUnordered::new)
            .push(isolated(future));
    }

    /// Polls every stream whose waker fired since the last call (`FuturesUnordered` polls only
    /// those, and yields to the runtime after a full round); finished ones are dropped.
    pub fn poll(&mut self, cx: &mut Context<'_>) {
        if let Some(running) = &mut self.running {
            while let std::task::Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
        }
    }

    /// Streams running, count.
    pub fn len(&self) -> usize {
        self.running.as_ref().map_or(0, FuturesUnordered::len)
    }

    /// No stream is running.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    /// Polls `streams` until none is left, in the calling task.
    async fn run(mut streams: Streams) {
        std::future::poll_fn(|cx| {
            streams.poll(cx);
            if streams.is_empty() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_run_in_the_connections_task() {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let mut streams = Streams::default();
        for _ in 0..3 {
            let ids = ids.clone();
            streams.start(async move {
                tokio::task::yield_now().await;
                ids.lock().unwrap().push(tokio::task::id());
            });
        }
        let task = tokio::spawn(async move {
            run(streams).await;
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
        let mut streams = Streams::default();
        streams.start(async { panic!("a stream's bug") });
        streams.start(async move {
            tokio::task::yield_now().await;
            let _ = done_tx.send(());
        });
        run(streams).await;
        done.await
            .expect("the second stream ran after the first panicked");
    }
}
