//! [`MemoryStore`]: the in-memory [`Store`] over events-core's `MemoryBus` and delivery-http's
//! `MemoryLedger`, for tests, benchmarks and `--store memory`. Nothing survives a restart and
//! nothing is ever dropped while the process runs (replay works for every execution).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use hookstream_delivery_http::{DeliveryStats, Ledger, MemoryLedger, PairKey};
use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus};
use hookstream_events_core::Timestamp;
use uuid::Uuid;

use super::{Completion, Execution, Finished, StateCounts, Store, StoreError};

/// The in-memory store. Cloning gives another handle on the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    bus: MemoryBus,
    ledger: Arc<MemoryLedger>,
    executions: Arc<Mutex<HashMap<Uuid, Slot>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("executions", &self.lock().len()).finish()
    }
}

struct Slot {
    execution: Execution,
    /// A finish is publishing the terminal event: a second one is a conflict.
    finishing: bool,
    /// Per webhook: marked delivered.
    delivered: Vec<bool>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bus, as its concrete type (benchmarks publish to it directly).
    pub fn memory_bus(&self) -> &MemoryBus {
        &self.bus
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Slot>> {
        // No code panics while holding the lock; if one ever did, the map is still whole.
        self.executions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn bus(&self) -> Arc<dyn Bus> {
        Arc::new(self.bus.clone())
    }

    fn ledger(&self) -> Arc<dyn Ledger> {
        self.ledger.clone()
    }

    async fn delivery_stats(&self, pair: PairKey) -> Result<Option<DeliveryStats>, StoreError> {
        Ok(self.ledger.stats(&pair))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_execution(&self, execution: Execution) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&execution.id) {
            return Err(StoreError::AlreadyExists(execution.id));
        }
        let delivered = vec![false; execution.webhooks.len()];
        map.insert(execution.id, Slot { execution, finishing: false, delivered });
        Ok(())
    }

    async fn execution(&self, id: Uuid) -> Result<Execution, StoreError> {
        self.lock().get(&id).map(|slot| slot.execution.clone()).ok_or(StoreError::NotFound(id))
    }

    async fn mark_running(&self, id: Uuid, at: Timestamp) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let slot = map.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        if slot.execution.state != super::ExecutionState::Pending {
            return Ok(false);
        }
        slot.execution.state = super::ExecutionState::Running;
        slot.execution.started_at = Some(at);
        Ok(true)
    }

    async fn finish_execution(
        &self,
        id: Uuid,
        completion: Completion,
    ) -> Result<Finished, StoreError> {
        let record = {
            let mut map = self.lock();
            let slot = map.get_mut(&id).ok_or(StoreError::NotFound(id))?;
            if slot.finishing || slot.execution.state.is_final() {
                return Err(StoreError::Ended(id));
            }
            slot.finishing = true;
            slot.execution.clone()
        };
        let draft = completion.terminal_draft(&record);
        let published = self.bus.publish(id, vec![draft], Backpressure::Wait).await;
        let mut map = self.lock();
        let slot = map.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        slot.finishing = false;
        match published {
            Ok(published) => {
                // From the slot, not `record`: a concurrent mark_running may have changed it.
                slot.execution = slot.execution.clone().completed(&completion);
                Ok(Finished::new(slot.execution.clone(), published.last_sequence))
            }
            Err(error) => Err(StoreError::from_publish(id, error)),
        }
    }

    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|slot| {
                !slot.execution.state.is_final() || slot.delivered.iter().any(|done| !done)
            })
            .map(|slot| slot.execution.clone())
            .collect())
    }

    async fn mark_delivery_finished(
        &self,
        id: Uuid,
        webhook_index: usize,
    ) -> Result<(), StoreError> {
        let mut map = self.lock();
        let slot = map.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        if let Some(done) = slot.delivered.get_mut(webhook_index) {
            *done = true;
        }
        Ok(())
    }

    async fn state_counts(&self) -> Result<StateCounts, StoreError> {
        let mut counts = StateCounts::default();
        for slot in self.lock().values() {
            counts.add(slot.execution.state);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ExecutionState, FinalState};
    use crate::token::IngestToken;

    #[tokio::test]
    async fn memory_store_conforms() {
        crate::store::conformance::check(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn finish_publishes_the_terminal_event_once_and_then_conflicts() {
        let store = MemoryStore::new();
        let id = Uuid::new_v4();
        let exec = Execution::new(id, "demo", false, IngestToken::generate().hash())
            .with_meta(serde_json::json!({"who": "ops"}));
        store.create_execution(exec.clone()).await.unwrap();
        assert!(store.create_execution(exec).await.unwrap_err().is_conflict());
        assert!(store.mark_running(id, Timestamp::now()).await.unwrap());
        assert!(!store.mark_running(id, Timestamp::now()).await.unwrap());
        let done = Completion::new(FinalState::Success, "ok".into(), None, 1.5);
        let finished = store.finish_execution(id, done.clone()).await.unwrap();
        assert_eq!(finished.last_sequence, 1);
        assert_eq!(finished.execution.state, ExecutionState::Success);
        assert!(store.finish_execution(id, done).await.unwrap_err().is_conflict());
        let events = store.bus().read(id, 0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data["state"], "SUCCESS");
        assert_eq!(events[0].data["meta"]["who"], "ops");
        assert!(store.execution(Uuid::new_v4()).await.unwrap_err().is_not_found());
        assert_eq!(store.state_counts().await.unwrap().success, 1);
    }

    #[tokio::test]
    async fn unfinished_lists_running_and_undelivered() {
        let store = MemoryStore::new();
        let spec = crate::webhook::WebhookSpec::new(url::Url::parse("http://x.test/").unwrap());
        let a = Uuid::new_v4();
        let hash = IngestToken::generate().hash();
        store
            .create_execution(Execution::new(a, "demo", false, hash).with_webhooks(vec![spec]))
            .await
            .unwrap();
        let done =
            Completion::new(FinalState::Failed, serde_json::Value::Null, Some("x".into()), 0.1);
        store.finish_execution(a, done).await.unwrap();
        assert_eq!(store.unfinished_executions().await.unwrap().len(), 1);
        store.mark_delivery_finished(a, 0).await.unwrap();
        assert!(store.unfinished_executions().await.unwrap().is_empty());
    }
}
