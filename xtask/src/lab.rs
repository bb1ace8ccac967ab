//! Namespaces on a bridge for the bench and the stress floods: each host a namespace
//! whose `eth0` is a veth into the bridge. Deleted by [`down`] (also before `up`).

use anyhow::{Result, bail};

pub fn sh(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A host on the bridge: (namespace, bridge port in the host namespace, IPv4 address).
pub type Host<'a> = (&'a str, &'a str, &'a str);

pub fn up(bridge: &str, hosts: &[Host]) -> Result<()> {
    down(bridge, hosts);
    sh(&["ip", "link", "add", bridge, "type", "bridge"])?;
    sh(&["ip", "link", "set", bridge, "up"])?;
    for (ns, port, ip) in hosts {
        sh(&["ip", "netns", "add", ns])?;
        // IPv4 only: no router solicitations, DAD or MLD frames among the counted ones.
        for key in ["all", "default"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ])?;
        }
        sh(&[
            "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        // The host side carries no IPv6 either (it would send its own DAD and MLD).
        let _ = sh(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv6.conf.{port}.disable_ipv6=1"),
        ]);
        sh(&["ip", "link", "set", port, "master", bridge, "up"])?;
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// The MAC address of host `ns`'s `eth0`.
pub fn mac(ns: &str) -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/sys/class/net/eth0/address"])
        .output()?;
    let mac = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if mac.is_empty() {
        bail!("cannot read the MAC address of eth0 in {ns}");
    }
    Ok(mac)
}

pub fn down(bridge: &str, hosts: &[Host]) {
    for (ns, port, _) in hosts {
        let _ = sh(&["ip", "netns", "del", ns]);
        let _ = sh(&["ip", "link", "del", port]);
    }
    let _ = sh(&["ip", "link", "del", bridge]);
}
