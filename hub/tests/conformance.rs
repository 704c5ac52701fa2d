//! One suite, every backend: each test body below runs against SQLite (a temporary
//! file) and Postgres (a fresh `chitti_test_<random>` database, dropped afterwards;
//! `CHITTI_TEST_POSTGRES_URL` overrides the admin URL).

mod support;

use chitti_common::finding::{Finding, FindingSource, TrackState};
use chitti_common::protocol::{AgentStatus, BufferStatus, CameraStatus, EvictionCounts, Telemetry};
use chitti_hub::store::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::HashSet;
use support::{at, cool_finding, finding, ingested};
use uuid::Uuid;

/// Instantiates every body for both backends. `fresh` bodies get an unmigrated
/// database, `migrated` ones a migrated one.
macro_rules! conformance {
    (fresh: [$($fresh:ident),* $(,)?], migrated: [$($test:ident),* $(,)?] $(,)?) => {
        conformance!(@backend sqlite, "sqlite", [$($fresh),*], [$($test),*]);
        conformance!(@backend postgres, "postgres", [$($fresh),*], [$($test),*]);
    };
    (@backend $module:ident, $backend:literal, [$($fresh:ident),*], [$($test:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $fresh() {
                    let db = crate::support::TestDb::fresh($backend).await;
                    super::$fresh(&db.store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $test() {
                    let db = crate::support::TestDb::migrated($backend).await;
                    super::$test(&db.store).await;
                }
            )*
        }
    };
}

conformance! {
    fresh: [migrations_apply_idempotently_and_report_status],
    migrated: [
        a_duplicate_batch_is_stored_once,
        a_batch_mixing_new_and_known_ids,
        a_finding_reads_back_with_both_clocks,
        findings_of_one_track_make_one_alert,
        a_cool_exception_marks_its_alert,
        alerts_stored_before_the_cool_exception_column_are_backfilled,
        operator_actions_move_the_alert_and_are_audited,
        a_ten_thousand_finding_batch_is_one_call,
        concurrent_batches_store_each_id_once,
        keyset_pages_return_every_row_once_in_order,
        filters_select_the_right_findings,
        alerts_page_and_filter,
        alerts_page_in_every_order_while_rows_arrive,
        text_search_track_and_alert_filters,
        cursors_are_checked,
        an_unstorable_finding_rejects_the_whole_batch,
        findings_and_their_audit_record_commit_together,
        gateways_enrol_list_revoke_and_look_up,
        status_updates_gateway_and_cameras,
        telemetry_is_downsampled_to_minutes,
        dead_letters_are_kept_byte_exact,
        dead_letters_filter_page_and_group,
        dead_letters_stored_before_their_class_and_gateway_columns_are_backfilled,
        users_are_added_looked_up_disabled_and_promoted,
        sessions_authenticate_until_they_expire,
        api_tokens_authenticate_until_revoked,
        a_disabled_user_is_shut_out,
        sites_structures_and_assets_form_a_hierarchy,
        deletes_are_refused_while_in_use,
        invalid_ids_are_rejected,
        evidence_is_recorded_once,
        the_audit_log_appends_and_lists_newest_first,
        the_audit_log_filters_and_pages,
        the_audit_chain_detects_edits_inserts_and_deletes,
        concurrent_appends_make_one_chain,
        pseudonymising_a_user_keeps_the_chain,
        audit_rows_written_before_the_chain_are_chained_on_migrate,
        retention_removes_expired_findings_but_never_open_held_or_kept_ones,
        retention_collects_only_evidence_nothing_refers_to,
        retention_rolls_telemetry_minutes_into_hours_and_expires_them,
        retention_expires_dead_letters_and_one_holder_has_the_lease,
        an_asset_trend_buckets_max_delta_level_and_inspections,
    ],
}

async fn migrations_apply_idempotently_and_report_status<S: Store>(s: &S) {
    s.ping().await.unwrap();
    let before = s.migration_status().await.unwrap();
    assert!(!before.is_empty());
    assert!(before.iter().all(|m| !m.applied), "{before:?}");
    s.migrate().await.unwrap();
    let after = s.migration_status().await.unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|m| m.applied), "{after:?}");
    assert_eq!(after[0].description, "initial");
    assert_eq!(after[1].description, "sessions audit");
    assert!(after.windows(2).all(|w| w[0].version < w[1].version));
    s.migrate().await.unwrap();
    assert_eq!(s.migration_status().await.unwrap(), after);
    assert_eq!(s.count_findings().await.unwrap(), 0);
}

fn ids(findings: &[Finding]) -> Vec<Uuid> {
    findings.iter().map(|f| f.id).collect()
}

async fn a_duplicate_batch_is_stored_once<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    let fs: Vec<Finding> = (0..5)
        .map(|i| finding(track, 1, 40.0 + i as f64, i * 1000))
        .collect();
    let first = s.insert_findings(&ingested(&fs, at(10_000))).await.unwrap();
    assert_eq!(first.inserted, ids(&fs));
    assert!(first.duplicates.is_empty());
    let second = s.insert_findings(&ingested(&fs, at(20_000))).await.unwrap();
    assert!(second.inserted.is_empty());
    assert_eq!(second.duplicates, ids(&fs));
    assert_eq!(second.committed().collect::<Vec<_>>(), ids(&fs));
    assert_eq!(s.count_findings().await.unwrap(), 5);
    // The first copy stays: a resend does not move the finding in time.
    let stored = s.finding(fs[0].id).await.unwrap().unwrap();
    assert_eq!(stored.received_at, at(10_000));
    assert_eq!(stored.finding, fs[0]);
    assert!(s.finding(Uuid::now_v7()).await.unwrap().is_none());
}

async fn a_batch_mixing_new_and_known_ids<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    let known: Vec<Finding> = (0..3).map(|i| finding(track, 1, 40.0, i)).collect();
    s.insert_findings(&ingested(&known, at(0))).await.unwrap();
    let (new1, new2) = (finding(track, 2, 50.0, 10), finding(track, 2, 51.0, 11));
    let batch = vec![
        known[0].clone(),
        new1.clone(),
        known[1].clone(),
        new2.clone(),
        new1.clone(),
    ];
    let report = s
        .insert_findings(&ingested(&batch, at(1000)))
        .await
        .unwrap();
    assert_eq!(report.inserted, vec![new1.id, new2.id]);
    assert_eq!(report.duplicates, vec![known[0].id, known[1].id, new1.id]);
    assert_eq!(s.count_findings().await.unwrap(), 5);
    assert_eq!(
        s.insert_findings(&[]).await.unwrap(),
        InsertReport::default()
    );
    // The repeat within the batch did not count twice on the alert either.
    let alerts = s.list_alerts(&AlertQuery::default()).await.unwrap().items;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].finding_count, 5);
}

async fn a_finding_reads_back_with_both_clocks<S: Store>(s: &S) {
    let mut f = finding(Uuid::now_v7(), 3, 81.4, 0);
    f.observed_at += Duration::nanoseconds(123_456_789);
    f.captured_at = DateTime::parse_from_rfc3339("2026-11-23T03:12:45.120987654+05:30").unwrap();
    f.source = FindingSource::Rjpeg;
    f.historical = true;
    f.component = None;
    f.asset = None;
    let received = at(5000) + Duration::nanoseconds(987_654_321);
    let batch = ingested(std::slice::from_ref(&f), received);
    s.insert_findings(&batch).await.unwrap();
    let stored = s.finding(f.id).await.unwrap().unwrap();
    // The finding is kept whole (its JSON keeps nanoseconds and the camera's offset).
    assert_eq!(stored.finding, f);
    assert_eq!(
        stored.finding.captured_at.offset().local_minus_utc(),
        19_800
    );
    // The hub's clock is stored to the microsecond on both backends.
    assert_eq!(
        stored.received_at,
        at(5000) + Duration::microseconds(987_654)
    );
    assert_eq!(stored.batch_id, batch[0].batch_id);
}

fn with_state(mut f: Finding, state: TrackState) -> Finding {
    f.track.state = state;
    f
}

async fn alert_of<S: Store>(s: &S, track: Uuid) -> AlertRecord {
    let all = s
        .list_alerts(&AlertQuery {
            limit: 1000,
            ..AlertQuery::default()
        })
        .await
        .unwrap()
        .items;
    let mine: Vec<_> = all.into_iter().filter(|a| a.track_id == track).collect();
    assert_eq!(mine.len(), 1, "one alert per track");
    mine.into_iter().next().unwrap()
}

async fn findings_of_one_track_make_one_alert<S: Store>(s: &S) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let f1 = finding(a, 1, 40.0, 1000);
    let f2 = with_state(finding(a, 3, 80.0, 2000), TrackState::Updated);
    let f3 = with_state(finding(a, 2, 60.0, 3000), TrackState::Updated);
    let g1 = finding(b, 1, 41.0, 1500);
    s.insert_findings(&ingested(
        &[f1.clone(), f2.clone(), f3.clone(), g1.clone()],
        at(10_000),
    ))
    .await
    .unwrap();
    let alert = alert_of(s, a).await;
    assert_eq!(
        (
            alert.worst_level,
            alert.worst_max_c,
            alert.last_level,
            alert.last_max_c
        ),
        (3, Some(80.0), 2, Some(60.0))
    );
    assert_eq!(alert.finding_count, 3);
    assert_eq!(
        (alert.first_finding_id, alert.last_finding_id),
        (Some(f1.id), Some(f3.id))
    );
    assert_eq!(
        (alert.first_finding_at, alert.last_finding_at),
        (at(1000), at(3000))
    );
    assert_eq!(alert.status, AlertStatus::Open);
    assert_eq!(alert.cleared_at, None);
    assert!(!alert.cool_exception);
    assert_eq!(alert.created_at, at(10_000));
    assert_eq!(
        (alert.site.as_str(), alert.camera.as_str()),
        ("north-yard", "cam-1")
    );
    assert_eq!(alert.asset.as_deref(), Some("bay3-breaker-b"));
    assert_eq!(s.alert(alert.id).await.unwrap().as_ref(), Some(&alert));
    assert!(s.alert(Uuid::now_v7()).await.unwrap().is_none());
    assert_eq!(alert_of(s, b).await.finding_count, 1);

    // A resend changes nothing.
    s.insert_findings(&ingested(&[f2.clone(), f3.clone()], at(20_000)))
        .await
        .unwrap();
    assert_eq!(alert_of(s, a).await, alert);

    // A late, older finding (replayed from an outbox) counts, but is not the "last".
    let f0 = finding(a, 1, 45.0, 500);
    s.insert_findings(&ingested(std::slice::from_ref(&f0), at(30_000)))
        .await
        .unwrap();
    let late = alert_of(s, a).await;
    assert_eq!(late.finding_count, 4);
    assert_eq!((late.last_level, late.last_finding_id), (2, Some(f3.id)));
    assert_eq!(
        (late.first_finding_id, late.first_finding_at),
        (Some(f0.id), at(500))
    );
    assert_eq!(late.updated_at, at(30_000));
    assert_eq!(late.created_at, at(10_000));
    assert_eq!(late.id, alert.id);

    // Cleared: recorded, the worst level stays, the status is the operator's.
    let fc = with_state(finding(a, 0, 30.0, 4000), TrackState::Cleared);
    s.insert_findings(&ingested(&[fc.clone(), fc.clone()], at(40_000)))
        .await
        .unwrap();
    let cleared = alert_of(s, a).await;
    assert_eq!(cleared.cleared_at, Some(at(4000)));
    assert_eq!((cleared.worst_level, cleared.worst_max_c), (3, Some(80.0)));
    assert_eq!(
        (cleared.last_level, cleared.last_finding_id),
        (0, Some(fc.id))
    );
    assert_eq!(cleared.finding_count, 5);
    assert_eq!(cleared.status, AlertStatus::Open);
    // Another camera with the same track id is another alert.
    let mut other = finding(a, 1, 40.0, 1000);
    other.camera = "cam-2".into();
    s.insert_findings(&ingested(&[other], at(50_000)))
        .await
        .unwrap();
    assert_eq!(
        s.list_alerts(&AlertQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

/// An alert is a cool exception when any finding of its track is one: within a batch
/// (in either order), across batches (the merge keeps it), never undone.
async fn a_cool_exception_marks_its_alert<S: Store>(s: &S) {
    let (a, b, c, hot) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    s.insert_findings(&ingested(
        &[
            finding(a, 0, 24.0, 0),
            cool_finding(b, 21.0, 14.0, 0),
            finding(b, 0, 24.0, 100),
            finding(c, 0, 24.0, 0),
            cool_finding(c, 21.0, 14.0, 100),
            finding(hot, 3, 90.0, 0),
        ],
        at(1000),
    ))
    .await
    .unwrap();
    assert!(!alert_of(s, a).await.cool_exception);
    assert!(alert_of(s, b).await.cool_exception);
    assert!(alert_of(s, c).await.cool_exception);
    assert!(!alert_of(s, hot).await.cool_exception);
    s.insert_findings(&ingested(&[cool_finding(a, 21.5, 12.0, 100)], at(2000)))
        .await
        .unwrap();
    s.insert_findings(&ingested(
        &[finding(a, 0, 24.5, 200), finding(b, 0, 24.5, 200)],
        at(3000),
    ))
    .await
    .unwrap();
    let cool = alert_of(s, a).await;
    assert!(cool.cool_exception);
    assert_eq!((cool.worst_level, cool.finding_count), (0, 3));
    assert!(alert_of(s, b).await.cool_exception);
}

/// The migration that adds `alerts.cool_exception` fills it in from the findings: put
/// a database back to before it (the column dropped, the migration unrecorded) and
/// migrate again.
/// Runs `statements` on the store's own pool: a migration undone by hand, to see
/// that migrating again fills what was there before it.
async fn undo_migration(s: &AnyStore, statements: &[String]) {
    for sql in statements {
        match s {
            AnyStore::Sqlite(db) => sqlx::query(sql).execute(db.pool()).await.map(drop),
            AnyStore::Postgres(db) => sqlx::query(sql).execute(db.pool()).await.map(drop),
        }
        .unwrap();
    }
}

async fn alerts_stored_before_the_cool_exception_column_are_backfilled(s: &AnyStore) {
    const VERSION: i64 = 20261220000000;
    let (cool, hot) = (Uuid::now_v7(), Uuid::now_v7());
    s.insert_findings(&ingested(
        &[
            finding(cool, 0, 24.0, 0),
            cool_finding(cool, 21.0, 14.0, 100),
            finding(hot, 2, 70.0, 0),
        ],
        at(1000),
    ))
    .await
    .unwrap();
    let before = s.migration_status().await.unwrap();
    assert!(before.iter().any(|m| m.version == VERSION && m.applied));
    let undo = [
        "ALTER TABLE alerts DROP COLUMN cool_exception".to_string(),
        format!("DELETE FROM _sqlx_migrations WHERE version = {VERSION}"),
    ];
    undo_migration(s, &undo).await;
    assert!(s
        .migration_status()
        .await
        .unwrap()
        .iter()
        .any(|m| m.version == VERSION && !m.applied));
    s.migrate().await.unwrap();
    assert_eq!(s.migration_status().await.unwrap(), before);
    assert!(alert_of(s, cool).await.cool_exception);
    assert!(!alert_of(s, hot).await.cool_exception);
}

async fn operator_actions_move_the_alert_and_are_audited<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    s.insert_findings(&ingested(&[finding(track, 2, 60.0, 0)], at(0)))
        .await
        .unwrap();
    let alert = alert_of(s, track).await;
    let event = |kind, ms| NewAlertEvent {
        alert_id: alert.id,
        kind,
        actor: "asha".into(),
        at: at(ms),
        from_address: Some("10.0.0.7".into()),
        note: Some("seen on the dashboard".into()),
        detail: None,
    };
    let acked = s
        .record_alert_event(&event(AlertEventKind::Acknowledge, 1000))
        .await
        .unwrap();
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!(acked.status_changed_at, Some(at(1000)));
    let again = s
        .record_alert_event(&event(AlertEventKind::Acknowledge, 1500))
        .await;
    assert!(
        matches!(
            again,
            Err(StoreError::InvalidTransition {
                action: "acknowledge",
                status: "acknowledged"
            })
        ),
        "{again:?}"
    );
    let mut assign = event(AlertEventKind::Assign, 2000);
    assign.detail = Some(serde_json::json!({"assignee": "ravi"}));
    let assigned = s.record_alert_event(&assign).await.unwrap();
    assert_eq!(assigned.status, AlertStatus::Acknowledged);
    let resolved = s
        .record_alert_event(&event(AlertEventKind::Resolve, 3000))
        .await
        .unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    // A resolved alert stays resolved when a late finding of its track arrives.
    s.insert_findings(&ingested(&[finding(track, 3, 90.0, 100)], at(4000)))
        .await
        .unwrap();
    let after = alert_of(s, track).await;
    assert_eq!(
        (after.status, after.finding_count, after.worst_level),
        (AlertStatus::Resolved, 2, 3)
    );
    let reopened = s
        .record_alert_event(&event(AlertEventKind::Reopen, 5000))
        .await
        .unwrap();
    assert_eq!(reopened.status, AlertStatus::Open);
    let trail = s.alert_events(alert.id).await.unwrap();
    let kinds: Vec<_> = trail.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertEventKind::Acknowledge,
            AlertEventKind::Assign,
            AlertEventKind::Resolve,
            AlertEventKind::Reopen
        ]
    );
    assert_eq!(trail[1].event, assign);
    assert!(trail.windows(2).all(|w| w[0].id < w[1].id));
    let missing = s
        .record_alert_event(&NewAlertEvent {
            alert_id: Uuid::now_v7(),
            ..event(AlertEventKind::Comment, 0)
        })
        .await;
    assert!(
        matches!(missing, Err(StoreError::AlertNotFound(_))),
        "{missing:?}"
    );
}

async fn a_ten_thousand_finding_batch_is_one_call<S: Store>(s: &S) {
    let tracks: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    let fs: Vec<Finding> = (0..10_000)
        .map(|i| {
            finding(
                tracks[i % 100],
                ((i / 100) % 4) as u8,
                30.0 + (i % 50) as f64,
                i as i64,
            )
        })
        .collect();
    let batch = ingested(&fs, at(0));
    let report = s.insert_findings(&batch).await.unwrap();
    assert_eq!(report.inserted.len(), 10_000);
    assert_eq!(report.inserted, ids(&fs));
    assert_eq!(s.count_findings().await.unwrap(), 10_000);
    let alerts = s
        .list_alerts(&AlertQuery {
            limit: 1000,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.items.len(), 100);
    assert!(alerts.next_cursor.is_none());
    assert!(alerts
        .items
        .iter()
        .all(|a| a.finding_count == 100 && a.worst_level == 3));
    let again = s.insert_findings(&batch).await.unwrap();
    assert_eq!((again.inserted.len(), again.duplicates.len()), (0, 10_000));
    assert_eq!(s.count_findings().await.unwrap(), 10_000);
    let alerts = s
        .list_alerts(&AlertQuery {
            limit: 1000,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert!(alerts.items.iter().all(|a| a.finding_count == 100));
}

async fn concurrent_batches_store_each_id_once<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    let fs: Vec<Finding> = (0..600).map(|i| finding(track, 1, 40.0, i)).collect();
    // Two overlapping batches, in opposite orders, at the same time.
    let one = ingested(&fs[..400], at(0));
    let mut two = ingested(&fs[200..], at(0));
    two.reverse();
    let (r1, r2) = tokio::join!(s.insert_findings(&one), s.insert_findings(&two));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let inserted: HashSet<Uuid> = r1.inserted.iter().chain(&r2.inserted).copied().collect();
    assert_eq!(
        r1.inserted.len() + r2.inserted.len(),
        600,
        "each id inserted by exactly one"
    );
    assert_eq!(inserted, ids(&fs).into_iter().collect());
    assert_eq!(r1.duplicates.len() + r2.duplicates.len(), 200);
    assert_eq!(s.count_findings().await.unwrap(), 600);
    assert_eq!(alert_of(s, track).await.finding_count, 600);
}

/// Every id a query lists, page by page (cursors pass through their string form, as
/// they do through the API).
async fn all_pages<S: Store>(s: &S, query: &FindingQuery) -> (Vec<Uuid>, usize) {
    let mut query = query.clone();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.list_findings(&query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= query.limit as usize);
        out.extend(page.items.iter().map(|f| f.finding.id));
        match page.next_cursor {
            Some(c) => query.after = Some(Cursor::parse(&c.to_string()).unwrap()),
            None => return (out, pages),
        }
        assert!(pages < 10_000, "pagination does not end");
    }
}

/// Ingested findings with their own received_at each.
fn received(f: &Finding, at: DateTime<Utc>) -> IngestedFinding {
    IngestedFinding {
        finding: f.clone(),
        received_at: at,
        batch_id: Uuid::now_v7(),
    }
}

fn expected_order(rows: &[IngestedFinding], keep: impl Fn(&IngestedFinding) -> bool) -> Vec<Uuid> {
    let mut kept: Vec<_> = rows.iter().filter(|r| keep(r)).collect();
    kept.sort_by_key(|r| std::cmp::Reverse((r.received_at, r.finding.id)));
    kept.iter().map(|r| r.finding.id).collect()
}

async fn keyset_pages_return_every_row_once_in_order<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    // 25 distinct received_at values, 10 findings each: ties everywhere.
    let rows: Vec<IngestedFinding> = (0..250)
        .map(|i| received(&finding(track, 1, 40.0, i), at((i / 10) * 1000)))
        .collect();
    for chunk in rows.chunks(50) {
        s.insert_findings(chunk).await.unwrap();
    }
    let want = expected_order(&rows, |_| true);
    let (got, pages) = all_pages(
        s,
        &FindingQuery {
            limit: 7,
            ..FindingQuery::default()
        },
    )
    .await;
    assert_eq!(got, want);
    assert_eq!(pages, 250_usize.div_ceil(7));
    // Exactly one page when the limit covers everything; limits are clamped.
    let (got, pages) = all_pages(
        s,
        &FindingQuery {
            limit: 5000,
            ..FindingQuery::default()
        },
    )
    .await;
    assert_eq!((got.len(), pages), (250, 1));
    let one = s
        .list_findings(&FindingQuery {
            limit: 0,
            ..FindingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].finding.id, want[0]);
    // Rows arriving while a client pages (newer received_at) do not disturb its pages.
    let first = s
        .list_findings(&FindingQuery {
            limit: 100,
            ..FindingQuery::default()
        })
        .await
        .unwrap();
    let newer: Vec<IngestedFinding> = (0..20)
        .map(|i| received(&finding(track, 1, 40.0, 1000 + i), at(99_000)))
        .collect();
    s.insert_findings(&newer).await.unwrap();
    let (rest, _) = all_pages(
        s,
        &FindingQuery {
            limit: 100,
            after: first.next_cursor,
            ..FindingQuery::default()
        },
    )
    .await;
    let mut seen: Vec<Uuid> = first.items.iter().map(|f| f.finding.id).collect();
    seen.extend(rest);
    assert_eq!(seen, want);
}

async fn filters_select_the_right_findings<S: Store>(s: &S) {
    let mut rows = Vec::new();
    for i in 0..96_i64 {
        let mut f = finding(Uuid::now_v7(), (i % 4) as u8, 30.0 + i as f64, i);
        f.site = ["north-yard", "south-yard"][(i % 2) as usize].into();
        f.gateway = ["gw-1", "gw-2", "gw-3"][(i % 3) as usize].into();
        f.camera = ["cam-1", "cam-2"][((i / 2) % 2) as usize].into();
        f.asset = (i % 5 != 0).then(|| format!("asset-{}", i % 3));
        if i % 7 == 0 {
            f.component = None;
        } else if i % 2 == 1 {
            f.component.as_mut().unwrap().class = "clamp".into();
        }
        rows.push(received(&f, at((i / 3) * 1000)));
    }
    for chunk in rows.chunks(40) {
        s.insert_findings(chunk).await.unwrap();
    }
    type Keep = Box<dyn Fn(&IngestedFinding) -> bool>;
    let class = |r: &IngestedFinding| r.finding.component.as_ref().map(|c| c.class.clone());
    let cases: Vec<(FindingQuery, Keep)> = vec![
        (
            FindingQuery {
                site: Some("south-yard".into()),
                ..Default::default()
            },
            Box::new(|r| r.finding.site == "south-yard"),
        ),
        (
            FindingQuery {
                gateway: Some("gw-2".into()),
                ..Default::default()
            },
            Box::new(|r| r.finding.gateway == "gw-2"),
        ),
        (
            FindingQuery {
                site: Some("north-yard".into()),
                gateway: Some("gw-3".into()),
                ..Default::default()
            },
            Box::new(|r| r.finding.site == "north-yard" && r.finding.gateway == "gw-3"),
        ),
        (
            FindingQuery {
                camera: Some("cam-2".into()),
                ..Default::default()
            },
            Box::new(|r| r.finding.camera == "cam-2"),
        ),
        (
            FindingQuery {
                asset: Some("asset-1".into()),
                ..Default::default()
            },
            Box::new(|r| r.finding.asset.as_deref() == Some("asset-1")),
        ),
        (
            FindingQuery {
                min_level: Some(2),
                ..Default::default()
            },
            Box::new(|r| r.finding.severity.level >= 2),
        ),
        (
            FindingQuery {
                since: Some(at(10_000)),
                ..Default::default()
            },
            Box::new(|r| r.received_at >= at(10_000)),
        ),
        (
            FindingQuery {
                until: Some(at(10_000)),
                ..Default::default()
            },
            Box::new(|r| r.received_at < at(10_000)),
        ),
        (
            FindingQuery {
                since: Some(at(5_000)),
                until: Some(at(20_000)),
                min_level: Some(1),
                ..Default::default()
            },
            Box::new(|r| {
                r.received_at >= at(5_000)
                    && r.received_at < at(20_000)
                    && r.finding.severity.level >= 1
            }),
        ),
        (
            FindingQuery {
                component_class: Some("clamp".into()),
                ..Default::default()
            },
            Box::new(move |r| class(r).as_deref() == Some("clamp")),
        ),
        (
            FindingQuery {
                site: Some("nowhere".into()),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
    ];
    for (mut query, keep) in cases {
        query.limit = 4;
        let want = expected_order(&rows, &keep);
        let (got, _) = all_pages(s, &query).await;
        assert_eq!(got, want, "{query:?}");
        assert!(
            !want.is_empty() || query.site.as_deref() == Some("nowhere"),
            "{query:?} selects something"
        );
    }
}

async fn alerts_page_and_filter<S: Store>(s: &S) {
    let mut all = Vec::new();
    for i in 0..23_i64 {
        let mut f = finding(Uuid::now_v7(), (i % 4) as u8, 40.0, i);
        f.site = ["north-yard", "south-yard"][(i % 2) as usize].into();
        all.push(f.clone());
        s.insert_findings(&ingested(&[f], at((i / 2) * 1000)))
            .await
            .unwrap();
    }
    let mut query = AlertQuery {
        limit: 4,
        ..AlertQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.list_alerts(&query).await.unwrap();
        seen.extend(page.items.iter().map(|a| (a.created_at, a.id, a.track_id)));
        match page.next_cursor {
            Some(c) => query.after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    assert!(seen.windows(2).all(|w| (w[0].0, w[0].1) > (w[1].0, w[1].1)));
    let tracks: HashSet<Uuid> = seen.iter().map(|t| t.2).collect();
    assert_eq!(tracks, all.iter().map(|f| f.track.id).collect());
    let south = s
        .list_alerts(&AlertQuery {
            site: Some("south-yard".into()),
            min_level: Some(2),
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .unwrap()
        .items;
    let want = all
        .iter()
        .filter(|f| f.site == "south-yard" && f.severity.level >= 2)
        .count();
    assert_eq!(south.len(), want);
    assert!(south
        .iter()
        .all(|a| a.site == "south-yard" && a.worst_level >= 2));
    let resolved = s
        .list_alerts(&AlertQuery {
            status: Some(AlertStatus::Resolved),
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert!(resolved.items.is_empty());
}

/// Every row of a listing, page by page of `limit`, calling `between` after each page.
async fn alert_pages<S: Store>(
    s: &S,
    mut query: AlertQuery,
    mut between: impl FnMut(usize) -> Vec<Finding>,
) -> Vec<AlertRecord> {
    let mut seen = Vec::new();
    for page_no in 0.. {
        let page = s.list_alerts(&query).await.unwrap();
        seen.extend(page.items);
        let arriving = between(page_no);
        if !arriving.is_empty() {
            s.insert_findings(&ingested(&arriving, at(100_000 + page_no as i64)))
                .await
                .unwrap();
        }
        match page.next_cursor {
            Some(c) => query.after = Some(c),
            None => break,
        }
    }
    seen
}

async fn alerts_page_in_every_order_while_rows_arrive<S: Store>(s: &S) {
    // 17 alerts over 9 instants and 4 levels; every third one changes later, so the
    // three orders differ.
    let mut tracks = Vec::new();
    for i in 0..17_i64 {
        let track = Uuid::now_v7();
        let f = finding(track, (i % 4) as u8, 40.0 + i as f64, i);
        s.insert_findings(&ingested(&[f], at((i / 2) * 1000)))
            .await
            .unwrap();
        tracks.push(track);
    }
    for (n, track) in tracks.iter().enumerate().step_by(3) {
        let f = finding(*track, 1, 45.0, 50 + n as i64);
        s.insert_findings(&ingested(&[f], at(20_000 + (17 - n as i64) * 10)))
            .await
            .unwrap();
    }
    let before: HashSet<Uuid> = s
        .list_alerts(&AlertQuery {
            limit: 1000,
            ..AlertQuery::default()
        })
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(before.len(), 17);
    let key = |sort: AlertSort, a: &AlertRecord| match sort {
        AlertSort::CreatedDesc => (0, a.created_at, a.id),
        AlertSort::WorstLevelDesc => (i64::from(a.worst_level), a.created_at, a.id),
        AlertSort::UpdatedDesc => (0, a.updated_at, a.id),
    };
    for sort in [
        AlertSort::CreatedDesc,
        AlertSort::WorstLevelDesc,
        AlertSort::UpdatedDesc,
    ] {
        // New alerts (new tracks, of every level) arrive between the pages.
        let seen = alert_pages(
            s,
            AlertQuery {
                sort,
                limit: 4,
                ..AlertQuery::default()
            },
            |page| {
                (0..2)
                    .map(|k| finding(Uuid::now_v7(), ((page + k) % 4) as u8, 41.0, 90 + k as i64))
                    .collect()
            },
        )
        .await;
        let mut counts = std::collections::HashMap::new();
        for a in &seen {
            *counts.entry(a.id).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n == 1), "{sort:?}: a row twice");
        for id in &before {
            assert_eq!(counts.get(id), Some(&1), "{sort:?}: {id} not exactly once");
        }
        assert!(
            seen.windows(2).all(|w| key(sort, &w[0]) > key(sort, &w[1])),
            "{sort:?}: out of order"
        );
        // A cursor continues only its own order.
        let first = s
            .list_alerts(&AlertQuery {
                sort,
                limit: 1,
                ..AlertQuery::default()
            })
            .await
            .unwrap();
        for other in [
            AlertSort::CreatedDesc,
            AlertSort::WorstLevelDesc,
            AlertSort::UpdatedDesc,
        ] {
            let r = s
                .list_alerts(&AlertQuery {
                    sort: other,
                    after: first.next_cursor,
                    ..AlertQuery::default()
                })
                .await;
            assert_eq!(
                r.is_ok(),
                other == sort,
                "{sort:?} cursor in {other:?}: {r:?}"
            );
        }
    }
}

async fn text_search_track_and_alert_filters<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    let mut a = finding(track, 2, 60.0, 0);
    a.camera = "Cam-East".into();
    let mut a2 = finding(track, 3, 65.0, 10);
    a2.camera = "Cam-East".into();
    let mut b = finding(Uuid::now_v7(), 1, 45.0, 20);
    b.asset = Some("feeder_7%".into());
    b.component.as_mut().unwrap().class = "clamp".into();
    let mut c = finding(Uuid::now_v7(), 1, 45.0, 30);
    c.site = "south-yard".into();
    c.asset = None;
    c.component = None;
    s.insert_findings(&ingested(&[a.clone(), a2.clone()], at(1000)))
        .await
        .unwrap();
    s.insert_findings(&ingested(&[b.clone()], at(2000)))
        .await
        .unwrap();
    s.insert_findings(&ingested(&[c.clone()], at(3000)))
        .await
        .unwrap();
    let find = |text: &str, track: Option<Uuid>| FindingQuery {
        text: Some(text.into()),
        track,
        ..FindingQuery::default()
    };
    let ids_of = |page: Page<StoredFinding>| -> HashSet<Uuid> {
        page.items.iter().map(|f| f.finding.id).collect()
    };
    // Case-insensitive, any of the columns; `%` and `_` are literal.
    for (text, want) in [
        ("cam-east", vec![a.id, a2.id]),
        ("EAST", vec![a.id, a2.id]),
        ("south", vec![c.id]),
        ("CLAMP", vec![b.id]),
        ("_7%", vec![b.id]),
        ("%", vec![b.id]),
        ("r_7", vec![b.id]),
        // Unescaped, `_` would match the `-` of Cam-East.
        ("m_e", vec![]),
        ("gw-0", vec![a.id, a2.id, b.id, c.id]),
        ("nothing", vec![]),
        ("\0", vec![]),
    ] {
        let got = ids_of(s.list_findings(&find(text, None)).await.unwrap());
        assert_eq!(got, want.into_iter().collect::<HashSet<_>>(), "q={text:?}");
    }
    // The track filter, with or without text.
    let got = ids_of(
        s.list_findings(&FindingQuery {
            track: Some(track),
            ..FindingQuery::default()
        })
        .await
        .unwrap(),
    );
    assert_eq!(got, [a.id, a2.id].into_iter().collect());
    assert!(s
        .list_findings(&find("south", Some(track)))
        .await
        .unwrap()
        .items
        .is_empty());
    // Alerts: the same search, component class and creation time.
    let alerts = |q: AlertQuery| async move {
        s.list_alerts(&q)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|a| a.track_id)
            .collect::<HashSet<_>>()
    };
    let search = alerts(AlertQuery {
        text: Some("Cam-EAST".into()),
        ..AlertQuery::default()
    })
    .await;
    assert_eq!(search, [track].into_iter().collect());
    let clamps = alerts(AlertQuery {
        component_class: Some("clamp".into()),
        ..AlertQuery::default()
    })
    .await;
    assert_eq!(clamps, [b.track.id].into_iter().collect());
    let window = alerts(AlertQuery {
        since: Some(at(2000)),
        until: Some(at(3000)),
        ..AlertQuery::default()
    })
    .await;
    assert_eq!(window, [b.track.id].into_iter().collect());
    let later = alerts(AlertQuery {
        since: Some(at(2001)),
        ..AlertQuery::default()
    })
    .await;
    assert_eq!(later, [c.track.id].into_iter().collect());
}

async fn cursors_are_checked<S: Store>(s: &S) {
    for i in 0..3 {
        s.insert_findings(&ingested(&[finding(Uuid::now_v7(), 1, 40.0, i)], at(i)))
            .await
            .unwrap();
    }
    let alerts = s
        .list_alerts(&AlertQuery {
            limit: 1,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    let alert_cursor = alerts.next_cursor.unwrap();
    let wrong = s
        .list_findings(&FindingQuery {
            after: Some(alert_cursor),
            ..FindingQuery::default()
        })
        .await;
    assert!(matches!(wrong, Err(StoreError::InvalidCursor)), "{wrong:?}");
    assert!(matches!(
        Cursor::parse("not-a-cursor"),
        Err(StoreError::InvalidCursor)
    ));
}

async fn findings_and_their_audit_record_commit_together<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    let good = finding(track, 1, 40.0, 0);
    let event = |file: &str| AuditEvent {
        at: at(5),
        actor: "otto".into(),
        action: "upload.file".into(),
        target: "north-yard".into(),
        from_address: None,
        detail: serde_json::json!({ "file": file }),
    };
    let report = s
        .insert_findings_audited(
            &ingested(std::slice::from_ref(&good), at(0)),
            &event("a.jpg"),
        )
        .await
        .unwrap();
    assert_eq!(report.inserted, vec![good.id]);
    // A batch the store refuses leaves no record either.
    let mut bad = finding(track, 1, 40.0, 1);
    bad.camera = "cam\0one".into();
    assert!(s
        .insert_findings_audited(&ingested(&[bad], at(0)), &event("b.jpg"))
        .await
        .is_err());
    let audit = s.list_audit(10).await.unwrap();
    let files: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|r| r.event.action == "upload.file")
        .map(|r| &r.event.detail["file"])
        .collect();
    assert_eq!(files, [&serde_json::json!("a.jpg")]);
    assert_eq!(s.count_findings().await.unwrap(), 1);
}

async fn an_unstorable_finding_rejects_the_whole_batch<S: Store>(s: &S) {
    let track = Uuid::now_v7();
    let good = finding(track, 1, 40.0, 0);
    let mut bad = finding(track, 1, 40.0, 1);
    bad.camera = "cam\0one".into();
    let err = s
        .insert_findings(&ingested(&[good.clone(), bad.clone()], at(0)))
        .await;
    assert!(
        matches!(err, Err(StoreError::InvalidFinding { id, .. }) if id == bad.id),
        "{err:?}"
    );
    let mut hot = finding(track, 1, f64::NAN, 2);
    hot.hotspot.mean_c = 1.0;
    let err = s
        .insert_findings(&ingested(&[good.clone(), hot.clone()], at(0)))
        .await;
    assert!(
        matches!(err, Err(StoreError::InvalidFinding { id, .. }) if id == hot.id),
        "{err:?}"
    );
    assert_eq!(s.count_findings().await.unwrap(), 0);
    assert!(s
        .list_alerts(&AlertQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // A literal backslash-u0000 is text, not NUL, and is stored.
    let mut literal = good.clone();
    literal.reference.ambient_source = r"typed \u0000 by hand".into();
    s.insert_findings(&ingested(&[literal.clone()], at(0)))
        .await
        .unwrap();
    assert_eq!(
        s.finding(literal.id).await.unwrap().unwrap().finding,
        literal
    );
}

fn new_gateway(site: &str, gateway: &str) -> NewGateway {
    NewGateway {
        site: site.into(),
        gateway: gateway.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        public_key: [7; 32],
    }
}

async fn gateways_enrol_list_revoke_and_look_up<S: Store>(s: &S) {
    let new = new_gateway("north-yard", "gw-07");
    let added = s.add_gateway(&new).await.unwrap();
    assert_eq!(
        (added.site.as_str(), added.gateway.as_str()),
        ("north-yard", "gw-07")
    );
    assert_eq!(added.password_hash, new.password_hash);
    assert_eq!(added.public_key, [7; 32]);
    assert_eq!(added.username(), "north-yard/gw-07");
    assert!(!added.online && added.revoked_at.is_none() && added.last_seen_at.is_none());
    assert!(
        !format!("{added:?}").contains("argon2"),
        "debug redacts the hash"
    );

    let dup = s.add_gateway(&new).await;
    match dup {
        Err(err @ StoreError::GatewayExists { .. }) => {
            assert_eq!(err.to_string(), "gateway north-yard/gw-07 already exists");
        }
        other => panic!("expected a duplicate error, got {other:?}"),
    }
    // Gateway ids are unique per site only.
    let mut other_site = new_gateway("south-yard", "gw-07");
    other_site.public_key = [9; 32];
    s.add_gateway(&other_site).await.unwrap();
    assert!(matches!(
        s.add_gateway(&new_gateway("north-yard", "GW 7")).await,
        Err(StoreError::InvalidId(_))
    ));

    let listed = s.list_gateways().await.unwrap();
    let names: Vec<_> = listed.iter().map(|g| g.username()).collect();
    assert_eq!(names, ["north-yard/gw-07", "south-yard/gw-07"]);
    assert_eq!(listed[0], added);

    let by_user = s
        .gateway_by_username("south-yard/gw-07")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_user.public_key, [9; 32]);
    for unknown in [
        "gw-07",
        "north-yard/gw-08",
        "a/b/c",
        "",
        "north-yard/",
        "/gw-07",
    ] {
        assert!(
            s.gateway_by_username(unknown).await.unwrap().is_none(),
            "{unknown:?}"
        );
    }

    assert!(s.revoke_gateway("north-yard", "gw-07").await.unwrap());
    assert!(
        !s.revoke_gateway("north-yard", "gw-07").await.unwrap(),
        "already revoked"
    );
    assert!(!s.revoke_gateway("north-yard", "gw-99").await.unwrap());
    let revoked = s
        .gateway_by_username("north-yard/gw-07")
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.is_revoked());
    assert_eq!(
        s.list_gateways().await.unwrap().len(),
        2,
        "revoked gateways keep their record"
    );
    assert!(s
        .gateway("south-yard", "gw-07")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    assert!(matches!(
        s.add_gateway(&new).await,
        Err(StoreError::GatewayExists { .. })
    ));
}

fn status(online: bool, cameras: Vec<CameraStatus>, buffer: Option<BufferStatus>) -> AgentStatus {
    AgentStatus {
        online,
        agent_version: "0.1.0".into(),
        cameras,
        buffer,
        model: online.then(|| chitti_common::finding::ModelIdentity {
            name: "yolo-thermal".into(),
            version: "3".into(),
            sha256: "cd".repeat(32),
        }),
        detector: None,
        config_version: online.then_some(3),
        model_update: None,
        evidence: None,
        ts: at(500),
        session: Some(at(100)),
    }
}

fn camera(id: &str, state: &str, fps: f64, last: Option<DateTime<Utc>>) -> CameraStatus {
    CameraStatus {
        id: id.into(),
        state: state.into(),
        fps,
        last_frame_at: last,
    }
}

async fn status_updates_gateway_and_cameras<S: Store>(s: &S) {
    s.add_gateway(&new_gateway("north-yard", "gw-07"))
        .await
        .unwrap();
    let online = status(
        true,
        vec![
            camera("cam-1", "streaming", 8.7, Some(at(400))),
            camera("cam-2", "reconnecting", 0.0, None),
        ],
        Some(BufferStatus {
            depth: 12,
            bytes: 3400,
            oldest_at: Some(at(-60_000)),
            evicted: EvictionCounts {
                evidence: 2,
                findings: 1,
            },
            cap_bytes: None,
        }),
    );
    assert_eq!(
        s.update_gateway_status("north-yard", "gw-07", &online, at(1000))
            .await
            .unwrap(),
        StatusOutcome::Applied
    );
    let g = s.gateway("north-yard", "gw-07").await.unwrap().unwrap();
    assert!(g.online);
    assert_eq!(
        (g.last_seen_at, g.status_at),
        (Some(at(1000)), Some(at(500)))
    );
    assert_eq!(g.agent_version.as_deref(), Some("0.1.0"));
    assert_eq!(g.config_version, Some(3));
    assert_eq!(g.model, online.model);
    let want_buffer = BufferStats {
        depth: 12,
        bytes: 3400,
        oldest_at: Some(at(-60_000)),
        evicted_evidence: 2,
        evicted_findings: 1,
    };
    assert_eq!(g.buffer.as_ref(), Some(&want_buffer));
    assert_eq!(g.cameras, online.cameras);
    assert_eq!(g.last_status.as_ref(), Some(&online));
    let cams = s.list_cameras("north-yard", "gw-07").await.unwrap();
    assert_eq!(cams.len(), 2);
    assert_eq!(
        (cams[0].camera.as_str(), cams[0].state.as_str(), cams[0].fps),
        ("cam-1", "streaming", 8.7)
    );
    assert_eq!(
        (cams[0].last_frame_at, cams[0].updated_at),
        (Some(at(400)), at(1000))
    );

    // A replay of what was applied, or anything older, changes nothing.
    let mut older = online.clone();
    older.ts = at(450);
    older.agent_version = "forged".into();
    for replay in [&online, &older] {
        assert_eq!(
            s.update_gateway_status("north-yard", "gw-07", replay, at(1500))
                .await
                .unwrap(),
            StatusOutcome::Stale { last: at(500) }
        );
    }
    // Nor does the Last Will of an earlier session (an old run's, replayed).
    let mut old_will = status(false, vec![], None);
    (old_will.ts, old_will.session) = (at(50), Some(at(50)));
    assert_eq!(
        s.update_gateway_status("north-yard", "gw-07", &old_will, at(1600))
            .await
            .unwrap(),
        StatusOutcome::Stale { last: at(500) }
    );
    let g = s.gateway("north-yard", "gw-07").await.unwrap().unwrap();
    assert!(g.online);
    assert_eq!(g.last_seen_at, Some(at(1000)));
    assert_eq!(g.agent_version.as_deref(), Some("0.1.0"));

    // The Last Will of this session (stamped at its start, older than its statuses):
    // offline, nothing else. What it does not carry is kept, and status_at stays.
    let mut will = status(false, vec![], None);
    will.ts = at(100);
    assert_eq!(
        s.update_gateway_status("north-yard", "gw-07", &will, at(2000))
            .await
            .unwrap(),
        StatusOutcome::Applied
    );
    let g = s.gateway("north-yard", "gw-07").await.unwrap().unwrap();
    assert!(!g.online);
    assert_eq!(g.status_at, Some(at(500)));
    assert_eq!(g.last_seen_at, Some(at(2000)));
    assert_eq!(g.buffer.as_ref(), Some(&want_buffer));
    assert_eq!(g.cameras.len(), 2);
    assert_eq!(g.model, online.model);
    assert_eq!(g.last_status.as_ref(), Some(&will));

    // Once dead, the recorded "online" replayed does not bring it back.
    assert!(matches!(
        s.update_gateway_status("north-yard", "gw-07", &online, at(2500))
            .await
            .unwrap(),
        StatusOutcome::Stale { .. }
    ));
    assert!(
        !s.gateway("north-yard", "gw-07")
            .await
            .unwrap()
            .unwrap()
            .online
    );

    // Back online (a new run) with one camera: the list follows, the camera table
    // keeps history.
    let mut back = status(true, vec![camera("cam-1", "idle", 0.0, None)], None);
    (back.ts, back.session) = (at(700), Some(at(650)));
    assert_eq!(
        s.update_gateway_status("north-yard", "gw-07", &back, at(3000))
            .await
            .unwrap(),
        StatusOutcome::Applied
    );
    // The first run's Will, replayed now, is refused: its session is over.
    assert!(matches!(
        s.update_gateway_status("north-yard", "gw-07", &will, at(3100))
            .await
            .unwrap(),
        StatusOutcome::Stale { .. }
    ));
    assert!(
        s.gateway("north-yard", "gw-07")
            .await
            .unwrap()
            .unwrap()
            .online
    );
    let g = s.gateway("north-yard", "gw-07").await.unwrap().unwrap();
    assert_eq!(g.cameras, back.cameras);
    let cams = s.list_cameras("north-yard", "gw-07").await.unwrap();
    assert_eq!(cams.len(), 2);
    assert_eq!(
        (
            cams[0].state.as_str(),
            cams[0].last_frame_at,
            cams[0].updated_at
        ),
        ("idle", Some(at(400)), at(3000))
    );
    assert_eq!(cams[1].updated_at, at(1000));

    assert_eq!(
        s.update_gateway_status("north-yard", "gw-99", &online, at(1000))
            .await
            .unwrap(),
        StatusOutcome::NotEnrolled
    );
    assert!(s
        .list_cameras("north-yard", "gw-99")
        .await
        .unwrap()
        .is_empty());
}

fn sample(
    ts: DateTime<Utc>,
    cpu: Option<f64>,
    gpu: Option<f64>,
    disk: Option<u64>,
    latency: Option<f64>,
    drops: u64,
) -> Telemetry {
    Telemetry {
        ts,
        cpu_temp_c: cpu,
        gpu_temp_c: gpu,
        disk_free_bytes: disk,
        analysis_latency_ms: latency,
        frame_drops: drops,
        outbox_depth: None,
        outbox_oldest_age_s: None,
        cameras: Vec::new(),
    }
}

async fn telemetry_is_downsampled_to_minutes<S: Store>(s: &S) {
    let minute = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    let sec = |n: i64| minute + Duration::seconds(n);
    let t1 = sample(sec(10), Some(50.0), None, Some(1000), Some(20.0), 3);
    let t2 = sample(sec(50), Some(60.0), Some(40.0), Some(800), Some(30.0), 2);
    let t3 = sample(sec(65), Some(55.0), None, None, None, 0);
    for t in [&t1, &t2, &t3] {
        assert!(s.insert_telemetry("north-yard", "gw-07", t).await.unwrap());
    }
    // A replayed sample, or one older than the newest stored, adds nothing.
    for t in [&t2, &t1, &t3] {
        assert!(!s.insert_telemetry("north-yard", "gw-07", t).await.unwrap());
    }
    s.insert_telemetry("north-yard", "gw-08", &t1)
        .await
        .unwrap();
    let rows = s
        .telemetry("north-yard", "gw-07", minute, sec(120))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0],
        TelemetryMinute {
            bucket_start: minute,
            samples: 2,
            cpu_temp_avg_c: Some(55.0),
            cpu_temp_max_c: Some(60.0),
            gpu_temp_avg_c: Some(40.0),
            gpu_temp_max_c: Some(40.0),
            disk_free_min_bytes: Some(800),
            analysis_latency_avg_ms: Some(25.0),
            analysis_latency_max_ms: Some(30.0),
            frame_drops: 5,
            first_ts: sec(10),
            last_ts: sec(50),
        }
    );
    assert_eq!(rows[1].bucket_start, sec(60));
    assert_eq!(
        (
            rows[1].samples,
            rows[1].cpu_temp_avg_c,
            rows[1].gpu_temp_avg_c
        ),
        (1, Some(55.0), None)
    );
    assert_eq!(
        (
            rows[1].disk_free_min_bytes,
            rows[1].analysis_latency_max_ms,
            rows[1].frame_drops
        ),
        (None, None, 0)
    );
    assert_eq!(
        s.telemetry("north-yard", "gw-07", sec(60), sec(120))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.telemetry("north-yard", "gw-08", minute, sec(120))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s
        .telemetry("north-yard", "gw-09", minute, sec(120))
        .await
        .unwrap()
        .is_empty());
}

async fn dead_letters_are_kept_byte_exact<S: Store>(s: &S) {
    let payloads: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00\x01 not json \xc3\x28".to_vec(),
        Vec::new(),
        (0..=255).collect(),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        s.record_dead_letter(&DeadLetter {
            received_at: at(i as i64 * 1000),
            topic: "chitti/v1/north-yard/gw-07/findings".into(),
            reason: format!("invalid json at byte {i}\0"),
            payload: payload.clone(),
        })
        .await
        .unwrap();
    }
    assert_eq!(s.dead_letter_count().await.unwrap(), 3);
    let listed = s.list_dead_letters(10).await.unwrap();
    let got: Vec<&Vec<u8>> = listed.iter().map(|d| &d.letter.payload).collect();
    assert_eq!(
        got,
        payloads.iter().rev().collect::<Vec<_>>(),
        "newest first, byte exact"
    );
    assert_eq!(listed[0].letter.received_at, at(2000));
    assert_eq!(listed[0].letter.reason, "invalid json at byte 2\u{FFFD}");
    assert_eq!(s.list_dead_letters(2).await.unwrap().len(), 2);
}

/// Letters: (seconds, topic, reason).
async fn record_letters<S: Store>(s: &S, letters: &[(i64, &str, &str)]) {
    for (t, topic, reason) in letters {
        s.record_dead_letter(&DeadLetter {
            received_at: at(t * 1000),
            topic: (*topic).into(),
            reason: (*reason).into(),
            payload: b"{}".to_vec(),
        })
        .await
        .unwrap();
    }
}

const LETTERS: [(i64, &str, &str); 6] = [
    (
        1,
        "chitti/v1/north-yard/gw-07/findings",
        "signature: no valid signature",
    ),
    (
        2,
        "chitti/v1/north-yard/gw-07/findings",
        "schema: missing field `id`",
    ),
    (
        3,
        "chitti/v1/north-yard/gw-08/findings",
        "signature: no valid signature",
    ),
    (
        4,
        "chitti/v1/south/gw-07/telemetry",
        "json: expected value at line 1",
    ),
    (
        5,
        "(refused by the database)",
        "store: finding 0190…: NUL in text",
    ),
    (
        6,
        "chitti/v1/north-yard/gw-07/findings",
        "signature: no valid signature",
    ),
];

async fn dead_letters_filter_page_and_group<S: Store>(s: &S) {
    record_letters(s, &LETTERS).await;
    let ids = |p: &Page<DeadLetterRecord>| -> Vec<i64> {
        p.items
            .iter()
            .map(|d| (d.letter.received_at - at(0)).num_seconds())
            .collect()
    };
    let q = |f: fn(&mut DeadLetterQuery)| {
        let mut q = DeadLetterQuery {
            limit: 100,
            ..DeadLetterQuery::default()
        };
        f(&mut q);
        q
    };
    let all = s.dead_letters(&q(|_| {})).await.unwrap();
    assert_eq!(ids(&all), [6, 5, 4, 3, 2, 1], "newest first");
    let newest = &all.items[0];
    assert_eq!(newest.class, "signature");
    assert_eq!(
        (newest.site.as_deref(), newest.gateway.as_deref()),
        (Some("north-yard"), Some("gw-07"))
    );
    let store = &all.items[1];
    assert_eq!(
        (store.class.as_str(), store.site.as_deref()),
        ("store", None)
    );

    let signature = s
        .dead_letters(&q(|q| q.class = Some("signature".into())))
        .await
        .unwrap();
    assert_eq!(ids(&signature), [6, 3, 1]);
    let gw07 = s
        .dead_letters(&q(|q| q.gateway = Some("gw-07".into())))
        .await
        .unwrap();
    assert_eq!(ids(&gw07), [6, 4, 2, 1], "gw-07 of every site");
    let north_gw07 = s
        .dead_letters(&q(|q| {
            q.site = Some("north-yard".into());
            q.gateway = Some("gw-07".into());
            q.since = Some(at(2000));
            q.until = Some(at(6000));
        }))
        .await
        .unwrap();
    assert_eq!(
        ids(&north_gw07),
        [2],
        "site, gateway and [since, until) combine"
    );

    // Pages of two: every letter once, in order, then no cursor.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .dead_letters(&DeadLetterQuery {
                limit: 2,
                after,
                ..DeadLetterQuery::default()
            })
            .await
            .unwrap();
        seen.extend(ids(&page));
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, [6, 5, 4, 3, 2, 1]);
    let groups = s.dead_letter_groups(&q(|_| {})).await.unwrap();
    let first = &groups[0];
    assert_eq!(
        (
            first.class.as_str(),
            first.site.as_deref(),
            first.gateway.as_deref(),
            first.count,
            first.last_at
        ),
        ("signature", Some("north-yard"), Some("gw-07"), 2, at(6000)),
        "the biggest group first"
    );
    assert_eq!(groups.len(), 5);
    assert_eq!(groups.iter().map(|g| g.count).sum::<u64>(), 6);
    let since_4 = s
        .dead_letter_groups(&q(|q| q.since = Some(at(4000))))
        .await
        .unwrap();
    assert_eq!(since_4.iter().map(|g| g.count).sum::<u64>(), 3);
}

async fn dead_letters_stored_before_their_class_and_gateway_columns_are_backfilled(s: &AnyStore) {
    const VERSION: i64 = 20270108000000;
    record_letters(s, &LETTERS).await;
    let before = s.migration_status().await.unwrap();
    let undo = [
        "DROP INDEX dead_letters_class".to_string(),
        "DROP INDEX dead_letters_gateway".to_string(),
        "ALTER TABLE dead_letters DROP COLUMN class".to_string(),
        "ALTER TABLE dead_letters DROP COLUMN site".to_string(),
        "ALTER TABLE dead_letters DROP COLUMN gateway".to_string(),
        format!("DELETE FROM _sqlx_migrations WHERE version = {VERSION}"),
    ];
    undo_migration(s, &undo).await;
    s.migrate().await.unwrap();
    assert_eq!(s.migration_status().await.unwrap(), before);
    let got: Vec<(String, Option<String>, Option<String>)> = s
        .list_dead_letters(100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.class, d.site, d.gateway))
        .collect();
    let want: Vec<(String, Option<String>, Option<String>)> = LETTERS
        .iter()
        .rev()
        .map(|(_, topic, reason)| {
            let letter = DeadLetter {
                received_at: at(0),
                topic: (*topic).into(),
                reason: (*reason).into(),
                payload: Vec::new(),
            };
            let g = letter.gateway();
            (
                letter.class().to_owned(),
                g.map(|g| g.0.to_owned()),
                g.map(|g| g.1.to_owned()),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "the migration fills old rows as the hub fills new ones"
    );
    assert_eq!(got[1], ("store".into(), None, None));
}

// ---------------------------------------------------------------------------------
// Users, sessions, API tokens, sites, structures, assets, evidence, audit log.

/// Lowercase hex SHA-256 of a token, as the API layer stores it.
fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        username: username.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
    }
}

fn new_session(token: &str, user_id: Uuid, created_ms: i64, expires_ms: i64) -> NewSession {
    NewSession {
        token_hash: token_hash(token),
        user_id,
        csrf_token: format!("csrf-{token}"),
        created_at: at(created_ms),
        expires_at: at(expires_ms),
        from_address: Some("10.0.0.5".into()),
    }
}

fn new_token(token: &str, user_id: Uuid, scopes: &[&str]) -> NewApiToken {
    NewApiToken {
        token_hash: token_hash(token),
        user_id,
        name: format!("{token} integration"),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at: None,
    }
}

async fn users_are_added_looked_up_disabled_and_promoted<S: Store>(s: &S) {
    let before = Utc::now() - Duration::milliseconds(1);
    let alice = s.add_user(&new_user("alice", Role::Admin)).await.unwrap();
    let bob = s.add_user(&new_user("bob", Role::Viewer)).await.unwrap();
    assert_ne!(alice.id, bob.id);
    assert_eq!(
        (alice.username.as_str(), alice.role),
        ("alice", Role::Admin)
    );
    assert!(alice.created_at >= before && alice.created_at <= Utc::now());
    assert!(!alice.is_disabled());
    assert!(
        !format!("{alice:?}").contains("argon2"),
        "debug redacts the hash"
    );

    match s.add_user(&new_user("alice", Role::Viewer)).await {
        Err(err @ StoreError::UserExists { .. }) => {
            assert_eq!(err.to_string(), "user alice already exists");
        }
        other => panic!("expected UserExists, got {other:?}"),
    }
    for bad in ["", "has space", "tab\there", "nul\0", &"x".repeat(65)] {
        assert!(
            matches!(
                s.add_user(&new_user(bad, Role::Viewer)).await,
                Err(StoreError::InvalidInput {
                    what: "username",
                    ..
                })
            ),
            "{bad:?}"
        );
    }

    // Reads back exactly as returned.
    assert_eq!(s.user(alice.id).await.unwrap().unwrap(), alice);
    assert_eq!(s.user_by_username("bob").await.unwrap().unwrap(), bob);
    assert!(s.user_by_username("Bob").await.unwrap().is_none());
    assert!(s.user(Uuid::now_v7()).await.unwrap().is_none());
    let names: Vec<String> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    assert!(s.set_user_role(bob.id, Role::Operator).await.unwrap());
    assert!(!s.set_user_role(Uuid::now_v7(), Role::Admin).await.unwrap());
    assert_eq!(s.user(bob.id).await.unwrap().unwrap().role, Role::Operator);
    assert_eq!(s.user(alice.id).await.unwrap().unwrap().role, Role::Admin);

    assert!(s.set_user_disabled(bob.id, true).await.unwrap());
    let disabled_at = s.user(bob.id).await.unwrap().unwrap().disabled_at.unwrap();
    // Disabling again keeps the first time.
    assert!(s.set_user_disabled(bob.id, true).await.unwrap());
    assert_eq!(
        s.user(bob.id).await.unwrap().unwrap().disabled_at,
        Some(disabled_at)
    );
    assert!(s
        .user(alice.id)
        .await
        .unwrap()
        .unwrap()
        .disabled_at
        .is_none());
    assert!(!s.set_user_disabled(Uuid::now_v7(), true).await.unwrap());
    // A disabled user keeps the username.
    assert!(matches!(
        s.add_user(&new_user("bob", Role::Viewer)).await,
        Err(StoreError::UserExists { .. })
    ));
    assert!(s.set_user_disabled(bob.id, false).await.unwrap());
    assert!(s.user(bob.id).await.unwrap().unwrap().disabled_at.is_none());
}

async fn sessions_authenticate_until_they_expire<S: Store>(s: &S) {
    let alice = s
        .add_user(&new_user("alice", Role::Operator))
        .await
        .unwrap();
    let created = s
        .create_session(&new_session("tok-a", alice.id, 0, 60_000))
        .await
        .unwrap();
    assert_eq!(created.user_id, alice.id);
    assert_eq!(created.csrf_token, "csrf-tok-a");
    assert_eq!(
        (created.created_at, created.expires_at, created.last_seen_at),
        (at(0), at(60_000), at(0))
    );
    assert_eq!(created.from_address.as_deref(), Some("10.0.0.5"));
    assert!(
        !format!("{created:?}").contains("csrf-tok-a"),
        "debug redacts the csrf token"
    );

    // Lookup returns the session and its user, and moves last_seen_at.
    let (session, user) = s
        .session_by_token_hash(&token_hash("tok-a"), at(10_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, alice);
    assert_eq!(session.id, created.id);
    assert_eq!(session.last_seen_at, at(10_000));
    assert_eq!(
        SessionRecord {
            last_seen_at: at(0),
            ..session.clone()
        },
        created
    );
    // An earlier `now` (a slow request) does not move it back.
    let (session, _) = s
        .session_by_token_hash(&token_hash("tok-a"), at(5_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.last_seen_at, at(10_000));
    let (session, _) = s
        .session_by_token_hash(&token_hash("tok-a"), at(59_999))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.last_seen_at, at(59_999));

    // Expired at expires_at exactly.
    assert!(s
        .session_by_token_hash(&token_hash("tok-a"), at(60_000))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .session_by_token_hash(&token_hash("tok-unknown"), at(0))
        .await
        .unwrap()
        .is_none());
    // An expired lookup did not touch it.
    let (session, _) = s
        .session_by_token_hash(&token_hash("tok-a"), at(30_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.last_seen_at, at(59_999));

    // Logout.
    s.create_session(&new_session("tok-b", alice.id, 0, 60_000))
        .await
        .unwrap();
    assert!(s.delete_session(&token_hash("tok-b")).await.unwrap());
    assert!(!s.delete_session(&token_hash("tok-b")).await.unwrap());
    assert!(s
        .session_by_token_hash(&token_hash("tok-b"), at(1))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .session_by_token_hash(&token_hash("tok-a"), at(1))
        .await
        .unwrap()
        .is_some());

    // Sweeping: only sessions with expires_at <= now go.
    s.create_session(&new_session("tok-c", alice.id, 0, 120_000))
        .await
        .unwrap();
    s.create_session(&new_session("tok-d", alice.id, 0, 30_000))
        .await
        .unwrap();
    assert_eq!(s.delete_expired_sessions(at(60_000)).await.unwrap(), 2);
    assert_eq!(s.delete_expired_sessions(at(60_000)).await.unwrap(), 0);
    assert!(!s.delete_session(&token_hash("tok-a")).await.unwrap());
    assert!(s
        .session_by_token_hash(&token_hash("tok-c"), at(60_000))
        .await
        .unwrap()
        .is_some());

    // Refused: an unknown user, a token hash that is not a sha-256, a reused hash.
    assert!(matches!(
        s.create_session(&new_session("tok-e", Uuid::now_v7(), 0, 1000))
            .await,
        Err(StoreError::NotFound { what: "user", .. })
    ));
    let mut raw = new_session("tok-f", alice.id, 0, 1000);
    raw.token_hash = "tok-f".into();
    assert!(matches!(
        s.create_session(&raw).await,
        Err(StoreError::InvalidInput { .. })
    ));
    raw.token_hash = token_hash("tok-f").to_uppercase();
    assert!(matches!(
        s.create_session(&raw).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.create_session(&new_session("tok-c", alice.id, 0, 1000))
            .await,
        Err(StoreError::AlreadyExists {
            what: "session",
            ..
        })
    ));
}

async fn api_tokens_authenticate_until_revoked<S: Store>(s: &S) {
    let alice = s
        .add_user(&new_user("alice", Role::Operator))
        .await
        .unwrap();
    let bob = s.add_user(&new_user("bob", Role::Viewer)).await.unwrap();
    let before = Utc::now() - Duration::milliseconds(1);
    let t1 = s
        .create_api_token(&new_token(
            "t1",
            alice.id,
            &["findings:read", "alerts:write"],
        ))
        .await
        .unwrap();
    let t2 = s
        .create_api_token(&new_token("t2", alice.id, &[]))
        .await
        .unwrap();
    let t3 = s
        .create_api_token(&new_token("t3", bob.id, &["findings:read"]))
        .await
        .unwrap();
    assert_eq!(t1.scopes, ["findings:read", "alerts:write"]);
    assert!(t2.scopes.is_empty());
    assert_eq!(t1.name, "t1 integration");
    assert!(t1.created_at >= before && t1.revoked_at.is_none() && t1.last_used_at.is_none());

    // Listing: the user's own tokens, oldest first, scopes round-tripped.
    assert_eq!(s.list_api_tokens(alice.id).await.unwrap(), [t1.clone(), t2]);
    assert_eq!(s.list_api_tokens(bob.id).await.unwrap(), [t3]);
    assert!(s.list_api_tokens(Uuid::now_v7()).await.unwrap().is_empty());

    // Lookup records the use.
    let before_use = Utc::now() - Duration::milliseconds(1);
    let (token, user) = s
        .api_token_by_hash(&token_hash("t1"), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, alice);
    assert_eq!(token.id, t1.id);
    assert_eq!(token.scopes, t1.scopes);
    let used = token.last_used_at.expect("last_used_at set");
    assert!(used >= before_use && used <= Utc::now(), "{used}");
    let listed = s.list_api_tokens(alice.id).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(used));
    assert_eq!(listed[1].last_used_at, None);
    let (again, _) = s
        .api_token_by_hash(&token_hash("t1"), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert!(again.last_used_at.unwrap() >= used);
    assert!(s
        .api_token_by_hash(&token_hash("nope"), Utc::now())
        .await
        .unwrap()
        .is_none());

    // Revocation.
    assert!(s.revoke_api_token(t1.id).await.unwrap());
    assert!(!s.revoke_api_token(t1.id).await.unwrap(), "already revoked");
    assert!(!s.revoke_api_token(Uuid::now_v7()).await.unwrap());
    assert!(s
        .api_token_by_hash(&token_hash("t1"), Utc::now())
        .await
        .unwrap()
        .is_none());
    assert!(s
        .api_token_by_hash(&token_hash("t2"), Utc::now())
        .await
        .unwrap()
        .is_some());
    let listed = s.list_api_tokens(alice.id).await.unwrap();
    assert!(listed[0].revoked_at.is_some(), "revoked tokens are listed");
    assert!(listed[1].revoked_at.is_none());

    // Expiry: the token works until `expires_at`, and never after.
    let mut expiring = new_token("t5", alice.id, &["read"]);
    expiring.expires_at = Some(at(10_000));
    let t5 = s.create_api_token(&expiring).await.unwrap();
    assert_eq!(t5.expires_at, Some(at(10_000)));
    assert!(s
        .api_token_by_hash(&token_hash("t5"), at(9_999))
        .await
        .unwrap()
        .is_some());
    for when in [at(10_000), at(20_000)] {
        assert!(s
            .api_token_by_hash(&token_hash("t5"), when)
            .await
            .unwrap()
            .is_none());
    }
    assert_eq!(
        s.list_api_tokens(alice.id).await.unwrap()[2].expires_at,
        Some(at(10_000))
    );

    // Refused: bad scopes, bad hash, unknown user, reused hash.
    for scopes in [&["two words"][..], &[""][..], &["a", "b\tc"][..]] {
        assert!(
            matches!(
                s.create_api_token(&new_token("t4", alice.id, scopes)).await,
                Err(StoreError::InvalidInput { what: "scope", .. })
            ),
            "{scopes:?}"
        );
    }
    let mut raw = new_token("t4", alice.id, &[]);
    raw.token_hash = "chitti_t4_plaintext".into();
    assert!(matches!(
        s.create_api_token(&raw).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.create_api_token(&new_token("t4", Uuid::now_v7(), &[]))
            .await,
        Err(StoreError::NotFound { what: "user", .. })
    ));
    assert!(matches!(
        s.create_api_token(&new_token("t2", bob.id, &[])).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.list_api_tokens(bob.id).await.unwrap().len(), 1);
}

async fn a_disabled_user_is_shut_out<S: Store>(s: &S) {
    let carol = s.add_user(&new_user("carol", Role::Admin)).await.unwrap();
    let dave = s.add_user(&new_user("dave", Role::Viewer)).await.unwrap();
    s.create_session(&new_session("s-carol", carol.id, 0, 60_000))
        .await
        .unwrap();
    s.create_session(&new_session("s-dave", dave.id, 0, 60_000))
        .await
        .unwrap();
    s.create_api_token(&new_token("k-carol", carol.id, &["all"]))
        .await
        .unwrap();
    assert!(s
        .session_by_token_hash(&token_hash("s-carol"), at(1))
        .await
        .unwrap()
        .is_some());
    assert!(s
        .api_token_by_hash(&token_hash("k-carol"), Utc::now())
        .await
        .unwrap()
        .is_some());

    assert!(s.set_user_disabled(carol.id, true).await.unwrap());
    assert!(s
        .session_by_token_hash(&token_hash("s-carol"), at(2))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .api_token_by_hash(&token_hash("k-carol"), Utc::now())
        .await
        .unwrap()
        .is_none());
    // Others are unaffected.
    assert!(s
        .session_by_token_hash(&token_hash("s-dave"), at(2))
        .await
        .unwrap()
        .is_some());

    // Re-enabling brings back neither the session nor the token: disabling ended the
    // one and revoked the other (listed as revoked).
    assert!(s.set_user_disabled(carol.id, false).await.unwrap());
    assert!(s
        .session_by_token_hash(&token_hash("s-carol"), at(3))
        .await
        .unwrap()
        .is_none());
    assert!(!s.delete_session(&token_hash("s-carol")).await.unwrap());
    assert!(s
        .api_token_by_hash(&token_hash("k-carol"), Utc::now())
        .await
        .unwrap()
        .is_none());
    let listed = s.list_api_tokens(carol.id).await.unwrap();
    assert!(listed[0].revoked_at.is_some(), "{listed:?}");
    assert!(s
        .user(carol.id)
        .await
        .unwrap()
        .unwrap()
        .disabled_at
        .is_none());
}

fn site(id: &str, name: &str, kind: SiteKind) -> NewSite {
    NewSite {
        id: id.into(),
        name: name.into(),
        kind,
    }
}

fn structure(site: &str, id: &str, kind: StructureKind) -> NewStructure {
    NewStructure {
        site: site.into(),
        id: id.into(),
        name: format!("{id} name"),
        kind,
    }
}

fn asset(site: &str, structure: Option<&str>, id: &str) -> NewAsset {
    NewAsset {
        site: site.into(),
        structure: structure.map(str::to_string),
        id: id.into(),
        name: format!("{id} name"),
        phase: None,
        component_class: None,
    }
}

async fn sites_structures_and_assets_form_a_hierarchy<S: Store>(s: &S) {
    let before = Utc::now() - Duration::milliseconds(1);
    let north = s
        .add_site(&site(
            "north-yard",
            "North Yard 220 kV",
            SiteKind::Substation,
        ))
        .await
        .unwrap();
    let line = s
        .add_site(&site("line-7", "Line 7", SiteKind::Line))
        .await
        .unwrap();
    assert_eq!(north.kind, SiteKind::Substation);
    assert!(north.created_at >= before);
    match s
        .add_site(&site("north-yard", "again", SiteKind::Line))
        .await
    {
        Err(err @ StoreError::AlreadyExists { what: "site", .. }) => {
            assert_eq!(err.to_string(), "site north-yard already exists");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.site("line-7").await.unwrap().unwrap(), line);
    assert!(s.site("nowhere").await.unwrap().is_none());
    // Byte order: '-' (0x2d) sorts before letters.
    s.add_site(&site("north", "N", SiteKind::Substation))
        .await
        .unwrap();
    let ids: Vec<String> = s
        .list_sites()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(ids, ["line-7", "north", "north-yard"]);

    assert!(s
        .update_site(&site("line-7", "Line 7 (east)", SiteKind::Substation))
        .await
        .unwrap());
    let updated = s.site("line-7").await.unwrap().unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.kind, updated.created_at),
        ("Line 7 (east)", SiteKind::Substation, line.created_at)
    );
    assert!(!s
        .update_site(&site("nowhere", "x", SiteKind::Line))
        .await
        .unwrap());

    // A site made by enrolling a gateway is a substation named after its id.
    s.add_gateway(&new_gateway("east-yard", "gw-1"))
        .await
        .unwrap();
    let east = s.site("east-yard").await.unwrap().unwrap();
    assert_eq!(
        (east.name.as_str(), east.kind),
        ("east-yard", SiteKind::Substation)
    );
    assert!(matches!(
        s.add_site(&site("east-yard", "East", SiteKind::Substation))
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));

    // Structures, per site.
    let bay3 = s
        .add_structure(&structure("north-yard", "bay-3", StructureKind::Bay))
        .await
        .unwrap();
    s.add_structure(&structure("north-yard", "bay-10", StructureKind::Bay))
        .await
        .unwrap();
    s.add_structure(&structure("line-7", "t-041", StructureKind::Tower))
        .await
        .unwrap();
    // The same id in another site is another structure.
    s.add_structure(&structure("line-7", "bay-3", StructureKind::Bay))
        .await
        .unwrap();
    assert!(matches!(
        s.add_structure(&structure("north-yard", "bay-3", StructureKind::Tower))
            .await,
        Err(StoreError::AlreadyExists {
            what: "structure",
            ..
        })
    ));
    match s
        .add_structure(&structure("nowhere", "bay-1", StructureKind::Bay))
        .await
    {
        Err(err @ StoreError::NotFound { what: "site", .. }) => {
            assert_eq!(err.to_string(), "site nowhere not found");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let in_north: Vec<String> = s
        .list_structures("north-yard")
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(in_north, ["bay-10", "bay-3"]);
    assert_eq!(
        s.structure("north-yard", "bay-3").await.unwrap().unwrap(),
        bay3
    );
    assert_eq!(s.list_structures("line-7").await.unwrap().len(), 2);
    assert!(s.list_structures("nowhere").await.unwrap().is_empty());
    let mut renamed = structure("north-yard", "bay-3", StructureKind::Tower);
    renamed.name = "Bay 3 (renamed)".into();
    assert!(s.update_structure(&renamed).await.unwrap());
    let got = s.structure("north-yard", "bay-3").await.unwrap().unwrap();
    assert_eq!(
        (got.name.as_str(), got.kind, got.created_at),
        ("Bay 3 (renamed)", StructureKind::Tower, bay3.created_at)
    );
    assert!(!s
        .update_structure(&structure("north-yard", "bay-99", StructureKind::Bay))
        .await
        .unwrap());

    // Assets: phase and class round-trip; structure optional, in the same site.
    let breaker = s
        .add_asset(&NewAsset {
            phase: Some(Phase::B),
            component_class: Some("bushing".into()),
            ..asset("north-yard", Some("bay-3"), "bay3-breaker-b")
        })
        .await
        .unwrap();
    let loose = s
        .add_asset(&asset("north-yard", None, "yard-light"))
        .await
        .unwrap();
    let clamp = s
        .add_asset(&NewAsset {
            phase: Some(Phase::C),
            ..asset("line-7", Some("t-041"), "t041-clamp-c")
        })
        .await
        .unwrap();
    assert_eq!(
        s.asset("north-yard", "bay3-breaker-b")
            .await
            .unwrap()
            .unwrap(),
        breaker
    );
    assert_eq!(breaker.phase, Some(Phase::B));
    assert_eq!(breaker.component_class.as_deref(), Some("bushing"));
    assert_eq!(breaker.structure.as_deref(), Some("bay-3"));
    assert_eq!(
        s.asset("north-yard", "yard-light").await.unwrap().unwrap(),
        loose
    );
    assert!(s.asset("line-7", "bay3-breaker-b").await.unwrap().is_none());
    assert_eq!(
        s.list_assets(None).await.unwrap(),
        [clamp.clone(), breaker.clone(), loose.clone()]
    );
    assert_eq!(
        s.list_assets(Some("north-yard")).await.unwrap(),
        [breaker.clone(), loose.clone()]
    );
    assert!(s.list_assets(Some("nowhere")).await.unwrap().is_empty());

    assert!(matches!(
        s.add_asset(&asset("north-yard", None, "yard-light")).await,
        Err(StoreError::AlreadyExists { what: "asset", .. })
    ));
    // The structure must be in the asset's own site.
    match s
        .add_asset(&asset("north-yard", Some("t-041"), "stray"))
        .await
    {
        Err(
            err @ StoreError::NotFound {
                what: "structure", ..
            },
        ) => assert_eq!(err.to_string(), "structure north-yard/t-041 not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        s.add_asset(&asset("nowhere", None, "stray")).await,
        Err(StoreError::NotFound { what: "site", .. })
    ));
    assert!(matches!(
        s.add_asset(&asset("nowhere", Some("bay-3"), "stray")).await,
        Err(StoreError::NotFound { what: "site", .. })
    ));

    // Update: move to another structure, change phase and class, clear them.
    let moved = NewAsset {
        phase: Some(Phase::A),
        component_class: Some("clamp".into()),
        ..asset("north-yard", Some("bay-10"), "yard-light")
    };
    assert!(s.update_asset(&moved).await.unwrap());
    let got = s.asset("north-yard", "yard-light").await.unwrap().unwrap();
    assert_eq!(
        (
            got.structure.as_deref(),
            got.phase,
            got.component_class.as_deref(),
            got.created_at
        ),
        (
            Some("bay-10"),
            Some(Phase::A),
            Some("clamp"),
            loose.created_at
        )
    );
    assert!(s
        .update_asset(&asset("north-yard", None, "bay3-breaker-b"))
        .await
        .unwrap());
    let got = s
        .asset("north-yard", "bay3-breaker-b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.structure, got.phase, got.component_class),
        (None, None, None)
    );
    assert!(matches!(
        s.update_asset(&asset("north-yard", Some("bay-99"), "yard-light"))
            .await,
        Err(StoreError::NotFound {
            what: "structure",
            ..
        })
    ));
    assert_eq!(
        s.asset("north-yard", "yard-light")
            .await
            .unwrap()
            .unwrap()
            .structure
            .as_deref(),
        Some("bay-10"),
        "a refused update changes nothing"
    );
    assert!(!s
        .update_asset(&asset("north-yard", None, "no-such-asset"))
        .await
        .unwrap());
}

async fn deletes_are_refused_while_in_use<S: Store>(s: &S) {
    s.add_site(&site("north-yard", "North", SiteKind::Substation))
        .await
        .unwrap();
    s.add_structure(&structure("north-yard", "bay-3", StructureKind::Bay))
        .await
        .unwrap();
    s.add_asset(&asset("north-yard", Some("bay-3"), "breaker"))
        .await
        .unwrap();

    match s.delete_site("north-yard").await {
        Err(err @ StoreError::InUse { .. }) => assert_eq!(
            err.to_string(),
            "site north-yard (structures, assets) is in use"
        ),
        other => panic!("expected InUse, got {other:?}"),
    }
    match s.delete_structure("north-yard", "bay-3").await {
        Err(err @ StoreError::InUse { .. }) => assert_eq!(
            err.to_string(),
            "structure north-yard/bay-3 (assets) is in use"
        ),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(s.site("north-yard").await.unwrap().is_some());
    assert!(s.structure("north-yard", "bay-3").await.unwrap().is_some());

    // Bottom up, it works.
    assert!(s.delete_asset("north-yard", "breaker").await.unwrap());
    assert!(!s.delete_asset("north-yard", "breaker").await.unwrap());
    assert!(s.asset("north-yard", "breaker").await.unwrap().is_none());
    assert!(matches!(
        s.delete_site("north-yard").await,
        Err(StoreError::InUse { .. })
    ));
    assert!(s.delete_structure("north-yard", "bay-3").await.unwrap());
    assert!(!s.delete_structure("north-yard", "bay-3").await.unwrap());
    assert!(s.delete_site("north-yard").await.unwrap());
    assert!(!s.delete_site("north-yard").await.unwrap());
    assert!(s.site("north-yard").await.unwrap().is_none());

    // An asset directly under a site (no structure) holds the site too.
    s.add_site(&site("south-yard", "South", SiteKind::Substation))
        .await
        .unwrap();
    s.add_asset(&asset("south-yard", None, "light"))
        .await
        .unwrap();
    match s.delete_site("south-yard").await {
        Err(StoreError::InUse { what }) => assert_eq!(what, "site south-yard (assets)"),
        other => panic!("expected InUse, got {other:?}"),
    }
    // So does an enrolled gateway, revoked or not.
    s.add_gateway(&new_gateway("east-yard", "gw-1"))
        .await
        .unwrap();
    s.revoke_gateway("east-yard", "gw-1").await.unwrap();
    match s.delete_site("east-yard").await {
        Err(StoreError::InUse { what }) => assert_eq!(what, "site east-yard (gateways)"),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert_eq!(s.list_gateways().await.unwrap().len(), 1);
}

async fn invalid_ids_are_rejected<S: Store>(s: &S) {
    s.add_site(&site("north-yard", "North", SiteKind::Substation))
        .await
        .unwrap();
    s.add_structure(&structure("north-yard", "bay-3", StructureKind::Bay))
        .await
        .unwrap();
    let bad_ids = ["", "North-Yard", "has space", "a/b", "x+", &"a".repeat(65)];
    for bad in bad_ids {
        let what = |r: Result<_, StoreError>| match r {
            Err(StoreError::InvalidId(e)) => e.what,
            other => panic!("{bad:?}: expected InvalidId, got {other:?}"),
        };
        assert_eq!(
            what(s.add_site(&site(bad, "x", SiteKind::Line)).await.map(drop)),
            "site"
        );
        assert_eq!(
            what(
                s.update_site(&site(bad, "x", SiteKind::Line))
                    .await
                    .map(drop)
            ),
            "site"
        );
        assert_eq!(
            what(
                s.add_structure(&structure("north-yard", bad, StructureKind::Bay))
                    .await
                    .map(drop)
            ),
            "structure"
        );
        assert_eq!(
            what(
                s.add_structure(&structure(bad, "bay-1", StructureKind::Bay))
                    .await
                    .map(drop)
            ),
            "site"
        );
        assert_eq!(
            what(
                s.update_structure(&structure("north-yard", bad, StructureKind::Bay))
                    .await
                    .map(drop)
            ),
            "structure"
        );
        assert_eq!(
            what(s.add_asset(&asset("north-yard", None, bad)).await.map(drop)),
            "asset"
        );
        assert_eq!(
            what(
                s.add_asset(&asset("north-yard", Some(bad), "ok-asset"))
                    .await
                    .map(drop)
            ),
            "structure"
        );
        assert_eq!(
            what(s.add_asset(&asset(bad, None, "ok-asset")).await.map(drop)),
            "site"
        );
        assert_eq!(
            what(
                s.update_asset(&asset("north-yard", None, bad))
                    .await
                    .map(drop)
            ),
            "asset"
        );
    }
    // Nothing was stored along the way.
    assert_eq!(s.list_sites().await.unwrap().len(), 1);
    assert_eq!(s.list_structures("north-yard").await.unwrap().len(), 1);
    assert!(s.list_assets(None).await.unwrap().is_empty());
}

fn evidence_record(seed: &str, size: u64) -> EvidenceRecord {
    EvidenceRecord {
        sha256: token_hash(seed),
        size,
        content_type: "image/jpeg".into(),
        location: format!("evidence/{seed}.jpg"),
        created_at: at(1000) + Duration::nanoseconds(123_456_789),
    }
}

async fn evidence_is_recorded_once<S: Store>(s: &S) {
    let first = evidence_record("frame-1", 184_233);
    assert!(s.record_evidence(&first).await.unwrap());
    let stored = s.evidence(&first.sha256).await.unwrap().unwrap();
    assert_eq!(
        stored,
        EvidenceRecord {
            created_at: at(1000) + Duration::microseconds(123_456),
            ..first.clone()
        },
        "kept to the microsecond"
    );
    // The same hash again (another upload of the same bytes): the first record stays.
    let again = EvidenceRecord {
        location: "evidence/elsewhere.jpg".into(),
        created_at: at(9000),
        ..first.clone()
    };
    assert!(!s.record_evidence(&again).await.unwrap());
    assert_eq!(s.evidence(&first.sha256).await.unwrap().unwrap(), stored);

    let big = evidence_record("frame-2", i64::MAX as u64);
    assert!(s.record_evidence(&big).await.unwrap());
    assert_eq!(
        s.evidence(&big.sha256).await.unwrap().unwrap().size,
        i64::MAX as u64
    );
    assert!(matches!(
        s.record_evidence(&evidence_record("frame-3", u64::MAX))
            .await,
        Err(StoreError::InvalidInput { .. })
    ));
    for bad in ["ab".repeat(31), "AB".repeat(32), "zz".repeat(32)] {
        let e = EvidenceRecord {
            sha256: bad.clone(),
            ..first.clone()
        };
        assert!(
            matches!(
                s.record_evidence(&e).await,
                Err(StoreError::InvalidInput { .. })
            ),
            "{bad}"
        );
    }
    assert!(s.evidence(&token_hash("frame-3")).await.unwrap().is_none());
}

async fn the_audit_log_appends_and_lists_newest_first<S: Store>(s: &S) {
    assert!(s.list_audit(10).await.unwrap().is_empty());
    let events: Vec<AuditEvent> = (0..5)
        .map(|i| AuditEvent {
            // Out of time order on purpose: the log is in append order.
            at: at(10_000 - i * 1000) + Duration::nanoseconds(999),
            actor: "alice".into(),
            action: format!("user.action-{i}"),
            target: format!("user/{i}"),
            from_address: (i % 2 == 0).then(|| "10.0.0.5".to_string()),
            detail: if i == 3 {
                serde_json::Value::Null
            } else {
                serde_json::json!({"role": "operator", "n": i, "nested": {"list": [1, "two"]}})
            },
        })
        .collect();
    for e in &events {
        s.audit(e).await.unwrap();
    }
    let listed = s.list_audit(3).await.unwrap();
    assert_eq!(listed.len(), 3);
    let actions: Vec<&str> = listed.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(actions, ["user.action-4", "user.action-3", "user.action-2"]);
    assert!(listed.windows(2).all(|w| w[0].id > w[1].id));
    let all = s.list_audit(100).await.unwrap();
    assert_eq!(all.len(), 5);
    for (record, sent) in all.iter().rev().zip(&events) {
        let expected = AuditEvent {
            at: sent.at - Duration::nanoseconds(999),
            ..sent.clone()
        };
        assert_eq!(record.event, expected);
    }
    assert_eq!(
        s.list_audit(0).await.unwrap().len(),
        1,
        "limit is at least 1"
    );

    // NUL becomes U+FFFD on both backends (Postgres text and jsonb refuse it).
    s.audit(&AuditEvent {
        at: at(0),
        actor: "mallory\0".into(),
        action: "site.create".into(),
        target: "site/x".into(),
        from_address: None,
        detail: serde_json::json!({"name": "a\0b"}),
    })
    .await
    .unwrap();
    let newest = s.list_audit(1).await.unwrap().remove(0).event;
    assert_eq!(newest.actor, "mallory\u{FFFD}");
    assert_eq!(newest.detail, serde_json::json!({"name": "a\u{FFFD}b"}));
}

#[test]
fn roles_order_and_names_round_trip() {
    assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        assert_eq!(
            serde_json::to_string(&role).unwrap(),
            format!("\"{}\"", role.as_str())
        );
        assert_eq!(
            serde_json::from_str::<Role>(&format!("\"{role}\"")).unwrap(),
            role
        );
    }
    assert_eq!(Role::Operator.as_str(), "operator");
    assert!("Admin".parse::<Role>().is_err());
    assert_eq!("line".parse::<SiteKind>().unwrap(), SiteKind::Line);
    assert_eq!(
        "tower".parse::<StructureKind>().unwrap(),
        StructureKind::Tower
    );
    assert_eq!("B".parse::<Phase>().unwrap(), Phase::B);
    assert_eq!(serde_json::to_string(&Phase::C).unwrap(), "\"C\"");
    assert!("b".parse::<Phase>().is_err());
    let err = "root".parse::<Role>().unwrap_err();
    assert_eq!(err.to_string(), "unknown role \"root\"");
}

#[test]
fn secrets_are_redacted_from_debug() {
    let user = new_user("alice", Role::Admin);
    let session = new_session("secret-token", Uuid::nil(), 0, 1);
    let token = new_token("secret-token", Uuid::nil(), &["x"]);
    for debug in [
        format!("{user:?}"),
        format!("{session:?}"),
        format!("{token:?}"),
    ] {
        assert!(!debug.contains("argon2"), "{debug}");
        assert!(!debug.contains(&token_hash("secret-token")), "{debug}");
        assert!(!debug.contains("csrf-secret-token"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}

/// An audit event by `actor` on `target` at `ms`.
fn audit_event(ms: i64, actor: &str, action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        at: at(ms),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        from_address: Some("10.1.2.3".into()),
        detail: serde_json::json!({"n": ms, "f": 0.1 + 0.2, "z": {"b": [1, null], "a": "x\u{7}"}}),
    }
}

/// A time literal `secs` after the epoch, as each engine stores times.
fn sql_time(s: &AnyStore, secs: i64) -> String {
    match s {
        AnyStore::Sqlite(_) => (secs * 1_000_000).to_string(),
        AnyStore::Postgres(_) => format!("to_timestamp({secs})"),
    }
}

/// Runs a statement on the store's own pool, as someone with database access would.
async fn raw_sql(s: &AnyStore, sql: &str) {
    undo_migration(s, &[sql.to_string()]).await;
}

async fn the_audit_log_filters_and_pages(s: &AnyStore) {
    let events = [
        audit_event(1000, "alice", "user.add", "bob"),
        audit_event(2000, "alice", "user.update", "bob"),
        audit_event(3000, "bob", "token.add", "ci"),
        audit_event(4000, "alice", "site.create", "north"),
        audit_event(5000, "carol", "user.updates", "dave"),
    ];
    for e in &events {
        s.audit(e).await.unwrap();
    }
    let seqs = |q: AuditQuery| async move {
        let page = s.audit_page(&q).await.unwrap();
        page.items.iter().map(|r| r.seq).collect::<Vec<_>>()
    };
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(seqs(q(|_| {})).await, [5, 4, 3, 2, 1]);
    assert_eq!(seqs(q(|q| q.actor = Some("alice".into()))).await, [4, 2, 1]);
    assert_eq!(seqs(q(|q| q.target = Some("bob".into()))).await, [2, 1]);
    assert_eq!(
        seqs(q(|q| q.action = Some("user.update".into()))).await,
        [2]
    );
    // A family: `user.*` is every action starting `user.`; `user.update*` a prefix.
    assert_eq!(
        seqs(q(|q| q.action = Some("user.*".into()))).await,
        [5, 2, 1]
    );
    assert_eq!(
        seqs(q(|q| q.action = Some("user.update*".into()))).await,
        [5, 2]
    );
    assert_eq!(
        seqs(q(|q| {
            q.since = Some(at(2000));
            q.until = Some(at(4000));
        }))
        .await,
        [3, 2]
    );
    // Keyset pages of 2 cover everything once, newest first.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .audit_page(&AuditQuery {
                limit: 2,
                after,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        all.extend(page.items.iter().map(|r| r.event.action.clone()));
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = events.iter().rev().map(|e| e.action.clone()).collect();
    assert_eq!(all, expected);
    // What was read is what was written (µs time, detail with its key order irrelevant).
    let newest = s.list_audit(1).await.unwrap().remove(0);
    assert_eq!(newest.event, events[4]);
    assert_eq!(newest.hash.len(), 64);
    assert!(!newest.pseudonymised);
}

async fn the_audit_chain_detects_edits_inserts_and_deletes(s: &AnyStore) {
    let empty = s.verify_audit_chain().await.unwrap();
    assert!(empty.is_intact(), "{empty:?}");
    assert_eq!((empty.rows, empty.head_seq), (0, 0));
    assert_eq!(empty.head_hash, GENESIS_HASH);
    for i in 1..=8 {
        s.audit(&audit_event(i * 1000, "alice", "user.update", "bob"))
            .await
            .unwrap();
    }
    let intact = s.verify_audit_chain().await.unwrap();
    assert!(intact.is_intact(), "{intact:?}");
    assert_eq!((intact.rows, intact.head_seq), (8, 8));
    assert_eq!(intact.head_hash, s.list_audit(1).await.unwrap()[0].hash);

    // Tampering as someone with write access to the database would.
    raw_sql(s, "UPDATE audit_log SET action = 'user.view' WHERE seq = 2").await;
    raw_sql(s, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").await;
    raw_sql(s, "DELETE FROM audit_log WHERE seq = 5").await;
    raw_sql(s, "DELETE FROM audit_log WHERE seq = 8").await;
    raw_sql(
        s,
        &format!(
            "INSERT INTO audit_log (at, actor, action, target, detail) \
             VALUES ({}, 'mallory', 'user.add', 'mallory', 'null')",
            sql_time(s, 1_700_000_000)
        ),
    )
    .await;
    let broken = s.verify_audit_chain().await.unwrap();
    assert!(!broken.is_intact());
    assert_eq!(broken.rows, 6);
    let found: Vec<(Option<i64>, &str)> = broken
        .problems
        .iter()
        .map(|p| (p.seq, p.what.as_str()))
        .collect();
    assert_eq!(found.len(), 6, "{found:#?}");
    assert_eq!(broken.problem_count, 6);
    assert!(found[0].0 == Some(2) && found[0].1.contains("content was edited"));
    assert!(found[1].0 == Some(3) && found[1].1.contains("actor was edited"));
    assert!(found[2].0 == Some(6) && found[2].1.contains("seq jumps from 4 to 6"));
    assert!(found[3].0 == Some(6) && found[3].1.contains("prev_hash"));
    assert!(found[4].0.is_none() && found[4].1.contains("1 rows are not in the chain"));
    assert!(found[5].0.is_none() && found[5].1.contains("head says seq 8"));
}

async fn concurrent_appends_make_one_chain(s: &AnyStore) {
    let events: Vec<AuditEvent> = (0..24)
        .map(|i| audit_event(i, "alice", "user.update", "bob"))
        .collect();
    let writes = events.iter().map(|e| s.audit(e));
    for r in futures_util::future::join_all(writes).await {
        r.unwrap();
    }
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.rows, report.head_seq), (24, 24));
}

async fn pseudonymising_a_user_keeps_the_chain(s: &AnyStore) {
    let alice = s
        .add_user(&new_user("alice", Role::Operator))
        .await
        .unwrap();
    s.audit(&audit_event(1000, "admin", "user.add", "alice"))
        .await
        .unwrap();
    s.audit(&audit_event(2000, "alice", "site.create", "north"))
        .await
        .unwrap();
    s.audit(&audit_event(3000, "alice", "auth.login", "alice"))
        .await
        .unwrap();
    s.audit(&audit_event(4000, "bob", "site.update", "north"))
        .await
        .unwrap();
    let track = Uuid::now_v7();
    s.insert_findings(&ingested(&[finding(track, 2, 60.0, 0)], at(0)))
        .await
        .unwrap();
    let alert = alert_of(s, track).await;
    for (kind, actor, detail) in [
        (AlertEventKind::Acknowledge, "alice", None),
        (
            AlertEventKind::Assign,
            "bob",
            Some(serde_json::json!({"assignee": "alice"})),
        ),
    ] {
        s.record_alert_event(&NewAlertEvent {
            alert_id: alert.id,
            kind,
            actor: actor.into(),
            at: at(5000),
            from_address: Some("10.0.0.7".into()),
            note: None,
            detail,
        })
        .await
        .unwrap();
    }

    // Only a disabled account.
    let refused = s.pseudonymise_user(alice.id, "admin", at(6000)).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidInput { what: "user", .. })),
        "{refused:?}"
    );
    s.set_user_disabled(alice.id, true).await.unwrap();
    let done = s
        .pseudonymise_user(alice.id, "admin", at(6000))
        .await
        .unwrap();
    assert!(done.pseudonym.starts_with(PSEUDONYM_PREFIX), "{done:?}");
    // Actor of 2 rows, target of 2 rows; the acknowledgement's actor.
    assert_eq!((done.audit_rows, done.alert_events), (4, 1));
    assert_eq!(
        s.user(alice.id).await.unwrap().unwrap().username,
        done.pseudonym
    );
    assert!(s.user_by_username("alice").await.unwrap().is_none());

    let log = s.list_audit(100).await.unwrap();
    let text = format!("{log:?}");
    assert!(!text.contains("\"alice\""), "{text}");
    let announced = &log[0];
    assert_eq!(announced.event.action, "user.pseudonymise");
    assert_eq!(announced.event.detail["pseudonym"], done.pseudonym.as_str());
    let by_her: Vec<_> = log
        .iter()
        .filter(|r| r.event.actor == done.pseudonym)
        .collect();
    assert_eq!(by_her.len(), 2);
    assert!(by_her
        .iter()
        .all(|r| r.event.from_address.is_none() && r.pseudonymised));
    let bobs = log.iter().find(|r| r.event.actor == "bob").unwrap();
    assert_eq!(bobs.event.from_address.as_deref(), Some("10.1.2.3"));
    assert!(!bobs.pseudonymised);
    let trail = s.alert_events(alert.id).await.unwrap();
    let trail_text = format!("{trail:?}");
    assert!(!trail_text.contains("\"alice\""), "{trail_text}");
    assert!(trail_text.contains(&done.pseudonym));

    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.rows, 5);

    // A name swapped for a pseudonym nobody announced is caught.
    raw_sql(
        s,
        "UPDATE audit_log SET actor = 'former-user-00000000', actor_salt = NULL \
         WHERE actor = 'bob'",
    )
    .await;
    let report = s.verify_audit_chain().await.unwrap();
    assert_eq!(report.problem_count, 1, "{report:?}");
    assert!(
        report.problems[0].what.contains("no pseudonym"),
        "{report:?}"
    );
}

async fn audit_rows_written_before_the_chain_are_chained_on_migrate(s: &AnyStore) {
    const VERSION: i64 = 20270109000000;
    let mut undo: Vec<String> = [
        "audit_log_seq",
        "audit_log_actor",
        "audit_log_action",
        "audit_log_target",
    ]
    .iter()
    .map(|i| format!("DROP INDEX {i}"))
    .collect();
    for column in [
        "seq",
        "prev_hash",
        "hash",
        "actor_salt",
        "actor_digest",
        "target_salt",
        "target_digest",
        "address_salt",
        "address_digest",
    ] {
        undo.push(format!("ALTER TABLE audit_log DROP COLUMN {column}"));
    }
    undo.push("DROP TABLE audit_chain_head".into());
    undo.push(format!(
        "DELETE FROM _sqlx_migrations WHERE version = {VERSION}"
    ));
    undo_migration(s, &undo).await;
    for (i, actor) in ["alice", "bob", "carol"].iter().enumerate() {
        raw_sql(
            s,
            &format!(
                "INSERT INTO audit_log (at, actor, action, target, from_address, detail) \
                 VALUES ({}, '{actor}', 'user.add', 'x', NULL, \
                 '{{\"role\": \"viewer\", \"i\": {i}}}')",
                sql_time(s, 1_700_000_000 + i as i64)
            ),
        )
        .await;
    }
    s.migrate().await.unwrap();
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.rows, report.head_seq), (3, 3));
    let log = s.list_audit(10).await.unwrap();
    let actors: Vec<(i64, &str)> = log
        .iter()
        .map(|r| (r.seq, r.event.actor.as_str()))
        .collect();
    assert_eq!(actors, [(3, "carol"), (2, "bob"), (1, "alice")]);
    assert_eq!(
        log[0].event.detail,
        serde_json::json!({"role": "viewer", "i": 2})
    );
    // New rows continue the same chain.
    s.audit(&audit_event(1, "dave", "user.add", "y"))
        .await
        .unwrap();
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.is_intact() && report.rows == 4, "{report:?}");
    // Migrating again seals nothing twice.
    s.migrate().await.unwrap();
    assert!(s.verify_audit_chain().await.unwrap().is_intact());
}

/// Resolves the alert of `track` (as an operator would).
async fn resolve(s: &AnyStore, track: Uuid, detail: Option<serde_json::Value>) {
    let alert = alert_of(s, track).await;
    s.record_alert_event(&NewAlertEvent {
        alert_id: alert.id,
        kind: AlertEventKind::Resolve,
        actor: "otto".into(),
        at: at(2000),
        from_address: None,
        note: Some("fixed".into()),
        detail,
    })
    .await
    .unwrap();
}

/// Runs the findings pass to the end in batches of `batch`: (removed, kept).
async fn expire_findings(s: &AnyStore, cutoff: DateTime<Utc>, batch: u32) -> (u64, u64) {
    let (mut removed, mut kept, mut after) = (0, 0, None);
    loop {
        let (r, k, last) = s
            .remove_expired_findings(cutoff, after, batch)
            .await
            .unwrap();
        removed += r;
        kept += k;
        match last {
            Some(key) => after = Some(key),
            None => return (removed, kept),
        }
    }
}

fn hold(
    kind: HoldKind,
    asset: Option<&str>,
    from: Option<i64>,
    until: Option<i64>,
) -> NewRetentionHold {
    NewRetentionHold {
        kind,
        site: Some("north-yard".into()),
        asset: asset.map(str::to_owned),
        from: from.map(at),
        until: until.map(at),
        reason: "case 2026-118".into(),
        created_by: "ada".into(),
        created_at: at(0),
    }
}

async fn retention_removes_expired_findings_but_never_open_held_or_kept_ones(s: &AnyStore) {
    let [open, done, held, reported, recent] = [(); 5].map(|_| Uuid::now_v7());
    let mut f_open = finding(open, 2, 60.0, 0);
    f_open.asset = Some("bay1-a".into());
    let f_done = finding(done, 2, 60.0, 0);
    let mut f_held = finding(held, 2, 60.0, 1000);
    f_held.asset = Some("bay4-ct-a".into());
    let mut f_reported = finding(reported, 2, 60.0, 5000);
    f_reported.asset = Some("bay5-ct-b".into());
    // Received long ago, all of them.
    s.insert_findings(&ingested(
        &[f_open, f_done.clone(), f_held, f_reported],
        at(0),
    ))
    .await
    .unwrap();
    s.insert_findings(&ingested(
        &[finding(recent, 2, 60.0, 0)],
        at(0) + Duration::days(30),
    ))
    .await
    .unwrap();
    for track in [done, held, reported, recent] {
        resolve(s, track, None).await;
    }
    let legal = s
        .add_retention_hold(&hold(HoldKind::LegalHold, Some("bay4-ct-a"), None, None))
        .await
        .unwrap();
    // A kept report of the window around `reported` only (not `done`, observed at 0).
    s.add_retention_hold(&hold(HoldKind::KeptReport, None, Some(4000), Some(6000)))
        .await
        .unwrap();
    let cutoff = at(0) + Duration::days(10);

    assert_eq!(expire_findings(s, cutoff, 2).await, (1, 3));
    assert!(s.finding(f_done.id).await.unwrap().is_none());
    assert_eq!(s.count_findings().await.unwrap(), 4);
    // Its resolved alert, with its trail, goes; the others stay (open, or findings left).
    assert_eq!(s.remove_finished_alerts(cutoff, 100).await.unwrap(), 1);
    assert_eq!(s.remove_finished_alerts(cutoff, 100).await.unwrap(), 0);
    let alerts = s
        .list_alerts(&AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    let tracks: HashSet<Uuid> = alerts.items.iter().map(|a| a.track_id).collect();
    assert_eq!(tracks, HashSet::from([open, held, reported, recent]));

    // Released, the hold keeps nothing: the next run removes its finding and alert.
    assert!(s
        .release_retention_hold(legal.id, "ada", at(3000))
        .await
        .unwrap());
    assert!(!s
        .release_retention_hold(legal.id, "ada", at(3000))
        .await
        .unwrap());
    assert_eq!(expire_findings(s, cutoff, 100).await, (1, 2));
    assert_eq!(s.remove_finished_alerts(cutoff, 100).await.unwrap(), 1);
    let holds = s.retention_holds().await.unwrap();
    assert_eq!(holds.len(), 2);
    let released = holds.iter().find(|h| h.id == legal.id).unwrap();
    assert_eq!(released.released, Some(("ada".to_string(), at(3000))));
    assert_eq!(released.hold.asset.as_deref(), Some("bay4-ct-a"));
    assert_eq!(released.hold.kind, HoldKind::LegalHold);

    // Reopened between the scan and the delete: the delete re-checks and keeps it.
    let alert = alert_of(s, reported).await;
    s.record_alert_event(&NewAlertEvent {
        alert_id: alert.id,
        kind: AlertEventKind::Reopen,
        actor: "otto".into(),
        at: at(4000),
        from_address: None,
        note: None,
        detail: None,
    })
    .await
    .unwrap();
    for h in s.retention_holds().await.unwrap() {
        s.release_retention_hold(h.id, "ada", at(5000))
            .await
            .unwrap();
    }
    assert_eq!(
        expire_findings(s, cutoff, 100).await,
        (0, 2),
        "open alerts keep theirs"
    );
    assert_eq!(s.count_findings().await.unwrap(), 3);
}

async fn retention_collects_only_evidence_nothing_refers_to(s: &AnyStore) {
    let sha = |c: &str| c.repeat(64);
    let record = |hash: String, ms: i64| EvidenceRecord {
        sha256: hash.clone(),
        size: 1000,
        content_type: "image/jpeg".into(),
        location: hash,
        created_at: at(ms),
    };
    // "ab…" is the template finding's evidence; "cd…" a resolution's "verified fixed".
    let referenced = "ab".repeat(32);
    for (hash, ms) in [
        (referenced.clone(), 0),
        ("cd".repeat(32), 0),
        (sha("e"), 0),
        (sha("f"), 20 * 86_400_000),
    ] {
        s.record_evidence(&record(hash, ms)).await.unwrap();
    }
    let track = Uuid::now_v7();
    s.insert_findings(&ingested(&[finding(track, 2, 60.0, 0)], at(0)))
        .await
        .unwrap();
    resolve(
        s,
        track,
        Some(serde_json::json!({"verified_fixed_sha256": "cd".repeat(32)})),
    )
    .await;
    let cutoff = at(0) + Duration::days(10);
    let gone = s.remove_unreferenced_evidence(cutoff, 100).await.unwrap();
    assert_eq!(gone, [(sha("e"), 1000)]);
    assert!(s
        .remove_unreferenced_evidence(cutoff, 100)
        .await
        .unwrap()
        .is_empty());
    for kept in [referenced.clone(), "cd".repeat(32), sha("f")] {
        assert!(s.evidence(&kept).await.unwrap().is_some(), "{kept}");
    }
    // Its finding gone, the template's evidence goes too.
    assert_eq!(expire_findings(s, cutoff, 100).await.0, 1);
    let gone = s.remove_unreferenced_evidence(cutoff, 100).await.unwrap();
    assert_eq!(gone, [(referenced, 1000)]);
}

async fn retention_rolls_telemetry_minutes_into_hours_and_expires_them(s: &AnyStore) {
    let hour = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    let t = |min: i64, cpu: f64, disk: u64| {
        sample(
            hour + Duration::minutes(min),
            Some(cpu),
            None,
            Some(disk),
            Some(10.0),
            1,
        )
    };
    for sample in [
        t(0, 50.0, 900),
        t(1, 70.0, 800),
        t(59, 60.0, 950),
        t(60, 40.0, 100),
    ] {
        assert!(s
            .insert_telemetry("north-yard", "gw-07", &sample)
            .await
            .unwrap());
    }
    s.insert_telemetry("north-yard", "gw-08", &t(5, 30.0, 10))
        .await
        .unwrap();
    let cutoff = hour + Duration::hours(1);
    let oldest = s.oldest_telemetry_minute(cutoff).await.unwrap();
    assert_eq!(oldest, Some(hour));
    assert_eq!(
        s.roll_up_telemetry_hour(hour).await.unwrap(),
        4,
        "3 + 1 minutes"
    );
    assert_eq!(s.oldest_telemetry_minute(cutoff).await.unwrap(), None);
    let hours = s
        .telemetry_hours("north-yard", "gw-07", hour, cutoff)
        .await
        .unwrap();
    assert_eq!(hours.len(), 1);
    let h = &hours[0];
    assert_eq!((h.bucket_start, h.samples, h.frame_drops), (hour, 3, 3));
    assert_eq!(h.cpu_temp_avg_c, Some(60.0));
    assert_eq!(h.cpu_temp_max_c, Some(70.0));
    assert_eq!(h.gpu_temp_max_c, None);
    assert_eq!(h.disk_free_min_bytes, Some(800));
    assert_eq!(
        (h.first_ts, h.last_ts),
        (hour, hour + Duration::minutes(59))
    );
    // The next hour's minute is untouched; a late minute of a rolled hour merges in.
    let minutes = s
        .telemetry("north-yard", "gw-07", hour, cutoff + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(minutes.len(), 1);
    s.insert_telemetry("north-yard", "gw-09", &t(30, 90.0, 5))
        .await
        .unwrap();
    s.roll_up_telemetry_hour(hour).await.unwrap();
    let gw9 = s
        .telemetry_hours("north-yard", "gw-09", hour, cutoff)
        .await
        .unwrap();
    assert_eq!(gw9[0].cpu_temp_max_c, Some(90.0));
    assert_eq!(
        s.telemetry_hours("north-yard", "gw-08", hour, cutoff)
            .await
            .unwrap()[0]
            .samples,
        1
    );
    // Hours expire in batches.
    assert_eq!(
        s.remove_expired_telemetry_hours(cutoff, 2).await.unwrap(),
        2
    );
    assert_eq!(
        s.remove_expired_telemetry_hours(cutoff, 2).await.unwrap(),
        1
    );
    assert_eq!(
        s.remove_expired_telemetry_hours(cutoff, 2).await.unwrap(),
        0
    );
}

async fn retention_expires_dead_letters_and_one_holder_has_the_lease(s: &AnyStore) {
    for ms in [0, 1000, 20 * 86_400_000] {
        s.record_dead_letter(&DeadLetter {
            received_at: at(ms),
            topic: "chitti/v1/north-yard/gw-07/findings".into(),
            reason: "json: eof".into(),
            payload: b"{".to_vec(),
        })
        .await
        .unwrap();
    }
    let cutoff = at(0) + Duration::days(10);
    assert_eq!(s.remove_expired_dead_letters(cutoff, 1).await.unwrap(), 1);
    assert_eq!(s.remove_expired_dead_letters(cutoff, 10).await.unwrap(), 1);
    assert_eq!(s.remove_expired_dead_letters(cutoff, 10).await.unwrap(), 0);
    assert_eq!(s.dead_letter_count().await.unwrap(), 1);

    let (t0, lease) = (at(0), Duration::seconds(600));
    assert!(s
        .take_job_lease("retention", "hub-a", t0, t0 + lease)
        .await
        .unwrap());
    assert!(!s
        .take_job_lease("retention", "hub-b", t0, t0 + lease)
        .await
        .unwrap());
    // The holder renews; another gets it only once it lapsed, or was given back.
    let t1 = t0 + Duration::seconds(300);
    assert!(s
        .take_job_lease("retention", "hub-a", t1, t1 + lease)
        .await
        .unwrap());
    let t2 = t0 + Duration::seconds(700);
    assert!(!s
        .take_job_lease("retention", "hub-b", t2, t2 + lease)
        .await
        .unwrap());
    let t3 = t1 + lease + Duration::seconds(1);
    assert!(s
        .take_job_lease("retention", "hub-b", t3, t3 + lease)
        .await
        .unwrap());
    s.release_job_lease("retention", "hub-a").await.unwrap();
    assert!(!s
        .take_job_lease("retention", "hub-a", t3, t3 + lease)
        .await
        .unwrap());
    s.release_job_lease("retention", "hub-b").await.unwrap();
    assert!(s
        .take_job_lease("retention", "hub-a", t3, t3 + lease)
        .await
        .unwrap());
    assert!(s
        .take_job_lease("other-job", "hub-b", t3, t3 + lease)
        .await
        .unwrap());
}

async fn an_asset_trend_buckets_max_delta_level_and_inspections(s: &AnyStore) {
    let hour = 3_600_000;
    let mk = |asset: &str, ms: i64, level: u8, max_c: f64, delta: Option<f64>, upload: bool| {
        let mut f = finding(Uuid::now_v7(), level, max_c, ms);
        f.asset = Some(asset.into());
        f.severity.inputs.delta_c = delta;
        if upload {
            f.source = FindingSource::Upload;
        }
        f
    };
    let findings = [
        mk("bay3-a", 0, 1, 50.0, Some(10.0), false),
        mk("bay3-a", 10 * 60_000, 3, 80.0, Some(35.5), true),
        mk("bay3-a", hour + 60_000, 2, 60.0, None, false),
        mk("bay3-b", 5 * 60_000, 1, 40.0, Some(4.0), false),
        mk("bay3-c", 0, 4, 99.0, Some(60.0), false),
        // Outside the period.
        mk("bay3-a", 5 * hour, 4, 120.0, Some(80.0), false),
    ];
    s.insert_findings(&ingested(&findings, at(0)))
        .await
        .unwrap();
    let assets = vec!["bay3-a".to_string(), "bay3-b".to_string()];
    let points = s
        .asset_trend(
            "north-yard",
            &assets,
            at(0),
            at(2 * hour),
            Duration::hours(1),
        )
        .await
        .unwrap();
    type Summary<'a> = (&'a str, u64, f64, Option<f64>, u8, u64);
    let summary: Vec<Summary> = points
        .iter()
        .map(|p| {
            (
                p.asset.as_str(),
                p.findings,
                p.max_c,
                p.max_delta_c,
                p.worst_level,
                p.uploads,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("bay3-a", 2, 80.0, Some(35.5), 3, 1),
            ("bay3-a", 1, 60.0, None, 2, 0),
            ("bay3-b", 1, 40.0, Some(4.0), 1, 0),
        ]
    );
    // Buckets start on whole multiples of the bucket length (UTC).
    let first = points[0].bucket_start;
    assert_eq!(first.timestamp() % 3600, 0);
    assert!(first <= at(0) && at(0) < first + Duration::hours(1));
    assert!(s
        .asset_trend("north-yard", &[], at(0), at(hour), Duration::hours(1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.asset_severity_table("north-yard", "bay3-a")
            .await
            .unwrap()
            .as_deref(),
        Some(findings[5].severity.table.as_str())
    );
    assert_eq!(
        s.asset_severity_table("north-yard", "none").await.unwrap(),
        None
    );
}
