//! Embedded mode runs Ember's SQL functions through Ballista (client, scheduler, executor).

use ember_scheduler::embedded::{self, EmbeddedOptions};

#[test]
fn udfs_run_through_ballista() -> datafusion::error::Result<()> {
    ember_core::threads::block_on(async {
        let ctx = embedded::context(&EmbeddedOptions::default()).await?;
        let batches = ctx
            .sql("SELECT try_to_timestamp(s, '%d.%m.%Y') IS NULL AS bad FROM (VALUES ('01.12.2010'), ('x')) v(s) ORDER BY bad")
            .await?
            .collect()
            .await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        assert!(text.contains("false") && text.contains("true"), "{text}");
        Ok(())
    })
}
