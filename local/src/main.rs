//! `hookline`: `hookline serve` runs Hookline locally; the other subcommands manage any
//! Hookline (local or on Lambda) through its API, and `hookline listen` receives deliveries
//! while you develop.

mod cli;
mod listen;
mod log_lines;
mod main_key;
mod serve;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // Usage errors exit 2 (clap's own code), before anything runs.
    let cli = cli::Cli::parse();
    let code = cli::run(cli).await;
    std::process::exit(code);
}
