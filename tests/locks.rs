//! Locked installs: a lock's file host answered by the cache over TLS, with a local CA
//! that is name-constrained to the file hosts it was made for.

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use support::dists::wheel;
use support::upstream::{Links, PageFormat, TestUpstream};
use support::{Devcache, assert_ok, devcache_command, wait_for};
use tokio_rustls::rustls;

const FILE_HOST: &str = "files.upstream.test";

/// The CA's subject, as `devcache tls issue` writes it.
const CA_NAME: &str = "devcache locked installs (local)";

/// A client that trusts only `ca_pem` and finds `host` on 127.0.0.1.
fn client_trusting(ca_pem: &str, host: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(host, ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locks_file_host_is_answered_from_the_cache_and_its_ca_vouches_for_no_other_name() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let demo = wheel("demo", "1.0", &[]);
    upstream.add("demo", demo.clone());
    let data = tmp.path().join("data");

    let issued = devcache_command(tmp.path())
        .args(["tls", "issue", FILE_HOST, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_ok(&issued, "devcache tls issue");
    let ca_pem = String::from_utf8(issued.stdout).unwrap();
    assert!(
        ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{ca_pem}"
    );

    let cache = Devcache::start(
        &data,
        &["--upstream", &upstream.index_url(), "--tls-port", "0"],
    );
    let mut port = 0;
    wait_for("the TLS port to be announced", || {
        let said = cache.requests();
        let Some(line) = said.lines().find(|l| l.contains("TLS on ")) else {
            return false;
        };
        port = line
            .split("TLS on 127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        true
    });

    // The lock's URL: any path, the file named by its last segment.
    let client = client_trusting(&ca_pem, FILE_HOST, port);
    let url = format!(
        "https://{FILE_HOST}:{port}/packages/7f/3a/0123456789abcdef/{}",
        demo.filename
    );
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-devcache-cache"], "miss");
    assert_eq!(first.bytes().await.unwrap().as_ref(), demo.bytes.as_slice());
    assert!(cache.published(&demo.sha256()).await);
    let again = client.get(&url).send().await.unwrap();
    assert_eq!(again.headers()["x-devcache-cache"], "hit");
    assert_eq!(again.bytes().await.unwrap().as_ref(), demo.bytes.as_slice());
    assert_eq!(upstream.downloads(&format!("/files/{}", demo.filename)), 1);
    // /metrics counts them as files, whatever their path.
    let metrics = support::get_text(&format!("{}/metrics", cache.url)).await;
    for outcome in ["miss", "hit"] {
        let line = format!("devcache_requests_total{{route=\"file\",outcome=\"{outcome}\"}} 1");
        assert!(metrics.contains(&line), "{metrics}");
    }

    // A name no page lists is not found; it is never fetched from where the URL says.
    let unknown = client
        .get(format!(
            "https://{FILE_HOST}:{port}/packages/xx/other-2.0-py3-none-any.whl"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The server answers its file hosts only: another name gets no certificate at all.
    let other = client_trusting(&ca_pem, "other.example.invalid", port)
        .get(format!(
            "https://other.example.invalid:{port}/{}",
            demo.filename
        ))
        .send()
        .await;
    assert!(other.is_err(), "{other:?}");

    // And the CA cannot vouch for another name, whoever holds its key: a certificate it
    // signs for another host or for an IP address is refused by a TLS client (rustls's
    // verifier, which uv uses), while one for its own host passes.
    let ca_key = std::fs::read_to_string(data.join("tls/ca.key")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&ca_key).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let forge = |names: &[&str]| {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.signed_by(&key, &issuer).unwrap().der().clone()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            rustls_pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes())
                .map(|c: rustls_pki_types::CertificateDer| c.to_vec())
                .unwrap(),
        ))
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let verify = |cert: &rustls_pki_types::CertificateDer<'static>, name: &str| {
        use rustls::client::danger::ServerCertVerifier;
        verifier.verify_server_cert(
            cert,
            &[],
            &rustls_pki_types::ServerName::try_from(name.to_string()).unwrap(),
            &[],
            rustls_pki_types::UnixTime::now(),
        )
    };
    let own = forge(&[FILE_HOST]);
    assert!(
        verify(&own, FILE_HOST).is_ok(),
        "{:?}",
        verify(&own, FILE_HOST)
    );
    let another = forge(&["other.example.invalid"]);
    let refused = verify(&another, "other.example.invalid");
    assert!(
        format!("{refused:?}").contains("NameConstraint"),
        "{refused:?}"
    );
    let ip = forge(&["127.0.0.1"]);
    let refused = verify(&ip, "127.0.0.1");
    assert!(
        format!("{refused:?}").contains("NameConstraint"),
        "{refused:?}"
    );
}

#[test]
fn tls_issue_refuses_what_is_not_a_host_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = devcache_command(tmp.path())
        .args(["tls", "issue", "10.0.0.1", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is not a file host name"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
}
