//! The `raw` dataset as a DataFusion table: the files the coverage rule selects (never a
//! plain glob, which could see a compaction's inputs and output at once), pruned to the days
//! a query's `timestamp` predicates allow, read by DataFusion's Parquet scan (projection,
//! row-group statistics and page pruning included).
//!
//! This table holds every tenant's rows. It is never registered under a name a query can
//! reach: the engine wraps it in a tenant filter (see `engine.rs`).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use flywheel_lake::{Lake, LakeFile};

/// Milliseconds in a UTC day.
const DAY_MS: i64 = 86_400_000;

/// The lake's object store as DataFusion knows it (registered by the engine).
pub(crate) fn lake_store_url() -> Result<ObjectStoreUrl> {
    ObjectStoreUrl::parse("flywheel-lake://lake")
}

/// The columns of the raw dataset as queries see them: the files' schema with text as
/// `Utf8View` (DataFusion's faster string layout, read directly from Parquet).
pub(crate) fn file_schema() -> SchemaRef {
    let fields: Vec<Field> = flywheel_lake::raw_schema()
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8 => field.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Hive partition columns, from the path.
fn partition_fields() -> Vec<Arc<Field>> {
    ["year", "month", "day"]
        .into_iter()
        .map(|name| Arc::new(Field::new(name, DataType::Int32, false)))
        .collect()
}

/// One file of the raw dataset with the day its partition holds.
#[derive(Debug, Clone)]
pub(crate) struct DayFile {
    file: LakeFile,
    year: i32,
    month: i32,
    day: i32,
    /// Start of the partition's UTC day in Unix milliseconds.
    day_start_ms: i64,
}

impl DayFile {
    /// Reads `raw/year=YYYY/month=MM/day=DD/…`; `None` for a path outside that layout.
    pub(crate) fn parse(file: LakeFile) -> Option<DayFile> {
        let mut parts = file.path.split('/');
        if parts.next()? != flywheel_lake::RAW_DATASET {
            return None;
        }
        let mut value = |key: &str| -> Option<i32> {
            parts
                .next()?
                .strip_prefix(key)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let (year, month, day) = (value("year")?, value("month")?, value("day")?);
        let date = chrono::NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, {
            u32::try_from(day).ok()?
        })?;
        let day_start_ms = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
        Some(DayFile {
            file,
            year,
            month,
            day,
            day_start_ms,
        })
    }
}

/// The raw dataset over the current files of a lake.
#[derive(Debug)]
pub(crate) struct RawTable {
    lake: Lake,
    schema: SchemaRef,
    file_schema: SchemaRef,
}

impl RawTable {
    pub(crate) fn new(lake: Lake) -> RawTable {
        let file_schema = file_schema();
        let mut fields: Vec<Arc<Field>> = file_schema.fields().iter().cloned().collect();
        fields.extend(partition_fields());
        RawTable {
            lake,
            schema: Arc::new(Schema::new(fields)),
            file_schema,
        }
    }
}

/// The inclusive range of `timestamp` values (Unix ms) a conjunction of filters allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub(crate) min: i64,
    pub(crate) max: i64,
}

impl TimeRange {
    const ALL: TimeRange = TimeRange {
        min: i64::MIN,
        max: i64::MAX,
    };

    /// Narrows the range by every filter it understands; the others are left to the scan.
    pub(crate) fn from_filters(filters: &[Expr]) -> TimeRange {
        let mut range = TimeRange::ALL;
        for filter in filters {
            range.narrow(filter);
        }
        range
    }

    fn narrow(&mut self, expr: &Expr) {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
            return;
        };
        if *op == Operator::And {
            self.narrow(left);
            self.narrow(right);
            return;
        }
        // `timestamp op literal`, or `literal op timestamp` read the other way round.
        let (op, literal) = if is_timestamp_column(left) {
            (*op, right.as_ref())
        } else if is_timestamp_column(right) {
            match op.swap() {
                Some(swapped) => (swapped, left.as_ref()),
                None => return,
            }
        } else {
            return;
        };
        let Some(ms) = literal_millis(literal) else {
            return;
        };
        // Timestamps are whole ms: `< 1.5 ms` allows up to 1, `> 1.5 ms` from 2, and so on.
        match op {
            Operator::Eq => {
                self.min = self.min.max(ms.ceil);
                self.max = self.max.min(ms.floor);
            }
            Operator::Gt => self.min = self.min.max(ms.floor.saturating_add(1)),
            Operator::GtEq => self.min = self.min.max(ms.ceil),
            Operator::Lt => self.max = self.max.min(ms.ceil.saturating_sub(1)),
            Operator::LtEq => self.max = self.max.min(ms.floor),
            _ => {}
        }
    }

    /// Whether a day starting at `day_start_ms` may hold rows in the range.
    fn overlaps_day(&self, day_start_ms: i64) -> bool {
        let day_end = day_start_ms.saturating_add(DAY_MS - 1);
        day_start_ms <= self.max && day_end >= self.min
    }
}

fn is_timestamp_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name == "timestamp",
        // `CAST(timestamp AS …)` keeps the order of a timestamp for the comparisons used here
        // only when it stays a timestamp; other casts are not pruned on.
        Expr::Cast(cast) => {
            matches!(cast.field.data_type(), DataType::Timestamp(_, _))
                && is_timestamp_column(&cast.expr)
        }
        _ => false,
    }
}

/// A literal's instant in ms, rounded both ways (a µs literal may fall between two ms).
struct Millis {
    floor: i64,
    ceil: i64,
}

fn literal_millis(expr: &Expr) -> Option<Millis> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let (value, per_ms) = match value {
        ScalarValue::TimestampSecond(Some(v), _) => return v.checked_mul(1000).map(exact),
        ScalarValue::TimestampMillisecond(Some(v), _) => return Some(exact(*v)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (*v, 1_000),
        ScalarValue::TimestampNanosecond(Some(v), _) => (*v, 1_000_000),
        ScalarValue::Date32(Some(days)) => return Some(exact(i64::from(*days) * DAY_MS)),
        _ => return None,
    };
    Some(Millis {
        floor: value.div_euclid(per_ms),
        ceil: value.div_euclid(per_ms) + i64::from(value.rem_euclid(per_ms) != 0),
    })
}

fn exact(ms: i64) -> Millis {
    Millis {
        floor: ms,
        ceil: ms,
    }
}

#[async_trait]
impl TableProvider for RawTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Day pruning is coarse and row-group pruning inexact: the filter stays above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let range = TimeRange::from_filters(filters);
        let files = self
            .lake
            .current_raw_files()
            .await
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        let files: Vec<PartitionedFile> = files
            .into_iter()
            .filter_map(DayFile::parse)
            .filter(|file| range.overlaps_day(file.day_start_ms))
            .map(|file| {
                PartitionedFile::new(
                    self.lake.object_path(&file.file.path).to_string(),
                    file.file.size,
                )
                .with_partition_values(vec![
                    ScalarValue::Int32(Some(file.year)),
                    ScalarValue::Int32(Some(file.month)),
                    ScalarValue::Int32(Some(file.day)),
                ])
            })
            .collect();
        if files.is_empty() {
            let schema = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(
            TableSchema::builder(Arc::clone(&self.file_schema))
                .with_table_partition_cols(partition_fields())
                .build(),
        );
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(lake_store_url()?, source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(
            Some(ms),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn a_range_comes_from_comparisons_on_timestamp_in_either_order() {
        let filters = vec![
            col("timestamp").gt_eq(ts(10 * DAY_MS)),
            ts(12 * DAY_MS).gt(col("timestamp")),
            col("user_id").eq(lit("u")),
        ];
        let range = TimeRange::from_filters(&filters);
        assert_eq!(
            range,
            TimeRange {
                min: 10 * DAY_MS,
                max: 12 * DAY_MS - 1
            }
        );
        assert!(!range.overlaps_day(9 * DAY_MS));
        assert!(range.overlaps_day(10 * DAY_MS));
        assert!(range.overlaps_day(11 * DAY_MS));
        assert!(
            !range.overlaps_day(12 * DAY_MS),
            "`<` midnight excludes that day"
        );
    }

    #[test]
    fn conjunctions_narrow_and_other_operators_do_not() {
        let both = col("timestamp")
            .gt(ts(DAY_MS))
            .and(col("timestamp").lt(ts(2 * DAY_MS)));
        let either = col("timestamp")
            .gt(ts(DAY_MS))
            .or(col("timestamp").lt(ts(2 * DAY_MS)));
        assert_eq!(
            TimeRange::from_filters(&[both]),
            TimeRange {
                min: DAY_MS + 1,
                max: 2 * DAY_MS - 1
            }
        );
        assert_eq!(TimeRange::from_filters(&[either]), TimeRange::ALL);
    }

    #[test]
    fn microsecond_literals_allow_the_whole_ms_on_their_side() {
        let micro = lit(ScalarValue::TimestampMicrosecond(Some(1_500), None));
        let range = TimeRange::from_filters(&[col("timestamp").lt_eq(micro.clone())]);
        assert_eq!(range.max, 1);
        let range = TimeRange::from_filters(&[col("timestamp").lt(micro.clone())]);
        assert_eq!(range.max, 1);
        let range = TimeRange::from_filters(&[col("timestamp").gt_eq(micro.clone())]);
        assert_eq!(range.min, 2);
        let range = TimeRange::from_filters(&[col("timestamp").gt(micro)]);
        assert_eq!(range.min, 2);
    }

    #[test]
    fn only_partition_paths_are_days() {
        let file = |path: &str| LakeFile {
            path: path.to_owned(),
            size: 1,
        };
        let day = DayFile::parse(file("raw/year=2026/month=02/day=03/part-1.parquet"));
        let day = day.map(|d| (d.year, d.month, d.day, d.day_start_ms));
        assert_eq!(day, Some((2026, 2, 3, 1_770_076_800_000)));
        assert!(DayFile::parse(file("raw/year=2026/month=02/day=31/part-1.parquet")).is_none());
        assert!(DayFile::parse(file("raw/other/part-1.parquet")).is_none());
        assert!(DayFile::parse(file("processed/year=2026/month=02/day=03/x")).is_none());
    }
}
