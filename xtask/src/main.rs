//! `cargo xtask`: the only build entry point of nodeward.

mod bench;
mod build;
mod dashboards;
mod fuzz;
mod grafana;
mod kubernetes;
mod lab;
mod package;
mod runbooks;
mod setup;
mod shape;
mod stress;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, set up, run and test nodeward")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check for everything later steps use and install what is missing (idempotent,
    /// says what it does): the pinned toolchain with the components rust-toolchain.toml
    /// lists (rust-src, clippy, rustfmt), bpf-linker built against that toolchain's own
    /// libLLVM into a cache directory, and with --test-deps the Debian packages.
    Setup {
        /// Also install the Debian packages the end-to-end tests use (apt-get).
        #[arg(long)]
        test_deps: bool,
    },
    /// Build the eBPF object and the agent with the object embedded.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run the agent (default: `nodeward run` on the built-in config).
    /// Arguments after `--` go to nodeward, e.g. `cargo xtask run -- check`.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The whole test suite: unit tests, rule and dashboard checks, `nodeward check`
    /// and the privileged end-to-end tests (root).
    Test {
        /// Run only the unprivileged part (no root needed, no eBPF).
        #[arg(long)]
        unit_only: bool,
        /// Only end-to-end tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// rustfmt --check and clippy with warnings denied.
    Lint,
    /// Regenerate the README's metrics reference from the agent's metric definitions
    /// (the unit tests fail when it drifts).
    Docs,
    /// The tree's shape (part of `test`): each detector id's files in every crate, its
    /// alert group and dashboard row, metric names, pure state machines, file sizes.
    Shape,
    /// Measure the agent's cost (root): getpid, open, fork+exec, a parallel C build,
    /// a tarball unpack and packets across a bridge, each in interleaved pairs (without
    /// the agent, with it, with auditd, in an order that rotates; median and IQR of the
    /// ratios), one detector off at a time; writes BENCHMARKS.md with the machine and
    /// date. Takes about 35 minutes with the defaults. Unless an audit daemon already
    /// runs, it switches audit off and leaves one `task,never` rule (without it, audit
    /// once enabled puts every later process on the syscall slow path); `auditctl -D`
    /// removes it.
    Bench {
        /// Seconds per run.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Interleaved pairs per workload (at least 7 unless --only; 12 by default: single
        /// runs here spread by ±6 %, the median of 7 pairs moved by ±0.02 from one bench
        /// to the next, and 12 pairs take each of the six run orders twice).
        #[arg(long, default_value_t = 12)]
        pairs: usize,
        /// Skip the auditd columns (audit is still switched off, with the task,never
        /// rule, for the runs).
        #[arg(long)]
        no_auditd: bool,
        /// Only these workloads (getpid, open, exec, build, tar, udp, udp_plain, udp_drop); the report is
        /// printed and BENCHMARKS.md left as it is (a partial run never replaces it).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// With --only: write the run's rows as a "focused run" section of
        /// BENCHMARKS.md, one per workload set (a later run of the same set replaces
        /// it; other sets and full runs keep it; it states its own date). Use it for
        /// more pairs on the workloads a full run left unresolved.
        #[arg(long, requires = "only")]
        record: bool,
    },
    /// Build the Debian package (release binary with the eBPF object, conffile, hardened
    /// systemd unit, rules, dashboard, man pages, completions) with dpkg-deb.
    Package {
        /// Debian revision (the part after the upstream version).
        #[arg(long, default_value_t = 1)]
        revision: u32,
        /// Directory for the .deb (default: target/package).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The container image's build context in target/image/: the static binary and a
    /// FROM-scratch Containerfile (nothing pulled from a registry).
    Image,
    /// Regenerate deploy/kubernetes/{prometheusrule,configmap}.yaml from
    /// dashboards/rules and the default configuration (the tests fail when they drift).
    K8s {
        /// Only check: drift, capabilities, kubernetes-validate, promtool.
        #[arg(long)]
        check: bool,
    },
    /// Fuzz every parser of outside input (cargo-fuzz, libFuzzer with AddressSanitizer):
    /// ring-buffer records through the detectors, fanotify FID events, corosync.conf,
    /// lease files, the configuration, webhook requests, control-socket lines, and
    /// journal/state recovery. Seeds in fuzz/seeds/<target>/, the grown corpus and any
    /// crashing input under target/fuzz/. `cargo xtask test` runs each for 5 s.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// Floods against the agent (root): martian drops from a million distinct sources,
    /// ARP claims for 100,000 addresses, cluster packets from 100,000 sources and an exec
    /// storm that overflows the ring buffer, with the agent's memory sampled and
    /// `/metrics` and the control socket asked every 200 ms throughout; writes the
    /// stress section of BENCHMARKS.md. Fails when the peak RSS exceeds 64 MiB or the
    /// overflow is not accounted exactly. About 2 minutes.
    Stress {
        /// Multiply every flood's size (e.g. 0.1 for a quick look).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Flood this agent binary instead of building the release agent.
        #[arg(long)]
        bin: Option<std::path::PathBuf>,
        /// Print the report only; leave BENCHMARKS.md as it is.
        #[arg(long)]
        no_write: bool,
    },
    /// (internal) flood sender of `stress`, run inside a namespace.
    #[command(hide = true)]
    StressBlast {
        flood: String,
        count: u32,
        dst_mac: String,
        dst: String,
    },
    /// (internal) UDP sender of the bench, run inside a namespace.
    #[command(hide = true)]
    BenchUdpSend { dst: String, port: u16, secs: f64 },
    /// (internal) UDP receiver of the bench, run inside a namespace.
    #[command(hide = true)]
    BenchUdpRecv { port: u16 },
    /// (internal) one run of a bench workload, in a process of its own: prints the
    /// operations done and the seconds taken.
    #[command(hide = true)]
    BenchWork { workload: String, secs: f64 },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { test_deps } => setup::setup(test_deps).map(|_| ()),
        Command::Build { release } => build::build(release).map(|_| ()),
        Command::Run { release, args } => build::run_agent(release, args),
        Command::Test { unit_only, filter } => test::test(unit_only, filter),
        Command::Lint => build::lint(),
        Command::Docs => build::docs(),
        Command::Shape => shape::check(&util::root()),
        Command::Bench {
            secs,
            pairs,
            no_auditd,
            only,
            record,
        } => bench::bench(secs, pairs.max(1), !no_auditd, &only, record),
        Command::Package { revision, out } => package::package(revision, out).map(|_| ()),
        Command::Image => build::image().map(|_| ()),
        Command::K8s { check: false } => kubernetes::write(&util::root()),
        Command::K8s { check: true } => {
            kubernetes::check(&util::root(), test::promtool().as_deref())
        }
        Command::Fuzz { secs, targets } => fuzz::fuzz(secs, &targets),
        Command::BenchUdpSend { dst, port, secs } => bench::udp_send(&dst, port, secs),
        Command::BenchUdpRecv { port } => bench::udp_recv(port),
        Command::BenchWork { workload, secs } => bench::work(&workload, secs),
        Command::Stress {
            scale,
            bin,
            no_write,
        } => stress::stress(scale, bin, !no_write),
        Command::StressBlast {
            flood,
            count,
            dst_mac,
            dst,
        } => stress::blast::blast(&flood, count, &dst_mac, &dst),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
