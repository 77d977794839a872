//! Typed access to one kind of resource: `Api<Pod>`, `Api<Deployment>`...,
//! the typed face of [`DynamicApi`] (which holds the calls and their retry
//! policy).

use std::marker::PhantomData;

use futures::{Stream, StreamExt};
use keelson_model::Resource;

use crate::dynamic::DynamicApi;
use crate::{Client, Error, Result};

/// What to list or watch.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    /// Page size; 0: everything in one response.
    pub limit: i64,
    pub continue_token: String,
}

impl ListParams {
    pub fn labels(mut self, s: &str) -> Self {
        self.label_selector = s.to_string();
        self
    }
    pub fn fields(mut self, s: &str) -> Self {
        self.field_selector = s.to_string();
        self
    }
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = n;
        self
    }
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    /// The revision the list was read at (watch from here).
    pub resource_version: String,
    /// Non-empty when more items follow: pass it back in `ListParams`.
    pub continue_token: String,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteParams {
    pub grace_period_seconds: Option<i64>,
    /// "Background" (default), "Orphan" or "Foreground".
    pub propagation_policy: String,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
}

/// One watch event.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Nothing changed up to this resourceVersion.
    Bookmark(String),
}

impl<K: Resource> WatchEvent<K> {
    /// The resourceVersion this event brings a watcher to.
    pub fn resource_version(&self) -> String {
        match self {
            WatchEvent::Added(k) | WatchEvent::Modified(k) | WatchEvent::Deleted(k) => {
                k.meta().resource_version.clone()
            }
            WatchEvent::Bookmark(rv) => rv.clone(),
        }
    }
}

/// Typed calls for kind `K` in one namespace (or all, or none for
/// cluster-scoped kinds).
#[derive(Clone)]
pub struct Api<K> {
    dynamic: DynamicApi,
    _kind: PhantomData<fn() -> K>,
}

fn wrong_kind<K: Resource>() -> Error {
    Error::Other(format!(
        "the server answered with an object that is not a {}",
        K::KIND
    ))
}

fn typed<K: Resource>(o: keelson_model::Object) -> Result<K> {
    K::from_object(o).ok_or_else(wrong_kind::<K>)
}

impl<K: Resource> Api<K> {
    /// `K` objects in `namespace`.
    pub fn namespaced(client: Client, namespace: &str) -> Api<K> {
        Api {
            dynamic: DynamicApi::new(client, K::KIND, namespace),
            _kind: PhantomData,
        }
    }

    /// `K` objects in every namespace (lists and watches), or a
    /// cluster-scoped kind (Node, Namespace).
    pub fn all(client: Client) -> Api<K> {
        Api::namespaced(client, "")
    }

    pub fn client(&self) -> &Client {
        self.dynamic.client()
    }

    /// The namespace this API addresses ("": every namespace, or a
    /// cluster-scoped kind).
    pub fn namespace(&self) -> &str {
        self.dynamic.namespace()
    }

    pub async fn get(&self, name: &str) -> Result<K> {
        typed(self.dynamic.get(name).await?)
    }

    /// One page (all of it unless `limit` is set).
    pub async fn list(&self, p: &ListParams) -> Result<ObjectList<K>> {
        let res = self.dynamic.list(p).await?;
        Ok(ObjectList {
            items: res.items.into_iter().map(typed).collect::<Result<_>>()?,
            resource_version: res.resource_version,
            continue_token: res.continue_token,
        })
    }

    /// Create. Retried after a failure only if the request cannot have
    /// reached a server (see [`DynamicApi::create`]).
    pub async fn create(&self, obj: &K) -> Result<K> {
        self.create_with_lease(obj, 0).await
    }

    /// Create, attached to a lease: the object is deleted when the lease
    /// expires or is revoked. An unknown outcome is resolved as
    /// [`DynamicApi::create`] says.
    pub async fn create_with_lease(&self, obj: &K, lease_id: i64) -> Result<K> {
        typed(
            self.dynamic
                .create(obj.clone().into_object(), lease_id)
                .await?,
        )
    }

    /// Replace the object's spec and metadata (its status is kept). Its
    /// resourceVersion, when set, must still be current (else
    /// [`Error::Conflict`]).
    pub async fn update(&self, obj: &K) -> Result<K> {
        typed(
            self.dynamic
                .update(obj.clone().into_object(), false)
                .await?,
        )
    }

    /// Replace the object's status (all else is kept).
    pub async fn update_status(&self, obj: &K) -> Result<K> {
        typed(self.dynamic.update(obj.clone().into_object(), true).await?)
    }

    /// Delete; returns the object and whether it is gone (false: marked
    /// for graceful deletion or waiting on finalizers).
    pub async fn delete(&self, name: &str, p: &DeleteParams) -> Result<(K, bool)> {
        let res = self.dynamic.delete(name, p).await?;
        let obj = res.object.ok_or_else(wrong_kind::<K>).and_then(typed)?;
        Ok((obj, res.deleted))
    }

    /// One raw watch stream from `resource_version` ("" = the current
    /// objects first). Ends when the replica goes away; see
    /// [`crate::watcher`] for a stream that survives that.
    pub async fn watch(
        &self,
        p: &ListParams,
        resource_version: &str,
    ) -> Result<impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static> {
        Ok(self
            .watch_with_revisions(p, resource_version)
            .await?
            .map(|r| r.map(|(_, ev)| ev)))
    }

    /// Like [`Api::watch`], each event with the resourceVersion to resume
    /// from after it (which, for all but the last event of a revision, is
    /// the revision before: several events can share one revision).
    pub async fn watch_with_revisions(
        &self,
        p: &ListParams,
        resource_version: &str,
    ) -> Result<impl Stream<Item = Result<(String, WatchEvent<K>)>> + Send + 'static> {
        let stream = self.dynamic.watch(p, resource_version).await?;
        Ok(stream.map(|item| {
            let ev = item?;
            let obj = || {
                use prost::Message;
                keelson_proto::api::Object::decode(ev.object.as_slice())
                    .ok()
                    .and_then(K::from_object)
                    .ok_or_else(wrong_kind::<K>)
            };
            let typed = match ev.r#type.as_str() {
                "ADDED" => WatchEvent::Added(obj()?),
                "MODIFIED" => WatchEvent::Modified(obj()?),
                "DELETED" => WatchEvent::Deleted(obj()?),
                "BOOKMARK" => WatchEvent::Bookmark(ev.resource_version.clone()),
                other => return Err(Error::Other(format!("unknown watch event type {other:?}"))),
            };
            Ok((ev.resource_version, typed))
        }))
    }
}
