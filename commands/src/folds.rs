//! Aggregates folded from the streams the event store keeps in memory
//! ([`tenantry_eventstore::kept`]), reused while the copy they came from is kept.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use cqrs_es::Aggregate;
use tenantry_domain::TenantId;
use tenantry_eventstore::kept::Kept;
use tenantry_eventstore::RecordedEvent;
use uuid::Uuid;

use crate::aggregate::fold;
use crate::CommandError;

/// Aggregates folded from kept streams, each with the copy it was folded from: while that very
/// copy is what a command decides from, the fold stands, and the stream's events are not
/// decoded again for every command (a conversation command folds its agent instance, store
/// and organization this way). The fold holds its copy weakly: the events go when the copy is
/// forgotten, but its allocation stays, so no other copy can take its address.
#[derive(Clone, Default)]
pub(crate) struct Folds(Arc<Mutex<HashMap<FoldKey, Folded>>>);

/// `(tenant, stream type, id)`.
type FoldKey = (Uuid, &'static str, Uuid);

/// A fold and the copy it was folded from.
type Folded = (Weak<[Arc<RecordedEvent>]>, Arc<dyn Any + Send + Sync>);

/// Aggregates folded at most; all are forgotten when more would be.
const FOLDS: usize = 4096;

impl std::fmt::Debug for Folds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folds").finish_non_exhaustive()
    }
}

impl Folds {
    /// `A` with id `id` of `tenant`, folded from `kept`.
    pub(crate) fn fold<A: Aggregate + 'static>(
        &self,
        tenant: TenantId,
        id: Uuid,
        kept: &Kept,
    ) -> Result<Arc<A>, CommandError> {
        let key = (tenant.as_uuid(), A::TYPE, id);
        let folded = self.0.lock().expect("never poisoned").get(&key).cloned();
        if let Some((from, state)) = folded {
            if std::ptr::addr_eq(from.as_ptr(), Arc::as_ptr(kept)) {
                if let Ok(state) = state.downcast::<A>() {
                    return Ok(state);
                }
            }
        }
        let state = Arc::new(fold::<A>(id, kept, None)?.state);
        let mut folds = self.0.lock().expect("never poisoned");
        if folds.len() >= FOLDS {
            folds.clear();
        }
        folds.insert(key, (Arc::downgrade(kept), state.clone()));
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_domain::store::Store;

    #[test]
    fn a_parent_is_folded_again_from_any_other_copy() {
        let folds = Folds::default();
        let (tenant, id) = (TenantId::new(), Uuid::now_v7());
        let copy: Kept = Arc::from(Vec::new());
        let first = folds.fold::<Store>(tenant, id, &copy).unwrap();
        let again = folds.fold::<Store>(tenant, id, &copy).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same copy should not be folded twice"
        );

        // Another copy of the same stream (read again, or moved) is folded anew.
        let other: Kept = Arc::from(Vec::new());
        let refolded = folds.fold::<Store>(tenant, id, &other).unwrap();
        assert!(!Arc::ptr_eq(&first, &refolded));
        // And so is the same copy for another tenant's stream of that id.
        let elsewhere = folds.fold::<Store>(TenantId::new(), id, &copy).unwrap();
        assert!(!Arc::ptr_eq(&refolded, &elsewhere));
    }
}
