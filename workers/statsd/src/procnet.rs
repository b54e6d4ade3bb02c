//! Kernel-side drop counts of UDP sockets: shared with the other families in the runtime.

pub use dk_worker::listen::procnet::*;
