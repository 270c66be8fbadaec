//! The `hookstream` binary: parses the command line, loads the configuration, sets up logging,
//! installs the rustls crypto provider and runs the subcommand. Everything else is in the
//! library (`hookstream_server::cli`, `config`, `listen`, `demo`).
//!
//! Exit codes: 0 success (including a graceful stop on SIGTERM/SIGINT), 2 a bad flag, value
//! or config file (one line on stderr, nothing started), 1 any other failure.

use std::process::ExitCode;

use anyhow::Context as _;
use hookstream_server::cli::{self, Command, ParseOutcome, EXIT_USAGE};
use hookstream_server::config::{self, EnvMap, LogFormat};

fn main() -> ExitCode {
    // The one read of the process environment; everything below takes this map.
    let env: EnvMap = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ParseOutcome::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(ParseOutcome::Usage(line)) => return usage_error(&line),
    };
    // Several crates build rustls configs; they all use the process default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();

    match cli.command {
        Command::Serve(args) => {
            let config = match config::load(&args, &env) {
                Ok(config) => config,
                Err(error) => return usage_error(&error.to_string()),
            };
            if let Err(error) = cli::logging::init(config.log_format, &env) {
                return usage_error(&error.to_string());
            }
            let outcome = runtime().map(|rt| rt.block_on(cli::serve::run(config)));
            match outcome {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(error)) => {
                    let code = error.exit_code();
                    eprintln!("error: {:#}", anyhow::Error::new(error));
                    ExitCode::from(code)
                }
                Err(error) => failure(&error),
            }
        }
        Command::Demo(args) => {
            let options = match hookstream_server::demo::DemoOptions::from_args(&args) {
                Ok(options) => options,
                Err(error) => return usage_error(&error.to_string()),
            };
            quiet_logging(&env);
            let outcome = runtime().and_then(|rt| {
                rt.block_on(hookstream_server::demo::run(options, &mut std::io::stdout()))
                    .context("the demo failed")
            });
            match outcome {
                Ok(_summary) => ExitCode::SUCCESS,
                Err(error) => failure(&error),
            }
        }
        Command::Listen(args) => {
            let config = match hookstream_server::listen::ListenConfig::from_args(&args) {
                Ok(config) => config,
                Err(error) => return usage_error(&error.to_string()),
            };
            quiet_logging(&env);
            let outcome = runtime().and_then(|rt| {
                rt.block_on(async {
                    let listener = tokio::net::TcpListener::bind(config.addr)
                        .await
                        .with_context(|| format!("cannot listen on {}", config.addr))?;
                    hookstream_server::listen::run(config, listener, async {
                        cli::shutdown::signal().await;
                    })
                    .await
                    .context("the receiver failed")
                })
            });
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => failure(&error),
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs of `demo` and `listen`: warnings only unless `HOOKSTREAM_LOG`/`RUST_LOG` say more, so
/// that their own output stays readable.
fn quiet_logging(env: &EnvMap) {
    let mut env = env.clone();
    if !env.contains_key(cli::logging::LOG_ENV) && !env.contains_key("RUST_LOG") {
        env.insert(cli::logging::LOG_ENV.to_owned(), "warn".to_owned());
    }
    let _ = cli::logging::init(LogFormat::Pretty, &env);
}

fn usage_error(line: &str) -> ExitCode {
    eprintln!("error: {line}");
    ExitCode::from(EXIT_USAGE)
}

fn failure(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}
