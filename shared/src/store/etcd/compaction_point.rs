//! Where etcd's history starts. etcd does not report its compaction point,
//! but a read at a revision fails exactly when that revision is compacted.
//! Asked by every `GET /v1/status`, by every subscription created with
//! `since`, by 410 answers (a compacted page or watch) and by compaction:
//! the point this process knows, else the one compaction recorded
//! (`COMPACTED_META`), is confirmed with two reads (readable at it, not
//! before it); only when it moved since or is unknown is it binary
//! searched, from the known point on.

use std::sync::atomic::Ordering;

use etcd_client::GetOptions;

use super::{map_err, EtcdStore};
use crate::store::{StateStore, StoreError, StoreResult, COMPACTED_META};

impl EtcdStore {
    pub(super) async fn compaction_point(&self) -> StoreResult<i64> {
        let mut known = self.compacted.load(Ordering::Relaxed);
        if known == 0 {
            // Where compaction recorded it: a hint, confirmed below.
            let meta = self.get_meta(COMPACTED_META).await?;
            known = (meta.as_deref())
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
        }
        let from = if known > 0 {
            match (
                self.readable_at(known).await?,
                self.readable_at(known - 1).await?,
            ) {
                (true, false) => return Ok(known),
                // Moved on since: search above what was known.
                (false, _) => known + 1,
                // Readable before it: not this store's history (another store
                // at the same endpoints): search it all.
                (true, true) => 1,
            }
        } else {
            1
        };
        // Only a search needs its upper end.
        let current = self.current_revision().await?;
        let (mut lo, mut hi) = (from, current.max(from));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.readable_at(mid).await? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        // Revision 1 readable means nothing was compacted.
        let found = if lo <= 1 { 0 } else { lo };
        self.compacted.store(found, Ordering::Relaxed);
        Ok(found)
    }

    /// Whether the store still has revision `revision` (0 and below: no).
    async fn readable_at(&self, revision: i64) -> StoreResult<bool> {
        if revision < 1 {
            return Ok(false);
        }
        let opts = GetOptions::new().with_count_only().with_revision(revision);
        match self
            .get_kv(self.ks.meta("revision-probe"), Some(opts))
            .await
            .map_err(map_err)
        {
            Ok(_) => Ok(true),
            Err(StoreError::Compacted { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
