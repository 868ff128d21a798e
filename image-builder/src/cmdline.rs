//! Command-line types (clap). Logic lives elsewhere; these only describe and parse the arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Turns Raspberry Pi OS into a self-forming storage and Swarm cluster image; inspects and flashes such images.
#[derive(Debug, Parser)]
#[command(name = "image-builder", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the cluster image from a Raspberry Pi OS image.
    Build(Box<BuildArgs>),
    /// Show what an image holds: partitions, generation, boot files, cluster config (key redacted).
    Inspect(InspectArgs),
    /// Write an image to a card: only mapped blocks (bmap), verified by reading back.
    Flash(FlashArgs),
}

/// Partition table of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableArg {
    /// DOS/MBR: every Pi boots it (default).
    Mbr,
    /// GPT: Pi 4 and Pi 5 only; every PARTUUID changes.
    Gpt,
}

/// `image-builder build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Raspberry Pi OS image: raw, .xz, .gz or .zst (recognised by content, not name).
    #[arg(long, value_name = "PATH")]
    pub base: PathBuf,
    /// Output image; the extension picks the format: .img, .img.xz, .img.gz, .img.zst.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Number of nodes in the cluster.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub nodes: u32,
    /// Name of the cluster, shown on the status page.
    #[arg(long, default_value = "picluster", value_name = "NAME")]
    pub cluster_name: String,
    /// Percent of each card given to the brick partition (1..99).
    #[arg(long, default_value_t = 50, value_name = "PERCENT")]
    pub brick_share: u32,
    /// Card size to lay partition 3 out for now (bytes or 16G = 16 GiB); without it, the agent lays it out at
    /// first boot from the real card.
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_size)]
    pub card_size: Option<u64>,
    /// Partition table of the output.
    #[arg(long, value_enum, default_value = "mbr")]
    pub partition_table: TableArg,
    /// Agent binary to embed (default: the workspace's aarch64 release build, made by ci/build-agent-aarch64).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Accept an agent binary that is not aarch64 (for a lab of x86_64 machines or VMs).
    #[arg(long)]
    pub allow_any_agent_arch: bool,
    /// Create this login user (with --password-hash, --password-file, or a password prompt).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// crypt(3) hash of the user's password (`openssl passwd -6`).
    #[arg(
        long,
        value_name = "HASH",
        requires = "user",
        conflicts_with = "password_file"
    )]
    pub password_hash: Option<String>,
    /// File whose first line is the user's password.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
    /// Public SSH key file for the user (enables SSH).
    #[arg(long, value_name = "FILE")]
    pub ssh_authorized_key: Option<PathBuf>,
    /// Host names are PREFIX-ID, ID a short node id.
    #[arg(long, value_name = "PREFIX")]
    pub hostname_prefix: Option<String>,
    /// Wi-Fi network name.
    #[arg(long, value_name = "SSID", requires_all = ["wifi_psk_file", "wifi_country"])]
    pub wifi_ssid: Option<String>,
    /// File whose first line is the Wi-Fi passphrase.
    #[arg(long, value_name = "FILE", requires = "wifi_ssid")]
    pub wifi_psk_file: Option<PathBuf>,
    /// Wi-Fi regulatory country (two letters, e.g. GB).
    #[arg(long, value_name = "CC", requires = "wifi_ssid")]
    pub wifi_country: Option<String>,
    /// Where to save the cluster config with its key (mode 0600; default: OUT's raw name + .cluster.toml).
    #[arg(long, value_name = "PATH")]
    pub key_out: Option<PathBuf>,
    /// Reuse an existing cluster's config and key (a replacement card joins the same cluster).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["cluster_name", "nodes"])]
    pub key_file: Option<PathBuf>,
    /// Carry the .deb files of DIR on the card (one archive on the boot partition) so the first boot installs
    /// them without a network; fill DIR with ci/fetch-packages.
    #[arg(long, value_name = "DIR")]
    pub packages: Option<PathBuf>,
    /// Overwrite existing output, bmap and key files.
    #[arg(long)]
    pub force: bool,
    /// Compression level of the output: xz 0-9 (default 6), gzip 1-9 (default 6), zstd 1-19 (default 3).
    /// Lower is faster and larger.
    #[arg(long, value_name = "N")]
    pub compression_level: Option<u32>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `image-builder inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image to inspect (raw, .xz, .gz or .zst).
    pub path: PathBuf,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `image-builder flash`.
#[derive(Debug, Args)]
pub struct FlashArgs {
    /// Image to write (raw, .xz, .gz or .zst); its bmap is found beside it.
    pub image: PathBuf,
    /// Block device to write (the whole card, e.g. /dev/sdb or /dev/mmcblk0).
    pub device: PathBuf,
    /// bmap file (default: beside the image, as bmaptool looks for it).
    #[arg(long, value_name = "PATH")]
    pub bmap: Option<PathBuf>,
    /// Do not ask before writing.
    #[arg(long)]
    pub yes: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}
