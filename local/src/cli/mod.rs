//! The `hookline` command line: its arguments (clap derive), how a command finds the Hookline
//! it talks to, and what each outcome exits with.

mod accounts;
mod client;
mod config;
mod events;
mod logs;
mod output;
mod receiver;
mod webhooks;

use crate::serve::ServeArgs;
use clap::{CommandFactory, Parser, Subcommand};
pub use client::Api;
use std::path::PathBuf;

/// Exit codes, as the README documents them.
pub mod exit {
    pub const OK: i32 = 0;
    /// The API answered an error (4xx/5xx), or a result it reported failed (a refused event,
    /// a ping without its pong).
    pub const API_ERROR: i32 = 1;
    /// Wrong arguments or missing settings (clap exits 2 for its own errors too).
    pub const USAGE: i32 = 2;
    /// The server could not be reached.
    pub const UNREACHABLE: i32 = 3;
    /// A file (events, payload, config) could not be read or is not what it should be.
    pub const BAD_INPUT: i32 = 4;
}

/// What went wrong, and so which exit code and message the user gets.
#[derive(Debug)]
pub enum CliError {
    Api(String),
    Usage(String),
    Unreachable(String),
    BadInput(String),
}

impl CliError {
    fn exit_code(&self) -> i32 {
        match self {
            CliError::Api(_) => exit::API_ERROR,
            CliError::Usage(_) => exit::USAGE,
            CliError::Unreachable(_) => exit::UNREACHABLE,
            CliError::BadInput(_) => exit::BAD_INPUT,
        }
    }

    fn message(&self) -> &str {
        match self {
            CliError::Api(m)
            | CliError::Usage(m)
            | CliError::Unreachable(m)
            | CliError::BadInput(m) => m,
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Hookline: webhook delivery. `hookline serve` runs it locally; the other commands talk to any
/// Hookline, local or on Lambda.
#[derive(Debug, Parser)]
#[command(name = "hookline", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Base URL of the Hookline to talk to [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, env = "HOOKLINE_URL", global = true)]
    pub url: Option<String>,
    /// API key: the admin key for platform commands, an account key for the others.
    #[arg(long, env = "HOOKLINE_KEY", global = true, hide_env_values = true)]
    pub key: Option<String>,
    /// Profile of the config file to take the URL and key from [default: its `default_profile`].
    #[arg(long, env = "HOOKLINE_PROFILE", global = true)]
    pub profile: Option<String>,
    /// Config file [default: $XDG_CONFIG_HOME/hookline/config.toml or ~/.config/hookline/config.toml].
    #[arg(long, env = "HOOKLINE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Hookline locally: API, delivery workers and retry sweep in one process.
    Serve(ServeArgs),
    /// Customer accounts (admin key).
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// API keys of an account (admin key).
    #[command(subcommand)]
    Keys(accounts::KeysCommand),
    /// The event-type catalog (list: any key; add: admin key).
    #[command(subcommand)]
    EventTypes(accounts::EventTypesCommand),
    /// Webhooks of the account (account key).
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Publish events (admin key).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Delivery logs of the account, filtered; `--follow` watches new deliveries (account key).
    Logs(logs::LogsArgs),
    /// Send one delivery again, or every failed one (account key).
    Retry(logs::RetryArgs),
    /// Send a time range of deliveries again, or a webhook the events it missed, as a job
    /// (account key).
    Replay(logs::ReplayArgs),
    /// Deliveries of the account by status (account key).
    Status,
    /// Receive deliveries while you develop: prints each one and checks its signature.
    Listen(receiver::ListenArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs the command and returns the process's exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => {
            return match crate::serve::run(args).await {
                Ok(()) => exit::OK,
                Err(error) => {
                    eprintln!("hookline: {error}");
                    exit::API_ERROR
                }
            };
        }
        Command::Listen(args) => receiver::run(args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "hookline",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        command => match Api::connect(&cli.global) {
            Ok(api) => dispatch(&api, command).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("hookline: {}", error.message());
            error.exit_code()
        }
    }
}

async fn dispatch(api: &Api, command: Command) -> CliResult {
    match command {
        Command::Accounts(command) => accounts::accounts(api, command).await,
        Command::Keys(command) => accounts::keys(api, command).await,
        Command::EventTypes(command) => accounts::event_types(api, command).await,
        Command::Webhooks(command) => webhooks::run(api, command).await,
        Command::Events(command) => events::run(api, command).await,
        Command::Logs(args) => logs::logs(api, args).await,
        Command::Retry(args) => logs::retry(api, args).await,
        Command::Replay(args) => logs::replay(api, args).await,
        Command::Status => logs::status(api).await,
        Command::Serve(_) | Command::Listen(_) | Command::Completions { .. } => {
            unreachable!("handled in run")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
