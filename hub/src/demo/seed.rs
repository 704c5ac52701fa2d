//! What the demo puts into the hub's store, idempotently: each run adds only what is
//! missing, so a rerun resumes the same sites, admin account and gateways.
//!
//! - **Sites**: a 220 kV substation with bays (three-phase breakers, CTs, bushings and
//!   disconnectors) and a transmission line with towers (insulator strings and clamps
//!   per phase).
//! - **Admin**: user `admin`; the password comes from `--admin-password` or is generated
//!   on the first run, and is kept in `admin-password` (mode 0600) in the data folder
//!   so that every run can print it.
//! - **Gateways**: enrolled as `chitti-hub gateway add` does ([`crate::credentials`]),
//!   their credential files in `gateways/{site}/{gateway}/`. The files are written
//!   before the store row, so a run interrupted in between enrols the same
//!   credentials next time.

use crate::credentials::{hash_password, verify_password, IssuedCredentials};
use crate::store::{
    gateway_username, AnyStore, AuditEvent, NewAsset, NewGateway, NewSite, NewStructure, NewUser,
    Phase, Role, SiteKind, StructureKind,
};
use crate::store::{AccountStore, AuditLog, FleetStore, SiteStore};
use anyhow::Context;
use chitti_common::signing::signing_key_from_seed;
use std::path::{Path, PathBuf};

/// The substation's id.
pub const SUBSTATION: &str = "riverside-220kv";
/// The line's id.
pub const LINE: &str = "northfield-line";
/// The admin's user name.
pub const ADMIN: &str = "admin";
/// Who the demo's audit records name.
const ACTOR: &str = "chitti-hub demo";

/// Bays of the substation: id and name.
pub const BAYS: [(&str, &str); 4] = [
    ("bay-01", "Bay 1: Northfield 220 kV line feeder"),
    ("bay-02", "Bay 2: transformer T1 220/66 kV"),
    ("bay-03", "Bay 3: bus coupler"),
    ("bay-04", "Bay 4: Eastgate 220 kV line feeder"),
];
/// Equipment of every bay, one per phase: id part, name, component class.
const BAY_EQUIPMENT: [(&str, &str, &str); 4] = [
    ("cb", "circuit breaker", "circuit-breaker"),
    ("ct", "current transformer", "current-transformer"),
    ("bushing", "breaker bushing", "bushing"),
    ("ds", "disconnector", "disconnector"),
];
/// Towers of the line: id and name.
pub const TOWERS: [(&str, &str); 4] = [
    ("tower-017", "Tower 17 (suspension)"),
    ("tower-018", "Tower 18 (angle)"),
    ("tower-019", "Tower 19 (suspension)"),
    ("tower-020", "Tower 20 (tension)"),
];
/// Equipment of every tower, one per phase.
const TOWER_EQUIPMENT: [(&str, &str, &str); 2] = [
    ("insulator", "insulator string", "insulator"),
    ("clamp", "suspension clamp", "clamp"),
];
const PHASES: [(Phase, &str); 3] = [(Phase::A, "a"), (Phase::B, "b"), (Phase::C, "c")];

/// The asset id of a piece of equipment on a structure: `bay-01-cb-b`.
pub fn asset_id(structure: &str, equipment: &str, phase: &str) -> String {
    format!("{structure}-{equipment}-{phase}")
}

/// What the demo's sites hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteCounts {
    /// Structures (bays and towers).
    pub structures: usize,
    /// Assets.
    pub assets: usize,
    /// How many of them this run created.
    pub created: usize,
}

async fn audit(store: &AnyStore, action: &str, target: &str, detail: serde_json::Value) {
    let event = AuditEvent {
        at: chrono::Utc::now(),
        actor: ACTOR.into(),
        action: action.into(),
        target: target.into(),
        from_address: None,
        detail,
    };
    if let Err(err) = store.audit(&event).await {
        tracing::warn!(%err, action, target, "audit record not written");
    }
}

/// Creates the sites, structures and assets that are missing.
pub async fn sites(store: &AnyStore) -> anyhow::Result<SiteCounts> {
    let mut counts = SiteCounts::default();
    let site_defs = [
        (
            SUBSTATION,
            "Riverside 220 kV substation",
            SiteKind::Substation,
        ),
        (LINE, "Riverside–Northfield 220 kV line", SiteKind::Line),
    ];
    for (id, name, kind) in site_defs {
        let wanted = NewSite {
            id: id.into(),
            name: name.into(),
            kind,
        };
        match store.site(id).await? {
            None => {
                store.add_site(&wanted).await?;
                audit(
                    store,
                    "site.create",
                    id,
                    serde_json::json!({ "name": name }),
                )
                .await;
                counts.created += 1;
            }
            // Enrolling a gateway first creates a bare site named after its id.
            Some(s) if s.name == id => {
                store.update_site(&wanted).await?;
            }
            Some(_) => {}
        }
    }
    let mut structures = Vec::new();
    for (bay, name) in BAYS {
        structures.push((
            SUBSTATION,
            bay,
            name,
            StructureKind::Bay,
            &BAY_EQUIPMENT[..],
        ));
    }
    for (tower, name) in TOWERS {
        structures.push((
            LINE,
            tower,
            name,
            StructureKind::Tower,
            &TOWER_EQUIPMENT[..],
        ));
    }
    for (site, id, name, kind, equipment) in structures {
        counts.structures += 1;
        if store.structure(site, id).await?.is_none() {
            store
                .add_structure(&NewStructure {
                    site: site.into(),
                    id: id.into(),
                    name: name.into(),
                    kind,
                })
                .await?;
            audit(
                store,
                "structure.create",
                &format!("{site}/{id}"),
                serde_json::Value::Null,
            )
            .await;
            counts.created += 1;
        }
        let short = name.split(':').next().unwrap_or(name);
        for (part, what, class) in equipment {
            for (phase, p) in PHASES {
                counts.assets += 1;
                let asset = asset_id(id, part, p);
                if store.asset(site, &asset).await?.is_some() {
                    continue;
                }
                store
                    .add_asset(&NewAsset {
                        site: site.into(),
                        structure: Some(id.into()),
                        id: asset.clone(),
                        name: format!("{short} {what}, phase {}", phase.as_str()),
                        phase: Some(phase),
                        component_class: Some((*class).into()),
                    })
                    .await?;
                counts.created += 1;
            }
        }
    }
    if counts.created > 0 {
        audit(
            store,
            "asset.create",
            "demo",
            serde_json::json!({ "created": counts.created }),
        )
        .await;
    }
    Ok(counts)
}

/// The admin account as this run knows it.
#[derive(Debug, Clone)]
pub struct AdminLogin {
    /// User name.
    pub username: String,
    /// The password, when the demo knows it (it does unless `admin-password` was
    /// deleted after the first run).
    pub password: Option<String>,
    /// Where the password is kept.
    pub file: PathBuf,
    /// Created by this run.
    pub created: bool,
}

fn generated_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Writes a private file (0600) through a temporary file and a rename.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Makes sure user `admin` exists, with `requested` as its password when given.
pub async fn admin(
    store: &AnyStore,
    data_dir: &Path,
    requested: Option<&str>,
) -> anyhow::Result<AdminLogin> {
    let file = data_dir.join("admin-password");
    let stored = match std::fs::read_to_string(&file) {
        Ok(t) => Some(t.lines().next().unwrap_or_default().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let mut login = AdminLogin {
        username: ADMIN.into(),
        password: None,
        file: file.clone(),
        created: false,
    };
    match store.user_by_username(ADMIN).await? {
        None => {
            let password = match requested.map(str::to_string).or(stored) {
                Some(p) => p,
                None => generated_password()?,
            };
            crate::api::validate_new_user(ADMIN, &password)
                .map_err(|e| anyhow::anyhow!("--admin-password: {}", e.message))?;
            // The file first: a run stopped between the two still knows the password.
            write_private(&file, &format!("{password}\n"))?;
            store
                .add_user(&NewUser {
                    username: ADMIN.into(),
                    password_hash: hash_password(&password)?,
                    role: Role::Admin,
                })
                .await?;
            audit(
                store,
                "user.create",
                ADMIN,
                serde_json::json!({ "role": "admin" }),
            )
            .await;
            login.password = Some(password);
            login.created = true;
        }
        Some(user) => {
            if user.disabled_at.is_some() {
                tracing::warn!(
                    "user admin is disabled; enable it through the API or use a fresh --data"
                );
            }
            let hash = user.password_hash.clone();
            match (requested, stored) {
                (Some(p), stored) => {
                    let (h, p2) = (hash.clone(), p.to_string());
                    if !tokio::task::spawn_blocking(move || verify_password(&h, &p2)).await? {
                        anyhow::bail!(
                            "--admin-password: user admin already exists in {} with another \
                             password (the demo's is in {}); leave the flag out or use a fresh --data",
                            data_dir.display(),
                            file.display()
                        );
                    }
                    if stored.as_deref() != Some(p) {
                        write_private(&file, &format!("{p}\n"))?;
                    }
                    login.password = Some(p.to_string());
                }
                (None, Some(p)) => {
                    let (h, p2) = (hash, p.clone());
                    if !tokio::task::spawn_blocking(move || verify_password(&h, &p2)).await? {
                        tracing::warn!(
                            file = %file.display(),
                            "the stored admin password no longer signs in (changed through the API?)"
                        );
                    }
                    login.password = Some(p);
                }
                (None, None) => {}
            }
        }
    }
    Ok(login)
}

/// A gateway's credential files, as the demo's agents use them.
#[derive(Debug, Clone)]
pub struct GatewayFiles {
    /// Folder of `mqtt-password`, `signing.key`, `agent-credentials.toml`.
    pub dir: PathBuf,
    /// False when the gateway was revoked (through the API): its agent is not started.
    pub active: bool,
}

impl GatewayFiles {
    /// `{dir}/mqtt-password`.
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("mqtt-password")
    }
    /// `{dir}/signing.key`.
    pub fn signing_key_file(&self) -> PathBuf {
        self.dir.join("signing.key")
    }
}

/// Reads credential files written earlier: (password, signing seed).
fn read_credentials(dir: &Path) -> anyhow::Result<Option<(String, [u8; 32])>> {
    let password = match std::fs::read_to_string(dir.join("mqtt-password")) {
        Ok(p) => p.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let key = match std::fs::read_to_string(dir.join("signing.key")) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut seed = [0u8; 32];
    hex::decode_to_slice(key.trim(), &mut seed)
        .with_context(|| format!("{}: not a signing key", dir.join("signing.key").display()))?;
    Ok(Some((password, seed)))
}

/// Enrols a gateway unless it is already, keeping its credentials in
/// `{data_dir}/gateways/{site}/{gateway}/`.
pub async fn gateway(
    store: &AnyStore,
    data_dir: &Path,
    site: &str,
    gateway: &str,
    broker_url: &str,
    hub_key: &ed25519_dalek::VerifyingKey,
) -> anyhow::Result<GatewayFiles> {
    let dir = data_dir.join("gateways").join(site).join(gateway);
    let username = gateway_username(site, gateway);
    let existing = store.gateway(site, gateway).await?;
    let files = read_credentials(&dir)?;
    let (password, seed) = match (files, &existing) {
        (Some(f), _) => f,
        (None, Some(_)) => anyhow::bail!(
            "gateway {site}/{gateway} is enrolled but its credentials are missing from {}; \
             use a fresh --data",
            dir.display()
        ),
        (None, None) => {
            // Leftovers of an interrupted write would make write_to refuse.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            let issued: IssuedCredentials =
                crate::credentials::issue(site, gateway, &username, None)?;
            issued.write_to(&dir, broker_url, hub_key)?;
            let seed = issued.signing_seed.context("the hub made the key")?;
            (issued.password, seed)
        }
    };
    let public_key = signing_key_from_seed(&seed).verifying_key();
    let active = match existing {
        Some(record) => {
            if record.public_key != public_key.to_bytes() {
                anyhow::bail!(
                    "gateway {site}/{gateway} is enrolled with another key than the one in {}; \
                     use a fresh --data",
                    dir.display()
                );
            }
            if record.is_revoked() {
                tracing::warn!(%site, %gateway, "gateway revoked: its agent is not started");
            }
            !record.is_revoked()
        }
        None => {
            let password_hash = hash_password(&password)?;
            store
                .add_gateway(&NewGateway {
                    site: site.into(),
                    gateway: gateway.into(),
                    password_hash,
                    public_key: public_key.to_bytes(),
                })
                .await?;
            audit(store, "gateway.enrol", &username, serde_json::Value::Null).await;
            tracing::info!("gateway {site}/{gateway} enrolled");
            true
        }
    };
    Ok(GatewayFiles { dir, active })
}
