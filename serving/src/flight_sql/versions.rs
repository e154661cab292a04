//! Time travel on Delta tables: `"daily_revenue_by_product@v12"` (a quoted name, as SQL needs
//! for the `@`) is table `daily_revenue_by_product` as its version 12 committed it (Delta's
//! `VERSION AS OF 12`, Databricks' `table@v12`). The endpoint's schema `ember.public` is wrapped
//! in [`VersionedSchema`], which resolves such names on demand; every other name is the
//! wrapped schema's.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use ember_core::table::delta_scan::DeltaLogTable;

/// The table and version of `name@vN`, if `name` has that shape.
pub fn versioned(name: &str) -> Option<(&str, u64)> {
    let (table, version) = name.rsplit_once("@v")?;
    let version: u64 = version.parse().ok()?;
    (!table.is_empty()).then_some((table, version))
}

/// A schema whose Delta tables can also be read at a past version (`name@vN`).
#[derive(Debug)]
pub struct VersionedSchema {
    inner: Arc<dyn SchemaProvider>,
    runtime: Arc<RuntimeEnv>,
}

impl VersionedSchema {
    /// `inner`, whose Delta tables `runtime`'s object stores read.
    pub fn new(inner: Arc<dyn SchemaProvider>, runtime: Arc<RuntimeEnv>) -> Self {
        Self { inner, runtime }
    }
}

#[async_trait]
impl SchemaProvider for VersionedSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.inner.table(name).await? {
            return Ok(Some(table));
        }
        let Some((base, version)) = versioned(name) else {
            return Ok(None);
        };
        let Some(table) = self.inner.table(base).await? else {
            return Ok(None);
        };
        let Some(delta) = table.downcast_ref::<DeltaLogTable>() else {
            return Err(DataFusionError::Plan(format!(
                "table {base} is not a Delta table: only Delta tables have versions ({name})"
            )));
        };
        Ok(Some(Arc::new(
            delta.at_version(&self.runtime, version).await?,
        )))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            || versioned(name).is_some_and(|(base, _)| self.inner.table_exist(base))
    }
}

/// Wraps the default schema of `ctx` in a [`VersionedSchema`] (once).
///
/// # Errors
/// When the session has no default catalog or schema.
pub fn install(ctx: &datafusion::prelude::SessionContext) -> Result<()> {
    let state = ctx.state();
    let options = &state.config().options().catalog;
    let (catalog_name, schema_name) = (
        options.default_catalog.clone(),
        options.default_schema.clone(),
    );
    let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "no catalog {catalog_name} in the Flight SQL session"
        ))
    })?;
    let schema = catalog
        .schema(&schema_name)
        .ok_or_else(|| DataFusionError::Plan(format!("no schema {catalog_name}.{schema_name}")))?;
    if schema.downcast_ref::<VersionedSchema>().is_some() {
        return Ok(());
    }
    catalog.register_schema(
        &schema_name,
        Arc::new(VersionedSchema::new(schema, ctx.runtime_env())),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::versioned;

    #[test]
    fn versioned_names() {
        assert_eq!(versioned("daily@v12"), Some(("daily", 12)));
        assert_eq!(versioned("a@b@v0"), Some(("a@b", 0)));
        assert_eq!(versioned("daily"), None);
        assert_eq!(versioned("daily@vx"), None);
        assert_eq!(versioned("@v3"), None);
    }
}
