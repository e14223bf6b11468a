//! Which method wins for each combination of settings and environment variables: azurerm's
//! order (certificate, secret, OIDC token, Azure DevOps, GitHub, managed identity, CLI) with
//! its `use_*` flags.

#![allow(clippy::unwrap_used)]

use azure_auth::{AuthSettings, MapEnv, Method, Outcome, plan};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// Files the file-path variables point at, and a directory with an executable `az`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [
            ("secret", "file-secret\n"),
            ("client-id", CLIENT),
            ("oidc", "file-oidc-token"),
            ("aks", "aks-token"),
            ("cert.pem", "not read when planning"),
        ] {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("az"), "#!/bin/sh\nexit 1\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join("az"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Replaces the `@name` placeholders of a row with the fixture's paths.
    fn expand(&self, value: &str) -> String {
        match value.strip_prefix('@') {
            Some("az") => self.path("bin"),
            Some(name) => self.path(name),
            None => value.to_owned(),
        }
    }
}

const SP: &[(&str, &str)] = &[("ARM_TENANT_ID", TENANT), ("ARM_CLIENT_ID", CLIENT)];
const AZ: (&str, &str) = ("PATH", "@az");

struct Row {
    name: &'static str,
    env: Vec<(&'static str, &'static str)>,
    settings: AuthSettings,
    want: Option<Method>,
}

fn row(name: &'static str, env: &[(&'static str, &'static str)], want: Option<Method>) -> Row {
    Row {
        name,
        env: env.to_vec(),
        settings: AuthSettings::default(),
        want,
    }
}

fn with_sp(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    SP.iter().chain(extra).copied().collect()
}

fn rows() -> Vec<Row> {
    use Method::*;
    let gh = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/token"),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "gh-request"),
    ];
    let ado = [
        ("SYSTEM_OIDCREQUESTURI", "https://ado.example/oidctoken"),
        ("SYSTEM_ACCESSTOKEN", "ado-request"),
        ("ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID", "conn"),
    ];
    let cat = |a: &[(&'static str, &'static str)], b: &[(&'static str, &'static str)]| {
        a.iter().chain(b).copied().collect::<Vec<_>>()
    };
    vec![
        row("nothing, no az", &[], None),
        row(
            "nothing, az on PATH: the cli (use_cli defaults to true)",
            &[AZ],
            Some(AzureCli),
        ),
        row("cli turned off", &[AZ, ("ARM_USE_CLI", "false")], None),
        row(
            "secret",
            &with_sp(&[("ARM_CLIENT_SECRET", "s")]),
            Some(ClientSecret),
        ),
        row(
            "secret without tenant",
            &[("ARM_CLIENT_ID", CLIENT), ("ARM_CLIENT_SECRET", "s"), AZ],
            Some(AzureCli),
        ),
        row(
            "secret without client id",
            &[("ARM_TENANT_ID", TENANT), ("ARM_CLIENT_SECRET", "s")],
            None,
        ),
        row(
            "secret from a file",
            &with_sp(&[("ARM_CLIENT_SECRET_FILE_PATH", "@secret")]),
            Some(ClientSecret),
        ),
        row(
            "client id from a file",
            &[
                ("ARM_TENANT_ID", TENANT),
                ("ARM_CLIENT_ID_FILE_PATH", "@client-id"),
                ("ARM_CLIENT_SECRET", "s"),
            ],
            Some(ClientSecret),
        ),
        row(
            "certificate path beats secret",
            &with_sp(&[
                ("ARM_CLIENT_CERTIFICATE_PATH", "@cert.pem"),
                ("ARM_CLIENT_SECRET", "s"),
            ]),
            Some(ClientCertificate),
        ),
        row(
            "certificate data beats secret",
            &with_sp(&[
                ("ARM_CLIENT_CERTIFICATE", "aGVsbG8="),
                ("ARM_CLIENT_SECRET", "s"),
            ]),
            Some(ClientCertificate),
        ),
        row(
            "certificate without tenant",
            &[
                ("ARM_CLIENT_ID", CLIENT),
                ("ARM_CLIENT_CERTIFICATE_PATH", "@cert.pem"),
            ],
            None,
        ),
        row(
            "oidc token without use_oidc",
            &with_sp(&[("ARM_OIDC_TOKEN", "t"), AZ]),
            Some(AzureCli),
        ),
        row(
            "oidc token with use_oidc",
            &with_sp(&[("ARM_OIDC_TOKEN", "t"), ("ARM_USE_OIDC", "true")]),
            Some(OidcToken),
        ),
        row(
            "oidc token file with use_oidc",
            &with_sp(&[("ARM_OIDC_TOKEN_FILE_PATH", "@oidc"), ("ARM_USE_OIDC", "1")]),
            Some(OidcToken),
        ),
        row(
            "secret beats oidc token",
            &with_sp(&[
                ("ARM_OIDC_TOKEN", "t"),
                ("ARM_USE_OIDC", "true"),
                ("ARM_CLIENT_SECRET", "s"),
            ]),
            Some(ClientSecret),
        ),
        row(
            "oidc on but nothing to federate with",
            &with_sp(&[("ARM_USE_OIDC", "true"), AZ]),
            Some(AzureCli),
        ),
        row(
            "github with use_oidc",
            &cat(&with_sp(&[("ARM_USE_OIDC", "true")]), &gh),
            Some(GitHubOidc),
        ),
        row(
            "github without use_oidc",
            &cat(&with_sp(&[AZ]), &gh),
            Some(AzureCli),
        ),
        row(
            "github through ARM_OIDC_REQUEST_*",
            &with_sp(&[
                ("ARM_USE_OIDC", "true"),
                ("ARM_OIDC_REQUEST_URL", "https://gh.example/token"),
                ("ARM_OIDC_REQUEST_TOKEN", "gh-request"),
            ]),
            Some(GitHubOidc),
        ),
        row(
            "github request url without its token",
            &with_sp(&[
                ("ARM_USE_OIDC", "true"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/token"),
            ]),
            None,
        ),
        row(
            "ado with use_oidc",
            &cat(&with_sp(&[("ARM_USE_OIDC", "true")]), &ado),
            Some(AdoPipelineOidc),
        ),
        row(
            "ado through ARM_OIDC_AZURE_SERVICE_CONNECTION_ID",
            &with_sp(&[
                ("ARM_USE_OIDC", "true"),
                ("SYSTEM_OIDCREQUESTURI", "https://ado.example/oidctoken"),
                ("SYSTEM_ACCESSTOKEN", "ado-request"),
                ("ARM_OIDC_AZURE_SERVICE_CONNECTION_ID", "conn"),
            ]),
            Some(AdoPipelineOidc),
        ),
        row(
            "ado connection beats github on the same request url",
            &cat(
                &cat(&with_sp(&[("ARM_USE_OIDC", "true")]), &gh),
                &[("ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID", "conn")],
            ),
            Some(AdoPipelineOidc),
        ),
        row(
            "oidc token beats ado and github",
            &cat(
                &cat(
                    &with_sp(&[("ARM_USE_OIDC", "true"), ("ARM_OIDC_TOKEN", "t")]),
                    &gh,
                ),
                &ado,
            ),
            Some(OidcToken),
        ),
        row("ado without use_oidc", &cat(&with_sp(&[]), &ado), None),
        row(
            "aks workload identity",
            &[
                ("ARM_USE_AKS_WORKLOAD_IDENTITY", "true"),
                ("AZURE_CLIENT_ID", CLIENT),
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_FEDERATED_TOKEN_FILE", "@aks"),
            ],
            Some(OidcToken),
        ),
        row(
            "aks variables without the flag",
            &[
                ("AZURE_CLIENT_ID", CLIENT),
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_FEDERATED_TOKEN_FILE", "@aks"),
                AZ,
            ],
            Some(AzureCli),
        ),
        row(
            "aks flag turns github on as well",
            &cat(&with_sp(&[("ARM_USE_AKS_WORKLOAD_IDENTITY", "true")]), &gh),
            Some(GitHubOidc),
        ),
        row("msi", &[("ARM_USE_MSI", "true")], Some(ManagedIdentity)),
        row(
            "msi beats the cli",
            &[("ARM_USE_MSI", "true"), AZ],
            Some(ManagedIdentity),
        ),
        row(
            "msi with a client id (user-assigned)",
            &with_sp(&[("ARM_USE_MSI", "true")]),
            Some(ManagedIdentity),
        ),
        row("msi false", &[("ARM_USE_MSI", "false"), AZ], Some(AzureCli)),
        row(
            "secret beats msi",
            &with_sp(&[("ARM_USE_MSI", "true"), ("ARM_CLIENT_SECRET", "s")]),
            Some(ClientSecret),
        ),
        row(
            "github beats msi",
            &cat(
                &with_sp(&[("ARM_USE_MSI", "true"), ("ARM_USE_OIDC", "true")]),
                &gh,
            ),
            Some(GitHubOidc),
        ),
        row(
            "github without use_oidc falls to msi",
            &cat(&with_sp(&[("ARM_USE_MSI", "true")]), &gh),
            Some(ManagedIdentity),
        ),
        Row {
            name: "block use_msi = false overrides ARM_USE_MSI",
            env: vec![("ARM_USE_MSI", "true"), AZ],
            settings: AuthSettings {
                use_msi: Some(false),
                ..AuthSettings::default()
            },
            want: Some(AzureCli),
        },
        Row {
            name: "block use_cli = false overrides the default",
            env: vec![AZ],
            settings: AuthSettings {
                use_cli: Some(false),
                ..AuthSettings::default()
            },
            want: None,
        },
        Row {
            name: "block secret with tenant and client from the environment",
            env: SP.to_vec(),
            settings: AuthSettings {
                client_secret: Some("from-block".into()),
                ..AuthSettings::default()
            },
            want: Some(ClientSecret),
        },
        Row {
            name: "block use_oidc with ARM_OIDC_TOKEN",
            env: with_sp(&[("ARM_OIDC_TOKEN", "t")]),
            settings: AuthSettings {
                use_oidc: Some(true),
                ..AuthSettings::default()
            },
            want: Some(OidcToken),
        },
        Row {
            name: "block use_oidc = false overrides ARM_USE_OIDC",
            env: with_sp(&[("ARM_OIDC_TOKEN", "t"), ("ARM_USE_OIDC", "true")]),
            settings: AuthSettings {
                use_oidc: Some(false),
                ..AuthSettings::default()
            },
            want: None,
        },
    ]
}

#[test]
fn the_first_usable_method_in_azurerms_order_wins() {
    let fixture = Fixture::new();
    let rows = rows();
    assert!(rows.len() >= 35);
    let mut failures = Vec::new();
    for row in rows {
        let env: MapEnv = row
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), fixture.expand(v)))
            .collect();
        let plan = match plan(&row.settings, &env) {
            Ok(plan) => plan,
            Err(error) => {
                failures.push(format!("{}: plan failed: {error}", row.name));
                continue;
            }
        };
        if plan.chosen() != row.want {
            failures.push(format!(
                "{}: chose {:?}, want {:?} ({})",
                row.name,
                plan.chosen(),
                row.want,
                plan.considered()
            ));
            continue;
        }
        // Before the chosen one everything is skipped, after it nothing is tried.
        let chosen_at = row
            .want
            .map(|m| Method::ALL.iter().position(|x| *x == m).unwrap());
        for (i, c) in plan.considered().0.iter().enumerate() {
            let ok = match chosen_at {
                Some(at) if i < at => matches!(c.outcome, Outcome::Skipped(_)),
                Some(at) if i == at => c.outcome == Outcome::Chosen && c.configured,
                Some(_) => c.outcome == Outcome::NotTried,
                None => matches!(c.outcome, Outcome::Skipped(_)),
            };
            if !ok {
                failures.push(format!("{}: {c}", row.name));
            }
        }
        assert_eq!(plan.considered().0.len(), Method::ALL.len());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn skipped_methods_say_what_is_missing() {
    let env = MapEnv::new()
        .with("ARM_CLIENT_SECRET", "s")
        .with("ARM_CLIENT_ID", CLIENT)
        .with("ARM_USE_OIDC", "true")
        .with("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/token");
    let plan = plan(&AuthSettings::default(), &env).unwrap();
    assert_eq!(plan.chosen(), None);
    let text = plan.considered().to_string();
    for part in [
        "client secret: configured, skipped: ARM_TENANT_ID (tenant_id) not set",
        "oidc token: not configured, skipped: ARM_OIDC_TOKEN (oidc_token) and ARM_OIDC_TOKEN_FILE_PATH (oidc_token_file_path) not set",
        "azure devops oidc: not configured, skipped: ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID (ado_pipeline_service_connection_id) not set",
        "github actions oidc: not configured, skipped: ARM_OIDC_REQUEST_TOKEN (oidc_request_token) not set",
        "azure cli: configured, skipped: az not found on PATH",
    ] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert!(!text.contains("gh.example"), "{text}");
}

#[test]
fn request_variables_fall_back_in_azurerms_order() {
    // ARM_OIDC_REQUEST_URL beats ACTIONS_ID_TOKEN_REQUEST_URL beats SYSTEM_OIDCREQUESTURI:
    // visible through the plan only as "configured", so check that each alone is enough.
    for (url_var, token_var) in [
        ("ARM_OIDC_REQUEST_URL", "ARM_OIDC_REQUEST_TOKEN"),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        ),
        ("SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN"),
    ] {
        let env = MapEnv::new()
            .with("ARM_TENANT_ID", TENANT)
            .with("ARM_CLIENT_ID", CLIENT)
            .with("ARM_USE_OIDC", "true")
            .with(url_var, "https://x.example/t")
            .with(token_var, "r");
        let plan = plan(&AuthSettings::default(), &env).unwrap();
        assert_eq!(plan.chosen(), Some(Method::GitHubOidc), "{url_var}");
    }
}
