//! Cluster mode across hosts: relays (the real binary) each in a network namespace of its
//! own, nginx + nchan as the origin and dnsmasq as the DNS server in a fourth, curl clients in
//! a fifth, all on a bridge the test creates (`ip netns`, as root; removed on exit). The relays
//! find each other through `cluster.dns_name`, answered by dnsmasq from a hosts file the test
//! edits.
//!
//! One test walks the whole life of a cluster while events are published without pause:
//! three relays hold one nchan subscription per topic; the owner is killed with SIGKILL and a
//! survivor takes over (the time it took is printed; `benches/RESULTS.md` has the measured
//! takeover); a fourth relay joins when its record is added; a record is removed (its relay stops being a member and owns nothing) and added
//! back. Throughout, nchan sees exactly one subscriber per topic once each change settles, and
//! every client of a surviving relay keeps its one stream and gets every event exactly once,
//! in order.
//!
//! `tests/cluster.rs` runs the same scenario in one process on 127.0.0.11–13 with static
//! peers (no root needed); CI runs both.

mod acceptance;
#[path = "support/pki.rs"]
mod pki;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use acceptance::{
    json_number, nginx_conf, parse_events, require_file, require_program, wait_until, ChildGuard,
    Host, Lan, TempDir, NCHAN_MODULE, WAIT,
};

/// The name whose A records are the relays.
const DNS_NAME: &str = "relays.sse-relay.test";
/// Ports every relay uses on its own address.
const PLAIN_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9090;
const PEER_PORT: u16 = 9443;
/// `cluster.refresh_ms` of the relays.
const REFRESH: Duration = Duration::from_millis(1000);
const TOPICS: [&str; 6] = ["t0", "t1", "t2", "t3", "t4", "t5"];

#[test]
#[ignore = "acceptance: needs root, iproute2, nginx + libnginx-mod-nchan, dnsmasq and curl; run with --include-ignored (CI does)"]
fn a_cluster_in_namespaces_keeps_one_nchan_subscriber_per_topic_through_kill_join_and_dns_changes()
{
    let dir = TempDir::new("cluster-netns");
    let mut lan = Lan::new("cl");
    let origin_host = lan.host("origin", 2);
    let client = lan.host("client", 100);
    let relay_hosts: Vec<Host> = (1..=4u8)
        .map(|i| lan.host(&format!("r{i}"), 10 + i))
        .collect();
    let origin = Origin::start(&origin_host, dir.path());
    let pki = Pki::new(dir.path());
    for host in &relay_hosts {
        host.use_resolver(origin_host.ip);
    }
    origin.set_records(&relay_hosts[..3]);

    // Three relays; clients on each, for every topic.
    let mut relays: Vec<Relay> = relay_hosts[..3]
        .iter()
        .enumerate()
        .map(|(i, host)| Relay::start(i, host, dir.path(), &pki, &origin_host, &client))
        .collect();
    wait_until("three relays to see each other", WAIT, || {
        relays
            .iter()
            .all(|r| r.metric("sse_relay_cluster_peers_up") == Some(3.0))
            .then_some(())
    });
    let mut clients: Vec<Client> = Vec::new();
    for relay in &relays {
        for topic in TOPICS {
            clients.push(Client::start(&client, relay, topic, dir.path()));
        }
    }
    let live = |relays: &[Relay]| relays.iter().map(|r| r.index).collect::<Vec<_>>();
    settled(&origin, &relays, &live(&relays), "three relays");

    let publisher = Publisher::start(client.clone(), origin_host.ip);
    publisher.wait_for_round(20);

    // SIGKILL the relay that owns t0 while events are published.
    let owners = relays[0].owners();
    let owner_addr = owners["/events/t0"].clone();
    let victim = relays
        .iter()
        .position(|r| r.peer_addr() == owner_addr)
        .expect("t0's owner is one of the relays");
    let killed_at = Instant::now();
    let mut dead = relays.remove(victim);
    dead.guard.child_mut().kill().expect("SIGKILL the owner");
    let _ = dead.guard.child_mut().wait();
    let round_at_kill = publisher.round();
    wait_until("the survivors to take the topics over", WAIT, || {
        (relays
            .iter()
            .all(|r| r.metric("sse_relay_cluster_peers_up") == Some(2.0))
            && owned_topics(&relays) == TOPICS.len()
            && TOPICS.iter().all(|t| origin.subscribers(t) == Some(1)))
        .then_some(())
    });
    let takeover = killed_at.elapsed();
    for c in clients.iter().filter(|c| c.relay != dead.index) {
        wait_until(
            "a survivor's client to get an event published after the kill",
            WAIT,
            || (c.last().unwrap_or(0) > round_at_kill).then_some(()),
        );
    }
    let delivered_again = killed_at.elapsed();
    println!(
        "owner {owner_addr} killed: nchan back to one subscriber per topic, owned once, after \
         {takeover:?}; every survivor's client had a post-kill event after {delivered_again:?} \
         (refresh {REFRESH:?})"
    );
    settled(&origin, &relays, &live(&relays), "after the owner's death");

    // A fourth relay joins when its record is added; it takes some topics over.
    origin.set_records(&relay_hosts);
    relays.push(Relay::start(
        3,
        &relay_hosts[3],
        dir.path(),
        &pki,
        &origin_host,
        &client,
    ));
    for topic in TOPICS {
        clients.push(Client::start(&client, &relays[2], topic, dir.path()));
    }
    wait_until("the fourth relay to join and own topics", WAIT, || {
        (relays
            .iter()
            .all(|r| r.metric("sse_relay_cluster_peers_up") == Some(3.0))
            && relays[2]
                .metric("sse_relay_cluster_owned_topics")
                .is_some_and(|n| n >= 1.0))
        .then_some(())
    });
    settled(&origin, &relays, &live(&relays), "after the fourth joined");

    // A record removed: the others drop that relay, which stops owning anything (it is no
    // member) and reads every topic from the members; then added back.
    let (removed, kept): (Vec<&Host>, Vec<&Host>) =
        relay_hosts.iter().partition(|h| h.ip == relays[0].host.ip);
    origin.set_records(&kept.iter().map(|h| (*h).clone()).collect::<Vec<_>>());
    wait_until("the record's removal to be seen", WAIT, || {
        (relays[1..]
            .iter()
            .all(|r| r.metric("sse_relay_cluster_peers_known") == Some(3.0))
            && relays[0].cluster()["member"] == false
            && relays[0].metric("sse_relay_cluster_owned_topics") == Some(0.0))
        .then_some(())
    });
    let members: Vec<usize> = relays[1..].iter().map(|r| r.index).collect();
    settled(&origin, &relays, &members, "after a record was removed");
    let mut all: Vec<Host> = kept.iter().map(|h| (*h).clone()).collect();
    all.extend(removed.iter().map(|h| (*h).clone()));
    origin.set_records(&all);
    wait_until("the record's return to be seen", WAIT, || {
        (relays
            .iter()
            .all(|r| r.metric("sse_relay_cluster_peers_up") == Some(3.0))
            && relays[0].cluster()["member"] == true)
            .then_some(())
    });
    settled(
        &origin,
        &relays,
        &live(&relays),
        "after the record came back",
    );

    // Every client of a live relay kept its stream and got every event once, in order.
    let last = publisher.stop();
    let mut checked = 0;
    for c in clients.iter_mut().filter(|c| c.relay != dead.index) {
        wait_until(&format!("{} to get round {last}", c.name), WAIT, || {
            (c.last() == Some(last)).then_some(())
        });
        assert!(
            c.guard.exited().is_none(),
            "{}: the stream ended (curl exited)",
            c.name
        );
        c.assert_complete(last);
        checked += 1;
    }
    assert_eq!(
        checked,
        3 * TOPICS.len(),
        "clients of the three live relays"
    );
    println!(
        "{checked} clients on live relays: every one of {last} rounds once, in order, through \
         a SIGKILL, a join and a DNS record removed and added"
    );
}

/// Waits until the relays `members` (indices) own every topic exactly once between them,
/// nchan sees one subscriber per topic, and every relay has its clients attached; then checks
/// that nchan still sees one after another refresh (no second owner appeared).
fn settled(origin: &Origin, relays: &[Relay], members: &[usize], when: &str) {
    let state = || {
        let owned: Vec<Option<f64>> = relays
            .iter()
            .filter(|r| members.contains(&r.index))
            .map(|r| r.metric("sse_relay_cluster_owned_topics"))
            .collect();
        let nchan: Vec<Option<u64>> = TOPICS.iter().map(|t| origin.subscribers(t)).collect();
        let attached: Vec<usize> = relays.iter().map(Relay::clients_attached).collect();
        let good = owned.iter().flatten().sum::<f64>() == TOPICS.len() as f64
            && nchan.iter().all(|n| *n == Some(1))
            && attached.iter().all(|n| *n == TOPICS.len());
        (
            good,
            format!("owned {owned:?}, nchan {nchan:?}, attached {attached:?}"),
        )
    };
    let mut last = String::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let (good, seen) = state();
        if good {
            break;
        }
        last = seen;
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle {when} within {WAIT:?}: {last}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(REFRESH);
    let (good, seen) = state();
    assert!(
        good,
        "{when}: one owner and one nchan subscriber per topic: {seen} (before: {last})"
    );
}

fn owned_topics(relays: &[Relay]) -> usize {
    relays
        .iter()
        .filter_map(|r| r.metric("sse_relay_cluster_owned_topics"))
        .sum::<f64>() as usize
}

/// nginx + nchan and dnsmasq on the origin host.
struct Origin {
    host: Host,
    records: PathBuf,
    _nginx: ChildGuard,
    _dns: ChildGuard,
}

impl Origin {
    fn start(host: &Host, dir: &Path) -> Origin {
        let nginx = require_program("nginx", "apt-get install nginx libnginx-mod-nchan");
        require_file(NCHAN_MODULE, "apt-get install libnginx-mod-nchan");
        let dnsmasq = require_program("dnsmasq", "apt-get install dnsmasq-base");
        require_program("curl", "apt-get install curl");
        let web = dir.join("nginx");
        fs::create_dir_all(web.join("www")).unwrap();
        let conf = web.join("nginx.conf");
        fs::write(&conf, nginx_conf(&web, &format!("{}:8080", host.ip))).unwrap();
        let log = web.join("nginx.log");
        let out = fs::File::create(&log).unwrap();
        let nginx = ChildGuard::spawn(
            "nginx",
            host.command(nginx)
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(&web)
                .arg("-g")
                .arg(format!(
                    "daemon off; pid {};",
                    web.join("nginx.pid").display()
                ))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
            Some(web.join("error.log")),
        );
        let records_dir = dir.join("dns");
        fs::create_dir_all(&records_dir).unwrap();
        let records = records_dir.join("relays");
        fs::write(&records, "").unwrap();
        let dns_log = dir.join("dnsmasq.log");
        let dns = ChildGuard::spawn(
            "dnsmasq",
            host.command(dnsmasq)
                .args(["--keep-in-foreground", "--no-resolv", "--no-hosts"])
                .args(["--bind-interfaces", "--user=root", "--local-ttl=0"])
                .arg(format!("--listen-address={}", host.ip))
                .arg(format!("--hostsdir={}", records_dir.display()))
                .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
                .arg(format!("--log-facility={}", dns_log.display()))
                .stdin(Stdio::null()),
            Some(dns_log),
        );
        let origin = Origin {
            host: host.clone(),
            records,
            _nginx: nginx,
            _dns: dns,
        };
        wait_until("nginx to answer", WAIT, || {
            origin
                .host
                .curl(&[&format!("http://{}:8080/static/", host.ip)])
                .map(|_| ())
        });
        origin
    }

    /// Makes `hosts` the A records of `DNS_NAME` (dnsmasq rereads the file on change).
    fn set_records(&self, hosts: &[Host]) {
        let lines: String = hosts
            .iter()
            .map(|h| format!("{} {DNS_NAME}\n", h.ip))
            .collect();
        fs::write(&self.records, lines).expect("write the DNS records");
    }

    /// nchan's subscriber count on `channel`, `None` while it does not exist.
    fn subscribers(&self, channel: &str) -> Option<u64> {
        let url = format!("http://{}:8080/pub/{channel}", self.host.ip);
        let out = self
            .host
            .curl(&["--fail", "-H", "Accept: text/json", &url])?;
        json_number(&String::from_utf8_lossy(&out.stdout), "subscribers")
    }
}

/// The cluster's CA, the peer certificate all relays present, the token.
struct Pki {
    files: pki::Pki,
    token: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let files = pki::pki(dir, &["sse-relay-peer"]);
        let token = dir.join("token");
        fs::write(&token, "netns-cluster-token\n").unwrap();
        Pki { files, token }
    }
}

/// One relay process in its host.
struct Relay {
    index: usize,
    host: Host,
    client: Host,
    guard: ChildGuard,
}

impl Relay {
    fn start(
        index: usize,
        host: &Host,
        dir: &Path,
        pki: &Pki,
        origin: &Host,
        client: &Host,
    ) -> Relay {
        let dir = dir.join(format!("relay-{index}"));
        fs::create_dir_all(&dir).unwrap();
        let ip = host.ip;
        let config = format!(
            "[server]\nlisten = \"{ip}:8443\"\nplaintext_listen = \"{ip}:{PLAIN_PORT}\"\n\
             dev_cert_dir = \"{dev}\"\n\n\
             [admin]\nlisten = \"{ip}:{ADMIN_PORT}\"\n\n\
             [[route]]\npath = \"/events/{{topic}}\"\n\
             upstream = \"http://{origin}:8080/sub/{{topic}}\"\n\n\
             [upstream]\nbackoff_min_ms = 50\nbackoff_max_ms = 500\n\n\
             [cluster]\ndns_name = \"{DNS_NAME}\"\npeer_listen = \"{ip}:{PEER_PORT}\"\n\
             self = \"{ip}:{PEER_PORT}\"\nrefresh_ms = {refresh}\n\
             ca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
             token_file = \"{token}\"\n",
            dev = dir.join("dev-cert").display(),
            origin = origin.ip,
            refresh = REFRESH.as_millis(),
            ca = pki.files.ca.display(),
            cert = pki.files.cert.display(),
            key = pki.files.key.display(),
            token = pki.token.display(),
        );
        let config_path = dir.join("relay.toml");
        fs::write(&config_path, config).unwrap();
        let log = dir.join("relay.log");
        let out = fs::File::create(&log).unwrap();
        let guard = ChildGuard::spawn(
            &format!("sse-relay {index}"),
            host.command(env!("CARGO_BIN_EXE_sse-relay"))
                .arg("--config")
                .arg(&config_path)
                .env("SSE_RELAY_LOG", "info,sse_relay=debug")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
            Some(log),
        );
        let mut relay = Relay {
            index,
            host: host.clone(),
            client: client.clone(),
            guard,
        };
        wait_until(&format!("relay {index} to be ready"), WAIT, || {
            relay.guard.assert_running();
            relay.admin("/readyz").map(|_| ())
        });
        relay
    }

    /// The relay's peer address, as `/topics` names owners.
    fn peer_addr(&self) -> String {
        format!("{}:{PEER_PORT}", self.host.ip)
    }

    /// The body of a 2xx answer of the admin listener at `path`.
    fn admin(&self, path: &str) -> Option<String> {
        let url = format!("http://{}:{ADMIN_PORT}{path}", self.host.ip);
        let out = self.client.curl(&["--fail", &url])?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn topics(&self) -> serde_json::Value {
        let body = self.admin("/topics").expect("/topics answers");
        serde_json::from_str(&body).expect("/topics is JSON")
    }

    /// `/topics`' view of the cluster.
    fn cluster(&self) -> serde_json::Value {
        self.topics()["cluster"].clone()
    }

    /// Each topic's label and owner, as this relay sees them.
    fn owners(&self) -> BTreeMap<String, String> {
        let topics = self.topics();
        topics["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .map(|t| {
                (
                    t["label"].as_str().unwrap().to_string(),
                    t["owner"]
                        .as_str()
                        .expect("an owner in cluster mode")
                        .to_string(),
                )
            })
            .collect()
    }

    /// Topics with one client of this relay attached (relays reading from here not counted),
    /// count.
    fn clients_attached(&self) -> usize {
        let topics = self.topics();
        topics["topics"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| {
                        let all = t["subscribers"].as_u64().unwrap_or(0);
                        let peers = t["peer_subscribers"].as_u64().unwrap_or(0);
                        all - peers == 1
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// A sample of the metric `name` (no labels) from `/metrics`.
    fn metric(&self, name: &str) -> Option<f64> {
        let text = self.admin("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

/// One curl EventSource-style client on the client host, its stream written to a file.
struct Client {
    name: String,
    relay: usize,
    out: PathBuf,
    guard: ChildGuard,
}

impl Client {
    fn start(host: &Host, relay: &Relay, topic: &str, dir: &Path) -> Client {
        let name = format!("relay {}'s client of {topic}", relay.index);
        let out = dir.join(format!("client-{}-{topic}.sse", relay.index));
        let file = fs::File::create(&out).unwrap();
        let url = format!("http://{}:{PLAIN_PORT}/events/{topic}", relay.host.ip);
        let guard = ChildGuard::spawn(
            &name,
            host.command("curl")
                .args(["-sN", "--http1.1", "-H", "Accept: text/event-stream", &url])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(Stdio::null()),
            None,
        );
        Client {
            name,
            relay: relay.index,
            out,
            guard,
        }
    }

    /// The round numbers received so far.
    fn rounds(&self) -> Vec<u64> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        parse_events(&text)
            .into_iter()
            .map(|e| {
                assert_eq!(e.event, None, "{}: an unexpected event {e:?}", self.name);
                e.data
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: {e:?}", self.name))
            })
            .collect()
    }

    fn last(&self) -> Option<u64> {
        self.rounds().last().copied()
    }

    /// Every round from the first received to `last`, once, in order (from round 1 for
    /// clients that were attached before publishing began).
    fn assert_complete(&self, last: u64) {
        let rounds = self.rounds();
        let first = rounds[0];
        let expected: Vec<u64> = (first..=last).collect();
        assert_eq!(
            rounds, expected,
            "{}: every round once, in order",
            self.name
        );
        if self.relay < 3 {
            assert_eq!(first, 1, "{}: attached before round 1", self.name);
        }
    }
}

/// Publishes round 1, 2, … to every topic (one curl per round, one request per topic) until
/// stopped.
struct Publisher {
    stop: Arc<AtomicBool>,
    round: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Publisher {
    fn start(client: Host, origin: Ipv4Addr) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let round = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, round) = (stop.clone(), round.clone());
            thread::spawn(move || {
                // Bounded: at most 100000 rounds, however long the test hangs.
                for n in 1..=100_000u64 {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let mut args: Vec<String> = Vec::new();
                    for (i, topic) in TOPICS.iter().enumerate() {
                        if i > 0 {
                            args.push("--next".into());
                        }
                        args.extend([
                            "--fail".into(),
                            "-o".into(),
                            "/dev/null".into(),
                            "--data-binary".into(),
                            n.to_string(),
                            format!("http://{origin}:8080/pub/{topic}"),
                        ]);
                    }
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    assert!(client.curl(&args).is_some(), "publishing round {n} failed");
                    round.store(n, Ordering::Release);
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Publisher {
            stop,
            round,
            thread: Some(thread),
        }
    }

    fn round(&self) -> u64 {
        self.round.load(Ordering::Acquire)
    }

    fn wait_for_round(&self, n: u64) {
        wait_until(&format!("round {n} to be published"), WAIT, || {
            (self.round() >= n).then_some(())
        });
    }

    /// Stops after the round in flight; the last round published.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the publisher did not fail");
        }
        self.round()
    }
}
