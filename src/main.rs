//! The `s3vol` binary: parse flags, load config, start tracing, run, map the result to an
//! exit code (0 ok, 2 configuration error, 1 anything else).

use std::process::ExitCode;

use clap::Parser;
use s3vol::cli::{Cli, Command};

fn main() -> ExitCode {
    // Each thread of the blocking pool would get its own glibc malloc arena (up to 8 per
    // core), each keeping its high-water mark: a listing of a large directory on one thread
    // and an upload on another then leave the daemon's resident memory far above its use.
    // Two shared arenas are plenty for a daemon whose hot paths hardly allocate.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    // The log format comes from the flags and config; a bad value is reported by validate.
    let format = match &cli.command {
        Command::Serve(args) | Command::CheckConfig(args) => {
            args.merged().ok().and_then(|raw| raw.log_format).and_then(|f| f.parse().ok()).unwrap_or_default()
        }
        Command::Presign(_) => Default::default(),
    };
    s3vol::telemetry::init(format);
    match cli.command {
        Command::CheckConfig(args) => match args.merged().and_then(|raw| s3vol::app::check(&raw)) {
            Ok(_) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("config error:\n{e}");
                ExitCode::from(2)
            }
        },
        Command::Presign(args) => match s3vol::presign::run(&args) {
            Ok(url) => {
                println!("{url}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("presign: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            let prepared = args.merged().and_then(|mut raw| {
                if args.config.is_none() && raw.is_empty_of_volumes() {
                    s3vol::app::embedded_default(&mut raw)?;
                }
                s3vol::app::check(&raw)
            });
            let (settings, keys) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("config error:\n{e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(s3vol::app::serve(settings, keys)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
