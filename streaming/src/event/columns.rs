//! Arrow columns of events of a declared [`EventSchema`]: builders that append [`Event`]s
//! (or rows with no event), and cells read back from a column.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{
    Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use datafusion::arrow::error::ArrowError;

use super::parse::{Cell, Event};
use super::schema::{EventSchema, Kind};

/// A builder of one declared field's column.
enum Column {
    Str(StringBuilder),
    Int(Int64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
    Decimal(Decimal128Builder),
    Time(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(kind: Kind, n: usize) -> Result<Self, ArrowError> {
        Ok(match kind {
            Kind::String => Self::Str(StringBuilder::with_capacity(n, n * 8)),
            Kind::Int => Self::Int(Int64Builder::with_capacity(n)),
            Kind::Double => Self::Double(Float64Builder::with_capacity(n)),
            Kind::Bool => Self::Bool(BooleanBuilder::with_capacity(n)),
            Kind::Decimal(p, s) => {
                Self::Decimal(Decimal128Builder::with_capacity(n).with_precision_and_scale(p, s)?)
            }
            Kind::Timestamp => Self::Time(TimestampMicrosecondBuilder::with_capacity(n)),
        })
    }

    /// Appends `cell`; a cell of another type (a bug) is appended as NULL.
    fn append(&mut self, cell: &Cell) {
        match (self, cell) {
            (Self::Str(b), Cell::Str(v)) => b.append_value(v),
            (Self::Int(b), Cell::Int(v)) => b.append_value(*v),
            (Self::Double(b), Cell::Double(v)) => b.append_value(*v),
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Self::Decimal(b), Cell::Decimal(v)) => b.append_value(*v),
            (Self::Time(b), Cell::Time(v)) => b.append_value(*v),
            (c, _) => c.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Str(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Double(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Decimal(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Double(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Decimal(mut b) => Arc::new(b.finish()),
            Self::Time(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builders of the declared fields' columns, in declared order. Shared by the events table
/// and the Kafka scan's rows ([`crate::scan::scan_schema`]).
pub struct EventColumns {
    columns: Vec<Column>,
    time_index: usize,
}

impl EventColumns {
    /// Builders for about `n` rows of `schema`.
    ///
    /// # Errors
    /// An Arrow error for a decimal type Arrow refuses (checked with the schema: a bug).
    pub fn with_capacity(schema: &EventSchema, n: usize) -> Result<Self, ArrowError> {
        Ok(Self {
            columns: schema
                .fields
                .iter()
                .map(|f| Column::new(f.kind, n))
                .collect::<Result<_, _>>()?,
            time_index: schema.time_index,
        })
    }

    /// Appends an event.
    pub fn append(&mut self, e: &Event) {
        for (c, cell) in self.columns.iter_mut().zip(&e.cells) {
            c.append(cell);
        }
    }

    /// Appends a row with no event, only its event time when known.
    pub fn append_none(&mut self, event_time_us: Option<i64>) {
        for (i, c) in self.columns.iter_mut().enumerate() {
            match event_time_us {
                Some(t) if i == self.time_index => c.append(&Cell::Time(t)),
                _ => c.append_null(),
            }
        }
    }

    /// The columns.
    pub fn finish(self) -> Vec<ArrayRef> {
        self.columns.into_iter().map(Column::finish).collect()
    }
}

/// The cell at row `i` of `column`, a column of type `kind`.
///
/// # Errors
/// A column not of `kind`'s Arrow type.
pub fn cell_at(column: &ArrayRef, kind: Kind, i: usize) -> Result<Cell, ArrowError> {
    if column.data_type() != &kind.data_type() {
        return Err(ArrowError::SchemaError(format!(
            "a column of {} where the schema declares {}",
            column.data_type(),
            kind.data_type()
        )));
    }
    if column.is_null(i) {
        return Ok(Cell::Null);
    }
    Ok(match kind {
        Kind::String => Cell::Str(column.as_string::<i32>().value(i).to_string()),
        Kind::Int => Cell::Int(column.as_primitive::<Int64Type>().value(i)),
        Kind::Double => Cell::Double(column.as_primitive::<Float64Type>().value(i)),
        Kind::Bool => Cell::Bool(column.as_boolean().value(i)),
        Kind::Decimal(..) => Cell::Decimal(column.as_primitive::<Decimal128Type>().value(i)),
        Kind::Timestamp => Cell::Time(column.as_primitive::<TimestampMicrosecondType>().value(i)),
    })
}
