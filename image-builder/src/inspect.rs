//! `inspect`: what an image holds: partition table, Raspberry Pi OS generation, boot files, the embedded cluster
//! config (key redacted) and how the brick partition is laid out.

use crate::bootfs::{BootFs, Entry};
use crate::build::detect_generation;
use crate::error::{IoContext, Result};
use crate::image::{self, Generation, GenerationSource, Table};
use crate::io::{self, InputFormat};
use crate::payload;
use crate::size::human;
use firstboot_agent::config::{BrickLayoutMode, ClusterConfig, BOOT_CONFIG_NAME};
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file inspected.
    pub path: PathBuf,
    /// Its compression.
    pub format: InputFormat,
    /// Size of the raw disk image.
    pub image_size: u64,
    /// The partition table.
    pub table: Table,
    /// Raspberry Pi OS generation, when it could be told.
    pub generation: Option<Generation>,
    /// How it was told.
    pub generation_source: Option<GenerationSource>,
    /// cmdline.txt as found.
    pub cmdline: Option<String>,
    /// Whether Raspberry Pi OS's own root growth is still switched on in cmdline.txt.
    pub root_growth_enabled: bool,
    /// Whether cmdline.txt starts the cluster first-run script.
    pub firstrun_wired: bool,
    /// Files in the boot partition's root directory.
    pub boot_files: Vec<Entry>,
    /// The embedded cluster config with the key redacted, if there is one.
    pub cluster_config: Option<ClusterConfig>,
    /// Brick layout mode from the config (fixed: partition 3 is in the table; deferred: the agent makes it).
    pub brick_layout: Option<BrickLayoutMode>,
    /// Whether the table has a partition 3.
    pub brick_partition_present: bool,
    /// The packages the image carries for an offline first boot (`build --packages`), if any.
    pub packages: Option<crate::carry::CarriedSummary>,
    /// Problems found while reading (the report is still printed).
    pub warnings: Vec<String>,
}

/// Opens `path` as a raw image: directly when raw, else decoded into a sparse temporary file.
pub fn open_raw(
    path: &Path,
    progress: bool,
) -> Result<(File, Option<tempfile::NamedTempFile>, InputFormat)> {
    let what = path.display().to_string();
    let mut f = File::open(path).ctx(|| format!("cannot open {what}"))?;
    let format = io::sniff(&mut f).map_err(|e| crate::Error::Invalid(format!("{what}: {e}")))?;
    if format == InputFormat::Raw {
        return Ok((f, None, format));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".image-builder-inspect.")
        .tempfile()
        .ctx(|| "cannot create a temporary file")?;
    io::register_temp(tmp.path());
    let len = f.metadata().ctx(|| format!("cannot stat {what}"))?.len();
    let bar = io::progress_bar(len, "decode", progress);
    let mut dec = io::decoder(io::ProgressReader::new(f, bar.clone()), format)
        .ctx(|| format!("cannot read {what}"))?;
    io::copy_sparse(&mut dec, tmp.as_file()).map_err(|e| {
        crate::Error::Invalid(format!(
            "{what} is corrupt or truncated ({format} data does not decode: {e})"
        ))
    })?;
    bar.finish_and_clear();
    let file = tmp.reopen().ctx(|| "cannot reopen a temporary file")?;
    Ok((file, Some(tmp), format))
}

/// Builds the report for `path`.
pub fn inspect(path: &Path, progress: bool) -> Result<Report> {
    let (mut raw, tmp, format) = open_raw(path, progress)?;
    let raw_path = tmp
        .as_ref()
        .map_or(path.to_path_buf(), |t| t.path().to_path_buf());
    let what = path.display().to_string();
    let image_size = raw.metadata().ctx(|| format!("cannot stat {what}"))?.len();
    let table = image::read_table(&mut raw, &what)?;
    let mut warnings = Vec::new();
    let mut report = Report {
        path: path.to_path_buf(),
        format,
        image_size,
        brick_partition_present: table.get(3).is_some(),
        table,
        generation: None,
        generation_source: None,
        cmdline: None,
        root_growth_enabled: false,
        firstrun_wired: false,
        boot_files: Vec::new(),
        cluster_config: None,
        brick_layout: None,
        packages: None,
        warnings: Vec::new(),
    };
    let (Some(p1), Some(p2)) = (report.table.get(1).cloned(), report.table.get(2).cloned()) else {
        warnings.push("no partitions 1 and 2: not a Raspberry Pi OS image".into());
        report.warnings = warnings;
        return Ok(report);
    };
    match BootFs::open(&raw, &p1, &what) {
        Ok(boot) => {
            report.boot_files = boot.list_root()?;
            if let Some(c) = boot.read("cmdline.txt")? {
                let c = String::from_utf8_lossy(&c).into_owned();
                report.root_growth_enabled = image::generation_from_cmdline(&c).is_some();
                report.firstrun_wired = c.contains(payload::FIRSTRUN_TOKENS);
                match detect_generation(&raw_path, &p2, &c, &what) {
                    Ok((g, s)) => {
                        report.generation = Some(g);
                        report.generation_source = Some(s);
                    }
                    Err(e) => warnings.push(e.to_string()),
                }
                report.cmdline = Some(c.trim_end().to_string());
            } else {
                warnings.push("the boot partition has no cmdline.txt".into());
            }
            let archive = firstboot_agent::packages::ARCHIVE_NAME;
            if let Some(archive_bytes) = boot.file_size(archive)? {
                let listed = boot.read_with(archive, |r| {
                    firstboot_agent::packages::read_tar(r, Path::new(archive), &mut |_, _| Ok(()))
                })?;
                match listed {
                    Some(Ok(members)) => {
                        report.packages = Some(crate::carry::summarize(&members, archive_bytes))
                    }
                    Some(Err(e)) => warnings.push(format!("carried packages: {e}")),
                    None => {}
                }
            }
            if let Some(text) = boot.read(BOOT_CONFIG_NAME)? {
                match ClusterConfig::parse(
                    &String::from_utf8_lossy(&text),
                    Path::new(BOOT_CONFIG_NAME),
                ) {
                    Ok(c) => {
                        report.brick_layout = Some(c.storage.layout);
                        report.cluster_config = Some(c.redacted());
                    }
                    Err(e) => warnings.push(format!("embedded cluster config: {e}")),
                }
            }
        }
        Err(e) => warnings.push(e.to_string()),
    }
    report.warnings = warnings;
    Ok(report)
}

/// `image-builder inspect PATH [--json]`.
pub fn run(path: &Path, json: bool) -> anyhow::Result<()> {
    let r = inspect(path, !json)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{}: {} image, {} ({} bytes)",
        r.path.display(),
        r.format,
        human(r.image_size),
        r.image_size
    );
    println!(
        "partition table: {} (disk id {})",
        r.table.kind, r.table.disk_id
    );
    for p in &r.table.partitions {
        println!(
            "  p{}  start {:>10}  end {:>10}  {:>10}  type {}  PARTUUID {}",
            p.number,
            p.start,
            p.end,
            human(p.len()),
            p.kind,
            p.partuuid
        );
    }
    match (r.generation, r.generation_source) {
        (Some(g), Some(s)) => println!(
            "Raspberry Pi OS generation: {g} (from {})",
            match s {
                GenerationSource::CmdlineToken => "the root-growth token in cmdline.txt",
                GenerationSource::OsRelease => "os-release in the root filesystem",
            }
        ),
        _ => println!("Raspberry Pi OS generation: unknown"),
    }
    if let Some(c) = &r.cmdline {
        println!("cmdline.txt: {c}");
    }
    println!(
        "root growth at first boot: {}; cluster first-run: {}",
        if r.root_growth_enabled {
            "on (Raspberry Pi OS default)"
        } else {
            "off"
        },
        if r.firstrun_wired {
            "wired"
        } else {
            "not wired"
        }
    );
    match r.brick_layout {
        Some(BrickLayoutMode::Fixed) => println!(
            "brick partition: fixed, laid out for a {} card (partition 3 {})",
            r.cluster_config
                .as_ref()
                .and_then(|c| c.storage.card_size)
                .map_or("?".into(), human),
            if r.brick_partition_present {
                "present"
            } else {
                "MISSING"
            }
        ),
        Some(BrickLayoutMode::Deferred) => {
            println!("brick partition: deferred, laid out by the agent at first boot from the real card size")
        }
        None => println!("brick partition: none (not a cluster image)"),
    }
    match &r.packages {
        Some(p) => println!(
            "packages for an offline first boot: {} .deb files, {} ({} bytes) in {}; installed from {}",
            p.count,
            human(p.bytes),
            p.bytes,
            p.archive,
            p.install_dir.display()
        ),
        None => println!("packages for an offline first boot: none (first boot installs them with apt)"),
    }
    println!("boot files:");
    for e in &r.boot_files {
        if e.dir {
            println!("  {}/", e.name);
        } else {
            println!("  {:<40} {:>10}", e.name, e.size);
        }
    }
    match &r.cluster_config {
        Some(c) => {
            println!("cluster config ({BOOT_CONFIG_NAME}, key redacted):");
            for line in c.to_toml().lines() {
                println!("  {line}");
            }
        }
        None => println!("cluster config: none"),
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
