//! A `sql` hook on Redis: the statement is one command, split into words
//! the way `redis-cli` splits them.

use super::target::RedisTarget;
use crate::error::{Error, Result};

/// Runs `statement` as one Redis command on `target`.
pub async fn run_statement(
    target: &RedisTarget,
    statement: &str,
    password: Option<&str>,
) -> Result<()> {
    let words = split_words(statement)?;
    let target = target.clone();
    let password = password.map(str::to_string);
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut conn = super::live_restore::connect(&target, password.as_deref())
            .map_err(|e| Error::hook(e.to_string()))?;
        let mut cmd = redis::cmd(&words[0]);
        for word in &words[1..] {
            cmd.arg(word);
        }
        cmd.query::<redis::Value>(&mut conn)
            .map(|_| ())
            .map_err(|e| Error::hook(e.to_string()))
    })
    .await
    .map_err(|e| Error::hook(format!("sql hook task: {e}")))?
}

/// Splits a Redis command into words; single or double quotes keep spaces.
fn split_words(statement: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in statement.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::usage(
            "sql hook: unbalanced quote in the Redis command",
        ));
    }
    if in_word {
        words.push(current);
    }
    if words.is_empty() {
        return Err(Error::usage("sql hook: the statement is empty"));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_commands_split_like_redis_cli() {
        assert_eq!(
            split_words("CONFIG SET appendfsync no").expect("ok"),
            ["CONFIG", "SET", "appendfsync", "no"]
        );
        assert_eq!(
            split_words("SET k 'a b' \"\"").expect("ok"),
            ["SET", "k", "a b", ""]
        );
        assert!(split_words("SET 'k").is_err());
        assert!(split_words("   ").is_err());
    }
}
