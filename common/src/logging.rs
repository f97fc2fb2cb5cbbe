//! Logging for the platform's binaries (`edge-node`, `edge-cp`): one event
//! per line on stderr, filtered by `EDGE_LOG` (`info` by default), colours
//! only on a terminal. Stdout stays for what scripts read (addresses,
//! tokens).

pub fn init_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
