//! Small composable `Read`/`Write` adapters, in the manner of coreos-installer: decompression recognised by magic
//! bytes, compression chosen by the output's extension, hashing, progress, sparse copies and an output file that only
//! appears under its name once complete.

pub mod atomic;
pub mod compress;
pub mod hash;
pub mod progress;
pub mod sparse;

pub use atomic::{install_interrupt_cleanup, register_temp, AtomicOutput};
pub use compress::{decoder, encoder, sniff, Encoder, InputFormat, OutputFormat};
pub use hash::{file_sha256, BackgroundSha256, HashingReader, HashingWriter};
pub use progress::{progress_bar, ProgressReader};
pub use sparse::{copy_sparse, data_ranges, DataRange};
