//! Command-line interface.

use crate::config::{BrokerMode, ConfigErrors, HubConfig, DEFAULT_CONFIG_TOML};
use crate::store::{gateway_username, NewGateway, Store};
use crate::store::{AccountStore, FleetStore};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Exit status for a configuration error.
pub const EXIT_CONFIG: u8 = 64;

/// Chitti hub: fleet findings, alerts and evidence.
#[derive(Debug, Parser)]
#[command(name = "chitti-hub", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from (the flags override the file).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML); without it, the defaults
    /// (`chitti-hub print-default-config`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite file, evidence).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: broker, ingest, store, HTTP.
    Serve {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// HTTP listen address (health, metrics, API).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// MQTT listen address of the embedded broker.
        #[arg(long)]
        mqtt: Option<SocketAddr>,
    },
    /// Check a configuration file and report every problem in it.
    Validate {
        /// Configuration file.
        file: PathBuf,
    },
    /// Print the commented default configuration.
    PrintDefaultConfig,
    /// Apply the database migrations, or list them with `--status`.
    Migrate {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// Only list the migrations and whether each is applied.
        #[arg(long)]
        status: bool,
    },
    /// Enrol, list and revoke gateways.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Print the public half of the hub's ack-signing key (made on first use), the value
    /// of every agent's `mqtt.hub_public_keys`.
    HubKey {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage people's accounts (the first admin is made here).
    #[command(subcommand)]
    User(UserCommand),
    /// Notification channels: secrets, test messages, channels turned off.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// The audit trail's hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Back the hub up while it runs: `backup --to DIR` (database snapshot, evidence,
    /// configuration, a manifest of counts and hashes), or check one: `backup verify DIR`.
    Backup(BackupArgs),
    /// Restore a backup into the configured store and evidence folder (the hub
    /// stopped). Refuses a store that holds data unless `--force`.
    Restore {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// Overwrite a store that holds data.
        #[arg(long)]
        force: bool,
    },
    /// Run a demonstration: the hub on embedded defaults with a seeded substation and
    /// line, an admin account, and simulated gateways in this process.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoArgs),
    /// Not in this build: the demo links the agent, which the hub's default build leaves
    /// out. The arguments are taken only to answer with how to get it.
    #[cfg(not(feature = "demo"))]
    #[command(hide = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        /// Whatever followed `demo`.
        args: Vec<String>,
    },
}

/// `notify …`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Print a new webhook signing secret (`whsec_…`) for a channel's `secret` and its
    /// receiver. Shown once: it is not stored anywhere else.
    NewSecret,
    /// Send a test message to a configured channel, now, and say what it answered.
    Test {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// The channel's id.
        #[arg(long)]
        channel: String,
    },
    /// List the configured channels, and those turned off (a webhook that answered 410).
    Channels {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Turn a channel that was turned off back on.
    Enable {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// The channel's id.
        #[arg(long)]
        channel: String,
    },
}

/// `backup …`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// `verify DIR`.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The folder to write the backup into (new, or empty).
    #[arg(long)]
    pub to: Option<PathBuf>,
}

/// `backup verify`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup against its manifest: every file's size and hash, the evidence,
    /// and (SQLite) the copy's row counts and audit chain. Exits 1 when anything is
    /// wrong.
    Verify {
        /// The backup folder.
        dir: PathBuf,
    },
}

/// `audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain and report every edited, inserted or
    /// deleted row; exits 1 when anything is wrong. Prints the head's hash: keep it
    /// elsewhere to detect a rewrite of the whole chain later.
    Verify {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from `--password-file` (first line), or
    /// generated and printed once.
    Add {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// User name.
        #[arg(long)]
        username: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// File holding the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List accounts.
    List {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Pseudonymise a departed user (GDPR): the account (disabled first) is renamed to a
    /// pseudonym, and the audit log and alert trails name the pseudonym instead; the
    /// audit chain stays valid.
    Pseudonymise {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// User name.
        #[arg(long)]
        username: String,
    },
}

/// `gateway …`.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Enrol a gateway and issue its credentials (MQTT password, signing key).
    Add {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// Site id.
        #[arg(long)]
        site: String,
        /// Gateway id.
        #[arg(long)]
        gateway: String,
        /// The gateway's own public key (`chitti-agent keygen`); without it the hub
        /// makes the key pair and writes the private key for the installer.
        #[arg(long)]
        public_key: Option<String>,
        /// Folder for the gateway's credential files (must not exist or be empty of
        /// them).
        #[arg(long)]
        out: PathBuf,
        /// Broker URL written into the gateway's configuration snippet.
        #[arg(long, default_value = "mqtt://hub.example.net:1883")]
        broker_url: String,
    },
    /// List gateways with their state.
    List {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a gateway: its logins and batches are refused from now on.
    Revoke {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// Site id.
        #[arg(long)]
        site: String,
        /// Gateway id.
        #[arg(long)]
        gateway: String,
    },
}

fn load(args: &ConfigArgs) -> Result<HubConfig, ConfigErrors> {
    let mut config = match &args.config {
        Some(path) => HubConfig::load(path)?,
        None => {
            let mut c = HubConfig::default();
            c.data_dir = std::env::current_dir()
                .unwrap_or_default()
                .join(&c.data_dir);
            c
        }
    };
    if let Some(data) = &args.data {
        config.data_dir = std::env::current_dir().unwrap_or_default().join(data);
    }
    Ok(config)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::PrintDefaultConfig => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Command::Validate { file } => {
            let config = HubConfig::load(&file)?;
            println!(
                "{}: valid ({} broker, store {})",
                file.display(),
                match config.broker.mode {
                    BrokerMode::Embedded => "embedded",
                    BrokerMode::External => "external",
                    BrokerMode::Nats => "nats",
                },
                if config
                    .store
                    .url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("postgres"))
                {
                    "postgres"
                } else {
                    "sqlite"
                }
            );
            Ok(())
        }
        Command::Serve { config, http, mqtt } => {
            let mut config = load(&config)?;
            if let Some(http) = http {
                config.http.listen = http;
            }
            if let Some(mqtt) = mqtt {
                config.broker.embedded.listen = mqtt;
            }
            config.validate()?;
            init_tracing();
            runtime()?.block_on(async move {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    let _ = tx.send(true);
                });
                let (started_tx, started_rx) =
                    tokio::sync::oneshot::channel::<crate::serve::Running>();
                tokio::spawn(async move {
                    if let Ok(r) = started_rx.await {
                        // One line on stdout for people and scripts: where to connect.
                        let mqtt: Vec<String> = r.mqtt.iter().map(ToString::to_string).collect();
                        let mqtt = if mqtt.is_empty() {
                            "-".to_string()
                        } else {
                            mqtt.join(",")
                        };
                        println!("chitti-hub listening: mqtt {mqtt} http {}", r.http);
                    }
                });
                crate::serve::serve(config, rx, Some(started_tx)).await?;
                Ok(())
            })
        }
        Command::Migrate { config, status } => {
            let config = load(&config)?;
            runtime()?.block_on(async move {
                let store = crate::serve::open_store_unmigrated(&config).await?;
                if !status {
                    store.migrate().await?;
                }
                for m in store.migration_status().await? {
                    println!(
                        "{} {} {}",
                        m.version,
                        if m.applied { "applied" } else { "pending" },
                        m.description
                    );
                }
                Ok(())
            })
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            crate::demo::init_tracing();
            runtime()?.block_on(async move {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    let _ = tx.send(true);
                });
                crate::demo::run(args, rx).await
            })
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => anyhow::bail!(
            "this chitti-hub was built without the demo (a fleet build); run it with \
             `cargo run --release -p chitti-hub --features demo -- demo`"
        ),
        Command::Gateway(cmd) => runtime()?.block_on(gateway(cmd)),
        Command::HubKey { config } => {
            let config = load(&config)?;
            let path = crate::hub_key::path(&config);
            let key = crate::hub_key::load_or_create(&path)?;
            println!(
                "{}",
                chitti_common::signing::public_key_hex(&key.verifying_key())
            );
            Ok(())
        }
        Command::User(cmd) => runtime()?.block_on(user(cmd)),
        Command::Notify(cmd) => runtime()?.block_on(notify(cmd)),
        Command::Backup(args) => runtime()?.block_on(backup(args)),
        Command::Restore {
            config,
            from,
            force,
        } => runtime()?.block_on(restore(config, from, force)),
        Command::Audit(AuditCommand::Verify { config }) => {
            runtime()?.block_on(audit_verify(config))
        }
    }
}

async fn notify(cmd: NotifyCommand) -> anyhow::Result<()> {
    use crate::store::NotificationStore;
    match cmd {
        NotifyCommand::NewSecret => {
            let secret = crate::notify::signature::WebhookSecret::generate()
                .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            println!("{}", secret.reveal());
            Ok(())
        }
        NotifyCommand::Test { config, channel } => {
            let config = load(&config)?;
            let dashboard_url = config.dashboard_url();
            let answer =
                crate::notify::send_test(&config.notifications, &channel, dashboard_url).await?;
            println!("{channel}: {answer}");
            Ok(())
        }
        NotifyCommand::Channels { config } => {
            let config = load(&config)?;
            let store = crate::serve::open_store(&config).await?;
            let disabled = store.disabled_channels().await?;
            for c in &config.notifications.channels {
                let state = match disabled.iter().find(|(id, ..)| *id == c.id) {
                    Some((_, at, why)) => format!("disabled since {at}: {why}"),
                    None => "enabled".to_string(),
                };
                println!("{} {} {state}", c.id, c.kind.as_str());
            }
            Ok(())
        }
        NotifyCommand::Enable { config, channel } => {
            let config = load(&config)?;
            let store = crate::serve::open_store(&config).await?;
            if store.enable_channel(&channel).await? {
                println!("{channel}: enabled");
            } else {
                println!("{channel}: was not disabled");
            }
            Ok(())
        }
    }
}

async fn gateway(cmd: GatewayCommand) -> anyhow::Result<()> {
    match cmd {
        GatewayCommand::Add {
            config,
            site,
            gateway,
            public_key,
            out,
            broker_url,
        } => {
            let config = load(&config)?;
            chitti_common::protocol::validate_id("site", &site)?;
            chitti_common::protocol::validate_id("gateway", &gateway)?;
            let key = public_key
                .as_deref()
                .map(chitti_common::signing::parse_public_key)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?;
            let store = crate::serve::open_store(&config).await?;
            let username = gateway_username(&site, &gateway);
            let issued = crate::credentials::issue(&site, &gateway, &username, key)?;
            store
                .add_gateway(&NewGateway {
                    site: site.clone(),
                    gateway: gateway.clone(),
                    password_hash: issued.password_hash.clone(),
                    public_key: issued.public_key.to_bytes(),
                })
                .await?;
            cli_audit(&store, "gateway.enrol", &username, serde_json::Value::Null).await?;
            let hub_key = crate::hub_key::load_or_create(&crate::hub_key::path(&config))?;
            let files = issued.write_to(&out, &broker_url, &hub_key.verifying_key())?;
            println!("gateway {site}/{gateway} enrolled; MQTT user name {username}");
            println!(
                "public key {}",
                chitti_common::signing::public_key_hex(&issued.public_key)
            );
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        GatewayCommand::List { config } => {
            let store = crate::serve::open_store(&load(&config)?).await?;
            for g in store.list_gateways().await? {
                println!(
                    "{}/{}\t{}\tlast seen {}\tagent {}",
                    g.site,
                    g.gateway,
                    if g.is_revoked() {
                        "revoked"
                    } else if g.online {
                        "online"
                    } else {
                        "offline"
                    },
                    g.last_seen_at.map_or("never".into(), |t| t.to_rfc3339()),
                    g.agent_version.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        GatewayCommand::Revoke {
            config,
            site,
            gateway,
        } => {
            let store = crate::serve::open_store(&load(&config)?).await?;
            if store.revoke_gateway(&site, &gateway).await? {
                cli_audit(
                    &store,
                    "gateway.revoke",
                    &gateway_username(&site, &gateway),
                    serde_json::Value::Null,
                )
                .await?;
                println!("gateway {site}/{gateway} revoked");
                Ok(())
            } else {
                anyhow::bail!("no gateway {site}/{gateway}")
            }
        }
    }
}

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            config,
            username,
            role,
            password_file,
        } => {
            let role: crate::store::Role = role.parse().map_err(|_| {
                anyhow::anyhow!("--role {role:?}: expected viewer, operator or admin")
            })?;
            let (password, generated) = match password_file {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    (text.lines().next().unwrap_or_default().to_string(), false)
                }
                None => {
                    let mut bytes = [0u8; 15];
                    getrandom::fill(&mut bytes)
                        .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                    (hex::encode(bytes), true)
                }
            };
            crate::api::validate_new_user(&username, &password)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let store = crate::serve::open_store(&load(&config)?).await?;
            let hash = crate::credentials::hash_password(&password)?;
            let user = store
                .add_user(&crate::store::NewUser {
                    username: username.clone(),
                    password_hash: hash,
                    role,
                })
                .await?;
            cli_audit(
                &store,
                "user.add",
                &user.username,
                serde_json::json!({ "role": user.role.as_str() }),
            )
            .await?;
            println!("user {} ({}) created", user.username, user.role.as_str());
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UserCommand::Pseudonymise { config, username } => {
            use crate::store::AuditLog as _;
            let store = crate::serve::open_store(&load(&config)?).await?;
            let user = store
                .user_by_username(&username)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {username:?}"))?;
            if user.disabled_at.is_none() {
                store.set_user_disabled(user.id, true).await?;
                cli_audit(
                    &store,
                    "user.update",
                    &username,
                    serde_json::json!({"after": {"disabled": true}}),
                )
                .await?;
                println!("user {username} disabled (sessions ended, tokens revoked)");
            }
            let done = store
                .pseudonymise_user(user.id, CLI_ACTOR, chrono::Utc::now())
                .await?;
            println!(
                "user {username} is now {}: {} audit fields and {} alert-trail entries rewritten",
                done.pseudonym, done.audit_rows, done.alert_events
            );
            Ok(())
        }
        UserCommand::List { config } => {
            let store = crate::serve::open_store(&load(&config)?).await?;
            for u in store.list_users().await? {
                println!(
                    "{}\t{}\t{}",
                    u.username,
                    u.role.as_str(),
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    }
                );
            }
            Ok(())
        }
    }
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if let Some(BackupCommand::Verify { dir }) = args.command {
        let verified = crate::backup::verify(&dir).await?;
        for line in &verified.checked {
            println!("{line}");
        }
        println!(
            "backup {} of {} intact",
            dir.display(),
            verified.manifest.created_at.to_rfc3339()
        );
        return Ok(());
    }
    let to = args
        .to
        .ok_or_else(|| anyhow::anyhow!("backup needs --to DIR (or: backup verify DIR)"))?;
    let config = load(&args.config)?;
    let started = std::time::Instant::now();
    let manifest = crate::backup::create(&config, args.config.config.as_deref(), &to).await?;
    let store = crate::serve::open_store_unmigrated(&config).await?;
    cli_audit(
        &store,
        "backup.create",
        &to.display().to_string(),
        serde_json::json!({
            "database_bytes": manifest.database.bytes,
            "findings": manifest.counts.get("findings"),
            "evidence_files": manifest.evidence_files,
        }),
    )
    .await?;
    println!(
        "backup written to {} in {:.1} s: database {} bytes ({} findings, {} audit entries), \
         evidence {} files ({} bytes)",
        to.display(),
        started.elapsed().as_secs_f64(),
        manifest.database.bytes,
        manifest.counts.get("findings").unwrap_or(&0),
        manifest.counts.get("audit_log").unwrap_or(&0),
        manifest.evidence_files,
        manifest.evidence_bytes
    );
    Ok(())
}

async fn restore(config: ConfigArgs, from: PathBuf, force: bool) -> anyhow::Result<()> {
    let config = load(&config)?;
    let restored = crate::backup::restore(&config, &from, force).await?;
    for line in &restored.done {
        println!("{line}");
    }
    let store = crate::serve::open_store(&config).await?;
    cli_audit(
        &store,
        "backup.restore",
        &from.display().to_string(),
        serde_json::json!({
            "backup_created_at": restored.manifest.created_at,
            "forced": force,
        }),
    )
    .await?;
    println!(
        "restored the backup of {} from {}",
        restored.manifest.created_at.to_rfc3339(),
        from.display()
    );
    Ok(())
}

/// The audit log's actor for what this command line did (on the server, as whoever can
/// read its configuration).
const CLI_ACTOR: &str = "cli";

/// Records what a command did in the audit log.
async fn cli_audit(
    store: &impl crate::store::AuditLog,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    store
        .audit(&crate::store::AuditEvent {
            at: chrono::Utc::now(),
            actor: CLI_ACTOR.into(),
            action: action.into(),
            target: target.into(),
            from_address: None,
            detail,
        })
        .await?;
    Ok(())
}

async fn audit_verify(config: ConfigArgs) -> anyhow::Result<()> {
    use crate::store::AuditLog as _;
    let store = crate::serve::open_store(&load(&config)?).await?;
    let report = store.verify_audit_chain().await?;
    for p in &report.problems {
        match p.seq {
            Some(seq) => println!("seq {seq}: {}", p.what),
            None => println!("chain: {}", p.what),
        }
    }
    if report.problem_count > report.problems.len() as u64 {
        println!(
            "… and {} more problems",
            report.problem_count - report.problems.len() as u64
        );
    }
    println!(
        "{} rows checked; head seq {} hash {}",
        report.rows, report.head_seq, report.head_hash
    );
    if report.is_intact() {
        println!("audit chain intact");
        Ok(())
    } else {
        anyhow::bail!(
            "audit chain broken: {} problems (listed above)",
            report.problem_count
        )
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chitti-hub")
        .build()
        .context("cannot start the async runtime")
}

/// Exit status for an error: [`EXIT_CONFIG`] for configuration problems, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<ConfigErrors>().is_some() {
        EXIT_CONFIG
    } else {
        1
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHITTI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
