//! `ember serve`: the Arrow Flight SQL endpoint in embedded mode (an in-process scheduler and
//! executor), for a laptop. It serves the outputs of the jobs under `--jobs` that exist (each
//! job's default output, named after the job), plus `--table NAME=PATH` and the configuration's
//! `[[flight_sql.tables]]`. Its HTTP port serves the web UI (Streaming and Revenue pages),
//! the streams' progress and dashboard REST calls, and `/metrics`.

use std::path::{Path, PathBuf};

use bytesize::ByteSize;
use clap::Args;
use ember_core::codec::Codecs;
use ember_core::config::{ConfigFile, StorageArgs, StorageSettings, TableFile};
use ember_core::manifest::JobManifest;
use ember_core::runtime::RuntimeOptions;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};
use ember_core::session::SessionBuilder;
use ember_serving::config::{FlightSqlArgs, FlightSqlSettings};
use ember_serving::flight_sql;

use crate::error::Result;

/// Arguments of `ember serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve the outputs of the jobs in this folder (each job's default output, if it exists).
    #[arg(long, default_value = "jobs", value_name = "DIR")]
    pub jobs: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "EMBER_SERVE_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Port of the web UI, the REST API (streams, dashboard) and `/metrics` (0: a free one);
    /// Spark's UI port.
    #[arg(long, env = "EMBER_SERVE_HTTP_PORT", default_value_t = 4040)]
    pub http_port: u16,
    /// Task slots of the embedded executor [default: CPU cores].
    #[arg(
        long,
        env = "EMBER_EXECUTOR_TASK_SLOTS",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub parallelism: usize,
    /// Memory for Parquet footers kept across queries (one cache per process), e.g. 16MiB;
    /// 0 = none [default: 50MiB, DataFusion's].
    #[arg(long, env = "EMBER_EXECUTOR_METADATA_CACHE_LIMIT", value_name = "SIZE")]
    pub metadata_cache_limit: Option<ByteSize>,
    /// TOML configuration file: its [storage] and [flight_sql] sections.
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flight_sql: FlightSqlArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub security: SecurityArgs,
}

/// The outputs of each job folder under `dir`, as tables named after the job (a stream with
/// several outputs: `<job>_<output>` each). A job whose manifest does not load is left out
/// with one line saying why.
fn job_outputs(dir: &Path) -> Vec<TableFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    folders.sort();
    folders
        .into_iter()
        .filter(|p| p.join("job.toml").is_file())
        .filter_map(|p| {
            let resolved = if crate::stream::is_stream(&p) {
                ember_streaming::manifest::load(&p, &[])
                    .map(|job| match job.outputs.as_slice() {
                        [one] => vec![(job.name.clone(), one.path.clone())],
                        many => many
                            .iter()
                            .map(|o| (format!("{}_{}", job.name, o.name), o.path.clone()))
                            .collect(),
                    })
                    .map_err(|e| e.to_string())
            } else {
                JobManifest::load(&p)
                    .and_then(|m| m.resolve(m.params()))
                    .map(|job| vec![(job.name, job.output.path)])
                    .map_err(|e| e.to_string())
            };
            match resolved {
                Ok(tables) => Some(tables.into_iter().map(|(name, path)| TableFile {
                    name,
                    path,
                    format: "parquet".into(),
                })),
                Err(e) => {
                    eprintln!("not serving the job in {}: {e}", p.display());
                    None
                }
            }
        })
        .flatten()
        .collect()
}

/// The security settings: the cluster secret (created when missing: stream drivers report
/// with it), TLS, the allowed paths.
///
/// # Errors
/// The configuration file's, a TLS file that cannot be read.
pub fn security(args: &ServeArgs) -> Result<SecuritySettings> {
    let file = ConfigFile::load_optional(args.config.as_deref())?;
    Ok(SecuritySettings::resolve(
        &args.security,
        &file,
        SecretUse::Create,
    )?)
}

/// The Flight SQL settings: flags and variables over the configuration file's `[flight_sql]`.
///
/// # Errors
/// The configuration file's or a setting's, in one line.
pub fn flight_sql_settings(args: &ServeArgs) -> Result<FlightSqlSettings> {
    let file = ConfigFile::load_optional(args.config.as_deref())?;
    Ok(FlightSqlSettings::resolve(
        &args.flight_sql,
        &file.flight_sql,
    )?)
}

/// Runs the endpoint until Ctrl-C or SIGTERM.
///
/// # Errors
/// The configuration, the port, TLS files, the embedded scheduler, in one line.
pub async fn run(args: ServeArgs, storage: StorageSettings, codecs: Codecs) -> Result<()> {
    let mut settings = flight_sql_settings(&args)?;
    let security = security(&args)?;
    let mut tables = job_outputs(&args.jobs);
    tables.append(&mut settings.tables);
    let (catalog, schema) = flight_sql::CATALOG;
    let ctx = SessionBuilder::new(codecs)
        .with_parallelism(args.parallelism)
        .with_runtime(RuntimeOptions {
            storage,
            metadata_cache_limit: args.metadata_cache_limit.map(|b| b.as_u64()),
            ..Default::default()
        })
        .with_default_catalog(catalog, schema)
        .standalone()
        .await?;
    // One signal handler: it stops the endpoint, then this command.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = flight_sql::serve(&settings, &security, &args.bind_host, ctx, async move {
        let _ = stopped.await;
    })
    .await?;
    for table in &tables {
        if !table.path.contains("://") && !Path::new(&table.path).exists() {
            eprintln!(
                "not serving {}: no output at {} yet (run the job first)",
                table.name, table.path
            );
            continue;
        }
        match endpoint
            .register(&table.name, &table.path, &table.format)
            .await
        {
            Ok(t) => eprintln!(
                "serving table {} from {}{}",
                t.name,
                t.location,
                t.read_through.describe()
            ),
            Err(e) => eprintln!("not serving {} ({}): {e}", table.name, table.path),
        }
    }
    for (view, why) in endpoint.create_views().await {
        eprintln!("not serving view {view}: {why}");
    }
    let bind = |e| ember_core::Error::bind("web UI", &args.bind_host, args.http_port, e);
    let listener = tokio::net::TcpListener::bind((args.bind_host.as_str(), args.http_port))
        .await
        .map_err(bind)?;
    let http = listener.local_addr().map_err(bind)?;
    let web = std::sync::Arc::new(ember_serving::web::Web {
        cluster: None,
        streams: std::sync::Arc::default(),
        flight_sql: endpoint.clone(),
        mode: "serve",
        answers: ember_serving::web::answers::Answers::default(),
    });
    let (web_stop, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = ember_serving::web::routes(web);
    let tls = security.tls.clone();
    let server = tokio::spawn(async move {
        ember_core::serve::http("web UI", listener, router, tls.as_ref(), async move {
            let _ = web_stopped.await;
        })
        .await
    });
    println!(
        "ember flight sql listening on {}{}",
        endpoint.address,
        if endpoint.tls { " (tls)" } else { "" }
    );
    println!(
        "ember web ui on {}://{http}/ui/dashboard",
        security.http_scheme()
    );
    ember_core::signal::shutdown().await;
    let _ = stop.send(());
    let _ = web_stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    Ok(())
}
