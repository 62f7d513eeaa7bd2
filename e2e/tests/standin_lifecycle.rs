//! The stand-in as a process: state that survives a restart, plain HTTP when asked, the bearer
//! token enforced, and periodic watch bookmarks.

mod common;

use ferry_e2e::apiserver::{StandIn, StandInConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Discovery;
use serde_json::json;
use std::time::Duration;

async fn client_for(server: &StandIn) -> kube::Client {
    common::client(&server.kubeconfig_path).await
}

#[tokio::test]
async fn persisted_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new("durable", dir.path());
    config.persist = true;
    config.token = Some("fixed-token".into());
    let server = StandIn::start(config.clone()).await.unwrap();
    let client = client_for(&server).await;
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}}))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "kept"}, "data": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let uid = cm.metadata.uid.clone();
    let rv: u64 = cm
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    // Let the controllers settle, then note the version the store stops at.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last_rv = cms
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let url = server.url.clone();
    server.shutdown().await;

    // Same data directory, same certificates: the old kubeconfig still works.
    let mut again = config;
    again.listen = url.trim_start_matches("https://").parse().unwrap();
    let server = StandIn::start(again).await.unwrap();
    let client = client_for(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let back = cms.get("kept").await.unwrap();
    assert_eq!(back.metadata.uid, uid);
    assert_eq!(back.data.unwrap()["k"], "v");
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .is_some());
    let next = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "after"}})).unwrap(),
        )
        .await
        .unwrap();
    let next_rv: u64 = next.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        next_rv > rv,
        "resource versions keep increasing across restarts"
    );
    // Events from before the restart are gone: watching from before the last one is 410 ...
    let mut stream = cms
        .watch(&WatchParams::default(), &(rv - 1).to_string())
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    // ... while from the last version before the restart nothing was missed.
    let mut stream = cms
        .watch(&WatchParams::default(), &last_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the ConfigMap made after the restart, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_http_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new("plain", dir.path());
    config.tls = false;
    let server = StandIn::start(config).await.unwrap();
    assert!(server.url.starts_with("http://"));
    let client = client_for(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    assert!(
        cms.get("kube-root-ca.crt").await.is_ok() || cms.list(&Default::default()).await.is_ok()
    );

    // Without the token: 401 with an Unauthorized Status.
    let mut kc = kube::config::Kubeconfig::read_from(&server.kubeconfig_path).unwrap();
    kc.auth_infos[0].auth_info.as_mut().unwrap().token = Some("wrong".to_string().into());
    let anonymous = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    match Api::<ConfigMap>::namespaced(anonymous, "default")
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized")),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn watches_send_bookmarks() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new("bookmarks", dir.path());
    config.bookmark_interval = Duration::from_millis(100);
    let server = StandIn::start(config).await.unwrap();
    let client = client_for(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let list = cms.list(&Default::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let bookmark = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.try_next().await.unwrap() {
                Some(WatchEvent::Bookmark(b)) => return b,
                Some(_) => continue,
                None => panic!("the watch ended without a bookmark"),
            }
        }
    })
    .await
    .expect("a bookmark within 5s");
    assert!(
        bookmark.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap()
    );
}
