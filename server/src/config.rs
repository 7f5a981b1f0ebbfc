//! Command-line flags and environment variables. Every flag has a `VESTIGE_*` twin so the same
//! binary is configured by hand, by scripts and by a service manager alike.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Parser)]
#[command(name = "vestige", version, about = "Vestige: photograph a heritage site together and watch its 3D model grow.")]
pub struct Config {
    /// Address to listen on. Use 127.0.0.1:0 to pick a free port (it is logged).
    #[arg(long, env = "VESTIGE_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Directory for rooms, photos and models. Created if missing.
    #[arg(long, env = "VESTIGE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Directory holding the built site (the WASM, JS and CSS under `pkg/`, plus public assets),
    /// as produced by `cargo leptos build`.
    #[arg(long, env = "VESTIGE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Largest photo accepted, in bytes.
    #[arg(long, env = "VESTIGE_MAX_UPLOAD_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Log line format.
    #[arg(long, env = "VESTIGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Defaults for tests and embedding: a free port, the given data directory.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            site_root: PathBuf::from("target/site"),
            max_upload_bytes: 32 * 1024 * 1024,
            log_format: LogFormat::Text,
        }
    }
}
