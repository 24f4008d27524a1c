//! The `ringhttpd` binary: parse flags, run the server, map the outcome to an exit code.

use clap::Parser;

use ringhttpd::server::config::{Args, Config};
use ringhttpd::{log_error, server};

fn main() {
    let args = Args::parse();
    let code = match Config::from_args(args) {
        Err(msg) => {
            log_error!("{msg}");
            1
        }
        Ok(cfg) if cfg.check => {
            let problems = server::check(&cfg);
            for problem in &problems {
                log_error!("{problem}");
            }
            if problems.is_empty() {
                println!("configuration ok");
                0
            } else {
                1
            }
        }
        Ok(cfg) => match server::run(cfg) {
            Ok(code) => code,
            Err(e) => {
                log_error!("{e}");
                1
            }
        },
    };
    std::process::exit(code);
}
