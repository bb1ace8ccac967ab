//! Command line: parse and delegate.

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
    #[arg(short, long, global = true, env = "NODEWARD_CONFIG", value_name = "PATH")]
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
    Check,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let config = match load_config(cli.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Command::Config { command: ConfigCommand::Dump } => {
            print!("{}", config.to_toml());
            0
        }
        Command::Config { command: ConfigCommand::Check } => {
            println!("configuration ok");
            0
        }
        Command::Check => {
            if let Err(e) = crate::object::object() {
                eprintln!("nodeward: {e}");
                return 1;
            }
            crate::check::check(&config)
        }
        Command::Run => {
            if let Err(e) = crate::object::object() {
                eprintln!("nodeward: {e}");
                return 1;
            }
            match crate::run::run(config, cli.config) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("nodeward: {e:#}");
                    1
                }
            }
        }
    }
}
