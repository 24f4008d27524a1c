//! Fault injection for the integration tests, read from the environment once. Debug builds
//! only: release builds compile every hook to nothing. This module never changes what a
//! request is answered; it only makes the worker panic, stall, the storage or a directory
//! listing look slow, the kernel deny `cachestat`, or `-t` hold its probe, on demand.

/// Debug builds only: a request for the target named by `RINGHTTPD_TEST_PANIC_PATH` panics
/// the worker, so tests can check that a panic takes the whole process down (see
/// `install_panic_abort`). Release builds compile this to nothing.
pub fn panic_if_requested(target: &str) {
    #[cfg(debug_assertions)]
    {
        static PANIC_PATH: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let path = PANIC_PATH.get_or_init(|| std::env::var("RINGHTTPD_TEST_PANIC_PATH").ok());
        if path.as_deref() == Some(target) {
            panic!("test panic requested for {target}");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = target;
}

/// What a test may slow down, each named by its environment variable.
#[derive(Clone, Copy)]
pub enum Slow {
    /// `RINGHTTPD_TEST_SLOW_OPEN=NAME=MILLISECONDS[,...]`: the open of `NAME` (a path beneath
    /// the root), to play slow storage without a slow filesystem.
    Open,
    /// `RINGHTTPD_TEST_SLOW_LISTING=DIR=MILLISECONDS[,...]`: reading the directory `DIR`
    /// (beneath the root, `""` for the root, else ending in `/`) for a listing, to play a huge
    /// directory or slow storage.
    Listing,
}

/// Debug builds only: how much longer `what` takes for `name`, as its variable says. Release
/// builds compile this to `None`.
pub fn delay(what: Slow, name: &[u8]) -> Option<std::time::Duration> {
    #[cfg(debug_assertions)]
    {
        static DELAYS: [std::sync::OnceLock<Delays>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let var = match what {
            Slow::Open => "RINGHTTPD_TEST_SLOW_OPEN",
            Slow::Listing => "RINGHTTPD_TEST_SLOW_LISTING",
        };
        let delays = DELAYS[what as usize].get_or_init(|| delays_from_env(var));
        delays.iter().find(|(path, _)| path == name).map(|(_, delay)| *delay)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (what, name);
        None
    }
}

#[cfg(debug_assertions)]
type Delays = Vec<(Vec<u8>, std::time::Duration)>;

/// `NAME=MILLISECONDS[,NAME=MILLISECONDS...]` from the environment variable `var`.
#[cfg(debug_assertions)]
fn delays_from_env(var: &str) -> Delays {
    let spec = std::env::var(var).unwrap_or_default();
    spec.split(',')
        .filter_map(|item| {
            let (path, ms) = item.rsplit_once('=')?;
            Some((path.as_bytes().to_vec(), std::time::Duration::from_millis(ms.parse().ok()?)))
        })
        .collect()
}

/// Debug builds only: when the send of a response to the target named by
/// `RINGHTTPD_TEST_STALL_AFTER_SEND=TARGET=MILLISECONDS` completes, the worker thread sleeps
/// that long before handling it, as a worker busy with other connections would be late, so
/// tests can tell what happens at once (a closing response's FIN) from what waits for the
/// worker. Release builds compile this to nothing.
pub fn stall_after_send(target: &str) {
    #[cfg(debug_assertions)]
    {
        static STALL: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
        let stall = STALL.get_or_init(|| {
            let spec = std::env::var("RINGHTTPD_TEST_STALL_AFTER_SEND").ok()?;
            let (path, ms) = spec.rsplit_once('=')?;
            Some((path.to_string(), ms.parse().ok()?))
        });
        if let Some((path, ms)) = stall {
            if path == target {
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = target;
}

/// Debug builds only: with `RINGHTTPD_TEST_CACHESTAT_DENIED` set, the page-cache check takes
/// the way it takes where the kernel denies `cachestat` (a file the server may not write), so
/// tests run as root can cover it. Release builds compile this to `false`.
pub fn cachestat_denied() -> bool {
    #[cfg(debug_assertions)]
    {
        static DENIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DENIED.get_or_init(|| std::env::var_os("RINGHTTPD_TEST_CACHESTAT_DENIED").is_some())
    }
    #[cfg(not(debug_assertions))]
    false
}

/// Debug builds only: with `RINGHTTPD_TEST_CHECK_HOLD_MS=N`, `-t` waits N ms after probing the
/// listening address, so tests can tell whether that probe takes connections meant for a
/// running server. Release builds compile this to nothing.
pub fn hold_check() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("RINGHTTPD_TEST_CHECK_HOLD_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Debug builds only: with `RINGHTTPD_TEST_CACHESTAT_MISSING` set, the server behaves as on a
/// kernel without `cachestat` (before 6.5): the page-cache check probes bytes with `RWF_NOWAIT`
/// reads, and the start-up line says so. Release builds compile this to `false`.
pub fn cachestat_missing() -> bool {
    #[cfg(debug_assertions)]
    {
        static MISSING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *MISSING.get_or_init(|| std::env::var_os("RINGHTTPD_TEST_CACHESTAT_MISSING").is_some())
    }
    #[cfg(not(debug_assertions))]
    false
}
