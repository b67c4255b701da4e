//! The contract with the controller: every environment name the controller
//! can set in a Job (`vertice_crds::agent_env::ALL`) is the `env` of some
//! argument of the agent's command line, so a misspelt name fails here
//! rather than as a flag silently unset in a real cluster.

use std::collections::BTreeSet;

use clap::CommandFactory;
use vertice_agent::cli::Cli;
use vertice_crds::agent_env;

/// Every `env` of every argument, through all subcommands.
fn read_names(command: &clap::Command, names: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            names.insert(env.to_string_lossy().into_owned());
        }
    }
    for sub in command.get_subcommands() {
        read_names(sub, names);
    }
}

#[test]
fn every_name_the_controller_sets_is_read_by_a_flag() {
    let mut command = Cli::command();
    // Global arguments reach the subcommands only once built.
    command.build();
    let mut names = BTreeSet::new();
    read_names(&command, &mut names);
    let unread: Vec<_> = agent_env::ALL
        .iter()
        .filter(|n| !names.contains(**n))
        .collect();
    assert!(
        unread.is_empty(),
        "set by the controller, read by no flag: {unread:?}"
    );
}

#[test]
fn the_secrets_dir_defaults_to_where_the_controller_mounts_them() {
    let command = Cli::command();
    let backup = command.find_subcommand("backup").expect("a backup command");
    let secrets_dir = backup
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == agent_env::SECRETS_DIR))
        .expect("--secrets-dir");
    let defaults: Vec<_> = secrets_dir.get_default_values().iter().collect();
    assert_eq!(defaults, [agent_env::SECRETS_MOUNT]);
}
