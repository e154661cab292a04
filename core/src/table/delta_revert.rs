//! Undoing one commit of a Delta table with a new commit: the files it added are removed and
//! the files it removed are added back, as Delta's `RESTORE` would for that commit alone, but
//! keeping every commit made since on other partitions.
//!
//! Ember commits a Delta run's quarantine table before its output table (`ember_batch`'s
//! `delta` module). When the output's commit then fails (its log cannot be written, a
//! concurrent run took the same days), the quarantine's commit is reverted, so that a failed
//! run leaves both tables as they were (by content: the quarantine gains two versions).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::delta::{commit_error, open, partition_values, partitions_predicate};
use crate::error::{Error, Result};

/// Undoes the commit that made `version` of the table at `location` (partitioned by
/// `partition_by`, columns `schema`) with one new commit, which carries `info` and
/// `ember.reverts_version` in its `commitInfo`. A removed file stays on storage until a vacuum,
/// so it can be added back. Returns the new version.
///
/// # Errors
/// [`Error::TableConflict`] when a commit made since touched the same partitions (it replaced
/// or removed what this would restore: that later commit stands); [`Error::Storage`] when the
/// log cannot be read or written.
pub async fn revert(
    runtime: &RuntimeEnv,
    location: &str,
    version: u64,
    schema: &SchemaRef,
    partition_by: &[String],
    mut info: BTreeMap<String, Value>,
) -> Result<u64> {
    let mut table = open(runtime, location)?;
    table
        .load_version(version)
        .await
        .map_err(|e| Error::storage(location, e))?;
    let log_store = table.log_store();
    let entry = log_store
        .read_commit_entry(version)
        .await
        .map_err(|e| Error::storage(location, e))?
        .ok_or_else(|| Error::storage(location, format!("version {version} has no log entry")))?;
    let actions = deltalake::logstore::get_actions(version, &entry)
        .map_err(|e| Error::storage(location, e))?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut partitions = BTreeSet::new();
    let mut reversed = Vec::new();
    for action in actions {
        match action {
            Action::Add(add) => {
                partitions.insert(partition_values(&add, partition_by));
                reversed.push(Action::Remove(Remove {
                    path: add.path,
                    data_change: true,
                    deletion_timestamp: Some(now),
                    extended_file_metadata: Some(true),
                    partition_values: Some(add.partition_values),
                    size: Some(add.size),
                    tags: add.tags,
                    deletion_vector: add.deletion_vector,
                    base_row_id: add.base_row_id,
                    default_row_commit_version: add.default_row_commit_version,
                }));
            }
            Action::Remove(remove) => {
                let size = match remove.size {
                    Some(size) => size,
                    // A remove without its file's metadata: the file itself says.
                    None => {
                        let path = object_store::path::Path::parse(&remove.path)
                            .map_err(|e| Error::storage(location, e))?;
                        let meta = log_store
                            .object_store(None)
                            .head(&path)
                            .await
                            .map_err(|e| Error::storage(location, e))?;
                        i64::try_from(meta.size).unwrap_or(i64::MAX)
                    }
                };
                let add = Add {
                    path: remove.path,
                    partition_values: remove.partition_values.unwrap_or_default(),
                    size,
                    modification_time: now,
                    data_change: true,
                    stats: None,
                    tags: remove.tags,
                    deletion_vector: remove.deletion_vector,
                    base_row_id: remove.base_row_id,
                    default_row_commit_version: remove.default_row_commit_version,
                    clustering_provider: None,
                };
                partitions.insert(partition_values(&add, partition_by));
                reversed.push(Action::Add(add));
            }
            _ => {}
        }
    }
    let state = table.snapshot().map_err(|e| Error::storage(location, e))?;
    // As a partition overwrite of the same partitions: delta-rs then refuses it when a commit
    // since `version` touched them.
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: (!partition_by.is_empty()).then(|| partition_by.to_vec()),
        predicate: Some(partitions_predicate(schema, partition_by, &partitions)),
    };
    info.insert("ember.reverts_version".into(), Value::from(version));
    let finalized = CommitBuilder::from(CommitProperties::default().with_metadata(info))
        .with_actions(reversed)
        .build(Some(state), log_store, operation)
        .await
        .map_err(|e| commit_error(location, e))?;
    Ok(finalized.version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::delta::{self, Commit, WriteMode};
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("day", DataType::Utf8, true),
        ]))
    }

    /// Writes one file per (day, n) and commits them as a partition overwrite on top of
    /// `read_version`; returns (version, the files' paths).
    async fn write(
        runtime: &RuntimeEnv,
        location: &str,
        rows: &[(&str, i64)],
        read_version: Option<u64>,
    ) -> Result<(u64, Vec<String>)> {
        let mut adds = Vec::new();
        for (day, n) in rows {
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(vec![*n])),
                    Arc::new(StringArray::from(vec![*day])),
                ],
            )
            .expect("a batch");
            adds.extend(delta::write_batches(runtime, location, &["day".into()], &[batch]).await?);
        }
        let paths = adds.iter().map(|a| a.path.clone()).collect();
        let committed = delta::commit(
            runtime,
            location,
            Commit {
                schema: schema(),
                partition_by: vec!["day".into()],
                adds,
                mode: WriteMode::ReplacePartitions,
                info: BTreeMap::new(),
                read_version,
                loaded: None,
            },
        )
        .await?;
        Ok((committed.version, paths))
    }

    /// The paths of the files the latest version references.
    async fn files(runtime: &RuntimeEnv, location: &str) -> BTreeSet<String> {
        let table = delta::load(runtime, location, None).await.expect("load");
        let state = table.snapshot().expect("a snapshot");
        state
            .log_data()
            .iter()
            .map(|f| f.remove_action(false).path)
            .collect()
    }

    #[tokio::test]
    async fn a_reverted_commit_gives_its_partitions_back_and_keeps_later_commits_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().display().to_string();
        let runtime = RuntimeEnv::default();
        let (v1, first) = write(&runtime, &location, &[("a", 1), ("b", 2)], None)
            .await
            .expect("first");
        // Replaces day a, creates day c: the commit to revert.
        let (v2, second) = write(&runtime, &location, &[("a", 10), ("c", 30)], Some(v1))
            .await
            .expect("second");
        // A later commit on day b only.
        let (v3, third) = write(&runtime, &location, &[("b", 20)], Some(v2))
            .await
            .expect("third");

        let v4 = revert(
            &runtime,
            &location,
            v2,
            &schema(),
            &["day".into()],
            BTreeMap::new(),
        )
        .await
        .expect("revert");
        assert_eq!(v4, v3 + 1);
        let want: BTreeSet<String> = [first[0].clone(), third[0].clone()].into();
        assert_eq!(files(&runtime, &location).await, want);
        assert!(!files(&runtime, &location).await.contains(&second[1]));

        // Reverting the day-b commit after another commit replaced day b again conflicts: the
        // later commit stands.
        let (_, fifth) = write(&runtime, &location, &[("b", 200)], Some(v4))
            .await
            .expect("fifth");
        let conflict = revert(
            &runtime,
            &location,
            v3,
            &schema(),
            &["day".into()],
            BTreeMap::new(),
        )
        .await
        .expect_err("a conflict");
        assert!(
            matches!(conflict, Error::TableConflict { .. }),
            "{conflict}"
        );
        let want: BTreeSet<String> = [first[0].clone(), fifth[0].clone()].into();
        assert_eq!(files(&runtime, &location).await, want);
    }
}
