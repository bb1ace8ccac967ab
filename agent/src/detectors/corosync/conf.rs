//! The cluster's own configuration (corosync.conf): nodelist (addresses, node ids),
//! transport, ports, crypto. Only what the `corosync` detector needs is kept; the
//! parser is strict about structure (braces, `key: value`) so that a broken file is
//! reported, not half-read.

use std::{collections::BTreeMap, net::IpAddr};

use crate::net::canonical;

/// Corosync's default knet/udp port.
pub const DEFAULT_PORT: u16 = 5405;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: Option<u32>,
    pub name: Option<String>,
    /// Every ring/link address of the node (`ring0_addr`, `ring1_addr`, …).
    pub addrs: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterConf {
    pub cluster_name: Option<String>,
    pub transport: Option<String>,
    pub crypto_cipher: Option<String>,
    pub crypto_hash: Option<String>,
    pub members: Vec<Member>,
    /// UDP ports of the links (`totem.interface.mcastport`, default 5405).
    pub ports: Vec<u16>,
    /// Nodelist addresses that are host names and did not resolve (not members then).
    pub unresolved: Vec<String>,
}

impl ClusterConf {
    /// Address -> node id (0 when the nodelist has none).
    pub fn member_addrs(&self) -> BTreeMap<IpAddr, u32> {
        let mut out = BTreeMap::new();
        for m in &self.members {
            for a in &m.addrs {
                out.insert(canonical(*a), m.node_id.unwrap_or(0));
            }
        }
        out
    }
}

/// A section of the file: its entries and subsections, in order.
#[derive(Debug, Default)]
struct Section {
    entries: Vec<(String, String)>,
    children: Vec<(String, Section)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn sections<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.children
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, s)| s)
    }
}

/// Why a corosync.conf cannot be used (the agent keeps its last good configuration).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfError {
    /// A line that is not `key: value`, `name {` or `}`.
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("section `{name}` opened at line {line} is never closed")]
    Unclosed { name: String, line: usize },
    /// A value of the wrong kind.
    #[error("{field} `{value}` is not {expected}")]
    Value {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("nodelist.node without ring address or name")]
    NodeWithoutAddress,
}

fn syntax(line: usize, what: String) -> ConfError {
    ConfError::Syntax { line, what }
}

fn tree(text: &str) -> Result<Section, ConfError> {
    let mut stack: Vec<(String, Section, usize)> = vec![(String::new(), Section::default(), 0)];
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A line may open a section, close one, or hold `key: value`; corosync also
        // accepts `}` after a value on the same line only in its own output, not here.
        if let Some(name) = line.strip_suffix('{') {
            let name = name.trim();
            if name.is_empty() || name.contains([':', ' ', '{', '}']) {
                return Err(syntax(line_no, format!("bad section name `{name}`")));
            }
            stack.push((name.to_string(), Section::default(), line_no));
            continue;
        }
        if line == "}" {
            if stack.len() == 1 {
                return Err(syntax(line_no, "`}` without an open section".into()));
            }
            let (name, section, _) = stack.pop().expect("checked");
            stack
                .last_mut()
                .expect("root")
                .1
                .children
                .push((name, section));
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(syntax(
                line_no,
                format!("expected `key: value`, `name {{` or `}}`, got `{line}`"),
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || k.contains([' ', '{', '}']) || v.contains(['{', '}']) {
            return Err(syntax(line_no, format!("malformed entry `{line}`")));
        }
        stack
            .last_mut()
            .expect("root")
            .1
            .entries
            .push((k.to_string(), v.to_string()));
    }
    if stack.len() > 1 {
        let (name, _, at) = stack.pop().expect("checked");
        return Err(ConfError::Unclosed { name, line: at });
    }
    Ok(stack.pop().expect("root").1)
}

fn resolve(addr: &str) -> Option<IpAddr> {
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Some(ip);
    }
    use std::net::ToSocketAddrs;
    (addr, 0u16).to_socket_addrs().ok()?.next().map(|s| s.ip())
}

/// Parse the text of a corosync.conf.
pub fn parse(text: &str) -> Result<ClusterConf, ConfError> {
    let root = tree(text)?;
    let mut conf = ClusterConf::default();
    let totem = root.sections("totem").next();
    if let Some(t) = totem {
        conf.cluster_name = t.get("cluster_name").map(str::to_string);
        conf.transport = t.get("transport").map(str::to_string);
        conf.crypto_cipher = t.get("crypto_cipher").map(str::to_string);
        conf.crypto_hash = t.get("crypto_hash").map(str::to_string);
        for i in t.sections("interface") {
            let port =
                match i.get("mcastport") {
                    Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                        ConfError::Value {
                            field: "totem.interface.mcastport",
                            value: p.to_string(),
                            expected: "a port",
                        }
                    })?,
                    None => DEFAULT_PORT,
                };
            if !conf.ports.contains(&port) {
                conf.ports.push(port);
            }
        }
    }
    if conf.ports.is_empty() {
        conf.ports.push(DEFAULT_PORT);
    }
    for list in root.sections("nodelist") {
        for node in list.sections("node") {
            let node_id = match node.get("nodeid") {
                Some(v) => Some(v.parse::<u32>().map_err(|_| ConfError::Value {
                    field: "nodelist.node.nodeid",
                    value: v.to_string(),
                    expected: "a number",
                })?),
                None => None,
            };
            let mut addrs = Vec::new();
            let mut rings: Vec<&(String, String)> = node
                .entries
                .iter()
                .filter(|(k, _)| k.starts_with("ring") && k.ends_with("_addr"))
                .collect();
            rings.sort();
            for (k, v) in rings {
                match resolve(v) {
                    Some(ip) => addrs.push(canonical(ip)),
                    None => conf.unresolved.push(format!("{k}: {v}")),
                }
            }
            if addrs.is_empty() && node.get("name").is_none() {
                return Err(ConfError::NodeWithoutAddress);
            }
            conf.members.push(Member {
                node_id,
                name: node.get("name").map(str::to_string),
                addrs,
            });
        }
    }
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PVE: &str = "\
logging {
  debug: off
  to_syslog: yes
}

nodelist {
  node {
    name: pve1
    nodeid: 1
    quorum_votes: 1
    ring0_addr: 10.0.0.11
  }
  node {
    name: pve2
    nodeid: 2
    quorum_votes: 1
    ring0_addr: 10.0.0.12
    ring1_addr: fd00::12
  }
}

quorum {
  provider: corosync_votequorum
}

totem {
  cluster_name: lab
  config_version: 2
  interface {
    linknumber: 0
  }
  ip_version: ipv4-6
  link_mode: passive
  secauth: on
  version: 2
  crypto_cipher: aes256
  crypto_hash: sha256
}
";

    #[test]
    fn proxmox_style_config_yields_members_ports_and_crypto() {
        let c = parse(PVE).unwrap();
        assert_eq!(c.cluster_name.as_deref(), Some("lab"));
        assert_eq!(c.ports, vec![5405]);
        assert_eq!(c.crypto_cipher.as_deref(), Some("aes256"));
        let m = c.member_addrs();
        assert_eq!(m.get(&"10.0.0.11".parse().unwrap()), Some(&1));
        assert_eq!(m.get(&"10.0.0.12".parse().unwrap()), Some(&2));
        assert_eq!(m.get(&"fd00::12".parse().unwrap()), Some(&2));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn explicit_ports_and_mapped_addresses() {
        let c = parse(
            "totem {\n interface {\n  mcastport: 5407\n }\n interface {\n  linknumber: 1\n }\n}\nnodelist {\n node {\n  ring0_addr: ::ffff:10.1.2.3\n  nodeid: 9\n }\n}\n",
        )
        .unwrap();
        assert_eq!(c.ports, vec![5407, 5405]);
        assert_eq!(
            c.member_addrs().keys().next().unwrap().to_string(),
            "10.1.2.3"
        );
    }

    #[test]
    fn no_nodelist_is_no_members() {
        let c = parse("totem {\n version: 2\n}\n").unwrap();
        assert!(c.members.is_empty());
        assert_eq!(c.ports, vec![5405]);
    }

    #[test]
    fn malformed_files_are_errors_with_a_line() {
        for (text, want) in [
            ("totem {\n version: 2\n", "never closed"),
            ("}\n", "without an open section"),
            ("totem {\n version 2\n}\n", "line 2"),
            (
                "nodelist {\n node {\n  nodeid: one\n  ring0_addr: 10.0.0.1\n }\n}\n",
                "nodeid",
            ),
            (
                "totem {\n interface {\n  mcastport: 99999\n }\n}\n",
                "mcastport",
            ),
            (
                "nodelist {\n node {\n  quorum_votes: 1\n }\n}\n",
                "without ring address",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn unresolvable_host_names_are_kept_aside() {
        let c =
            parse("nodelist {\n node {\n  name: x\n  ring0_addr: no-such-host.invalid\n }\n}\n")
                .unwrap();
        assert_eq!(c.unresolved.len(), 1);
        assert!(c.member_addrs().is_empty());
    }
}
