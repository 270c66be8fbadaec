//! Shared test setup: a dispatcher that may reach 127.0.0.0/8, event drafts, a scripted auth
//! strategy, and a bus wrapper that records acknowledgements and checks each against what
//! was settled at that moment.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hookstream_auth::{AuthError, AuthStrategy, OutgoingRequest};
use hookstream_delivery_http::{
    BatchConfig, Dispatcher, DispatcherConfig, Jitter, MemoryLedger, Mode, PairKey, SsrfPolicy,
    WebhookConfig,
};
use hookstream_events_core::bus::{
    Backpressure, Bus, BusError, Delivered, MemoryBus, PublishError, Published, RecvError,
    SubscribeOptions, Subscription,
};
use hookstream_events_core::{Data, Draft, Event, EventType};
use uuid::Uuid;

/// Dispatcher settings for tests: loopback allowed, no jitter.
pub(crate) fn dispatcher_config() -> DispatcherConfig {
    let mut config = DispatcherConfig::default();
    config.ssrf = SsrfPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    config.retry.jitter = Jitter::NONE;
    config
}

pub(crate) struct Setup {
    pub(crate) dispatcher: Dispatcher,
    pub(crate) ledger: Arc<MemoryLedger>,
    pub(crate) bus: Arc<MemoryBus>,
    pub(crate) key: PairKey,
}

impl Setup {
    pub(crate) fn new() -> Self {
        Self::with_config(dispatcher_config())
    }

    pub(crate) fn with_config(config: DispatcherConfig) -> Self {
        let ledger = Arc::new(MemoryLedger::new());
        let dispatcher = Dispatcher::new(config, ledger.clone()).expect("dispatcher");
        Self {
            dispatcher,
            ledger,
            bus: Arc::new(MemoryBus::new()),
            key: PairKey::new(Uuid::now_v7(), 0),
        }
    }

    pub(crate) fn bus(&self) -> Arc<dyn Bus> {
        self.bus.clone()
    }

    pub(crate) async fn publish(&self, drafts: Vec<Draft>) -> Published {
        self.bus.publish(self.key.execution_id, drafts, Backpressure::Wait).await.expect("publish")
    }
}

pub(crate) fn batched(max_events: usize, max_wait: Duration, max_bytes: usize) -> Mode {
    Mode::Batched(BatchConfig::new(
        NonZeroUsize::new(max_events).unwrap(),
        max_wait,
        NonZeroUsize::new(max_bytes).unwrap(),
    ))
}

pub(crate) fn webhook(url: url::Url, mode: Mode) -> WebhookConfig {
    WebhookConfig::new(url, Arc::new(NoAuth)).expect("config").with_mode(mode)
}

pub(crate) fn draft(event_type: &str, n: u64) -> Draft {
    let mut data = Data::new();
    data.insert("n".into(), serde_json::json!(n));
    Draft::new(EventType::new(event_type).unwrap(), data)
}

pub(crate) fn drafts(n: u64) -> Vec<Draft> {
    (1..=n).map(|i| draft("task_started", i)).collect()
}

pub(crate) fn terminal() -> Draft {
    let mut data = Data::new();
    data.insert("state".into(), serde_json::json!("SUCCESS"));
    Draft::new(EventType::new("crew_execution_completed").unwrap(), data)
}

/// No authentication.
#[derive(Debug)]
pub(crate) struct NoAuth;

#[async_trait]
impl AuthStrategy for NoAuth {
    fn name(&self) -> &str {
        "none"
    }

    async fn authenticate(&self, _: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        Ok(())
    }
}

/// What the scripted strategy does on a call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AuthStep {
    Sign,
    Transient,
    Permanent,
}

/// Sets `x-test-auth: <webhook-id>.<timestamp>.<call>` or fails as scripted; counts calls.
#[derive(Debug, Default)]
pub(crate) struct ScriptedAuth {
    pub(crate) script: Mutex<VecDeque<AuthStep>>,
    pub(crate) calls: AtomicUsize,
    pub(crate) rejected: Mutex<Vec<u16>>,
}

impl ScriptedAuth {
    pub(crate) fn new(steps: impl IntoIterator<Item = AuthStep>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(steps.into_iter().collect()), ..Self::default() })
    }
}

#[async_trait]
impl AuthStrategy for ScriptedAuth {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let step = self.script.lock().unwrap().pop_front().unwrap_or(AuthStep::Sign);
        let error = |m: &str| (String::from("scripted"), m.to_owned());
        match step {
            AuthStep::Sign => {
                let value = format!("{}.{}.{}", request.webhook_id, request.timestamp, call);
                request.headers.insert("x-test-auth", value.parse().unwrap());
                Ok(())
            }
            AuthStep::Transient => {
                let (strategy, message) = error("token endpoint down");
                Err(AuthError::Transient { strategy, message })
            }
            AuthStep::Permanent => {
                let (strategy, message) = error("credentials refused");
                Err(AuthError::Permanent { strategy, message })
            }
        }
    }

    fn on_rejected(&self, status: u16) {
        self.rejected.lock().unwrap().push(status);
    }
}

/// Decides, at the moment of an acknowledgement, whether the sequence may be acknowledged.
pub(crate) type AckCheck = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// A bus whose subscriptions record their acknowledgements and check each one.
pub(crate) struct RecordingBus {
    pub(crate) inner: MemoryBus,
    pub(crate) acks: Arc<Mutex<Vec<u64>>>,
    pub(crate) violations: Arc<Mutex<Vec<u64>>>,
    pub(crate) check: AckCheck,
}

#[async_trait]
impl Bus for RecordingBus {
    async fn publish(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
    ) -> Result<Published, PublishError> {
        self.inner.publish(execution_id, drafts, policy).await
    }

    async fn subscribe(
        &self,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let inner = self.inner.subscribe(options).await?;
        Ok(Box::new(RecordingSubscription {
            inner,
            acks: self.acks.clone(),
            violations: self.violations.clone(),
            check: self.check.clone(),
        }))
    }

    async fn read(
        &self,
        execution_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, BusError> {
        self.inner.read(execution_id, after, limit).await
    }
}

struct RecordingSubscription {
    inner: Box<dyn Subscription>,
    acks: Arc<Mutex<Vec<u64>>>,
    violations: Arc<Mutex<Vec<u64>>>,
    check: AckCheck,
}

#[async_trait]
impl Subscription for RecordingSubscription {
    async fn next(&mut self) -> Option<Result<Delivered, RecvError>> {
        self.inner.next().await
    }

    async fn ack(&mut self, sequence: u64) -> Result<(), BusError> {
        if !(self.check)(sequence) {
            self.violations.lock().unwrap().push(sequence);
        }
        self.acks.lock().unwrap().push(sequence);
        self.inner.ack(sequence).await
    }

    async fn nack(&mut self, sequence: u64, delay: Duration) -> Result<(), BusError> {
        self.inner.nack(sequence, delay).await
    }
}
