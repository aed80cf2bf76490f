//! The report's method section: how the targets, the publisher and the client were set up and
//! what each figure measures.

use std::fmt::Write as _;

use super::Context;
use crate::scenarios::{Record, TargetKind};

pub(super) fn method(out: &mut String, ctx: &Context<'_>, records: &[Record]) {
    let tls: Vec<String> = [TargetKind::Nchan, TargetKind::Relay]
        .iter()
        .filter_map(|&t| {
            let r = records.iter().find(|r| r.target == t && r.tls.is_some())?;
            Some(format!("{}: {}", t.name(), r.tls.as_deref().unwrap_or("")))
        })
        .collect();
    let _ = write!(
        out,
        r#"## Method

- **One machine, 2 cores shared by everything**: the load generator (this benchmark's client,
  a tokio runtime with 2 worker threads), the publisher, nginx + nchan and sse-relay all run on
  the same 2 cores. Latencies therefore include the client's own processing and CPU contention;
  both targets are measured under the same conditions, one after the other, never at once.
- **Targets**, each started fresh for every scenario (and every size), on a fresh channel:
  - *nchan*: nginx + Debian `libnginx-mod-nchan`, TLS + h2 (`listen … ssl http2`, this nginx
    predates `http2 on`), `ssl_protocols TLSv1.2 TLSv1.3`, clients subscribe to
    `nchan_subscriber eventsource` (`nchan_subscriber_first_message newest`).
    nginx runs as **one process** (`master_process off`, so one worker: it uses at most one of
    the 2 cores); its RSS and CPU are that process's. `http2_max_concurrent_streams 128`
    (nginx's default, set explicitly), `worker_connections 19500`, `worker_rlimit_nofile 20000`.
  - *sse-relay*: the release build (`cargo build --release`; `run.sh` runs a copy of it, so a
    rebuild during the run cannot change it; default tokio runtime: 2 worker threads) with the
    same nginx + nchan as its origin over loopback plain HTTP/1.1. Relay config: defaults, plus
    `drain_delay_ms = 0`, `limits.max_connections = limits.max_connections_per_ip = 19500`
    (all clients come from 127.0.0.1), `max_streams_per_connection = 256` (default), admin on
    a free loopback port. Its RSS and CPU are the relay process's only (nchan's one upstream
    subscription is not counted for the relay).
  - Both present the same self-signed ECDSA P-256 certificate (rcgen). Negotiated:
    {tls}.
- **Publisher**: the same HTTP/1.1 keep-alive client POSTs to nchan's publisher location
  (plain HTTP on loopback) for both targets; an event's data is `<seq> <publish time> <{pad}
  bytes of padding>`, the time (ns, a monotonic clock shared with the subscribers: same
  process) taken just before the request is written. Single-event rounds wait for each POST's
  answer. The sustained and burst scenarios pipeline their POSTs on one connection (nginx
  answers pipelined requests in order, so events keep their order) and do not wait for
  answers: nchan answers a publish only after writing the message to all of its own
  subscribers, so a waiting publisher would slow down to nchan's fan-out speed.
- **Shapes**: the sustained scenario uses 10 connections × 100 streams: at one stream per
  connection the load generator alone needs about 11 µs of CPU per delivery (see the tables),
  so 1000 × 250 = 250k deliveries/s would need more than the 2 cores for the client alone.
  The burst uses one connection per subscriber.
- **Latency** = time the subscriber's task got the body frame holding the event − publish
  time, per delivery, in an HDR histogram (µs, 3 significant digits). Fan-out figures are over
  {rounds} single events (one warm-up event first, not recorded; the 100 000-subscriber
  scenario: {big_rounds}), each waited for by every subscriber, 100 ms apart.
- **Correctness while measuring**: every stream checks that sequence numbers arrive complete
  and in order; a stream that ends, an event lost, duplicated or reordered, or a delivery
  missing at the deadline makes the scenario **FAILED** (no figure is reported for it).
- **Subscribed** means: every stream got `200 text/event-stream` headers, and nchan's channel
  info counts the expected subscribers (all of them for nchan; exactly 1, the relay's upstream,
  for sse-relay).
- **RSS** = `VmRSS` from `/proc/PID/status` after a {settle} ms pause; per subscriber =
  (RSS with subscribers − RSS of the fresh process) ÷ subscribers. **CPU** = `utime + stime`
  from `/proc/PID/stat` (10 ms ticks) over the measured rounds ÷ deliveries.
- **Other load**: run as root, the benchmark's session (client, publisher, servers) runs at
  nice −10 and its scheduler autogroup at nice −10, so other work on the machine yields to it;
  the tables give the share of the 2 cores that *other* processes used over each measured
  stretch (`/proc/stat` user + nice + system − the benchmark's processes; it includes the
  benchmark's idle gaps between events, which other work may fill).
- **TLS records** are counted under the client's TLS (application-data records received);
  events per record = deliveries ÷ records during the burst. KB = 1000 bytes, MB = 10⁶ bytes.
- Open-file limit 20,000 per process: at most ~9k one-connection subscribers (client and server
  each need a descriptor per connection); beyond that, multiplexed h2 streams.

"#,
        tls = if tls.is_empty() {
            "–".into()
        } else {
            tls.join("; ")
        },
        pad = ctx.payload,
        rounds = ctx.sizes.rounds,
        big_rounds = ctx.sizes.rounds.min(crate::scenarios::BIG_ROUNDS),
        settle = ctx.sizes.settle_ms,
    );
}
