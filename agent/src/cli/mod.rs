//! Command line: parse and delegate.

pub mod check;
pub mod cost;
pub mod program_cost;
pub mod verbs;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "nodeward",
    version,
    about = "Kernel-level observability and guard agent for infrastructure nodes",
    long_about = "nodeward watches the exec, reboot, socket, ARP and packet-drop paths of the \
kernel with eBPF, names incidents with their attribution, and exports them as Prometheus \
metrics and structured logs. Default mode is observe: it never acts.\n\n\
Without --config the built-in defaults apply (all detectors on, observe mode, metrics on \
127.0.0.1:9744). `nodeward config dump` prints them as a starting point.\n\n\
Exit codes: 0 ok, 1 runtime failure (or `check` found a detector that cannot run), \
2 bad configuration or usage."
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, the built-in defaults apply.
    #[arg(
        short,
        long,
        global = true,
        env = "NODEWARD_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent in the foreground (needs root: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).
    /// SIGTERM/SIGINT stop it cleanly (all programs detached); SIGHUP reloads the config.
    Run,
    /// Probe the kernel, then load, verify and attach every enabled program and print a
    /// table of what works here. Exits 1 if an enabled detector cannot run.
    Check {
        /// Instead: measure what the packet program costs per frame on this kernel
        /// (BPF_PROG_TEST_RUN on crafted frames; no traffic, nothing attached).
        #[arg(long)]
        packet_cost: bool,
        /// With --packet-cost: print JSON.
        #[arg(long, requires = "packet_cost")]
        json: bool,
        /// Instead: sample the running agent's programs for SECS seconds and print runs
        /// and nanoseconds per run of each (the kernel's run-time statistics are on for
        /// that window only).
        #[arg(long, value_name = "SECS", conflicts_with = "packet_cost", value_parser = clap::value_parser!(u64).range(1..=3600))]
        program_cost: Option<u64>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show the running agent: modes, enforcement backends, programs, quarantines.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List, add quarantines (every add goes through the same safeguards as automatic ones).
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Approve a proposed quarantine by id (safeguards are checked again).
    Approve {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Release (undo) a quarantine at once, or all of them.
    Release {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Live IP -> MAC bindings seen on the wire, with conflicts (ground truth for IPAM).
    Bindings {
        /// Only bindings seen on this interface.
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Declare a maintenance window: every reboot in it is expected (journaled).
    AllowReboot {
        /// How long, e.g. 15m.
        #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DURATION")]
        for_: std::time::Duration,
        /// Why, for the journal and the findings.
        #[arg(long)]
        reason: String,
    },
    /// Print the audit journal (reads the files directly; works with the agent down).
    Audit {
        /// Keep printing new records.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print a shell completion script, e.g.
    ///   nodeward completions bash > /etc/bash_completion.d/nodeward
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (roff) into DIR: nodeward.1 and nodeward-VERB.1.
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Active quarantines and pending proposals.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ask for a quarantine. Examples:
    ///   nodeward quarantine add --drop-ip 10.8.64.2 --interface rt0 --ttl 10m --reason "dup IP"
    ///   nodeward quarantine add --arp-claim 10.8.64.2 --drop-mac 02:00:00:00:00:09 --interface rt0
    ///   nodeward quarantine add --drop-ip 10.8.64.9 --cluster-only --interface vmbr0
    ///   nodeward quarantine add --block-exec reboot --cgroup /sys/fs/cgroup/machine.slice/x
    Add {
        #[command(flatten)]
        args: crate::cli::verbs::AddArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration (file merged over defaults) as TOML.
    Dump,
    /// Validate the configuration and exit 0, or print the error and exit 2.
    Check,
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, i32> {
    Config::load(path.map(PathBuf::as_path)).map_err(|e: ConfigError| {
        eprintln!("nodeward: {e}");
        ConfigError::EXIT_CODE
    })
}

fn verb(r: Result<(), crate::cli::verbs::VerbError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nodeward: {e}");
            1
        }
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    // Generated from these definitions; they need no configuration.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "nodeward", &mut out);
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a panic.
            return match std::io::stdout().write_all(&out) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => 1,
                _ => 0,
            };
        }
        Command::Manpage { dir } => return manpage(dir),
        _ => {}
    }
    let config = match load_config(cli.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Command::Config {
            command: ConfigCommand::Dump,
        } => {
            print!("{}", config.to_toml());
            0
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            println!("configuration ok");
            0
        }
        Command::Status { json } => verb(crate::cli::verbs::status(&config, json)),
        Command::Quarantine {
            command: QuarantineCommand::List { json },
        } => verb(crate::cli::verbs::list(&config, json)),
        Command::Quarantine {
            command: QuarantineCommand::Add { args, json },
        } => verb(crate::cli::verbs::add(&config, args, json)),
        Command::Approve { id, json } => verb(crate::cli::verbs::approve(&config, id, json)),
        Command::Release { id, all: _, json } => {
            verb(crate::cli::verbs::release(&config, id, json))
        }
        Command::Audit { follow } => verb(crate::cli::verbs::audit(&config, follow)),
        Command::Bindings { interface, json } => {
            verb(crate::cli::verbs::bindings(&config, interface, json))
        }
        Command::AllowReboot { for_, reason } => {
            verb(crate::cli::verbs::allow_reboot(&config, for_, reason))
        }
        Command::Check {
            packet_cost,
            json,
            program_cost,
        } => {
            if let Some(secs) = program_cost {
                return crate::cli::program_cost::run(secs);
            }
            if let Err(e) = crate::kernel::object::object() {
                eprintln!("nodeward: {e}");
                return 1;
            }
            if packet_cost {
                crate::cli::cost::run(&config, json)
            } else {
                crate::cli::check::check(&config)
            }
        }
        Command::Completions { .. } | Command::Manpage { .. } => unreachable!("handled above"),
        Command::Run => {
            if let Err(e) = crate::kernel::object::object() {
                eprintln!("nodeward: {e}");
                return 1;
            }
            match crate::daemon::run(config, cli.config) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("nodeward: {e:#}");
                    1
                }
            }
        }
    }
}

/// The man pages: nodeward(1) and nodeward-<verb>(1) for each verb, written to `dir`.
fn manpage(dir: &std::path::Path) -> i32 {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut pages = vec![("nodeward".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("nodeward-{}", sub.get_name());
        let version = cmd.get_version().unwrap_or_default().to_string();
        pages.push((name.clone(), sub.clone().name(name).version(version)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        let written = clap_mangen::Man::new(page)
            .render(&mut out)
            .and_then(|()| std::fs::write(&path, &out));
        if let Err(e) = written {
            eprintln!("nodeward: writing {}: {e}", path.display());
            return 1;
        }
    }
    0
}
