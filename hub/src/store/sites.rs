//! Sites, their structures and the assets on them: the hierarchy findings are filed under.
//!
//! Nothing is deleted from under what refers to it: a delete checks its dependants and
//! fails with [`StoreError::InUse`] naming them. On Postgres the parent row is locked
//! first (`FOR UPDATE`), so nothing is added under it between the check and the delete
//! (inserting a child takes a `KEY SHARE` lock on it); on SQLite the write transaction
//! holds the file lock.

use super::sql::{Row, Sql};
use super::*;
use chitti_common::protocol::validate_id;

const SITE_COLUMNS: &str = "id, name, kind, created_at";
const STRUCTURE_COLUMNS: &str = "site, id, name, kind, created_at";
const ASSET_COLUMNS: &str = "site, structure, id, name, phase, component_class, created_at";

/// Sites, structures and assets.
pub trait SiteStore: Backed {
    /// Creates a site. An existing id (also one created by enrolling a gateway: use
    /// [`SiteStore::update_site`]) is [`StoreError::AlreadyExists`].
    fn add_site(
        &self,
        new: &NewSite,
    ) -> impl Future<Output = Result<SiteRecord, StoreError>> + Send {
        async move {
            validate_id("site", &new.id)?;
            let site = SiteRecord {
                id: new.id.clone(),
                name: text_without_nul(&new.name).into_owned(),
                kind: new.kind,
                created_at: rows::to_micros(Utc::now()),
            };
            let insert =
                Sql::new("INSERT INTO sites (id, name, kind, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&site.id)
                    .bind(&site.name)
                    .bind(site.kind.as_str())
                    .bind(site.created_at);
            self.db().execute(insert).await.map_err(|e| {
                unique_error(e, || StoreError::AlreadyExists {
                    what: "site",
                    id: new.id.clone(),
                })
            })?;
            Ok(site)
        }
    }

    /// Every site, by id.
    fn list_sites(&self) -> impl Future<Output = Result<Vec<SiteRecord>, StoreError>> + Send {
        async move {
            let db = self.db();
            let order = db.backend().bytewise();
            let rows = db
                .fetch_all(Sql::new(format!(
                    "SELECT {SITE_COLUMNS} FROM sites ORDER BY id{order}"
                )))
                .await?;
            rows.iter().map(site_from_row).collect()
        }
    }

    /// One site.
    fn site(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SiteRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1")).bind(id);
            let row = self.db().fetch_optional(sql).await?;
            row.as_ref().map(site_from_row).transpose()
        }
    }

    /// Sets a site's name and kind. `false` when there is no such site.
    fn update_site(&self, site: &NewSite) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            validate_id("site", &site.id)?;
            let sql = Sql::new("UPDATE sites SET name = $1, kind = $2 WHERE id = $3")
                .bind(text_without_nul(&site.name))
                .bind(site.kind.as_str())
                .bind(&site.id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Deletes a site. [`StoreError::InUse`] while it has structures, assets or
    /// gateways; `false` when there is no such site.
    fn delete_site(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let lock = tx.backend().for_update();
            let exists = Sql::new(format!("SELECT 1 FROM sites WHERE id = $1{lock}")).bind(id);
            if tx.fetch_optional(exists).await?.is_none() {
                return Ok(false);
            }
            let row = tx
                .fetch_one(
                    Sql::new(
                        "SELECT EXISTS (SELECT 1 FROM structures WHERE site = $1) AS structures, \
                         EXISTS (SELECT 1 FROM assets WHERE site = $1) AS assets, \
                         EXISTS (SELECT 1 FROM gateways WHERE site = $1) AS gateways",
                    )
                    .bind(id),
                )
                .await?;
            let used = [
                ("structures", row.get("structures")?),
                ("assets", row.get("assets")?),
                ("gateways", row.get("gateways")?),
            ];
            if let Some(err) = in_use("site", id, &used) {
                return Err(err);
            }
            let done = tx
                .execute(Sql::new("DELETE FROM sites WHERE id = $1").bind(id))
                .await
                .map_err(|e| {
                    foreign_key_error(e, || StoreError::InUse {
                        what: format!("site {id}"),
                    })
                })?;
            tx.commit().await?;
            Ok(done > 0)
        }
    }

    /// Creates a structure in a site. An unknown site is [`StoreError::NotFound`], an
    /// existing (site, id) [`StoreError::AlreadyExists`].
    fn add_structure(
        &self,
        new: &NewStructure,
    ) -> impl Future<Output = Result<StructureRecord, StoreError>> + Send {
        async move {
            check_structure_ids(new)?;
            let structure = StructureRecord {
                site: new.site.clone(),
                id: new.id.clone(),
                name: text_without_nul(&new.name).into_owned(),
                kind: new.kind,
                created_at: rows::to_micros(Utc::now()),
            };
            let insert = Sql::new(
                "INSERT INTO structures (site, id, kind, name, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&structure.site)
            .bind(&structure.id)
            .bind(structure.kind.as_str())
            .bind(&structure.name)
            .bind(structure.created_at);
            self.db().execute(insert).await.map_err(|e| {
                constraint_error(
                    e,
                    || StoreError::AlreadyExists {
                        what: "structure",
                        id: format!("{}/{}", new.site, new.id),
                    },
                    || StoreError::NotFound {
                        what: "site",
                        id: new.site.clone(),
                    },
                )
            })?;
            Ok(structure)
        }
    }

    /// A site's structures, by id.
    fn list_structures(
        &self,
        site: &str,
    ) -> impl Future<Output = Result<Vec<StructureRecord>, StoreError>> + Send {
        async move {
            let db = self.db();
            let order = db.backend().bytewise();
            let sql = Sql::new(format!(
                "SELECT {STRUCTURE_COLUMNS} FROM structures WHERE site = $1 ORDER BY id{order}"
            ))
            .bind(site);
            db.fetch_all(sql)
                .await?
                .iter()
                .map(structure_from_row)
                .collect()
        }
    }

    /// One structure.
    fn structure(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StructureRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {STRUCTURE_COLUMNS} FROM structures WHERE site = $1 AND id = $2"
            ))
            .bind(site)
            .bind(id);
            let row = self.db().fetch_optional(sql).await?;
            row.as_ref().map(structure_from_row).transpose()
        }
    }

    /// Sets a structure's name and kind. `false` when there is no such structure.
    fn update_structure(
        &self,
        structure: &NewStructure,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            check_structure_ids(structure)?;
            let sql =
                Sql::new("UPDATE structures SET name = $1, kind = $2 WHERE site = $3 AND id = $4")
                    .bind(text_without_nul(&structure.name))
                    .bind(structure.kind.as_str())
                    .bind(&structure.site)
                    .bind(&structure.id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Deletes a structure. [`StoreError::InUse`] while assets are on it; `false`
    /// when there is no such structure.
    fn delete_structure(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let key = format!("{site}/{id}");
            let mut tx = self.db().begin_write().await?;
            let lock = tx.backend().for_update();
            let exists = Sql::new(format!(
                "SELECT 1 FROM structures WHERE site = $1 AND id = $2{lock}"
            ))
            .bind(site)
            .bind(id);
            if tx.fetch_optional(exists).await?.is_none() {
                return Ok(false);
            }
            let assets: bool = tx
                .fetch_one(
                    Sql::new(
                        "SELECT EXISTS (SELECT 1 FROM assets WHERE site = $1 AND structure = $2) \
                         AS assets",
                    )
                    .bind(site)
                    .bind(id),
                )
                .await?
                .get("assets")?;
            if let Some(err) = in_use("structure", &key, &[("assets", assets)]) {
                return Err(err);
            }
            let delete = Sql::new("DELETE FROM structures WHERE site = $1 AND id = $2")
                .bind(site)
                .bind(id);
            let done = tx.execute(delete).await.map_err(|e| {
                foreign_key_error(e, || StoreError::InUse {
                    what: format!("structure {key}"),
                })
            })?;
            tx.commit().await?;
            Ok(done > 0)
        }
    }

    /// Creates an asset. An unknown site, or structure in that site, is
    /// [`StoreError::NotFound`]; an existing (site, id) [`StoreError::AlreadyExists`].
    fn add_asset(
        &self,
        new: &NewAsset,
    ) -> impl Future<Output = Result<AssetRecord, StoreError>> + Send {
        async move {
            check_asset_ids(new)?;
            let asset = AssetRecord {
                site: new.site.clone(),
                structure: new.structure.clone(),
                id: new.id.clone(),
                name: text_without_nul(&new.name).into_owned(),
                phase: new.phase,
                component_class: new
                    .component_class
                    .as_deref()
                    .map(|c| text_without_nul(c).into_owned()),
                created_at: rows::to_micros(Utc::now()),
            };
            let insert = Sql::new(
                "INSERT INTO assets (site, id, structure, name, phase, component_class, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&asset.site)
            .bind(&asset.id)
            .bind(&asset.structure)
            .bind(&asset.name)
            .bind(asset.phase.map(Phase::as_str))
            .bind(&asset.component_class)
            .bind(asset.created_at);
            match self.db().execute(insert).await {
                Ok(_) => Ok(asset),
                Err(e) if is_foreign_key_violation(&e) => Err(missing_parent(self.db(), new).await),
                Err(e) => Err(unique_error(e, || StoreError::AlreadyExists {
                    what: "asset",
                    id: format!("{}/{}", new.site, new.id),
                })),
            }
        }
    }

    /// Assets, of one site or of all, by site and id.
    fn list_assets(
        &self,
        site: Option<&str>,
    ) -> impl Future<Output = Result<Vec<AssetRecord>, StoreError>> + Send {
        async move {
            let db = self.db();
            let order = db.backend().bytewise();
            let sql = Sql::new(format!(
                "SELECT {ASSET_COLUMNS} FROM assets WHERE CAST($1 AS TEXT) IS NULL OR site = $1 \
                 ORDER BY site{order}, id{order}"
            ))
            .bind(site);
            db.fetch_all(sql)
                .await?
                .iter()
                .map(asset_from_row)
                .collect()
        }
    }

    /// One asset.
    fn asset(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<AssetRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {ASSET_COLUMNS} FROM assets WHERE site = $1 AND id = $2"
            ))
            .bind(site)
            .bind(id);
            let row = self.db().fetch_optional(sql).await?;
            row.as_ref().map(asset_from_row).transpose()
        }
    }

    /// Sets an asset's structure, name, phase and class. An unknown structure is
    /// [`StoreError::NotFound`]; `false` when there is no such asset.
    fn update_asset(
        &self,
        asset: &NewAsset,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            check_asset_ids(asset)?;
            let sql = Sql::new(
                "UPDATE assets SET structure = $1, name = $2, phase = $3, component_class = $4 \
                 WHERE site = $5 AND id = $6",
            )
            .bind(&asset.structure)
            .bind(text_without_nul(&asset.name))
            .bind(asset.phase.map(Phase::as_str))
            .bind(asset.component_class.as_deref().map(text_without_nul))
            .bind(&asset.site)
            .bind(&asset.id);
            match self.db().execute(sql).await {
                Ok(done) => Ok(done > 0),
                Err(e) if is_foreign_key_violation(&e) => {
                    Err(missing_parent(self.db(), asset).await)
                }
                Err(e) => Err(e),
            }
        }
    }

    /// Deletes an asset (findings naming it keep their copy of the id). `false` when
    /// there is no such asset.
    fn delete_asset(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new("DELETE FROM assets WHERE site = $1 AND id = $2")
                .bind(site)
                .bind(id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }
}

impl<T: Backed> SiteStore for T {}

/// Why an asset's foreign key failed: its site, or else its structure, is missing.
async fn missing_parent(db: Db<'_>, asset: &NewAsset) -> StoreError {
    let site =
        Sql::new("SELECT EXISTS (SELECT 1 FROM sites WHERE id = $1) AS known").bind(&asset.site);
    match db
        .fetch_one(site)
        .await
        .and_then(|row| row.get::<bool>("known"))
    {
        Ok(false) => StoreError::NotFound {
            what: "site",
            id: asset.site.clone(),
        },
        Ok(true) => StoreError::NotFound {
            what: "structure",
            id: format!(
                "{}/{}",
                asset.site,
                asset.structure.as_deref().unwrap_or_default()
            ),
        },
        Err(e) => e,
    }
}

fn site_from_row(row: &Row) -> Result<SiteRecord, StoreError> {
    Ok(SiteRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        kind: SiteKind::parse_stored(&row.get::<String>("kind")?)?,
        created_at: row.time("created_at")?,
    })
}

fn structure_from_row(row: &Row) -> Result<StructureRecord, StoreError> {
    Ok(StructureRecord {
        site: row.get("site")?,
        id: row.get("id")?,
        name: row.get("name")?,
        kind: StructureKind::parse_stored(&row.get::<String>("kind")?)?,
        created_at: row.time("created_at")?,
    })
}

fn asset_from_row(row: &Row) -> Result<AssetRecord, StoreError> {
    let phase: Option<String> = row.get("phase")?;
    Ok(AssetRecord {
        site: row.get("site")?,
        structure: row.get("structure")?,
        id: row.get("id")?,
        name: row.get("name")?,
        phase: phase.as_deref().map(Phase::parse_stored).transpose()?,
        component_class: row.get("component_class")?,
        created_at: row.time("created_at")?,
    })
}
