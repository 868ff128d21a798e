//! Block devices: identity, size, mounts, the running system's disk.
