//! The database a parallel restore builds in, unseen, and swaps into the
//! target's place at the end: sessions that load in parallel cannot share
//! one transaction, so the all-or-nothing comes from the target database
//! being replaced whole, by two renames, only once everything loaded.
//!
//! The staging database is created like the target (owner, encoding,
//! locale, tablespace, connection limit, privileges, settings, comment),
//! and the target must be empty: it is what gets replaced.

use serde_json::Value;
use url::Url;

use super::plan::ident;
use crate::engine::postgres::connect::{self, Conn};
use crate::engine::postgres::target::PostgresTarget;
use crate::error::{Error, Result};

/// Prefix of a staging database's name; `vertice_replaced_` names the
/// emptied target between the two renames.
pub const STAGING_PREFIX: &str = "vertice_restore_";
const REPLACED_PREFIX: &str = "vertice_replaced_";

/// The database being built and how to reach it.
pub struct Staging {
    pub name: String,
    pub target: PostgresTarget,
    replaced: String,
    /// The target renamed aside.
    aside: PostgresTarget,
    after: Vec<(String, String)>,
}

/// `target` with its database path replaced by `database`.
pub fn retarget(target: &PostgresTarget, database: &str, label: &str) -> Result<PostgresTarget> {
    let mut url = Url::parse(&target.url).map_err(|e| Error::usage(format!("{label}: {e}")))?;
    if url
        .query_pairs()
        .any(|(k, _)| k == "dbname" || k == "service")
    {
        return Err(Error::usage(format!(
            "{label}: a parallel restore names its staging database in the URL's path; give the database there, not as dbname= or in a service file"
        )));
    }
    url.set_path(&format!("/{}", percent_path(database)));
    Ok(PostgresTarget {
        url: url.to_string(),
        database: database.to_string(),
    })
}

fn percent_path(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A staging name for a restore into `database`: recognisable, unique,
/// within PostgreSQL's 63 bytes.
pub fn staging_names(database: &str, unique: &str) -> (String, String) {
    let short: String = database
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(24)
        .collect();
    (
        format!("{STAGING_PREFIX}{short}_{unique}"),
        format!("{REPLACED_PREFIX}{short}_{unique}"),
    )
}

/// A connection for the restore's own statements: an empty search path
/// (nothing a database's owner created can stand in for the catalog's
/// functions) and standard strings (a quote doubled is the only escape
/// its literals use, whatever the database's settings say).
async fn open(target: &PostgresTarget, password: Option<&str>) -> Result<Conn> {
    let conn = connect::connect(&target.url, password, "--to").await?;
    conn.client
        .batch_execute(
            "SELECT pg_catalog.set_config('search_path', '', false); SET standard_conforming_strings = on",
        )
        .await
        .map_err(failed("preparing the restore's session".into()))?;
    Ok(conn)
}

fn failed(what: String) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::target(format!("{what}: {}", connect::reason(&e)))
}

/// What in a database would be lost by replacing it: any object a user
/// made (an OID from 16384 on, where `initdb`'s end) in the catalogs a
/// database keeps its own objects in. Names up to three.
async fn contents(client: &tokio_postgres::Client) -> Result<Vec<String>> {
    const CATALOGS: &[(&str, &str, &str)] = &[
        ("schema", "pg_namespace", "nspname::text"),
        (
            "relation",
            "pg_class",
            "relnamespace::regnamespace::text || '.' || relname",
        ),
        ("function", "pg_proc", "proname::text"),
        ("type", "pg_type", "typname::text"),
        ("operator", "pg_operator", "oprname::text"),
        ("collation", "pg_collation", "collname::text"),
        ("conversion", "pg_conversion", "conname::text"),
        ("text search configuration", "pg_ts_config", "cfgname::text"),
        ("text search dictionary", "pg_ts_dict", "dictname::text"),
        ("text search parser", "pg_ts_parser", "prsname::text"),
        ("text search template", "pg_ts_template", "tmplname::text"),
        ("extension", "pg_extension", "extname::text"),
        (
            "default privileges",
            "pg_default_acl",
            "defaclrole::regrole::text",
        ),
        ("publication", "pg_publication", "pubname::text"),
        ("event trigger", "pg_event_trigger", "evtname::text"),
        (
            "foreign data wrapper",
            "pg_foreign_data_wrapper",
            "fdwname::text",
        ),
        ("foreign server", "pg_foreign_server", "srvname::text"),
        ("large object", "pg_largeobject_metadata", "oid::text"),
    ];
    let union = CATALOGS
        .iter()
        .map(|(kind, catalog, name)| {
            // A session's temporary schemas stay once made; they hold nothing.
            let temp = if *catalog == "pg_namespace" {
                " AND nspname !~ '^pg_(toast_)?temp_'"
            } else {
                ""
            };
            format!("SELECT '{kind} ' || {name} FROM pg_catalog.{catalog} WHERE oid >= 16384{temp}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let sql = format!("SELECT found FROM ({union}) AS objects(found) LIMIT 4");
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(failed("checking that the target database is empty".into()))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

fn not_empty(database: &str, found: &[String]) -> Error {
    let mut named: Vec<&str> = found.iter().map(String::as_str).take(3).collect();
    if found.len() > 3 {
        named.push("…");
    }
    Error::target(format!(
        "database {database} is not empty ({}); a parallel restore replaces the whole database, so it goes only into an empty one: restore into a new empty database, or use --jobs 1",
        named.join(", ")
    ))
}

/// The target's own properties that the staging database copies.
struct Shape {
    owner: String,
    create: String,
    /// Applied just before the swap (a connection limit or a setting such
    /// as `default_transaction_read_only` would stop the load): what each
    /// is, for an error that never shows a value, and its statement.
    after: Vec<(String, String)>,
}

/// Reads the target's properties (one row of `pg_database` as JSON, so
/// columns that differ between versions are read by name).
async fn shape(client: &tokio_postgres::Client, staging: &str) -> Result<Shape> {
    let row = client
        .query_one(
            "SELECT to_jsonb(d)::text, pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_encoding_to_char(d.encoding),
                    t.spcname::text, pg_catalog.shobj_description(d.oid, 'pg_database'),
                    COALESCE((SELECT array_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END
                                     || ' ' || a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                              FROM aclexplode(d.datacl) a), '{}'::text[]),
                    d.datacl IS NULL,
                    COALESCE((SELECT array_agg(COALESCE(quote_ident(pg_catalog.pg_get_userbyid(s.setrole)), '') || E'\\t' || c)
                              FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
                              WHERE s.setdatabase = d.oid), '{}'::text[])
             FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
             WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(failed("reading the target database's properties".into()))?;
    let db: Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap_or(Value::Null);
    let owner: String = row.get(1);
    let encoding: String = row.get(2);
    let tablespace: String = row.get(3);
    let comment: Option<String> = row.get(4);
    let grants: Vec<String> = row.get(5);
    let default_acl: bool = row.get(6);
    let settings: Vec<String> = row.get(7);
    let text = |key: &str| db.get(key).and_then(Value::as_str).map(str::to_string);
    let mut create = format!(
        "CREATE DATABASE {} WITH TEMPLATE template0 OWNER {} ENCODING {} TABLESPACE {}",
        ident(staging),
        ident(&owner),
        literal(&encoding),
        ident(&tablespace),
    );
    if let Some(c) = text("datcollate") {
        create.push_str(&format!(" LC_COLLATE {}", literal(&c)));
    }
    if let Some(c) = text("datctype") {
        create.push_str(&format!(" LC_CTYPE {}", literal(&c)));
    }
    match text("datlocprovider").as_deref() {
        Some("i") => {
            create.push_str(" LOCALE_PROVIDER icu");
            if let Some(l) = text("datlocale").or_else(|| text("daticulocale")) {
                create.push_str(&format!(" ICU_LOCALE {}", literal(&l)));
            }
            if let Some(r) = text("daticurules") {
                create.push_str(&format!(" ICU_RULES {}", literal(&r)));
            }
        }
        Some("b") => {
            create.push_str(" LOCALE_PROVIDER builtin");
            if let Some(l) = text("datlocale") {
                create.push_str(&format!(" BUILTIN_LOCALE {}", literal(&l)));
            }
        }
        _ => {}
    }
    let on = format!("DATABASE {}", ident(staging));
    let mut after = Vec::new();
    if let Some(limit) = db.get("datconnlimit").and_then(Value::as_i64) {
        after.push((
            "the connection limit".to_string(),
            format!("ALTER {on} CONNECTION LIMIT {limit}"),
        ));
    }
    if !default_acl {
        let privileges = "the privileges".to_string();
        after.push((
            privileges.clone(),
            format!("REVOKE ALL ON {on} FROM PUBLIC"),
        ));
        after.push((
            privileges.clone(),
            format!("REVOKE ALL ON {on} FROM {}", ident(&owner)),
        ));
        for grant in grants {
            let (grantee, rest) = grant.split_once(' ').unwrap_or((grant.as_str(), ""));
            let (privilege, option) = rest.split_once(' ').unwrap_or((rest, ""));
            after.push((
                privileges.clone(),
                format!("GRANT {privilege} ON {on} TO {grantee} {option}"),
            ));
        }
    }
    for setting in settings {
        let (role, assignment) = setting.split_once('\t').unwrap_or(("", setting.as_str()));
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        let value = setting_value(name, value);
        let what = format!("the setting {name}");
        if role.is_empty() {
            after.push((what, format!("ALTER {on} SET {} TO {value}", ident(name))));
        } else {
            after.push((
                what,
                format!("ALTER ROLE {role} IN {on} SET {} TO {value}", ident(name)),
            ));
        }
    }
    if let Some(comment) = comment {
        after.push((
            "the comment".to_string(),
            format!("COMMENT ON {on} IS {}", literal(&comment)),
        ));
    }
    Ok(Shape {
        owner,
        create,
        after,
    })
}

/// A string literal, standard-conforming.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The SQL for a stored setting's value. A list setting whose elements
/// are quoted identifiers (`search_path`, `temp_tablespaces`, the preload
/// libraries) is stored flattened (`"$user", public`) and given back as a
/// list of literals; every other value is one literal.
fn setting_value(name: &str, value: &str) -> String {
    const LISTS: &[&str] = &[
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "local_preload_libraries",
    ];
    if !LISTS.contains(&name.to_ascii_lowercase().as_str()) {
        return literal(value);
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            c if c.is_whitespace() && !quoted => {}
            c => current.push(c),
        }
    }
    items.push(current);
    items
        .iter()
        .map(|i| literal(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the target is empty and creates the staging database like it.
pub async fn create(
    target: &PostgresTarget,
    password: Option<&str>,
    unique: &str,
) -> Result<Staging> {
    let conn = open(target, password).await?;
    let found = contents(&conn.client).await?;
    if !found.is_empty() {
        return Err(not_empty(&target.database, &found));
    }
    let (name, replaced) = staging_names(&target.database, unique);
    let staging_target = retarget(target, &name, "--to")?;
    let aside = retarget(target, &replaced, "--to")?;
    let shape = shape(&conn.client, &name).await?;
    conn.client.batch_execute(&shape.create).await.map_err(|e| {
        Error::target(format!(
            "creating the staging database {name}: {}; a parallel restore needs a user that may create databases (CREATEDB) and act as the target's owner {}",
            connect::reason(&e),
            shape.owner
        ))
    })?;
    Ok(Staging {
        target: staging_target,
        aside,
        name,
        replaced,
        after: shape.after,
    })
}

/// Drops `name`, ending any session still in it (only ever a database
/// this restore created).
async fn drop_database(conn: &Conn, name: &str) {
    let quoted = ident(name);
    // WITH (FORCE) from PostgreSQL 13 on; older servers get a few tries
    // while the restore's own sessions finish closing.
    for attempt in 0..10 {
        let sql = if attempt == 0 {
            format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        } else {
            format!("DROP DATABASE IF EXISTS {quoted}")
        };
        match conn.client.batch_execute(&sql).await {
            Ok(()) => return,
            Err(e) if attempt == 9 => {
                tracing::warn!(database = name, error = %connect::reason(&e), "could not drop the restore's staging database; drop it by hand");
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
        }
    }
}

/// Drops the staging database after a failure; the target was never
/// touched.
pub async fn discard(target: &PostgresTarget, password: Option<&str>, staging: &Staging) {
    match open(target, password).await {
        Ok(conn) => drop_database(&conn, &staging.name).await,
        Err(e) => {
            tracing::warn!(database = %staging.name, error = %e, "could not reach the server to drop the restore's staging database; drop it by hand")
        }
    }
}

/// Puts the staging database in the target's place: the target's
/// settings, privileges and limit applied to it, the (empty) target
/// renamed aside, checked still empty, the staging database renamed to its
/// name, the old one dropped. Either the target holds the whole restore
/// or, on any failure, the target is as it was; every error says which.
pub async fn swap(
    target: &PostgresTarget,
    password: Option<&str>,
    staging: &Staging,
) -> Result<()> {
    let (old, new) = (ident(&target.database), ident(&staging.name));
    let replaced = ident(&staging.replaced);
    let unchanged =
        |m: String| Error::target(format!("{m}; database {} was not changed", target.database));
    // From inside the staging database: the target can be renamed only
    // with nobody connected to it.
    let inside = open(&staging.target, password).await?;
    for (what, statement) in &staging.after {
        if let Err(e) = inside.client.batch_execute(statement).await {
            // Never the statement: a setting's value may be a secret.
            return Err(unchanged(format!(
                "giving the restored database the target's {what}: {}",
                connect::reason(&e)
            )));
        }
    }
    inside
        .client
        .batch_execute(&format!("ALTER DATABASE {old} RENAME TO {replaced}"))
        .await
        .map_err(|e| {
            unchanged(format!(
                "the restore is complete in {} but database {} cannot be replaced: {}; nobody may be connected to it at the end of a parallel restore",
                staging.name,
                target.database,
                connect::reason(&e)
            ))
        })?;
    drop(inside);
    // A writer connected between the first check and the rename: its
    // data would be lost, so the target is put back.
    let back = |why: String| put_back(target, password, staging, why);
    let conn = match open(&staging.aside, password).await {
        Ok(c) => c,
        Err(e) => return Err(back(format!("reaching the renamed target: {e}")).await),
    };
    match contents(&conn.client).await {
        Ok(found) if found.is_empty() => {}
        Ok(found) => {
            drop(conn);
            return Err(back(not_empty(&target.database, &found).to_string()).await);
        }
        Err(e) => {
            drop(conn);
            return Err(back(e.to_string()).await);
        }
    }
    if let Err(e) = conn
        .client
        .batch_execute(&format!("ALTER DATABASE {new} RENAME TO {old}"))
        .await
    {
        drop(conn);
        return Err(back(format!(
            "renaming {} to {}: {}",
            staging.name,
            target.database,
            connect::reason(&e)
        ))
        .await);
    }
    drop(conn);
    match open(target, password).await {
        Ok(c) => drop_database(&c, &staging.replaced).await,
        Err(e) => {
            tracing::warn!(database = %staging.replaced, error = %e, "the restore is in place; the empty database it replaced could not be dropped")
        }
    }
    Ok(())
}

/// Gives the target its name back after a swap that could not finish
/// (tried three times); the error says whether it has it.
async fn put_back(
    target: &PostgresTarget,
    password: Option<&str>,
    staging: &Staging,
    why: String,
) -> Error {
    let (old, replaced) = (ident(&target.database), ident(&staging.replaced));
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let renamed = match open(&staging.target, password).await {
            Ok(c) => c
                .client
                .batch_execute(&format!("ALTER DATABASE {replaced} RENAME TO {old}"))
                .await
                .map_err(|e| connect::reason(&e)),
            Err(e) => Err(e.to_string()),
        };
        match renamed {
            Ok(()) => {
                return Error::target(format!(
                    "{why}; database {} was not changed",
                    target.database
                ))
            }
            Err(e) => last = e,
        }
    }
    tracing::error!(error = %last, "could not give database {} its name back from {}", target.database, staging.replaced);
    Error::target(format!(
        "{why}; database {} (empty, unchanged) is now named {}: give it its name back with ALTER DATABASE {replaced} RENAME TO {old} ({last})",
        target.database, staging.replaced
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_come_back_as_lists() {
        assert_eq!(
            setting_value("search_path", "\"$user\", public"),
            "'$user', 'public'"
        );
        assert_eq!(
            setting_value("search_path", "\"a,\"\"b\", c"),
            "'a,\"b', 'c'"
        );
        assert_eq!(setting_value("work_mem", "64MB"), "'64MB'");
        assert_eq!(setting_value("app.note", "it's"), "'it''s'");
    }

    #[test]
    fn staging_names_are_short_and_recognisable() {
        let (staging, replaced) = staging_names("Shop-DB.prod", "0123456789ab");
        assert_eq!(staging, "vertice_restore_ShopDBprod_0123456789ab");
        assert!(replaced.starts_with("vertice_replaced_ShopDBprod_"));
        let (long, _) = staging_names(&"x".repeat(80), "0123456789ab");
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn retargeting_keeps_the_query() {
        let t = PostgresTarget {
            url: "postgres://app@db:5432/shop?sslmode=require".into(),
            database: "shop".into(),
        };
        let s = retarget(&t, "vertice_restore_shop_1", "--to").expect("retarget");
        assert_eq!(
            s.url,
            "postgres://app@db:5432/vertice_restore_shop_1?sslmode=require"
        );
        let bad = PostgresTarget {
            url: "postgres://app@db/shop?dbname=other".into(),
            database: "shop".into(),
        };
        assert!(retarget(&bad, "x", "--to").is_err());
    }
}
