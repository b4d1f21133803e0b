//! The `wxgate` binary: command line, logging, signals. Everything else is
//! in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use wxgate::config::{Config, LogFormat};
use wxgate::{Gateway, Listeners};

mod keygen;

/// mimalloc: fewer instructions per allocation than glibc's malloc on the
/// request path, and freed memory goes back to the OS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wxgate",
    version,
    about = "Authentication gateway for WeChat mini-programs"
)]
struct Cli {
    /// The config file [default: $WXGATE_CONFIG, then ./gateway.toml]
    #[arg(
        long,
        global = true,
        env = "WXGATE_CONFIG",
        default_value = "gateway.toml",
        hide_default_value = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config and print the route table; exit 0 if valid, 2 if not.
    Check,
    /// Print a token signed with the configured key (for testing upstreams).
    Token {
        #[arg(long)]
        openid: String,
        /// Default: the first [[apps]] entry.
        #[arg(long)]
        appid: Option<String>,
        #[arg(long)]
        unionid: Option<String>,
        /// Default: token.ttl.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Write a new ES256 or EdDSA private key (PKCS#8 PEM, mode 0600) and its
    /// public key, and print the [[token.keys]] entry for it. Reads no config.
    Keygen {
        /// "es256" or "eddsa".
        #[arg(long, value_parser = keygen::parse_algorithm)]
        algorithm: wxgate::config::Algorithm,
        /// The private key file; the public key goes beside it as NAME.pub.pem.
        #[arg(long)]
        out: PathBuf,
        /// The key id in the printed entry [default: the file name without .pem].
        #[arg(long)]
        id: Option<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keygen {
        algorithm,
        out,
        id,
        force,
    }) = cli.command
    {
        return keygen::run(algorithm, &out, id, force);
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wxgate: config error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config),
        Command::Check => {
            print!("{}", route_table(&config));
            ExitCode::SUCCESS
        }
        Command::Token {
            openid,
            appid,
            unionid,
            ttl,
        } => token(&config, &openid, appid, unionid, ttl),
        Command::Keygen { .. } => unreachable!("handled before loading the config"),
    }
}

fn run(config: Config) -> ExitCode {
    init_logging(&config);
    // One core (a sidecar's CPU limit, say): a single-threaded runtime skips
    // the work-stealing scheduler's cross-thread wake-ups and atomics.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxgate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        if config.dev.simulate_wechat {
            tracing::warn!("[dev] simulate_wechat is on: WeChat is SIMULATED, code \"dev-<openid>\" logs in as <openid>. Never use this in production.");
        }
        let listeners = match Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("wxgate: {e}");
                return ExitCode::from(1);
            }
        };
        let routes = config.routes.len();
        let gw = match Gateway::new(config) {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("wxgate: {e}");
                return ExitCode::from(1);
            }
        };
        // The bound addresses, not the configured ones: port 0 picks one.
        let bound = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if let Some(echo) = &listeners.echo {
            tracing::warn!(echo = %bound(echo), "[dev] echo upstream running");
        }
        // Handlers first: a signal sent as soon as "wxgate started" is read
        // must find them installed, not the default action (exit).
        let shutdown = shutdown_signal();
        let reloads = reload_on_sighup(gw.clone());
        tracing::info!(
            listen = %bound(&listeners.main),
            admin = %listeners.admin.as_ref().map(bound).unwrap_or_else(|| "off".into()),
            routes,
            version = env!("CARGO_PKG_VERSION"),
            "wxgate started"
        );
        tokio::spawn(reloads);
        wxgate::run(gw, listeners, shutdown).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Installs the handlers at once; the future resolves on SIGTERM or SIGINT.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Installs the SIGHUP handler at once; the future reloads on each one.
fn reload_on_sighup(gw: Gateway) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    async move {
        while hup.recv().await.is_some() {
            match wxgate::ops::reload::from_file(&gw) {
                Ok(()) => tracing::info!("config reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "config reload failed; the running config stays in force")
                }
            }
        }
    }
}

fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

fn token(
    config: &Config,
    openid: &str,
    appid: Option<String>,
    unionid: Option<String>,
    ttl: Option<Duration>,
) -> ExitCode {
    let appid = appid.unwrap_or_else(|| config.apps[0].appid.clone());
    if !config.appids().any(|a| a == appid) {
        eprintln!("wxgate: appid {appid} is not in [[apps]]");
        return ExitCode::from(2);
    }
    if wxgate::auth::token::id_header_ok(openid).is_none()
        || unionid
            .as_deref()
            .is_some_and(|u| wxgate::auth::token::id_header_ok(u).is_none())
    {
        eprintln!("wxgate: ids must be 1 to 128 visible ASCII characters");
        return ExitCode::from(2);
    }
    let keys = wxgate::auth::token::Keys::new(&config.token, config.appids());
    match keys.mint(
        openid,
        &appid,
        unionid.as_deref(),
        ttl.unwrap_or(config.token.ttl),
        wxgate::auth::token::now(),
    ) {
        Ok((token, _)) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxgate: cannot sign: {e}");
            ExitCode::from(1)
        }
    }
}

fn route_table(config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "config {} is valid", config.source.display());
    let _ = writeln!(
        out,
        "listen {}{}{}",
        config.server.listen,
        if config.server.tls.is_some() {
            " (https)"
        } else {
            ""
        },
        config
            .admin
            .as_ref()
            .map(|a| format!(", admin {}", a.listen))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "apps {}",
        config.appids().collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        out,
        "endpoints POST {}, GET {}, POST {}, GET {}, forward-auth {}",
        config.auth.login_path,
        config.auth.session_path,
        config.auth.logout_path,
        config.auth.jwks_path,
        config.auth.verify_path
    );
    let signer = config.token.keys.iter().position(|k| !k.verify_only);
    for (i, key) in config.token.keys.iter().enumerate() {
        let role = if Some(i) == signer {
            "signs"
        } else {
            "verifies"
        };
        let only = if key.verify_only {
            " (verify_only)"
        } else {
            ""
        };
        let _ = writeln!(out, "key {} {} {role}{only}", key.id, key.algorithm.name());
    }
    let _ = writeln!(
        out,
        "{:<24} {:<20} {:<9} {:<16} {:<32} {:<6} TIMEOUT",
        "ROUTE", "HOST", "AUTH", "METHODS", "UPSTREAM", "STRIP"
    );
    for r in &config.routes {
        let methods = r.methods.as_ref().map_or_else(
            || "*".to_owned(),
            |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        );
        let _ = writeln!(
            out,
            "{:<24} {:<20} {:<9} {:<16} {:<32} {:<6} {}",
            r.path,
            r.host.as_deref().unwrap_or("*"),
            r.auth.to_string(),
            methods,
            r.upstream.to_string(),
            if r.strip_prefix { "yes" } else { "no" },
            humantime::format_duration(r.timeout)
        );
    }
    out
}
