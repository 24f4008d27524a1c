//! Fault injection for the integration tests, read from the environment once. Debug builds
//! only: release builds compile every hook to nothing. This module never changes what a
//! request is answered; it only makes the worker panic, stall, the storage look slow, or the
//! kernel deny `cachestat`, on demand.

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

/// Debug builds only: how long to hold back the open of `name` (a path beneath the root), from
/// `RINGHTTPD_TEST_SLOW_OPEN=NAME=MILLISECONDS[,NAME=MILLISECONDS...]`, so tests can play slow
/// storage without a slow filesystem. Release builds compile this to `None`.
pub fn open_delay(name: &[u8]) -> Option<std::time::Duration> {
    #[cfg(debug_assertions)]
    {
        type Delays = Vec<(Vec<u8>, std::time::Duration)>;
        static DELAYS: std::sync::OnceLock<Delays> = std::sync::OnceLock::new();
        let delays = DELAYS.get_or_init(|| {
            let spec = std::env::var("RINGHTTPD_TEST_SLOW_OPEN").unwrap_or_default();
            spec.split(',')
                .filter_map(|item| {
                    let (path, ms) = item.rsplit_once('=')?;
                    Some((path.as_bytes().to_vec(), std::time::Duration::from_millis(ms.parse().ok()?)))
                })
                .collect()
        });
        delays.iter().find(|(path, _)| path == name).map(|(_, delay)| *delay)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        None
    }
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
