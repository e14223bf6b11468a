//! End to end: `local.control_store` keeps the control store in a blob container (Azurite here):
//! the container is created when missing, nothing is kept in a directory store, and a wrong key,
//! a bad SAS token or an unreachable endpoint is a diagnostic on the attribute at configure time.
use anyhow::ensure;
use batchai_acceptance::{BlobStoreTarget, Workspace, cluster_c, newest_cli};
use control::records::keys;
use control_blob::azurite::{ACCOUNT_KEY, Azurite};

fn azurite() -> &'static Azurite {
    Azurite::shared().unwrap_or_else(|e| {
        panic!("these tests need Azurite: {e}; run `cargo xtask test`, which installs it")
    })
}

/// A workspace whose provider keeps its store in a new container of this process's Azurite.
fn workspace() -> anyhow::Result<Workspace> {
    let mut ws = Workspace::new(&newest_cli())?;
    ws.control_store = Some(BlobStoreTarget {
        container_url: azurite().container_url(&Azurite::unique_container("cs")),
        account_key: ACCOUNT_KEY.to_owned(),
    });
    Ok(ws)
}

/// Plans `provider_block` (the whole provider block) and returns what Terraform said; the plan
/// must fail.
fn failing_plan(provider_block: &str) -> anyhow::Result<String> {
    let ws = Workspace::new(&newest_cli())?;
    std::fs::write(
        ws.path().join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    batchai = {{ source = \"batchai/batchai\" }}\n  }}\n}}\n\n{provider_block}\n{}",
            cluster_c(1, "")
        ),
    )?;
    ws.init()?;
    let out = ws.run(&["plan", "-input=false", "-no-color"])?;
    ensure!(!out.status.success(), "the plan should fail");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn provider(root: &std::path::Path, store: &str) -> String {
    format!(
        "provider \"batchai\" {{\n  local {{\n    root = \"{}\"\n    control_store {{\n{store}\n    }}\n  }}\n}}\n",
        root.display()
    )
}

#[test]
fn the_container_is_created_and_holds_every_record() -> anyhow::Result<()> {
    let ws = workspace()?;
    ws.write_config(&cluster_c(1, ""))?;
    ws.init()?;
    ws.apply()?;
    let store = ws.store()?;
    ensure!(
        store.get(&keys::spec("c"))?.is_some(),
        "the cluster's spec is in the container"
    );
    ensure!(
        !store.list(&keys::nodes_prefix("c"))?.is_empty(),
        "its node registered in the container"
    );
    ensure!(
        !ws.root.join("store").exists(),
        "no directory store may be made beside a blob store"
    );
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    ensure!(
        store.list(&keys::cluster_prefix("c"))?.is_empty(),
        "destroy removes the cluster's records"
    );
    Ok(())
}

#[test]
fn a_sas_token_works_like_a_key() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let sas = Azurite::sas_token()?;
    let url = azurite().container_url(&Azurite::unique_container("sas"));
    std::fs::create_dir_all(ws.path())?;
    std::fs::write(
        ws.path().join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    batchai = {{ source = \"batchai/batchai\" }}\n  }}\n}}\n\n{}\n{}",
            provider(
                &ws.root,
                &format!(
                    "      blob_container_url = \"{url}\"\n      sas_token          = \"{sas}\""
                )
            ),
            cluster_c(1, "")
        ),
    )?;
    ws.init()?;
    ws.apply()?;
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}

#[test]
fn configuration_mistakes_are_diagnostics_on_the_attribute() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let url = azurite().container_url(&Azurite::unique_container("bad"));
    // A well-formed key that is not the account's.
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let said = failing_plan(&provider(
        root.path(),
        &format!(
            "      blob_container_url = \"{url}\"\n      account_key        = \"{wrong_key}\""
        ),
    ))?;
    ensure!(said.contains("unusable control store"), "{said}");
    ensure!(said.contains("account_key"), "points at the key: {said}");
    // Terraform quotes the configuration line it points at; the provider's own words never
    // repeat the key.
    let own_words: String = said
        .lines()
        .filter(|l| !l.contains("account_key"))
        .collect();
    ensure!(
        !own_words.contains(wrong_key),
        "the key is repeated: {said}"
    );

    // Nothing listens on port 9 (discard) here: an unreachable endpoint.
    let said = failing_plan(&provider(
        root.path(),
        &format!(
            "      blob_container_url = \"http://127.0.0.1:9/devstoreaccount1/unreachable\"\n      account_key        = \"{ACCOUNT_KEY}\""
        ),
    ))?;
    ensure!(said.contains("unusable control store"), "{said}");
    ensure!(
        said.contains("blob_container_url"),
        "points at the URL: {said}"
    );

    let said = failing_plan(&provider(
        root.path(),
        &format!("      blob_container_url = \"{url}\""),
    ))?;
    ensure!(
        said.contains("account_key") && said.contains("sas_token"),
        "names both ways to authenticate: {said}"
    );
    Ok(())
}
