//! Keep-alive PINGs of one h2 connection (RFC 9113 §6.7): every interval a PING; a connection
//! whose peer does not answer within the timeout is dead (a vanished client, a NAT that
//! dropped the mapping), and is closed instead of holding its subscriptions until TCP gives up
//! (about 15 min of retransmits). Idle SSE connections send nothing, so the PING is sent
//! whatever was read meanwhile: one 17-byte frame per interval each way.
//!
//! It owns the PING timer and the verdict only; it never closes the connection itself (the
//! connection's future does, on the verdict).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use h2::{Ping, PingPong};
use tokio::time::{Instant, Sleep};

/// The interval between PINGs and how long to wait for the answer.
#[derive(Debug, Clone, Copy)]
pub struct KeepAliveConfig {
    /// From one answered PING to the next PING.
    pub interval: Duration,
    /// From a PING to the verdict that the peer is gone.
    pub timeout: Duration,
}

/// The keep-alive of one connection: h2's user PING handle and one timer.
pub(super) struct KeepAlive {
    ping_pong: PingPong,
    config: KeepAliveConfig,
    timer: Pin<Box<Sleep>>,
    /// A PING is out and its answer not in yet.
    awaiting_pong: bool,
}

impl KeepAlive {
    /// Starts the first interval now.
    pub(super) fn new(ping_pong: PingPong, config: KeepAliveConfig) -> Self {
        Self {
            ping_pong,
            config,
            timer: Box::pin(tokio::time::sleep(config.interval)),
            awaiting_pong: false,
        }
    }

    /// Sends the PINGs that are due and registers for the next step; `Ready` once the peer
    /// left a PING unanswered for the timeout (the connection should be closed). An error
    /// from h2 (the connection is closing) stops the keep-alive quietly: the connection
    /// reports it itself.
    pub(super) fn poll_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.awaiting_pong {
                match self.ping_pong.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting_pong = false;
                        let next = Instant::now() + self.config.interval;
                        self.timer.as_mut().reset(next);
                    }
                    Poll::Ready(Err(_)) => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.awaiting_pong {
                return Poll::Ready(());
            }
            if self.ping_pong.send_ping(Ping::opaque()).is_err() {
                return Poll::Pending;
            }
            self.awaiting_pong = true;
            let deadline = Instant::now() + self.config.timeout;
            self.timer.as_mut().reset(deadline);
        }
    }
}
