//! Which table data the workers copy, in which pieces, and the SQL each
//! piece is read and loaded with: pure, so the split is tested directly.
//!
//! Small tables stay in pg_dump's archive (grouped there for free, one
//! object for all of them); larger ones become parts of their own; a table
//! larger than a part is split into heap block ranges (`ctid`, read by a
//! TID range scan on PostgreSQL 14 and later) so that one big table also
//! keeps every worker busy.

use crate::manifest::postgres::BlockRange;

/// A table the source holds, as the catalog describes it under the
/// snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    /// Columns in `COPY` order, generated ones left out.
    pub columns: Vec<String>,
    /// Size of the heap (main fork), bytes.
    pub bytes: u64,
    /// Heap blocks.
    pub blocks: u32,
}

/// One part to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub table: TableInfo,
    pub blocks: Option<BlockRange>,
    /// What the part is expected to weigh: the larger go first.
    pub estimate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Largest first, so the last part to finish is a small one.
    pub pieces: Vec<Piece>,
    /// Tables whose data pg_dump's archive carries.
    pub in_archive: Vec<TableInfo>,
}

/// Below this a table's data rides in pg_dump's archive (one object for
/// many small tables, no session per table)...
pub const SMALL_TABLE: u64 = 4 << 20;
/// ...as long as all of them together stay below this: past it, a
/// database of many small tables would load them through one stream.
pub const ARCHIVE_BUDGET: u64 = 256 << 20;
const MIN_PART: u64 = 64 << 20;
const MAX_PART: u64 = 1 << 30;

/// The size a part aims at: about four per worker over the whole database
/// (so they even out), within 64 MiB – 1 GiB.
pub fn part_target(total: u64, jobs: u32) -> u64 {
    (total / (u64::from(jobs.max(1)) * 4)).clamp(MIN_PART, MAX_PART)
}

/// Splits `tables` for `jobs` workers; `ranges`: the server scans `ctid`
/// ranges by block (14+), else a table is never split (each range would
/// read the whole heap).
pub fn plan(tables: Vec<TableInfo>, jobs: u32, ranges: bool) -> Plan {
    let total: u64 = tables.iter().map(|t| t.bytes).sum();
    let target = part_target(total, jobs);
    let mut sorted = tables;
    sorted.sort_by(|a, b| {
        a.bytes
            .cmp(&b.bytes)
            .then_with(|| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)))
    });
    let mut plan = Plan::default();
    let mut in_archive = 0u64;
    for table in sorted {
        // A table without columns has nothing COPY could select by range
        // and nothing worth a part: pg_dump keeps it.
        let small = table.bytes < SMALL_TABLE && in_archive + table.bytes <= ARCHIVE_BUDGET;
        if table.columns.is_empty() || small {
            in_archive += table.bytes;
            plan.in_archive.push(table);
            continue;
        }
        let count = if ranges && table.bytes > target {
            table
                .bytes
                .div_ceil(target)
                .min(u64::from(table.blocks.max(1)))
        } else {
            1
        };
        if count <= 1 {
            plan.pieces.push(Piece {
                estimate: table.bytes,
                table,
                blocks: None,
            });
            continue;
        }
        let blocks = u64::from(table.blocks);
        for i in 0..count {
            let from = u32::try_from(blocks * i / count).unwrap_or(u32::MAX);
            // The last range is open: blocks added after the size was read
            // hold no row the snapshot sees, but a range must never miss one.
            let to = (i + 1 < count)
                .then(|| u32::try_from(blocks * (i + 1) / count).unwrap_or(u32::MAX));
            plan.pieces.push(Piece {
                estimate: table.bytes / count,
                table: table.clone(),
                blocks: Some(BlockRange { from, to }),
            });
        }
    }
    plan.pieces.sort_by_key(|p| std::cmp::Reverse(p.estimate));
    plan
}

/// An identifier, always quoted: exact whatever its case or characters.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// The statement a worker reads a part with. `ONLY`: a range of a parent
/// must not take its inheritance children's rows (they are tables of
/// their own).
pub fn copy_out(table: &TableInfo, blocks: Option<BlockRange>) -> String {
    let name = qualified(&table.schema, &table.table);
    let columns = column_list(&table.columns);
    match blocks {
        None => format!("COPY {name} ({columns}) TO STDOUT"),
        Some(BlockRange { from, to }) => {
            let mut filter = format!("ctid >= '({from},0)'::tid");
            if let Some(to) = to {
                filter.push_str(&format!(" AND ctid < '({to},0)'::tid"));
            }
            format!("COPY (SELECT {columns} FROM ONLY {name} WHERE {filter}) TO STDOUT")
        }
    }
}

/// The statement a part is loaded with.
pub fn copy_in(schema: &str, table: &str, columns: &[String]) -> String {
    let name = qualified(schema, table);
    if columns.is_empty() {
        format!("COPY {name} FROM STDIN")
    } else {
        format!("COPY {name} ({}) FROM STDIN", column_list(columns))
    }
}

/// pg_dump's `--exclude-table-data` pattern for exactly this table: inside
/// double quotes a pattern's `*`, `?` and `.` are plain characters, and a
/// doubled quote is a quote.
pub fn exclude_data_arg(schema: &str, table: &str) -> String {
    format!("--exclude-table-data={}", qualified(schema, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, mib: u64) -> TableInfo {
        TableInfo {
            schema: "public".into(),
            table: name.into(),
            columns: vec!["id".into(), "body".into()],
            bytes: mib << 20,
            blocks: u32::try_from((mib << 20) / 8192).expect("blocks"),
        }
    }

    #[test]
    fn small_tables_ride_in_the_archive_and_a_big_one_is_split() {
        let plan = plan(
            vec![table("tiny", 1), table("mid", 100), table("big", 2048)],
            2,
            true,
        );
        assert_eq!(plan.in_archive.len(), 1);
        assert_eq!(plan.in_archive[0].table, "tiny");
        // 2148 MiB over 2 workers: parts of about 268 MiB; big splits in 8.
        let big: Vec<_> = plan
            .pieces
            .iter()
            .filter(|p| p.table.table == "big")
            .collect();
        assert_eq!(big.len(), 8);
        let ranges: Vec<_> = big.iter().filter_map(|p| p.blocks).collect();
        assert_eq!(ranges[0].from, 0);
        // Contiguous, the last open.
        let mut sorted = ranges.clone();
        sorted.sort_by_key(|r| r.from);
        for pair in sorted.windows(2) {
            assert_eq!(pair[0].to, Some(pair[1].from));
        }
        assert_eq!(sorted.last().and_then(|r| r.to), None);
        assert!(plan
            .pieces
            .iter()
            .any(|p| p.table.table == "mid" && p.blocks.is_none()));
        // Largest first.
        assert!(plan
            .pieces
            .windows(2)
            .all(|w| w[0].estimate >= w[1].estimate));
    }

    #[test]
    fn without_range_scans_a_table_stays_whole() {
        let plan = plan(vec![table("big", 4096)], 4, false);
        assert_eq!(plan.pieces.len(), 1);
        assert_eq!(plan.pieces[0].blocks, None);
    }

    #[test]
    fn many_small_tables_fill_the_archive_budget_then_get_parts() {
        let tables: Vec<_> = (0..100).map(|i| table(&format!("t{i}"), 3)).collect();
        let plan = plan(tables, 2, true);
        let carried: u64 = plan.in_archive.iter().map(|t| t.bytes).sum();
        assert!(carried <= ARCHIVE_BUDGET);
        assert_eq!(plan.in_archive.len() + plan.pieces.len(), 100);
        assert!(!plan.pieces.is_empty());
    }

    #[test]
    fn tables_without_columns_stay_in_the_archive() {
        let mut t = table("empty_shape", 64);
        t.columns.clear();
        let plan = plan(vec![t], 2, true);
        assert!(plan.pieces.is_empty());
        assert_eq!(plan.in_archive.len(), 1);
    }

    #[test]
    fn statements_quote_every_name_exactly() {
        let t = TableInfo {
            schema: "Sales".into(),
            table: "or\"ders.*".into(),
            columns: vec!["Id".into(), "a b".into()],
            bytes: 0,
            blocks: 0,
        };
        assert_eq!(
            copy_out(&t, None),
            r#"COPY "Sales"."or""ders.*" ("Id", "a b") TO STDOUT"#
        );
        assert_eq!(
            copy_out(
                &t,
                Some(BlockRange {
                    from: 10,
                    to: Some(20)
                })
            ),
            r#"COPY (SELECT "Id", "a b" FROM ONLY "Sales"."or""ders.*" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid) TO STDOUT"#
        );
        assert!(copy_out(&t, Some(BlockRange { from: 10, to: None }))
            .ends_with("WHERE ctid >= '(10,0)'::tid) TO STDOUT"));
        assert_eq!(
            copy_in("Sales", "or\"ders.*", &t.columns),
            r#"COPY "Sales"."or""ders.*" ("Id", "a b") FROM STDIN"#
        );
        assert_eq!(copy_in("s", "t", &[]), r#"COPY "s"."t" FROM STDIN"#);
        assert_eq!(
            exclude_data_arg("Sales", "or\"ders.*"),
            r#"--exclude-table-data="Sales"."or""ders.*""#
        );
    }
}
