//! The client against an in-process fake ARM (plain HTTP with the test-only `allow_http`):
//! throttling storms, deadlines, transient failures, failed operations, each way of following a
//! long-running operation, paging, conflicts, cancellation by drop, and the per-resource lock.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arm::models::authorization::{RoleAssignment, RoleAssignmentProperties};
use arm::{ArmClient, ArmClientOptions, ArmErrorKind, Instant, ResourceId, RoleAssignmentOutcome};
use serde_json::json;
use support::{FakeArm, FixedCredential, Reply, vmss_path};

fn vmss_body(state: &str, capacity: i64) -> serde_json::Value {
    json!({
        "id": vmss_path("gpu"),
        "name": "gpu",
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": "westeurope",
        "sku": {"name": "Standard_NC24ads_A100_v4", "tier": "Standard", "capacity": capacity},
        "properties": {"provisioningState": state, "orchestrationMode": "Uniform", "uniqueId": "u-1"}
    })
}

fn deadline_in(seconds: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(seconds))
}

#[tokio::test]
async fn a_429_storm_is_waited_out_and_every_request_counted() {
    let fake = FakeArm::start(|_, n| match n {
        0 => Reply::error(429, "TooManyRequests", "slow down").header("Retry-After", "1"),
        1 | 2 => Reply::error(429, "TooManyRequests", "slow down").header("Retry-After", "0"),
        _ => Reply::json(200, vmss_body("Succeeded", 2)),
    })
    .await;
    let credential = Arc::new(FixedCredential::default());
    let client = fake.client(Arc::clone(&credential));
    let got = client
        .get_vmss("rg", "gpu", deadline_in(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.sku.unwrap().capacity, Some(2));
    assert_eq!(fake.seen().len(), 4);
    assert_eq!(client.requests().count(), 4);
    let statuses: Vec<_> = client
        .requests()
        .records()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [Some(429), Some(429), Some(429), Some(200)]);
    // Every request carried the bearer token, fetched once; one correlation ID for the call.
    let seen = fake.seen();
    assert!(
        seen.iter()
            .all(|s| s.header("authorization") == Some("Bearer token-1"))
    );
    assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    let correlation = seen[0].header("x-ms-correlation-request-id").unwrap();
    assert!(
        seen.iter()
            .all(|s| s.header("x-ms-correlation-request-id") == Some(correlation))
    );
    assert!(
        seen[0].target.contains("api-version=2026-04-01"),
        "{}",
        seen[0].target
    );
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_fails_at_once_and_says_both_waits() {
    let fake = FakeArm::start(|_, _| {
        Reply::error(429, "TooManyRequests", "throttled")
            .header("Retry-After", "1200")
            .header("x-ms-correlation-request-id", "corr-429")
    })
    .await;
    let client = fake.client(Arc::new(FixedCredential::default()));
    let error = client
        .update_vmss_capacity("rg", "gpu", 3, deadline_in(300))
        .await
        .unwrap_err();
    match error.kind() {
        ArmErrorKind::Deadline { asked, left, .. } => {
            assert_eq!(*asked, Duration::from_secs(1200));
            assert!(*left <= Duration::from_secs(300));
        }
        other => panic!("not a deadline: {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.starts_with("PATCH virtualMachineScaleSets/gpu: throttled (429): ARM asked to wait 1200 s but the operation's timeout ends in 29"),
        "{text}"
    );
    assert!(text.contains("TooManyRequests"), "{text}");
    assert_eq!(error.correlation_id(), Some("corr-429"));
    assert_eq!(fake.seen().len(), 1, "no second request");
}

#[tokio::test]
async fn transient_5xx_and_408_are_retried_until_success() {
    let fake = FakeArm::start(|_, n| match n {
        0 => Reply::error(500, "InternalServerError", "oops"),
        1 => Reply::new(503).body("<html>unavailable</html>"),
        2 => Reply::new(408),
        _ => Reply::json(200, vmss_body("Succeeded", 1)),
    })
    .await;
    let client = fake.client(Arc::new(FixedCredential::default()));
    assert!(client.get_vmss("rg", "gpu", None).await.unwrap().is_some());
    assert_eq!(fake.seen().len(), 4);
}

#[tokio::test]
async fn retries_end_after_max_retries_with_the_last_answer() {
    let fake = FakeArm::start(|_, _| Reply::error(503, "ServiceUnavailable", "down")).await;
    let options = ArmClientOptions {
        max_retries: 2,
        ..ArmClientOptions::for_tests()
    };
    let client = fake.client_with(Arc::new(FixedCredential::default()), options);
    let error = client.get_vmss("rg", "gpu", None).await.unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(error.code(), Some("ServiceUnavailable"));
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn a_failed_operation_is_an_error_with_its_code_and_target() {
    let fake = Arc::new(std::sync::OnceLock::<String>::new());
    let base = Arc::clone(&fake);
    let server = FakeArm::start(move |request, _| {
        let status_url = format!("{}operations/op1", base.get().unwrap());
        match (request.method.as_str(), request.path()) {
            ("PUT", _) => Reply::json(201, vmss_body("Creating", 2))
                .header("Azure-AsyncOperation", status_url)
                .header("Retry-After", "0"),
            ("GET", "/operations/op1") => Reply::json(
                200,
                json!({"status": "Failed", "error": {"code": "AllocationFailed", "message": "no capacity for the size", "target": "sku.name"}}),
            )
            .header("x-ms-correlation-request-id", "corr-1"),
            _ => Reply::new(500),
        }
    })
    .await;
    fake.set(server.endpoint.clone()).unwrap();
    let client = server.client(Arc::new(FixedCredential::default()));
    let error = client
        .create_or_update_vmss("rg", "gpu", &sample_vmss(), deadline_in(60))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        &ArmErrorKind::OperationFailed {
            status: "Failed".into()
        }
    );
    assert_eq!(error.code(), Some("AllocationFailed"));
    assert_eq!(error.target(), Some("sku.name"));
    assert_eq!(
        error.to_string(),
        "PUT virtualMachineScaleSets/gpu: operation failed AllocationFailed: no capacity for the size (target sku.name; correlation id corr-1)"
    );
    assert_eq!(
        server.calls(),
        [
            format!("PUT {}", vmss_path("gpu")),
            "GET /operations/op1".into()
        ]
    );
}

#[tokio::test]
async fn an_async_operation_is_polled_then_the_resource_read() {
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let at = Arc::clone(&base);
    let server =
        FakeArm::start(
            move |request, n| match (request.method.as_str(), request.path()) {
                ("PUT", _) => Reply::json(201, vmss_body("Creating", 2)).header(
                    "Azure-AsyncOperation",
                    format!("{}operations/op2", at.get().unwrap()),
                ),
                ("GET", "/operations/op2") if n < 3 => {
                    Reply::json(200, json!({"status": "InProgress"}))
                }
                ("GET", "/operations/op2") => Reply::json(200, json!({"status": "succeeded"})),
                ("GET", _) => Reply::json(200, vmss_body("Succeeded", 2)),
                _ => Reply::new(500),
            },
        )
        .await;
    base.set(server.endpoint.clone()).unwrap();
    let client = server.client(Arc::new(FixedCredential::default()));
    let got = client
        .create_or_update_vmss("rg", "gpu", &sample_vmss(), None)
        .await
        .unwrap();
    assert_eq!(
        got.properties.unwrap().provisioning_state.as_deref(),
        Some("Succeeded")
    );
    let path = vmss_path("gpu");
    assert_eq!(
        server.calls(),
        [
            format!("PUT {path}"),
            "GET /operations/op2".into(),
            "GET /operations/op2".into(),
            "GET /operations/op2".into(),
            format!("GET {path}"),
        ]
    );
    // The body sent is exactly the settable properties.
    let sent = server.seen()[0].json();
    assert_eq!(sent, serde_json::to_value(sample_vmss()).unwrap());
    assert!(sent.get("id").is_none() && sent["properties"].get("provisioningState").is_none());
}

#[tokio::test]
async fn a_put_without_status_headers_polls_provisioning_state() {
    let server = FakeArm::start(|request, n| match (request.method.as_str(), n) {
        ("PUT", _) => Reply::json(201, vmss_body("Creating", 2)),
        ("GET", 1) => Reply::json(200, vmss_body("Updating", 2)),
        ("GET", _) => Reply::json(200, vmss_body("Succeeded", 2)),
        _ => Reply::new(500),
    })
    .await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let got = client
        .create_or_update_vmss("rg", "gpu", &sample_vmss(), None)
        .await
        .unwrap();
    assert_eq!(
        got.properties.unwrap().provisioning_state.as_deref(),
        Some("Succeeded")
    );
    let path = vmss_path("gpu");
    assert_eq!(
        server.calls(),
        [
            format!("PUT {path}"),
            format!("GET {path}"),
            format!("GET {path}")
        ]
    );
}

#[tokio::test]
async fn a_provisioning_state_ending_failed_is_an_error() {
    let server = FakeArm::start(|request, _| match request.method.as_str() {
        "PUT" => Reply::json(201, vmss_body("Creating", 2)),
        _ => Reply::json(200, vmss_body("Failed", 2)),
    })
    .await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let error = client
        .create_or_update_vmss("rg", "gpu", &sample_vmss(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind(), ArmErrorKind::OperationFailed { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_delete_follows_location_202_202_204() {
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let at = Arc::clone(&base);
    let server = FakeArm::start(move |request, n| match (request.method.as_str(), n) {
        ("DELETE", _) => {
            Reply::new(202).header("Location", format!("{}results/del1", at.get().unwrap()))
        }
        ("GET", 1 | 2) => Reply::new(202),
        ("GET", _) => Reply::new(204),
        _ => Reply::new(500),
    })
    .await;
    base.set(server.endpoint.clone()).unwrap();
    let client = server.client(Arc::new(FixedCredential::default()));
    assert!(client.delete_vmss("rg", "gpu", None).await.unwrap());
    assert_eq!(
        server.calls(),
        [
            format!("DELETE {}", vmss_path("gpu")),
            "GET /results/del1".into(),
            "GET /results/del1".into(),
            "GET /results/del1".into(),
        ]
    );
}

#[tokio::test]
async fn absent_resources_are_none_on_get_and_false_on_delete() {
    let server = FakeArm::start(|_, _| Reply::error(404, "ResourceNotFound", "not here")).await;
    let client = server.client(Arc::new(FixedCredential::default()));
    assert!(client.get_vmss("rg", "gpu", None).await.unwrap().is_none());
    assert!(!client.delete_vm("rg", "fs", None).await.unwrap());
    assert!(
        client
            .get_user_assigned_identity("rg", "id", None)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn instance_lists_follow_next_link_across_pages() {
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let at = Arc::clone(&base);
    let server = FakeArm::start(move |request, _| {
        let instance = |id: &str, power: &str| {
            json!({
                "instanceId": id,
                "name": format!("gpu_{id}"),
                "location": "westeurope",
                "properties": {
                    "provisioningState": "Succeeded",
                    "osProfile": {"computerName": format!("gpu00000{id}")},
                    "instanceView": {"statuses": [
                        {"code": "ProvisioningState/succeeded"},
                        {"code": format!("PowerState/{power}")}
                    ]},
                    "unknownToUs": 7
                }
            })
        };
        let next = |page: &str| format!("{}page/{page}?api-version=2026-04-01&$skiptoken=x", at.get().unwrap());
        match request.path() {
            p if p.ends_with("/virtualMachines") => {
                Reply::json(200, json!({"value": [instance("0", "running")], "nextLink": next("2")}))
            }
            "/page/2" => Reply::json(200, json!({"value": [instance("3", "running"), instance("5", "starting")], "nextLink": next("3")})),
            "/page/3" => Reply::json(200, json!({"value": []})),
            _ => Reply::new(500),
        }
    })
    .await;
    base.set(server.endpoint.clone()).unwrap();
    let client = server.client(Arc::new(FixedCredential::default()));
    let instances = client.list_vmss_instances("rg", "gpu", None).await.unwrap();
    let ids: Vec<_> = instances
        .iter()
        .map(|i| i.instance_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["0", "3", "5"]);
    let third = instances[2].properties.as_ref().unwrap();
    let view = third.instance_view.as_ref().unwrap();
    assert_eq!(view.power_state(), Some("starting"));
    assert_eq!(view.provisioning_state(), Some("succeeded"));
    assert_eq!(third.extra["unknownToUs"], json!(7));
    assert_eq!(server.seen().len(), 3);
    assert!(
        server.seen()[0].target.contains("%24expand=instanceView")
            || server.seen()[0].target.contains("$expand=instanceView")
    );
}

#[tokio::test]
async fn a_conflict_with_another_operation_in_progress_is_retried() {
    let server = FakeArm::start(|request, n| match (request.method.as_str(), n) {
        ("PATCH", 0) => Reply::error(409, "AnotherOperationInProgress", "an operation is running"),
        ("PATCH", 1) => Reply::error(
            409,
            "OperationNotAllowed",
            "Operation 'scale' is not allowed because another operation is in progress.",
        ),
        ("PATCH", _) => Reply::json(200, vmss_body("Succeeded", 3)),
        _ => Reply::new(500),
    })
    .await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let got = client
        .update_vmss_capacity("rg", "gpu", 3, None)
        .await
        .unwrap();
    assert_eq!(got.sku.unwrap().capacity, Some(3));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].json(), json!({"sku": {"capacity": 3}}));
}

#[tokio::test]
async fn other_conflicts_are_errors_at_once() {
    let server = FakeArm::start(|_, _| Reply::error(409, "Conflict", "name taken")).await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let error = client
        .update_vmss_capacity("rg", "gpu", 3, None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("Conflict"));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn dropping_the_future_stops_further_requests_and_frees_the_lock() {
    let (first, arrived) = tokio::sync::oneshot::channel::<()>();
    let first = std::sync::Mutex::new(Some(first));
    let server = FakeArm::start(move |request, _| {
        if request.method == "PATCH" {
            if let Some(first) = first.lock().unwrap().take() {
                let _ = first.send(());
                return Reply::error(429, "TooManyRequests", "wait")
                    .header("retry-after-ms", "400");
            }
            return Reply::json(200, vmss_body("Succeeded", 5));
        }
        Reply::new(500)
    })
    .await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let running = {
        let client = client.clone();
        tokio::spawn(async move { client.update_vmss_capacity("rg", "gpu", 4, None).await })
    };
    arrived.await.unwrap();
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    // Longer than the Retry-After the dropped call was waiting out: it never sent again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server.seen().len(), 1);
    // Its lock on the scale set went with it: the next change goes through.
    let got = client
        .update_vmss_capacity("rg", "gpu", 5, deadline_in(10))
        .await
        .unwrap();
    assert_eq!(got.sku.unwrap().capacity, Some(5));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn mutations_of_one_scale_set_run_one_at_a_time() {
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let at = Arc::clone(&base);
    let polls = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    let server = FakeArm::start(move |request, n| match request.method.as_str() {
        "PATCH" => {
            let capacity = request.json()["sku"]["capacity"].as_i64().unwrap();
            Reply::json(200, vmss_body("Updating", capacity)).header(
                "Azure-AsyncOperation",
                format!("{}operations/scale{capacity}?n={n}", at.get().unwrap()),
            )
        }
        "GET" if request.path().starts_with("/operations/") => {
            let mut polls = polls.lock().unwrap();
            let count = polls.entry(request.path().to_owned()).or_default();
            *count += 1;
            let status = if *count < 3 {
                "InProgress"
            } else {
                "Succeeded"
            };
            Reply::json(200, json!({"status": status}))
        }
        "GET" => Reply::json(200, vmss_body("Succeeded", 1)),
        _ => Reply::new(500),
    })
    .await;
    base.set(server.endpoint.clone()).unwrap();
    let client = server.client(Arc::new(FixedCredential::default()));
    let (a, b) = tokio::join!(
        client.update_vmss_capacity("rg", "gpu", 2, None),
        client.update_vmss_capacity("rg", "gpu", 3, None),
    );
    a.unwrap();
    b.unwrap();
    // Each PATCH is followed by its own three polls and final GET before the other starts.
    let calls: Vec<String> = server
        .calls()
        .into_iter()
        .map(|c| {
            c.split(' ').next().unwrap().to_owned()
                + if c.contains("/operations/") {
                    " status"
                } else {
                    ""
                }
        })
        .collect();
    let one = ["PATCH", "GET status", "GET status", "GET status", "GET"];
    assert_eq!(calls.len(), 10, "{calls:?}");
    assert_eq!(&calls[..5], one, "{calls:?}");
    assert_eq!(&calls[5..], one, "{calls:?}");
}

#[tokio::test]
async fn low_ratelimit_headroom_delays_the_next_mutation() {
    let server = FakeArm::start(|_, _| {
        Reply::json(200, vmss_body("Succeeded", 1)).header(
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Compute/PutVMScaleSet3Min;2,Microsoft.Compute/PutVMScaleSet30Min;500",
        )
    })
    .await;
    let options = ArmClientOptions {
        ratelimit_pause: Duration::from_secs(30),
        ..ArmClientOptions::for_tests()
    };
    let client = server.client_with(Arc::new(FixedCredential::default()), options);
    client.get_vmss("rg", "gpu", None).await.unwrap();
    // Reads are not held back...
    client.get_vmss("rg", "gpu", deadline_in(5)).await.unwrap();
    // ...but the next mutation would wait 30 s, which a 5 s deadline cannot.
    let error = client
        .update_vmss_capacity("rg", "gpu", 2, deadline_in(5))
        .await
        .unwrap_err();
    match error.kind() {
        ArmErrorKind::Deadline { reason, .. } => assert_eq!(*reason, "throttling headroom ran low"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn role_assignment_exists_counts_as_success() {
    let server = FakeArm::start(|_, n| match n {
        0 => Reply::json(201, json!({
            "id": "/x/providers/Microsoft.Authorization/roleAssignments/g1",
            "name": "g1",
            "properties": {"roleDefinitionId": "r", "principalId": "p", "scope": "/x", "createdOn": "2026-01-01T00:00:00Z"}
        })),
        _ => Reply::error(409, "RoleAssignmentExists", "The role assignment already exists."),
    })
    .await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let container = ResourceId::new(
        "sub",
        "rg",
        "Microsoft.Storage",
        "storageAccounts",
        "mlctrl",
    )
    .child("blobServices", "default")
    .child("containers", "control");
    let body = RoleAssignment {
        properties: RoleAssignmentProperties {
            role_definition_id: client
                .role_definition_id(arm::models::authorization::STORAGE_BLOB_DATA_CONTRIBUTOR),
            principal_id: "principal-1".into(),
            principal_type: Some("ServicePrincipal".into()),
            ..RoleAssignmentProperties::default()
        },
        ..RoleAssignment::default()
    };
    let created = client
        .create_role_assignment(&container.to_string(), "g1", &body, None)
        .await
        .unwrap();
    assert!(
        matches!(created, RoleAssignmentOutcome::Created(ref a) if a.properties.scope.as_deref() == Some("/x"))
    );
    let again = client
        .create_role_assignment(&container.to_string(), "g1", &body, None)
        .await
        .unwrap();
    assert_eq!(again, RoleAssignmentOutcome::AlreadyExists);
    let seen = server.seen();
    assert_eq!(
        seen[0].path(),
        format!("{container}/providers/Microsoft.Authorization/roleAssignments/g1")
    );
    assert!(seen[0].target.contains("api-version=2022-04-01"));
    assert_eq!(
        seen[0].json(),
        json!({"properties": {
            "roleDefinitionId": "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe",
            "principalId": "principal-1",
            "principalType": "ServicePrincipal"
        }})
    );
}

#[tokio::test]
async fn delete_instances_posts_the_ids_and_follows_the_operation() {
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let at = Arc::clone(&base);
    let server = FakeArm::start(move |request, _| match request.method.as_str() {
        "POST" => Reply::new(202)
            .header("Location", format!("{}results/di", at.get().unwrap()))
            .header(
                "Azure-AsyncOperation",
                format!("{}operations/di", at.get().unwrap()),
            ),
        _ if request.path() == "/operations/di" => Reply::json(200, json!({"status": "Succeeded"})),
        _ if request.path() == "/results/di" => Reply::new(200),
        _ => Reply::new(500),
    })
    .await;
    base.set(server.endpoint.clone()).unwrap();
    let client = server.client(Arc::new(FixedCredential::default()));
    client
        .delete_vmss_instances("rg", "gpu", &["3".into(), "5".into()], false, None)
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].path(), format!("{}/delete", vmss_path("gpu")));
    assert!(
        seen[0].target.contains("forceDeletion=false"),
        "{}",
        seen[0].target
    );
    assert_eq!(seen[0].json(), json!({"instanceIds": ["3", "5"]}));
    assert_eq!(
        server.calls()[1..],
        [
            "GET /operations/di".to_string(),
            "GET /results/di".to_string()
        ]
    );
}

#[tokio::test]
async fn status_urls_on_another_host_are_refused() {
    let server =
        FakeArm::start(|_, _| Reply::new(202).header("Location", "http://169.254.169.254/steal"))
            .await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let error = client.delete_vm("rg", "fs", None).await.unwrap_err();
    assert_eq!(error.kind(), &ArmErrorKind::Invalid);
    assert!(
        error.to_string().contains("not sending the token there"),
        "{error}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn plain_http_needs_the_test_only_option() {
    let credential: Arc<FixedCredential> = Arc::new(FixedCredential::default());
    let error = ArmClient::new(
        "http://127.0.0.1:1/",
        "sub",
        credential,
        "https://management.azure.com/.default",
        ArmClientOptions::default(),
    )
    .unwrap_err();
    assert_eq!(error.kind(), &ArmErrorKind::Invalid);
    assert!(error.to_string().contains("allow_http"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_after_retries() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ArmClientOptions {
        max_retries: 2,
        ..ArmClientOptions::for_tests()
    };
    let client = ArmClient::new(
        &format!("http://127.0.0.1:{port}/"),
        "sub",
        Arc::new(FixedCredential::default()),
        "scope",
        options,
    )
    .unwrap();
    let error = client.get_vmss("rg", "gpu", None).await.unwrap_err();
    assert_eq!(error.kind(), &ArmErrorKind::Transport);
    assert_eq!(client.requests().count(), 3);
    assert!(
        client
            .requests()
            .records()
            .iter()
            .all(|r| r.status.is_none())
    );
}

fn sample_vmss() -> arm::models::compute::VirtualMachineScaleSet {
    serde_json::from_value(json!({
        "location": "westeurope",
        "sku": {"name": "Standard_NC24ads_A100_v4", "tier": "Standard", "capacity": 2},
        "properties": {"orchestrationMode": "Uniform", "upgradePolicy": {"mode": "Manual"}, "overprovision": false}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_refused_cached_token_is_renewed_once_and_the_user_agent_carries_the_suffix() {
    let server = FakeArm::start(|request, _| {
        if request.header("authorization") == Some("Bearer token-1") {
            Reply::error(401, "InvalidAuthenticationToken", "expired")
        } else {
            Reply::json(200, vmss_body("Succeeded", 1))
        }
    })
    .await;
    let credential = Arc::new(FixedCredential::default());
    let options = ArmClientOptions {
        user_agent_suffix: Some("terraform-provider-batchai/0.1.0".into()),
        ..ArmClientOptions::for_tests()
    };
    let client = server.client_with(Arc::clone(&credential), options);
    // The first call fetches token-1 fresh: a fresh token refused is the caller's 401.
    let error = client.get_vmss("rg", "gpu", None).await.unwrap_err();
    assert_eq!(error.code(), Some("InvalidAuthenticationToken"));
    // The second uses the cached token-1, is refused, and tries once more with token-2.
    assert!(client.get_vmss("rg", "gpu", None).await.unwrap().is_some());
    assert_eq!(credential.calls.load(Ordering::SeqCst), 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].header("authorization"), Some("Bearer token-2"));
    let agent = seen[0].header("user-agent").unwrap();
    assert!(
        agent.ends_with(" terraform-provider-batchai/0.1.0"),
        "{agent}"
    );
    assert_eq!(seen[0].header("accept"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_bridge_runs_a_call_from_a_plain_thread() {
    let server = FakeArm::start(|_, _| Reply::json(200, vmss_body("Succeeded", 7))).await;
    let client = server.client(Arc::new(FixedCredential::default()));
    let capacity = tokio::task::spawn_blocking(move || {
        arm::blocking::block_on(async move { client.get_vmss("rg", "gpu", None).await })
            .unwrap()
            .unwrap()
            .unwrap()
            .sku
            .unwrap()
            .capacity
    })
    .await
    .unwrap();
    assert_eq!(capacity, Some(7));
}
