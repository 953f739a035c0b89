//! Tests of the problem mapping: every log and store error, and the JSON extractor rejections.

use std::path::PathBuf;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use tower::ServiceExt;

use super::*;

async fn problem_of(response: Response) -> Problem {
    assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn every_log_error() -> Vec<LogError> {
    vec![
        LogError::InvalidTopicName {
            name: "".into(),
            reason: "empty",
        },
        LogError::InvalidGroupName {
            name: "".into(),
            reason: "empty",
        },
        LogError::InvalidConfig("x".into()),
        LogError::UnknownTopic("t".into()),
        LogError::TopicExists("t".into()),
        LogError::UnknownPartition {
            topic: "t".into(),
            partition: 9,
            partitions: 1,
        },
        LogError::OffsetOutOfRange {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            earliest: 1,
            latest: 2,
        },
        LogError::CommitRegression {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: 0,
            committed: 1,
        },
        LogError::RecordTooLarge { size: 2, limit: 1 },
        LogError::EmptyAppend,
        LogError::Locked {
            path: PathBuf::from("/d"),
            holder: String::new(),
        },
        LogError::ForeignDirectory {
            path: PathBuf::from("/d"),
            reason: "x".into(),
        },
        LogError::Corrupt {
            location: "x".into(),
            reason: "y".into(),
        },
        LogError::Poisoned("disk".into()),
        LogError::Overloaded,
        LogError::Closed,
        LogError::Io {
            path: PathBuf::from("/secret/path"),
            source: std::io::Error::other("boom"),
        },
        LogError::Storage("engine".into()),
        LogError::StorageFull {
            available: 1,
            minimum: 2,
        },
        LogError::NoSpace {
            path: PathBuf::from("/secret/path"),
        },
    ]
}

#[tokio::test]
async fn storage_failures_and_only_they_answer_503_with_retry_after() {
    for error in every_log_error() {
        let storage = error.is_storage_failure();
        let name = format!("{error:?}");
        let response = ApiError::from(error).into_response();
        assert_eq!(
            response.status() == StatusCode::SERVICE_UNAVAILABLE,
            storage,
            "{name}"
        );
        assert_eq!(
            response.headers().contains_key(header::RETRY_AFTER),
            storage,
            "{name}"
        );
        let problem = problem_of(response).await;
        assert!(problem.kind.starts_with("urn:tidings:problem:"));
        assert!(
            !problem.detail.contains("/secret/path"),
            "{name} leaks a path"
        );
    }
}

#[tokio::test]
async fn bad_input_maps_to_4xx() {
    let cases = [
        (LogError::EmptyAppend, 400),
        (LogError::UnknownTopic("t".into()), 404),
        (LogError::TopicExists("t".into()), 409),
        (LogError::RecordTooLarge { size: 2, limit: 1 }, 413),
    ];
    for (error, status) in cases {
        let problem = problem_of(ApiError::from(error).into_response()).await;
        assert_eq!(problem.status, status);
    }
}

#[tokio::test]
async fn store_errors_map_to_their_statuses() {
    let cases = [
        (StoreError::NotFound("conversation \"c\"".into()), 404),
        (StoreError::Conflict("taken".into()), 409),
        (StoreError::invalid("content", "empty"), 400),
        (StoreError::Storage("disk".into()), 503),
        (StoreError::corrupt("x", "y"), 500),
        (StoreError::Log(LogError::Overloaded), 503),
    ];
    for (error, status) in cases {
        let response = ApiError::from(error).into_response();
        assert_eq!(
            response.headers().contains_key(header::RETRY_AFTER),
            status == 503
        );
        assert_eq!(problem_of(response).await.status, status);
    }
    let limited = ApiError::TooManyRequests {
        limit: 1,
        retry_after: 2,
    }
    .into_response();
    assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
    assert_eq!(problem_of(limited).await.status, 429);
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Body1 {
    name: String,
}

fn echo_app() -> Router {
    Router::new()
        .route("/echo", post(|Json(b): Json<Body1>| async move { b.name }))
        .layer(axum::extract::DefaultBodyLimit::max(64))
}

async fn post_echo(content_type: Option<&str>, body: &str) -> Response {
    let mut req = Request::post("/echo");
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    echo_app()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn json_rejections_keep_the_problem_shape() {
    let ok = post_echo(Some("application/json"), r#"{"name":"a"}"#).await;
    assert_eq!(ok.status(), StatusCode::OK);

    let syntax = post_echo(Some("application/json"), "{").await;
    assert_eq!(problem_of(syntax).await.status, 400);

    let missing_field = post_echo(Some("application/json"), "{}").await;
    let problem = problem_of(missing_field).await;
    assert_eq!(problem.status, 400);
    assert!(problem.detail.contains("name"), "{}", problem.detail);

    // The detail names the path to the failing field, as axum's own parser writes it.
    let wrong_type = post_echo(Some("application/json"), r#"{"name":5}"#).await;
    let problem = problem_of(wrong_type).await;
    assert_eq!(problem.status, 400);
    assert!(
        problem.detail.contains("name: invalid type: integer `5`"),
        "{}",
        problem.detail
    );

    let trailing = post_echo(Some("application/json"), r#"{"name":"a"} x"#).await;
    assert_eq!(problem_of(trailing).await.status, 400);

    let suffixed = post_echo(Some("application/merge-patch+json"), r#"{"name":"a"}"#).await;
    assert_eq!(suffixed.status(), StatusCode::OK);

    let no_type = post_echo(None, r#"{"name":"a"}"#).await;
    assert_eq!(problem_of(no_type).await.status, 415);
    let text = post_echo(Some("text/plain"), r#"{"name":"a"}"#).await;
    assert_eq!(problem_of(text).await.status, 415);

    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(100));
    let too_large = post_echo(Some("application/json"), &huge).await;
    assert_eq!(problem_of(too_large).await.status, 413);
}

/// Log lines of level ERROR written while `work` runs.
fn errors_logged_by(work: impl FnOnce()) -> String {
    let captured = crate::testing::CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, work);
    captured.text()
}

#[test]
fn a_refusal_of_a_state_is_not_logged_as_an_error_but_a_fault_is() {
    let quiet = errors_logged_by(|| {
        let _ = ApiError::NotReady.into_response();
        let _ = ApiError::Log(LogError::Poisoned("fsync failed".into())).into_response();
        let _ = ApiError::Overloaded("busy".into()).into_response();
    });
    assert_eq!(quiet, "", "503s are states, logged where they begin");
    let loud = errors_logged_by(|| {
        let _ = ApiError::Internal("a task panicked".into()).into_response();
    });
    assert!(loud.contains("a task panicked"), "{loud}");
}
