//! The cluster benchmark (`--cluster`): three relays on 127.0.0.11–13 in cluster mode
//! (static peers, mutual TLS under a CA made for the run, a shared token) in front of one
//! nginx + nchan, and for comparison one relay alone, each serving the same number of
//! subscribers of the same number of topics through the fan-out benchmark's client and
//! publisher. It measures the origin subscriptions nchan counts, delivery latency for
//! subscribers on a topic's owner and on the relays that read it over the peer hop against the
//! single relay, and ([`crate::takeover`]) what the survivors' subscribers see when the relay
//! owning the most topics is killed. It only measures and returns records; it never writes
//! `RESULTS.md`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::client::{self, Coding, Endpoint, Proto, Subscribe, Tally};
use crate::groups::{merged, put_quantiles, ClusterSizes, Group};
use crate::peers::{owners, put_metrics, start_cluster};
use crate::procs::{Child, Nginx, Relay};
use crate::publisher::{Pipeline, Publisher};
use crate::scenarios::{Bench, Record, TargetKind, Values};
use crate::steady::Steady;

/// Runs the single relay, then a cluster per `refresh_ms` value, against one nchan.
pub async fn run(bench: &Bench, sizes: &ClusterSizes) -> Vec<Record> {
    let mut records = Vec::new();
    let nginx = match Nginx::start(&bench.work.join("nginx"), &bench.cert) {
        Ok(nginx) => nginx,
        Err(e) => {
            let mut r = record("cluster-single", sizes, "nginx");
            r.failure = Some(format!("{e:#}"));
            return vec![r];
        }
    };
    let mut single = record("cluster-single", sizes, "1 relay");
    outcome(&mut single, self::single(bench, &nginx, sizes).await);
    records.push(single);
    for &refresh in &sizes.refresh_ms {
        let mut r = record("cluster", sizes, &format!("3 relays, refresh_ms {refresh}"));
        outcome(&mut r, self::cluster(bench, &nginx, sizes, refresh).await);
        hop_figures(&mut r, &records[0]);
        records.push(r);
    }
    records
}

fn record(scenario: &str, sizes: &ClusterSizes, what: &str) -> Record {
    Record {
        scenario: scenario.into(),
        target: TargetKind::Relay,
        shape: format!(
            "{what}: {} topics × {} subscribers over h2, {} streams per connection",
            sizes.topics, sizes.per_topic, sizes.streams
        ),
        subscribers: (sizes.topics * sizes.per_topic) as u64,
        failure: None,
        values: Values::new(),
        tls: None,
    }
}

/// Figures stay in the record even when the phase failed after measuring them.
fn outcome(record: &mut Record, result: Result<Values>) {
    match result {
        Ok(values) => record.values = values,
        Err(e) => {
            eprintln!("   FAILED: {e:#}");
            record.failure = Some(format!("{e:#}"));
        }
    }
}

/// The peer hop's added latency, in rounds and at the steady rate (`steady_`): the
/// non-owners' quantiles minus the single relay's (`hop_added_`), and minus the owners' in the
/// same cluster (`hop_vs_owner_`).
fn hop_figures(cluster: &mut Record, single: &Record) {
    for (phase, q) in [
        ("", "p50"),
        ("", "p99"),
        ("steady_", "p50"),
        ("steady_", "p99"),
    ] {
        let peer = cluster.get(&format!("{phase}peer_{q}_us"));
        let bases = [
            ("hop_added", single.get(&format!("{phase}{q}_us"))),
            ("hop_vs_owner", cluster.get(&format!("{phase}owner_{q}_us"))),
        ];
        for (name, base) in bases {
            if let (Some(peer), Some(base)) = (peer, base) {
                let key = format!("{phase}{name}_{q}_us");
                cluster.values.insert(key, peer - base);
            }
        }
    }
}

/// One relay alone (127.0.0.1) serving every subscriber: the baseline.
async fn single(bench: &Bench, nginx: &Nginx, sizes: &ClusterSizes) -> Result<Values> {
    eprintln!("== cluster benchmark: one relay alone");
    let dir = bench.work.join("single");
    let mut relay = Relay::start(&dir, &bench.relay_bin, &bench.cert, nginx.plain_port, &[])?;
    let channels = channels("single", sizes.topics);
    let groups = open_groups(bench, &[relay.addr()], &channels, sizes).await?;
    let mut v = Values::new();
    let publisher = Publisher::new(nginx.plain_port, 0);
    v.insert(
        "origin_subscriptions".into(),
        origin_settled(&publisher, &channels).await? as f64,
    );
    let mut pipe = Pipeline::connect(nginx.plain_port, bench.payload).await?;
    latency_rounds(&mut pipe, &channels, &groups, sizes.rounds).await?;
    pipe.finish(Duration::from_secs(60)).await?;
    put_quantiles(&mut v, "", &merged(groups.iter()));
    let mut steady = steady(bench, nginx, &channels, sizes).await?;
    let servers = servers(std::slice::from_ref(&relay), nginx);
    let secs = Duration::from_secs(sizes.steady_s);
    steady.measure(&groups, secs, &servers, &mut v).await?;
    steady.finish(Duration::from_secs(60)).await?;
    put_quantiles(&mut v, "steady_", &merged(groups.iter()));
    relay.child.check_running()?;
    Ok(v)
}

/// Three relays in cluster mode: origin subscriptions, owner vs peer-hop latency, takeover.
async fn cluster(
    bench: &Bench,
    nginx: &Nginx,
    sizes: &ClusterSizes,
    refresh_ms: u64,
) -> Result<Values> {
    eprintln!("== cluster benchmark: three relays, refresh_ms {refresh_ms}");
    let dir = bench.work.join(format!("cluster-{refresh_ms}"));
    let mut relays = start_cluster(bench, &dir, nginx.plain_port, refresh_ms).await?;
    let channels = channels(&format!("r{refresh_ms}"), sizes.topics);
    let addrs: Vec<SocketAddr> = relays.iter().map(Relay::addr).collect();
    let groups = open_groups(bench, &addrs, &channels, sizes).await?;
    let mut v = Values::new();
    v.insert("refresh_ms".into(), refresh_ms as f64);
    let publisher = Publisher::new(nginx.plain_port, 0);
    let origin = origin_settled(&publisher, &channels).await?;
    v.insert("origin_subscriptions".into(), origin as f64);
    let owners = owners(&relays, &channels)?;
    for (r, relay) in relays.iter().enumerate() {
        let owned = owners.iter().filter(|&&o| o == r).count();
        v.insert(format!("owned_topics.{}", relay.ip), owned as f64);
    }
    put_metrics(&mut v, "before", relays.iter())?;
    let mut pipe = Pipeline::connect(nginx.plain_port, bench.payload).await?;
    latency_rounds(&mut pipe, &channels, &groups, sizes.rounds).await?;
    pipe.finish(Duration::from_secs(60)).await?;
    split_quantiles(&mut v, "", &groups, &owners);
    let mut steady = steady(bench, nginx, &channels, sizes).await?;
    let secs = Duration::from_secs(sizes.steady_s);
    steady
        .measure(&groups, secs, &servers(&relays, nginx), &mut v)
        .await?;
    split_quantiles(&mut v, "steady_", &groups, &owners);
    let takeover = crate::takeover::Takeover {
        relays: &mut relays,
        groups: &groups,
        channels: &channels,
        owners: &owners,
        steady,
        origin_port: nginx.plain_port,
        sizes,
        refresh: Duration::from_millis(refresh_ms),
    };
    takeover.measure(&mut v).await?;
    Ok(v)
}

/// The steady publisher on `channels`, going on after the latency rounds.
async fn steady<'a>(
    bench: &Bench,
    nginx: &Nginx,
    channels: &'a [String],
    sizes: &ClusterSizes,
) -> Result<Steady<'a>> {
    let first = sizes.rounds + 1;
    Steady::connect(nginx.plain_port, bench.payload, channels, first, sizes.rate).await
}

/// The relays (named by address) and nginx, for CPU figures.
fn servers<'a>(relays: &'a [Relay], nginx: &'a Nginx) -> Vec<(String, &'a Child)> {
    let mut servers: Vec<(String, &Child)> = relays
        .iter()
        .map(|r| (r.ip.to_string(), &r.child))
        .collect();
    servers.push(("nginx".into(), &nginx.child));
    servers
}

/// Latency quantiles under `phase`: of the subscribers on each topic's owner (`owner_`), on
/// the relays that read it from the owner (`peer_`), and of all (`all_`).
fn split_quantiles(v: &mut Values, phase: &str, groups: &[Group], owners: &[usize]) {
    let on_owner = |g: &&Group| owners[g.topic] == g.relay;
    let owner = merged(groups.iter().filter(on_owner));
    let peer = merged(groups.iter().filter(|g| !on_owner(g)));
    put_quantiles(v, &format!("{phase}owner_"), &owner);
    put_quantiles(v, &format!("{phase}peer_"), &peer);
    put_quantiles(v, &format!("{phase}all_"), &merged(groups.iter()));
}

/// `prefix-t0`, `prefix-t1`, …: fresh nchan channels.
fn channels(prefix: &str, topics: usize) -> Vec<String> {
    (0..topics).map(|t| format!("{prefix}-t{t}")).collect()
}

/// Opens, on each relay of `addrs`, the topic's share of subscribers for every channel (an
/// equal share each), `sizes.streams` h2 streams per connection.
async fn open_groups(
    bench: &Bench,
    addrs: &[SocketAddr],
    channels: &[String],
    sizes: &ClusterSizes,
) -> Result<Vec<Group>> {
    let share = sizes.per_topic / addrs.len();
    let streams = sizes.streams.min(share).max(1);
    if share == 0 || share * addrs.len() != sizes.per_topic || share % streams != 0 {
        bail!(
            "{} subscribers per topic do not split into {} relays × connections of {streams} streams",
            sizes.per_topic,
            addrs.len()
        );
    }
    let mut groups = Vec::new();
    for (relay, &addr) in addrs.iter().enumerate() {
        for (topic, channel) in channels.iter().enumerate() {
            let tally = Tally::new();
            let sub = Subscribe {
                endpoint: Endpoint {
                    addr,
                    prefix: "/events/",
                },
                tls: bench.tls.clone(),
                proto: Proto::H2,
                channel: channel.clone(),
                tally: tally.clone(),
                coding: Coding::Identity,
            };
            let (fleet, _) =
                client::open(&sub, share / streams, streams, 16, Duration::from_secs(300))
                    .await
                    .with_context(|| format!("subscribe to {channel} on {addr}"))?;
            groups.push(Group {
                relay,
                topic,
                subscribers: fleet.subscribers,
                tally,
                _fleet: fleet,
            });
        }
    }
    Ok(groups)
}

/// Waits until nchan counts one subscriber on every channel, lets a second, redundant
/// subscription show up if one is coming, and returns nchan's count summed over the channels.
async fn origin_settled(publisher: &Publisher, channels: &[String]) -> Result<u64> {
    for channel in channels {
        publisher
            .wait_subscribers(channel, 1, Duration::from_secs(60))
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sum = 0;
    for channel in channels {
        sum += publisher.subscribers(channel).await?;
    }
    Ok(sum)
}

/// `rounds` rounds (after a warm-up round 0) of one event on every channel, each waited for by
/// every subscriber, with latency recorded from round 1 on.
async fn latency_rounds(
    pipe: &mut Pipeline,
    channels: &[String],
    groups: &[Group],
    rounds: u64,
) -> Result<()> {
    for round in 0..=rounds {
        if round == 1 {
            for g in groups {
                g.tally.reset_latency();
                g.tally.recording.store(true, Ordering::Release);
            }
        }
        for channel in channels {
            pipe.publish(channel, round..round + 1).await?;
        }
        for g in groups {
            g.tally
                .wait_delivered(g.subscribers * (round + 1), Duration::from_secs(60))
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for g in groups {
        g.tally.recording.store(false, Ordering::Release);
    }
    Ok(())
}
