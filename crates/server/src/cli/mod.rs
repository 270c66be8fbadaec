//! The command line of the `hookstream` binary (SPEC §6): `serve`, `demo` and `listen`, their
//! flags (clap derive), and what each subcommand runs.
//!
//! Flags are kept as raw text here and parsed by [`crate::config`], so that a bad value reads
//! the same whether it came from a flag, a `HOOKSTREAM_*` variable or the config file. This
//! module owns the process-level concerns the library otherwise avoids: usage errors and exit
//! codes, logging setup, signals, and the API token file in the data dir.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod api_token;
pub mod logging;
pub mod serve;
pub mod shutdown;

/// Exit code of a usage or configuration error (bad flag, bad value, unknown config key).
pub const EXIT_USAGE: u8 = 2;

/// `hookstream`: stream the events of AI-agent runs to webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookstream", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: the HTTP API, the runners and webhook delivery.
    Serve(Box<ServeArgs>),
    /// Watch a demo run end to end: a server, a receiver and a simulated crew, in process.
    Demo(DemoArgs),
    /// A local webhook receiver that prints each batch and checks its authentication.
    Listen(ListenArgs),
}

/// Flags of `hookstream serve`. Each also reads `HOOKSTREAM_<FLAG>` and the config file's key
/// (precedence: flag, environment, file, default). Values are parsed in [`crate::config`].
#[derive(Clone, Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file [env: HOOKSTREAM_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API; port 0 picks a free port [env: HOOKSTREAM_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory of the embedded store and the generated API token [env: HOOKSTREAM_DATA_DIR] [default: ./hookstream-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// embedded (durable, in the data dir), memory, or nats [env: HOOKSTREAM_STORE] [default: embedded]
    #[arg(long, value_name = "KIND")]
    pub store: Option<String>,
    /// Bearer token of the API; generated and kept in the data dir when unset [env: HOOKSTREAM_API_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub api_token: Option<String>,
    /// Allow webhook targets in this range despite the SSRF guard; repeatable [env: HOOKSTREAM_ALLOW_TARGET_CIDRS, comma-separated]
    #[arg(long, value_name = "CIDR")]
    pub allow_target_cidr: Vec<String>,
    /// What a kickoff runs: demo, command or external [env: HOOKSTREAM_RUNNER] [default: demo, or command when --command is set]
    #[arg(long, value_name = "RUNNER")]
    pub runner: Option<String>,
    /// Program and arguments the command runner spawns per kickoff, shell-quoted [env: HOOKSTREAM_COMMAND]
    #[arg(long, value_name = "COMMAND LINE")]
    pub command: Option<String>,
    /// Kill a command run after this long [env: HOOKSTREAM_COMMAND_TIMEOUT] [default: 30m]
    #[arg(long, value_name = "DURATION")]
    pub command_timeout: Option<String>,
    /// Command runs at once; more kickoffs wait [env: HOOKSTREAM_COMMAND_CONCURRENCY] [default: 4]
    #[arg(long, value_name = "N")]
    pub command_concurrency: Option<String>,
    /// Inputs a kickoff must carry for the command runner, comma-separated [env: HOOKSTREAM_COMMAND_INPUTS]
    #[arg(long, value_name = "NAMES")]
    pub command_inputs: Option<String>,
    /// Pause between two events of the demo crew [env: HOOKSTREAM_DEMO_STEP_DELAY] [default: 20ms]
    #[arg(long, value_name = "DURATION")]
    pub demo_step_delay: Option<String>,
    /// pretty or json [env: HOOKSTREAM_LOG_FORMAT] [default: pretty]; filter with HOOKSTREAM_LOG or RUST_LOG
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Extra PEM file of CA certificates trusted for HTTPS webhooks [env: HOOKSTREAM_EXTRA_CA]
    #[arg(long, value_name = "PEM FILE")]
    pub extra_ca: Option<PathBuf>,
    /// URL under which this server is reached (ingest URLs given to runners) [env: HOOKSTREAM_PUBLIC_URL] [default: from --listen]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// How long shutdown waits for in-flight deliveries [env: HOOKSTREAM_SHUTDOWN_GRACE] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Base64 of 32 random bytes that seals webhook credentials in the embedded store; prefer the env var [env: HOOKSTREAM_SECRET_KEY]
    #[arg(long, value_name = "BASE64")]
    pub secret_key: Option<String>,
    /// What an answer of the embedded store waits for: default (the OS has the commit) or fsync (the disk has it) [env: HOOKSTREAM_DURABILITY] [default: default]
    #[arg(long, value_name = "MODE")]
    pub durability: Option<String>,
    /// How long the embedded store keeps the events of ended executions for replay, e.g. 7d, 12h [env: HOOKSTREAM_RETENTION] [default: 7d]
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
}

/// Flags of `hookstream demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// The demo crew's `topic` input.
    #[arg(long, default_value = "AI agents")]
    pub topic: String,
    /// Pause between two events of the crew, e.g. 0s, 20ms.
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = parse_duration)]
    pub step_delay: std::time::Duration,
    /// Events per batch at most.
    #[arg(long, value_name = "N", default_value = "20")]
    pub max_events: std::num::NonZeroUsize,
    /// Longest wait before a batch is sent, in milliseconds.
    #[arg(long, value_name = "MS", default_value = "250")]
    pub max_wait_ms: u64,
}

/// Flags of `hookstream listen`.
#[derive(Clone, Debug, Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value = "8000")]
    pub port: u16,
    /// Require `Authorization: Bearer <TOKEN>`.
    #[arg(long, value_name = "TOKEN", conflicts_with = "secret")]
    pub token: Option<String>,
    /// Require a valid Standard Webhooks signature with this secret (whsec_...).
    #[arg(long, value_name = "WHSEC")]
    pub secret: Option<String>,
    /// Print every event, one line each, not only the batch summary.
    #[arg(long)]
    pub events: bool,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| "expected a duration such as 0s, 20ms or 1s".to_owned())
}

/// What parsing the command line ended with, when it did not give a [`Cli`].
#[derive(Debug)]
pub enum ParseOutcome {
    /// `--help` or `--version`: print this to stdout, exit 0.
    Info(String),
    /// A usage error: print this one line to stderr, exit [`EXIT_USAGE`].
    Usage(String),
}

/// Parses `args` (the program name first). Usage errors become one line (clap's first line,
/// without the usage block); `--help` and `--version` are returned for printing.
pub fn parse<I, T>(args: I) -> Result<Cli, ParseOutcome>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|error| {
        use clap::error::ErrorKind;
        match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                ParseOutcome::Info(error.render().to_string())
            }
            _ => {
                let rendered = error.render().to_string();
                let first = rendered.lines().next().unwrap_or("error: invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                ParseOutcome::Usage(first.trim().to_owned())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_are_kept_raw() {
        let cli = parse([
            "hookstream",
            "serve",
            "--listen",
            "foo",
            "--allow-target-cidr",
            "127.0.0.0/8",
            "--allow-target-cidr",
            "::1/128",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.listen.as_deref(), Some("foo"));
        assert_eq!(args.allow_target_cidr.len(), 2);
    }

    #[test]
    fn usage_errors_are_one_line() {
        match parse(["hookstream", "serve", "--no-such-flag"]) {
            Err(ParseOutcome::Usage(line)) => {
                assert!(line.contains("--no-such-flag"), "{line}");
                assert!(!line.contains('\n'));
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
        match parse(["hookstream", "listen", "--port", "http"]) {
            Err(ParseOutcome::Usage(line)) => assert!(line.contains("--port"), "{line}"),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn help_is_information() {
        assert!(matches!(parse(["hookstream", "--help"]), Err(ParseOutcome::Info(_))));
        assert!(matches!(parse(["hookstream", "serve", "--help"]), Err(ParseOutcome::Info(_))));
    }
}
