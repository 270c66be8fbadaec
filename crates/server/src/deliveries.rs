//! Deliveries: the server's side of delivery-http. One delivery task per (execution,
//! webhook) pair, spawned through the [`Dispatcher`], watched so that the store is told when
//! a pair has nothing left to deliver and so that shutdown can let the pairs of ended
//! executions flush within a grace period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookstream_delivery_http::{DeadLetter, Dispatcher, PairKey, WebhookConfig};
use hookstream_events_core::Bus;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::Store;

/// The delivery tasks of one server instance.
pub(crate) struct Deliveries {
    dispatcher: Dispatcher,
    store: Arc<dyn Store>,
    /// Running pairs; each token is cancelled when its pair's task ends.
    live: Arc<Mutex<HashMap<PairKey, CancellationToken>>>,
    /// Cancelled at the end of shutdown: watchers stop waiting.
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").field("live", &lock(&self.live).len()).finish_non_exhaustive()
    }
}

impl Deliveries {
    pub(crate) fn new(dispatcher: Dispatcher, store: Arc<dyn Store>) -> Self {
        Self {
            dispatcher,
            store,
            live: Arc::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Starts delivering `key`'s events to `config`.
    pub(crate) fn spawn(&self, bus: Arc<dyn Bus>, key: PairKey, config: WebhookConfig) {
        let handle = self.dispatcher.spawn(bus, key, config);
        let done = CancellationToken::new();
        lock(&self.live).insert(key, done.clone());
        let (live, stop, store) =
            (Arc::clone(&self.live), self.stop.clone(), Arc::clone(&self.store));
        self.tasks.spawn(async move {
            tokio::select! {
                ended = handle.finished() => match ended {
                    Ok(summary) => {
                        tracing::debug!(execution_id = %key.execution_id, webhook = key.webhook_index, delivered = summary.delivered_events, dead_lettered = summary.dead_lettered_events, "delivery finished");
                        let index = usize::try_from(key.webhook_index).unwrap_or(usize::MAX);
                        if let Err(error) = store.mark_delivery_finished(key.execution_id, index).await {
                            tracing::warn!(execution_id = %key.execution_id, %error, "cannot record a finished delivery");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(execution_id = %key.execution_id, webhook = key.webhook_index, %error, "delivery stopped; it resumes at next start");
                    }
                },
                () = stop.cancelled() => {}
            }
            lock(&live).remove(&key);
            done.cancel();
        });
    }

    /// Sends `dead_letters` of `key` again, each as a new batch, in the background.
    pub(crate) fn redrive(
        &self,
        bus: Arc<dyn Bus>,
        key: PairKey,
        config: WebhookConfig,
        dead_letters: Vec<DeadLetter>,
    ) {
        let dispatcher = self.dispatcher.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            for letter in dead_letters {
                let redrive = dispatcher.redrive(bus.as_ref(), key, &config, &letter);
                let outcome = tokio::select! {
                    outcome = redrive => outcome,
                    () = stop.cancelled() => return,
                };
                if let Err(error) = outcome {
                    tracing::warn!(execution_id = %key.execution_id, webhook = key.webhook_index, %error, "redrive failed");
                }
            }
        });
    }

    /// Lets the pairs of ended executions finish within `grace`, then stops watching every
    /// pair. Pairs still running keep their unacknowledged events on the bus for the next
    /// start.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let pairs: Vec<(PairKey, CancellationToken)> =
            lock(&self.live).iter().map(|(k, t)| (*k, t.clone())).collect();
        for (key, done) in pairs {
            let ended = self
                .store
                .execution(key.execution_id)
                .await
                .is_ok_and(|execution| execution.state.is_final());
            if ended && tokio::time::timeout_at(deadline, done.cancelled()).await.is_err() {
                tracing::warn!(execution_id = %key.execution_id, webhook = key.webhook_index, "delivery still running at the end of the grace period");
            }
        }
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No code panics while holding this lock; the map stays whole if one ever did.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
