//! The life of an execution, independent of HTTP: validating a kickoff before anything is
//! stored, registering it with its webhooks, starting one delivery per webhook, running the
//! runner, ingesting external events, ending it exactly once, and recovering unfinished
//! executions at start.
//!
//! **Invariant:** `crew_execution_completed` is only ever published through
//! [`Store::finish_execution`](crate::store::Store::finish_execution): runners and ingest
//! cannot publish it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hookstream_delivery_http::PairKey;
use hookstream_delivery_http::WebhookConfig;
use hookstream_events_core::bus::{
    Backpressure, Bus, BusError, PublishError, Published, SubscribeOptions, Subscription,
};
use hookstream_events_core::ingest::IngestEvent;
use hookstream_events_core::{Data, Draft, Event, Timestamp};
use serde_json::Value;
use uuid::Uuid;

use crate::api::extract::{from_value, join};
use crate::api::wire::{CompleteBody, CompleteState, KickoffBody, WebhookBody};
use crate::error::ApiError;
use crate::metrics::Source;
use crate::runner::{RunContext, RunOutcome};
use crate::state::AppState;
use crate::store::{Completion, Execution, FinalState, Finished, StoreError};
use crate::token::IngestToken;
use crate::webhook::{BatchSpec, StoredAuth, WebhookError, WebhookSpec};

/// A kickoff, validated: nothing of it is stored yet.
#[derive(Debug)]
pub(crate) struct Plan {
    inputs: Data,
    meta: Value,
    webhooks: Vec<(WebhookSpec, WebhookConfig)>,
}

/// What [`Server::recover`](crate::Server::recover) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Executions resumed (their deliveries re-spawned).
    pub resumed: usize,
    /// Deliveries re-spawned.
    pub deliveries: usize,
    /// Executions ended FAILED because their in-process runner died with the server.
    pub failed: usize,
    /// Stored webhooks that can no longer be delivered to (e.g. a strategy no longer
    /// registered); logged and skipped.
    pub skipped_webhooks: usize,
}

/// The error of a runner whose execution was unfinished at start.
pub const RUNNER_DIED: &str = "runner died with the server";
/// The error of a run cut short by shutdown.
pub const SHUT_DOWN: &str = "the server shut down during the run";

impl AppState {
    /// Validates a kickoff (or registration) body: the runner's required inputs (when
    /// `inputs_required`), then every webhook.
    pub(crate) fn plan(&self, body: KickoffBody, inputs_required: bool) -> Result<Plan, ApiError> {
        let inputs = body.inputs.unwrap_or_default();
        if inputs_required {
            let missing: Vec<String> = self
                .runner()
                .required_inputs()
                .into_iter()
                .filter(|name| inputs.get(name).is_none_or(Value::is_null))
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::MissingInputs(missing));
            }
        }
        let bodies = parse_webhooks(body.webhooks)?;
        let max = self.limits().max_webhooks;
        if bodies.len() > max {
            return Err(ApiError::invalid("webhooks", format!("at most {max} webhooks")));
        }
        let mut webhooks = Vec::with_capacity(bodies.len());
        for (prefix, body) in bodies {
            let spec = self.spec_from_body(&prefix, body)?;
            let config = spec
                .delivery_config(&self.inner().registry, &self.inner().ssrf)
                .map_err(|e| webhook_error(&prefix, e))?;
            webhooks.push((spec, config));
        }
        Ok(Plan { inputs, meta: body.meta.unwrap_or(Value::Null), webhooks })
    }

    fn spec_from_body(&self, prefix: &str, body: WebhookBody) -> Result<WebhookSpec, ApiError> {
        let url = url::Url::parse(body.url.trim()).map_err(|e| {
            ApiError::invalid(join(prefix, "url"), format!("invalid webhook url: {e}"))
        })?;
        let mut spec = WebhookSpec::new(url);
        spec.events = body.events.unwrap_or_default();
        spec.realtime = body.realtime.unwrap_or(false);
        if let Some(batch) = body.batch {
            spec.batch = BatchSpec::new(
                batch.max_events.unwrap_or(BatchSpec::DEFAULT_MAX_EVENTS),
                batch.max_wait_ms.unwrap_or(BatchSpec::DEFAULT_MAX_WAIT_MS),
                batch.max_bytes.unwrap_or(BatchSpec::MAX_BYTES),
            )
            .map_err(|e| {
                let field = join(&join(prefix, "batch"), e.field().unwrap_or("."));
                ApiError::invalid(field, e.to_string())
            })?;
        }
        for (name, value) in body.headers.unwrap_or_default() {
            let Value::String(value) = value else {
                return Err(ApiError::invalid(
                    format!("{}.{name}", join(prefix, "headers")),
                    "header values must be strings",
                ));
            };
            spec.headers.push((name, value));
        }
        let auth_json = body.authentication.unwrap_or(Value::Null);
        let config = self
            .inner()
            .registry
            .validate(&auth_json)
            .map_err(|e| webhook_error(prefix, WebhookError::from(e)))?;
        spec.authentication = StoredAuth::new(config.to_json_with_secrets());
        Ok(spec)
    }

    /// `POST /kickoff`: validates, stores, starts deliveries and the runner.
    pub(crate) async fn kickoff(&self, body: KickoffBody) -> Result<Uuid, ApiError> {
        let plan = self.plan(body, true)?;
        let runner = Arc::clone(self.runner());
        let (execution, token) = self.create(plan, runner.name(), runner.is_external()).await?;
        let id = execution.id;
        if !execution.external {
            self.spawn_run(execution, token);
        }
        Ok(id)
    }

    /// `POST /executions`: validates and stores an external execution, starts deliveries.
    pub(crate) async fn register(
        &self,
        body: KickoffBody,
    ) -> Result<(Uuid, IngestToken), ApiError> {
        let plan = self.plan(body, false)?;
        let (execution, token) = self.create(plan, "external", true).await?;
        Ok((execution.id, token))
    }

    async fn create(
        &self,
        plan: Plan,
        runner: &str,
        external: bool,
    ) -> Result<(Execution, IngestToken), ApiError> {
        let token = IngestToken::generate();
        let (specs, configs): (Vec<_>, Vec<_>) = plan.webhooks.into_iter().unzip();
        let execution = Execution::new(Uuid::now_v7(), runner, external, token.hash())
            .with_inputs(plan.inputs)
            .with_meta(plan.meta)
            .with_webhooks(specs);
        self.store().create_execution(execution.clone()).await?;
        for (index, config) in configs.into_iter().enumerate() {
            self.spawn_delivery(execution.id, index, config);
        }
        tracing::info!(execution_id = %execution.id, runner, webhooks = execution.webhooks.len(), "execution registered");
        Ok((execution, token))
    }

    fn spawn_delivery(&self, id: Uuid, index: usize, config: WebhookConfig) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.inner().deliveries.spawn(Arc::clone(self.bus()), PairKey::new(id, index), config);
    }

    fn spawn_run(&self, execution: Execution, token: IngestToken) {
        let state = self.clone();
        self.inner().tasks.spawn(async move { state.run(execution, token).await });
    }

    async fn run(&self, execution: Execution, token: IngestToken) {
        let id = execution.id;
        let clock = Instant::now();
        if let Err(error) = self.store().mark_running(id, Timestamp::now()).await {
            tracing::error!(execution_id = %id, %error, "cannot mark the execution running");
        }
        let bus: Arc<dyn Bus> =
            Arc::new(RunnerBus { inner: Arc::clone(self.bus()), metrics: self.metrics().clone() });
        let ctx = RunContext::new(
            id,
            execution.inputs,
            bus,
            self.ingest_url(id),
            token.expose().to_owned(),
        );
        let runner = Arc::clone(self.runner());
        let mut task = tokio::spawn(async move { runner.run(ctx).await });
        let outcome = tokio::select! {
            joined = &mut task => match joined {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(execution_id = %id, %error, "the runner panicked");
                    RunOutcome::Failed { error: "the runner crashed".into() }
                }
            },
            () = self.inner().shutdown.cancelled() => {
                task.abort();
                RunOutcome::Failed { error: SHUT_DOWN.into() }
            }
        };
        let seconds = clock.elapsed().as_secs_f64();
        let completion = match outcome {
            RunOutcome::Success { result } => {
                Completion::new(FinalState::Success, result, None, seconds)
            }
            RunOutcome::Failed { error } => {
                Completion::new(FinalState::Failed, Value::Null, Some(error), seconds)
            }
        };
        match self.finish(id, completion).await {
            Ok(_) => {}
            Err(error) if error.is_conflict() => {
                tracing::warn!(execution_id = %id, "the execution was ended before its runner returned");
            }
            Err(error) => tracing::error!(execution_id = %id, %error, "cannot end the execution"),
        }
    }

    /// Ends `id` through the store (the one place the terminal event is published).
    pub(crate) async fn finish(
        &self,
        id: Uuid,
        completion: Completion,
    ) -> Result<Finished, StoreError> {
        let state = completion.state;
        let finished = self.store().finish_execution(id, completion).await?;
        self.metrics().execution_finished(state);
        tracing::info!(execution_id = %id, state = finished.execution.state.as_str(), "execution ended");
        Ok(finished)
    }

    /// The ingest URL of `id` for runners in other processes.
    pub(crate) fn ingest_url(&self, id: Uuid) -> String {
        format!("{}/executions/{id}/events", self.public_url())
    }

    /// Checks that `token` may ingest into (or complete) `id`: the API token or the
    /// execution's ingest token. An unknown execution is 404 only for the API token (401
    /// otherwise, so that ids cannot be probed).
    pub(crate) async fn authorize_producer(
        &self,
        id: Uuid,
        token: Option<&str>,
    ) -> Result<Execution, ApiError> {
        let api = token.is_some_and(|t| self.api_token().verify(t));
        let execution = match self.store().execution(id).await {
            Ok(execution) => execution,
            Err(e) if e.is_not_found() && !api => return Err(ApiError::Unauthorized),
            Err(e) => return Err(e.into()),
        };
        if api || token.is_some_and(|t| execution.ingest_token.verify(t)) {
            Ok(execution)
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// `POST /executions/{id}/events`: every event checked before any is stored.
    pub(crate) async fn ingest(
        &self,
        execution: &Execution,
        events: Vec<IngestEvent>,
    ) -> Result<Published, ApiError> {
        let max = self.limits().max_ingest_events;
        if events.len() > max {
            return Err(ApiError::invalid("events", format!("at most {max} events per request")));
        }
        let mut drafts = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            drafts.push(ingest_draft(i, event)?);
        }
        if execution.state.is_final() {
            return Err(ApiError::ExecutionEnded(execution.id.to_string()));
        }
        let published = match self.bus().publish(execution.id, drafts, Backpressure::Fail).await {
            Ok(published) => published,
            Err(PublishError::Ended { .. }) => {
                return Err(ApiError::ExecutionEnded(execution.id.to_string()))
            }
            Err(PublishError::Full { .. }) => {
                return Err(ApiError::Backpressure(execution.id.to_string()))
            }
            Err(error) => return Err(StoreError::backend(error).into()),
        };
        self.metrics().events_ingested(Source::Ingest, published.accepted);
        if published.accepted > 0 {
            // The first events of an external execution mean it runs.
            if let Err(error) = self.store().mark_running(execution.id, Timestamp::now()).await {
                tracing::warn!(execution_id = %execution.id, %error, "cannot mark running");
            }
        }
        Ok(published)
    }

    /// `POST /executions/{id}/complete`.
    pub(crate) async fn complete(
        &self,
        execution: &Execution,
        body: CompleteBody,
    ) -> Result<Finished, ApiError> {
        if execution.state.is_final() {
            return Err(ApiError::ExecutionEnded(execution.id.to_string()));
        }
        if !execution.external {
            return Err(ApiError::NotExternal(execution.id.to_string()));
        }
        let state = match body.state {
            CompleteState::Success => FinalState::Success,
            CompleteState::Failed => FinalState::Failed,
        };
        let end = Timestamp::now();
        let start = execution.started_at.unwrap_or(execution.created_at);
        let millis = end.unix_millis().saturating_sub(start.unix_millis()).max(0);
        let completion = Completion::new(
            state,
            body.result.unwrap_or(Value::Null),
            body.error,
            millis as f64 / 1000.0,
        );
        Ok(self.finish(execution.id, completion).await?)
    }

    /// Schedules every dead letter of `execution`'s webhooks for a redrive; returns how many.
    pub(crate) async fn redrive(&self, execution: &Execution) -> Result<usize, ApiError> {
        let mut count = 0;
        for (index, spec) in execution.webhooks.iter().enumerate() {
            let key = PairKey::new(execution.id, u32::try_from(index).unwrap_or(u32::MAX));
            let Some(stats) = self.store().delivery_stats(key).await? else { continue };
            if stats.dead_letters.is_empty() {
                continue;
            }
            let config = spec
                .delivery_config(&self.inner().registry, &self.inner().ssrf)
                .map_err(|e| webhook_error(&format!("webhooks[{index}]"), e))?;
            count += stats.dead_letters.len();
            self.inner().deliveries.redrive(
                Arc::clone(self.bus()),
                key,
                config,
                stats.dead_letters,
            );
        }
        Ok(count)
    }

    /// Resumes what the store left unfinished: re-spawns every webhook delivery of the
    /// executions it lists and ends FAILED (`runner died with the server`) the unended ones
    /// whose runner lived in this process. External executions stay open for ingest.
    pub(crate) async fn recover(&self) -> Result<Recovery, StoreError> {
        let mut report = Recovery::default();
        for execution in self.store().unfinished_executions().await? {
            report.resumed += 1;
            for (index, spec) in execution.webhooks.iter().enumerate() {
                match spec.delivery_config(&self.inner().registry, &self.inner().ssrf) {
                    Ok(config) => {
                        self.spawn_delivery(execution.id, index, config);
                        report.deliveries += 1;
                    }
                    Err(error) => {
                        report.skipped_webhooks += 1;
                        tracing::error!(execution_id = %execution.id, webhook = index, field = %error.field(), %error, "stored webhook can no longer be delivered to");
                    }
                }
            }
            if !execution.state.is_final() && !execution.external {
                let start = execution.started_at.unwrap_or(execution.created_at);
                let millis = Timestamp::now().unix_millis().saturating_sub(start.unix_millis());
                let completion = Completion::new(
                    FinalState::Failed,
                    Value::Null,
                    Some(RUNNER_DIED.into()),
                    millis.max(0) as f64 / 1000.0,
                );
                match self.finish(execution.id, completion).await {
                    Ok(_) => report.failed += 1,
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(report)
    }
}

/// `webhooks` as one object or an array of objects, each with its field prefix.
fn parse_webhooks(raw: Option<Value>) -> Result<Vec<(String, WebhookBody)>, ApiError> {
    match raw {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value @ Value::Object(_)) => {
            Ok(vec![("webhooks".to_owned(), from_value(value, "webhooks")?)])
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let prefix = format!("webhooks[{i}]");
                from_value(value, &prefix).map(|body| (prefix, body))
            })
            .collect(),
        Some(_) => {
            Err(ApiError::invalid("webhooks", "webhooks must be an object or an array of objects"))
        }
    }
}

fn webhook_error(prefix: &str, error: WebhookError) -> ApiError {
    let field = join(prefix, &error.field());
    match error {
        WebhookError::Blocked { message, .. } => ApiError::BlockedTarget { field, message },
        WebhookError::Auth(e) => ApiError::InvalidAuthentication {
            field,
            strategy: e.strategy().map(str::to_owned),
            known_strategies: e.known_strategies().to_vec(),
            message: e.to_string(),
        },
        other => ApiError::InvalidRequest { field: Some(field), message: other.to_string() },
    }
}

/// Event `i` of an ingest body as a draft, or the error naming `events[i].<field>`.
fn ingest_draft(i: usize, event: IngestEvent) -> Result<Draft, ApiError> {
    let prefix = format!("events[{i}]");
    let draft = event.into_draft().map_err(|e| ApiError::InvalidEvent {
        field: join(&prefix, &e.field()),
        message: e.to_string(),
    })?;
    if draft.event_type.is_terminal() {
        return Err(ApiError::InvalidEvent {
            field: join(&prefix, "type"),
            message: "crew_execution_completed is emitted by hookstream; end the execution with \
                      POST /executions/{id}/complete"
                .into(),
        });
    }
    Ok(draft)
}

/// The bus runners get: counts accepted events and refuses the terminal event, which only
/// the server publishes.
struct RunnerBus {
    inner: Arc<dyn Bus>,
    metrics: crate::metrics::Metrics,
}

#[async_trait]
impl Bus for RunnerBus {
    async fn publish(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
    ) -> Result<Published, PublishError> {
        if drafts.iter().any(|d| d.event_type.is_terminal()) {
            return Err(PublishError::Backend {
                drafts,
                source: "crew_execution_completed is emitted by the server, not by runners".into(),
            });
        }
        let published = self.inner.publish(execution_id, drafts, policy).await?;
        self.metrics.events_ingested(Source::Runner, published.accepted);
        Ok(published)
    }

    async fn subscribe(
        &self,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(options).await
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
