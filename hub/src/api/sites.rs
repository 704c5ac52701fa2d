//! Sites, their structures (bays or towers) and their assets: the hierarchy findings
//! and alerts name (`site` → `structure` → `asset`).
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/sites` | viewer |
//! | `POST /api/v1/sites` | admin |
//! | `GET /api/v1/sites/{site}` (with its structures and assets) | viewer |
//! | `PATCH /api/v1/sites/{site}`, `DELETE /api/v1/sites/{site}` | admin |
//! | `GET /api/v1/sites/{site}/structures` | viewer |
//! | `POST /api/v1/sites/{site}/structures` | admin |
//! | `GET /api/v1/sites/{site}/structures/{structure}` | viewer |
//! | `PATCH`, `DELETE /api/v1/sites/{site}/structures/{structure}` | admin |
//! | `GET /api/v1/sites/{site}/assets` (`?structure=&component_class=&phase=`) | viewer |
//! | `POST /api/v1/sites/{site}/assets` | admin |
//! | `GET /api/v1/sites/{site}/assets/{asset}` | viewer |
//! | `PATCH`, `DELETE /api/v1/sites/{site}/assets/{asset}` | admin |
//!
//! Ids are `[a-z0-9-]{1,64}` (as in MQTT topics) and never change: a PATCH changes
//! names, kinds and an asset's placement only. A duplicate id is 409, a missing parent
//! (site, structure) 404 naming it, and a delete of what is still referred to (a site
//! with structures, assets or gateways; a structure with assets) 409 naming what refers
//! to it. Every change is written to the audit log (`site.*`, `structure.*`, `asset.*`).
//!
//! Lists are whole (a site has tens of structures and hundreds of assets, not
//! millions) and keep the API's list shape `{items, next_cursor}`, with `next_cursor`
//! always `null`.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{audit, enum_schema, ApiJson, ApiQuery, ApiState, ListPage};
use crate::store::SiteStore;
use crate::store::{
    AssetRecord, NewAsset, NewSite, NewStructure, Phase, Role, SiteKind, SiteRecord, StructureKind,
    StructureRecord,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest component class, in characters.
pub const MAX_COMPONENT_CLASS_CHARS: usize = 64;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_sites, create_site))
        .routes(routes!(site, update_site, delete_site))
        .routes(routes!(list_structures, create_structure))
        .routes(routes!(structure, update_structure, delete_structure))
        .routes(routes!(list_assets, create_asset))
        .routes(routes!(asset, update_asset, delete_asset))
}

// The store's enums carry serde but no schema; these describe them for OpenAPI. A unit
// test checks that every value listed here parses, so the two cannot drift apart.
const SITE_KINDS: [&str; 2] = ["substation", "line"];
const STRUCTURE_KINDS: [&str; 2] = ["bay", "tower"];
const PHASES: [&str; 3] = ["A", "B", "C"];

fn site_kind_schema() -> Object {
    enum_schema(&SITE_KINDS, false, "What the site is")
}

fn structure_kind_schema() -> Object {
    enum_schema(&STRUCTURE_KINDS, false, "What the structure is")
}

fn site_kind_patch_schema() -> Object {
    enum_schema(
        &SITE_KINDS,
        true,
        "What the site is; absent or `null` keeps it",
    )
}

fn structure_kind_patch_schema() -> Object {
    enum_schema(
        &STRUCTURE_KINDS,
        true,
        "What the structure is; absent or `null` keeps it",
    )
}

fn phase_filter_schema() -> Object {
    enum_schema(&PHASES, false, "Only assets on this phase")
}

fn phase_schema() -> Object {
    enum_schema(&PHASES, true, "The electrical phase, if it has one")
}

/// A 400 unless `value` is `[a-z0-9-]{1,64}`.
pub(crate) fn check_id(what: &'static str, value: &str) -> Result<(), ApiError> {
    chitti_common::protocol::validate_id(what, value)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A display name, trimmed; a 400 when it is empty once trimmed, was sent longer than
/// [`MAX_NAME_CHARS`] or has control characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<String, ApiError> {
    // The bound is on what was sent, as the schema's `maxLength` says.
    let sent_chars = name.chars().count();
    let name = name.trim();
    if name.is_empty() || sent_chars > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "a {what} name is 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a {what} name has no control characters"
        )));
    }
    Ok(name.to_string())
}

/// A component class as the detector names it (`bushing`, `clamp` …): 1 to 64
/// characters, no whitespace or control characters.
fn check_component_class(class: &str) -> Result<(), ApiError> {
    let ok = !class.is_empty()
        && class.chars().count() <= MAX_COMPONENT_CLASS_CHARS
        && !class.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "a component class is 1 to {MAX_COMPONENT_CLASS_CHARS} characters without whitespace"
        )))
    }
}

/// For PATCH bodies: tells "absent" (keep) from `null` (clear). With
/// `#[serde(default)]`, an absent field is `None` and a present one `Some(value)`,
/// `null` included.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The site, or a 404 naming it.
async fn existing_site(s: &ApiState, site: &str) -> Result<SiteRecord, ApiError> {
    check_id("site", site)?;
    s.store
        .site(site)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site {site}")))
}

/// A site as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SiteView {
    /// Site id, `[a-z0-9-]{1,64}`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `substation` or `line`.
    #[schema(schema_with = site_kind_schema)]
    pub kind: SiteKind,
    /// When created.
    pub created_at: DateTime<Utc>,
}

impl From<SiteRecord> for SiteView {
    fn from(s: SiteRecord) -> Self {
        Self {
            id: s.id,
            name: s.name,
            kind: s.kind,
            created_at: s.created_at,
        }
    }
}

/// A structure (bay or tower) as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StructureView {
    /// The site it is in.
    pub site: String,
    /// Structure id, unique within the site.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `bay` or `tower`.
    #[schema(schema_with = structure_kind_schema)]
    pub kind: StructureKind,
    /// When created.
    pub created_at: DateTime<Utc>,
}

impl From<StructureRecord> for StructureView {
    fn from(s: StructureRecord) -> Self {
        Self {
            site: s.site,
            id: s.id,
            name: s.name,
            kind: s.kind,
            created_at: s.created_at,
        }
    }
}

/// An asset (a piece of equipment) as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssetView {
    /// The site it is in.
    pub site: String,
    /// Asset id, unique within the site: what findings name as `asset`.
    pub id: String,
    /// The structure it is on, if any.
    pub structure: Option<String>,
    /// Display name.
    pub name: String,
    /// The electrical phase.
    #[schema(schema_with = phase_schema)]
    pub phase: Option<Phase>,
    /// Component class, as the detector names it.
    pub component_class: Option<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

impl From<AssetRecord> for AssetView {
    fn from(a: AssetRecord) -> Self {
        Self {
            site: a.site,
            id: a.id,
            structure: a.structure,
            name: a.name,
            phase: a.phase,
            component_class: a.component_class,
            created_at: a.created_at,
        }
    }
}

/// A structure with the assets on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StructureWithAssets {
    /// The structure.
    #[serde(flatten)]
    pub structure: StructureView,
    /// Its assets, by id.
    pub assets: Vec<AssetView>,
}

/// A site with its hierarchy.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteDetail {
    /// The site.
    #[serde(flatten)]
    pub site: SiteView,
    /// Its structures, by id, each with its assets.
    pub structures: Vec<StructureWithAssets>,
    /// Its assets on no structure, by id.
    pub assets_without_structure: Vec<AssetView>,
}

/// A site to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSiteRequest {
    /// Site id, `[a-z0-9-]{1,64}`; the `{site}` of the gateways' topics.
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub id: String,
    /// Display name, 1 to 200 characters (trimmed), no control characters.
    #[schema(
        max_length = 200,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// `substation` or `line`.
    #[schema(schema_with = site_kind_schema)]
    pub kind: SiteKind,
}

/// Changes to a site; absent fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    /// New display name.
    #[schema(
        max_length = 200,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: Option<String>,
    /// New kind.
    #[schema(schema_with = site_kind_patch_schema)]
    pub kind: Option<SiteKind>,
}

/// A structure to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStructureRequest {
    /// Structure id, `[a-z0-9-]{1,64}`, unique within the site.
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub id: String,
    /// Display name, 1 to 200 characters (trimmed), no control characters.
    #[schema(
        max_length = 200,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// `bay` or `tower`.
    #[schema(schema_with = structure_kind_schema)]
    pub kind: StructureKind,
}

/// Changes to a structure; absent fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StructurePatch {
    /// New display name.
    #[schema(
        max_length = 200,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: Option<String>,
    /// New kind.
    #[schema(schema_with = structure_kind_patch_schema)]
    pub kind: Option<StructureKind>,
}

/// An asset to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAssetRequest {
    /// Asset id, `[a-z0-9-]{1,64}`, unique within the site.
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub id: String,
    /// Display name, 1 to 200 characters (trimmed), no control characters.
    #[schema(
        max_length = 200,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// The structure it is on (in the same site).
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub structure: Option<String>,
    /// The electrical phase.
    #[serde(default)]
    #[schema(schema_with = phase_schema)]
    pub phase: Option<Phase>,
    /// Component class (`bushing`, `clamp` …): 1 to 64 characters, no whitespace.
    #[serde(default)]
    #[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,64}$")]
    pub component_class: Option<String>,
}

/// Changes to an asset: absent fields are kept, `null` clears `structure`, `phase` and
/// `component_class`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetPatch {
    /// New display name.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: Option<String>,
    /// Another structure (in the same site), or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[a-z0-9-]{1,64}$")]
    pub structure: Option<Option<String>>,
    /// Another phase, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = phase_schema)]
    pub phase: Option<Option<Phase>>,
    /// Another component class, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,64}$")]
    pub component_class: Option<Option<String>>,
}

/// Filters of the asset list; they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AssetParams {
    /// Only assets on this structure.
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub structure: Option<String>,
    /// Only assets of this component class.
    pub component_class: Option<String>,
    /// Only assets on this phase (`A`, `B`, `C`).
    #[param(schema_with = phase_filter_schema)]
    pub phase: Option<Phase>,
}

/// Every site, by id.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "sites",
    responses(
        (status = 200, description = "Every site, by id", body = ListPage<SiteView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_sites(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<SiteView>>, ApiError> {
    p.require(Role::Viewer)?;
    let sites = s.store.list_sites().await?;
    Ok(Json(ListPage::whole(
        sites.into_iter().map(SiteView::from).collect(),
    )))
}

/// Creates a site.
#[utoipa::path(
    post,
    path = "/api/v1/sites",
    tag = "sites",
    request_body = NewSiteRequest,
    responses(
        (status = 201, description = "Created", body = SiteView),
        (status = 400, description = "An invalid id, name or kind, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_site(
    State(s): State<ApiState>,
    p: Principal,
    ApiJson(req): ApiJson<NewSiteRequest>,
) -> Result<(StatusCode, Json<SiteView>), ApiError> {
    p.require(Role::Admin)?;
    check_id("site", &req.id)?;
    let name = check_name("site", &req.name)?;
    let site = s
        .store
        .add_site(&NewSite {
            id: req.id,
            name,
            kind: req.kind,
        })
        .await?;
    audit(
        &s,
        &p,
        "site.create",
        &site.id,
        json!({ "name": site.name, "kind": site.kind }),
    )
    .await?;
    tracing::info!(site = %site.id, actor = %p.actor(), "site created");
    Ok((StatusCode::CREATED, Json(SiteView::from(site))))
}

/// One site with its structures and assets.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id")),
    responses(
        (status = 200, description = "The site and its hierarchy", body = SiteDetail),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn site(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
) -> Result<Json<SiteDetail>, ApiError> {
    p.require(Role::Viewer)?;
    let record = existing_site(&s, &site).await?;
    let structures = s.store.list_structures(&site).await?;
    let assets = s.store.list_assets(Some(&site)).await?;
    // Both lists come by id; partition keeps that order within each structure.
    let mut nodes: Vec<StructureWithAssets> = structures
        .into_iter()
        .map(|st| StructureWithAssets {
            structure: StructureView::from(st),
            assets: Vec::new(),
        })
        .collect();
    let mut assets_without_structure = Vec::new();
    for a in assets {
        let node = a
            .structure
            .as_deref()
            .and_then(|id| nodes.iter_mut().find(|n| n.structure.id == id));
        match node {
            Some(n) => n.assets.push(AssetView::from(a)),
            // The foreign key keeps an asset's structure in the site; a structure that
            // vanished between the two reads leaves its assets here rather than lost.
            None => assets_without_structure.push(AssetView::from(a)),
        }
    }
    Ok(Json(SiteDetail {
        site: SiteView::from(record),
        structures: nodes,
        assets_without_structure,
    }))
}

/// Renames a site or changes its kind.
#[utoipa::path(
    patch,
    path = "/api/v1/sites/{site}",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id")),
    request_body = SitePatch,
    responses(
        (status = 200, description = "The site as it now is", body = SiteView),
        (status = 400, description = "An invalid name or kind, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_site(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
    ApiJson(patch): ApiJson<SitePatch>,
) -> Result<Json<SiteView>, ApiError> {
    p.require(Role::Admin)?;
    let before = existing_site(&s, &site).await?;
    let name = match &patch.name {
        Some(n) => check_name("site", n)?,
        None => before.name.clone(),
    };
    let kind = patch.kind.unwrap_or(before.kind);
    // Read-modify-write without a lock: two admins editing one site at once each win
    // for the whole row, which is acceptable for names and kinds.
    let updated = s
        .store
        .update_site(&NewSite {
            id: site.clone(),
            name: name.clone(),
            kind,
        })
        .await?;
    if !updated {
        return Err(ApiError::not_found(format!("site {site}")));
    }
    audit(
        &s,
        &p,
        "site.update",
        &site,
        json!({
            "before": { "name": before.name, "kind": before.kind },
            "after": { "name": name, "kind": kind },
        }),
    )
    .await?;
    Ok(Json(SiteView {
        name,
        kind,
        ..SiteView::from(before)
    }))
}

/// Deletes a site that nothing refers to any more.
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "Structures, assets or gateways are still in the site (the message names which)", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn delete_site(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    check_id("site", &site)?;
    if !s.store.delete_site(&site).await? {
        return Err(ApiError::not_found(format!("site {site}")));
    }
    audit(&s, &p, "site.delete", &site, serde_json::Value::Null).await?;
    tracing::info!(%site, actor = %p.actor(), "site deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A site's structures, by id.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/structures",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id")),
    responses(
        (status = 200, description = "The site's structures, by id", body = ListPage<StructureView>),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_structures(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
) -> Result<Json<ListPage<StructureView>>, ApiError> {
    p.require(Role::Viewer)?;
    existing_site(&s, &site).await?;
    let structures = s.store.list_structures(&site).await?;
    Ok(Json(ListPage::whole(
        structures.into_iter().map(StructureView::from).collect(),
    )))
}

/// Creates a structure (bay or tower) in a site.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/structures",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id")),
    request_body = NewStructureRequest,
    responses(
        (status = 201, description = "Created", body = StructureView),
        (status = 400, description = "An invalid id, name or kind, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The id is taken in this site", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_structure(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
    ApiJson(req): ApiJson<NewStructureRequest>,
) -> Result<(StatusCode, Json<StructureView>), ApiError> {
    p.require(Role::Admin)?;
    check_id("site", &site)?;
    check_id("structure", &req.id)?;
    let name = check_name("structure", &req.name)?;
    // An unknown site is the store's NotFound (a foreign key), hence 404.
    let structure = s
        .store
        .add_structure(&NewStructure {
            site,
            id: req.id,
            name,
            kind: req.kind,
        })
        .await?;
    audit(
        &s,
        &p,
        "structure.create",
        &format!("{}/{}", structure.site, structure.id),
        json!({ "name": structure.name, "kind": structure.kind }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(StructureView::from(structure))))
}

/// The structure, or a 404 naming it (or its site).
async fn existing_structure(
    s: &ApiState,
    site: &str,
    id: &str,
) -> Result<StructureRecord, ApiError> {
    check_id("site", site)?;
    check_id("structure", id)?;
    match s.store.structure(site, id).await? {
        Some(st) => Ok(st),
        None => {
            existing_site(s, site).await?;
            Err(ApiError::not_found(format!("structure {site}/{id}")))
        }
    }
}

/// One structure.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/structures/{structure}",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("structure" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Structure id"),
    ),
    responses(
        (status = 200, description = "The structure", body = StructureView),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site or structure", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn structure(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, id)): Path<(String, String)>,
) -> Result<Json<StructureView>, ApiError> {
    p.require(Role::Viewer)?;
    let st = existing_structure(&s, &site, &id).await?;
    Ok(Json(StructureView::from(st)))
}

/// Renames a structure or changes its kind.
#[utoipa::path(
    patch,
    path = "/api/v1/sites/{site}/structures/{structure}",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("structure" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Structure id"),
    ),
    request_body = StructurePatch,
    responses(
        (status = 200, description = "The structure as it now is", body = StructureView),
        (status = 400, description = "An invalid name or kind, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site or structure", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_structure(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<StructurePatch>,
) -> Result<Json<StructureView>, ApiError> {
    p.require(Role::Admin)?;
    let before = existing_structure(&s, &site, &id).await?;
    let name = match &patch.name {
        Some(n) => check_name("structure", n)?,
        None => before.name.clone(),
    };
    let kind = patch.kind.unwrap_or(before.kind);
    let updated = s
        .store
        .update_structure(&NewStructure {
            site: site.clone(),
            id: id.clone(),
            name: name.clone(),
            kind,
        })
        .await?;
    if !updated {
        return Err(ApiError::not_found(format!("structure {site}/{id}")));
    }
    audit(
        &s,
        &p,
        "structure.update",
        &format!("{site}/{id}"),
        json!({
            "before": { "name": before.name, "kind": before.kind },
            "after": { "name": name, "kind": kind },
        }),
    )
    .await?;
    Ok(Json(StructureView {
        name,
        kind,
        ..StructureView::from(before)
    }))
}

/// Deletes a structure with no assets on it.
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}/structures/{structure}",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("structure" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Structure id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site or structure", body = ErrorBody),
        (status = 409, description = "Assets are still on it", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn delete_structure(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    check_id("site", &site)?;
    check_id("structure", &id)?;
    if !s.store.delete_structure(&site, &id).await? {
        // Say which is missing: the site or only the structure.
        existing_site(&s, &site).await?;
        return Err(ApiError::not_found(format!("structure {site}/{id}")));
    }
    audit(
        &s,
        &p,
        "structure.delete",
        &format!("{site}/{id}"),
        serde_json::Value::Null,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A site's assets, by id, filtered.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/assets",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"), AssetParams),
    responses(
        (status = 200, description = "The site's assets that match, by id", body = ListPage<AssetView>),
        (status = 400, description = "An invalid id or filter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_assets(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
    ApiQuery(q): ApiQuery<AssetParams>,
) -> Result<Json<ListPage<AssetView>>, ApiError> {
    p.require(Role::Viewer)?;
    if let Some(st) = &q.structure {
        check_id("structure", st)?;
    }
    existing_site(&s, &site).await?;
    let assets = s.store.list_assets(Some(&site)).await?;
    let items = assets
        .into_iter()
        .filter(|a| q.structure.is_none() || a.structure == q.structure)
        .filter(|a| q.component_class.is_none() || a.component_class == q.component_class)
        .filter(|a| q.phase.is_none() || a.phase == q.phase)
        .map(AssetView::from)
        .collect();
    Ok(Json(ListPage::whole(items)))
}

/// Creates an asset in a site, on a structure or on none.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/assets",
    tag = "sites",
    params(("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id")),
    request_body = NewAssetRequest,
    responses(
        (status = 201, description = "Created", body = AssetView),
        (status = 400, description = "An invalid id, name, phase or class, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site, or no such structure in it", body = ErrorBody),
        (status = 409, description = "The id is taken in this site", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_asset(
    State(s): State<ApiState>,
    p: Principal,
    Path(site): Path<String>,
    ApiJson(req): ApiJson<NewAssetRequest>,
) -> Result<(StatusCode, Json<AssetView>), ApiError> {
    p.require(Role::Admin)?;
    check_id("site", &site)?;
    check_id("asset", &req.id)?;
    if let Some(st) = &req.structure {
        check_id("structure", st)?;
    }
    if let Some(c) = &req.component_class {
        check_component_class(c)?;
    }
    let name = check_name("asset", &req.name)?;
    let asset = s
        .store
        .add_asset(&NewAsset {
            site,
            structure: req.structure,
            id: req.id,
            name,
            phase: req.phase,
            component_class: req.component_class,
        })
        .await?;
    audit(
        &s,
        &p,
        "asset.create",
        &format!("{}/{}", asset.site, asset.id),
        json!({
            "name": asset.name,
            "structure": asset.structure,
            "phase": asset.phase,
            "component_class": asset.component_class,
        }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(AssetView::from(asset))))
}

/// The asset, or a 404 naming it (or its site).
pub(crate) async fn existing_asset(
    s: &ApiState,
    site: &str,
    id: &str,
) -> Result<AssetRecord, ApiError> {
    check_id("site", site)?;
    check_id("asset", id)?;
    match s.store.asset(site, id).await? {
        Some(a) => Ok(a),
        None => {
            existing_site(s, site).await?;
            Err(ApiError::not_found(format!("asset {site}/{id}")))
        }
    }
}

/// One asset.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/assets/{asset}",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("asset" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Asset id"),
    ),
    responses(
        (status = 200, description = "The asset", body = AssetView),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site or asset", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn asset(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, id)): Path<(String, String)>,
) -> Result<Json<AssetView>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(AssetView::from(existing_asset(&s, &site, &id).await?)))
}

/// Renames an asset, moves it to another structure or none, or changes its phase or
/// class.
#[utoipa::path(
    patch,
    path = "/api/v1/sites/{site}/assets/{asset}",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("asset" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Asset id"),
    ),
    request_body = AssetPatch,
    responses(
        (status = 200, description = "The asset as it now is", body = AssetView),
        (status = 400, description = "An invalid name, structure id, phase or class, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site, asset or structure", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_asset(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<AssetPatch>,
) -> Result<Json<AssetView>, ApiError> {
    p.require(Role::Admin)?;
    let before = existing_asset(&s, &site, &id).await?;
    let name = match &patch.name {
        Some(n) => check_name("asset", n)?,
        None => before.name.clone(),
    };
    let structure = patch.structure.unwrap_or_else(|| before.structure.clone());
    if let Some(st) = &structure {
        check_id("structure", st)?;
    }
    let component_class = patch
        .component_class
        .unwrap_or_else(|| before.component_class.clone());
    if let Some(c) = &component_class {
        check_component_class(c)?;
    }
    let after = NewAsset {
        site: site.clone(),
        structure,
        id: id.clone(),
        name,
        phase: patch.phase.unwrap_or(before.phase),
        component_class,
    };
    // A structure not in the site is the store's NotFound (a foreign key), hence 404.
    if !s.store.update_asset(&after).await? {
        return Err(ApiError::not_found(format!("asset {site}/{id}")));
    }
    audit(
        &s,
        &p,
        "asset.update",
        &format!("{site}/{id}"),
        json!({
            "before": {
                "name": before.name,
                "structure": before.structure,
                "phase": before.phase,
                "component_class": before.component_class,
            },
            "after": {
                "name": after.name,
                "structure": after.structure,
                "phase": after.phase,
                "component_class": after.component_class,
            },
        }),
    )
    .await?;
    Ok(Json(AssetView {
        site: after.site,
        id: after.id,
        structure: after.structure,
        name: after.name,
        phase: after.phase,
        component_class: after.component_class,
        created_at: before.created_at,
    }))
}

/// Deletes an asset (findings that name it keep their copy of the id).
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}/assets/{asset}",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("asset" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Asset id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such site or asset", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn delete_asset(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    check_id("site", &site)?;
    check_id("asset", &id)?;
    if !s.store.delete_asset(&site, &id).await? {
        existing_site(&s, &site).await?;
        return Err(ApiError::not_found(format!("asset {site}/{id}")));
    }
    audit(
        &s,
        &p,
        "asset.delete",
        &format!("{site}/{id}"),
        serde_json::Value::Null,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_enums_list_exactly_the_store_values() {
        for v in SITE_KINDS {
            assert_eq!(v.parse::<SiteKind>().unwrap().as_str(), v);
        }
        for v in STRUCTURE_KINDS {
            assert_eq!(v.parse::<StructureKind>().unwrap().as_str(), v);
        }
        for v in PHASES {
            assert_eq!(v.parse::<Phase>().unwrap().as_str(), v);
        }
        // And no value is missing: every variant's name is listed.
        for k in [SiteKind::Substation, SiteKind::Line] {
            assert!(SITE_KINDS.contains(&k.as_str()));
        }
        for k in [StructureKind::Bay, StructureKind::Tower] {
            assert!(STRUCTURE_KINDS.contains(&k.as_str()));
        }
        for k in [Phase::A, Phase::B, Phase::C] {
            assert!(PHASES.contains(&k.as_str()));
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("site", "  North yard ").unwrap(), "North yard");
        assert!(check_name("site", "   ").is_err());
        assert!(check_name("site", &"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(check_name("site", &"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(check_name("site", "bay\u{7}").is_err());
        assert!(check_component_class("bushing").is_ok());
        assert!(check_component_class("two words").is_err());
        assert!(check_component_class("").is_err());
    }

    #[test]
    fn a_patch_tells_absent_from_null() {
        let p: AssetPatch = serde_json::from_str(r#"{"structure": null}"#).unwrap();
        assert_eq!(p.structure, Some(None));
        assert_eq!(p.phase, None);
        let p: AssetPatch = serde_json::from_str(r#"{"phase": "B"}"#).unwrap();
        assert_eq!(p.phase, Some(Some(Phase::B)));
        assert!(serde_json::from_str::<AssetPatch>(r#"{"colour": "red"}"#).is_err());
    }
}
