//! Which of the archive's post-data entries the restore's sessions build
//! side by side (indexes and the constraints that build one: primary keys,
//! unique and exclusion constraints), and which pg_restore runs after them
//! (foreign keys, triggers, rules, attachments, comments, privileges):
//! pure, from the table of contents.

use std::collections::HashMap;

use super::plan::ident;
use crate::engine::postgres::archive::{TocEntry, POST_DATA};

/// One statement a session runs, and how heavy its table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub dump_id: i64,
    pub what: String,
    pub sql: String,
    pub weight: u64,
}

/// The builds, heaviest first, and the dump ids pg_restore runs afterwards
/// (every entry but the builds: it picks the post-data ones).
pub fn split(
    entries: &[TocEntry],
    table_weights: &HashMap<(String, String), u64>,
    tablespaces: bool,
) -> (Vec<Build>, Vec<i64>) {
    let tables: HashMap<i64, (String, String)> = entries
        .iter()
        .filter(|e| e.desc == "TABLE")
        .map(|e| (e.dump_id, (e.namespace.clone(), e.tag.clone())))
        .collect();
    let mut builds = Vec::new();
    let mut rest = Vec::new();
    for entry in entries {
        let built = entry.section == POST_DATA
            && matches!(entry.desc.as_str(), "INDEX" | "CONSTRAINT")
            && single_statement(&entry.defn);
        if !built {
            rest.push(entry.dump_id);
            continue;
        }
        let weight = entry
            .dependencies
            .iter()
            .filter_map(|d| tables.get(d))
            .filter_map(|t| table_weights.get(t))
            .copied()
            .max()
            .unwrap_or(0);
        // As pg_restore does: the entry's tablespace, or the database's.
        let tablespace = if tablespaces && !entry.tablespace.is_empty() {
            ident(&entry.tablespace)
        } else {
            "''".to_string()
        };
        builds.push(Build {
            dump_id: entry.dump_id,
            what: format!("{} {}.{}", entry.desc, entry.namespace, entry.tag),
            sql: format!("SET default_tablespace = {tablespace};\n{}", entry.defn),
            weight,
        });
    }
    builds.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.dump_id.cmp(&b.dump_id)));
    (builds, rest)
}

/// An entry of one statement only: an index's entry may go on with `ALTER
/// TABLE … CLUSTER ON` or `REPLICA IDENTITY USING INDEX`, whose stronger
/// locks would deadlock two sessions building on one table — such an
/// entry is left to pg_restore (so is one whose text merely holds a `;`).
fn single_statement(defn: &str) -> bool {
    let defn = defn.trim();
    defn.ends_with(';') && defn.matches(';').count() == 1
}

/// pg_restore's `--use-list` file: one dump id per line.
pub fn use_list(ids: &[i64]) -> String {
    ids.iter().map(|id| format!("{id};\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, desc: &str, section: i64, deps: &[i64], defn: &str) -> TocEntry {
        TocEntry {
            dump_id: id,
            tag: format!("e{id}"),
            desc: desc.into(),
            section,
            defn: defn.into(),
            namespace: "sales".into(),
            tablespace: String::new(),
            owner: "app".into(),
            dependencies: deps.to_vec(),
        }
    }

    #[test]
    fn indexes_and_key_constraints_are_built_heaviest_first() {
        let mut big_index = entry(
            10,
            "INDEX",
            POST_DATA,
            &[1],
            "CREATE INDEX e10 ON sales.big USING btree (k);",
        );
        big_index.tablespace = "fast ssd".into();
        let entries = vec![
            TocEntry {
                tag: "big".into(),
                ..entry(1, "TABLE", 2, &[], "CREATE TABLE …")
            },
            TocEntry {
                tag: "small".into(),
                ..entry(2, "TABLE", 2, &[], "CREATE TABLE …")
            },
            entry(3, "TABLE DATA", 3, &[2], ""),
            entry(
                9,
                "CONSTRAINT",
                POST_DATA,
                &[2],
                "ALTER TABLE ONLY sales.small ADD CONSTRAINT e9 PRIMARY KEY (id);",
            ),
            big_index,
            entry(11, "FK CONSTRAINT", POST_DATA, &[1, 2], "ALTER TABLE …"),
            entry(12, "TRIGGER", POST_DATA, &[1], "CREATE TRIGGER …"),
            entry(13, "COMMENT", POST_DATA, &[10], "COMMENT ON INDEX …"),
            entry(14, "INDEX", POST_DATA, &[1], "CREATE INDEX e14 ON sales.big USING btree (c);\n\nALTER TABLE sales.big CLUSTER ON e14;"),
        ];
        let weights = HashMap::from([
            (("sales".to_string(), "big".to_string()), 1000),
            (("sales".to_string(), "small".to_string()), 10),
        ]);
        let (builds, rest) = split(&entries, &weights, true);
        assert_eq!(
            builds.iter().map(|b| b.dump_id).collect::<Vec<_>>(),
            [10, 9]
        );
        assert!(builds[0]
            .sql
            .starts_with("SET default_tablespace = \"fast ssd\";\nCREATE INDEX"));
        assert!(builds[1]
            .sql
            .starts_with("SET default_tablespace = '';\nALTER TABLE"));
        assert_eq!(
            rest,
            [1, 2, 3, 11, 12, 13, 14],
            "a clustered index is left to pg_restore"
        );
        let (builds, _) = split(&entries, &weights, false);
        assert!(builds[0].sql.starts_with("SET default_tablespace = '';"));
        assert_eq!(use_list(&[3, 11]), "3;\n11;\n");
    }
}
