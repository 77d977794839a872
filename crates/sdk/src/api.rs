//! Typed access to one kind of resource: `Api<Pod>`, `Api<Deployment>`...

use std::marker::PhantomData;
use std::time::Duration;

use futures::{Stream, StreamExt};
use keelson_model::Resource;
use keelson_proto::api::resources_client::ResourcesClient;
use keelson_proto::api::{
    CreateRequest, DeleteRequest, GetRequest, ListRequest, UpdateRequest, WatchRequest,
};

use crate::client::{Retry, ATTEMPT_TIMEOUT_MS};
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
    client: Client,
    namespace: String,
    _kind: PhantomData<fn() -> K>,
}

fn timeout() -> Option<Duration> {
    Some(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
}

fn wrong_kind<K: Resource>() -> Error {
    Error::Other(format!(
        "the server answered with an object that is not a {}",
        K::KIND
    ))
}

impl<K: Resource> Api<K> {
    /// `K` objects in `namespace`.
    pub fn namespaced(client: Client, namespace: &str) -> Api<K> {
        Api {
            client,
            namespace: namespace.to_string(),
            _kind: PhantomData,
        }
    }

    /// `K` objects in every namespace (lists and watches), or a
    /// cluster-scoped kind (Node, Namespace).
    pub fn all(client: Client) -> Api<K> {
        Api::namespaced(client, "")
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn namespace_of(&self, obj: &K) -> String {
        let ns = &obj.meta().namespace;
        if ns.is_empty() {
            self.namespace.clone()
        } else {
            ns.clone()
        }
    }

    pub async fn get(&self, name: &str) -> Result<K> {
        let req = GetRequest {
            resource: K::KIND.plural().into(),
            namespace: self.namespace.clone(),
            name: name.into(),
        };
        let o = self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).get(r).await }
            })
            .await?
            .into_inner();
        K::from_object(o).ok_or_else(wrong_kind::<K>)
    }

    /// One page (all of it unless `limit` is set).
    pub async fn list(&self, p: &ListParams) -> Result<ObjectList<K>> {
        let req = ListRequest {
            resource: K::KIND.plural().into(),
            namespace: self.namespace.clone(),
            label_selector: p.label_selector.clone(),
            field_selector: p.field_selector.clone(),
            limit: p.limit,
            continue_token: p.continue_token.clone(),
            resource_version: String::new(),
        };
        let res = self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).list(r).await }
            })
            .await?
            .into_inner();
        let items = res
            .items
            .into_iter()
            .map(|o| K::from_object(o).ok_or_else(wrong_kind::<K>))
            .collect::<Result<Vec<K>>>()?;
        Ok(ObjectList {
            items,
            resource_version: res.resource_version,
            continue_token: res.continue_token,
        })
    }

    /// Create. Retried after a failure only if the request cannot have
    /// reached a server.
    pub async fn create(&self, obj: &K) -> Result<K> {
        self.create_with_lease(obj, 0).await
    }

    /// Create, attached to a lease: the object is deleted when the lease
    /// expires or is revoked.
    ///
    /// When the replica fails mid-call the outcome is unknown; for an
    /// object with a name the SDK then finds out instead of guessing: it
    /// gets the object (returned if it is the one sent) and, while it is
    /// absent, sends the create again; an AlreadyExists answer to that
    /// (the first attempt committed late) means look again. A create is
    /// never reported as failed when it went through, and a second copy
    /// cannot appear (the name is taken by the first).
    pub async fn create_with_lease(&self, obj: &K, lease_id: i64) -> Result<K> {
        let mut obj = obj.clone();
        obj.meta_mut().namespace = self.namespace_of(&obj);
        let name = obj.meta().name.clone();
        let ns = obj.meta().namespace.clone();
        let wanted = keelson_model::manifest::desired_state(&obj.clone().into_object());
        let req = CreateRequest {
            object: Some(obj.into_object()),
            lease_id,
        };
        let send = || {
            self.client.call(Retry::UnsentOnly, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).create(r).await }
            })
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(crate::client::CALL_DEADLINE_MS);
        let mut last = match send().await {
            Ok(o) => return K::from_object(o.into_inner()).ok_or_else(wrong_kind::<K>),
            Err(Error::Unavailable(m)) if !name.is_empty() => m,
            Err(e) => return Err(e),
        };
        let here: Api<K> = Api::namespaced(self.client.clone(), &ns);
        while tokio::time::Instant::now() < deadline {
            match here.get(&name).await {
                Ok(existing) => {
                    let same =
                        keelson_model::manifest::desired_state(&existing.clone().into_object())
                            == wanted;
                    return if same {
                        Ok(existing)
                    } else {
                        Err(Error::Unavailable(format!(
                            "create of {name:?} had an unknown outcome ({last}) and the object now differs from the one sent"
                        )))
                    };
                }
                // Not there yet; the first attempt may still commit (an
                // entry forwarded before the failure), so an AlreadyExists
                // answer to the resend sends us back to look again.
                Err(Error::NotFound(_)) => match send().await {
                    Ok(o) => return K::from_object(o.into_inner()).ok_or_else(wrong_kind::<K>),
                    Err(Error::Unavailable(m)) => last = m,
                    Err(Error::AlreadyExists(m)) => last = m,
                    Err(e) => return Err(e),
                },
                Err(Error::Unavailable(m)) => last = m,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Unavailable(last))
    }

    async fn update_inner(&self, obj: &K, status: bool) -> Result<K> {
        let mut obj = obj.clone();
        obj.meta_mut().namespace = self.namespace_of(&obj);
        // With a resourceVersion the update is a compare-and-swap, safe to
        // repeat (a repeat of one that went through gets a conflict).
        let retry = if obj.meta().resource_version.is_empty() {
            Retry::UnsentOnly
        } else {
            Retry::Idempotent
        };
        let req = UpdateRequest {
            object: Some(obj.into_object()),
            lease_id: 0,
        };
        let o = self
            .client
            .call(retry, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move {
                    let mut c = ResourcesClient::new(ch);
                    if status {
                        c.update_status(r).await
                    } else {
                        c.update(r).await
                    }
                }
            })
            .await?
            .into_inner();
        K::from_object(o).ok_or_else(wrong_kind::<K>)
    }

    /// Replace the object's spec and metadata (its status is kept). Its
    /// resourceVersion, when set, must still be current (else
    /// [`Error::Conflict`]).
    pub async fn update(&self, obj: &K) -> Result<K> {
        self.update_inner(obj, false).await
    }

    /// Replace the object's status (all else is kept).
    pub async fn update_status(&self, obj: &K) -> Result<K> {
        self.update_inner(obj, true).await
    }

    /// Delete; returns the object and whether it is gone (false: marked
    /// for graceful deletion or waiting on finalizers).
    pub async fn delete(&self, name: &str, p: &DeleteParams) -> Result<(K, bool)> {
        let req = DeleteRequest {
            resource: K::KIND.plural().into(),
            namespace: self.namespace.clone(),
            name: name.into(),
            grace_period_seconds: p.grace_period_seconds,
            propagation_policy: p.propagation_policy.clone(),
            precondition_uid: p.precondition_uid.clone(),
            precondition_resource_version: p.precondition_resource_version.clone(),
        };
        let res = self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).delete(r).await }
            })
            .await?
            .into_inner();
        let obj = res
            .object
            .and_then(K::from_object)
            .ok_or_else(wrong_kind::<K>)?;
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
        let req = WatchRequest {
            resource: K::KIND.plural().into(),
            namespace: self.namespace.clone(),
            label_selector: p.label_selector.clone(),
            field_selector: p.field_selector.clone(),
            resource_version: resource_version.to_string(),
            allow_bookmarks: true,
        };
        let target = self.client.stream_channel();
        let stream = match ResourcesClient::new(target.channel.clone())
            .watch(self.client.request(req, None))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => {
                if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                    target.failed();
                }
                return Err(s.into());
            }
        };
        Ok(stream.map(move |item| {
            let ev = item.map_err(|s| {
                if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                    target.failed();
                }
                Error::from(s)
            })?;
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
