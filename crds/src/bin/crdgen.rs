//! Writes the CustomResourceDefinitions to `deploy/crds/` (or the directory
//! given as the first argument). Run after changing a type in this crate.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // deploy/crds, and the Helm chart's copy (a test keeps them identical);
    // or the one directory given.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dirs = match std::env::args_os().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            root.join("deploy/crds"),
            root.join("deploy/helm/vertice/crds"),
        ],
    };
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, yaml) in vertice_crds::crd_yaml::all()? {
            let path = dir.join(&file);
            std::fs::write(&path, yaml)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
