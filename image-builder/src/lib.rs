//! image-builder: turns a Raspberry Pi OS image into the cluster image (boot payload, first-run wiring, brick
//! partition layout), inspects such images and flashes them with a block map.

pub mod blockdev;
pub mod bmap;
pub mod bootfs;
pub mod build;
pub mod carry;
pub mod cmdline;
pub mod elf;
pub mod error;
pub mod ext4;
pub mod flash;
pub mod fsmap;
pub mod image;
pub mod inspect;
pub mod io;
pub mod output;
pub mod password;
pub mod payload;
pub mod size;

pub use error::{Error, Result};
