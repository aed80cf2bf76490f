//! A test network of hosts: Linux network namespaces the test creates (`ip netns`, as root),
//! each with one veth interface on a bridge that lives in a namespace of its own, so hosts
//! reach each other on `10.77.0.0/24` and nothing touches the machine's own network. Programs
//! run in a host with `ip netns exec`, which also mounts the host's own `/etc/resolv.conf`
//! (from `/etc/netns/<namespace>/`). Everything is removed on drop.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::require_program;

/// The network every [`Lan`] uses; each lan is a separate bridge in its own namespace, so two
/// lans (two test runs) never meet.
const SUBNET: [u8; 3] = [10, 77, 0];

/// One test network: a bridge namespace and the host namespaces plugged into it.
pub struct Lan {
    prefix: String,
    bridge: String,
    namespaces: Vec<String>,
}

/// A host of a [`Lan`]: a network namespace with one address.
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace's name (under `/var/run/netns`).
    pub ns: String,
    /// Its address on the lan.
    pub ip: Ipv4Addr,
}

impl Lan {
    /// Creates the bridge namespace, named after `tag` and this process. Fails the test unless
    /// it runs as root with `ip` (iproute2) installed.
    pub fn new(tag: &str) -> Lan {
        require_program("ip", "apt-get install iproute2");
        let uid = run_capture(Command::new("id").arg("-u"));
        assert_eq!(
            uid.trim(),
            "0",
            "this test creates network namespaces and must run as root"
        );
        let prefix = format!("sr{}{tag}", std::process::id());
        let bridge = format!("{prefix}-lan");
        let lan = Lan {
            prefix,
            bridge: bridge.clone(),
            namespaces: vec![bridge.clone()],
        };
        ip(&["netns", "add", &bridge]);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        lan
    }

    /// Adds host `name` at `10.77.0.<last>`, its `eth0` plugged into the bridge.
    pub fn host(&mut self, name: &str, last: u8) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let port = format!("v{name}");
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], last);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Host { ns, ip: addr }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_dir_all(resolver_dir(ns));
        }
    }
}

impl Host {
    /// `program` to be run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns]).arg(program);
        command
    }

    /// Makes `nameserver` this host's DNS server (`/etc/netns/<ns>/resolv.conf`, which
    /// `ip netns exec` mounts over `/etc/resolv.conf`), one try of 1 s per lookup.
    pub fn use_resolver(&self, nameserver: Ipv4Addr) {
        let dir = resolver_dir(&self.ns);
        fs::create_dir_all(&dir).expect("create /etc/netns/<ns>");
        fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
        )
        .expect("write the host's resolv.conf");
    }

    /// Runs `curl -s <args>` in this host; its output, or `None` when curl failed (e.g. the
    /// connection was refused).
    pub fn curl(&self, args: &[&str]) -> Option<Output> {
        let output = self
            .command("curl")
            .arg("-s")
            .args(["--max-time", "5"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run curl through ip netns exec");
        output.status.success().then_some(output)
    }
}

fn resolver_dir(ns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(ns)
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_capture(command: &mut Command) -> String {
    let output = command.output().expect("run a command");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
