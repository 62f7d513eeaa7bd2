//! The harness brings up real NATS with JetStream, a real object store and two stand-in
//! clusters, and takes them all down again.

mod common;

use common::client;
use ferry_e2e::harness::{Environment, EnvironmentOptions, StoreKind};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use object_store::ObjectStoreExt;
use std::net::TcpStream;
use std::time::Duration;

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[test]
fn environment_comes_up_and_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::up(&EnvironmentOptions::new(dir.path())).unwrap();
    let nats_port = env.nats.port;
    let described = env.describe();
    assert!(
        described.contains(&env.nats.url) && described.contains("FERRY_KUBECONFIG_SOURCE"),
        "{described}"
    );
    assert!(env.store.url.starts_with("file://"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // JetStream is on: a stream takes a message and hands it back.
        let nc = async_nats::connect(&env.nats.url).await.unwrap();
        let js = async_nats::jetstream::new(nc);
        let mut stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "PROBE".into(),
                subjects: vec!["probe.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        js.publish("probe.hello", "ferry".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1);
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
            .await
            .unwrap();
        let mut messages = consumer.fetch().max_messages(1).messages().await.unwrap();
        let msg = messages.next().await.unwrap().unwrap();
        assert_eq!(&msg.payload[..], b"ferry");

        // Both clusters answer kube-rs with their own state.
        for name in ["source", "target"] {
            let c = env.cluster(name).unwrap();
            let ns: Api<Namespace> = Api::all(client(&c.kubeconfig).await);
            let names: Vec<String> = ns
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect();
            assert!(names.contains(&"default".to_string()), "{name}: {names:?}");
        }
        let source = env.cluster("source").unwrap();
        let target = env.cluster("target").unwrap();
        assert_ne!(source.server, target.server);
        let src_ns: Api<Namespace> = Api::all(client(&source.kubeconfig).await);
        src_ns
            .create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": "only-here"}}))
                    .unwrap(),
            )
            .await
            .unwrap();
        let tgt_ns: Api<Namespace> = Api::all(client(&target.kubeconfig).await);
        assert!(
            tgt_ns.get("only-here").await.is_err(),
            "clusters are independent"
        );
    });

    let env_file = env.write_env_file().unwrap();
    assert!(std::fs::read_to_string(env_file)
        .unwrap()
        .contains("export FERRY_NATS_URL="));
    let server_port = env.cluster("source").unwrap().standin().addr.port();
    env.down();
    assert!(!port_open(nats_port), "NATS must be stopped");
    assert!(!port_open(server_port), "the stand-in must be stopped");
}

#[test]
fn garage_serves_s3() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = EnvironmentOptions::new(dir.path());
    opts.store = StoreKind::Garage;
    opts.clusters.clear();
    let env = Environment::up(&opts).unwrap();
    let s3 = env
        .store
        .s3
        .clone()
        .expect("Garage gives S3 access details");
    assert_eq!(env.store.url, format!("s3://{}", s3.bucket));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&s3.endpoint)
            .with_region(&s3.region)
            .with_bucket_name(&s3.bucket)
            .with_access_key_id(&s3.access_key_id)
            .with_secret_access_key(&s3.secret_access_key)
            .with_allow_http(true)
            .build()
            .unwrap();
        let path = object_store::path::Path::from("probe/hello.txt");
        store
            .put(&path, b"through garage".to_vec().into())
            .await
            .unwrap();
        let back = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&back[..], b"through garage");
        // Wrong credentials are refused: the server really checks.
        let wrong = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&s3.endpoint)
            .with_region(&s3.region)
            .with_bucket_name(&s3.bucket)
            .with_access_key_id(&s3.access_key_id)
            .with_secret_access_key("0".repeat(64))
            .with_allow_http(true)
            .build()
            .unwrap();
        assert!(wrong.get(&path).await.is_err());
    });
    env.down();
}
