//! `deploy/crds/` must be exactly what `crdgen` writes from the types.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    let rendered = vertice_crds::crd_yaml::all().expect("render CRDs");
    for (file, yaml) in &rendered {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == *yaml,
            "deploy/crds/{file} is stale: run `cargo run -p vertice-crds --bin crdgen` and commit the result"
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/crds exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = rendered.into_iter().map(|(f, _)| f).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "deploy/crds holds a CRD no type generates"
    );
}
