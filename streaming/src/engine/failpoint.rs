//! Crash points for tests: `EMBER_STREAM_CRASH_AT=<phase>:<batch id>` aborts the process
//! (`std::process::abort`, as abrupt as `kill -9`) at that phase of that batch's first attempt
//! (never on a replay, so the restart gets past it). The phases are the moments the recovery
//! rules of [`super`] cover.

/// The environment variable that arms a crash point.
pub const CRASH_AT: &str = "EMBER_STREAM_CRASH_AT";

/// Where in a micro-batch a crash point fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// After `offsets/<id>` (the plan) is written, before anything is read.
    Offsets,
    /// After the (first) output's data files are written, before they are committed (sink log
    /// entry or Delta commit).
    Files,
    /// After the first output's commit, before the next output's (streams with several
    /// outputs only).
    Output,
    /// After the outputs' commits (sink log entry or Delta commit), before the state.
    Commit,
    /// After `state/<id>.parquet`, before the commit mark `commits/<id>`.
    State,
    /// After the commit mark, before the source learns of it (the Kafka group's offsets, or
    /// the renames or deletes of a `files` source's files).
    Source,
}

impl Phase {
    /// The phase's name in [`CRASH_AT`].
    pub fn name(self) -> &'static str {
        match self {
            Phase::Offsets => "offsets",
            Phase::Files => "files",
            Phase::Output => "output",
            Phase::Commit => "commit",
            Phase::State => "state",
            Phase::Source => "source",
        }
    }
}

/// Aborts when [`CRASH_AT`] names `phase` of batch `id` and this is not a replay.
pub fn crash_point(phase: Phase, id: u64, replay: bool) {
    if replay {
        return;
    }
    let Ok(armed) = std::env::var(CRASH_AT) else {
        return;
    };
    if armed == format!("{}:{id}", phase.name()) {
        tracing::error!(batch_id = id, phase = phase.name(), "{CRASH_AT}: aborting");
        std::process::abort();
    }
}
