//! Shutdown signals: a future that completes on the first SIGTERM or SIGINT (Ctrl-C), for
//! `serve`'s graceful shutdown and `listen`.
//!
//! It only observes signals; what stopping means (stop accepting, flush, grace period) is the
//! server's.

/// Which signal asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (e.g. `kill`, a container stop).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl Signal {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// Completes on the first SIGTERM or SIGINT. Where a handler cannot be installed, that signal
/// is not awaited (the other still is).
pub async fn signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        let terminate = async {
            match term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = terminate => Signal::Terminate,
            () = ctrl_c() => Signal::Interrupt,
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c().await;
        Signal::Interrupt
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
