//! A Parquet input's listed files: read with their partition values, pruned by filters on
//! them, nothing read that was not listed, and the same after the codec.

use super::*;
use datafusion::arrow::array::Int64Array;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

/// Writes a Parquet file at `path` with one `Int64` column `n` holding `values`.
fn write(path: &std::path::Path, values: &[i64]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().ok_or(std::io::ErrorKind::NotFound)?)?;
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from(values.to_vec()))],
    )
    .map_err(std::io::Error::other)?;
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, schema, None)
        .map_err(std::io::Error::other)?;
    writer.write(&batch).map_err(std::io::Error::other)?;
    writer.close().map_err(std::io::Error::other)?;
    Ok(())
}

/// The folder's files as the object store lists them, with the values of `shop=` folders.
async fn listed(ctx: &SessionContext, folder: &std::path::Path) -> Result<Vec<ListedFile>> {
    let url = ListingTableUrl::parse(format!("{}/", folder.display()))?;
    let store = ctx.runtime_env().object_store(&url)?;
    let mut metas: Vec<ObjectMeta> = store.list(Some(url.prefix())).try_collect().await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas
        .iter()
        .map(|m| {
            let values = helpers::parse_partitions_for_path(&url, &m.location, ["shop"])
                .map(|v| v.into_iter().map(|v| v.into_owned()).collect::<Vec<_>>())
                .unwrap_or_default();
            let values = values
                .into_iter()
                .map(|v| (v != "__HIVE_DEFAULT_PARTITION__").then_some(v))
                .collect();
            ListedFile::new(m, values)
        })
        .collect())
}

/// The rows of `sql`, sorted, as text; and how many files its scan reads.
async fn rows_and_files(ctx: &SessionContext, sql: &str) -> Result<(String, usize)> {
    let df = ctx.sql(sql).await?;
    let plan = df.create_physical_plan().await?;
    let mut files = 0;
    plan.apply(|node| {
        if let Some(exec) = node.downcast_ref::<datafusion::datasource::source::DataSourceExec>()
            && let Some(config) =
                exec.data_source()
                    .downcast_ref::<datafusion::datasource::physical_plan::FileScanConfig>()
        {
            files += config.file_groups.iter().map(|g| g.len()).sum::<usize>();
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    let batches = collect(plan, ctx.task_ctx()).await?;
    Ok((pretty_format_batches(&batches)?.to_string(), files))
}

use datafusion::common::tree_node::TreeNode;

#[tokio::test]
async fn listed_files_are_read_with_their_partition_values_and_pruned_by_them()
-> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("sales");
    // `a%2Fb` is Spark's folder for the value `a/b`; a `%` in a file name is a plain `%`.
    write(&folder.join("shop=north/part-0.parquet"), &[1, 2])?;
    write(&folder.join("shop=a%2Fb/50%off.parquet"), &[3])?;
    write(
        &folder.join("shop=__HIVE_DEFAULT_PARTITION__/part-0.parquet"),
        &[4],
    )?;
    let ctx = SessionContext::new();
    let files = listed(&ctx, &folder).await?;
    assert_eq!(files.len(), 3);
    let store = ObjectStoreUrl::local_filesystem();
    let file_schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
    let table = ParquetFilesTable::try_new(&store, &file_schema, vec!["shop".into()], files)?;
    // A file that lands after the listing is not read.
    write(&folder.join("shop=north/part-1.parquet"), &[100])?;
    ctx.register_table("sales", Arc::new(table))?;

    let (all, read) = rows_and_files(&ctx, "SELECT n, shop FROM sales ORDER BY n").await?;
    assert_eq!(read, 3);
    let expected = [
        "+---+-------+",
        "| n | shop  |",
        "+---+-------+",
        "| 1 | north |",
        "| 2 | north |",
        "| 3 | a/b   |",
        "| 4 |       |",
        "+---+-------+",
    ];
    assert_eq!(all, expected.join("\n"));

    // Filters on the partition column keep only the files that can match.
    let (north, read) =
        rows_and_files(&ctx, "SELECT sum(n) AS s FROM sales WHERE shop = 'north'").await?;
    assert_eq!(read, 1);
    assert!(north.contains("| 3 |"), "{north}");
    let (nulls, read) = rows_and_files(&ctx, "SELECT n FROM sales WHERE shop IS NULL").await?;
    assert_eq!(read, 1);
    assert!(nulls.contains("| 4 |"), "{nulls}");
    let (none, read) = rows_and_files(&ctx, "SELECT n FROM sales WHERE shop = 'west'").await?;
    assert_eq!(read, 0);
    assert!(!none.contains("| 1"), "{none}");
    // A filter on a file column prunes no file.
    let (big, read) = rows_and_files(&ctx, "SELECT n FROM sales WHERE n > 2").await?;
    assert_eq!(read, 3);
    assert!(big.contains("| 3 |") && big.contains("| 4 |") && !big.contains("| 2 |"));
    Ok(())
}

#[tokio::test]
async fn the_table_after_the_codec_reads_the_same_files()
-> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("sales");
    write(&folder.join("shop=north/part-0.parquet"), &[1, 2])?;
    write(&folder.join("shop=south/part-0.parquet"), &[5])?;
    let ctx = SessionContext::new();
    let files = listed(&ctx, &folder).await?;
    let file_schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
    let store = ObjectStoreUrl::local_filesystem();
    let table = ParquetFilesTable::try_new(&store, &file_schema, vec!["shop".into()], files)?;
    let decoded = ParquetFilesTable::decode(&table.encode()?, table.schema())?;
    assert_eq!(decoded.files(), table.files());
    assert_eq!(decoded.schema(), table.schema());
    write(&folder.join("shop=south/part-1.parquet"), &[100])?;
    ctx.register_table("sales", Arc::new(decoded))?;
    let (sums, read) = rows_and_files(
        &ctx,
        "SELECT shop, sum(n) AS s FROM sales GROUP BY shop ORDER BY shop",
    )
    .await?;
    assert_eq!(read, 2);
    assert!(
        sums.contains("| north | 3 |") && sums.contains("| south | 5 |"),
        "{sums}"
    );
    Ok(())
}

#[test]
fn a_partition_column_that_is_a_file_column_or_a_missing_value_is_refused() {
    let store = ObjectStoreUrl::local_filesystem();
    let file_schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
    let clash = ParquetFilesTable::try_new(&store, &file_schema, vec!["n".into()], Vec::new());
    assert!(
        clash
            .err()
            .is_some_and(|e| e.to_string().contains("`n` is also a column of the files"))
    );
    let file = ListedFile {
        path: "sales/x.parquet".into(),
        size: 1,
        partition_values: Vec::new(),
    };
    let short = ParquetFilesTable::try_new(&store, &file_schema, vec!["shop".into()], vec![file]);
    assert!(short.err().is_some_and(|e| {
        e.to_string()
            .contains("sales/x.parquet has 0 partition values for 1 partition columns")
    }));
}

#[tokio::test]
async fn statistics_come_from_the_footers_and_a_null_partition_counts_as_null()
-> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("sales");
    write(&folder.join("shop=north/part-0.parquet"), &[1, 2, 3])?;
    write(
        &folder.join("shop=__HIVE_DEFAULT_PARTITION__/part-0.parquet"),
        &[4, 5],
    )?;
    let ctx = SessionContext::new();
    let files = listed(&ctx, &folder).await?;
    let file_schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
    let store = ObjectStoreUrl::local_filesystem();
    let table = ParquetFilesTable::try_new(&store, &file_schema, vec!["shop".into()], files)?;
    let state = ctx.state();
    let plan = table.scan(&state, None, &[], None).await?;
    let statistics = datafusion::physical_plan::statistics::StatisticsContext::new()
        .compute(plan.as_ref(), &Default::default())?;
    assert_eq!(
        statistics.num_rows,
        datafusion::common::stats::Precision::Exact(5)
    );
    assert_eq!(
        statistics.column_statistics[1].null_count,
        datafusion::common::stats::Precision::Exact(2)
    );
    ctx.register_table("sales", Arc::new(table))?;
    // Answered from the statistics or by reading: the same either way.
    let (counts, _) = rows_and_files(
        &ctx,
        "SELECT count(*) AS all_rows, count(shop) AS with_shop FROM sales",
    )
    .await?;
    assert!(counts.contains("| 5        | 3         |"), "{counts}");
    Ok(())
}
