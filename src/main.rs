//! The `label-gateway` binary: parse the command line, load and validate the config,
//! start logging, then serve until SIGTERM/SIGINT and drain (re-reading secret files on
//! SIGHUP), or run an operator command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use label_gateway::cli::progress::Progress;
use label_gateway::config::{Config, ConfigError, ProcessEnv};

/// Serves shipping-label PDFs from a private bucket to the shop's logged-in users.
///
/// Labels come from an S3-compatible bucket (or a local folder) after the Django session
/// check. The operator commands around it read the same configuration file and
/// environment as the server.
#[derive(Parser)]
#[command(name = "label-gateway", version)]
struct Cli {
    /// Configuration file; environment variables override it. Without one, ./config.toml
    /// when it exists, else the defaults and the environment alone.
    #[arg(
        long,
        global = true,
        env = "LABEL_GATEWAY_CONFIG",
        value_name = "PATH",
        value_parser = config_path
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve labels (the default).
    ///
    /// SIGTERM/SIGINT drain in-flight requests and exit; SIGHUP re-reads the secret files
    /// (*_FILE) and signs every later storage request with the new key.
    Serve,
    /// Validate the configuration and print a summary.
    ///
    /// Prints the configuration as the gateway will run it and warns about risky
    /// settings; exit 2 when it is invalid, naming the key.
    CheckConfig,
    /// Check the deployment end to end and say what to fix.
    ///
    /// In order: configuration, credentials, the storage endpoint (DNS, TCP, TLS), a
    /// signed listing of the bucket (each S3 refusal named by its cause), the clock
    /// against the storage server's, with --write a round trip of a scratch object, the
    /// session check URL and the regeneration URL. One line per check (ok, warn, FAIL,
    /// skip); exit 1 when any fails.
    Doctor {
        /// Also PUT, HEAD, GET and DELETE a scratch object (never a label) in the store.
        #[arg(long)]
        write: bool,
    },
    /// Ask the running gateway whether it is up: exit 0 if so, 1 if not.
    ///
    /// GET /healthz on the configured public listen address (a wildcard address on
    /// loopback), for a container's HEALTHCHECK.
    Health {
        /// How long to wait for the answer, e.g. 2s.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print a time-limited GET link to one label in the bucket.
    ///
    /// The link bypasses the session check by design: keep its lifetime short.
    Presign {
        /// The label's tracking number.
        tracking: String,
        /// Lifetime, e.g. 15m, 1h (at most 7d).
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Copy every label of the store into a folder.
    ///
    /// Labels land as {tracking}.pdf, the layout `migrate --from` restores; re-running
    /// fetches only what is new or was cut short. Progress on stderr; exit 1 if any
    /// label failed.
    Backup {
        /// The folder to copy into (created when missing).
        #[arg(long)]
        to: PathBuf,
        /// List what would be downloaded without writing.
        #[arg(long)]
        dry_run: bool,
        /// Labels downloaded at once (1 to 256).
        #[arg(long, default_value_t = label_gateway::cli::DEFAULT_JOBS, value_parser = jobs())]
        jobs: usize,
    },
    /// Copy every label the fallback bucket lacks or holds differently from the primary.
    ///
    /// Lists both buckets ([storage] and [storage.fallback]) under {location}/, then
    /// copies each label the fallback does not have, or has with another size or ETag;
    /// re-running copies only what changed. Never touches keys that are not
    /// {location}/{tracking}.pdf. Progress on stderr; exit 1 if any copy or delete failed.
    Mirror {
        /// Print what would be copied (and deleted) without writing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete the fallback's labels the primary no longer has.
        #[arg(long)]
        delete: bool,
        /// Labels copied at once.
        #[arg(long, default_value_t = label_gateway::cli::DEFAULT_JOBS, value_parser = jobs())]
        jobs: usize,
    },
    /// Delete labels the shop no longer needs (a dry run unless --yes).
    ///
    /// Chooses labels by age and/or from a list of tracking numbers (both given: a label
    /// must match both). Without --yes it prints what would go: each label, the count,
    /// bytes, oldest and newest. With --yes it deletes in batches of at most 1,000 and
    /// prints every label the store would not delete. Never touches keys that are not
    /// {location}/{tracking}.pdf; exit 1 if any delete failed.
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["older_than", "from_file"])))]
    Prune {
        /// Labels last written longer ago than this, e.g. 90d.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Labels whose tracking number is a line of this file (e.g. the app's closed
        /// orders); blank lines and # comments are skipped.
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// Delete for real (otherwise only list what would go).
        #[arg(long)]
        yes: bool,
    },
    /// Copy old local labels into the store.
    ///
    /// Uploads each {tracking}.pdf of the folder as {location}/{tracking}.pdf; never
    /// overwrites unless --overwrite, skips and reports what is not a label. Safe to
    /// re-run. Progress on stderr; exit 1 if any upload failed.
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
        /// Labels uploaded at once (1 to 256).
        #[arg(long, default_value_t = label_gateway::cli::DEFAULT_JOBS, value_parser = jobs())]
        jobs: usize,
    },
}

/// `--jobs`: 1 to 256.
fn jobs() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=256)
}

/// `--config` / `LABEL_GATEWAY_CONFIG`: any path; an empty one counts as none given, as
/// an empty variable does for every other setting.
fn config_path(s: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(s))
}

/// The configuration file read when neither `--config` nor `LABEL_GATEWAY_CONFIG` names
/// one; unlike a named file, it may be absent.
const DEFAULT_CONFIG: &str = "config.toml";

/// Loads the configuration: the file `named` (it must exist), else [`DEFAULT_CONFIG`] when
/// it exists, else the defaults and the environment alone. Returns what was read, as
/// the reports name it.
fn load_config(named: Option<PathBuf>) -> (PathBuf, Result<Config, ConfigError>) {
    let path = match named.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => path,
        None if matches!(Path::new(DEFAULT_CONFIG).try_exists(), Ok(false)) => {
            let source = PathBuf::from("the defaults and the environment (no config.toml)");
            return (source, Config::from_toml_str("", &ProcessEnv));
        }
        None => PathBuf::from(DEFAULT_CONFIG),
    };
    let loaded = Config::load(&path, &ProcessEnv);
    (path, loaded)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (source, loaded) = load_config(cli.config);
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            match cli.command {
                // An invalid configuration is doctor's first finding, not a reason to stop.
                Some(Command::Doctor { write }) => return doctor(Err(e), &source, write),
                // A container's health check: 1 is "unhealthy", 2 is reserved there.
                Some(Command::Health { .. }) => {
                    eprintln!("label-gateway health: invalid configuration: {e}");
                    return ExitCode::FAILURE;
                }
                _ => {}
            }
            eprintln!("label-gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            let report = label_gateway::cli::check::check(&config);
            println!("configuration OK: {}", source.display());
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
        Command::Doctor { write } => doctor(Ok(config), &source, write),
        Command::Health { timeout } => run_async(async move {
            let answer = label_gateway::cli::health::health(&config, timeout)
                .await
                .map_err(|e| anyhow::anyhow!("unhealthy: {e}"))?;
            println!("healthy: {answer}");
            Ok(())
        }),
        Command::Backup { to, dry_run, jobs } => backup(config, to, dry_run, jobs),
        Command::Mirror {
            dry_run,
            delete,
            jobs,
        } => mirror(config, dry_run, delete, jobs),
        Command::Prune {
            older_than,
            from_file,
            yes,
        } => prune(config, older_than, from_file, yes),
        Command::Migrate {
            from,
            overwrite,
            dry_run,
            jobs,
        } => run_async(async move {
            use label_gateway::cli::migrate::{migrate_with, MigrateOptions};
            let options = MigrateOptions {
                overwrite,
                dry_run,
                jobs,
            };
            let progress = Progress::for_stderr("migrate");
            let report = migrate_with(&config, &from, options, &progress).await?;
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

fn doctor(loaded: Result<Config, ConfigError>, path: &Path, write: bool) -> ExitCode {
    run_async(async move {
        let report = label_gateway::cli::doctor::doctor(loaded, path, write).await;
        for check in &report.checks {
            println!("{check}");
        }
        anyhow::ensure!(report.passed(), "some checks failed");
        Ok(())
    })
}

fn prune(
    config: Config,
    older_than: Option<std::time::Duration>,
    from_file: Option<PathBuf>,
    yes: bool,
) -> ExitCode {
    use label_gateway::cli::prune::{prune, PruneOptions};
    run_async(async move {
        let options = PruneOptions::new(older_than, from_file, yes);
        let report = prune(&config, &options, &Progress::for_stderr("prune")).await?;
        for (line, text) in &report.bad_lines {
            eprintln!("not a tracking number, ignored: line {line}: {text}");
        }
        if !report.not_in_store.is_empty() {
            eprintln!(
                "{} tracking numbers of the list have no label in the store",
                report.not_in_store.len()
            );
        }
        if report.dry_run {
            for c in &report.chosen {
                let when = c
                    .last_modified
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                    .unwrap_or_else(|| "-".into());
                println!("would delete: {} ({} bytes, {when})", c.tracking, c.size);
            }
        }
        for (tracking, err) in &report.failed {
            eprintln!("failed: {tracking}: {err}");
        }
        println!("{}", report.summary());
        anyhow::ensure!(report.failed.is_empty(), "some labels could not be deleted");
        Ok(())
    })
}

fn backup(config: Config, to: PathBuf, dry_run: bool, jobs: usize) -> ExitCode {
    use label_gateway::cli::backup::{backup_with, BackupOptions, PAGE_SIZE};
    run_async(async move {
        let options = BackupOptions {
            dry_run,
            page_size: PAGE_SIZE,
            jobs,
        };
        let progress = Progress::for_stderr("backup");
        let report = backup_with(&config, &to, options, &progress).await?;
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

fn mirror(config: Config, dry_run: bool, delete: bool, jobs: usize) -> ExitCode {
    use label_gateway::cli::mirror::{mirror, MirrorOptions};
    run_async(async move {
        let options = MirrorOptions {
            dry_run,
            delete,
            jobs,
            ..MirrorOptions::default()
        };
        let report = mirror(&config, options, &Progress::for_stderr("mirror")).await?;
        if dry_run {
            report
                .copied
                .iter()
                .for_each(|t| println!("would copy: {t}"));
            report
                .deleted
                .iter()
                .for_each(|t| println!("would delete: {t}"));
        }
        for (tracking, err) in &report.failed {
            eprintln!("failed: {tracking}: {err}");
        }
        for key in &report.not_labels {
            eprintln!("not a label, skipped: {key}");
        }
        let summary = report.summary();
        let summary = if dry_run {
            summary
                .replacen("copied", "would copy", 1)
                .replacen("deleted", "would delete", 1)
        } else {
            summary
        };
        println!("{summary}");
        anyhow::ensure!(report.failed.is_empty(), "some labels failed to mirror");
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

/// glibc's allocator hands freed memory back to the kernel as soon as 128 KiB lie free at
/// the top of a heap, and moves that bound with what it last freed. A streamed label
/// allocates and frees a read buffer per 16 KiB it relays, so under load heaps shrank and
/// grew again all the time: up to 225 page faults per 5 MiB label measured
/// (`LOAD_PERF=1 LOAD_PERF_LABEL=5mib`), a few per request elsewhere. Fixed bounds instead:
/// a heap keeps up to 2 MiB free for reuse, and only blocks of 1 MiB and more get their
/// own mapping. Called before any other thread starts, as `mallopt` asks.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two allocator parameters; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 << 20);
    }
}

fn serve(config: Config) -> ExitCode {
    // Read (and removed from the environment) while no other thread runs.
    let passed = match label_gateway::server::activation::take_from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("label-gateway: socket activation: {e}");
            return ExitCode::FAILURE;
        }
    };
    keep_freed_memory();
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
        let running = match label_gateway::server::start_with(config, passed).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("label-gateway: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        // Registered before the "listening" line: from then on a SIGHUP reloads the
        // secrets instead of ending the process.
        reload_on_sighup(running.gateway.clone());
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

/// Key rotation: each SIGHUP re-reads the secret files (`Gateway::reload_secrets`).
fn reload_on_sighup(gateway: std::sync::Arc<label_gateway::gateway::Gateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: rotating keys needs a restart");
                return;
            }
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reading the secret files again");
                let _ = gateway.reload_secrets();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = gateway;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_and_option_says_what_it_does() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            assert!(
                sub.get_about().is_some(),
                "{}: no help text",
                sub.get_name()
            );
            for arg in sub.get_arguments().filter(|a| a.get_id() != "help") {
                assert!(
                    arg.get_help().is_some(),
                    "{} {}: no help text",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
