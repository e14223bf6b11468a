//! The committed generated files, `schemas/` and `docs/`, rendered from the provider's schema and
//! `examples/`; `cargo xtask gen` writes them and a test fails when they drift.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};
use tfplug::docs::{Kind, Page, render, render_function};

use crate::{ADDRESS, BatchAi};

/// Every generated file, by path relative to the repository root.
pub fn render_all(repo: &Path) -> BTreeMap<PathBuf, String> {
    let service = tfplug::ProviderService::new(BatchAi);
    let schemas = service.schemas();
    let mut files = BTreeMap::new();

    let document = json!({
        "format_version": "1.0",
        "provider_schemas": {
            ADDRESS: {
                "provider": schemas.provider.to_terraform_json(),
                "resource_schemas": schemas.resources.iter()
                    .map(|(n, s)| (n.clone(), s.to_terraform_json())).collect::<Map<_, _>>(),
                "data_source_schemas": schemas.data_sources.iter()
                    .map(|(n, s)| (n.clone(), s.to_terraform_json())).collect::<Map<_, _>>(),
                "functions": schemas.functions.iter()
                    .map(|(n, s)| (n.clone(), s.to_terraform_json())).collect::<Map<_, _>>(),
            }
        }
    });
    let mut text = serde_json::to_string_pretty(&sorted(document)).unwrap_or_default();
    text.push('\n');
    files.insert(PathBuf::from("schemas/batchai.json"), text);

    let read = |p: &str| std::fs::read_to_string(repo.join(p)).ok();
    let provider_example = read("examples/provider/provider.tf");
    let functions: Vec<(String, String)> = schemas
        .functions
        .iter()
        .map(|(name, signature)| (name.clone(), signature.summary.clone()))
        .collect();
    files.insert(
        PathBuf::from("docs/index.md"),
        render(&Page {
            kind: Kind::Provider,
            name: "batchai",
            provider: "batchai",
            schema: &schemas.provider,
            example: provider_example.as_deref(),
            import: None,
            functions: &functions,
        }),
    );
    for (name, schema) in &schemas.resources {
        let example = read(&format!("examples/resources/{name}/resource.tf"));
        let import = read(&format!("examples/resources/{name}/import.sh"));
        files.insert(
            PathBuf::from(format!("docs/resources/{}.md", short(name))),
            render(&Page {
                kind: Kind::Resource,
                name,
                provider: "batchai",
                schema,
                example: example.as_deref(),
                import: import.as_deref(),
                functions: &[],
            }),
        );
    }
    for (name, schema) in &schemas.data_sources {
        let example = read(&format!("examples/data-sources/{name}/data-source.tf"));
        files.insert(
            PathBuf::from(format!("docs/data-sources/{}.md", short(name))),
            render(&Page {
                kind: Kind::DataSource,
                name,
                provider: "batchai",
                schema,
                example: example.as_deref(),
                import: None,
                functions: &[],
            }),
        );
    }
    for (name, signature) in &schemas.functions {
        files.insert(
            PathBuf::from(format!("docs/functions/{name}.md")),
            render_function("batchai", name, signature),
        );
    }
    files
}

/// Registry pages drop the provider prefix: `docs/resources/file_server.md`.
fn short(name: &str) -> &str {
    name.strip_prefix("batchai_").unwrap_or(name)
}

/// Terraform prints JSON with sorted keys; so do we, so diffs stay readable.
fn sorted(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
