//! The allocator's built-in settings (`docs/adr/0011-allocator-purge-delay.md`), made first
//! thing in `main`, before any thread starts.
//!
//! mimalloc v3 keeps freed memory committed for `purge_delay` ms (1000 by default) before it
//! gives it back to the OS. Under a sustained load the supervisor frees and reallocates
//! megabytes a second on different threads (queue reads and gzip on the blocking pool, worker
//! batches and bodies on the runtime threads), so a second's worth of freed memory stayed
//! resident: a peak RSS of ~90-100 MiB where the live heap peaked at ~18 MiB. A short delay (20 ms)
//! returns it soon for a small CPU cost. The operator's `MIMALLOC_PURGE_DELAY` still wins.
#![allow(unsafe_code)]

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (v2 and v3): libmimalloc-sys exports no
/// constant for it.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// The purge delay the binary runs with unless `MIMALLOC_PURGE_DELAY` is set (ms).
pub const PURGE_DELAY_MS: i64 = 20;

/// Sets the built-in allocator defaults; an option the environment set (`MIMALLOC_*`) is left
/// as the operator set it. Call before any other thread starts.
pub fn set_defaults() {
    // SAFETY: mi_option_set_default only stores into mimalloc's option table (not thread safe,
    // hence called first thing in main before any thread exists); the option index is the
    // one mimalloc.h defines and the value is in the option's range (milliseconds).
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _);
    }
}

/// The purge delay in force (ms).
#[cfg(test)]
fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: reads mimalloc's option table; the index is `mi_option_purge_delay`.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "allocator::tests::child_prints_the_purge_delay_after_the_defaults";

    /// Runs the child test in a new process (mimalloc reads `MIMALLOC_*` at process start)
    /// and returns the purge delay it printed.
    fn purge_delay_in_a_process(env: Option<&str>) -> i64 {
        let exe = std::env::current_exe().expect("the test binary");
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--exact",
            CHILD,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        cmd.env_remove("MIMALLOC_PURGE_DELAY");
        cmd.env_remove("MIMALLOC_RESET_DELAY");
        if let Some(v) = env {
            cmd.env("MIMALLOC_PURGE_DELAY", v);
        }
        let out = cmd.output().expect("run the child test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {text}");
        // libtest prints it on the line that names the test.
        let value = text
            .split("purge_delay_ms=")
            .nth(1)
            .expect("the child printed the purge delay");
        value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number")
    }

    #[test]
    #[ignore = "run by the tests below in a process of its own"]
    fn child_prints_the_purge_delay_after_the_defaults() {
        set_defaults();
        #[allow(clippy::print_stdout)]
        {
            println!("purge_delay_ms={}", purge_delay_ms());
        }
    }

    #[test]
    fn the_binary_purges_freed_memory_after_its_built_in_delay() {
        assert_ne!(PURGE_DELAY_MS, 1000, "mimalloc's own default");
        assert_eq!(purge_delay_in_a_process(None), PURGE_DELAY_MS);
    }

    #[test]
    fn the_operators_mimalloc_purge_delay_wins_over_the_built_in_default() {
        assert_eq!(purge_delay_in_a_process(Some("250")), 250);
        assert_eq!(purge_delay_in_a_process(Some("0")), 0);
    }
}
