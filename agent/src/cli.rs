//! Command-line interface.

use crate::config::{AgentConfig, AgentConfigFile, ConfigErrors, DEFAULT_CONFIG_TOML};
use crate::inspect::{self, InspectArgs};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit status for a configuration error (`EX_USAGE` / `EX_CONFIG` family: 64).
pub const EXIT_CONFIG: u8 = 64;

/// Chitti edge agent: finds overheating electrical equipment in FLIR thermal images.
#[derive(Debug, Parser)]
#[command(name = "chitti-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a FLIR radiometric file (R-JPEG, .fff, .seq, .csq) and report its
    /// temperatures, hotspots and their severity.
    Inspect(Box<InspectArgs>),
    /// Run the agent: cameras → analysis → outbox → MQTT.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and report every problem in it.
    Validate {
        /// Configuration file (TOML).
        file: PathBuf,
        /// Check the file only, not the folders, devices and files it names (for
        /// checking a configuration away from its gateway).
        #[arg(long)]
        offline: bool,
    },
    /// Print a commented default configuration.
    PrintDefaultConfig,
    /// Write synthetic radiometric substation frames with YOLO labels: the training
    /// set of the component detector (see models/README.md).
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of frames.
        #[arg(long)]
        count: u64,
        /// Seed: the same seed, count and size write the same files.
        #[arg(long)]
        seed: u64,
        /// Frame width, pixels.
        #[arg(long, default_value_t = 640)]
        width: u32,
        /// Frame height, pixels.
        #[arg(long, default_value_t = 480)]
        height: u32,
    },
    /// Write the manifest of a detection model for the hub's registry (`POST
    /// /api/v1/models`): its sha256, classes and input, and reference frames (scenes
    /// of `synth`) with the detections this model makes on them — the self-test the
    /// hub and every gateway run before the model may run there.
    ModelManifest {
        /// The `.onnx` file.
        #[arg(long)]
        model: PathBuf,
        /// Model name (default: the model's metadata).
        #[arg(long)]
        name: Option<String>,
        /// Model version, MAJOR.MINOR.PATCH (default: the model's metadata).
        #[arg(long)]
        version: Option<String>,
        /// Scene seed of the reference frames.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Number of reference frames.
        #[arg(long, default_value_t = 3)]
        frames: u64,
        /// The ONNX Runtime library (else ORT_DYLIB_PATH).
        #[arg(long)]
        library: Option<PathBuf>,
    },
    /// Make a new signing key for this gateway: writes it to FILE (mode 0600) and
    /// prints the public key to register with `chitti-hub gateway add --public-key`.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args, &mut std::io::stdout().lock()),
        Command::Validate { file, offline } => {
            let config = AgentConfig::load(&file)?;
            if !offline {
                config.preflight(&file.display().to_string())?;
            }
            println!(
                "{}: valid (site {}, gateway {}, {} camera(s))",
                file.display(),
                config.identity.site,
                config.identity.gateway,
                config.cameras.len()
            );
            Ok(())
        }
        Command::Keygen { out } => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            write_private(&out, format!("{}\n", hex::encode(seed)).as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            let key = chitti_common::signing::signing_key_from_seed(&seed);
            println!(
                "{}",
                chitti_common::signing::public_key_hex(&key.verifying_key())
            );
            Ok(())
        }
        Command::Synth {
            out,
            count,
            seed,
            width,
            height,
        } => {
            let request = crate::synth::SynthRequest {
                out,
                count,
                seed,
                width,
                height,
            };
            let manifest = crate::synth::write_set(&request)?;
            println!(
                "{}: {} frame(s) {}x{}, seed {}",
                request.out.display(),
                manifest.count,
                manifest.width,
                manifest.height,
                manifest.seed
            );
            Ok(())
        }
        Command::ModelManifest {
            model,
            name,
            version,
            seed,
            frames,
            library,
        } => {
            let manifest = crate::detector::selftest::write_manifest(
                &model, library, name, version, seed, frames,
            )
            .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Command::PrintDefaultConfig => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Command::Run { config } => {
            // Every configuration problem is reported before any device opens.
            let origin = config.display().to_string();
            let base_dir = config
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let config = AgentConfig::load(&config)?;
            config.preflight(&origin)?;
            init_tracing();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("chitti-agent")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    let _ = tx.send(true);
                });
                if config.remote.enabled {
                    crate::remote::run_managed(config, base_dir, rx).await
                } else {
                    crate::topology::run(config, rx).await.map(|_| ())
                }
            })
        }
    }
}

/// Exit status for an error: [`EXIT_CONFIG`] for configuration problems, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<ConfigErrors>().is_some() {
        EXIT_CONFIG
    } else {
        1
    }
}

/// Writes a secret readable by the owner only; refuses to overwrite.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHITTI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signal received");
}
