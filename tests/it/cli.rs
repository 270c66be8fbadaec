//! The real `hookstream` binary (SPEC §6): `serve` starts on a free port and answers
//! `Healthy`, generates and keeps its API token (mode 0600), stops with exit 0 on SIGTERM; bad
//! flags, values and config files exit 2 with one line naming the problem; `demo` runs to a
//! gap-free summary; `listen` verifies signatures and bearer tokens and says when they fail.
//!
//! Locating the binary: `CARGO_BIN_EXE_*` only exists for a package's own binaries, so
//! [`hookstream`] runs `cargo build -p hookstream-server --bin hookstream` (a no-op when it is
//! up to date; cargo does not hold its lock while tests run) through the crash test's helper.
//! Children never inherit `HOOKSTREAM_*` variables from the test's environment.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookstream_auth::signature::{sign, SigningSecret};

/// How long a child gets to print a line or to exit.
const PATIENCE: Duration = Duration::from_secs(30);

/// The `hookstream` binary of this build, built on demand (shared with the store's tests).
fn hookstream() -> PathBuf {
    crate::crash::binary()
}

/// A command for the binary `bin` with a clean `HOOKSTREAM_*` environment.
fn command(bin: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOOKSTREAM_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
}

fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run hookstream")
}

/// A running child whose stdout lines are read on a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::process::ChildStderr>,
}

impl Running {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookstream");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new(), stderr }
    }

    /// The first line from now on that starts with `prefix` (the rest of it).
    fn line_starting(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let stderr = self.stderr();
                    panic!(
                        "no line starting with {prefix:?}; stdout {:?}; stderr {stderr}",
                        self.seen
                    );
                }
            }
        }
    }

    /// The address of the `listening on http://…` line.
    fn address(&mut self) -> SocketAddr {
        self.line_starting("listening on http://").parse().expect("a socket address")
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (at most [`PATIENCE`]) for the exit; the wait runs on a thread so that the
    /// deadline needs no polling.
    fn wait(&mut self) -> ExitStatus {
        let pid = self.child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let child = &mut self.child;
            scope.spawn(move || {
                let _ = tx.send(child.wait());
            });
            match rx.recv_timeout(PATIENCE) {
                Ok(status) => status.expect("wait for hookstream"),
                Err(_) => {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                    panic!("hookstream did not exit within {PATIENCE:?}");
                }
            }
        })
    }

    /// Everything the child wrote to stderr (call after it exited or was killed).
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange: returns the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn stderr_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    stderr.trim_end().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn serve_answers_healthy_keeps_its_token_and_exits_0_on_sigterm() {
    let bin = hookstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf-8 path");
    let args = ["serve", "--listen", "127.0.0.1:0", "--store", "memory", "--data-dir", data];

    let mut server = Running::start(command(&bin, &args));
    let token = server.line_starting("api token: ");
    let addr = server.address();
    let (status, body) = http(addr, "GET", "/", &[], "");
    assert_eq!((status, body.trim()), (200, "Healthy"));
    let (status, _) = http(addr, "GET", "/inputs", &[], "");
    assert_eq!(status, 401, "the API needs the token");
    let bearer = format!("Bearer {token}");
    let (status, body) = http(addr, "GET", "/inputs", &[("Authorization", &bearer)], "");
    assert_eq!((status, body.as_str()), (200, r#"{"inputs":["topic"]}"#));

    let file = data_dir.join("api-token");
    assert_eq!(std::fs::read_to_string(&file).expect("token file").trim(), token);
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600, "token file mode");
        assert_eq!(mode(&data_dir), 0o700, "data dir mode");
    }

    server.terminate();
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "SIGTERM is a graceful stop");
    let stderr = server.stderr();
    assert!(!stderr.contains(&token), "the token never reaches the log: {stderr}");

    // The next start reuses the kept token and does not print it.
    let mut again = Running::start(command(&bin, &args));
    let addr = again.address();
    assert!(!again.seen.iter().any(|l| l.contains(&token)), "printed only once: {:?}", again.seen);
    let (status, _) = http(addr, "GET", "/inputs", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200, "the kept token still works");
    again.terminate();
    assert_eq!(again.wait().code(), Some(0));
}

#[test]
fn the_configured_token_and_config_file_are_used() {
    let bin = hookstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hookstream.toml");
    std::fs::write(
        &config,
        "store = \"memory\"\nlisten = \"127.0.0.1:1\"\nrunner = \"external\"\n",
    )
    .expect("write config");
    let mut command = command(
        &bin,
        &["serve", "--config", config.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"],
    );
    command.env("HOOKSTREAM_API_TOKEN", "from-the-env").env("HOOKSTREAM_DATA_DIR", dir.path());
    let mut server = Running::start(command);
    let addr = server.address();
    assert!(!server.seen.iter().any(|l| l.starts_with("api token")), "{:?}", server.seen);
    let (status, body) =
        http(addr, "GET", "/inputs", &[("Authorization", "Bearer from-the-env")], "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"inputs":[]}"#),
        "the external runner from the file"
    );
    assert!(!dir.path().join("api-token").exists());
    server.terminate();
    assert_eq!(server.wait().code(), Some(0));
}

#[test]
fn bad_flags_values_and_config_exit_2_with_one_line() {
    let bin = hookstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "listen = \"127.0.0.1:0\"\nlisten_port = 1\n").expect("write");
    let unknown = unknown.to_str().expect("utf-8").to_owned();

    let cases: Vec<(Command, &str)> = vec![
        (
            command(&bin, &["serve", "--listen", "foo"]),
            "error: invalid --listen \"foo\": expected host:port",
        ),
        (
            command(&bin, &["serve", "--no-such-flag"]),
            "error: unexpected argument '--no-such-flag'",
        ),
        (
            command(&bin, &["serve", "--store", "nats"]),
            "error: --store nats is not yet supported in this build",
        ),
        (command(&bin, &["serve", "--config", &unknown]), "error: unknown key \"listen_port\" in"),
        (
            command(&bin, &["serve", "--runner", "command"]),
            "error: --runner command needs a program",
        ),
        (command(&bin, &["listen", "--secret", "whsec_!!"]), "error: invalid --secret"),
        (
            {
                let mut c = command(&bin, &["serve"]);
                c.env("HOOKSTREAM_ALLOW_TARGET_CIDRS", "127.0.0.0/8,nope");
                c
            },
            "error: invalid HOOKSTREAM_ALLOW_TARGET_CIDRS \"nope\": expected a CIDR",
        ),
        (
            command(&bin, &["serve", "--durability", "always"]),
            "error: invalid --durability \"always\": expected default or fsync",
        ),
        (
            {
                let mut c = command(&bin, &["serve"]);
                c.env("HOOKSTREAM_RETENTION", "a week");
                c
            },
            "error: invalid HOOKSTREAM_RETENTION \"a week\": expected a duration",
        ),
        (
            command(&bin, &["serve", "--store", "memory", "--durability", "fsync"]),
            "error: --durability only applies to --store embedded (the store is memory)",
        ),
    ];
    for (command, expected) in cases {
        let shown = format!("{command:?}");
        let output = run(command);
        assert_eq!(output.status.code(), Some(2), "{shown}: {output:?}");
        let line = stderr_line(&output);
        assert!(line.starts_with(expected), "{shown}: {line:?}");
        assert!(output.stdout.is_empty(), "nothing started: {shown}");
    }
}

/// Every file under `dir` (recursively) with its bytes, and every directory (with no bytes).
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                found.insert(path.clone(), None);
                pending.push(path);
            } else {
                found.insert(path.clone(), Some(std::fs::read(&path).expect("read file")));
            }
        }
    }
    found
}

/// A valid, empty SQLite database (one page, no table) whose `PRAGMA user_version` is
/// `version`, written byte by byte (the file format's header, then an empty table b-tree).
fn sqlite_with_user_version(version: u32) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    page[..16].copy_from_slice(b"SQLite format 3\0");
    page[16..18].copy_from_slice(&4096u16.to_be_bytes()); // page size
    page[18..24].copy_from_slice(&[1, 1, 0, 64, 32, 32]); // legacy journal, payload fractions
    page[24..28].copy_from_slice(&1u32.to_be_bytes()); // change counter
    page[28..32].copy_from_slice(&1u32.to_be_bytes()); // pages in the file
    page[44..48].copy_from_slice(&4u32.to_be_bytes()); // schema format
    page[56..60].copy_from_slice(&1u32.to_be_bytes()); // UTF-8
    page[60..64].copy_from_slice(&version.to_be_bytes()); // user_version
    page[92..96].copy_from_slice(&1u32.to_be_bytes()); // version-valid-for
    page[96..100].copy_from_slice(&3_045_000u32.to_be_bytes()); // SQLite version
    page[100] = 0x0d; // a leaf table b-tree page (sqlite_master) with no cell
    page[105..107].copy_from_slice(&4096u16.to_be_bytes()); // cell content area
    page
}

#[test]
fn a_store_that_will_not_open_exits_2_with_one_line_and_touches_nothing() {
    let bin = hookstream();
    let root = tempfile::tempdir().expect("tempdir");

    // A data dir whose parent is a regular file: unwritable for every user, root included.
    let blocker = root.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let under_a_file = blocker.join("data");

    let garbage = root.path().join("garbage");
    std::fs::create_dir(&garbage).expect("mkdir");
    std::fs::write(
        garbage.join("hookstream.db"),
        b"this is not an SQLite database, only text that happens to be named like one\n",
    )
    .expect("write");

    let newer = root.path().join("newer");
    std::fs::create_dir(&newer).expect("mkdir");
    std::fs::write(newer.join("hookstream.db"), sqlite_with_user_version(1000)).expect("write");

    let cases: [(&Path, String); 3] = [
        (&under_a_file, format!("data dir {} is not writable", under_a_file.display())),
        (
            &garbage,
            format!(
                "database {} is corrupt or not a hookstream database",
                garbage.join("hookstream.db").display()
            ),
        ),
        (
            &newer,
            format!(
                "database {} has schema version 1000, newer than this hookstream knows",
                newer.join("hookstream.db").display()
            ),
        ),
    ];
    for (data_dir, problem) in cases {
        let before = snapshot(root.path());
        let data = data_dir.to_str().expect("utf-8 path");
        let output = run(command(&bin, &["serve", "--listen", "127.0.0.1:0", "--data-dir", data]));
        assert_eq!(output.status.code(), Some(2), "{data}: {output:?}");
        let line = stderr_line(&output);
        assert!(line.starts_with("error: cannot open the embedded store: "), "{data}: {line:?}");
        assert!(line.contains(&problem), "{data}: {line:?} should name {problem:?}");
        assert!(
            output.stdout.is_empty(),
            "no token printed, nothing listening: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(snapshot(root.path()), before, "{data}: the files are as they were");
        assert!(!data_dir.join("api-token").exists(), "{data}: no token written");
    }
}

#[test]
fn durability_fsync_and_a_retention_start_and_serve() {
    let bin = hookstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf-8 path");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--durability",
        "fsync",
        "--retention",
        "36h",
    ];
    let mut server = Running::start(command(&bin, &args));
    let addr = server.address();
    let (status, body) = http(addr, "GET", "/", &[], "");
    assert_eq!((status, body.trim()), (200, "Healthy"));
    assert!(data_dir.join("hookstream.db").is_file(), "the embedded store is in the data dir");
    server.terminate();
    assert_eq!(server.wait().code(), Some(0));
    let stderr = server.stderr();
    let opened = stderr
        .lines()
        .find(|l| l.contains("embedded store open"))
        .unwrap_or_else(|| panic!("the store's settings are logged: {stderr}"));
    assert!(opened.contains("durability=Fsync"), "{opened}");
    assert!(opened.contains("retention=1day 12h"), "{opened}");
}

#[test]
fn demo_runs_to_a_gap_free_summary() {
    let bin = hookstream();
    let output = run(command(&bin, &["demo", "--step-delay", "0s", "--max-wait-ms", "50"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout {stdout} stderr {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout.lines().find(|l| l.starts_with("summary: ")).expect("a summary line");
    assert!(summary.contains("gap-free"), "{summary}");
    assert!(summary.contains("every signature verified"), "{summary}");
    assert!(summary.ends_with("state SUCCESS"), "{summary}");
    assert!(stdout.contains("#1 webhook-id "), "batches are shown: {stdout}");
    assert!(stdout.contains("crew_execution_completed"), "{stdout}");
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

const BATCH: &str = r#"{"events":[{"id":"0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d0e","execution_id":"6c1f0a7e-2b7d-4d0e-9a51-3b1c2d4e5f60","timestamp":"2025-02-16T10:58:44.965Z","type":"llm_call_started","sequence":1,"data":{"model":"gpt-4"}}]}"#;

#[test]
fn listen_verifies_a_good_signature_and_rejects_a_bad_one() {
    let bin = hookstream();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut listener =
        Running::start(command(&bin, &["listen", "--port", "0", "--secret", secret]));
    let addr = listener.address();
    let key = SigningSecret::parse(secret).expect("secret");
    let now = unix_now();
    let signature = sign(&key, "msg_good", now, BATCH.as_bytes());
    let timestamp = now.to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("webhook-id", "msg_good"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let (status, _) = http(addr, "POST", "/hook", &headers, BATCH);
    assert_eq!(status, 200);
    let line = listener.line_starting("#1 webhook-id msg_good: ");
    assert_eq!(line, "1 event, seq 1, signature ok");
    assert_eq!(listener.line_starting("    "), "llm_call_started");

    let forged = sign(
        &SigningSecret::parse("another-secret").expect("secret"),
        "msg_bad",
        now,
        BATCH.as_bytes(),
    );
    let headers = [
        ("webhook-id", "msg_bad"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", forged.as_str()),
    ];
    let (status, body) = http(addr, "POST", "/hook", &headers, BATCH);
    assert_eq!(status, 401, "{body}");
    let line = listener.line_starting("#2 webhook-id msg_bad: ");
    assert_eq!(line, "REJECTED with 401: bad signature: no matching signature");
    listener.terminate();
    assert_eq!(listener.wait().code(), Some(0));
}

#[test]
fn listen_checks_the_bearer_token() {
    let bin = hookstream();
    let mut listener =
        Running::start(command(&bin, &["listen", "--port", "0", "--token", "s3cret"]));
    let addr = listener.address();
    let (status, _) = http(addr, "POST", "/", &[("Authorization", "Bearer wrong")], BATCH);
    assert_eq!(status, 401);
    assert_eq!(
        listener.line_starting("#1 "),
        "webhook-id (no webhook-id): REJECTED with 401: wrong bearer token"
    );
    let (status, _) =
        http(addr, "POST", "/", &[("Authorization", "Bearer s3cret"), ("webhook-id", "b2")], BATCH);
    assert_eq!(status, 200);
    assert_eq!(listener.line_starting("#2 "), "webhook-id b2: 1 event, seq 1, bearer token ok");
}
