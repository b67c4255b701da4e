//! Staged live restores: each database of the backup is restored into an
//! empty scratch database of the target, and all of them are swapped in at
//! once by one script (`SWAPDB`, atomic). Until that swap the target's
//! databases are untouched — even if the agent is killed — and a failure
//! removes nothing but the scratch databases this restore filled.

use redis::Connection;

/// Marks a scratch database as a restore's staging area, so a later run can
/// tell an interrupted restore's leftovers from a user's data.
pub const MARKER_KEY: &str = "vertice-agent:restore-staging";

/// One database of the backup and where it is staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub target: u64,
    pub scratch: u64,
    /// Keys this restore wrote into the scratch database (the marker included).
    pub written: u64,
}

/// Picks scratch databases from the highest index down, never one that holds
/// keys, never one the backup itself restores into.
#[derive(Debug)]
pub struct Allocator {
    databases: u64,
    occupied: Vec<u64>,
    pub stages: Vec<Stage>,
}

impl Allocator {
    pub fn new(databases: u64, occupied: Vec<u64>) -> Self {
        Allocator {
            databases,
            occupied,
            stages: Vec::new(),
        }
    }

    /// The scratch database for backup database `target` (allocating one the
    /// first time), or why there is none.
    pub fn scratch_for(&mut self, target: u64) -> Result<u64, String> {
        if let Some(stage) = self.stages.iter().find(|s| s.target == target) {
            return Ok(stage.scratch);
        }
        if target >= self.databases {
            return Err(format!(
                "the backup holds database {target} but the target has only {} databases",
                self.databases
            ));
        }
        if self.stages.iter().any(|s| s.scratch == target) {
            return Err(format!(
                "the backup holds database {target}, which this restore chose for staging; restore with fewer databases in use or into an RDB file"
            ));
        }
        let in_use = |db: u64| {
            db == target
                || self.occupied.contains(&db)
                || self
                    .stages
                    .iter()
                    .any(|s| s.scratch == db || s.target == db)
        };
        let scratch = (0..self.databases)
            .rev()
            .find(|db| !in_use(*db))
            .ok_or_else(|| "no empty database is left to stage the restore in".to_string())?;
        self.stages.push(Stage {
            target,
            scratch,
            written: 0,
        });
        Ok(scratch)
    }

    pub fn count(&mut self, target: u64) {
        if let Some(stage) = self.stages.iter_mut().find(|s| s.target == target) {
            stage.written += 1;
        }
    }
}

/// Checks every target database is still empty (with `replace`, merely that
/// nothing changed in the scratch databases), removes the markers and swaps
/// every stage in, all in one script, so either all databases change or none.
const SWAP_SCRIPT: &str = r#"
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local target, scratch = ARGV[2 + i * 3], ARGV[3 + i * 3]
  redis.call('SELECT', target)
  if redis.call('DBSIZE') ~= 0 then
    return 'target db ' .. target .. ' is no longer empty'
  end
  redis.call('SELECT', scratch)
  -- Fewer keys is expiry at work; more is another client.
  if redis.call('DBSIZE') > tonumber(ARGV[4 + i * 3]) then
    return 'scratch db ' .. scratch .. ' was written to by another client'
  end
end
for i = 0, n - 1 do
  local target, scratch = ARGV[2 + i * 3], ARGV[3 + i * 3]
  redis.call('SELECT', scratch)
  redis.call('DEL', KEYS[1])
  redis.call('SWAPDB', target, scratch)
end
return 'ok'
"#;

pub fn swap_in(conn: &mut Connection, stages: &[Stage]) -> Result<(), String> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SWAP_SCRIPT)
        .arg(1)
        .arg(MARKER_KEY)
        .arg(stages.len());
    for s in stages {
        cmd.arg(s.target).arg(s.scratch).arg(s.written);
    }
    let answer: String = cmd
        .query(conn)
        .map_err(|e| format!("swapping the staged databases in: {e}"))?;
    if answer == "ok" {
        Ok(())
    } else {
        Err(format!("{answer}; nothing was swapped in"))
    }
}

/// Empties the scratch databases this restore filled, but only where the
/// key count is still at most what it wrote (keys may expire meanwhile): a
/// database someone else wrote to is left alone and named.
pub fn discard(conn: &mut Connection, stages: &[Stage]) -> Result<(), String> {
    let mut left = Vec::new();
    for s in stages {
        redis::cmd("SELECT")
            .arg(s.scratch)
            .exec(conn)
            .map_err(|e| e.to_string())?;
        let size: u64 = redis::cmd("DBSIZE")
            .query(conn)
            .map_err(|e| e.to_string())?;
        if size <= s.written {
            redis::cmd("FLUSHDB")
                .exec(conn)
                .map_err(|e| format!("FLUSHDB of scratch db {}: {e}", s.scratch))?;
        } else {
            left.push(s.scratch.to_string());
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "scratch database(s) {} hold keys this restore did not write and were left as they are",
            left.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_databases_come_from_the_top_and_avoid_used_ones() {
        let mut a = Allocator::new(16, vec![15, 3]);
        assert_eq!(a.scratch_for(0), Ok(14));
        assert_eq!(a.scratch_for(0), Ok(14));
        assert_eq!(a.scratch_for(1), Ok(13));
        a.count(0);
        a.count(0);
        assert_eq!(a.stages[0].written, 2);
        assert!(a.scratch_for(14).is_err(), "a backup db used for staging");
        assert!(a.scratch_for(16).is_err());
        let mut tight = Allocator::new(1, vec![]);
        assert!(tight.scratch_for(0).is_err());
    }
}
