//! Watches: newline-delimited JSON events, with Kubernetes' resourceVersion rules — replay from
//! a given version, synthetic ADDED events for "now", 410 Expired for compacted versions,
//! bookmarks (including the `k8s.io/initial-events-end` bookmark of streaming lists) and
//! `timeoutSeconds`.

use super::core::{ApiCore, ListOptions};
use super::error::{ApiError, ApiResult};
use super::http::{list_options, Body, Query, Shared, Target};
use super::store::{Key, StoreEvent};
use super::table::{self, Include};
use bytes::Bytes;
use futures::StreamExt;
use http::{header, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

struct Filter {
    group: String,
    resource: String,
    namespace: Option<String>,
    list: ListOptions,
}

impl Filter {
    fn matches(&self, ev: &StoreEvent) -> bool {
        self.matches_object(&ev.key, &ev.object)
    }

    fn matches_object(&self, key: &Key, object: &Value) -> bool {
        key.group == self.group
            && key.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| key.namespace == *ns)
            && self
                .list
                .label_selector
                .as_ref()
                .is_none_or(|s| s.matches(object.pointer("/metadata/labels")))
            && self
                .list
                .field_selector
                .as_ref()
                .is_none_or(|f| f.matches(object))
    }
}

struct Encoder {
    target: Target,
    table: Option<Include>,
    sent_columns: bool,
}

impl Encoder {
    fn event(&mut self, type_: &str, obj: &Value) -> Bytes {
        let obj = ApiCore::at_version(&self.target.rt, &self.target.version, obj.clone());
        let object = match self.table {
            Some(include) => {
                let t = table::watch_table(&self.target.rt, &obj, include, !self.sent_columns);
                self.sent_columns = true;
                t
            }
            None => obj,
        };
        line(&json!({"type": type_, "object": object}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let kind = if self.table.is_some() {
            "Table".to_string()
        } else {
            self.target.rt.kind.clone()
        };
        let api_version = if self.table.is_some() {
            "meta.k8s.io/v1".to_string()
        } else {
            self.target.rt.api_version(&self.target.version)
        };
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}),
        )
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn expired_event(message: String) -> Bytes {
    line(&json!({"type": "ERROR", "object": ApiError::gone(message).to_status()}))
}

pub fn serve(shared: Arc<Shared>, t: Target, q: &Query, accept: &str) -> ApiResult<Response<Body>> {
    let filter = Filter {
        group: t.rt.group.clone(),
        resource: t.rt.plural.clone(),
        namespace: t.namespace.clone().filter(|_| t.rt.namespaced),
        list: ListOptions {
            limit: None,
            continue_token: None,
            ..list_options(q)?
        },
    };
    let requested: Option<u64> = match q.get("resourceVersion").filter(|r| !r.is_empty()) {
        None | Some("0") => None,
        Some(rv) => Some(rv.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {rv:?}: must be an integer"
            ))
        })?),
    };
    let send_initial = q.flag("sendInitialEvents") || requested.is_none();
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let mut encoder = Encoder {
        table: table::wants_table(accept).then(|| Include::parse(q.get("includeObject"))),
        target: t,
        sent_columns: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);

    // Decide what to replay under the store lock, so no event falls between list and watch.
    let (initial, live, current_rv) = {
        let s = shared.core.store.lock();
        let start = if send_initial { None } else { requested };
        match s.watch(start) {
            Ok(w) => {
                let initial: Vec<Value> = if send_initial {
                    s.range(&filter.group, &filter.resource, filter.namespace.as_deref())
                        .filter(|(k, v)| filter.matches_object(k, v))
                        .map(|(_, v)| v.clone())
                        .collect()
                } else {
                    w.replay
                        .iter()
                        .filter(|e| filter.matches(e))
                        .map(|e| json!({"type": e.type_.as_str(), "object": e.object}))
                        .collect()
                };
                (initial, Some(w.live), w.current_rv)
            }
            Err(expired) => {
                let msg = format!(
                    "too old resource version: {} ({})",
                    expired.requested, expired.oldest
                );
                let _ = tx.try_send(expired_event(msg));
                (Vec::new(), None, 0)
            }
        }
    };

    if let Some(live) = live {
        let mut pre: Vec<Bytes> = Vec::new();
        for item in &initial {
            if send_initial {
                pre.push(encoder.event("ADDED", item));
            } else {
                let type_ = item["type"].as_str().unwrap_or("MODIFIED").to_string();
                pre.push(encoder.event(&type_, &item["object"]));
            }
        }
        if send_initial && bookmarks && q.flag("sendInitialEvents") {
            pre.push(encoder.bookmark(current_rv, true));
        }
        let interval = shared.config.bookmark_interval;
        tokio::spawn(async move {
            for b in pre {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            stream_live(
                live, filter, encoder, tx, current_rv, bookmarks, interval, timeout,
            )
            .await;
        });
    }

    let stream = tokio_stream_from(rx).map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
    Ok(Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid"))
}

fn tokio_stream_from(rx: mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

#[allow(clippy::too_many_arguments)]
async fn stream_live(
    mut live: broadcast::Receiver<Arc<StoreEvent>>,
    filter: Filter,
    mut encoder: Encoder,
    tx: mpsc::Sender<Bytes>,
    mut last_rv: u64,
    bookmarks: bool,
    interval: Duration,
    timeout: Duration,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                if tx.send(encoder.bookmark(last_rv, false)).await.is_err() {
                    return;
                }
            }
            ev = live.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if filter.matches(&ev) {
                        let b = encoder.event(ev.type_.as_str(), &ev.object);
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // The watcher fell behind the server's buffer: like a compacted etcd, tell
                    // it to relist.
                    let _ = tx.send(expired_event(format!("watch fell behind at resource version {last_rv}"))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
