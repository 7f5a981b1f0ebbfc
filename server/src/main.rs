use clap::Parser;
use server::config::{Config, LogFormat};
use server::{Bound, shutdown_signal};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }

    let bound = match Bound::bind(&config).await {
        Ok(bound) => bound,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match bound.local_addr() {
        // Scripts and the e2e tests read this line to find the port when binding to :0.
        Ok(addr) => tracing::info!(data_dir = %config.data_dir.display(), site_root = %config.site_root.display(), "listening on http://{addr}"),
        Err(err) => tracing::warn!("{err}"),
    }
    match bound.serve(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
