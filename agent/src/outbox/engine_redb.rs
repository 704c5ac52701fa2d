//! The outbox on redb: one table of byte keys to byte values, every commit with
//! `Durability::Immediate` (redb's default: data synced, then the new root synced).

use super::{ensure_folder, Op, OutboxError, StoreEngine, Visit};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");

/// redb file `outbox.redb` in the outbox folder.
#[derive(Debug)]
pub struct RedbEngine {
    db: Database,
}

fn fail(operation: &'static str) -> impl Fn(String) -> OutboxError {
    move |message| OutboxError::Engine {
        engine: "redb",
        operation,
        message,
    }
}

impl RedbEngine {
    /// Opens (or creates) the database in `folder`.
    pub fn open(folder: &Path) -> Result<Self, OutboxError> {
        ensure_folder(folder)?;
        let db = Database::create(folder.join("outbox.redb"))
            .map_err(|e| fail("open")(e.to_string()))?;
        // Create the table once so readers never meet a missing table.
        let txn = db.begin_write().map_err(|e| fail("open")(e.to_string()))?;
        txn.open_table(TABLE)
            .map_err(|e| fail("open")(e.to_string()))?;
        txn.commit().map_err(|e| fail("open")(e.to_string()))?;
        Ok(Self { db })
    }
}

impl StoreEngine for RedbEngine {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), OutboxError> {
        let err = fail("commit");
        let txn = self.db.begin_write().map_err(|e| err(e.to_string()))?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| err(e.to_string()))?;
            for op in &ops {
                match op {
                    Op::Put(k, v) => {
                        table
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(|e| err(e.to_string()))?;
                    }
                    Op::Delete(k) => {
                        table.remove(k.as_slice()).map_err(|e| err(e.to_string()))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| err(e.to_string()))
    }

    fn scan(&self, prefix: u8, visit: &mut Visit<'_>) -> Result<(), OutboxError> {
        let err = fail("scan");
        let txn = self.db.begin_read().map_err(|e| err(e.to_string()))?;
        let table = txn.open_table(TABLE).map_err(|e| err(e.to_string()))?;
        let start = [prefix];
        for item in table
            .range::<&[u8]>(start.as_slice()..)
            .map_err(|e| err(e.to_string()))?
        {
            let (k, v) = item.map_err(|e| err(e.to_string()))?;
            let key = k.value();
            if key.first() != Some(&prefix) {
                break;
            }
            visit(key, v.value())?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, OutboxError> {
        let err = fail("read");
        let txn = self.db.begin_read().map_err(|e| err(e.to_string()))?;
        let table = txn.open_table(TABLE).map_err(|e| err(e.to_string()))?;
        Ok(table
            .get(key)
            .map_err(|e| err(e.to_string()))?
            .map(|v| v.value().to_vec()))
    }
}
