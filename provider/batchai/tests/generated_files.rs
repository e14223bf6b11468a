//! Fails when `schemas/` or `docs/` drift from the code; `cargo xtask gen` regenerates them.
use std::path::Path;

#[test]
fn generated_files_are_up_to_date() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stale = Vec::new();
    for (path, want) in batchai::generated::render_all(&repo) {
        let have = std::fs::read_to_string(repo.join(&path)).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}; run `cargo xtask gen` and commit the result"
    );
}

#[test]
fn every_served_schema_passes_terraform_internal_validate() {
    let schemas = tfplug::ProviderService::new(batchai::BatchAi).schemas();
    let all = std::iter::once(("provider".to_owned(), schemas.provider))
        .chain(schemas.resources)
        .chain(schemas.data_sources);
    for (name, schema) in all {
        assert_eq!(schema.validate(), Ok(()), "{name}");
    }
}
