//! A query's rows as JSON objects, CSV or Parquet, and as a text table for the terminal.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::{AnalyticsError, QueryResult};

/// The formats a result can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Parquet,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

fn encode_error(err: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Engine(format!("cannot encode the result: {err}"))
}

/// The rows as a JSON array of objects (NULL fields are written as `null`).
pub fn json_rows(result: &QueryResult) -> Result<Vec<u8>, AnalyticsError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buffer);
        let batches: Vec<&RecordBatch> = result.batches.iter().collect();
        writer.write_batches(&batches).map_err(encode_error)?;
        writer.finish().map_err(encode_error)?;
    }
    if buffer.is_empty() {
        buffer.extend_from_slice(b"[]");
    }
    Ok(buffer)
}

/// The rows as CSV with a header line.
pub fn csv(result: &QueryResult) -> Result<Vec<u8>, AnalyticsError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buffer);
        if result.batches.is_empty() {
            writer
                .write(&RecordBatch::new_empty(result.schema.clone()))
                .map_err(encode_error)?;
        }
        for batch in &result.batches {
            writer.write(batch).map_err(encode_error)?;
        }
    }
    Ok(buffer)
}

/// The rows as one Parquet file (zstd).
pub fn parquet(result: &QueryResult) -> Result<Vec<u8>, AnalyticsError> {
    parquet_of(&result.schema, &result.batches)
}

/// Batches of one schema as one Parquet file (zstd).
pub fn parquet_of(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, AnalyticsError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(encode_error)?,
        ))
        .set_created_by("flywheel".to_owned())
        .build();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(properties))
        .map_err(encode_error)?;
    for batch in batches {
        writer.write(batch).map_err(encode_error)?;
    }
    writer.close().map_err(encode_error)?;
    Ok(buffer)
}

/// The result in `format`.
pub fn encode(result: &QueryResult, format: Format) -> Result<Vec<u8>, AnalyticsError> {
    match format {
        Format::Json => json_rows(result),
        Format::Csv => csv(result),
        Format::Parquet => parquet(result),
    }
}

/// The rows as a text table for a terminal.
pub fn pretty(result: &QueryResult) -> Result<String, AnalyticsError> {
    if result.batches.is_empty() {
        return datafusion::arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
            result.schema.clone(),
        )])
        .map(|table| table.to_string())
        .map_err(encode_error);
    }
    datafusion::arrow::util::pretty::pretty_format_batches(&result.batches)
        .map(|table| table.to_string())
        .map_err(encode_error)
}
