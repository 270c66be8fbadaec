//! The `demo` runner: a built-in simulated crew (SPEC §5) that emits a realistic crewAI run
//! without any LLM or network, shaped after a real crewAI 1.x run.
//!
//! The crew has two agents (a researcher and a writer) and two sequential tasks about
//! `inputs.topic`. Each task goes through agent start, two steps (an LLM call streamed in
//! chunks, then a tool call or a final LLM answer), agent and task completion; the run ends
//! with `crew_kickoff_completed` carrying the writer's output and the total tokens. Every
//! event's data holds the catalogue's fields with their catalogue types.
//!
//! This module does not emit `crew_execution_completed` (the server does) and does not
//! validate inputs beyond reading `topic`.

use std::time::Duration;

use async_trait::async_trait;
use hookstream_events_core::event::EventTypeError;
use hookstream_events_core::{Data, Draft, EventType, Timestamp};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{RunContext, RunOutcome, Runner};

/// The input the demo crew needs.
pub const TOPIC_INPUT: &str = "topic";

/// The model name the simulated LLM reports.
const MODEL: &str = "gpt-4o-mini";

/// How the demo crew runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// Pause between two events, so that a run looks live; zero emits as fast as the bus takes.
    pub step_delay: Duration,
}

impl DemoConfig {
    /// The default pause between two events.
    pub const DEFAULT_STEP_DELAY: Duration = Duration::from_millis(20);

    /// No pause at all (tests, benchmarks).
    pub fn instant() -> Self {
        Self { step_delay: Duration::ZERO }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { step_delay: Self::DEFAULT_STEP_DELAY }
    }
}

/// The simulated crew. Required input: `topic`.
///
/// ```
/// use hookstream_server::runner::demo::{DemoConfig, DemoRunner};
/// use hookstream_server::runner::Runner;
///
/// let runner = DemoRunner::new(DemoConfig::instant());
/// assert_eq!(runner.name(), "demo");
/// assert_eq!(runner.required_inputs(), vec!["topic".to_owned()]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct DemoRunner {
    config: DemoConfig,
}

impl DemoRunner {
    /// A demo runner with `config`.
    pub fn new(config: DemoConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Runner for DemoRunner {
    fn name(&self) -> &str {
        "demo"
    }

    fn required_inputs(&self) -> Vec<String> {
        vec![TOPIC_INPUT.to_owned()]
    }

    async fn run(&self, ctx: RunContext) -> RunOutcome {
        let topic = match ctx.inputs.get(TOPIC_INPUT) {
            Some(Value::String(topic)) if !topic.trim().is_empty() => topic.trim().to_owned(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return RunOutcome::Failed { error: "the demo crew needs input `topic`".into() }
            }
            Some(other) => other.to_string(),
        };
        let script = match script(&topic, &ctx.inputs) {
            Ok(script) => script,
            Err(error) => return RunOutcome::Failed { error: format!("demo crew: {error}") },
        };
        let result = script.result.clone();
        for (index, draft) in script.drafts.into_iter().enumerate() {
            if index > 0 && !self.config.step_delay.is_zero() {
                tokio::time::sleep(self.config.step_delay).await;
            }
            if let Err(error) = ctx.emit(vec![draft]).await {
                return RunOutcome::Failed { error: format!("demo crew stopped: {error}") };
            }
        }
        RunOutcome::Success { result }
    }
}

/// The events of one demo run, in order, and the run's result.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) drafts: Vec<Draft>,
    pub(crate) result: Value,
}

/// One agent of the crew.
struct Agent {
    id: Uuid,
    role: &'static str,
    goal: String,
    backstory: &'static str,
}

/// One task of the crew.
struct Task {
    id: Uuid,
    description: String,
    expected_output: String,
}

/// Builds the drafts, keeping crewAI's base fields (`emission_sequence`, `previous_event_id`,
/// task and agent ids) consistent across events.
struct Recorder {
    drafts: Vec<Draft>,
    started: Vec<Uuid>,
    total_tokens: u64,
}

impl Recorder {
    fn push(
        &mut self,
        event_type: &str,
        base: Base<'_>,
        fields: Value,
    ) -> Result<Uuid, EventTypeError> {
        let event_type = EventType::new(event_type)?;
        let mut data = Data::new();
        let previous = self.drafts.last().map(|d| d.id.to_string());
        data.insert("source_fingerprint".into(), Value::Null);
        data.insert("source_type".into(), base.source_type.map_or(Value::Null, Value::from));
        data.insert("fingerprint_metadata".into(), Value::Null);
        data.insert("task_id".into(), base.task.map_or(Value::Null, |t| t.id.to_string().into()));
        data.insert(
            "task_name".into(),
            base.task.map_or(Value::Null, |t| t.description.clone().into()),
        );
        data.insert("agent_id".into(), base.agent.map_or(Value::Null, |a| a.id.to_string().into()));
        data.insert("agent_role".into(), base.agent.map_or(Value::Null, |a| a.role.into()));
        data.insert(
            "parent_event_id".into(),
            self.started.last().map_or(Value::Null, |id| id.to_string().into()),
        );
        data.insert("previous_event_id".into(), previous.map_or(Value::Null, Value::from));
        data.insert("triggered_by_event_id".into(), Value::Null);
        data.insert(
            "started_event_id".into(),
            base.started.map_or(Value::Null, |id| id.to_string().into()),
        );
        data.insert("emission_sequence".into(), (self.drafts.len() as u64 + 1).into());
        if let Value::Object(fields) = fields {
            data.extend(fields);
        }
        let draft = Draft::new(event_type, data);
        let id = draft.id;
        self.drafts.push(draft);
        Ok(id)
    }
}

/// The base fields of one event.
#[derive(Clone, Copy, Default)]
struct Base<'a> {
    source_type: Option<&'static str>,
    task: Option<&'a Task>,
    agent: Option<&'a Agent>,
    started: Option<Uuid>,
}

fn agent_json(agent: &Agent) -> Value {
    json!({
        "entity_type": "agent",
        "id": agent.id.to_string(),
        "role": agent.role,
        "goal": agent.goal,
        "backstory": agent.backstory,
        "cache": true,
        "verbose": false,
        "max_rpm": null,
        "allow_delegation": false,
        "tools": [tool_json()],
        "max_iter": 25,
        "llm": MODEL,
    })
}

fn tool_json() -> Value {
    json!({
        "name": "web_search",
        "description": "Search the web and return the three most relevant snippets.",
        "env_vars": [],
        "result_as_answer": false,
        "max_usage_count": null,
        "current_usage_count": 0,
    })
}

fn task_json(task: &Task, agent: &Agent) -> Value {
    json!({
        "id": task.id.to_string(),
        "name": task.description,
        "description": task.description,
        "expected_output": task.expected_output,
        "agent": agent.role,
        "used_tools": 0,
        "tools_errors": 0,
        "delegations": 0,
        "async_execution": false,
    })
}

fn task_output(task: &Task, agent: &Agent, raw: &str) -> Value {
    let summary: String = task.description.chars().take(40).collect();
    json!({
        "description": task.description,
        "name": task.description,
        "expected_output": task.expected_output,
        "summary": format!("{summary}..."),
        "raw": raw,
        "pydantic": null,
        "json_dict": null,
        "agent": agent.role,
        "output_format": "raw",
    })
}

/// Splits `text` into stream chunks of a few words, as an LLM streams tokens.
fn chunks(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    words.chunks(3).map(|w| w.concat()).collect()
}

/// One streamed LLM call: started, chunks, completed. Returns the tokens it used.
fn llm_call(
    rec: &mut Recorder,
    task: &Task,
    agent: &Agent,
    messages: Value,
    answer: &str,
) -> Result<u64, EventTypeError> {
    let call_id = Uuid::new_v4().to_string();
    let response_id = format!("chatcmpl-{}", Uuid::new_v4().simple());
    let base = Base { task: Some(task), agent: Some(agent), ..Base::default() };
    let started = rec.push(
        "llm_call_started",
        base,
        json!({
            "from_task": null,
            "from_agent": null,
            "model": MODEL,
            "call_id": call_id,
            "messages": messages,
            "tools": null,
            "callbacks": [],
            "available_functions": null,
            "temperature": 0.7,
            "top_p": null,
            "max_tokens": null,
            "stream": true,
            "seed": null,
            "stop_sequences": ["\nObservation:"],
            "frequency_penalty": null,
            "presence_penalty": null,
            "n": null,
        }),
    )?;
    rec.started.push(started);
    for chunk in chunks(answer) {
        rec.push(
            "llm_stream_chunk",
            base,
            json!({
                "from_task": null,
                "from_agent": null,
                "model": MODEL,
                "call_id": call_id,
                "chunk": chunk,
                "tool_call": null,
                "call_type": "llm_call",
                "response_id": response_id,
            }),
        )?;
    }
    rec.started.pop();
    let prompt_tokens = messages.to_string().len() as u64 / 4;
    let completion_tokens = answer.len() as u64 / 4 + 1;
    rec.push(
        "llm_call_completed",
        Base { started: Some(started), ..base },
        json!({
            "from_task": null,
            "from_agent": null,
            "model": MODEL,
            "call_id": call_id,
            "messages": messages,
            "response": answer,
            "call_type": "llm_call",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "finish_reason": "stop",
            "response_id": response_id,
        }),
    )?;
    Ok(prompt_tokens + completion_tokens)
}

/// Runs one task: agent start, step 1 (LLM call that picks the tool, the tool call), step 2
/// (LLM call with the final answer), agent and task completion. Returns the task's output.
fn run_task(
    rec: &mut Recorder,
    task: &Task,
    agent: &Agent,
    context: &str,
    query: &str,
    tool_output: &str,
    answer: &str,
) -> Result<Value, EventTypeError> {
    let on_task = Base { task: Some(task), agent: Some(agent), ..Base::default() };
    let task_started = rec.push(
        "task_started",
        Base { source_type: Some("task"), ..on_task },
        json!({"context": context, "task": task_json(task, agent)}),
    )?;
    rec.started.push(task_started);
    let prompt = format!(
        "{}\n\nThis is the expected criteria for your final answer: {}\nyou MUST return the actual complete content as the final answer, not a summary.",
        task.description, task.expected_output
    );
    let agent_started = rec.push(
        "agent_execution_started",
        Base { source_type: Some("agent"), ..on_task },
        json!({
            "agent": agent_json(agent),
            "task": task_json(task, agent),
            "tools": [tool_json()],
            "task_prompt": prompt,
        }),
    )?;
    rec.started.push(agent_started);
    let system = format!(
        "You are {}. {}\nYour personal goal is: {}\nYou ONLY have access to the following tools: web_search",
        agent.role, agent.backstory, agent.goal
    );
    let mut messages = vec![
        json!({"role": "system", "content": system}),
        json!({"role": "user", "content": prompt}),
    ];

    // Step 1: think, then use the tool.
    rec.push("crew_step_started", on_task, json!({"step": 1}))?;
    let thought = format!(
        "Thought: I should search for recent material first.\nAction: web_search\nAction Input: {{\"query\": \"{query}\"}}"
    );
    rec.total_tokens += llm_call(rec, task, agent, Value::Array(messages.clone()), &thought)?;
    let tool_args = json!({"query": query});
    let tool_started = rec.push(
        "tool_usage_started",
        Base { source_type: Some("agent"), ..on_task },
        json!({
            "agent_key": agent.id.simple().to_string(),
            "tool_name": "web_search",
            "tool_args": tool_args.to_string(),
            "tool_class": "web_search",
            "run_attempts": 1,
            "delegations": 0,
            "agent": null,
            "plan_step_number": null,
            "plan_step_description": null,
            "from_task": null,
            "from_agent": null,
        }),
    )?;
    let started_at = Timestamp::now().to_string();
    rec.push(
        "tool_usage_finished",
        Base { started: Some(tool_started), ..on_task },
        json!({
            "agent_key": agent.id.simple().to_string(),
            "tool_name": "web_search",
            "tool_args": tool_args,
            "tool_class": "CrewStructuredTool",
            "run_attempts": 1,
            "delegations": 0,
            "agent": null,
            "plan_step_number": null,
            "plan_step_description": null,
            "from_task": null,
            "from_agent": null,
            "started_at": started_at,
            "finished_at": Timestamp::now().to_string(),
            "from_cache": false,
            "output": tool_output,
            "failure": null,
        }),
    )?;
    rec.push("crew_step_completed", on_task, json!({"step": 1, "output": tool_output}))?;

    // Step 2: the final answer.
    rec.push("crew_step_started", on_task, json!({"step": 2}))?;
    messages.push(
        json!({"role": "assistant", "content": format!("{thought}\nObservation: {tool_output}")}),
    );
    let final_answer = format!("Thought: I now know the final answer\nFinal Answer: {answer}");
    rec.total_tokens += llm_call(rec, task, agent, Value::Array(messages), &final_answer)?;
    rec.push("crew_step_completed", on_task, json!({"step": 2, "output": answer}))?;

    rec.started.pop();
    rec.push(
        "agent_execution_completed",
        Base { source_type: Some("agent"), started: Some(agent_started), ..on_task },
        json!({"agent": agent_json(agent), "task": task_json(task, agent), "output": answer}),
    )?;
    rec.started.pop();
    let output = task_output(task, agent, answer);
    rec.push(
        "task_completed",
        Base { source_type: Some("task"), started: Some(task_started), ..on_task },
        json!({"output": output, "task": task_json(task, agent)}),
    )?;
    Ok(output)
}

/// The whole run about `topic`.
pub(crate) fn script(topic: &str, inputs: &Data) -> Result<Script, EventTypeError> {
    let mut rec = Recorder { drafts: Vec::new(), started: Vec::new(), total_tokens: 0 };
    let researcher = Agent {
        id: Uuid::new_v4(),
        role: "Senior Researcher",
        goal: format!("Uncover the most relevant recent developments in {topic}"),
        backstory: "A meticulous analyst who reads primary sources and keeps notes short.",
    };
    let writer = Agent {
        id: Uuid::new_v4(),
        role: "Technical Writer",
        goal: format!("Write a clear, engaging brief about {topic}"),
        backstory: "A writer who turns research notes into crisp prose for busy readers.",
    };
    let research = Task {
        id: Uuid::new_v4(),
        description: format!("Research the latest developments in {topic}."),
        expected_output: format!("A list of five bullet points about {topic}."),
    };
    let write = Task {
        id: Uuid::new_v4(),
        description: format!("Write a short brief about {topic} from the research notes."),
        expected_output: "Three paragraphs in markdown.".to_owned(),
    };

    let kickoff = rec.push(
        "crew_kickoff_started",
        Base::default(),
        json!({"crew_name": "research_crew", "inputs": inputs}),
    )?;
    rec.started.push(kickoff);

    let notes = format!(
        "- {topic} adoption grew steadily over the last year.\n- Open standards for {topic} are converging.\n- Tooling for {topic} became easier to self-host.\n- Observability is the most requested feature around {topic}.\n- Costs of {topic} fell as competition increased."
    );
    let research_output = run_task(
        &mut rec,
        &research,
        &researcher,
        "",
        &format!("{topic} latest developments"),
        &format!(
            "1. \"{topic} in 2025: a survey\"\n2. \"Why teams self-host {topic}\"\n3. \"The state of {topic} tooling\""
        ),
        &notes,
    )?;
    let brief = format!(
        "## {topic}: the brief\n\n{topic} keeps growing, and the ecosystem around it is maturing: open standards are converging and the tooling is easier to run yourself.\n\nTeams now ask less about whether to adopt {topic} than about how to observe it in production; that is where the next year of work goes.\n\nWith costs falling, the remaining barrier is skill, not budget."
    );
    let context = research_output.get("raw").and_then(Value::as_str).unwrap_or_default().to_owned();
    let output = run_task(
        &mut rec,
        &write,
        &writer,
        &context,
        &format!("{topic} audience questions"),
        &format!("Readers most often ask how {topic} is monitored and what it costs."),
        &brief,
    )?;

    rec.started.pop();
    let total_tokens = rec.total_tokens;
    rec.push(
        "crew_kickoff_completed",
        Base { started: Some(kickoff), ..Base::default() },
        json!({"crew_name": "research_crew", "output": output, "total_tokens": total_tokens}),
    )?;
    Ok(Script { drafts: rec.drafts, result: output })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(script: &Script) -> Vec<&str> {
        script.drafts.iter().map(|d| d.event_type.as_str()).collect()
    }

    #[test]
    fn the_run_starts_with_kickoff_and_ends_with_kickoff_completed() {
        let inputs: Data = serde_json::from_value(json!({"topic": "webhooks"})).unwrap_or_default();
        let script = script("webhooks", &inputs).expect("script");
        let types = types(&script);
        assert_eq!(types.first(), Some(&"crew_kickoff_started"));
        assert_eq!(types.last(), Some(&"crew_kickoff_completed"));
        assert!(!types.contains(&"crew_execution_completed"));
        for wanted in [
            "task_started",
            "agent_execution_started",
            "crew_step_started",
            "llm_call_started",
            "llm_stream_chunk",
            "llm_call_completed",
            "tool_usage_started",
            "tool_usage_finished",
            "crew_step_completed",
            "agent_execution_completed",
            "task_completed",
        ] {
            assert!(types.contains(&wanted), "{wanted} missing from {types:?}");
        }
        assert_eq!(types.iter().filter(|t| **t == "task_completed").count(), 2);
    }

    #[test]
    fn the_result_is_the_output_of_crew_kickoff_completed_and_uses_the_topic() {
        let script = script("quantum sensing", &Data::new()).expect("script");
        let last = script.drafts.last().map(|d| d.data.clone()).unwrap_or_default();
        assert_eq!(last.get("output"), Some(&script.result));
        assert!(last.get("total_tokens").and_then(Value::as_u64).is_some_and(|t| t > 0));
        let raw = script.result.get("raw").and_then(Value::as_str).unwrap_or_default();
        assert!(raw.contains("quantum sensing"), "{raw}");
    }

    #[test]
    fn every_event_fits_the_catalogue() {
        let inputs: Data = serde_json::from_value(json!({"topic": "webhooks"})).unwrap_or_default();
        let script = script("webhooks", &inputs).expect("script");
        for draft in &script.drafts {
            let name = draft.event_type.as_str();
            assert!(
                hookstream_events_core::catalog::event(name).is_some(),
                "{name} is not a catalogue type"
            );
            if let Err(error) = hookstream_events_core::catalog::validate(name, &draft.data) {
                panic!("{error}");
            }
        }
    }

    #[test]
    fn emission_sequences_count_up_and_ids_are_unique() {
        let script = script("x", &Data::new()).expect("script");
        let mut ids = std::collections::HashSet::new();
        for (i, draft) in script.drafts.iter().enumerate() {
            assert_eq!(draft.data.get("emission_sequence"), Some(&Value::from(i as u64 + 1)));
            assert!(ids.insert(draft.id));
        }
    }

    #[test]
    fn stream_chunks_concatenate_to_the_response() {
        let script = script("x", &Data::new()).expect("script");
        let mut text = String::new();
        for draft in &script.drafts {
            match draft.event_type.as_str() {
                "llm_call_started" => text.clear(),
                "llm_stream_chunk" => {
                    text.push_str(draft.data.get("chunk").and_then(Value::as_str).unwrap_or(""))
                }
                "llm_call_completed" => {
                    assert_eq!(draft.data.get("response").and_then(Value::as_str), Some(&*text))
                }
                _ => {}
            }
        }
        assert!(!text.is_empty());
    }

    #[tokio::test]
    async fn a_run_publishes_every_event_and_succeeds_with_the_output() {
        use std::sync::Arc;

        use hookstream_events_core::bus::{Bus, MemoryBus};

        let bus = Arc::new(MemoryBus::new());
        let execution = Uuid::new_v4();
        let inputs: Data = serde_json::from_value(json!({"topic": "webhooks"})).unwrap_or_default();
        let ctx = RunContext::new(execution, inputs, bus.clone(), String::new(), String::new());
        let outcome = DemoRunner::new(DemoConfig::instant()).run(ctx).await;
        let events = bus.read(execution, 0, 10_000).await.expect("read");
        let last = events.last().expect("events");
        assert_eq!(last.event_type.as_str(), "crew_kickoff_completed");
        let output = last.data.get("output").cloned().unwrap_or_default();
        assert_eq!(outcome, RunOutcome::Success { result: output });
        assert!(events.len() > 40, "{}", events.len());
    }

    #[tokio::test]
    async fn a_run_without_topic_fails() {
        use std::sync::Arc;

        use hookstream_events_core::bus::MemoryBus;

        let bus = Arc::new(MemoryBus::new());
        let ctx = RunContext::new(Uuid::new_v4(), Data::new(), bus, String::new(), String::new());
        let outcome = DemoRunner::default().run(ctx).await;
        assert!(matches!(outcome, RunOutcome::Failed { .. }), "{outcome:?}");
    }
}
