//! The command runner end to end (SPEC §5): small shell scripts written to a temp dir run as
//! the configured program of an in-process server; their stdout lines become the execution's
//! events, their exit decides SUCCESS or FAILED, the timeout kills them and the concurrency
//! limit holds.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hookstream_server::runner::command::{CommandConfig, CommandRunner};
use serde_json::{json, Value};

use crate::support::{self, Receiver, TestApp};

/// Writes an executable `/bin/sh` script named `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

fn server(config: CommandConfig) -> TestApp {
    support::server_with(Arc::new(CommandRunner::new(config)))
}

async fn replay(app: &TestApp, id: &str) -> Vec<Value> {
    let answer = app.get(&format!("/executions/{id}/events?after=0&limit=1000")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["events"].as_array().cloned().unwrap_or_default()
}

const EVENTS_THEN_EXIT_0: &str = r#"
read -r INPUTS
echo "plain output is only logged"
echo '{"type": "crew_kickoff_started", "data": {"crew_name": "sh", "inputs": '"$INPUTS"'}}'
echo "{\"type\": \"my.custom\", \"data\": {\"env_inputs\": $HOOKSTREAM_INPUTS, \"execution\": \"$HOOKSTREAM_EXECUTION_ID\", \"ingest_url\": \"$HOOKSTREAM_INGEST_URL\", \"has_token\": \"${HOOKSTREAM_INGEST_TOKEN:+yes}\"}}"
echo '{"not_an_event": true}'
echo '{"type": "crew_kickoff_completed", "data": {"crew_name": "sh", "output": {"raw": "done"}, "total_tokens": 3}}'
echo "a line on stderr" >&2
exit 0
"#;

#[tokio::test]
async fn stdout_events_then_exit_0_is_success_with_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = script(dir.path(), "crew.sh", EVENTS_THEN_EXIT_0);
    let app =
        server(CommandConfig::new(program, Vec::new()).with_required_inputs(vec!["topic".into()]));
    let receiver = Receiver::start().await;

    let inputs = app.get("/inputs").await;
    assert_eq!(inputs.body, json!({"inputs": ["topic"]}));
    let missing = app.post("/kickoff", json!({"inputs": {}})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", missing.body);

    let id = app
        .kickoff(json!({
            "inputs": {"topic": "webhooks"},
            "webhooks": {"url": receiver.url("/hook"), "realtime": true}
        }))
        .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "SUCCESS", "{status}");
    assert_eq!(status["result"], json!({"raw": "done"}));

    let events = replay(&app, &id).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        ["crew_kickoff_started", "my.custom", "crew_kickoff_completed", "crew_execution_completed"]
    );
    assert_eq!(events[0]["data"]["inputs"], json!({"topic": "webhooks"}), "inputs on stdin");
    let custom = &events[1]["data"];
    assert_eq!(custom["env_inputs"], json!({"topic": "webhooks"}), "HOOKSTREAM_INPUTS");
    assert_eq!(custom["execution"], json!(id), "HOOKSTREAM_EXECUTION_ID");
    assert!(
        custom["ingest_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/executions/{id}/events"))),
        "HOOKSTREAM_INGEST_URL: {custom}"
    );
    assert_eq!(custom["has_token"], "yes", "HOOKSTREAM_INGEST_TOKEN");

    let delivered = receiver.wait_for_terminal("/hook").await;
    assert_eq!(delivered.iter().map(|r| r.events().len()).sum::<usize>(), 4);
}

#[tokio::test]
async fn a_failing_exit_is_failed_with_the_stderr_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"
echo '{"type": "task_started", "data": {}}'
i=1
while [ $i -le 30 ]; do echo "stderr line $i" >&2; i=$((i+1)); done
exit 3
"#;
    let app = server(CommandConfig::new(script(dir.path(), "fail.sh", body), Vec::new()));
    let id = app.kickoff(json!({"inputs": {}})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "FAILED", "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(error.contains("stderr line 30"), "{error}");
    assert!(!error.contains("stderr line 10\n"), "only the tail is kept: {error}");

    let events = replay(&app, &id).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["task_started", "crew_execution_completed"]);
    assert_eq!(events[1]["data"]["state"], "FAILED");
}

#[tokio::test]
async fn a_run_past_the_timeout_is_killed_with_what_it_started_and_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let body = format!(
        "echo '{{\"type\": \"task_started\", \"data\": {{}}}}'\nsleep 60 &\necho $! > '{}'\nwait",
        pid_file.display()
    );
    let config = CommandConfig::new(script(dir.path(), "slow.sh", &body), Vec::new())
        .with_timeout(Duration::from_millis(300));
    let app = server(config);
    let id = app.kickoff(json!({"inputs": {}})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "FAILED", "{status}");
    assert_eq!(status["error"], "timed out after 300ms");
    let types: Vec<String> = replay(&app, &id)
        .await
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(types, ["task_started", "crew_execution_completed"]);

    // The script's own child (its process group) was killed too: gone, or a zombie awaiting
    // its new parent, within a bounded wait.
    #[cfg(target_os = "linux")]
    {
        let pid = std::fs::read_to_string(&pid_file).expect("pid file");
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let dead = match std::fs::read_to_string(&stat) {
                Err(_) => true,
                Ok(text) => text.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
            };
            if dead {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the script's child survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_program_that_cannot_start_is_failed() {
    let app = server(CommandConfig::new("/nonexistent/hookstream-crew", Vec::new()));
    let id = app.kickoff(json!({"inputs": {}})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "FAILED");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot start /nonexistent/hookstream-crew")),
        "{status}"
    );
}

#[tokio::test]
async fn the_concurrency_limit_runs_one_at_a_time() {
    // Each run takes a directory lock (mkdir is atomic) and holds it a moment: with a limit of
    // one, no run ever finds it taken; without the limit, the runs would overlap.
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("lock");
    let body = format!(
        "mkdir '{lock}' 2>/dev/null || {{ echo overlap >&2; exit 9; }}\nsleep 0.2\nrmdir '{lock}'\necho '{{\"type\": \"task_started\", \"data\": {{}}}}'",
        lock = lock.display()
    );
    let config = CommandConfig::new(script(dir.path(), "one.sh", &body), Vec::new())
        .with_concurrency(NonZeroUsize::MIN);
    let app = server(config);
    let first = app.kickoff(json!({"inputs": {}})).await;
    let second = app.kickoff(json!({"inputs": {}})).await;
    let third = app.kickoff(json!({"inputs": {}})).await;
    for id in [first, second, third] {
        let status = app.wait_final(&id).await;
        assert_eq!(status["state"], "SUCCESS", "{status}");
    }
}
