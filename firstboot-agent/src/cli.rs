//! The `firstboot-agent` command line. Each subcommand parses its arguments and calls one library function.

use anyhow::Result;
use clap::{Parser, Subcommand};
use firstboot_agent::config::{ClusterConfig, INSTALLED_CONFIG_PATH};
use firstboot_agent::disk::{
    self, PrepareOptions, StopPoint, DEVICE_ENV, FSTAB_ENV, STOP_AFTER_ENV,
};
use firstboot_agent::identity::NodeIdentity;
use firstboot_agent::services::{self, ServiceOptions};
use firstboot_agent::state::StateStore;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs on every Pi of the cluster: prepares the card, forms the cluster, serves the status page.
#[derive(Debug, Parser)]
#[command(name = "firstboot-agent", version)]
pub struct Cli {
    /// The cluster config.
    #[arg(long, global = true, env = "FIRSTBOOT_AGENT_CONFIG", default_value = INSTALLED_CONFIG_PATH)]
    pub config: PathBuf,
    /// Where the agent keeps its state (default: the config's agent.state_dir).
    #[arg(long, global = true, env = "FIRSTBOOT_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the brick partition (last brick_share of the card), grow root, make and mount the brick XFS.
    PrepareDisk(PrepareDiskArgs),
    /// Make sure glusterd and dockerd are installed and running.
    EnsureServices(JsonArg),
    /// Print this node's id and host name.
    Identity(IdentityArgs),
    /// Run the agent: prepare the disk, form or join the cluster, serve the API (runs until stopped).
    Run(RunArgs),
    /// Show the whole cluster (health, nodes, volume, bricks, swarm) as this node's agent or --node sees it.
    Status(StatusArgs),
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Ask the agent on HOST[:PORT] instead of this node's (port default: agent.api_port, else 7780).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub node: Option<String>,
    /// Print the JSON document (GET /api/status) for programs.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `run` (see `firstboot_agent::agent::RunOptions`).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The whole-disk device holding the card (default: the disk holding /).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// Skip disk preparation and use the brick directory as it is (bricks are then created with `force`).
    #[arg(long)]
    pub skip_disk: bool,
    /// This node's LAN address (default: the first IPv4 address of a LAN interface).
    #[arg(long)]
    pub address: Option<std::net::Ipv4Addr>,
    /// The hosts file whose managed block names the peers.
    #[arg(long, default_value = "/etc/hosts")]
    pub hosts_file: PathBuf,
    /// The fstab that gets the brick and volume mount lines.
    #[arg(long, default_value = "/etc/fstab")]
    pub fstab: PathBuf,
}

/// `--json`.
#[derive(Debug, clap::Args)]
pub struct JsonArg {
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `identity`.
#[derive(Debug, clap::Args)]
pub struct IdentityArgs {
    /// Host name prefix (default: the config's agent.hostname_prefix, else "picluster").
    #[arg(long)]
    pub prefix: Option<String>,
    /// Read the serial number and machine id under this root (the first-run script's target system).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Print only the host name.
    #[arg(long, conflicts_with = "json")]
    pub hostname: bool,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `prepare-disk`.
#[derive(Debug, clap::Args)]
pub struct PrepareDiskArgs {
    /// The whole-disk device (default: the disk holding /).
    #[arg(long, env = DEVICE_ENV)]
    pub device: Option<PathBuf>,
    /// Show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The fstab to record the brick mount in.
    #[arg(long, env = FSTAB_ENV, default_value = "/etc/fstab")]
    pub fstab: PathBuf,
    /// Stop after a step, to test crash recovery (table, kernel, root, format-started, format, fstab, mount).
    #[arg(long, env = STOP_AFTER_ENV, hide = true)]
    pub stop_after: Option<StopPoint>,
}

fn load_config(path: &Path) -> Result<ClusterConfig> {
    Ok(ClusterConfig::load(path)?)
}

fn open_state(cli: &Cli, config: &ClusterConfig) -> Result<StateStore> {
    let dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    Ok(StateStore::open(&dir)?)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn prepare_disk(cli: &Cli, args: &PrepareDiskArgs) -> Result<()> {
    let config = load_config(&cli.config)?;
    let store = open_state(cli, &config)?;
    let opts = PrepareOptions {
        device: args.device.clone(),
        dry_run: args.dry_run,
        fstab: args.fstab.clone(),
        stop_after: args.stop_after,
    };
    let report = disk::prepare_disk(&config, &store, &opts)?;
    if args.json {
        print_json(&report)
    } else {
        print!("{}", report.to_text());
        Ok(())
    }
}

fn ensure_services(cli: &Cli, args: &JsonArg) -> Result<()> {
    let config = load_config(&cli.config)?;
    let report = services::ensure_services(&ServiceOptions::for_config(&config))?;
    if args.json {
        return print_json(&report);
    }
    for s in &report.services {
        println!("{}: running ({})", s.name, s.detail);
    }
    Ok(())
}

fn identity(cli: &Cli, args: &IdentityArgs) -> Result<()> {
    let prefix = match (&args.prefix, load_config(&cli.config)) {
        (Some(p), _) => p.clone(),
        (None, Ok(c)) => c.agent.hostname_prefix,
        (None, Err(_)) if !cli.config.exists() => "picluster".to_string(),
        (None, Err(e)) => return Err(e),
    };
    let id = NodeIdentity::detect_in(&args.root, &prefix)?;
    if args.json {
        return print_json(&id);
    }
    if args.hostname {
        println!("{}", id.hostname);
        return Ok(());
    }
    println!("{} {} ({:?})", id.node_id, id.hostname, id.source);
    Ok(())
}

fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    use anyhow::Context as _;
    let mut config = ClusterConfig::load(&cli.config)?;
    if let Some(dir) = &cli.state_dir {
        config.agent.state_dir = dir.clone();
    }
    let identity = NodeIdentity::detect(&config.agent.hostname_prefix)?;
    let options = firstboot_agent::agent::RunOptions {
        skip_disk: args.skip_disk,
        device: args.device.clone(),
        address: args.address,
        hosts_file: args.hosts_file.clone(),
        fstab: args.fstab.clone(),
        force_bricks: args.skip_disk,
    };
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(firstboot_agent::agent::run(config, identity, options))
}

fn status(cli: &Cli, args: &StatusArgs) -> Result<()> {
    use firstboot_agent::status_cli;
    let port = ClusterConfig::load(&cli.config)
        .map(|c| c.agent.api_port)
        .unwrap_or(status_cli::DEFAULT_PORT);
    let url = status_cli::status_url(args.node.as_deref(), port)?;
    let (doc, raw) = tokio::runtime::Runtime::new()?.block_on(status_cli::fetch(&url))?;
    if args.json {
        return print_json(&serde_json::from_str::<serde_json::Value>(&raw)?);
    }
    print!("{}", status_cli::render_table(&doc));
    Ok(())
}

/// Parses the command line, runs the subcommand, prints errors to stderr.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::PrepareDisk(a) => prepare_disk(&cli, a),
        Command::EnsureServices(a) => ensure_services(&cli, a),
        Command::Identity(a) => identity(&cli, a),
        Command::Run(a) => run(&cli, a),
        Command::Status(a) => status(&cli, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firstboot-agent: error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text the message before it already holds.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}
