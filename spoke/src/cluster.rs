//! One cluster through the Kubernetes API: discovery, paged lists, reads and writes of any
//! resource type as JSON, with transient failures retried and every error naming what it was
//! doing.

use crate::error::{Result, SpokeError};
use backon::{ExponentialBuilder, Retryable};
use ferry_protocol::ObjectRef;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Objects per list page: a namespace of 300,000 objects is 600 requests, each small.
const PAGE: u32 = 500;

/// The field manager Ferry's writes are recorded under.
pub const FIELD_MANAGER: &str = "ferry";

/// A resource type the cluster serves.
#[derive(Debug, Clone)]
pub struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    /// `deployments.apps`, `configmaps`: how users name types in selections.
    pub fn qualified_name(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// The pages of one list ([`Cluster::pages`]).
pub struct Pages<'a> {
    api: Api<DynamicObject>,
    resource: &'a Resource,
    namespace: Option<&'a str>,
    label_selector: Option<&'a str>,
    token: Option<String>,
    done: bool,
}

impl Pages<'_> {
    /// The next page's objects, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>> {
        if self.done {
            return Ok(None);
        }
        let mut params = ListParams::default().limit(PAGE);
        if let Some(t) = &self.token {
            params = params.continue_token(t);
        }
        if let Some(s) = self.label_selector {
            params = params.labels(s);
        }
        let page = (|| self.api.list(&params))
            .retry(retry_policy())
            .when(transient)
            .await
            .map_err(|e| {
                let r = self.resource.qualified_name();
                let action = match self.namespace {
                    Some(ns) => format!("listing {r} in {ns}"),
                    None => format!("listing {r}"),
                };
                SpokeError::cluster(action, None, e)
            })?;
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => self.token = Some(t),
            _ => self.done = true,
        }
        let api = &self.resource.api;
        Ok(Some(
            page.items.into_iter().map(|o| to_json(o, api)).collect(),
        ))
    }
}

#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

/// Whether a failed request may succeed if sent again: the cluster was unreachable, overloaded
/// or answered with a server error.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(5)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Cluster {
    pub fn new(client: kube::Client) -> Cluster {
        Cluster { client }
    }

    /// The cluster of a kubeconfig context (the current one if `None`), or the in-cluster
    /// service account when there is no kubeconfig.
    pub async fn connect(context: Option<&str>) -> Result<Cluster> {
        // object_store brings aws-lc-rs and kube brings ring: rustls must be told which to use.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        let config = match kube::Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            Err(kubeconfig) if context.is_none() => kube::Config::incluster().map_err(|e| {
                SpokeError::invalid(
                    "kubeconfig",
                    format!("no kubeconfig ({kubeconfig}) and not in a cluster ({e})"),
                )
            })?,
            Err(e) => return Err(SpokeError::invalid("kubeconfig", e.to_string())),
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| SpokeError::cluster("building the Kubernetes client", None, e))?;
        Ok(Cluster { client })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub async fn version(&self) -> Result<String> {
        let info = (|| self.client.apiserver_version())
            .retry(retry_policy())
            .when(transient)
            .await
            .map_err(|e| SpokeError::cluster("reading the server version", None, e))?;
        Ok(info.git_version)
    }

    /// Every resource type the cluster serves, in its preferred version, without subresources.
    pub async fn discover(&self) -> Result<Vec<Resource>> {
        let discovery = (|| kube::discovery::Discovery::new(self.client.clone()).run())
            .retry(retry_policy())
            .when(transient)
            .await
            .map_err(|e| {
                SpokeError::cluster("discovering the cluster's resource types", None, e)
            })?;
        let mut out = Vec::new();
        for group in discovery.groups() {
            for (api, caps) in group.recommended_resources() {
                out.push(resource(api, &caps));
            }
        }
        Ok(out)
    }

    fn api(&self, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if r.namespaced => Api::namespaced_with(self.client.clone(), ns, &r.api),
            _ => Api::all_with(self.client.clone(), &r.api),
        }
    }

    /// Every object of a type (in one namespace, or all), page by page; `f` sees each.
    pub async fn list_each(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        mut f: impl FnMut(Value) -> Result<()>,
    ) -> Result<()> {
        let mut pages = self.pages(r, namespace, label_selector);
        while let Some(page) = pages.next().await? {
            page.into_iter().try_for_each(&mut f)?;
        }
        Ok(())
    }

    /// A list read one page at a time, for callers that do async work per object.
    pub fn pages<'a>(
        &self,
        r: &'a Resource,
        namespace: Option<&'a str>,
        label_selector: Option<&'a str>,
    ) -> Pages<'a> {
        Pages {
            api: self.api(r, namespace),
            resource: r,
            namespace,
            label_selector,
            token: None,
            done: false,
        }
    }

    pub async fn get(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>> {
        let api = self.api(r, namespace);
        match (|| api.get_opt(name))
            .retry(retry_policy())
            .when(transient)
            .await
        {
            Ok(found) => Ok(found.map(|o| to_json(o, &r.api))),
            Err(e) => Err(SpokeError::cluster(
                format!("reading {} {}", r.qualified_name(), name),
                None,
                e,
            )),
        }
    }

    /// Watches one object until `check` accepts what it sees (`None`: the object does not
    /// exist), and returns what `check` made of it; `Ok(None)` once `timeout` has passed. A
    /// watch, not polling: the change is seen when the server has it. Transient failures
    /// restart the watch after a backoff; others end the wait with the error. A type that
    /// cannot be watched (not served, or not allowed to this spoke) is read every 200 ms.
    pub async fn watch_until<T>(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        timeout: Duration,
        mut check: impl FnMut(Option<&Value>) -> Option<T>,
    ) -> Result<Option<T>> {
        use futures::StreamExt;
        use kube::runtime::{watcher, WatchStreamExt};
        let deadline = tokio::time::Instant::now() + timeout;
        if !r.supports("watch") {
            return self.poll_until(r, namespace, name, deadline, check).await;
        }
        let stream = watcher::watch_object(self.api(r, namespace), name).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let watching = async {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(found) => {
                        let found = found.map(|o| to_json(o, &r.api));
                        if let Some(t) = check(found.as_ref()) {
                            return Ok(t);
                        }
                    }
                    Err(
                        watcher::Error::InitialListFailed(e)
                        | watcher::Error::WatchStartFailed(e)
                        | watcher::Error::WatchFailed(e),
                    ) if !transient(&e) => {
                        return Err(SpokeError::cluster(
                            format!("watching {} {name}", r.qualified_name()),
                            None,
                            e,
                        ))
                    }
                    Err(e) => {
                        tracing::debug!(resource = %r.qualified_name(), %name, error = %e, "watch restarts")
                    }
                }
            }
            Err(SpokeError::cluster(
                format!("watching {} {name}", r.qualified_name()),
                None,
                kube::Error::Service("the watch ended".into()),
            ))
        };
        match tokio::time::timeout(timeout, watching).await {
            Ok(Err(e)) if matches!(e.status(), Some(403 | 405)) => {
                tracing::debug!(resource = %r.qualified_name(), %name, error = %e, "cannot watch; polling");
            }
            Ok(outcome) => return outcome.map(Some),
            Err(_) => return Ok(None),
        }
        self.poll_until(r, namespace, name, deadline, check).await
    }

    async fn poll_until<T>(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        deadline: tokio::time::Instant,
        mut check: impl FnMut(Option<&Value>) -> Option<T>,
    ) -> Result<Option<T>> {
        loop {
            let found = self.get(r, namespace, name).await?;
            if let Some(t) = check(found.as_ref()) {
                return Ok(Some(t));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates `obj`; `dry_run` asks the server to validate without storing.
    pub async fn create(&self, r: &Resource, obj: &Value, dry_run: bool) -> Result<Value> {
        let object = object_ref(obj);
        let api = self.api(r, object.namespace.as_deref());
        let dynamic: DynamicObject = serde_json::from_value(obj.clone())
            .map_err(|e| SpokeError::invalid(object.to_string(), e.to_string()))?;
        let params = PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        (|| api.create(&params, &dynamic))
            .retry(retry_policy())
            .when(transient)
            .await
            .map(|o| to_json(o, &r.api))
            .map_err(|e| SpokeError::cluster(format!("creating {object}"), Some(&object), e))
    }

    /// Makes the object's fields Ferry's, as `kubectl apply --server-side --force-conflicts`.
    pub async fn apply(&self, r: &Resource, obj: &Value, dry_run: bool) -> Result<Value> {
        let object = object_ref(obj);
        let api = self.api(r, object.namespace.as_deref());
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let patch = Patch::Apply(obj);
        (|| api.patch(&object.name, &params, &patch))
            .retry(retry_policy())
            .when(transient)
            .await
            .map(|o| to_json(o, &r.api))
            .map_err(|e| SpokeError::cluster(format!("updating {object}"), Some(&object), e))
    }

    /// A JSON merge patch.
    pub async fn merge_patch(
        &self,
        r: &Resource,
        object: &ObjectRef,
        patch: &Value,
    ) -> Result<Value> {
        let api = self.api(r, object.namespace.as_deref());
        let params = PatchParams::default();
        let patch = Patch::Merge(patch);
        (|| api.patch(&object.name, &params, &patch))
            .retry(retry_policy())
            .when(transient)
            .await
            .map(|o| to_json(o, &r.api))
            .map_err(|e| {
                SpokeError::cluster(format!("patching {object}"), Some(&object.clone()), e)
            })
    }
}

fn resource(api: ApiResource, caps: &ApiCapabilities) -> Resource {
    Resource {
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations.clone(),
        api,
    }
}

/// The object as JSON with its apiVersion and kind (list items may come without them).
fn to_json(obj: DynamicObject, api: &ApiResource) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), Value::String(api.api_version.clone()));
        m.insert("kind".into(), Value::String(api.kind.clone()));
    }
    v
}

/// The reference of an object as read from the cluster (always nameable).
pub fn object_ref(obj: &Value) -> ObjectRef {
    ObjectRef::from_object(obj).unwrap_or_else(|| ObjectRef {
        group: String::new(),
        version: String::new(),
        kind: obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .into(),
        namespace: None,
        name: "?".into(),
    })
}

/// An object's namespace (empty when cluster-scoped) and name.
pub fn namespace_and_name(obj: &Value) -> (String, String) {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// Resource types by (group, kind), for finding the type of an object.
#[derive(Default, Clone)]
pub struct ResourceMap {
    by_kind: HashMap<(String, String), Resource>,
}

impl ResourceMap {
    pub fn new(resources: &[Resource]) -> ResourceMap {
        let mut by_kind = HashMap::new();
        for r in resources {
            by_kind
                .entry((r.api.group.clone(), r.api.kind.clone()))
                .or_insert_with(|| r.clone());
        }
        ResourceMap { by_kind }
    }

    pub fn get(&self, group: &str, kind: &str) -> Option<&Resource> {
        self.by_kind.get(&(group.to_string(), kind.to_string()))
    }

    /// The type of an object in the version the object is written in.
    pub fn for_object(&self, obj: &ObjectRef) -> Option<Resource> {
        let mut r = self.get(&obj.group, &obj.kind)?.clone();
        if r.api.version != obj.version {
            let gvk = GroupVersionKind::gvk(&obj.group, &obj.version, &obj.kind);
            r.api = ApiResource::from_gvk_with_plural(&gvk, &r.api.plural);
        }
        Some(r)
    }
}
