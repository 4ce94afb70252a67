//! The client against `pullgate_tests::aws_api`, a loopback stand-in for
//! the Signer API, STS and IMDS that verifies SigV4 signatures itself.

use std::time::{Duration, UNIX_EPOCH};

use pullgate_tests::aws_api::{self, Answer, AwsApi};

use super::*;

const PV: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release/Ab12Cd34Ef";
const JOB: &str = "arn:aws:signer:us-west-2:123456789012:/signing-jobs/0c6a0b1b-2c3d";

fn query(n: u8) -> RevocationQuery {
    RevocationQuery {
        certificate_hashes: vec![format!("{n:02x}aa"), format!("{n:02x}bb")],
        job_arn: JOB.to_owned(),
        profile_version_arn: PV.to_owned(),
        signature_timestamp: UNIX_EPOCH + Duration::from_secs(1_709_287_200),
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(20))
}

fn config(api: &AwsApi) -> AwsSignerConfig {
    AwsSignerConfig {
        region: Some("eu-central-1".to_owned()),
        endpoint: Some(api.url()),
        sts_endpoint: Some(api.url()),
        imds_endpoint: Some(api.url()),
        timeout_ms: 500,
        ..AwsSignerConfig::default()
    }
}

fn static_env() -> Environment {
    Environment {
        access_key_id: Some(aws_api::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(aws_api::SECRET_ACCESS_KEY.to_owned()),
        imds_disabled: true,
        ..Environment::default()
    }
}

#[tokio::test]
async fn signed_request_carries_the_plugin_parameters() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let client = AwsSignerRevocation::new(&config(&api), static_env()).unwrap();
    assert!(client.status(&query(1), now(), deadline()).await.is_ok());
    let calls = api.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert!(c.signature_ok, "{:?}", c.signature_problem);
    assert_eq!(c.access_key_id.as_deref(), Some(aws_api::ACCESS_KEY_ID));
    assert_eq!(c.region.as_deref(), Some("eu-central-1"));
    let p = |k: &str| c.params.get(k).cloned().unwrap_or_default();
    assert_eq!(p("certificateHashes"), ["01aa", "01bb"]);
    assert_eq!(p("jobArn"), [JOB]);
    assert_eq!(p("platformId"), ["Notation-OCI-SHA384-ECDSA"]);
    assert_eq!(p("profileVersionArn"), [PV]);
    assert_eq!(p("signatureTimestamp"), ["2024-03-01T10:00:00Z"]);
    // Cached: the same query is not asked again.
    assert!(client.status(&query(1), now(), deadline()).await.is_ok());
    assert_eq!(api.calls().len(), 1);
}

#[tokio::test]
async fn revoked_and_unavailable_answers() {
    let api = AwsApi::start(Answer::Revoked).await.unwrap();
    let client = AwsSignerRevocation::new(&config(&api), static_env()).unwrap();
    match client.status(&query(2), now(), deadline()).await {
        Err(AwsSignerError::Revoked {
            resources,
            certificates,
        }) => {
            assert_eq!(resources, [PV]);
            assert_eq!(certificates, 0);
        }
        other => panic!("{other:?}"),
    }

    api.set_answer(Answer::ServerError);
    assert!(matches!(
        client.status(&query(3), now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::Status {
            status: 500
        }))
    ));
    // Not cached: the next answer counts.
    api.set_answer(Answer::NotRevoked);
    assert!(client.status(&query(3), now(), deadline()).await.is_ok());

    api.set_answer(Answer::Hang);
    let started = std::time::Instant::now();
    assert!(matches!(
        client.status(&query(4), now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::Timeout { .. }))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered within the deadline"
    );
    // The pull's deadline bounds it too.
    assert!(matches!(
        client
            .status(&query(5), now(), Deadline::after(Duration::from_millis(50)))
            .await,
        Err(AwsSignerError::Unavailable(
            Unavailable::Deadline | Unavailable::Timeout { .. }
        ))
    ));
}

#[tokio::test]
async fn a_wrong_signature_is_refused_by_the_endpoint() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let env = Environment {
        secret_access_key: Some("not-the-secret".to_owned()),
        ..static_env()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(matches!(
        client.status(&query(6), now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::Status {
            status: 403
        }))
    ));
    assert!(!api.calls()[0].signature_ok);
}

#[tokio::test]
async fn instance_metadata_credentials() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    api.expect_session_credentials();
    let client = AwsSignerRevocation::new(&config(&api), Environment::default()).unwrap();
    assert!(client.status(&query(7), now(), deadline()).await.is_ok());
    assert!(
        api.calls()[0].signature_ok,
        "{:?}",
        api.calls()[0].signature_problem
    );
    let (_, imds) = api.credential_calls();
    assert_eq!(imds, 3, "token, role, credentials");
    // Kept until near expiry.
    assert!(client.status(&query(8), now(), deadline()).await.is_ok());
    assert_eq!(api.credential_calls().1, 3);
}

#[tokio::test]
async fn web_identity_credentials() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    api.expect_session_credentials();
    api.accept_web_identity_token("eyJ.test.token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.test.token\n").unwrap();
    let env = Environment {
        web_identity_token_file: Some(token),
        role_arn: Some("arn:aws:iam::123456789012:role/pullgate".to_owned()),
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(client.status(&query(9), now(), deadline()).await.is_ok());
    assert!(api.calls()[0].signature_ok);
    assert_eq!(api.credential_calls(), (1, 0));

    // A token STS refuses leaves the status unknown, saying why.
    api.accept_web_identity_token("another");
    let dir2 = tempfile::tempdir().unwrap();
    let token2 = dir2.path().join("token");
    std::fs::write(&token2, "eyJ.test.token").unwrap();
    let env = Environment {
        web_identity_token_file: Some(token2),
        role_arn: Some("arn:aws:iam::123456789012:role/pullgate".to_owned()),
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(matches!(
        client.status(&query(10), now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::Credentials {
            from: CredentialSource::WebIdentity,
            ..
        }))
    ));
}

#[tokio::test]
async fn no_credentials_and_endpoints_from_the_environment() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let env = Environment {
        imds_disabled: true,
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(matches!(
        client.status(&query(11), now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::NoCredentials))
    ));

    // Endpoint and region from the AWS_* variables; with no region anywhere,
    // the signing profile's.
    let vars = [
        ("AWS_ACCESS_KEY_ID", aws_api::ACCESS_KEY_ID.to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            aws_api::SECRET_ACCESS_KEY.to_owned(),
        ),
        ("AWS_ENDPOINT_URL_SIGNER", api.url()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://127.0.0.1:9".to_owned(),
        ),
    ];
    let env =
        Environment::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
    assert_eq!(env.imds_endpoint.as_deref(), Some("http://127.0.0.1:9"));
    let client = AwsSignerRevocation::new(&AwsSignerConfig::default(), env).unwrap();
    assert!(client.status(&query(12), now(), deadline()).await.is_ok());
    let call = api.calls().pop().unwrap();
    assert!(call.signature_ok);
    assert_eq!(call.region.as_deref(), Some("us-west-2"));
}

#[tokio::test]
async fn a_region_that_is_not_a_region_name_is_not_used() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let cfg = AwsSignerConfig {
        region: None,
        endpoint: None,
        ..config(&api)
    };
    let client = AwsSignerRevocation::new(&cfg, static_env()).unwrap();
    let mut q = query(13);
    q.profile_version_arn =
        "arn:aws:signer:127.0.0.1:9/x?:123456789012:/signing-profiles/p/V".to_owned();
    assert!(matches!(
        client.status(&q, now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::NoRegion))
    ));
    assert!(api.calls().is_empty());
}

#[test]
fn xml_fields() {
    let xml = "<R><Credentials><AccessKeyId> AK </AccessKeyId><SessionToken>a&amp;b</SessionToken></Credentials></R>";
    assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("AK"));
    assert_eq!(xml_text(xml, "SessionToken").as_deref(), Some("a&b"));
    assert_eq!(xml_text(xml, "Expiration"), None);
}

/// Issue 23, item 9: EKS Pod Identity's (and ECS's) container credentials
/// were not read, so revocation had no credentials on such nodes.
#[tokio::test]
async fn container_credentials_with_a_token_file_or_a_token() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    api.expect_session_credentials();
    api.expect_container_authorization("pod-identity-token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token, "pod-identity-token\n").unwrap();
    let url = format!("{}{}pod", api.url(), aws_api::CONTAINER_CREDENTIALS_PATH);
    let env = Environment {
        container_full_uri: Some(url.clone()),
        container_authorization_token_file: Some(token.clone()),
        // Ignored: the file wins.
        container_authorization_token: Some("stale".to_owned()),
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(client.status(&query(20), now(), deadline()).await.is_ok());
    let call = api.calls().pop().unwrap();
    assert!(call.signature_ok, "{:?}", call.signature_problem);
    assert_eq!(api.container_calls(), 1);
    assert_eq!(api.credential_calls(), (0, 0), "neither STS nor IMDS asked");
    // Kept until near expiry.
    assert!(client.status(&query(21), now(), deadline()).await.is_ok());
    assert_eq!(api.container_calls(), 1);

    // The token from the environment, when there is no file.
    let env = Environment {
        container_full_uri: Some(url.clone()),
        container_authorization_token: Some("pod-identity-token".to_owned()),
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(client.status(&query(22), now(), deadline()).await.is_ok());
    assert_eq!(api.container_calls(), 2);

    // A token the endpoint refuses: unavailable, saying where from.
    let env = Environment {
        container_full_uri: Some(url),
        container_authorization_token: Some("wrong".to_owned()),
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    assert!(matches!(
        client.status(&query(23), now(), deadline()).await,
        Err(AwsSignerError::Unavailable(Unavailable::Credentials {
            from: CredentialSource::Container,
            ..
        }))
    ));
}

#[tokio::test]
async fn container_credentials_urls_follow_the_sdks_rules() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    // Plain http to a host that is not loopback or the agent: refused
    // before anything is sent (nothing leaves loopback in this test).
    let env = Environment {
        container_full_uri: Some("http://10.1.2.3:8080/creds".to_owned()),
        container_authorization_token: Some("secret".to_owned()),
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&config(&api), env).unwrap();
    match client.status(&query(24), now(), deadline()).await {
        Err(AwsSignerError::Unavailable(Unavailable::Credentials {
            from: CredentialSource::Container,
            failure,
        })) => assert!(
            matches!(*failure, Unavailable::PlainHttpEndpoint { .. }),
            "{failure:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(api.container_calls(), 0);
    for (url, ok) in [
        ("http://127.0.0.1:80/x", true),
        ("http://localhost/x", true),
        ("http://[::1]:8080/x", true),
        ("http://169.254.170.23/v1/credentials", true),
        ("http://[fd00:ec2::23]/v1/credentials", true),
        ("http://169.254.170.2/creds", true),
        ("http://169.254.169.254/x", false),
        ("http://example.com/x", false),
    ] {
        let uri: Uri = url.parse().unwrap();
        assert_eq!(container_host_allowed(&uri), ok, "{url}");
    }
    // The relative URI is under the ECS agent, and wins over the full one.
    let vars = [
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/abc",
        ),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/x"),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "/var/run/secrets/t",
        ),
    ];
    let env = Environment::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    });
    assert_eq!(
        env.container_url().as_deref(),
        Some("http://169.254.170.2/v2/credentials/abc")
    );
    assert_eq!(
        env.container_authorization_token_file.as_deref(),
        Some(std::path::Path::new("/var/run/secrets/t"))
    );
}
