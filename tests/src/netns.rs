//! Test networks: namespaces on a bridge in the root namespace (deleted on drop).

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::wait_for;

/// Run a command; true when it exits 0.
pub fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn must(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short tag making this run's interface and namespace names unique.
pub(crate) fn unique_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:04x}", (std::process::id() ^ nanos) & 0xffff)
}

fn add_bridge(node: Option<&str>, name: &str) {
    must(&in_node(node, &["link", "add", name, "type", "bridge"]));
    must(&in_node(node, &["link", "set", name, "up"]));
}

/// `ip <args>`, run in namespace `node` when given (`ip -n node <args>`).
fn in_node<'a>(node: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["ip"];
    if let Some(n) = node {
        v.extend(["-n", n]);
    }
    v.extend_from_slice(args);
    v
}

/// A namespace `ns` with eth0 (address `ip`/24) whose peer `port` is on `bridge` (in
/// namespace `node`, or the root namespace).
fn add_host(node: Option<&str>, bridge: &str, ns: &str, port: &str, ip: &str) {
    must(&["ip", "netns", "add", ns]);
    must(&in_node(
        node,
        &[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
    ));
    must(&in_node(
        node,
        &["link", "set", port, "master", bridge, "up"],
    ));
    must(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{ip}/24"),
        "dev",
        "eth0",
    ]);
    must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
}

/// Two network namespaces (A, B) on a bridge in the root namespace, like sandboxes on
/// a host bridge. Addresses live only inside the namespaces; the root namespace gets
/// none. Everything is deleted on drop (also when the test fails).
pub struct Lan {
    pub bridge: String,
    /// Root-side bridge ports of A and B (where TC enforcement attaches).
    pub port_a: String,
    pub port_b: String,
    pub ns_a: String,
    pub ns_b: String,
    pub ip_a: String,
    pub ip_b: String,
}

impl Default for Lan {
    fn default() -> Self {
        Self::new()
    }
}

impl Lan {
    pub fn new() -> Lan {
        let tag = unique_tag();
        let lan = Lan {
            bridge: format!("nwbr{tag}"),
            port_a: format!("nwpa{tag}"),
            port_b: format!("nwpb{tag}"),
            ns_a: format!("nw-{tag}-a"),
            ns_b: format!("nw-{tag}-b"),
            ip_a: "10.213.77.1".into(),
            ip_b: "10.213.77.2".into(),
        };
        add_bridge(None, &lan.bridge);
        for (ns, port, ip) in [
            (&lan.ns_a, &lan.port_a, &lan.ip_a),
            (&lan.ns_b, &lan.port_b, &lan.ip_b),
        ] {
            add_host(None, &lan.bridge, ns, port, ip);
        }
        lan
    }

    /// One ping from A to B (1 s timeout).
    pub fn a_reaches_b(&self) -> bool {
        sh(&[
            "ip", "netns", "exec", &self.ns_a, "ping", "-c", "1", "-W", "1", &self.ip_b,
        ])
    }

    /// Wait until A reaches B (or not), up to `secs`.
    pub fn wait_reach(&self, want: bool, secs: u64) -> bool {
        wait_for(Duration::from_secs(secs), || {
            (self.a_reaches_b() == want).then_some(())
        })
        .is_some()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        for link in [&self.port_a, &self.port_b, &self.bridge] {
            let _ = sh(&["ip", "link", "del", link]);
        }
    }
}

/// A bridge in the root namespace with N namespaces on it (eth0 in each, with the
/// given addresses; two may share one, as in a duplicate-IP incident). Deleted on drop.
pub struct Bridge {
    pub name: String,
    pub hosts: Vec<Host>,
    /// The namespace the bridge and its ports live in (`None`: the root namespace).
    pub node: Option<String>,
    tag: String,
}

pub struct Host {
    pub ns: String,
    /// The bridge-side port (in the bridge's namespace).
    pub port: String,
    pub ip: String,
}

impl Bridge {
    pub fn new(ips: &[&str]) -> Bridge {
        Self::build(None, ips)
    }

    /// A bridge inside a new namespace (a lab "node" of its own), with its hosts.
    pub fn new_in_node(ips: &[&str]) -> Bridge {
        let node = format!("nw-node-{}", unique_tag());
        must(&["ip", "netns", "add", &node]);
        must(&["ip", "-n", &node, "link", "set", "lo", "up"]);
        Self::build(Some(node), ips)
    }

    fn build(node: Option<String>, ips: &[&str]) -> Bridge {
        let tag = unique_tag();
        let name = format!("nwbr{tag}");
        add_bridge(node.as_deref(), &name);
        let mut br = Bridge {
            name,
            hosts: Vec::new(),
            node,
            tag,
        };
        for ip in ips {
            br.add_host(ip);
        }
        br
    }

    /// A new host (namespace and port) joins the bridge; returns its index.
    pub fn add_host(&mut self, ip: &str) -> usize {
        let i = self.hosts.len();
        let ns = format!("nw-{}-{i}", self.tag);
        let port = format!("nwp{}{i}", self.tag);
        add_host(self.node.as_deref(), &self.name, &ns, &port, ip);
        self.hosts.push(Host {
            ns,
            port,
            ip: ip.to_string(),
        });
        i
    }

    /// MAC of host `i`'s eth0.
    pub fn mac(&self, i: usize) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.hosts[i].ns, "-br", "link", "show", "eth0"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    }

    /// Run a command inside host `i`'s namespace.
    pub fn exec(&self, i: usize, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Host `i` leaves (its namespace and port are deleted).
    pub fn remove(&self, i: usize) {
        let _ = sh(&["ip", "netns", "del", &self.hosts[i].ns]);
        let _ = sh(&in_node(
            self.node.as_deref(),
            &["link", "del", &self.hosts[i].port],
        ));
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let node = self.node.as_deref();
        for h in &self.hosts {
            let _ = sh(&["ip", "netns", "del", &h.ns]);
            let _ = sh(&in_node(node, &["link", "del", &h.port]));
        }
        let _ = sh(&in_node(node, &["link", "del", &self.name]));
        if let Some(n) = node {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}
