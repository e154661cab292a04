//! Ember's Arrow Flight SQL service: statements and prepared statements run through the
//! endpoint's session (on the executors when it is a scheduler's), results stream back batch by
//! batch; the metadata calls BI tools issue first answer from the session's catalog.
//!
//! Statement handles are the SQL text itself (stateless). Prepared statements are kept here by
//! handle with their bound parameters (`$1`, `$2`, … in the SQL; a bound batch's first row).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use ember_core::security::{PathPolicy, Role};

use super::auth::{Auth, Identity};

/// The caller of a Flight call ([`super::auth::AuthLayer`] puts it in the extensions).
fn identity<T>(request: &Request<T>) -> Identity {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(Identity::anonymous)
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// What `GetSqlInfo` answers.
static SQL_INFO: LazyLock<Result<SqlInfoData, String>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Ember");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlIdentifierCase, 3i32); // case sensitive (unquoted names keep their case)
    b.append(SqlInfo::SqlQuotedIdentifierCase, 3i32);
    b.build().map_err(|e| e.to_string())
});

/// A prepared statement: its SQL, its parameters' schema, and the parameters bound last.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    parameters: SchemaRef,
    params: Option<ParamValues>,
}

/// The Flight SQL service over a session.
pub struct EmberFlightSql {
    ctx: SessionContext,
    auth: Arc<Auth>,
    allow_writes: bool,
    paths: PathPolicy,
    prepared: Mutex<HashMap<String, Prepared>>,
}

impl std::fmt::Debug for EmberFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmberFlightSql")
            .field("allow_writes", &self.allow_writes)
            .finish_non_exhaustive()
    }
}

/// The gRPC status of a DataFusion error: the SQL's fault (syntax, unknown column, type) is
/// `INVALID_ARGUMENT`, an unknown table `NOT_FOUND`, a refused write `PERMISSION_DENIED`, the
/// rest `INTERNAL`. The message is DataFusion's, on one line.
pub fn status(e: &DataFusionError) -> Status {
    let message = e.to_string().replace('\n', " ");
    match e.find_root() {
        DataFusionError::Plan(m) if m.contains("not found") && m.contains("table") => {
            Status::not_found(message)
        }
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(message),
        _ => Status::internal(message),
    }
}

fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor))
}

/// The `FlightInfo` of a metadata command: its result schema, and the command as the ticket.
fn metadata_info<M: ProstMessageExt>(
    query: &M,
    schema: &Schema,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    Ok(Response::new(flight_info(
        schema,
        query.as_any().encode_to_vec(),
        request.into_inner(),
    )?))
}

fn one_batch(schema: SchemaRef, batch: arrow_flight::error::Result<RecordBatch>) -> DoGetStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from),
    )
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// The parameter schema of `plan`: `$1`, `$2`, … in order, Utf8 where the type is unknown.
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Status> {
    let types = plan.get_parameter_types().map_err(|e| status(&e))?;
    let mut names: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, t)| {
            let n = name.trim_start_matches('$').parse().unwrap_or(usize::MAX);
            (n, name, t.unwrap_or(DataType::Utf8))
        })
        .collect();
    names.sort();
    Ok(Schema::new(
        names
            .into_iter()
            .map(|(_, name, t)| Field::new(name, t, true))
            .collect::<Vec<_>>(),
    ))
}

impl EmberFlightSql {
    /// A service over `ctx`'s catalog; `allow_writes` lets DDL and DML through (to admins);
    /// every statement is checked against `paths` (`ember_core::security::plan::check_logical`:
    /// no `COPY`, no `INSERT` into files, no table over a file outside the allowed paths).
    pub fn new(
        ctx: SessionContext,
        auth: Arc<Auth>,
        allow_writes: bool,
        paths: PathPolicy,
    ) -> Self {
        Self {
            ctx,
            auth,
            allow_writes,
            paths,
            prepared: Mutex::new(HashMap::new()),
        }
    }

    fn prepared(&self) -> std::sync::MutexGuard<'_, HashMap<String, Prepared>> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans `sql` for `who`, refusing writes unless allowed, and to anyone but an admin.
    async fn plan(
        &self,
        sql: &str,
        params: Option<&ParamValues>,
        who: &Identity,
    ) -> Result<LogicalPlan, Status> {
        let plan = self
            .ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|e| status(&e))?;
        let options = SQLOptions::new()
            .with_allow_ddl(self.allow_writes)
            .with_allow_dml(self.allow_writes)
            .with_allow_statements(self.allow_writes);
        if let Err(e) = options.verify_plan(&plan) {
            return Err(Status::permission_denied(format!(
                "{} (Ember's Flight SQL endpoint is read-only; the scheduler's --flight-sql-allow-writes allows it)",
                e.to_string().replace('\n', " ")
            )));
        }
        let writes = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .is_err();
        if writes && !who.may(Role::Admin) {
            return Err(who.denied("run DDL, DML or COPY", Role::Admin));
        }
        ember_core::security::plan::check_logical(&plan, &self.paths)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        match params {
            Some(p) => plan.with_param_values(p.clone()).map_err(|e| status(&e)),
            None => Ok(plan),
        }
    }

    async fn run(&self, plan: LogicalPlan) -> Result<Response<DoGetStream>, Status> {
        let df = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| status(&e))?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.execute_stream().await.map_err(|e| status(&e))?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches.map_err(|e| FlightError::ExternalError(Box::new(e))))
            .map_err(|e| match e {
                FlightError::ExternalError(inner) => match inner.downcast::<DataFusionError>() {
                    Ok(df) => status(&df),
                    Err(other) => Status::internal(other.to_string()),
                },
                other => Status::from(other),
            });
        Ok(Response::new(Box::pin(stream)))
    }

    fn lookup(&self, handle: &[u8]) -> Result<Prepared, Status> {
        let key = String::from_utf8_lossy(handle).to_string();
        self.prepared()
            .get(&key)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no prepared statement {key} (closed?)")))
    }

    /// Every table and view: catalog, schema, name and provider, sorted by name.
    async fn tables(
        &self,
    ) -> Result<Vec<(String, String, String, Arc<dyn TableProvider>)>, Status> {
        let mut out = Vec::new();
        for catalog_name in self.ctx.catalog_names() {
            let Some(catalog) = self.ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table in schema.table_names() {
                    if let Some(provider) = schema.table(&table).await.map_err(|e| status(&e))? {
                        out.push((catalog_name.clone(), schema_name.clone(), table, provider));
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        Ok(out)
    }
}

#[tonic::async_trait]
impl FlightSqlService for EmberFlightSql {
    type FlightService = Self;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = if self.auth.enabled() {
            self.auth.handshake(header)?
        } else {
            String::new()
        };
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|e| Status::internal(e.to_string()))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let plan = self.plan(&query.query, None, &identity(&request)).await?;
        let schema = plan.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        Ok(Response::new(flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the statement handle is not UTF-8 SQL"))?;
        let plan = self.plan(&sql, None, &identity(&request)).await?;
        self.run(plan).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let plan = self.plan(&query.query, None, &identity(&request)).await?;
        let dataset = plan.schema().as_arrow().clone();
        let parameters = Arc::new(parameter_schema(&plan)?);
        let handle = uuid::Uuid::new_v4().to_string();
        self.prepared().insert(
            handle.clone(),
            Prepared {
                sql: query.query,
                parameters: Arc::clone(&parameters),
                params: None,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let expected = self.lookup(&query.prepared_statement_handle)?.parameters;
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request.into_inner().map_err(FlightError::from),
            )
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Err(Status::invalid_argument("no parameter values were sent"));
        };
        if batches.iter().map(RecordBatch::num_rows).sum::<usize>() > 1 {
            return Err(Status::invalid_argument(
                "one row of parameters at a time: Ember runs a prepared query once per execution",
            ));
        }
        if batch.num_columns() != expected.fields().len() {
            return Err(Status::invalid_argument(format!(
                "the statement takes {} parameters, {} were sent",
                expected.fields().len(),
                batch.num_columns()
            )));
        }
        let values = batch
            .columns()
            .iter()
            .zip(expected.fields())
            .map(|(column, field)| {
                let value = ScalarValue::try_from_array(column, 0)?;
                if value.data_type() == *field.data_type() || value.is_null() {
                    Ok(value)
                } else {
                    value.cast_to(field.data_type())
                }
            })
            .collect::<Result<Vec<_>, DataFusionError>>()
            .map_err(|e| Status::invalid_argument(format!("parameter: {e}")))?;
        let key = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        if let Some(p) = self.prepared().get_mut(&key) {
            p.params = Some(ParamValues::List(
                values.into_iter().map(Into::into).collect(),
            ));
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.lookup(&cmd.prepared_statement_handle)?;
        let plan = self
            .plan(&prepared.sql, prepared.params.as_ref(), &identity(&request))
            .await?;
        let schema = plan.schema().as_arrow().clone();
        Ok(Response::new(flight_info(
            &schema,
            cmd.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let prepared = self.lookup(&cmd.prepared_statement_handle)?;
        let plan = self
            .plan(&prepared.sql, prepared.params.as_ref(), &identity(&request))
            .await?;
        self.run(plan).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let key = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        self.prepared().remove(&key);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let data = SQL_INFO.as_ref().map_err(|e| Status::internal(e.clone()))?;
        let schema = query.clone().into_builder(data).schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let data = SQL_INFO.as_ref().map_err(|e| Status::internal(e.clone()))?;
        let builder = query.into_builder(data);
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        let mut names = self.ctx.catalog_names();
        names.sort();
        for name in names {
            builder.append(name);
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        let mut names = self.ctx.catalog_names();
        names.sort();
        for catalog_name in names {
            if let Some(catalog) = self.ctx.catalog(&catalog_name) {
                let mut schemas = catalog.schema_names();
                schemas.sort();
                for schema in schemas {
                    builder.append(&catalog_name, schema);
                }
            }
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for (catalog, schema, table, provider) in self.tables().await? {
            let kind = match provider.table_type() {
                datafusion::datasource::TableType::View => "VIEW",
                datafusion::datasource::TableType::Temporary => "LOCAL TEMPORARY",
                datafusion::datasource::TableType::Base => "TABLE",
            };
            builder
                .append(&catalog, &schema, &table, kind, provider.schema().as_ref())
                .map_err(Status::from)?;
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for kind in ["LOCAL TEMPORARY", "TABLE", "VIEW"] {
            builder.append(kind);
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
