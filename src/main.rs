//! The `label-gateway` binary: parse the command line, load and validate the config,
//! start logging, then serve until SIGTERM/SIGINT and drain, or run an operator command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use label_gateway::config::{Config, ProcessEnv};

#[derive(Parser)]
#[command(name = "label-gateway", version, about)]
struct Cli {
    /// Configuration file; environment variables override it.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve labels (the default).
    Serve,
    /// Load and validate the configuration, print a summary, and exit.
    CheckConfig,
    /// Print a time-limited GET link to one label in the bucket (bypasses the session
    /// check: keep it short).
    Presign {
        tracking: String,
        /// Lifetime, e.g. 15m, 1h (at most 7d).
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Copy every label of the configured store into a folder as {tracking}.pdf (the
    /// layout `migrate --from` restores); re-running fetches only what is new.
    Backup {
        /// The folder to copy into (created when missing).
        #[arg(long)]
        to: PathBuf,
        /// List what would be downloaded without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy old local labels ({tracking}.pdf files) into the configured store.
    Migrate {
        /// The app's old folder, e.g. ./media/shipping_labels
        #[arg(long)]
        from: PathBuf,
        /// Replace labels that already exist in the store.
        #[arg(long)]
        overwrite: bool,
        /// List what would be uploaded without writing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("label-gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            let report = label_gateway::cli::check::check(&config);
            println!("configuration OK: {}", cli.config.display());
            for line in &report.lines {
                println!("{line}");
            }
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
        Command::Presign { tracking, expires } => {
            match label_gateway::cli::presign::presign(&config, &tracking, expires) {
                Ok(url) => {
                    println!("{url}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("label-gateway presign: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup { to, dry_run } => backup(config, to, dry_run),
        Command::Migrate {
            from,
            overwrite,
            dry_run,
        } => run_async(async move {
            let report =
                label_gateway::cli::migrate::migrate(&config, &from, overwrite, dry_run).await?;
            for (path, err) in &report.failed {
                eprintln!("failed: {}: {err}", path.display());
            }
            for path in &report.not_pdf {
                eprintln!("not a PDF, skipped: {}", path.display());
            }
            for path in &report.skipped_names {
                eprintln!("not {{tracking}}.pdf, skipped: {}", path.display());
            }
            let verb = if dry_run { "would upload" } else { "uploaded" };
            println!("{}", report.summary().replacen("uploaded", verb, 1));
            anyhow::ensure!(report.failed.is_empty(), "some labels failed to upload");
            Ok(())
        }),
    }
}

fn backup(config: label_gateway::config::Config, to: PathBuf, dry_run: bool) -> ExitCode {
    use label_gateway::cli::backup::{backup, PAGE_SIZE};
    run_async(async move {
        let report = backup(&config, &to, dry_run, PAGE_SIZE).await?;
        for (tracking, err) in &report.failed {
            eprintln!("failed: {tracking}: {err}");
        }
        for key in &report.not_labels {
            eprintln!("not a label, skipped: {key}");
        }
        let verb = if dry_run {
            "would download"
        } else {
            "downloaded"
        };
        println!("{}", report.summary().replacen("downloaded", verb, 1));
        anyhow::ensure!(report.failed.is_empty(), "some labels failed to download");
        Ok(())
    })
}

/// Runs an operator command on a small runtime; errors print and exit 1.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("label-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("label-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let _log = label_gateway::telemetry::init(&config.log);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if config.server.worker_threads > 0 {
        rt.worker_threads(config.server.worker_threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("label-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        let running = match label_gateway::server::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("label-gateway: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(addr = %running.addr(), internal = %running.internal_addr(), "label-gateway listening");
        wait_for_signal().await;
        tracing::info!("shutting down: new connections refused, draining in-flight requests");
        tokio::select! {
            drained = running.shutdown() => {
                if drained {
                    tracing::info!("drained, exiting");
                } else {
                    tracing::warn!("grace period over, exiting with requests still in flight");
                }
            }
            // A second signal is an operator who will not wait: stop now.
            _ = wait_for_signal() => {
                tracing::warn!("second signal: exiting with requests still in flight");
            }
        }
        ExitCode::SUCCESS
    });
    // Work still running (a download past the grace period, a blocking file read) must
    // not hold the exit: give it a moment, then go.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
