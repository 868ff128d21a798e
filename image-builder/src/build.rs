//! `build`: turns a Raspberry Pi OS image into the cluster image.
//!
//! The base image is only read: it is decoded into a sparse raw temporary file beside the output, which is
//! edited (boot payload, cmdline.txt, partition table, fstab for GPT) and then written out once (compressed or
//! renamed as is), with its bmap and SHA-256. Any error removes every temporary file and leaves no output.

use crate::bmap;
use crate::bootfs::BootFs;
use crate::error::{invalid, Error, IoContext, Result};
use crate::ext4;
use crate::image::{self, Generation, GenerationSource, Partition};
use crate::io::{self, AtomicOutput, InputFormat, OutputFormat, ProgressReader};
use crate::output;
use crate::payload::{self, FirstRunEnv, Wifi};
use firstboot_agent::config::{BrickLayoutMode, ClusterConfig, BOOT_CONFIG_NAME};
use firstboot_agent::layout::{self, BrickLayout, TableKind, SECTOR};
use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where the agent binary is looked for when `--agent` is not given: the workspace's own aarch64 release build
/// (made by `ci/build-agent-aarch64`).
pub const DEFAULT_AGENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/aarch64-unknown-linux-gnu/release/firstboot-agent"
);

/// A login user for the image.
#[derive(Debug, Clone)]
pub struct User {
    /// User name.
    pub name: String,
    /// crypt(3) hash of the password.
    pub password_hash: String,
}

/// Everything `build` needs, already read from the command line (files not yet opened).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Raspberry Pi OS image (raw, xz, gzip or zstd).
    pub base: PathBuf,
    /// The output path; its extension picks the format.
    pub out: PathBuf,
    /// Cluster size.
    pub nodes: u32,
    /// Cluster name.
    pub cluster_name: String,
    /// Percent of the card for the brick.
    pub brick_share: u32,
    /// Card size in bytes, to lay partition 3 out now.
    pub card_size: Option<u64>,
    /// Partition table of the output.
    pub table: TableKind,
    /// The agent binary to embed.
    pub agent: PathBuf,
    /// Accept an agent of any architecture (lab, tests).
    pub allow_any_agent_arch: bool,
    /// Login user.
    pub user: Option<User>,
    /// Public SSH key(s) for the user.
    pub ssh_authorized_key: Option<String>,
    /// Host name prefix.
    pub hostname_prefix: Option<String>,
    /// Wi-Fi.
    pub wifi: Option<Wifi>,
    /// Where to save the cluster config with its key (mode 0600).
    pub key_out: Option<PathBuf>,
    /// An existing cluster's config to reuse (same id and key: a replacement card joins the same cluster).
    pub key_file: Option<PathBuf>,
    /// Directory of .deb files to carry on the card (`--packages`).
    pub packages: Option<PathBuf>,
    /// Overwrite existing output files.
    pub force: bool,
    /// Draw progress bars (on a terminal only).
    pub progress: bool,
}

/// What `build` made, for people and for `--json`. Never holds the key.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    /// The output image.
    pub output: PathBuf,
    /// Its format.
    pub format: OutputFormat,
    /// SHA-256 of the output file.
    pub sha256: String,
    /// Size of the output file in bytes.
    pub file_size: u64,
    /// Size of the raw disk image in bytes (what the output decompresses to; with --card-size a compressed image
    /// ends after the last data before the brick, a raw one is card-sized).
    pub image_size: u64,
    /// Bytes of the raw image that hold data (what flashing writes).
    pub mapped_bytes: u64,
    /// The bmap file.
    pub bmap: PathBuf,
    /// The saved cluster config (with the key), if one was written.
    pub key_file: Option<PathBuf>,
    /// The base image's format.
    pub base_format: InputFormat,
    /// Raspberry Pi OS generation.
    pub generation: Generation,
    /// How the generation was recognised.
    pub generation_source: GenerationSource,
    /// The output's partition table.
    pub partition_table: TableKind,
    /// Partition alignment of the image, in sectors.
    pub alignment_sectors: u64,
    /// Partitions of the output.
    pub partitions: Vec<Partition>,
    /// Whether partition 3 is laid out (fixed) or left to first boot (deferred).
    pub brick_layout: BrickLayoutMode,
    /// Card size laid out for.
    pub card_size: Option<u64>,
    /// Brick share in percent.
    pub brick_share: u8,
    /// Cluster id.
    pub cluster_id: String,
    /// Cluster name.
    pub cluster_name: String,
    /// Nodes in the cluster.
    pub nodes: u32,
    /// The packages carried on the card (`--packages`), if any.
    pub packages: Option<crate::carry::CarriedSummary>,
}

/// The default path of the saved cluster config: `x.img.xz` -> `x.img.cluster.toml`.
pub fn default_key_out(out: &Path) -> PathBuf {
    let raw = OutputFormat::raw_name(out);
    PathBuf::from(format!("{}.cluster.toml", raw.display()))
}

/// The bmap path for an output: `x.img.xz` -> `x.img.bmap` (where `bmaptool copy` looks for it).
pub fn bmap_path(out: &Path) -> PathBuf {
    let raw = OutputFormat::raw_name(out);
    PathBuf::from(format!("{}.bmap", raw.display()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The cluster config for this build: a fresh one, or the one in `--key-file` (same cluster name, id, key and
/// node count), with this build's storage layout and host name prefix.
fn make_config(opts: &BuildOptions) -> Result<ClusterConfig> {
    let mut config = match &opts.key_file {
        Some(p) => ClusterConfig::load(p).map_err(|e| {
            Error::Invalid(format!(
                "--key-file: {e}; give the cluster config saved by an earlier build (--key-out)"
            ))
        })?,
        None => ClusterConfig::generate(&opts.cluster_name, opts.nodes),
    };
    config.storage.brick_share = opts.brick_share as u8;
    match opts.card_size {
        Some(size) => {
            config.storage.layout = BrickLayoutMode::Fixed;
            config.storage.card_size = Some(size);
        }
        None => {
            config.storage.layout = BrickLayoutMode::Deferred;
            config.storage.card_size = None;
        }
    }
    if let Some(prefix) = &opts.hostname_prefix {
        config.agent.hostname_prefix = prefix.clone();
    }
    config
        .validate(Path::new("the cluster config"))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(config)
}

/// Checks the options that need no file: ranges, names, paths that must not exist.
fn check_options(opts: &BuildOptions) -> Result<OutputFormat> {
    if !(1..=99).contains(&opts.brick_share) {
        return invalid(format!(
            "--brick-share {} is outside 1..99: give the percent of the card for the brick partition (default 50)",
            opts.brick_share
        ));
    }
    if !(1..=64).contains(&opts.nodes) {
        return invalid(format!("--nodes {} is outside 1..64", opts.nodes));
    }
    let format = OutputFormat::from_path(&opts.out).ok_or_else(|| {
        Error::Invalid(format!(
            "--out {}: the name must end in .img, .img.xz, .img.gz or .img.zst (the extension picks the format)",
            opts.out.display()
        ))
    })?;
    if let Some(card) = opts.card_size {
        if card % SECTOR != 0 {
            return invalid(format!(
                "--card-size {card} is not a whole number of 512-byte sectors"
            ));
        }
    }
    let mut outputs = vec![
        ("output", opts.out.clone()),
        ("bmap file", bmap_path(&opts.out)),
    ];
    if let Some(k) = key_out(opts) {
        outputs.push(("cluster config (--key-out)", k));
    }
    for (what, p) in &outputs {
        if p.symlink_metadata().is_ok() && !opts.force {
            return invalid(format!(
                "{what} {} already exists: choose another --out, remove it, or pass --force to overwrite it",
                p.display()
            ));
        }
    }
    if opts.base.symlink_metadata().is_err() {
        return invalid(format!("base image {} does not exist", opts.base.display()));
    }
    for (_, p) in &outputs {
        if same_file(&opts.base, p) {
            return invalid(format!(
                "--out {} would overwrite the base image: the base image is never modified, write elsewhere",
                p.display()
            ));
        }
    }
    Ok(format)
}

fn key_out(opts: &BuildOptions) -> Option<PathBuf> {
    match (&opts.key_out, &opts.key_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(default_key_out(&opts.out)),
    }
}

/// Decodes the base image into the empty file `raw`, sparsely. Returns the raw length.
fn decode_base(base: &Path, format: InputFormat, raw: &File, progress: bool) -> Result<u64> {
    let what = format!("base image {}", base.display());
    let mut input = File::open(base).ctx(|| format!("cannot open {what}"))?;
    let len = input
        .metadata()
        .ctx(|| format!("cannot stat {what}"))?
        .len();
    let bar = io::progress_bar(len, "decode", progress);
    let n = if format == InputFormat::Raw {
        io::sparse::copy_file_sparse(&input, raw, |n| bar.inc(n))
            .ctx(|| format!("cannot copy {what}"))?
    } else {
        let reader = ProgressReader::new(&mut input, bar.clone());
        let mut dec = io::decoder(reader, format).ctx(|| format!("cannot read {what}"))?;
        io::copy_sparse(&mut dec, raw).map_err(|e| {
            Error::Invalid(format!(
                "{what} is corrupt or truncated ({format} data does not decode: {e}); download it again"
            ))
        })?
    };
    bar.finish_and_clear();
    Ok(n)
}

fn ext4_magic_ok(raw: &File, p2: &Partition) -> bool {
    let mut m = [0u8; 2];
    raw.read_exact_at(&mut m, p2.offset() + 1024 + 56).is_ok() && m == [0x53, 0xef]
}

/// Reads the generation from cmdline.txt's growth token, else from the root filesystem's os-release.
pub fn detect_generation(
    raw_path: &Path,
    p2: &Partition,
    cmdline: &str,
    what: &str,
) -> Result<(Generation, GenerationSource)> {
    if let Some(g) = image::generation_from_cmdline(cmdline) {
        return Ok((g, GenerationSource::CmdlineToken));
    }
    for path in ["/usr/lib/os-release", "/etc/os-release"] {
        if let Some(text) = ext4::read_file(raw_path, p2.offset(), path)? {
            return match image::generation_from_os_release(&String::from_utf8_lossy(&text)) {
                Ok(g) => Ok((g, GenerationSource::OsRelease)),
                Err(codename) => invalid(format!(
                    "{what}: Raspberry Pi OS {codename:?} is not supported (os-release VERSION_CODENAME); use a \
                     Bookworm or Trixie image"
                )),
            };
        }
    }
    invalid(format!(
        "{what}: cannot tell the Raspberry Pi OS generation: cmdline.txt has no root-growth token and the root \
         filesystem has no os-release"
    ))
}

fn write_mbr_entry(sector0: &mut [u8; 512], index: usize, sys: u8, start: u64, sectors: u64) {
    let e = &mut sector0[446 + 16 * index..446 + 16 * (index + 1)];
    e[0] = 0;
    // CHS fields are not used by Linux or the Pi firmware; mark them "beyond CHS" as sfdisk does for large disks.
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = sys;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
}

/// New GUIDs for a GPT conversion.
struct GptIds {
    disk: uuid::Uuid,
    parts: [uuid::Uuid; 3],
}

fn write_gpt(
    raw: &mut File,
    p1: &Partition,
    root_end: u64,
    p2_start: u64,
    brick: Option<&BrickLayout>,
    ids: &GptIds,
) -> Result<()> {
    use gptman::{GPTPartitionEntry, GPT};
    let err = |e: gptman::Error| Error::Invalid(format!("cannot write the GPT: {e}"));
    let mut gpt = GPT::new_from(raw, SECTOR, ids.disk.to_bytes_le()).map_err(err)?;
    let ty = |s: &str| {
        uuid::Uuid::parse_str(s)
            .expect("valid type guid")
            .to_bytes_le()
    };
    let mut entries = vec![
        (p1.start, p1.end, image::GPT_BASIC_DATA, "bootfs"),
        (p2_start, root_end, image::GPT_LINUX_FS, "rootfs"),
    ];
    if let Some(b) = brick {
        entries.push((b.brick_start, b.brick_end, image::GPT_LINUX_FS, "brick"));
    }
    for (i, (start, end, t, name)) in entries.into_iter().enumerate() {
        gpt[i as u32 + 1] = GPTPartitionEntry {
            partition_type_guid: ty(t),
            unique_partition_guid: ids.parts[i].to_bytes_le(),
            starting_lba: start,
            ending_lba: end,
            attribute_bits: 0,
            partition_name: name.into(),
        };
    }
    gpt.write_into(raw).map_err(err)?;
    // Replace the whole MBR sector with a protective MBR (old boot code and disk id cleared).
    raw.write_all_at(&[0u8; 446], 0)
        .ctx(|| "cannot write the protective MBR")?;
    GPT::write_protective_mbr_into(raw, SECTOR).map_err(err)?;
    Ok(())
}

/// Runs the whole build.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    let out_format = check_options(opts)?;
    crate::elf::check_agent(&opts.agent, opts.allow_any_agent_arch)?;
    let agent = std::fs::read(&opts.agent)
        .ctx(|| format!("cannot read agent binary {}", opts.agent.display()))?;
    let mut config = make_config(opts)?;
    let carried = opts
        .packages
        .as_deref()
        .map(crate::carry::collect)
        .transpose()?;
    if carried.is_some() {
        config.agent.packages_dir = Some(firstboot_agent::packages::INSTALL_DIR.into());
        config.agent.packages_archive = Some(crate::carry::archive_on_pi());
    }
    let what = format!("base image {}", opts.base.display());

    let mut base = File::open(&opts.base).ctx(|| format!("cannot open {what}"))?;
    let base_format = io::sniff(&mut base).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    drop(base);

    // The raw working copy lives beside the output: for raw output it is the output itself.
    let mut raw_out = AtomicOutput::new(&opts.out)
        .ctx(|| format!("cannot create a file beside {}", opts.out.display()))?;
    let mut scratch = None;
    if out_format != OutputFormat::Raw {
        let dir = raw_out
            .temp_path()
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        scratch = Some(
            tempfile::Builder::new()
                .prefix(".image-builder-raw.")
                .suffix(".tmp")
                .tempfile_in(&dir)
                .ctx(|| format!("cannot create a temporary file in {}", dir.display()))?,
        );
        if let Some(s) = &scratch {
            io::register_temp(s.path());
        }
    }
    let (raw_path, raw): (PathBuf, &mut File) = match scratch.as_mut() {
        Some(s) => (s.path().to_path_buf(), s.as_file_mut()),
        None => (raw_out.temp_path().to_path_buf(), raw_out.file_mut()),
    };

    let raw_len = decode_base(&opts.base, base_format, raw, opts.progress)?;
    let table = image::read_table(raw, &what)?;
    let (p1, p2) = image::check_raspios_table(&table, raw_len, &what)?;
    if !ext4_magic_ok(raw, &p2) {
        return invalid(format!(
            "{what} is not a Raspberry Pi OS image: partition 2 holds no ext4 filesystem"
        ));
    }

    // Boot partition: must be Raspberry Pi OS's.
    let boot = BootFs::open(raw, &p1, &what)?;
    for name in ["config.txt", "cmdline.txt"] {
        if boot.file_size(name)?.is_none() {
            return invalid(format!(
                "{what} is not a Raspberry Pi OS image: its boot partition has no {name}"
            ));
        }
    }
    let cmdline =
        String::from_utf8_lossy(&boot.read("cmdline.txt")?.unwrap_or_default()).into_owned();
    let (generation, generation_source) = detect_generation(&raw_path, &p2, &cmdline, &what)?;

    // Layout.
    let align = layout::detect_alignment(&[p1.start, p2.start]);
    let raw_sectors = raw_len.div_ceil(SECTOR);
    let (brick, final_len) = match opts.card_size {
        Some(card) => {
            if card < raw_len {
                return invalid(format!(
                    "--card-size {card} bytes is smaller than the image ({raw_len} bytes): give the size of the \
                     SD card the image is for, or leave --card-size out to size partition 3 at first boot"
                ));
            }
            let l = layout::brick_layout(
                card / SECTOR,
                opts.table,
                align,
                p2.start,
                opts.brick_share as u8,
                layout::MIN_ROOT_SECTORS,
            )
            .map_err(|e| Error::Invalid(format!("--card-size {card}: {e}")))?;
            if l.root_end < p2.end {
                return invalid(format!(
                    "--card-size {card}: the card is too small for a {}% brick: the root partition would have to \
                     shrink (it ends at sector {}, the brick would start at {}); give a larger card or a smaller \
                     --brick-share",
                    opts.brick_share, p2.end, l.brick_start
                ));
            }
            (Some(l), card)
        }
        None => {
            let sectors = match opts.table {
                TableKind::Mbr => raw_sectors,
                // Room for the backup GPT after partition 2; the agent moves it to the card's end at first boot.
                TableKind::Gpt => (p2.end + 1 + layout::GPT_BACKUP_SECTORS).div_ceil(align) * align,
            };
            (None, sectors.max(raw_sectors) * SECTOR)
        }
    };
    let root_end = brick.map_or(p2.end, |b| b.root_end);

    // New identities for GPT.
    let gpt_ids = (opts.table == TableKind::Gpt).then(|| GptIds {
        disk: uuid::Uuid::new_v4(),
        parts: [
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        ],
    });

    // Boot payload.
    let env = FirstRunEnv {
        hostname_prefix: config.agent.hostname_prefix.clone(),
        wifi: opts.wifi.clone(),
        user: opts.user.as_ref().map(|u| u.name.clone()),
        ssh_authorized_key: opts.ssh_authorized_key.clone(),
    };
    let new_cmdline = payload::cluster_cmdline(
        &cmdline,
        gpt_ids.as_ref().map(|g| g.parts[1].to_string()).as_deref(),
    );
    let config_text = config.to_toml();
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (payload::AGENT_NAME, agent),
        (BOOT_CONFIG_NAME, config_text.into_bytes()),
        (payload::UNIT_NAME, payload::UNIT_TEXT.as_bytes().to_vec()),
        (
            payload::FIRSTRUN_NAME,
            payload::FIRSTRUN_TEXT.as_bytes().to_vec(),
        ),
        (payload::ENV_NAME, env.render().into_bytes()),
        ("cmdline.txt", new_cmdline.clone().into_bytes()),
    ];
    if let Some(u) = &opts.user {
        files.push((
            "userconf.txt",
            payload::userconf(&u.name, &u.password_hash).into_bytes(),
        ));
    }
    if opts.user.is_some() || opts.ssh_authorized_key.is_some() {
        files.push(("ssh", Vec::new()));
    }
    if payload::wants_cloud_init(generation) {
        files.push(("user-data", payload::cloud_init_user_data().into_bytes()));
        files.push((
            "meta-data",
            payload::cloud_init_meta_data(&config.cluster.id).into_bytes(),
        ));
    }
    let mut sizes: Vec<(&str, u64)> = files.iter().map(|(n, d)| (*n, d.len() as u64)).collect();
    boot.check_room(&sizes)
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    if let Some(c) = &carried {
        sizes.push((firstboot_agent::packages::ARCHIVE_NAME, c.archive_bytes));
        let (need, available) = boot.room(&sizes)?;
        if need > available {
            let mib = |b: u64| b as f64 / 1048576.0;
            return invalid(format!(
                "{what}: the boot partition is too small for the packages: --packages {} holds {} .deb files of \
                 {:.1} MiB, the payload with them needs {:.1} MiB and partition 1 has {:.1} MiB free ({:.1} MiB \
                 short). Fetch only what the image lacks (ci/fetch-packages --base-status with the image's \
                 /var/lib/dpkg/status), remove files the boot partition does not need, or build without \
                 --packages (first boot then installs them with apt over the network)",
                c.dir.display(),
                c.debs.len(),
                mib(c.deb_bytes),
                mib(need),
                mib(available),
                mib(need - available)
            ));
        }
    }
    for (name, data) in &files {
        boot.write(name, data)?;
    }
    if let Some(c) = &carried {
        let bar = io::progress_bar(c.archive_bytes, "packages", opts.progress);
        let n = boot.write_with(firstboot_agent::packages::ARCHIVE_NAME, |w| {
            firstboot_agent::packages::write_tar(w, &c.debs, &mut |n| bar.inc(n))
        })?;
        bar.finish_and_clear();
        if n != c.archive_bytes {
            return invalid(format!(
                "--packages {}: the files changed while they were read ({n} bytes written, {} expected); run again",
                c.dir.display(),
                c.archive_bytes
            ));
        }
    }
    boot.close()?;
    // Read cmdline.txt back through a fresh mount.
    let check = BootFs::open(raw, &p1, "the output image")?;
    let back = check.read("cmdline.txt")?.unwrap_or_default();
    if back != new_cmdline.as_bytes() {
        return invalid("cmdline.txt read back from the output differs from what was written");
    }
    drop(check);

    // Partition table.
    raw.set_len(final_len)
        .ctx(|| "cannot size the output image")?;
    match (&gpt_ids, opts.table) {
        (Some(ids), TableKind::Gpt) => {
            write_gpt(raw, &p1, root_end, p2.start, brick.as_ref(), ids)?;
            let fstab =
                ext4::read_file(&raw_path, p2.offset(), "/etc/fstab")?.ok_or_else(|| {
                    Error::Invalid(format!("{what}: the root filesystem has no /etc/fstab"))
                })?;
            let text = String::from_utf8_lossy(&fstab)
                .replace(
                    &format!("PARTUUID={}", p1.partuuid),
                    &format!("PARTUUID={}", ids.parts[0]),
                )
                .replace(
                    &format!("PARTUUID={}", p2.partuuid),
                    &format!("PARTUUID={}", ids.parts[1]),
                );
            ext4::write_file(&raw_path, p2.offset(), "/etc/fstab", text.as_bytes(), 0o644)?;
        }
        _ => {
            let mut sector0 = [0u8; 512];
            raw.read_exact_at(&mut sector0, 0)
                .ctx(|| "cannot read the MBR")?;
            let p2_type = u8::from_str_radix(&p2.kind, 16).unwrap_or(0x83);
            write_mbr_entry(&mut sector0, 1, p2_type, p2.start, root_end - p2.start + 1);
            if let Some(b) = &brick {
                write_mbr_entry(&mut sector0, 2, 0x83, b.brick_start, b.brick_sectors());
            }
            raw.write_all_at(&sector0, 0)
                .ctx(|| "cannot write the MBR")?;
        }
    }
    let new_table = image::read_table(raw, "the output image")?;

    // A compressed image laid out for a card stops after the last data before the brick: compressing the card's
    // empty gigabytes would take minutes (xz does ~50 MB/s of zeros per core) and make every plain `xz -dc | dd`
    // flash write them. Partition 3 then lies beyond the stream's end, which a card of that size has; on GPT the
    // backup header at the card's end is left out too (the kernel uses the primary one, and the agent rewrites the
    // backup when it checks the table at first boot). The raw .img output is card-sized and sparse.
    let image_len = match (&brick, scratch.as_ref()) {
        (Some(b), Some(s)) => {
            let limit = b.brick_start * SECTOR;
            let data_end = io::data_ranges(s.as_file())
                .ctx(|| "cannot map the image's data ranges")?
                .iter()
                .filter(|r| r.start < limit)
                .map(|r| r.end.min(limit))
                .max()
                .unwrap_or(0);
            const MIB: u64 = 1 << 20;
            data_end
                .div_ceil(MIB)
                .saturating_mul(MIB)
                .clamp(raw_len.min(limit), limit)
        }
        _ => final_len,
    };

    // Filesystem areas the bmap must map even where they hold zeros.
    let used = {
        let f: &File = match scratch.as_ref() {
            Some(s) => s.as_file(),
            None => raw_out.file(),
        };
        let fat = crate::fsmap::fat_used(f, p1.offset(), p1.len())?;
        let ext = crate::fsmap::ext4_used(&raw_path, p2.offset())?;
        crate::fsmap::union(&[&fat, &ext])
    };

    // One pass: bmap checksums, output hash, compression.
    let written = match scratch.as_ref() {
        Some(s) => output::write_output(
            s.as_file(),
            image_len,
            out_format,
            Some(raw_out.file_mut()),
            &used,
            opts.progress,
        )?,
        None => output::write_output(
            raw_out.file(),
            image_len,
            out_format,
            None,
            &used,
            opts.progress,
        )?,
    };
    drop(scratch);
    let mapped_bytes = written
        .ranges
        .iter()
        .map(|r| {
            let (a, b) = r.bytes(bmap::BLOCK, image_len);
            b - a
        })
        .sum();

    // Persist: the image, its bmap, the key. Temporary files go away on any error before this point.
    let bmap_file = bmap_path(&opts.out);
    let mut bmap_out =
        AtomicOutput::new(&bmap_file).ctx(|| format!("cannot create {}", bmap_file.display()))?;
    bmap_out
        .file_mut()
        .write_all_at(bmap::render(image_len, &written.ranges).as_bytes(), 0)
        .ctx(|| format!("cannot write {}", bmap_file.display()))?;
    let key_path = key_out(opts);
    let key_out_file = match &key_path {
        Some(p) => {
            let k = AtomicOutput::new(p).ctx(|| format!("cannot create {}", p.display()))?;
            k.file()
                .write_all_at(config.to_toml().as_bytes(), 0)
                .ctx(|| format!("cannot write {}", p.display()))?;
            Some(k)
        }
        None => None,
    };
    let output = raw_out
        .persist(0o644, opts.force)
        .ctx(|| format!("cannot rename the finished image to {}", opts.out.display()))?;
    bmap_out
        .persist(0o644, opts.force)
        .ctx(|| format!("cannot write {}", bmap_file.display()))?;
    if let Some(k) = key_out_file {
        k.persist(0o600, opts.force)
            .ctx(|| "cannot save the cluster config (--key-out)")?;
    }
    config.cluster.key.clear();

    Ok(BuildSummary {
        output,
        format: out_format,
        sha256: written.sha256,
        file_size: written.file_size,
        image_size: image_len,
        mapped_bytes,
        bmap: bmap_file,
        key_file: key_path,
        base_format,
        generation,
        generation_source,
        partition_table: new_table.kind,
        alignment_sectors: align,
        partitions: new_table.partitions,
        brick_layout: config.storage.layout,
        card_size: opts.card_size,
        brick_share: config.storage.brick_share,
        cluster_id: config.cluster.id.clone(),
        cluster_name: config.cluster.name.clone(),
        nodes: config.cluster.nodes,
        packages: carried.as_ref().map(|c| c.summary()),
    })
}
