//! The long-running-operation poller against Microsoft's own ARM mock scenarios
//! (`@azure-tools/azure-http-specs`, served by `tsp-spector`): create via
//! `Azure-AsyncOperation`, POST actions whose result is at `Location`, delete via `Location`,
//! and an LRO whose result pages by `nextLink`. Spector routes by path; where a scenario has
//! no handler of its own it also compares the api-version and body and answers 4xx when they
//! differ (checked here with `checkNameAvailability`).
//!
//! Needs the Spector install `cargo xtask test` makes (or `BATCHAI_SPECTOR`); without it these
//! tests fail and say how to get it.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arm::spector::{RESOURCE_GROUP, SUBSCRIPTION_ID, Spector};
use arm::{ArmClient, ArmClientOptions, Instant, Method, Operation};
use serde_json::json;
use support::FixedCredential;

const API: &str = "2023-12-01-preview";
const NAMESPACE: &str = "Azure.ResourceManager.OperationTemplates";

/// One Spector for the whole file. The scenarios keep their state (poll counts) in the server,
/// so the tests take turns.
fn spector() -> &'static Spector {
    static SPECTOR: OnceLock<Result<Spector, String>> = OnceLock::new();
    match SPECTOR.get_or_init(|| Spector::start().map_err(|e| e.to_string())) {
        Ok(spector) => spector,
        Err(error) => panic!("{error}"),
    }
}

fn turn() -> &'static tokio::sync::Mutex<()> {
    static TURN: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    TURN.get_or_init(|| tokio::sync::Mutex::new(()))
}

fn client() -> ArmClient {
    ArmClient::new(
        spector().endpoint(),
        SUBSCRIPTION_ID,
        Arc::new(FixedCredential::default()),
        "https://management.azure.com/.default",
        ArmClientOptions::for_tests(),
    )
    .unwrap()
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(60))
}

fn order_path() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}/providers/{NAMESPACE}/orders/order1"
    )
}

/// `METHOD /path` of every request the client sent.
fn calls(client: &ArmClient) -> Vec<String> {
    client
        .requests()
        .records()
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status.unwrap_or(0)))
        .collect()
}

#[tokio::test]
async fn create_polls_the_async_operation_then_reads_the_resource() {
    let _turn = turn().lock().await;
    let client = client();
    let url = client.url(&order_path(), API, &[]);
    let body = json!({"location": "eastus", "properties": {"productId": "product1", "amount": 1}});
    let done = client
        .long_running(
            Method::Put,
            url,
            Some(body.to_string().as_bytes()),
            deadline(),
        )
        .await
        .unwrap()
        .unwrap();
    let order = done.json_value().unwrap();
    assert_eq!(order["properties"]["provisioningState"], "Succeeded");
    assert_eq!(order["properties"]["productId"], "product1");
    let operation = format!(
        "/subscriptions/{SUBSCRIPTION_ID}/providers/{NAMESPACE}/locations/eastus/operations/lro_create_aao"
    );
    assert_eq!(
        calls(&client),
        [
            format!("PUT {} 201", order_path()),
            format!("GET {operation} 200"),
            format!("GET {operation} 200"),
            format!("GET {} 200", order_path()),
        ]
    );
}

#[tokio::test]
async fn a_post_action_polls_the_async_operation_then_reads_location() {
    let _turn = turn().lock().await;
    let client = client();
    let url = client.url(&format!("{}/export", order_path()), API, &[]);
    let done = client
        .long_running(Method::Post, url, Some(br#"{"format":"csv"}"#), deadline())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        done.json_value().unwrap(),
        json!({"content": "order1,product1,1"})
    );
    let operations = format!(
        "/subscriptions/{SUBSCRIPTION_ID}/providers/{NAMESPACE}/locations/eastus/operations"
    );
    assert_eq!(
        calls(&client),
        [
            format!("POST {}/export 202", order_path()),
            format!("GET {operations}/lro_post_aao 200"),
            format!("GET {operations}/lro_post_aao 200"),
            format!("GET {operations}/lro_post_location 200"),
        ]
    );
}

#[tokio::test]
async fn a_post_whose_result_is_an_array_honours_retry_after() {
    let _turn = turn().lock().await;
    let client = client();
    let url = client.url(
        &format!("/subscriptions/{SUBSCRIPTION_ID}/providers/{NAMESPACE}/exportArray"),
        API,
        &[],
    );
    let done = client
        .long_running(Method::Post, url, Some(br#"{"format":"csv"}"#), deadline())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        done.json_value().unwrap(),
        json!([{"content": "order1,product1,1"}, {"content": "order2,product2,2"}])
    );
    assert_eq!(client.requests().count(), 4, "{:?}", calls(&client));
}

#[tokio::test]
async fn delete_follows_location_202_202_204() {
    let _turn = turn().lock().await;
    let client = client();
    let url = client.url(&order_path(), API, &[]);
    let done = client
        .long_running(Method::Delete, url, None, deadline())
        .await
        .unwrap();
    assert!(done.is_none());
    let results = format!(
        "/subscriptions/{SUBSCRIPTION_ID}/providers/{NAMESPACE}/locations/eastus/operationResults/lro_delete_location"
    );
    assert_eq!(
        calls(&client),
        [
            format!("DELETE {} 202", order_path()),
            format!("GET {results} 202"),
            format!("GET {results} 204"),
        ]
    );
}

#[tokio::test]
async fn an_lro_whose_result_pages_by_next_link() {
    let _turn = turn().lock().await;
    let client = client();
    let url = client.url(
        &format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}/providers/{NAMESPACE}/products/default/postPagingLro"),
        API,
        &[],
    );
    let first = client
        .long_running(Method::Post, url, None, deadline())
        .await
        .unwrap()
        .unwrap();
    let page = first.json_value().unwrap();
    let mut names: Vec<String> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let next = arm::Url::parse(page["nextLink"].as_str().unwrap()).unwrap();
    let rest: Vec<serde_json::Value> = client
        .list(&Operation::new("GET", next.path()), next, deadline())
        .await
        .unwrap();
    names.extend(rest.iter().map(|p| p["name"].as_str().unwrap().to_owned()));
    assert_eq!(names, ["product1", "product2"]);
}

#[tokio::test]
async fn a_request_spector_checks_passes_and_a_wrong_one_is_an_error_with_its_answer() {
    let _turn = turn().lock().await;
    let client = client();
    let url = client.url(
        &format!("/subscriptions/{SUBSCRIPTION_ID}/providers/{NAMESPACE}/checkNameAvailability"),
        API,
        &[],
    );
    let operation = Operation::new("POST", url.path());
    let right = json!({"name": "checkName", "type": "Microsoft.Web/site"}).to_string();
    let answer = client
        .send_ok(
            &operation,
            Method::Post,
            &url,
            Some(right.as_bytes()),
            "corr-spector",
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(answer.json_value().unwrap()["reason"], "AlreadyExists");
    // This scenario compares the body; a different one is refused.
    let wrong = json!({"name": "otherName", "type": "Microsoft.Web/site"}).to_string();
    let error = client
        .send_ok(
            &operation,
            Method::Post,
            &url,
            Some(wrong.as_bytes()),
            "corr-spector",
            deadline(),
        )
        .await
        .unwrap_err();
    let status = error.status().unwrap();
    assert!((400..500).contains(&status), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("POST checkNameAvailability: 4"),
        "{error}"
    );
}
