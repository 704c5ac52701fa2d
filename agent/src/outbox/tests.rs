//! One suite, every engine: each test runs on redb and on sled.

use super::*;
use crate::analysis::{EvidenceBlob, NewFinding};
use chitti_common::finding::*;
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::severity::{SeverityCatalog, SeverityInputs};

pub(crate) fn sample(level_c: f64, evidence: Option<&EvidenceBlob>) -> NewFinding {
    let table = SeverityCatalog::builtin();
    let table = table.get("utility-absolute").unwrap();
    let severity = table.assess(&SeverityInputs {
        max_c: level_c,
        reference: None,
    });
    let critical = severity.level == table.highest_rank();
    let now = chrono::Utc::now();
    NewFinding {
        finding: Finding {
            id: Uuid::now_v7(),
            site: "s".into(),
            gateway: "g".into(),
            camera: "c".into(),
            asset: None,
            preset: None,
            captured_at: now.fixed_offset(),
            observed_at: now,
            source: FindingSource::Stream,
            component: None,
            hotspot: HotspotSummary {
                bbox: PixelRect {
                    x: 1,
                    y: 2,
                    w: 3,
                    h: 4,
                },
                max_c: level_c,
                mean_c: level_c - 1.0,
                max_at: PixelPoint { x: 2, y: 3 },
                area_px: 12,
            },
            reference: ReferenceSummary {
                ambient_c: 20.0,
                ambient_source: "test".into(),
                similar: None,
            },
            severity,
            measurement: Measurement {
                emissivity: 0.95,
                distance_m: 1.0,
                reflected_c: 20.0,
                atmosphere_c: 20.0,
                relative_humidity: 0.5,
                qualitative: false,
            },
            track: TrackSummary {
                id: Uuid::now_v7(),
                first_seen: now,
                last_seen: now,
                frames: 3,
                state: TrackState::Raised,
            },
            model: None,
            evidence: evidence.map(|e| EvidenceRef {
                sha256: e.sha256.clone(),
            }),
            historical: false,
            quality: None,
        },
        critical,
        evidence: evidence.cloned(),
    }
}

fn limits() -> BatchLimits {
    BatchLimits {
        max_findings: 10,
        max_bytes: 1 << 20,
        max_inflight: 100,
        resend_after: Duration::from_secs(60),
    }
}

fn ids(items: &[NewFinding]) -> Vec<Uuid> {
    items.iter().map(|i| i.finding.id).collect()
}

fn blob(fill: u8, len: usize) -> EvidenceBlob {
    EvidenceBlob::new(vec![fill; len])
}

macro_rules! outbox_suite {
    ($engine:ident, $open:expr) => {
        mod $engine {
            use super::*;

            fn open(dir: &Path, max_bytes: u64, uploads: bool) -> Outbox {
                let engine: Box<dyn StoreEngine> = Box::new(($open)(dir).unwrap());
                Outbox::open(engine, max_bytes, uploads).unwrap()
            }

            #[test]
            fn stored_findings_survive_reopen_in_order() {
                let dir = tempfile::tempdir().unwrap();
                let items: Vec<_> = (0..5).map(|i| sample(40.0 + f64::from(i), None)).collect();
                {
                    let outbox = open(dir.path(), 1 << 30, true);
                    let report = outbox.append(&items, true).unwrap();
                    assert_eq!(report.stored, 5);
                    assert_eq!(outbox.stored_ids(), ids(&items));
                }
                let outbox = open(dir.path(), 1 << 30, true);
                assert_eq!(outbox.stored_ids(), ids(&items));
                assert_eq!(outbox.status().depth, 5);
                // Left over from a previous run: replays are historical.
                let batch = outbox.take_batch(Instant::now(), limits()).unwrap();
                assert_eq!(batch.len(), 5);
                assert!(batch.iter().all(|f| f.historical));
                assert_eq!(batch[2].hotspot.max_c, 42.0);
            }

            #[test]
            fn live_sends_are_not_historical_resends_are() {
                let dir = tempfile::tempdir().unwrap();
                let outbox = open(dir.path(), 1 << 30, true);
                let live: Vec<_> = (0..3).map(|_| sample(40.0, None)).collect();
                outbox.append(&live, true).unwrap();
                let offline: Vec<_> = (0..2).map(|_| sample(40.0, None)).collect();
                outbox.append(&offline, false).unwrap();
                let t0 = Instant::now();
                let batch = outbox.take_batch(t0, limits()).unwrap();
                let flags: Vec<bool> = batch.iter().map(|f| f.historical).collect();
                assert_eq!(flags, [false, false, false, true, true]);
                // In flight: nothing more is due before the resend timeout.
                assert!(outbox
                    .take_batch(t0 + Duration::from_secs(59), limits())
                    .unwrap()
                    .is_empty());
                assert_eq!(outbox.in_flight(), 5);
                let again = outbox
                    .take_batch(t0 + Duration::from_secs(60), limits())
                    .unwrap();
                assert_eq!(again.len(), 5);
                assert!(again.iter().all(|f| f.historical));
                // A reconnect makes everything due at once.
                outbox.reset_inflight();
                assert_eq!(outbox.in_flight(), 0);
                assert_eq!(
                    outbox
                        .take_batch(t0 + Duration::from_secs(61), limits())
                        .unwrap()
                        .len(),
                    5
                );
            }

            #[test]
            fn batches_respect_count_bytes_and_inflight_limits() {
                let dir = tempfile::tempdir().unwrap();
                let outbox = open(dir.path(), 1 << 30, true);
                let items: Vec<_> = (0..30).map(|_| sample(40.0, None)).collect();
                outbox.append(&items, true).unwrap();
                let now = Instant::now();
                let l = BatchLimits {
                    max_findings: 7,
                    max_bytes: 1 << 20,
                    max_inflight: 12,
                    resend_after: Duration::from_secs(60),
                };
                assert_eq!(outbox.take_batch(now, l).unwrap().len(), 7);
                assert_eq!(
                    outbox.take_batch(now, l).unwrap().len(),
                    5,
                    "inflight cap 12"
                );
                assert!(outbox.take_batch(now, l).unwrap().is_empty());
                let one = serde_json::to_vec(&items[0].finding).unwrap().len();
                let l = BatchLimits {
                    max_findings: 100,
                    max_bytes: one * 3,
                    max_inflight: 100,
                    resend_after: Duration::from_secs(60),
                };
                let b = outbox.take_batch(now, l).unwrap();
                assert!(!b.is_empty() && b.len() <= 3, "{}", b.len());
                // Order is append order.
                let sent: Vec<Uuid> = b.iter().map(|f| f.id).collect();
                assert_eq!(sent, ids(&items)[12..12 + b.len()]);
            }

            #[test]
            fn acknowledged_findings_are_deleted_for_good() {
                let dir = tempfile::tempdir().unwrap();
                let items: Vec<_> = (0..4).map(|_| sample(60.0, None)).collect();
                {
                    let outbox = open(dir.path(), 1 << 30, true);
                    outbox.append(&items, true).unwrap();
                    let acked = outbox
                        .acknowledge(&[items[1].finding.id, items[3].finding.id, Uuid::now_v7()])
                        .unwrap();
                    assert_eq!(acked, 2, "unknown ids are ignored");
                    assert_eq!(
                        outbox.acknowledge(&[items[1].finding.id]).unwrap(),
                        0,
                        "acks repeat"
                    );
                }
                let outbox = open(dir.path(), 1 << 30, true);
                assert_eq!(
                    outbox.stored_ids(),
                    vec![items[0].finding.id, items[2].finding.id]
                );
            }

            #[test]
            fn the_same_finding_is_stored_once() {
                let dir = tempfile::tempdir().unwrap();
                let outbox = open(dir.path(), 1 << 30, true);
                let item = sample(60.0, None);
                assert_eq!(
                    outbox
                        .append(std::slice::from_ref(&item), true)
                        .unwrap()
                        .stored,
                    1
                );
                let r = outbox.append(&[item.clone(), item], true).unwrap();
                assert_eq!((r.stored, r.duplicates), (0, 2));
                assert_eq!(outbox.status().depth, 1);
            }

            #[test]
            fn evidence_is_shared_uploaded_then_deleted() {
                let dir = tempfile::tempdir().unwrap();
                let outbox = open(dir.path(), 1 << 30, true);
                let e = blob(7, 1000);
                let a = sample(60.0, Some(&e));
                let b = sample(61.0, Some(&e));
                outbox.append(&[a.clone(), b], true).unwrap();
                assert_eq!(outbox.evidence_to_upload(10), vec![e.sha256.clone()]);
                assert_eq!(outbox.evidence(&e.sha256).unwrap().unwrap(), vec![7; 1000]);
                // Acknowledged findings do not take evidence the hub still needs.
                outbox.acknowledge(&[a.finding.id]).unwrap();
                assert!(outbox.evidence(&e.sha256).unwrap().is_some());
                outbox.evidence_uploaded(&e.sha256).unwrap();
                assert!(outbox.evidence(&e.sha256).unwrap().is_none());
                assert!(outbox.evidence_to_upload(10).is_empty());
            }

            #[test]
            fn without_an_uploader_evidence_goes_with_its_last_finding() {
                let dir = tempfile::tempdir().unwrap();
                let outbox = open(dir.path(), 1 << 30, false);
                let e = blob(9, 500);
                let a = sample(60.0, Some(&e));
                let b = sample(61.0, Some(&e));
                outbox.append(&[a.clone(), b.clone()], true).unwrap();
                outbox.acknowledge(&[a.finding.id]).unwrap();
                assert!(outbox.evidence(&e.sha256).unwrap().is_some());
                outbox.acknowledge(&[b.finding.id]).unwrap();
                assert!(outbox.evidence(&e.sha256).unwrap().is_none());
                assert_eq!(outbox.status().bytes, 0);
            }

            #[test]
            fn eviction_takes_low_evidence_then_low_findings_never_critical() {
                let dir = tempfile::tempdir().unwrap();
                let cap = 64 * 1024;
                let outbox = open(dir.path(), cap, true);
                // Level 1 with evidence, level 2 with evidence, critical with evidence.
                let (e1, e2, e3) = (blob(1, 20_000), blob(2, 20_000), blob(3, 20_000));
                let low = sample(40.0, Some(&e1));
                let mid = sample(60.0, Some(&e2));
                let crit = sample(90.0, Some(&e3));
                assert!(crit.critical && !mid.critical);
                let r = outbox
                    .append(&[low.clone(), mid.clone(), crit.clone()], true)
                    .unwrap();
                assert_eq!(
                    r.evicted,
                    EvictionCounts::default(),
                    "fits: {:?}",
                    outbox.status()
                );
                // Another blob pushes it over: the level-1 evidence goes first.
                let e4 = blob(4, 10_000);
                let more = sample(41.0, Some(&e4));
                let r = outbox.append(std::slice::from_ref(&more), true).unwrap();
                assert_eq!(
                    r.evicted,
                    EvictionCounts {
                        evidence: 1,
                        findings: 0
                    }
                );
                assert!(outbox.evidence(&e1.sha256).unwrap().is_none());
                assert!(outbox.evidence(&e4.sha256).unwrap().is_some());
                assert!(outbox.evidence(&e2.sha256).unwrap().is_some());
                // A flood of level-1 findings without evidence: evidence of non-critical
                // findings first (e4 then e2), then the oldest level-1 findings.
                let flood: Vec<_> = (0..60).map(|_| sample(40.0, None)).collect();
                outbox.append(&flood, true).unwrap();
                let status = outbox.status();
                assert!(status.bytes <= cap, "{status:?}");
                assert!(outbox.evidence(&e4.sha256).unwrap().is_none());
                assert!(outbox.evidence(&e2.sha256).unwrap().is_none());
                let stored = outbox.stored_ids();
                assert!(stored.contains(&crit.finding.id), "critical finding kept");
                assert!(stored.contains(&mid.finding.id), "level 2 outlives level 1");
                assert!(!stored.contains(&low.finding.id), "oldest level 1 evicted");
                assert!(
                    stored.contains(&flood[59].finding.id),
                    "newest level 1 kept"
                );
                assert!(status.evicted.findings > 0);
                assert_eq!(status.evicted.evidence, 3);
                // Counters survive a restart.
                drop(outbox);
                let outbox = open(dir.path(), cap, true);
                assert_eq!(outbox.status().evicted, status.evicted);
            }

            #[test]
            fn critical_findings_stay_even_above_the_cap() {
                let dir = tempfile::tempdir().unwrap();
                let cap = 256 << 10;
                let outbox = open(dir.path(), cap, true);
                let crits: Vec<_> = (0..1000).map(|_| sample(95.0, None)).collect();
                let r = outbox.append(&crits, true).unwrap();
                assert_eq!(r.stored, 1000);
                assert!(r.over_cap);
                assert_eq!(r.evicted, EvictionCounts::default());
                // A new low finding is the one that goes.
                let low = sample(40.0, None);
                let r = outbox.append(std::slice::from_ref(&low), true).unwrap();
                assert_eq!((r.stored, r.evicted.findings), (0, 1));
                assert_eq!(outbox.status().depth, 1000);
            }
        }
    };
}

outbox_suite!(redb_engine, |p: &Path| RedbEngine::open(p));
outbox_suite!(sled_engine, |p: &Path| SledEngine::open(p));

/// An engine whose commits fail on demand (a full disk, a remount read-only).
struct FailingEngine {
    inner: RedbEngine,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StoreEngine for FailingEngine {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn commit(&self, ops: Vec<Op>) -> Result<(), OutboxError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(OutboxError::Engine {
                engine: "failing",
                operation: "commit",
                message: "no space left on device".into(),
            });
        }
        self.inner.commit(ops)
    }
    fn scan(&self, prefix: u8, visit: &mut Visit<'_>) -> Result<(), OutboxError> {
        self.inner.scan(prefix, visit)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, OutboxError> {
        self.inner.get(key)
    }
}

#[test]
fn a_failed_commit_leaves_memory_agreeing_with_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = FailingEngine {
        inner: RedbEngine::open(dir.path()).unwrap(),
        fail: fail.clone(),
    };
    let outbox = Outbox::open(Box::new(engine), 64 * 1024, true).unwrap();
    let kept: Vec<_> = (0..3)
        .map(|_| sample(95.0, Some(&blob(1, 10_000))))
        .collect();
    outbox.append(&kept, true).unwrap();
    let before = outbox.status();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    // An append that would also evict: neither the new findings nor the evictions stick.
    let flood: Vec<_> = (0..80)
        .map(|_| sample(40.0, Some(&blob(2, 5_000))))
        .collect();
    let err = outbox.append(&flood, true).unwrap_err();
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(outbox.status(), before);
    assert_eq!(outbox.stored_ids(), ids(&kept));
    assert!(outbox.acknowledge(&[kept[0].finding.id]).is_err());
    assert_eq!(
        outbox.stored_ids(),
        ids(&kept),
        "a failed ack deletes nothing"
    );
    // The disk is back: the same append goes through.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = outbox.append(&flood, true).unwrap();
    assert!(report.stored > 0);
    let stored = outbox.stored_ids();
    assert!(
        kept.iter().all(|k| stored.contains(&k.finding.id)),
        "critical findings stay"
    );
}
