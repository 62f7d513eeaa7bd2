//! `ferry-e2e`: brings up the end-to-end environment (NATS, an object store, two stand-in
//! clusters) for a person to use, or runs the demo.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ferry_e2e::apiserver::kubelet::ImageProgram;
use ferry_e2e::harness::{Environment, EnvironmentOptions, StoreKind};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ferry-e2e", about = "Ferry's end-to-end environment and demo")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Store {
    /// A local directory (file://).
    File,
    /// A single-node Garage S3 server on loopback (needs `cargo install garage --locked`).
    Garage,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start NATS, the object store and the clusters "source" and "target", print how to reach
    /// them, and keep them up until interrupted.
    Up {
        #[arg(long, value_enum, default_value = "file")]
        store: Store,
        /// Directory for data and logs (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep cluster objects in the directory across runs.
        #[arg(long)]
        persist: bool,
        /// Run pods whose image matches IMAGE_GLOB as local processes of PROGRAM (repeatable).
        #[arg(long = "run-image", value_name = "IMAGE_GLOB=PROGRAM", value_parser = ImageProgram::parse)]
        run_image: Vec<ImageProgram>,
    },
    /// Migrate a production-shaped application of 538 objects (no volume data) several times
    /// and print the time of each phase (docs/benchmarks.md).
    BenchApp {
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The reference application with GIB GiB of volume data migrated by Ferry and by a
    /// kubectl + restic script, in one run (docs/benchmarks.md).
    BenchMigrate {
        #[arg(long, default_value_t = 2)]
        gib: usize,
        /// Keep the environment (clusters, logs, repository) in DIR instead of a temporary
        /// directory, to read the processes' logs afterwards.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// One namespace of ConfigMaps captured at each size (ascending, filled as it goes) by the
    /// real hub, spoke and CLI: capture time and the spoke's peak memory.
    BenchCapture {
        #[arg(long, value_delimiter = ',', default_value = "30000,300000")]
        objects: Vec<usize>,
    },
    /// One hub with many simulated spokes on one NATS: command round trips and hub memory.
    BenchHub {
        #[arg(long, default_value_t = 500)]
        spokes: usize,
        #[arg(long, default_value_t = 2000)]
        operations: usize,
        /// Operations started and not yet finished at any time.
        #[arg(long, default_value_t = 8)]
        in_flight: usize,
    },
    /// Start the environment, deploy a sample application into "source" and show both clusters.
    Demo {
        #[arg(long, value_enum, default_value = "file")]
        store: Store,
        /// Keep the environment up after the demo until interrupted.
        #[arg(long)]
        keep: bool,
    },
}

fn options(
    store: Store,
    dir: Option<PathBuf>,
) -> anyhow::Result<(EnvironmentOptions, Option<tempfile::TempDir>)> {
    let (dir, temp) = match dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("ferry-e2e-")
                .tempdir()
                .context("creating a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut opts = EnvironmentOptions::new(dir);
    opts.store = match store {
        Store::File => StoreKind::File,
        Store::Garage => StoreKind::Garage,
    };
    Ok((opts, temp))
}

fn wait_for_interrupt() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio::signal::ctrl_c())
        .context("waiting for ctrl-c")
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command {
        Cmd::Up {
            store,
            dir,
            persist,
            run_image,
        } => {
            let (mut opts, _temp) = options(store, dir)?;
            opts.persist = persist;
            opts.image_programs = run_image;
            // Mover pods run the spoke binary; the reference application's images their programs.
            match ferry_e2e::reference::image_programs() {
                Ok(p) => opts.image_programs.extend(p),
                Err(e) => eprintln!("note: mover and application pods will not run ({e})"),
            }
            let env = Environment::up(&opts).context("bringing up the environment")?;
            let env_file = env.write_env_file().context("writing env.sh")?;
            print!("{}", env.describe());
            println!(
                "# written to {}; press ctrl-c to stop everything",
                env_file.display()
            );
            wait_for_interrupt()?;
            env.down();
            Ok(())
        }
        Cmd::BenchHub {
            spokes,
            operations,
            in_flight,
        } => {
            let dir = tempfile::Builder::new()
                .prefix("ferry-bench-hub-")
                .tempdir()?;
            ferry_e2e::bench_hub::run(dir.path(), spokes, operations, in_flight.max(1))
        }
        Cmd::BenchCapture { objects } => {
            let (opts, _temp) = options(Store::File, None)?;
            let env = Environment::up(&opts).context("bringing up the environment")?;
            ferry_e2e::bench_capture::run(&env, &objects)?;
            env.down();
            Ok(())
        }
        Cmd::BenchMigrate { gib, dir } => {
            let (mut opts, _temp) = options(Store::File, dir)?;
            opts.image_programs = ferry_e2e::reference::image_programs()
                .context("finding the programs of the application's images")?;
            let env = Environment::up(&opts).context("bringing up the environment")?;
            ferry_e2e::bench_migrate::run(&env, gib.max(1))?;
            env.down();
            Ok(())
        }
        Cmd::BenchApp { runs } => {
            let (opts, _temp) = options(Store::File, None)?;
            let env = Environment::up(&opts).context("bringing up the environment")?;
            ferry_e2e::bench::run(&env, runs)?;
            env.down();
            Ok(())
        }
        Cmd::Demo { store, keep } => {
            let (mut opts, _temp) = options(store, None)?;
            opts.image_programs = ferry_e2e::reference::image_programs()
                .context("finding the programs of the application's images")?;
            let env = Environment::up(&opts).context("bringing up the environment")?;
            let fleet = ferry_e2e::demo::run(&env)?;
            if keep {
                print!("{}", env.describe());
                println!("# press ctrl-c to stop everything");
                wait_for_interrupt()?;
            }
            drop(fleet);
            env.down();
            Ok(())
        }
    }
}
