//! `prepare-disk`: make this Pi's card ready to hold a brick.
//!
//! Steps, each of which re-checks the real disk rather than trusting the state, so running again changes nothing
//! and a crash at any point leaves a card the next run finishes:
//!
//! 1. **table**: partition 3 becomes the last `storage.brick_share` percent of the real card (aligned as the image
//!    is), partition 2 grows to meet it; a placeholder partition 3, or one running past the end of a smaller card,
//!    is fixed; GPT headers move to the card's real end. Written in place, keeping ids and PARTUUIDs.
//! 2. **kernel**: the kernel is told the new table (BLKPG) and missing device nodes are made.
//! 3. **root**: partition 2's ext4 is grown (`resize2fs`, online when mounted).
//! 4. **format**: `mkfs.xfs -i size=512` on partition 3, only when this flash has not formatted it yet and blkid
//!    finds no filesystem there. An XFS found there is used as it is; any other filesystem stops the run.
//! 5. **fstab** and **mount**: an fstab entry by UUID with `nofail`, the mount, and the brick directory.

pub mod blockdev;
pub mod fs;
pub mod table;

use crate::config::ClusterConfig;
use crate::layout::{TableKind, SECTOR};
use crate::state::{now, AgentState, StateError, StateStore};
use blockdev::{BlockError, Disk};
use fs::FsError;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use table::{Part, TableError, TableInfo};

/// Environment variable that makes `prepare-disk` stop after a step, to test crash recovery.
pub const STOP_AFTER_ENV: &str = "FIRSTBOOT_AGENT_STOP_AFTER";
/// Environment variable naming the card device (the lab's loop device) instead of the disk holding `/`.
pub const DEVICE_ENV: &str = "FIRSTBOOT_AGENT_DEVICE";
/// Environment variable naming the fstab to use instead of `/etc/fstab` (the lab's per-node file).
pub const FSTAB_ENV: &str = "FIRSTBOOT_AGENT_FSTAB";

/// A point at which a run can be stopped on purpose (crash tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopPoint {
    /// After the partition table was written, before the kernel was told.
    Table,
    /// After the kernel was told.
    Kernel,
    /// After the root filesystem was grown.
    Root,
    /// After the intent to format was recorded, before `mkfs.xfs` ran.
    FormatStarted,
    /// After `mkfs.xfs` ran, before its result was recorded.
    Format,
    /// After the fstab entry was written, before the mount.
    Fstab,
    /// After the mount, before the brick directory and the final state.
    Mount,
}

impl std::str::FromStr for StopPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "table" => StopPoint::Table,
            "kernel" => StopPoint::Kernel,
            "root" => StopPoint::Root,
            "format-started" => StopPoint::FormatStarted,
            "format" => StopPoint::Format,
            "fstab" => StopPoint::Fstab,
            "mount" => StopPoint::Mount,
            _ => {
                return Err(format!(
                    "unknown stop point {s:?} (table, kernel, root, format-started, format, fstab, mount)"
                ))
            }
        })
    }
}

/// How `prepare_disk` runs.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The whole-disk device; `None` finds the disk holding `/`.
    pub device: Option<PathBuf>,
    /// Report what would change, change nothing.
    pub dry_run: bool,
    /// The fstab to keep the brick entry in (`/etc/fstab`; tests use a temporary file).
    pub fstab: PathBuf,
    /// Stop after this step (crash tests).
    pub stop_after: Option<StopPoint>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            device: None,
            dry_run: false,
            fstab: PathBuf::from("/etc/fstab"),
            stop_after: None,
        }
    }
}

impl PrepareOptions {
    /// The defaults, overridden by `FIRSTBOOT_AGENT_DEVICE`, `FIRSTBOOT_AGENT_FSTAB` and
    /// `FIRSTBOOT_AGENT_STOP_AFTER` when set (what the agent's `run` uses, so the lab can point a node at its
    /// loop device and its own fstab). An unknown stop point is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let mut o = PrepareOptions::default();
        if let Some(d) = var(DEVICE_ENV) {
            o.device = Some(PathBuf::from(d));
        }
        if let Some(f) = var(FSTAB_ENV) {
            o.fstab = PathBuf::from(f);
        }
        if let Some(s) = var(STOP_AFTER_ENV) {
            let s = s.to_string_lossy();
            o.stop_after = Some(s.parse().map_err(|e| format!("{STOP_AFTER_ENV}: {e}"))?);
        }
        Ok(o)
    }
}

/// Errors of `prepare_disk`.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Block device trouble.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Partition table trouble.
    #[error("{device}: {source}")]
    Table {
        /// The disk.
        device: PathBuf,
        /// What went wrong.
        source: TableError,
    },
    /// A filesystem tool failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// Opening or syncing the device failed.
    #[error("{what} {device}: {source}")]
    Device {
        /// What was being done.
        what: &'static str,
        /// The disk.
        device: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Partition 2 does not hold an ext filesystem.
    #[error("partition 2 ({0}) holds no ext4 filesystem: this is not a Raspberry Pi OS card")]
    NoRootFs(PathBuf),
    /// Partition 3 holds a filesystem that is not XFS.
    #[error(
        "partition 3 ({part}) holds a {fstype} filesystem that this install did not make: refusing to format it. \
         If its data is not needed, wipe it (`wipefs -a {part}`) and run again"
    )]
    ForeignFilesystem {
        /// The partition.
        part: PathBuf,
        /// What blkid found.
        fstype: String,
    },
    /// The state says this flash made the brick's XFS but it is gone.
    #[error(
        "partition 3 ({part}) no longer holds the XFS this flash made (UUID {uuid}): refusing to format it again \
         automatically. Check the card; to start the brick over, remove the `disk` section of {state}"
    )]
    BrickVanished {
        /// The partition.
        part: PathBuf,
        /// The UUID recorded.
        uuid: String,
        /// The state file.
        state: PathBuf,
    },
    /// Something else is mounted at the brick mount point.
    #[error("{mount} already has {source_dev} mounted on it, not the brick partition {part}: unmount it and run again")]
    MountPointBusy {
        /// The mount point.
        mount: PathBuf,
        /// What is mounted there.
        source_dev: String,
        /// The brick partition.
        part: PathBuf,
    },
    /// The run stopped on purpose (crash test).
    #[error("stopped after step `{0:?}` as asked ({STOP_AFTER_ENV})")]
    Stopped(StopPoint),
}

/// One thing a run did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Action {
    /// The step (`table`, `kernel`, `root`, `format`, `fstab`, `mount`).
    pub step: String,
    /// What was done.
    pub detail: String,
}

/// What `prepare_disk` found and did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrepareReport {
    /// The whole-disk device.
    pub device: PathBuf,
    /// MBR or GPT.
    pub table: TableKind,
    /// Size of the card in bytes.
    pub card_bytes: u64,
    /// Alignment of the image, in sectors.
    pub align_sectors: u64,
    /// Partition 2 (root) as it is now (or would be).
    pub root: Part,
    /// Partition 3 (brick) as it is now (or would be).
    pub brick: Part,
    /// The brick partition's device node.
    pub brick_partition: PathBuf,
    /// UUID of the brick's XFS (none in a dry run before formatting).
    pub brick_fs_uuid: Option<String>,
    /// Whether this flash made the brick's XFS (false when an existing one was adopted).
    pub made_brick_fs: bool,
    /// The brick directory.
    pub brick_dir: PathBuf,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether anything changed (or would change).
    pub changed: bool,
    /// What was done, in order.
    pub actions: Vec<Action>,
    /// Things to know.
    pub warnings: Vec<String>,
}

impl PrepareReport {
    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let mib = |p: &Part| (p.sectors() * SECTOR) >> 20;
        let mut s = format!(
            "{} ({} GiB, {}, {} MiB alignment)\n  root  partition 2: sectors {}..={} ({} MiB)\n  brick partition 3: \
             sectors {}..={} ({} MiB) {}\n  brick XFS: {}{}\n  brick directory: {}\n",
            self.device.display(),
            self.card_bytes >> 30,
            self.table,
            (self.align_sectors * SECTOR) >> 20,
            self.root.start,
            self.root.end,
            mib(&self.root),
            self.brick.start,
            self.brick.end,
            mib(&self.brick),
            self.brick_partition.display(),
            self.brick_fs_uuid.as_deref().unwrap_or("(none yet)"),
            if self.made_brick_fs {
                " (made by this install)"
            } else {
                ""
            },
            self.brick_dir.display(),
        );
        for w in &self.warnings {
            s.push_str(&format!("  warning: {w}\n"));
        }
        let verb = if self.dry_run { "would" } else { "did" };
        if self.actions.is_empty() {
            s.push_str("nothing to do: the card is ready\n");
        }
        for a in &self.actions {
            s.push_str(&format!("  {verb} [{}] {}\n", a.step, a.detail));
        }
        s
    }
}

/// Runs the disk preparation (see the module documentation).
pub fn prepare_disk(
    config: &ClusterConfig,
    store: &StateStore,
    opts: &PrepareOptions,
) -> Result<PrepareReport, DiskError> {
    let _lock = store.lock("disk")?;
    Prep::new(config, store, opts)?.run()
}

struct Prep<'a> {
    config: &'a ClusterConfig,
    store: &'a StateStore,
    opts: &'a PrepareOptions,
    disk: Disk,
    state: AgentState,
    actions: Vec<Action>,
    warnings: Vec<String>,
}

impl<'a> Prep<'a> {
    fn new(
        config: &'a ClusterConfig,
        store: &'a StateStore,
        opts: &'a PrepareOptions,
    ) -> Result<Self, DiskError> {
        let disk = match &opts.device {
            Some(d) => Disk::from_path(d)?,
            None => Disk::of_root()?,
        };
        Ok(Prep {
            config,
            store,
            opts,
            disk,
            state: store.load()?,
            actions: Vec::new(),
            warnings: Vec::new(),
        })
    }

    fn act(&mut self, step: &str, detail: impl Into<String>) {
        let detail = detail.into();
        if !self.opts.dry_run {
            tracing::info!("prepare-disk: [{step}] {detail}");
        }
        self.actions.push(Action {
            step: step.into(),
            detail,
        });
    }

    fn stop(&self, at: StopPoint) -> Result<(), DiskError> {
        if self.opts.stop_after == Some(at) && !self.opts.dry_run {
            return Err(DiskError::Stopped(at));
        }
        Ok(())
    }

    fn save(&self) -> Result<(), DiskError> {
        if !self.opts.dry_run {
            self.store.save(&self.state)?;
        }
        Ok(())
    }

    fn table_err(&self) -> impl FnOnce(TableError) -> DiskError {
        let device = self.disk.path.clone();
        move |source| DiskError::Table { device, source }
    }

    fn dev_err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> DiskError {
        let device = self.disk.path.clone();
        move |source| DiskError::Device {
            what,
            device,
            source,
        }
    }

    fn run(mut self) -> Result<PrepareReport, DiskError> {
        let dry = self.opts.dry_run;
        let disk_path = self.disk.path.clone();
        self.disk.flush_buffers()?;
        let mut dev = OpenOptions::new()
            .read(true)
            .write(!dry)
            .open(&disk_path)
            .map_err(self.dev_err("open"))?;
        let info = table::read_table(&mut dev).map_err(self.table_err())?;

        // What the plan must respect: the root filesystem's size and a filesystem already on partition 3.
        let p2 = info.part(2).ok_or_else(|| {
            (self.table_err())(TableError::Unexpected("partition 2 is missing".into()))
        })?;
        let root_fs_bytes = fs::ext4_size(&disk_path, p2.start * SECTOR)?;
        if root_fs_bytes.is_none() {
            return Err(DiskError::NoRootFs(self.disk.part_path(2)));
        }
        let p3_fstype = match info.part(3) {
            Some(p3) if p3.start < info.total_sectors => {
                let end = p3.end.min(info.total_sectors - 1);
                fs::probe(
                    &disk_path,
                    Some((p3.start * SECTOR, (end - p3.start + 1) * SECTOR)),
                )?
                .map(|p| p.fstype)
            }
            _ => None,
        };
        let plan = table::plan(
            &info,
            &table::PlanInputs {
                share: self.config.storage.brick_share,
                root_fs_bytes,
                p3_fstype,
            },
        )
        .map_err(self.table_err())?;
        self.warnings.extend(plan.warnings.iter().cloned());

        // 1. table
        if plan.needs_write {
            if !dry {
                table::write_table(&mut dev, info.kind, &plan).map_err(self.table_err())?;
                dev.sync_all().map_err(self.dev_err("sync"))?;
            }
            for c in &plan.changes {
                self.act("table", c.clone());
            }
            self.state.disk.table_done_at = Some(now());
            self.state.disk.device = Some(disk_path.clone());
            self.save()?;
        } else if self.state.disk.table_done_at.is_none() {
            self.state.disk.table_done_at = Some(now());
            self.state.disk.device = Some(disk_path.clone());
            self.save()?;
        }
        self.stop(StopPoint::Table)?;
        drop(dev);

        // 2. kernel: compare with the table as it is (or, in a dry run, as it would be).
        let want = if dry {
            let mut parts: Vec<Part> = info
                .parts
                .iter()
                .copied()
                .filter(|p| p.number < 2)
                .collect();
            parts.push(plan.root);
            parts.push(plan.brick);
            TableInfo {
                parts,
                ..info.clone()
            }
        } else {
            let mut dev = std::fs::File::open(&disk_path).map_err(self.dev_err("open"))?;
            table::read_table(&mut dev).map_err(self.table_err())?
        };
        if dry {
            let kernel = self.disk.kernel_parts()?;
            if kernel != want.parts {
                self.act("kernel", "tell the kernel the new partitions");
            }
        } else {
            for c in self.disk.sync_kernel(&want)? {
                self.act("kernel", c);
            }
        }
        self.stop(StopPoint::Kernel)?;

        // 3. root filesystem
        let p2_path = self.disk.part_path(2);
        let part_bytes = plan.root.sectors() * SECTOR;
        let fs_bytes = if dry {
            root_fs_bytes.unwrap_or(0)
        } else {
            fs::ext4_size(&p2_path, 0)?.ok_or_else(|| DiskError::NoRootFs(p2_path.clone()))?
        };
        // resize2fs may leave off a last block group too small to hold its own metadata (a few MiB).
        const SLACK: u64 = 8 << 20;
        let grown = self.state.disk.root_grown_at.is_some();
        if fs_bytes + SLACK < part_bytes || (!grown && fs_bytes < part_bytes) {
            let mounted = self.is_mounted(2)?;
            let detail = format!(
                "grow the root ext4 {} from {} to {} MiB ({})",
                p2_path.display(),
                fs_bytes >> 20,
                part_bytes >> 20,
                if mounted {
                    "online"
                } else {
                    "offline, after e2fsck -fp"
                }
            );
            if !dry {
                tracing::info!("prepare-disk: [root] {detail} ...");
                fs::grow_ext4(&p2_path, mounted)?;
            }
            self.act("root", detail);
            self.state.disk.root_grown_at = Some(now());
            self.save()?;
        } else if !grown {
            self.state.disk.root_grown_at = Some(now());
            self.save()?;
        }
        self.stop(StopPoint::Root)?;

        // 4. brick filesystem
        let p3_path = self.disk.part_path(3);
        self.state.disk.brick_partition = Some(p3_path.clone());
        if !dry || !plan.needs_write {
            self.brick_filesystem(&p3_path)?;
        } else {
            self.act(
                "format",
                format!(
                    "mkfs.xfs -i size=512 {} if it holds no filesystem",
                    p3_path.display()
                ),
            );
        }

        // 5. fstab, mount, brick directory
        let mount = self.config.storage.brick_mount.clone();
        let brick_dir = self.config.brick_path();
        if let Some(uuid) = self.state.disk.brick_fs_uuid.clone() {
            if fs::ensure_fstab(&self.opts.fstab, &uuid, &mount, dry)? {
                self.act(
                    "fstab",
                    format!(
                        "{}: brick entry UUID={uuid} on {} (nofail)",
                        self.opts.fstab.display(),
                        mount.display()
                    ),
                );
            }
        }
        self.stop(StopPoint::Fstab)?;
        self.mount_brick(&p3_path, &mount)?;
        self.stop(StopPoint::Mount)?;
        if !brick_dir.is_dir() {
            if !dry {
                std::fs::create_dir_all(&brick_dir).map_err(|e| {
                    DiskError::Fs(FsError::Io {
                        what: format!("create {}", brick_dir.display()),
                        source: e,
                    })
                })?;
            }
            self.act(
                "mount",
                format!("make the brick directory {}", brick_dir.display()),
            );
        }
        if !self.actions.is_empty() || self.state.disk.completed_at.is_none() {
            self.state.disk.brick_mounted_at.get_or_insert_with(now);
            self.state.disk.completed_at = Some(now());
            self.save()?;
        }

        Ok(PrepareReport {
            device: disk_path,
            table: info.kind,
            card_bytes: info.total_sectors * SECTOR,
            align_sectors: plan.align,
            root: plan.root,
            brick: plan.brick,
            brick_partition: p3_path,
            brick_fs_uuid: self.state.disk.brick_fs_uuid.clone(),
            made_brick_fs: self.state.disk.made_brick_fs,
            brick_dir,
            dry_run: dry,
            changed: !self.actions.is_empty(),
            actions: self.actions,
            warnings: self.warnings,
        })
    }

    fn is_mounted(&self, n: u32) -> Result<bool, DiskError> {
        let Some(devno) = self.disk.part_devno(n) else {
            return Ok(false);
        };
        let mounts = blockdev::mounts().map_err(|e| {
            DiskError::Fs(FsError::Io {
                what: "read /proc/self/mountinfo".into(),
                source: e,
            })
        })?;
        Ok(mounts.iter().any(|m| m.dev == devno))
    }

    /// Step 4: adopt an XFS, refuse anything else, format only an empty partition this flash has not formatted.
    fn brick_filesystem(&mut self, p3: &Path) -> Result<(), DiskError> {
        let dry = self.opts.dry_run;
        let found = fs::probe(p3, None)?;
        let d = &self.state.disk;
        let interrupted = d.brick_format_started_at.is_some() && d.brick_formatted_at.is_none();
        match found {
            Some(p) if p.fstype == "xfs" && !interrupted => {
                let uuid = p.uuid.unwrap_or_default();
                if d.brick_fs_uuid.as_deref() != Some(uuid.as_str()) {
                    let ours = d.brick_formatted_at.is_some()
                        && d.brick_fs_uuid.as_deref() == Some(uuid.as_str());
                    self.warnings.push(format!(
                        "partition 3 already holds an XFS filesystem (UUID {uuid}): using it as the brick, not formatting it"
                    ));
                    self.act(
                        "format",
                        format!(
                            "keep the existing XFS {uuid} on {} (not formatted)",
                            p3.display()
                        ),
                    );
                    self.state.disk.brick_fs_uuid = Some(uuid);
                    self.state.disk.made_brick_fs = ours;
                    self.save()?;
                }
                Ok(())
            }
            Some(p) if !interrupted => Err(DiskError::ForeignFilesystem {
                part: p3.to_path_buf(),
                fstype: p.fstype,
            }),
            None if d.brick_formatted_at.is_some() => Err(DiskError::BrickVanished {
                part: p3.to_path_buf(),
                uuid: d.brick_fs_uuid.clone().unwrap_or_default(),
                state: self.store.path(),
            }),
            _ => {
                // Empty, or a format this flash started and did not finish: the partition is ours to format.
                let detail = format!(
                    "mkfs.xfs -i size=512 on {}{}",
                    p3.display(),
                    if interrupted {
                        " (finishing an interrupted format)"
                    } else {
                        ""
                    }
                );
                if dry {
                    self.act("format", detail);
                    return Ok(());
                }
                self.state.disk.brick_format_started_at = Some(now());
                self.state.disk.brick_formatted_at = None;
                self.save()?;
                self.stop(StopPoint::FormatStarted)?;
                tracing::info!("prepare-disk: [format] {detail} ...");
                fs::mkfs_xfs(p3, interrupted)?;
                self.stop(StopPoint::Format)?;
                let made = fs::probe(p3, None)?;
                let uuid = made
                    .and_then(|p| (p.fstype == "xfs").then_some(p.uuid).flatten())
                    .ok_or_else(|| {
                        DiskError::Fs(FsError::Failed {
                            command: format!("blkid -p {}", p3.display()),
                            status: "after mkfs.xfs".into(),
                            stderr: "no XFS found on the partition just formatted".into(),
                        })
                    })?;
                self.act("format", format!("{detail}: UUID {uuid}"));
                self.state.disk.brick_formatted_at = Some(now());
                self.state.disk.brick_fs_uuid = Some(uuid);
                self.state.disk.made_brick_fs = true;
                self.save()?;
                Ok(())
            }
        }
    }

    /// Step 5: mount partition 3 at the brick mount, unless it already is; refuse when something else is there.
    fn mount_brick(&mut self, p3: &Path, mount: &Path) -> Result<(), DiskError> {
        let mounts = blockdev::mounts().map_err(|e| {
            DiskError::Fs(FsError::Io {
                what: "read /proc/self/mountinfo".into(),
                source: e,
            })
        })?;
        let devno = self.disk.part_devno(3);
        if let Some(m) = mounts.iter().rev().find(|m| m.mount_point == mount) {
            if Some(m.dev) == devno {
                return Ok(());
            }
            return Err(DiskError::MountPointBusy {
                mount: mount.to_path_buf(),
                source_dev: m.source.clone(),
                part: p3.to_path_buf(),
            });
        }
        if !self.opts.dry_run {
            fs::mount_xfs(p3, mount)?;
            self.state.disk.brick_mounted_at = Some(now());
            self.save()?;
        }
        self.act(
            "mount",
            format!("mount {} on {}", p3.display(), mount.display()),
        );
        Ok(())
    }
}
