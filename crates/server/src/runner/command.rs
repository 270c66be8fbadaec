//! The `command` runner (SPEC §5): spawns a configured program per kickoff and turns its
//! stdout into the execution's events.
//!
//! # Protocol
//!
//! - The program gets the kickoff's inputs as JSON on stdin (then stdin is closed) and in
//!   `HOOKSTREAM_INPUTS`, plus `HOOKSTREAM_EXECUTION_ID`, `HOOKSTREAM_INGEST_URL` and
//!   `HOOKSTREAM_INGEST_TOKEN`, for a program that prefers to POST its events itself.
//! - Each stdout line that is a JSON object with a `type` is an event, in the ingest shape
//!   `{"type", "data"?, "id"?, "timestamp"?}`, published at once. Other lines are logged at
//!   debug level. A line that looks like an event but is invalid (bad type name, a catalogue
//!   field of the wrong JSON type) is logged as a warning and skipped, as is a
//!   `crew_execution_completed` (the server emits that one).
//! - Exit status 0 is SUCCESS; the result is `data.output` of the last
//!   `crew_kickoff_completed` or `data.result` of the last `flow_finished` (null when
//!   neither came). Any other end is FAILED with the last lines of stderr (at most
//!   [`STDERR_TAIL_LINES`] lines and [`STDERR_TAIL_BYTES`] bytes).
//! - A run longer than the timeout is killed and FAILED (`timed out after …`); at most
//!   `concurrency` programs run at once, later kickoffs wait for a slot. Dropping the run
//!   (shutdown) kills the program. On Unix the program runs in its own process group, and
//!   a timeout or a drop kills the whole group (what a shell script started, too).
//!
//! This module does not retry, restart or sandbox the program.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hookstream_events_core::ingest::IngestEvent;
use hookstream_events_core::Draft;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::Semaphore;

use super::{RunContext, RunOutcome, Runner};

/// Lines of stderr kept for the error of a failed run, at most.
pub const STDERR_TAIL_LINES: usize = 20;
/// Bytes of stderr kept for the error of a failed run, at most.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// Longest stdout line read as an event; longer lines are skipped (and logged).
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// The settings of the command runner.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CommandConfig {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// A run longer than this is killed and FAILED.
    pub timeout: Duration,
    /// Runs at once, at most.
    pub concurrency: NonZeroUsize,
    /// Inputs every kickoff must carry.
    pub required_inputs: Vec<String>,
}

impl CommandConfig {
    /// Runs `program` with `args`, a 30 minute timeout, 4 at once, no required input.
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            timeout: Duration::from_secs(30 * 60),
            concurrency: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            required_inputs: Vec::new(),
        }
    }

    /// The same with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same with another concurrency limit.
    pub fn with_concurrency(mut self, concurrency: NonZeroUsize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The same with these required inputs.
    pub fn with_required_inputs(mut self, inputs: Vec<String>) -> Self {
        self.required_inputs = inputs;
        self
    }
}

/// The runner that spawns a program per kickoff.
///
/// ```
/// use hookstream_server::runner::command::{CommandConfig, CommandRunner};
/// use hookstream_server::runner::Runner;
///
/// let config = CommandConfig::new("python3", vec!["crew.py".into()])
///     .with_required_inputs(vec!["topic".into()]);
/// let runner = CommandRunner::new(config);
/// assert_eq!(runner.name(), "command");
/// assert_eq!(runner.required_inputs(), vec!["topic".to_owned()]);
/// ```
#[derive(Debug)]
pub struct CommandRunner {
    config: CommandConfig,
    slots: Arc<Semaphore>,
}

impl CommandRunner {
    /// A runner with `config`.
    pub fn new(config: CommandConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrency.get()));
        Self { config, slots }
    }

    /// The configuration.
    pub fn config(&self) -> &CommandConfig {
        &self.config
    }
}

#[async_trait]
impl Runner for CommandRunner {
    fn name(&self) -> &str {
        "command"
    }

    fn required_inputs(&self) -> Vec<String> {
        self.config.required_inputs.clone()
    }

    async fn run(&self, ctx: RunContext) -> RunOutcome {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(_slot) = self.slots.acquire().await else {
            return RunOutcome::Failed { error: "the command runner is shutting down".into() };
        };
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, run_program(&self.config, &ctx)).await {
            Ok(outcome) => outcome,
            // Dropping the run future dropped the child, which kill_on_drop killed.
            Err(_) => RunOutcome::Failed {
                error: format!("timed out after {}", humantime::format_duration(timeout)),
            },
        }
    }
}

async fn run_program(config: &CommandConfig, ctx: &RunContext) -> RunOutcome {
    let inputs = Value::Object(ctx.inputs.clone()).to_string();
    let program = config.program.display().to_string();
    let mut command = Command::new(&config.program);
    // Its own process group, so that a timeout or shutdown also ends what it started.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command
        .args(&config.args)
        .env("HOOKSTREAM_INPUTS", &inputs)
        .env("HOOKSTREAM_EXECUTION_ID", ctx.execution_id.to_string())
        .env("HOOKSTREAM_INGEST_URL", &ctx.ingest_url)
        .env("HOOKSTREAM_INGEST_TOKEN", &ctx.ingest_token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            return RunOutcome::Failed { error: format!("cannot start {program}: {error}") }
        }
    };
    tracing::debug!(execution_id = %ctx.execution_id, %program, "command started");
    // Declared after `child`, so dropped before it: the group is killed while its leader is
    // not yet reaped (its id cannot have been reused).
    let mut group = GroupKill(child.id());

    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return RunOutcome::Failed { error: format!("cannot open the pipes of {program}") };
    };
    // A program that never reads stdin must not block the run: write in the background and
    // ignore a closed pipe.
    let feed = async move {
        let _ = stdin.write_all(inputs.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
        drop(stdin);
    };
    let tail = stderr_tail(stderr);
    let events = read_events(BufReader::new(stdout), ctx);
    let ((), tail, events) = tokio::join!(feed, tail, events);
    let status = match child.wait().await {
        Ok(status) => status,
        Err(error) => {
            return RunOutcome::Failed { error: format!("waiting for {program}: {error}") }
        }
    };
    // Reaped: its id may be reused from now on, so the group is left alone.
    group.0 = None;
    let result = match events {
        Ok(result) => result,
        Err(error) => return RunOutcome::Failed { error },
    };
    tracing::debug!(execution_id = %ctx.execution_id, %program, %status, "command ended");
    if status.success() {
        return RunOutcome::Success { result: result.unwrap_or(Value::Null) };
    }
    let how = match status.code() {
        Some(code) => format!("{program} exited with status {code}"),
        None => format!("{program} was killed by a signal"),
    };
    let error = if tail.is_empty() { how } else { format!("{how}: {tail}") };
    RunOutcome::Failed { error }
}

/// Kills the process group `.0` when dropped (unless cleared): a run that timed out or was
/// dropped at shutdown ends with everything its program started.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.0 {
            // `kill -KILL -- -<pgid>`: the way to signal a group without `unsafe`.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Reads stdout to its end, publishing every event line. Returns the run's result so far
/// (output of the last `crew_kickoff_completed` / result of the last `flow_finished`), or why
/// the run cannot go on (the bus refused a publish).
async fn read_events<R: AsyncBufRead + Unpin>(
    mut reader: R,
    ctx: &RunContext,
) -> Result<Option<Value>, String> {
    let mut result = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line).await;
        match read {
            Ok(0) => return Ok(result),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(execution_id = %ctx.execution_id, %error, "reading the command's stdout failed");
                return Ok(result);
            }
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            tracing::warn!(execution_id = %ctx.execution_id, limit = MAX_LINE_BYTES, "skipping an overlong stdout line");
            skip_line(&mut reader).await;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let Some(parsed) = parse_line(text.trim()) else {
            tracing::debug!(execution_id = %ctx.execution_id, line = %text.trim_end(), "command output");
            continue;
        };
        let draft = match parsed {
            Ok(draft) => draft,
            Err(reason) => {
                tracing::warn!(execution_id = %ctx.execution_id, %reason, "skipping an invalid event line");
                continue;
            }
        };
        match draft.event_type.as_str() {
            "crew_kickoff_completed" => {
                result = Some(draft.data.get("output").cloned().unwrap_or(Value::Null))
            }
            "flow_finished" => {
                result = Some(draft.data.get("result").cloned().unwrap_or(Value::Null))
            }
            _ => {}
        }
        if let Err(error) = ctx.emit(vec![draft]).await {
            return Err(format!("the run's events were refused: {error}"));
        }
    }
}

/// Discards the rest of a line that was too long.
async fn skip_line<R: AsyncBufRead + Unpin>(reader: &mut R) {
    loop {
        let Ok(buf) = reader.fill_buf().await else { return };
        if buf.is_empty() {
            return;
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// One stdout line: `None` when it is not an event (not a JSON object with a string `type`),
/// else the draft (events-core's ingest rules) or why the event is invalid.
pub(crate) fn parse_line(line: &str) -> Option<Result<Draft, String>> {
    if !line.starts_with('{') {
        return None;
    }
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else { return None };
    if !object.get("type").is_some_and(Value::is_string) {
        return None;
    }
    let event: IngestEvent = match serde_json::from_value(Value::Object(object)) {
        Ok(event) => event,
        Err(error) => return Some(Err(error.to_string())),
    };
    Some(match event.into_draft() {
        Ok(draft) if draft.event_type.is_terminal() => {
            Err(format!("{} is emitted by the server, not by runners", draft.event_type))
        }
        Ok(draft) => Ok(draft),
        Err(error) => Err(format!("field {}: {error}", error.field())),
    })
}

/// Reads stderr to its end, keeping the last lines within the caps; returns them joined by
/// newlines (the run's error keeps the program's own line breaks).
async fn stderr_tail<R: AsyncRead + Unpin>(stderr: R) -> String {
    let mut lines: VecDeque<String> = VecDeque::new();
    let mut bytes = 0usize;
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(STDERR_TAIL_BYTES as u64).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        bytes += text.len();
        lines.push_back(text);
        while lines.len() > STDERR_TAIL_LINES || (bytes > STDERR_TAIL_BYTES && lines.len() > 1) {
            if let Some(dropped) = lines.pop_front() {
                bytes -= dropped.len();
            }
        }
    }
    let mut tail: Vec<String> = lines.into_iter().collect();
    while tail.last().is_some_and(|l| l.is_empty()) {
        tail.pop();
    }
    tail.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_with_a_type_are_events() {
        assert!(parse_line("hello").is_none());
        assert!(parse_line("[1, 2]").is_none());
        assert!(parse_line("{\"no_type\": 1}").is_none());
        assert!(parse_line("{not json").is_none());
        let draft = parse_line(r#"{"type": "task_started", "data": {"context": "x"}}"#)
            .expect("event")
            .expect("valid");
        assert_eq!(draft.event_type.as_str(), "task_started");
        assert_eq!(draft.data.get("context"), Some(&Value::from("x")));
    }

    #[test]
    fn ids_and_timestamps_of_the_producer_are_kept() {
        let line = r#"{"type": "my.custom", "id": "0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d0e", "timestamp": "2025-02-16T10:58:44.965123Z"}"#;
        let draft = parse_line(line).expect("event").expect("valid");
        assert_eq!(draft.id.to_string(), "0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d0e");
        assert_eq!(draft.timestamp.to_string(), "2025-02-16T10:58:44.965Z");
        assert!(draft.data.is_empty());
    }

    #[test]
    fn invalid_events_say_why() {
        for line in [
            r#"{"type": "9bad"}"#,
            r#"{"type": "x", "data": [1]}"#,
            r#"{"type": "x", "id": "nope"}"#,
            r#"{"type": "crew_execution_completed", "data": {}}"#,
            r#"{"type": "llm_call_started", "data": {"model": 4}}"#,
        ] {
            assert!(matches!(parse_line(line), Some(Err(_))), "{line}");
        }
    }

    #[tokio::test]
    async fn the_stderr_tail_keeps_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let tail = stderr_tail(text.as_bytes()).await;
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), STDERR_TAIL_LINES);
        assert_eq!(lines.last(), Some(&"line 30"));
        assert_eq!(lines.first(), Some(&"line 11"));

        let long = "x".repeat(3000) + "\n" + &"y".repeat(3000) + "\n";
        let tail = stderr_tail(long.as_bytes()).await;
        assert!(tail.len() <= STDERR_TAIL_BYTES, "{}", tail.len());
        assert!(tail.starts_with('y'));
    }
}
