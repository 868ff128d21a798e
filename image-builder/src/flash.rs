//! `flash`: bmap-driven writing of an image to a card.

/// Flashes (stub).
pub fn run(_args: &crate::cmdline::FlashArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
