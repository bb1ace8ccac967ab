//! `nodeward check --packet-cost`: what the packet program (`net_tc`) costs per frame on
//! this kernel, measured with BPF_PROG_TEST_RUN on crafted frames (the kernel runs the
//! program N times on one skb and reports the mean time per run; no interface, no
//! traffic). The program is loaded on its own with the ARP observer and the cluster
//! counter enabled on the test run's device (loopback), cluster port 5405, one member.
//! An empty classifier (`net_floor`) is measured in the same run: the test run's own
//! cost, below which no program goes.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};

use agent_common::{
    corosync::hot_slot,
    packet::{NetPort, PORT_WATCH_ARP, PORT_WATCH_COROSYNC},
};

use crate::{
    config::Config,
    kernel::{
        loader::Kernel,
        packet::{NET_FLOOR, NET_TC},
    },
};

/// Runs per measurement and measurements per frame (the median is reported).
const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

/// One crafted frame and what it stands for.
struct Frame {
    name: &'static str,
    what: &'static str,
    bytes: Vec<u8>,
}

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The cluster member the `cluster` frame comes from.
const MEMBER: [u8; 4] = [10, 0, 0, 7];

/// The non-member of the `rogue` frame.
const ROGUE: [u8; 4] = [10, 9, 9, 9];

/// Another IPv4 source whose hot slot on loopback is `of`'s (one exists among the
/// 65,536 tried: 256 slots).
fn slot_twin(of: [u8; 4]) -> [u8; 4] {
    let key = |a: [u8; 4]| crate::net::addr_key(std::net::Ipv4Addr::from(a).into());
    let slot = hot_slot(&key(of), 1);
    (0..=u16::MAX)
        .map(|i| [10, 8, (i >> 8) as u8, i as u8])
        .find(|a| hot_slot(&key(*a), 1) == slot)
        .expect("a source sharing the hot slot")
}

/// An IPv4 frame from `src` to 10.0.0.2: TCP (`tcp`) or UDP to `dport`, 80 bytes.
fn ipv4(src: [u8; 4], tcp: bool, dport: u16) -> Vec<u8> {
    let ip = PacketBuilder::ethernet2(A, B).ipv4(src, [10, 0, 0, 2], 64);
    let mut v = Vec::new();
    let written = if tcp {
        ip.tcp(40000, dport, 1, 65535).write(&mut v, &[0; 26])
    } else {
        ip.udp(dport, dport).write(&mut v, &[0; 38])
    };
    written.expect("IPv4 frame");
    v
}

fn frames() -> Vec<Frame> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &A,
        &[10, 0, 0, 1],
        &[0; 6],
        &[10, 0, 0, 2],
    )
    .expect("arp packet");
    let mut arp_frame = Vec::new();
    PacketBuilder::ethernet2(A, [0xff; 6])
        .arp(arp)
        .write(&mut arp_frame)
        .expect("arp frame");
    vec![
        Frame {
            name: "unrelated",
            what: "IPv4 TCP to port 443 (concerns no detector)",
            bytes: ipv4([10, 0, 0, 1], true, 443),
        },
        Frame {
            name: "udp_other",
            what: "IPv4 UDP to port 53 (a UDP port that is not the cluster's)",
            bytes: ipv4([10, 0, 0, 1], false, 53),
        },
        Frame {
            name: "cluster",
            what: "80-byte IPv4 UDP to port 5405 from a member (counted in its slot)",
            bytes: ipv4(MEMBER, false, 5405),
        },
        Frame {
            name: "rogue",
            what: "80-byte IPv4 UDP to port 5405 from a non-member (counted in its hot slot)",
            bytes: ipv4(ROGUE, false, 5405),
        },
        Frame {
            name: "rogue_lru",
            what: "the same from a non-member whose hot slot `rogue` holds (counted in the LRU hash)",
            bytes: ipv4(slot_twin(ROGUE), false, 5405),
        },
        Frame {
            name: "arp",
            what: "ARP request from a known owner (binding refreshed)",
            bytes: arp_frame,
        },
    ]
}

/// Measure and print; the exit code (0, or 1 when the program cannot be measured).
pub fn run(config: &Config, json: bool) -> i32 {
    // Per-CPU slots (the cluster counters): every run on one CPU, so each frame meets
    // the state the frames before it left.
    if let Err(e) = pin_to_one_cpu() {
        eprintln!("nodeward check --packet-cost: cannot pin to one CPU: {e}");
        return 1;
    }
    let mut config = crate::kernel::packet::loopback_only(config, true);
    config.detectors.corosync.ports = vec![5405];
    let mut facts = crate::kernel::probe::probe();
    let mut kernel = match Kernel::load(&mut facts, &config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("nodeward check --packet-cost: {e}");
            return 1;
        }
    };
    // The test run's skb is on loopback (ifindex 1): watch ARP and cluster traffic
    // there, in the program's maps only (nothing is attached).
    let lo = NetPort {
        domain: 1,
        flags: PORT_WATCH_ARP | PORT_WATCH_COROSYNC,
        ..Default::default()
    };
    let settings = kernel
        .sync_corosync(
            &[5405],
            &Default::default(),
            &[(MEMBER.into(), 7)].into(),
            &[],
        )
        .and_then(|()| kernel.write_ports([(1, lo)].into()));
    if let Err(e) = settings {
        eprintln!("nodeward check --packet-cost: {e}");
        return 1;
    }
    let frames = frames();
    let ebpf = kernel.ebpf_mut();
    let floor = match ebpf
        .program_mut(NET_FLOOR)
        .map(TryInto::<&mut SchedClassifier>::try_into)
    {
        // The first frame (unrelated traffic) serves as the floor's input.
        Some(Ok(p)) => p
            .load()
            .map_err(|e| e.to_string())
            .and_then(|()| measure(p, &frames[0].bytes)),
        _ => Err("missing from the eBPF object".into()),
    };
    let floor = match floor {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nodeward check --packet-cost: {NET_FLOOR}: {e}");
            return 1;
        }
    };
    let Some(Ok(prog)) = ebpf
        .program_mut(NET_TC)
        .map(TryInto::<&mut SchedClassifier>::try_into)
    else {
        eprintln!("nodeward check --packet-cost: {NET_TC} missing from the eBPF object");
        return 1;
    };
    let mut rows = Vec::new();
    for f in frames {
        match measure(prog, &f.bytes) {
            Ok((median, min, verdict)) => rows.push((f, median, min, verdict)),
            Err(e) => {
                eprintln!(
                    "nodeward check --packet-cost: BPF_PROG_TEST_RUN on {}: {e}",
                    f.name
                );
                return 1;
            }
        }
    }
    if json {
        let mut v: Vec<serde_json::Value> = vec![serde_json::json!({
            "frame": "floor",
            "what": "an empty program (the test run's own cost)",
            "ns_median": floor.0,
            "ns_min": floor.1,
            "verdict": floor.2,
        })];
        v.extend(rows.iter().map(|(f, median, min, verdict)| {
            serde_json::json!({"frame": f.name, "what": f.what, "ns_median": median, "ns_min": min, "verdict": verdict})
        }));
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!("{NET_TC}: mean ns per run over {REPEAT} runs, median (min) of {ROUNDS}");
        println!(
            "{:<10} {:>5} ({:>5})  an empty program: the test run's own cost, in every row below",
            "floor", floor.0, floor.1
        );
        for (f, median, min, _) in rows {
            println!("{:<10} {median:>5} ({min:>5})  {}", f.name, f.what);
        }
    }
    0
}

/// Run `prog` on `frame` [`ROUNDS`] times of [`REPEAT`] runs: the median and minimum
/// mean ns per run, and the program's verdict.
fn measure(prog: &mut SchedClassifier, frame: &[u8]) -> Result<(u64, u64, i32), String> {
    let mut ns = Vec::with_capacity(ROUNDS);
    let mut verdict = 0;
    for _ in 0..ROUNDS {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: REPEAT,
            ..TestRunOptions::new()
        };
        let r = prog.test_run(opts).map_err(|e| e.to_string())?;
        ns.push(r.duration.as_nanos() as u64);
        verdict = r.return_value as i32;
    }
    ns.sort_unstable();
    Ok((ns[ROUNDS / 2], ns[0], verdict))
}

/// Keep this thread on the CPU it runs on.
fn pin_to_one_cpu() -> nix::Result<()> {
    use nix::sched::{CpuSet, sched_getcpu, sched_setaffinity};
    let mut one = CpuSet::new();
    one.set(sched_getcpu()?)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &one)
}
