//! Embedded mode runs Ember's SQL functions through Ballista (client, scheduler, executor).

use ember_core::codec::Codecs;
use ember_core::session::SessionBuilder;

#[test]
fn udfs_run_through_ballista() -> datafusion::error::Result<()> {
    ember_core::threads::block_on(async {
        let ctx = SessionBuilder::new(Codecs::ember())
            .standalone()
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
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
