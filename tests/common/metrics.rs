//! Scraping the Prometheus metrics a server started with `--metrics 127.0.0.1:0` exposes.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::http::get;
use super::server::Server;

/// The metrics address the server printed (`metrics on http://ADDR/metrics`).
pub fn metrics_addr(server: &Server) -> SocketAddr {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics on http://"))
        .unwrap_or_else(|| panic!("no metrics line:\n{log}"));
    let rest = &line[line.find("http://").unwrap() + 7..];
    rest.split('/').next().unwrap().parse().expect("metrics address")
}

/// One scrape of `/metrics`: the exposition text.
pub fn scrape(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    r.body_text()
}

/// The value of the sample `name{labels}` (exactly as written in the exposition).
pub fn sample(text: &str, series: &str) -> f64 {
    try_sample(text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// The value of the sample `name{labels}`, if the exposition has it.
pub fn try_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.parse().expect("a number"))
}

/// Scrapes until each of `series` has its expected value; panics with the last exposition
/// after `within`. For counters the server may update just after the client saw the event.
pub fn wait_for_samples(addr: SocketAddr, expected: &[(&str, f64)], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = scrape(addr);
        if expected.iter().all(|(series, value)| try_sample(&text, series) == Some(*value)) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics not at {expected:?} within {within:?}:\n{text}");
        thread::sleep(Duration::from_millis(50));
    }
}
