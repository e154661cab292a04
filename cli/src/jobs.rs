//! `ember jobs`, `ember status <id>`, `ember cancel <id>`: what the scheduler runs.

use std::path::PathBuf;

use clap::Args;
use ember_core::api::{JobDetail, JobState, JobSummary};
use ember_core::config::TokenArgs;

use ember_core::config::ConfigFile;
use ember_core::rest::Client;
use ember_core::security::{SecretUse, SecurityArgs, SecuritySettings};

use crate::error::Result;
use crate::format::{Format, duration, print_json, table};

/// Where the scheduler is, and how to print.
#[derive(Debug, Args)]
pub struct Common {
    /// The scheduler, HOST:PORT.
    #[arg(
        long,
        env = "EMBER_SCHEDULER",
        default_value = "localhost:50050",
        value_name = "HOST:PORT"
    )]
    pub scheduler: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub token: TokenArgs,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// TOML configuration file: its [security] and [tls] sections (a streaming job's driver
    /// also reads [storage]).
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub security: SecurityArgs,
}

impl Common {
    /// The security settings: the cluster secret when there is one, TLS.
    ///
    /// # Errors
    /// The configuration file's, a TLS file that cannot be read.
    pub fn security(&self) -> Result<SecuritySettings> {
        self.security_with(SecretUse::IfPresent)
    }

    /// [`Common::security`] with another use of the secret (`--check-config` reads nothing).
    ///
    /// # Errors
    /// As [`Common::security`].
    pub fn security_with(&self, secret: SecretUse) -> Result<SecuritySettings> {
        let file = ConfigFile::load_optional(self.config.as_deref())?;
        Ok(SecuritySettings::resolve(&self.security, &file, secret)?)
    }

    /// A REST client for the scheduler: the user's token, else the cluster token.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(
            "--scheduler / EMBER_SCHEDULER",
            &self.scheduler,
            self.token.token.as_deref(),
            &self.security()?,
        )?)
    }
}

/// Arguments of `ember jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    common: Common,
    /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
}

impl JobsArgs {
    /// Where the scheduler is.
    pub fn common(&self) -> &Common {
        &self.common
    }
}

/// Arguments of `ember status` and `ember cancel`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job id (from `ember submit` or `ember jobs`).
    id: String,
    #[command(flatten)]
    common: Common,
}

impl JobArgs {
    /// Where the scheduler is.
    pub fn common(&self) -> &Common {
        &self.common
    }
}

fn summary_rows(jobs: &[JobSummary]) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            vec![
                j.id.clone(),
                j.name.clone(),
                j.state.as_str().to_string(),
                j.submitted_at.clone(),
                duration(j.duration_ms),
                format!("{}/{}", j.stages_done, j.stages_total),
            ]
        })
        .collect()
}

/// `ember jobs`: the scheduler's jobs, newest first.
///
/// # Errors
/// The scheduler's answer or its absence, one line.
pub async fn list(args: JobsArgs) -> Result<()> {
    let client = args.common.client()?;
    let path = match &args.state {
        Some(state) => format!("/jobs?state={state}"),
        None => "/jobs".to_string(),
    };
    let jobs: Vec<JobSummary> = client.get(&path).await?;
    match args.common.format {
        Format::Json => print_json(&jobs),
        Format::Table => {
            println!(
                "{}",
                table(
                    &["ID", "NAME", "STATE", "SUBMITTED", "DURATION", "STAGES"],
                    summary_rows(&jobs)
                )
            );
            Ok(())
        }
    }
}

/// `ember status <id>`: the job, its steps, their stages and tasks, its error or counts.
///
/// # Errors
/// One line (an unknown id included).
pub async fn status(args: JobArgs) -> Result<()> {
    let client = args.common.client()?;
    let detail: JobDetail = client.get(&format!("/jobs/{}", args.id)).await?;
    match args.common.format {
        Format::Json => print_json(&detail),
        Format::Table => {
            let s = &detail.summary;
            println!("job {} ({}) {}", s.name, s.id, s.state.as_str());
            println!(
                "  submitted {}  duration {}  output {}",
                s.submitted_at,
                duration(s.duration_ms),
                detail.output
            );
            if let Some(error) = &s.error {
                println!("  error: {error}");
            }
            let mut rows = Vec::new();
            for step in &detail.steps {
                for stage in &step.stages {
                    rows.push(vec![
                        step.step.clone(),
                        step.ballista_job_id.clone(),
                        stage.stage_id.clone(),
                        stage.state.clone(),
                        stage.tasks.to_string(),
                        stage.tasks_done.to_string(),
                        stage.tasks_running.to_string(),
                        stage.tasks_failed.to_string(),
                        stage.output_rows.to_string(),
                    ]);
                }
            }
            if !rows.is_empty() {
                println!(
                    "{}",
                    table(
                        &[
                            "STEP",
                            "BALLISTA JOB",
                            "STAGE",
                            "STATE",
                            "TASKS",
                            "DONE",
                            "RUNNING",
                            "FAILED",
                            "ROWS OUT"
                        ],
                        rows
                    )
                );
            }
            if let Some(report) = &detail.report {
                println!("{report}");
            }
            Ok(())
        }
    }
}

/// `ember cancel <id>`.
///
/// # Errors
/// One line: unknown job, or it already ended.
pub async fn cancel(args: JobArgs) -> Result<()> {
    let client = args.common.client()?;
    let summary: JobSummary = client
        .post(&format!("/jobs/{}/cancel", args.id), &())
        .await?;
    match args.common.format {
        Format::Json => print_json(&summary),
        Format::Table => {
            let state = if summary.state == JobState::Cancelled {
                "cancelled"
            } else {
                summary.state.as_str()
            };
            println!("job {} ({}) {state}", summary.name, summary.id);
            Ok(())
        }
    }
}
