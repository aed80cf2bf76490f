//! A started target (nginx + nchan, and the relay or the minimal server in front of it) and
//! the CPU its processes, the client and everything else used over a stretch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{machine_busy, metric, Bench, TargetKind, Values};
use crate::client::{Coding, Endpoint, Proto, Subscribe, Tally};
use crate::minimal::Minimal;
use crate::procs::{http_get, proc_cpu, Child, Cpu, Nginx, Relay};
use crate::publisher::Publisher;

/// A started target: nginx always (the origin), plus the relay in front of it.
pub(super) struct Started {
    pub(super) nginx: Nginx,
    pub(super) relay: Option<Relay>,
    pub(super) minimal: Option<Minimal>,
    pub(super) publisher: Publisher,
    pub(super) channel: String,
    pub(super) tallies: Vec<Arc<Tally>>,
}

impl Started {
    pub(super) fn measured(&self) -> &Child {
        match (&self.relay, &self.minimal) {
            (Some(relay), _) => &relay.child,
            (None, Some(minimal)) => &minimal.child,
            (None, None) => &self.nginx.child,
        }
    }

    pub(super) fn measured_mut(&mut self) -> &mut Child {
        match (&mut self.relay, &mut self.minimal) {
            (Some(relay), _) => &mut relay.child,
            (None, Some(minimal)) => &mut minimal.child,
            (None, None) => &mut self.nginx.child,
        }
    }

    /// True when nchan is only the origin of the server measured (the relay or the minimal
    /// server), holding one subscription per topic.
    pub(super) fn fronted(&self) -> bool {
        self.relay.is_some() || self.minimal.is_some()
    }

    pub(super) fn endpoint(&self) -> Endpoint {
        match (&self.relay, &self.minimal) {
            (Some(relay), _) => Endpoint {
                addr: relay.addr(),
                prefix: "/events/",
            },
            (None, Some(minimal)) => Endpoint {
                addr: ([127, 0, 0, 1], minimal.port).into(),
                prefix: "/events/",
            },
            (None, None) => Endpoint {
                addr: ([127, 0, 0, 1], self.nginx.tls_port).into(),
                prefix: "/sub/",
            },
        }
    }

    pub(super) fn subscribe(
        &mut self,
        bench: &Bench,
        proto: Proto,
        tally: &Arc<Tally>,
    ) -> Subscribe {
        self.tallies.push(tally.clone());
        Subscribe {
            endpoint: self.endpoint(),
            tls: bench.tls.clone(),
            proto,
            channel: self.channel.clone(),
            tally: tally.clone(),
            coding: Coding::Identity,
        }
    }

    /// Waits until the origin sees the subscribers: all of them (nchan), or the relay's one
    /// upstream subscription.
    pub(super) async fn wait_ready(&self, subscribers: u64) -> Result<()> {
        let expected = if self.fronted() { 1 } else { subscribers };
        self.publisher
            .wait_subscribers(&self.channel, expected, Duration::from_secs(120))
            .await
    }

    /// Origin-side figures: nchan's subscriber count on the channel, and for the relay its
    /// open upstream subscriptions.
    pub(super) async fn origin_figures(&mut self, v: &mut Values) -> Result<()> {
        let n = self.publisher.subscribers(&self.channel).await?;
        v.insert("origin_subscribers".into(), n as f64);
        if let Some(relay) = &self.relay {
            let metrics = http_get(relay.admin_addr(), "/metrics")?;
            if let Some(open) = metric(&metrics, "sse_relay_upstream_subscriptions_open") {
                v.insert("relay_upstream_open".into(), open);
            }
        }
        self.measured_mut().check_running()
    }
}

/// CPU used by the server, by this process (the client and publisher), by nchan when it is
/// only the origin of the server measured, and by anything else on the machine, over a stretch.
pub(crate) struct CpuMark {
    server: Cpu,
    client: Cpu,
    origin: Option<Cpu>,
    machine: Duration,
    wall: Instant,
}

impl CpuMark {
    pub(super) fn take(t: &Started) -> Result<Self> {
        Self::of(t.measured(), t.fronted().then_some(&t.nginx.child))
    }

    pub(super) fn finish(self, t: &Started) -> Result<Self> {
        self.end(t.measured(), t.fronted().then_some(&t.nginx.child))
    }

    /// Starts a stretch: the CPU times of `server`, of `origin` (when nchan is only the
    /// measured server's origin), of this process and of the machine, now.
    pub(crate) fn of(server: &Child, origin: Option<&Child>) -> Result<Self> {
        Ok(Self {
            server: server.cpu_time()?,
            client: proc_cpu("self")?,
            origin: origin.map(Child::cpu_time).transpose()?,
            machine: machine_busy()?,
            wall: Instant::now(),
        })
    }

    /// Ends the stretch [`Self::of`] started (the same `server` and `origin`): what each used
    /// meanwhile.
    pub(crate) fn end(self, server: &Child, origin: Option<&Child>) -> Result<Self> {
        let origin = match (self.origin, origin) {
            (Some(before), Some(child)) => Some(child.cpu_time()?.since(before)),
            _ => None,
        };
        Ok(Self {
            server: server.cpu_time()?.since(self.server),
            client: proc_cpu("self")?.since(self.client),
            origin,
            machine: machine_busy()?.saturating_sub(self.machine),
            wall: self.wall,
        })
    }

    /// Records server CPU (total, user, system), client CPU per `what` (µs), and the share of
    /// the 2 cores that other processes used meanwhile.
    pub(crate) fn per(&self, what: &str, n: u64, v: &mut Values) {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
        v.insert(format!("cpu_per_{what}_us"), us(self.server.total()));
        v.insert(format!("cpu_user_per_{what}_us"), us(self.server.user));
        v.insert(format!("cpu_sys_per_{what}_us"), us(self.server.system));
        v.insert(format!("client_cpu_per_{what}_us"), us(self.client.total()));
        let ours = self.server.total()
            + self.client.total()
            + self.origin.map(Cpu::total).unwrap_or_default();
        let others = self.machine.saturating_sub(ours).as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        v.insert(
            "other_cpu_share".into(),
            others / (self.wall.elapsed().as_secs_f64() * cores),
        );
    }
}

impl Bench {
    pub(super) fn start(
        &self,
        kind: TargetKind,
        scenario: &str,
        wrapper: &[String],
    ) -> Result<Started> {
        let n = {
            let mut runs = self.runs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            *runs += 1;
            *runs
        };
        let dir = self.work.join(format!("{n:02}-{scenario}-{}", kind.name()));
        let nginx = Nginx::start(&dir.join("nginx"), &self.cert)?;
        let relay = match kind {
            TargetKind::Nchan | TargetKind::HyperMinimal => None,
            TargetKind::Relay => Some(Relay::start(
                &dir.join("relay"),
                &self.relay_bin,
                &self.cert,
                nginx.plain_port,
                wrapper,
            )?),
        };
        let minimal = match kind {
            TargetKind::HyperMinimal => Some(Minimal::start(
                &dir.join("minimal"),
                &self.cert,
                nginx.plain_port,
                wrapper,
            )?),
            TargetKind::Nchan | TargetKind::Relay => None,
        };
        let publisher = Publisher::new(nginx.plain_port, self.payload);
        Ok(Started {
            nginx,
            relay,
            minimal,
            publisher,
            channel: format!("{scenario}-{n}"),
            tallies: Vec::new(),
        })
    }
}
