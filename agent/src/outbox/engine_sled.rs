//! The outbox on sled 0.34: one tree, each commit an atomic `apply_batch` followed by
//! `flush` (which, on Linux, sled implements with `sync_file_range`; see the outbox
//! module header, "Engine: redb by default", for what that means after a power cut).

use super::{ensure_folder, Op, OutboxError, StoreEngine, Visit};
use std::path::Path;

/// sled database folder `sled/` in the outbox folder.
#[derive(Debug)]
pub struct SledEngine {
    db: sled::Db,
}

fn fail(operation: &'static str) -> impl Fn(sled::Error) -> OutboxError {
    move |e| OutboxError::Engine {
        engine: "sled",
        operation,
        message: e.to_string(),
    }
}

impl SledEngine {
    /// Opens (or creates) the database in `folder`.
    pub fn open(folder: &Path) -> Result<Self, OutboxError> {
        ensure_folder(folder)?;
        // sled's background flusher holds the file lock for a moment after the last
        // handle drops (a restart in the same process, or a previous process still
        // exiting): retry a lock conflict briefly instead of failing the start.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match sled::Config::new().path(folder.join("sled")).open() {
                Ok(db) => return Ok(Self { db }),
                // sled reports the conflict as `ErrorKind::Other` with the OS error in
                // its message, so both forms count.
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(fail("open")(e)),
            }
        }
    }
}

impl StoreEngine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), OutboxError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.db.apply_batch(batch).map_err(fail("commit"))?;
        self.db.flush().map_err(fail("flush"))?;
        Ok(())
    }

    fn scan(&self, prefix: u8, visit: &mut Visit<'_>) -> Result<(), OutboxError> {
        for item in self.db.scan_prefix([prefix]) {
            let (k, v) = item.map_err(fail("scan"))?;
            visit(&k, &v)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, OutboxError> {
        Ok(self.db.get(key).map_err(fail("read"))?.map(|v| v.to_vec()))
    }
}
