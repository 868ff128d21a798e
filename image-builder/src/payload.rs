//! What the builder puts on the boot partition, as pure functions of the options: the first-run environment
//! file, the new cmdline.txt, cloud-init files for Trixie, `userconf.txt`.

use crate::image::{Generation, BOOKWORM_GROWTH, TRIXIE_GROWTH};

/// The agent binary's name on the boot partition.
pub const AGENT_NAME: &str = "firstboot-agent";
/// The agent unit's name on the boot partition.
pub const UNIT_NAME: &str = "firstboot-agent.service";
/// The first-run script's name on the boot partition.
pub const FIRSTRUN_NAME: &str = "firstrun-cluster.sh";
/// The first-run environment file's name on the boot partition.
pub const ENV_NAME: &str = "cluster-firstrun.env";
/// The systemd unit, from `overlays/`.
pub const UNIT_TEXT: &str = include_str!("../../overlays/firstboot-agent.service");
/// The first-run script, from `overlays/`.
pub const FIRSTRUN_TEXT: &str = include_str!("../../overlays/firstrun.sh");
/// The tokens appended to cmdline.txt (as Raspberry Pi Imager does), without the leading space.
pub const FIRSTRUN_TOKENS: &str = "systemd.run=/boot/firmware/firstrun-cluster.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target";

/// Wi-Fi settings for the first run.
#[derive(Debug, Clone)]
pub struct Wifi {
    /// Network name.
    pub ssid: String,
    /// Passphrase (8 to 63 characters) or 64 hex digits.
    pub psk: String,
    /// Two-letter regulatory country (ISO 3166), e.g. `GB`.
    pub country: String,
}

/// Settings the first-run script reads from [`ENV_NAME`].
#[derive(Debug, Clone, Default)]
pub struct FirstRunEnv {
    /// Host name prefix (the agent appends a short id).
    pub hostname_prefix: String,
    /// Wi-Fi, if any.
    pub wifi: Option<Wifi>,
    /// The login user, if any.
    pub user: Option<String>,
    /// Public SSH key(s) for the user, if any.
    pub ssh_authorized_key: Option<String>,
}

/// Quotes `value` for a POSIX shell: single quotes, with each `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl FirstRunEnv {
    /// The file's text: one `KEY='value'` line per setting, unset ones empty.
    pub fn render(&self) -> String {
        let wifi = self.wifi.as_ref();
        let lines = [
            (
                "CLUSTER_HOSTNAME_PREFIX",
                Some(self.hostname_prefix.as_str()),
            ),
            ("CLUSTER_WIFI_SSID", wifi.map(|w| w.ssid.as_str())),
            ("CLUSTER_WIFI_PSK", wifi.map(|w| w.psk.as_str())),
            ("CLUSTER_WIFI_COUNTRY", wifi.map(|w| w.country.as_str())),
            ("CLUSTER_USER", self.user.as_deref()),
            (
                "CLUSTER_SSH_AUTHORIZED_KEY",
                self.ssh_authorized_key.as_deref(),
            ),
        ];
        let mut out = String::from(
            "# Written by image-builder; read by firstrun-cluster.sh at first boot.\n",
        );
        for (k, v) in lines {
            out.push_str(&format!("{k}={}\n", shell_quote(v.unwrap_or(""))));
        }
        out
    }
}

/// The cluster image's cmdline.txt: root growth removed (both generations' tokens: either would grow partition
/// 2 over the brick), `root=` pointed at `new_root_partuuid` when given (GPT), the first-run tokens appended,
/// every other token kept in order, one line.
pub fn cluster_cmdline(original: &str, new_root_partuuid: Option<&str>) -> String {
    let mut tokens: Vec<String> = Vec::new();
    for t in original.split_whitespace() {
        if t == BOOKWORM_GROWTH || t == TRIXIE_GROWTH {
            continue;
        }
        match (t.strip_prefix("root="), new_root_partuuid) {
            (Some(_), Some(uuid)) => tokens.push(format!("root=PARTUUID={uuid}")),
            _ => tokens.push(t.to_string()),
        }
    }
    tokens.push(FIRSTRUN_TOKENS.to_string());
    format!("{}\n", tokens.join(" "))
}

/// cloud-init `user-data` for Trixie.
///
/// Choice: on Trixie both cloud-init and our first-run script run at first boot. Our script (started from
/// cmdline.txt, as Raspberry Pi Imager does on Bookworm) owns the user, SSH, Wi-Fi, the host name and the disk
/// layout, the same on both generations. cloud-init is kept (the image expects it) but told to leave the disk and
/// the host name alone: it must not grow partition 2 over the brick (`growpart` off, `resize_rootfs: false`) and
/// must not rename the host the agent names (`preserve_hostname: true`). It gets no users or network settings,
/// so the two paths never configure the same thing.
pub fn cloud_init_user_data() -> String {
    "#cloud-config\n\
     # Written by image-builder. The cluster's first-run script (firstrun-cluster.sh) sets the user, SSH, Wi-Fi\n\
     # and host name; the agent lays out partition 3 (the brick) after the root partition, so cloud-init must\n\
     # neither grow the root partition nor rename the host.\n\
     growpart:\n  mode: \"off\"\n\
     resize_rootfs: false\n\
     preserve_hostname: true\n"
        .to_string()
}

/// cloud-init `meta-data` for Trixie: a stable instance id so cloud-init runs its first-boot modules once.
pub fn cloud_init_meta_data(cluster_id: &str) -> String {
    format!("instance-id: picluster-{cluster_id}\n")
}

/// `userconf.txt` as Raspberry Pi OS reads it: `user:crypted-password`.
pub fn userconf(user: &str, password_hash: &str) -> String {
    format!("{user}:{password_hash}\n")
}

/// Whether `generation` carries cloud-init files to write.
pub fn wants_cloud_init(generation: Generation) -> bool {
    generation == Generation::Trixie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_other_tokens() {
        let bw = "console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";
        assert_eq!(
            cluster_cmdline(bw, None),
            format!("console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait quiet {FIRSTRUN_TOKENS}\n")
        );
        let tx = "console=tty1 root=PARTUUID=1234abcd-02 rootwait quiet resize";
        let out = cluster_cmdline(tx, Some("0f0e-uuid"));
        assert_eq!(
            out,
            format!("console=tty1 root=PARTUUID=0f0e-uuid rootwait quiet {FIRSTRUN_TOKENS}\n")
        );
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn env_values_are_quoted() {
        let env = FirstRunEnv {
            hostname_prefix: "pi".into(),
            wifi: Some(Wifi {
                ssid: "it's $HOME `x`".into(),
                psk: "p'; rm -rf /".into(),
                country: "GB".into(),
            }),
            user: None,
            ssh_authorized_key: Some("ssh-ed25519 AAAA me@host".into()),
        };
        let text = env.render();
        assert!(
            text.contains("CLUSTER_WIFI_SSID='it'\\''s $HOME `x`'\n"),
            "{text}"
        );
        assert!(text.contains("CLUSTER_USER=''\n"), "{text}");
        // A real shell reads back exactly the values.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, &text).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                ". {}; printf '%s|%s' \"$CLUSTER_WIFI_SSID\" \"$CLUSTER_WIFI_PSK\"",
                f.display()
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "it's $HOME `x`|p'; rm -rf /"
        );
    }
}
