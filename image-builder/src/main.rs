//! The `image-builder` program: command line to library calls, human or JSON output, errors on stderr.

use anyhow::{bail, Context, Result};
use clap::Parser;
use image_builder::build::{self, BuildOptions, User};
use image_builder::cmdline::{BuildArgs, Cli, Command, TableArg};
use image_builder::payload::Wifi;
use image_builder::{password, size};
use std::io::{IsTerminal, Write};
use std::path::Path;

fn main() {
    let cli = Cli::parse();
    image_builder::io::install_interrupt_cleanup();
    let result = match cli.command {
        Command::Build(args) => run_build(*args),
        Command::Inspect(args) => image_builder::inspect::run(&args.path, args.json),
        Command::Flash(args) => image_builder::flash::run(&args),
    };
    if let Err(e) = result {
        eprintln!("image-builder: error: {e:#}");
        std::process::exit(1);
    }
}

/// First line of a secret file, without its line end.
fn first_line(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("{what} {} is empty", path.display());
    }
    Ok(line)
}

/// Reads a password from the terminal without echo, twice.
fn prompt_password(user: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("--user {user} needs a password: pass --password-hash HASH or --password-file FILE (no terminal to ask on)");
    }
    let read = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
        let old = tcgetattr(&stdin).context("cannot read terminal settings")?;
        let mut quiet = old.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn off echo")?;
        let mut line = String::new();
        let r = stdin.read_line(&mut line);
        tcsetattr(&stdin, SetArg::TCSANOW, &old).ok();
        eprintln!();
        r.context("cannot read the password")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    };
    let a = read(&format!("Password for {user}: "))?;
    let b = read("Again: ")?;
    if a != b {
        bail!("the two passwords differ");
    }
    Ok(a)
}

fn run_build(args: BuildArgs) -> Result<()> {
    let user = match &args.user {
        Some(name) => {
            password::check_user(name)?;
            let hash = match (&args.password_hash, &args.password_file) {
                (Some(h), _) => {
                    password::check_hash(h)?;
                    h.clone()
                }
                (None, Some(f)) => password::hash_password(&first_line(f, "--password-file")?)?,
                (None, None) => password::hash_password(&prompt_password(name)?)?,
            };
            Some(User {
                name: name.clone(),
                password_hash: hash,
            })
        }
        None => None,
    };
    let ssh_authorized_key = match &args.ssh_authorized_key {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --ssh-authorized-key {}", p.display()))?;
            if text.contains("PRIVATE KEY") {
                bail!(
                    "--ssh-authorized-key {} is a private key: give the public key (the .pub file)",
                    p.display()
                );
            }
            let keys: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if keys.is_empty()
                || !keys.iter().all(|k| {
                    k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-")
                })
            {
                bail!("--ssh-authorized-key {} holds no OpenSSH public key (lines like `ssh-ed25519 AAAA... user@host`)", p.display());
            }
            Some(keys.join("\n"))
        }
        None => None,
    };
    let wifi = match (&args.wifi_ssid, &args.wifi_psk_file, &args.wifi_country) {
        (Some(ssid), Some(psk_file), Some(country)) => {
            let psk = first_line(psk_file, "--wifi-psk-file")?;
            let hex64 = psk.len() == 64 && psk.chars().all(|c| c.is_ascii_hexdigit());
            if !(8..=63).contains(&psk.len()) && !hex64 {
                bail!(
                    "the Wi-Fi passphrase in {} must be 8 to 63 characters (or 64 hex digits)",
                    psk_file.display()
                );
            }
            if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
                bail!(
                    "--wifi-country {country:?} must be a two-letter country code such as GB or DE"
                );
            }
            if ssid.is_empty() || ssid.len() > 32 {
                bail!("--wifi-ssid must be 1 to 32 bytes");
            }
            Some(Wifi {
                ssid: ssid.clone(),
                psk,
                country: country.to_ascii_uppercase(),
            })
        }
        _ => None,
    };
    let opts = BuildOptions {
        base: args.base,
        out: args.out,
        nodes: args.nodes,
        cluster_name: args.cluster_name,
        brick_share: args.brick_share,
        card_size: args.card_size,
        table: match args.partition_table {
            TableArg::Mbr => firstboot_agent::layout::TableKind::Mbr,
            TableArg::Gpt => firstboot_agent::layout::TableKind::Gpt,
        },
        agent: args.agent.unwrap_or_else(|| build::DEFAULT_AGENT.into()),
        allow_any_agent_arch: args.allow_any_agent_arch,
        user,
        ssh_authorized_key,
        hostname_prefix: args.hostname_prefix,
        wifi,
        key_out: args.key_out,
        key_file: args.key_file,
        packages: args.packages,
        force: args.force,
        progress: !args.json,
    };
    let summary = build::build(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "wrote {} ({}, {} bytes; disk image {}, {} to flash)",
            summary.output.display(),
            format!("{:?}", summary.format).to_lowercase(),
            summary.file_size,
            size::human(summary.image_size),
            size::human(summary.mapped_bytes)
        );
        println!("sha256 {}  {}", summary.sha256, summary.output.display());
        println!("bmap   {}", summary.bmap.display());
        println!(
            "Raspberry Pi OS {} ({:?}), {} partition table, alignment {} sectors",
            summary.generation,
            summary.generation_source,
            summary.partition_table,
            summary.alignment_sectors
        );
        for p in &summary.partitions {
            println!(
                "  p{} start {} end {} ({}) type {} PARTUUID {}",
                p.number,
                p.start,
                p.end,
                size::human(p.len()),
                p.kind,
                p.partuuid
            );
        }
        match summary.brick_layout {
            firstboot_agent::config::BrickLayoutMode::Fixed => println!(
                "brick partition: laid out for a {} card ({}%)",
                size::human(summary.card_size.unwrap_or(0)),
                summary.brick_share
            ),
            firstboot_agent::config::BrickLayoutMode::Deferred => println!(
                "brick partition: laid out at first boot from the real card ({}%)",
                summary.brick_share
            ),
        }
        println!(
            "cluster {:?} id {}, {} nodes",
            summary.cluster_name, summary.cluster_id, summary.nodes
        );
        if let Some(p) = &summary.packages {
            println!(
                "packages: {} .deb files ({}) carried in {} on the boot partition; installed at first boot from {}",
                p.count,
                size::human(p.bytes),
                p.archive,
                p.install_dir.display()
            );
        }
        if let Some(k) = &summary.key_file {
            println!("cluster key saved in {} (mode 0600): keep it; --key-file {} makes a replacement card for this cluster", k.display(), k.display());
        }
    }
    Ok(())
}
